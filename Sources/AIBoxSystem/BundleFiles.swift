import AIBoxCore
import Crypto
import FoundationEssentials
import Glibc

// Bundle files: reading one through BundleStreamVerifier, and writing a signed one.

/// One buffer for streaming files, allocated once per operation.
let bundleChunkSize = 1 << 20

/// A bundle file, read through `BundleStreamVerifier`.
public final class BundleReader {
    public let path: String
    public let fileSize: UInt64
    private let fd: Int32

    public init(path: String) throws(BundleError) {
        let fd: Int32
        do {
            fd = try syscall("open", detail: path) { open(path, O_RDONLY | O_CLOEXEC) }
        } catch {
            throw BundleError(.io, "cannot open \(path): \(error.reason)")
        }
        var st = stat()
        do {
            try syscall("fstat", detail: path) { fstat(fd, &st) }
        } catch {
            closeDescriptor(fd)
            throw BundleError(.io, "cannot stat \(path): \(error.reason)")
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            closeDescriptor(fd)
            throw BundleError(.io, "\(path) is not a regular file")
        }
        self.path = path
        self.fd = fd
        self.fileSize = UInt64(max(st.st_size, 0))
    }

    deinit { closeDescriptor(fd) }

    /// The header and manifest, without checking signatures (`aibox bundle inspect`).
    public func readHeader() throws(BundleError) -> BundleInfo {
        let want = Int(min(fileSize, UInt64(BundleLayout.maxHeaderLength)))
        var prefix = [UInt8](repeating: 0, count: want)
        var got = 0
        while got < want {
            let n: Int
            do {
                n = try syscall("pread", detail: path) {
                    prefix.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + got, want - got, off_t(got)) }
                }
            } catch {
                throw BundleError(.io, "cannot read \(path): \(error.reason)")
            }
            if n == 0 { break }
            got += n
        }
        prefix.removeSubrange(got...)
        switch BundleLayout.parseHeader(prefix) {
        case .invalid(let e): throw BundleError(.format, "not a valid bundle: \(e)")
        case .needMore:
            if got == 0 { throw BundleError(.truncated, "truncated: the bundle is empty") }
            throw BundleError(.truncated, "truncated: " + BundleLayout.describeEnd(at: UInt64(got), prefix: prefix))
        case .header(let header): return try BundleInfo.unverified(header)
        }
    }

    /// Verifies the whole bundle: the header against `keyring`; then `accept` (the
    /// caller's policy: compatible, version floor), which throws to refuse; then the file's
    /// length against the manifest's (a short or long file is refused before any payload
    /// byte is used); then every payload, streamed to `sink` in chunks of at most 1 MiB
    /// while it is hashed. Errors of the bundle are `BundleError`s; `accept`'s and `sink`'s
    /// errors pass through.
    @discardableResult
    public func verify(
        keyring: Keyring, accept: (BundleInfo) throws -> Void = { _ in },
        sink: (BundleStreamVerifier.Event) throws -> Void = { _ in }
    ) throws -> BundleInfo {
        var verifier = BundleStreamVerifier(keyring: keyring)
        let size = fileSize
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bundleChunkSize, alignment: 16)
        defer { buffer.deallocate() }
        do throws(SystemError) {
            try syscall("lseek", detail: path) { lseek(fd, 0, SEEK_SET) }
        } catch {
            throw BundleError(.io, "cannot read \(path): \(error.reason)")
        }
        while true {
            let n: Int
            do throws(SystemError) {
                n = try syscall("read", detail: path) { read(fd, buffer.baseAddress, buffer.count) }
            } catch {
                throw BundleError(.io, "cannot read \(path) at byte \(verifier.position): \(error.reason)")
            }
            if n == 0 { break }
            try verifier.consume(UnsafeRawBufferPointer(rebasing: buffer[0..<n])) { event in
                if case .header(let bundle) = event {
                    try accept(bundle)
                    let total = bundle.totalLength
                    if size < total {
                        throw BundleError(
                            .truncated,
                            "truncated: " + BundleLayout.describeEnd(at: size, headerLength: bundle.headerLength, manifest: bundle.manifest)
                        )
                    }
                    if size > total {
                        throw BundleError(
                            .trailingBytes,
                            "extra bytes: the file has \(size - total) bytes after the end of its last payload at byte \(total); its manifest accounts for \(total) bytes"
                        )
                    }
                }
                try sink(event)
            }
        }
        return try verifier.finish()
    }
}

/// Makes bundles (`aibox bundle create`).
public enum BundleWriter {
    /// Hashes each image (streamed, 1 MiB at a time), builds and signs the manifest, then
    /// writes the bundle to a temporary file beside `output` — header, then each image
    /// streamed again and checked against its first hash (an image changed meanwhile is an
    /// error) — fsyncs it and renames it to `output`. `output` is whole or untouched.
    @discardableResult
    public static func create(
        compatible: String, version: SemanticVersion, rollback: Bool, created: String, images: [(slotClass: String, path: String)],
        key: Curve25519.Signing.PrivateKey, output: String
    ) throws(BundleError) -> BundleInfo {
        // What can be checked before reading anything.
        var problems: [String] = []
        if images.isEmpty { problems.append("no image: give one to \(BundleManifest.maxImages) --image CLASS=FILE") }
        if images.count > BundleManifest.maxImages {
            problems.append("\(images.count) images; a bundle holds at most \(BundleManifest.maxImages)")
        }
        if let why = BundleManifest.checkCompatible(compatible) { problems.append("compatible: \(why)") }
        if let why = BundleManifest.checkCreated(created) { problems.append("created: \(why)") }
        for (n, image) in images.enumerated() {
            let label = "image \(n + 1) (\(image.slotClass)=\(image.path))"
            if let why = BundleManifest.checkSlotClass(image.slotClass) { problems.append("\(label): \(why)") }
            if let why = BundleManifest.checkName(baseName(image.path)) { problems.append("\(label): the file name: \(why)") }
            if let earlier = images.prefix(n).firstIndex(where: { $0.slotClass == image.slotClass }) {
                problems.append("\(label): the class \(image.slotClass) is already image \(earlier + 1)'s")
            }
            if let earlier = images.prefix(n).firstIndex(where: { baseName($0.path) == baseName(image.path) }) {
                problems.append("\(label): the file name \(baseName(image.path)) is already image \(earlier + 1)'s")
            }
        }
        if !problems.isEmpty { throw BundleError(.image, problems.joined(separator: "\n")) }

        var files: [Int32] = []
        defer { for fd in files { closeDescriptor(fd) } }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bundleChunkSize, alignment: 16)
        defer { buffer.deallocate() }

        var described: [(slotClass: String, name: String, size: UInt64, sha256: String)] = []
        for image in images {
            let fd: Int32
            do {
                fd = try syscall("open", detail: image.path) { open(image.path, O_RDONLY | O_CLOEXEC) }
            } catch {
                throw BundleError(.image, "cannot open the image \(image.path): \(error.reason)")
            }
            files.append(fd)
            var st = stat()
            guard (try? syscall("fstat", detail: image.path) { fstat(fd, &st) }) != nil, st.st_mode & S_IFMT == S_IFREG else {
                throw BundleError(.image, "the image \(image.path) is not a regular file")
            }
            let size = UInt64(max(st.st_size, 0))
            if size == 0 { throw BundleError(.image, "the image \(image.path) is empty") }
            if size > BundleManifest.maxImageSize {
                throw BundleError(
                    .image, "the image \(image.path) has \(size) bytes; an image has at most \(BundleManifest.maxImageSize) (64 GiB)")
            }
            let (count, digest) = try stream(fd, path: image.path, buffer: buffer, limit: size) { _ throws(BundleError) in }
            guard count == size else {
                throw BundleError(.image, "the image \(image.path) changed while it was read (\(count) bytes read, \(size) expected)")
            }
            described.append((image.slotClass, baseName(image.path), size, digest))
        }

        let manifest: BundleManifest
        switch BundleManifest.make(compatible: compatible, version: version, rollback: rollback, created: created, images: described) {
        case .success(let m): manifest = m
        case .failure(let errors):
            throw BundleError(.manifest, errors.errors.map { "\($0.key.map { $0 + ": " } ?? "")\($0.message)" }.joined(separator: "\n"))
        }
        let manifestBytes = manifest.serialized()
        let signature: [UInt8]
        do {
            signature = Array(try key.signature(for: manifestBytes))
        } catch {
            throw BundleError(.key, "cannot sign the manifest: \(error)")
        }
        guard key.publicKey.isValidSignature(signature, for: manifestBytes) else {
            throw BundleError(.key, "the signature just made does not verify: the key is not usable")
        }
        let fingerprint = BundleKeys.fingerprint(key.publicKey)
        let header = BundleLayout.encodeHeader(
            manifest: manifestBytes, signatures: [BundleSignature(fingerprint: fingerprint, signature: signature)])

        let out: AtomicFile
        do throws(SystemError) { out = try AtomicFile(output, mode: 0o644) } catch {
            throw BundleError(.io, "cannot create \(output): \(error)")
        }
        do throws(BundleError) {
            do throws(SystemError) { try out.write(header) } catch { throw BundleError(.io, "cannot write \(output): \(error)") }
            for (n, fd) in files.enumerated() {
                let image = manifest.images[n]
                do throws(SystemError) {
                    try syscall("lseek", detail: images[n].path) { lseek(fd, 0, SEEK_SET) }
                } catch {
                    throw BundleError(.io, "cannot read \(images[n].path): \(error.reason)")
                }
                let (count, digest) = try stream(fd, path: images[n].path, buffer: buffer, limit: image.size) { chunk throws(BundleError) in
                    do throws(SystemError) { try out.write(chunk) } catch { throw BundleError(.io, "cannot write \(output): \(error)") }
                }
                guard count == image.size, digest == image.sha256 else {
                    throw BundleError(
                        .image, "the image \(images[n].path) changed while the bundle was written; nothing was written to \(output)")
                }
            }
        } catch {
            out.abandon()
            throw error
        }
        do throws(SystemError) { try out.commit() } catch { throw BundleError(.io, "cannot write \(output): \(error)") }
        guard case .header(let parsed) = BundleLayout.parseHeader(header) else { preconditionFailure("our own header does not parse") }
        return BundleInfo(header: parsed, manifest: manifest, signers: [BundleInfo.Signer(name: "", fingerprint: fingerprint)])
    }

    /// Reads `fd` to its end (stopping one byte past `limit`, enough to see that it grew),
    /// hashing and passing on each chunk: the byte count and the SHA-256 in hex.
    static func stream(
        _ fd: Int32, path: String, buffer: UnsafeMutableRawBufferPointer, limit: UInt64,
        _ each: (UnsafeRawBufferPointer) throws(BundleError) -> Void
    ) throws(BundleError) -> (UInt64, String) {
        var hasher = SHA256()
        var count: UInt64 = 0
        while count <= limit {
            let want = Int(min(UInt64(buffer.count), limit + 1 - count))
            let n: Int
            do {
                n = try syscall("read", detail: path) { read(fd, buffer.baseAddress, want) }
            } catch {
                throw BundleError(.io, "cannot read \(path) at byte \(count): \(error.reason)")
            }
            if n == 0 { break }
            count += UInt64(n)
            if count > limit { break }
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
            hasher.update(bufferPointer: chunk)
            try each(chunk)
        }
        return (count, BundleLayout.hex(Array(hasher.finalize())))
    }

    static func baseName(_ path: String) -> String {
        var p = Substring(path)
        while p.count > 1 && p.hasSuffix("/") { p = p.dropLast() }
        guard let slash = p.lastIndex(of: "/") else { return String(p) }
        return String(p[p.index(after: slash)...])
    }
}

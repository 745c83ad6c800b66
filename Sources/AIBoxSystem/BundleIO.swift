import AIBoxCore
import Crypto
import FoundationEssentials
import Glibc

/// Update bundles on disk and on the wire (docs/BUNDLE.md): signing keys, keyrings, the
/// writer, and the reader — a push-style verifier that takes a bundle's bytes in chunks of
/// any size (a file, a download) and hands each payload byte on only after the header's
/// signature, manifest and the caller's policy have been checked. Memory stays bounded:
/// the header (≤ 66 KiB) and one buffer of 1 MiB; payloads are never held whole.

/// Why a bundle operation failed. `message` starts with a short kind ("truncated: …")
/// and says where (offset, image, key) and what would be right.
public struct BundleError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// Reading or writing a file failed.
        case io
        /// A key file is missing, unreadable or not an Ed25519 key in the expected form.
        case key
        /// Not a bundle, or its header breaks the layout.
        case format
        /// The manifest is not valid (after its signature was verified).
        case manifest
        /// A signature by a trusted key does not match the manifest.
        case signature
        /// No signature is by a key of the keyring.
        case unknownKey
        /// The bundle ends early.
        case truncated
        /// Bytes after the end of the last payload.
        case trailingBytes
        /// A payload does not match its sha256.
        case digest
        /// An input image cannot go into a bundle (`create`).
        case image
        /// The caller's check refused the bundle before any payload byte was used.
        case refused
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

// MARK: - Keys

/// Ed25519 signing keys in the files openssl reads and writes: the private key as PKCS#8
/// PEM (`openssl genpkey -algorithm ed25519`), the public key as SubjectPublicKeyInfo PEM
/// (`openssl pkey -pubout`). A key's fingerprint is the SHA-256 of its 32 raw bytes.
public enum BundleKeys {
    /// PKCS#8 v1 (RFC 8410): SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING seed } }.
    static let pkcs8Prefix: [UInt8] = [0x30, 0x2E, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]
    /// PKCS#8 v2 (OneAsymmetricKey with the public key attached, [1]).
    static let pkcs8v2Prefix: [UInt8] = [0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]
    static let pkcs8v2PublicTag: [UInt8] = [0x81, 0x21, 0x00]
    static let spkiPrefix: [UInt8] = [0x30, 0x2A, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x03, 0x21, 0x00]
    /// Key files are a few hundred bytes; larger ones are not read.
    static let maxKeyFileBytes = 64 << 10

    public static func generate() -> Curve25519.Signing.PrivateKey { Curve25519.Signing.PrivateKey() }

    public static func fingerprint(_ key: Curve25519.Signing.PublicKey) -> [UInt8] {
        Array(SHA256.hash(data: key.rawRepresentation))
    }

    public static func privateKeyPEM(_ key: Curve25519.Signing.PrivateKey) -> String {
        pem("PRIVATE KEY", pkcs8Prefix + Array(key.rawRepresentation))
    }

    public static func publicKeyPEM(_ key: Curve25519.Signing.PublicKey) -> String {
        pem("PUBLIC KEY", spkiPrefix + Array(key.rawRepresentation))
    }

    static func pem(_ label: String, _ der: [UInt8]) -> String {
        let b64 = Data(der).base64EncodedString()
        var lines: [Substring] = []
        var rest = Substring(b64)
        while !rest.isEmpty {
            lines.append(rest.prefix(64))
            rest = rest.dropFirst(64)
        }
        return "-----BEGIN \(label)-----\n" + lines.joined(separator: "\n") + "\n-----END \(label)-----\n"
    }

    /// A private key from PKCS#8 PEM (v1, or v2 with a matching public key).
    public static func parsePrivateKey(_ text: String, path: String) throws(BundleError) -> Curve25519.Signing.PrivateKey {
        if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            throw BundleError(
                .key, "\(path): the private key is encrypted; decrypt it for signing (openssl pkey -in \(path) -out PLAIN.pem)")
        }
        guard let der = pemBody(text, label: "PRIVATE KEY") else {
            throw BundleError(
                .key,
                "\(path): not a private key in PEM (-----BEGIN PRIVATE KEY-----); make one with aibox bundle keygen or openssl genpkey -algorithm ed25519"
            )
        }
        var seed: [UInt8]
        if der.count == 48 && Array(der.prefix(16)) == pkcs8Prefix {
            seed = Array(der[16...])
        } else if der.count == 83 && Array(der.prefix(16)) == pkcs8v2Prefix && Array(der[48..<51]) == pkcs8v2PublicTag {
            seed = Array(der[16..<48])
            let attached = Array(der[51...])
            let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: seed)
            guard let key, Array(key.publicKey.rawRepresentation) == attached else {
                throw BundleError(.key, "\(path): the public key inside the PKCS#8 file does not belong to its private key")
            }
        } else {
            throw BundleError(
                .key, "\(path): not an Ed25519 private key (PKCS#8 with OID 1.3.101.112); bundles are signed with Ed25519 keys only")
        }
        defer { seed = [UInt8](repeating: 0, count: seed.count) }
        do {
            return try Curve25519.Signing.PrivateKey(rawRepresentation: seed)
        } catch {
            throw BundleError(.key, "\(path): the Ed25519 private key is not valid: \(error)")
        }
    }

    /// A public key from SPKI PEM or base64 of the raw 32 bytes (`SeedSignature.publicKey`).
    public static func parsePublicKey(_ text: String, path: String) throws(BundleError) -> Curve25519.Signing.PublicKey {
        guard let key = SeedSignature.publicKey(text) else {
            throw BundleError(
                .key,
                "\(path): not an Ed25519 public key (PEM -----BEGIN PUBLIC KEY----- as openssl pkey -pubout writes, or base64 of the 32 raw bytes)"
            )
        }
        return key
    }

    public static func readPrivateKey(_ path: String) throws(BundleError) -> Curve25519.Signing.PrivateKey {
        try parsePrivateKey(try readKeyFile(path), path: path)
    }

    public static func readPublicKey(_ path: String) throws(BundleError) -> Curve25519.Signing.PublicKey {
        try parsePublicKey(try readKeyFile(path), path: path)
    }

    static func readKeyFile(_ path: String) throws(BundleError) -> String {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw BundleError(.key, "cannot read the key \(path): \(String(cString: strerror(errno)))") }
        defer { closeDescriptor(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { throw BundleError(.key, "\(path) is not a key file") }
        guard st.st_size <= maxKeyFileBytes else {
            throw BundleError(.key, "\(path) has \(st.st_size) bytes; a key file has a few hundred: is this the right file?")
        }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while bytes.count <= maxKeyFileBytes {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw BundleError(.key, "cannot read the key \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes += buf[0..<n]
        }
        defer {
            for i in bytes.indices { bytes[i] = 0 }
            for i in buf.indices { buf[i] = 0 }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The DER inside `-----BEGIN label-----` … `-----END label-----`.
    static func pemBody(_ text: String, label: String) -> [UInt8]? {
        let begin = "-----BEGIN \(label)-----", end = "-----END \(label)-----"
        var inside = false
        var body = ""
        for raw in text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let line = String(raw).trimmingCharacters(in: " \t")
            if line == begin {
                inside = true
            } else if line == end {
                guard inside, let der = Data(base64Encoded: body) else { return nil }
                return Array(der)
            } else if inside {
                body += line
            }
        }
        return nil
    }

    /// Writes a new key pair: the private key 0600, the public key 0644, each whole or not
    /// at all (a temporary file, fsync, then linked under its name, which must not exist —
    /// a signing key is never overwritten). When the public key cannot be written, the
    /// private key is removed again: there is never half a pair.
    public static func write(_ key: Curve25519.Signing.PrivateKey, privatePath: String, publicPath: String) throws(BundleError) {
        guard privatePath != publicPath else { throw BundleError(.key, "--private and --public name the same file \(privatePath)") }
        for path in [privatePath, publicPath] {
            var st = stat()
            if lstat(path, &st) == 0 {
                throw BundleError(.key, "\(path) already exists; keygen never overwrites a key: remove it first or choose another name")
            }
        }
        var secret = Array(privateKeyPEM(key).utf8)
        defer { for i in secret.indices { secret[i] = 0 } }
        try writeNewFile(privatePath, secret, mode: 0o600)
        do {
            try writeNewFile(publicPath, Array(publicKeyPEM(key.publicKey).utf8), mode: 0o644)
        } catch {
            _ = unlink(privatePath)
            throw error
        }
    }

    /// Creates `path` with `bytes` and exactly `mode`, or fails with nothing left behind.
    static func writeNewFile(_ path: String, _ bytes: [UInt8], mode: mode_t) throws(BundleError) {
        let tmp = path + ".tmp-\(getpid())"
        _ = unlink(tmp)
        let fd = Glibc.open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        if fd < 0 { throw BundleError(.io, "cannot create \(tmp): \(String(cString: strerror(errno)))") }
        do throws(SystemError) {
            try syscall("fchmod", detail: tmp) { fchmod(fd, mode) }
            try writeAll(fd, bytes)
            try syscall("fsync", detail: tmp) { fsync(fd) }
        } catch {
            closeDescriptor(fd)
            _ = unlink(tmp)
            throw BundleError(.io, "cannot write \(path): \(error)")
        }
        closeDescriptor(fd)
        if link(tmp, path) != 0 {
            let e = errno
            // File systems without hard links (vfat): the name was checked free just before.
            if e == EPERM || e == EOPNOTSUPP || e == ENOSYS, rename(tmp, path) == 0 {
                syncDirectory(of: path)
                return
            }
            _ = unlink(tmp)
            if e == EEXIST {
                throw BundleError(.key, "\(path) already exists; keygen never overwrites a key: remove it first or choose another name")
            }
            throw BundleError(.io, "cannot create \(path): \(String(cString: strerror(e)))")
        }
        _ = unlink(tmp)
        syncDirectory(of: path)
    }
}

func syncDirectory(of path: String) {
    let dfd = Glibc.open(parentDirectory(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if dfd >= 0 {
        _ = fsync(dfd)
        closeDescriptor(dfd)
    }
}

// MARK: - Keyring

/// The public keys trusted to sign bundles: the `*.pub` files of a directory
/// (`usr/lib/aibox/keys/` on a box), each SPKI PEM or base64 of the raw key.
public struct Keyring: Sendable {
    public struct Key: Sendable {
        /// The file name, such as `release.pub`.
        public var name: String
        public var key: Curve25519.Signing.PublicKey
        public var fingerprint: [UInt8]

        public init(name: String, key: Curve25519.Signing.PublicKey) {
            self.name = name
            self.key = key
            self.fingerprint = BundleKeys.fingerprint(key)
        }
    }

    public static let maxKeys = 64

    public var directory: String
    public var keys: [Key]
    /// Files that are not usable keys, each with why (they are skipped, and said).
    public var problems: [String]

    public init(directory: String, keys: [Key], problems: [String] = []) {
        self.directory = directory
        self.keys = keys
        self.problems = problems
    }

    /// Reads `directory/*.pub` (sorted by name). A missing directory is an error; files that
    /// are not keys are skipped and listed in `problems`.
    public static func load(directory: String) throws(BundleError) -> Keyring {
        var st = stat()
        guard stat(directory, &st) == 0 else {
            throw BundleError(.key, "cannot read the keyring \(directory): \(String(cString: strerror(errno)))")
        }
        guard st.st_mode & S_IFMT == S_IFDIR else { throw BundleError(.key, "the keyring \(directory) is not a directory") }
        var keys: [Key] = []
        var problems: [String] = []
        for name in listDirectory(directory).filter({ $0.hasSuffix(".pub") }).sorted() {
            if keys.count >= maxKeys {
                problems.append("\(name): skipped, a keyring holds at most \(maxKeys) keys")
                continue
            }
            do {
                let key = try BundleKeys.readPublicKey(directory + "/" + name)
                let entry = Key(name: name, key: key)
                if let same = keys.first(where: { $0.fingerprint == entry.fingerprint }) {
                    problems.append("\(name): the same key as \(same.name)")
                    continue
                }
                keys.append(entry)
            } catch {
                problems.append(error.message)
            }
        }
        return Keyring(directory: directory, keys: keys, problems: problems)
    }

    public func key(fingerprint: [UInt8]) -> Key? { keys.first { $0.fingerprint == fingerprint } }

    /// "a.pub (fingerprint), b.pub (fingerprint)", or that there is none.
    public var summary: String {
        if keys.isEmpty { return "no key (no usable *.pub file)" }
        return keys.map { "\($0.name) (\(BundleLayout.hex($0.fingerprint)))" }.joined(separator: ", ")
    }
}

// MARK: - A read bundle

/// A bundle whose header has been read. Only when `isVerified` (signers not empty) was the
/// manifest's signature checked against a keyring, making the manifest the integrator's;
/// `BundleReader.readHeader` (inspect) reads without a keyring and never is.
public struct BundleInfo: Sendable {
    public struct Signer: Sendable, Equatable {
        public var name: String
        public var fingerprint: [UInt8]
    }

    public var header: BundleHeader
    public var manifest: BundleManifest
    /// The keyring's keys whose signatures verified; empty when read without a keyring.
    public var signers: [Signer]

    public var isVerified: Bool { !signers.isEmpty }
    public var headerLength: Int { header.length }
    public var totalLength: UInt64 { BundleLayout.totalLength(headerLength: header.length, manifest: manifest) }
    public func payloadRange(_ image: Int) -> Range<UInt64> {
        BundleLayout.payloadRange(of: manifest.images[image], headerLength: header.length)
    }

    /// Checks the signatures of `header` against `keyring`, then reads its manifest. Every
    /// signature by a key of the keyring must match; at least one must be by such a key
    /// (signatures by other keys are ignored, so a bundle can carry an old and a new key).
    public static func verify(_ header: BundleHeader, keyring: Keyring) throws(BundleError) -> BundleInfo {
        var signers: [Signer] = []
        var unknown: [String] = []
        for (n, s) in header.signatures.enumerated() {
            let fp = BundleLayout.hex(s.fingerprint)
            guard let trusted = keyring.key(fingerprint: s.fingerprint) else {
                unknown.append(fp)
                continue
            }
            guard trusted.key.isValidSignature(s.signature, for: header.manifest) else {
                throw BundleError(
                    .signature,
                    "bad signature: signature \(n + 1) by \(trusted.name) (\(fp)) does not match the manifest: the manifest or the signature was changed after signing"
                )
            }
            signers.append(Signer(name: trusted.name, fingerprint: s.fingerprint))
        }
        if signers.isEmpty {
            var message =
                "unknown key: the bundle is signed by \(unknown.count == 1 ? "the key" : "the keys") \(unknown.joined(separator: ", ")), not in the keyring \(keyring.directory); it trusts \(keyring.summary)"
            if !keyring.problems.isEmpty { message += " (skipped: \(keyring.problems.joined(separator: "; ")))" }
            throw BundleError(.unknownKey, message)
        }
        let manifest = try readManifest(header)
        return BundleInfo(header: header, manifest: manifest, signers: signers)
    }

    /// The manifest of `header`, without any signature check (`inspect`).
    public static func unverified(_ header: BundleHeader) throws(BundleError) -> BundleInfo {
        BundleInfo(header: header, manifest: try readManifest(header), signers: [])
    }

    static func readManifest(_ header: BundleHeader) throws(BundleError) -> BundleManifest {
        switch BundleManifest.parse(header.manifest) {
        case .failure(let errors):
            throw BundleError(
                .manifest,
                "invalid manifest (bytes 16 to \(15 + header.manifest.count)):\n" + errors.errors.map { "  \($0)" }.joined(separator: "\n"))
        case .success(let m):
            guard m.format == header.format else {
                throw BundleError(.manifest, "invalid manifest: it says format \(m.format), the header \(header.format)")
            }
            return m
        }
    }
}

// MARK: - Stream verifier

/// Verifies a bundle from its bytes as they come, in chunks of any size.
///
/// 1. Header: bytes are kept (at most 66 KiB) until `BundleLayout.parseHeader` has the
///    whole header; a wrong magic, format, length or count stops at once.
/// 2. Signatures against the keyring, then the manifest (strictly). `.header` is reported:
///    the handler applies its policy (compatible, version floor) and throws to refuse.
///    No payload byte has been handed on before this.
/// 3. Payloads, in order: each chunk is hashed and handed on as `.payload`; at each
///    payload's end its SHA-256 is compared (`.imageVerified`). A consumer writing a slot
///    must treat the bytes as unverified until then (and read the slot back).
/// 4. After the last payload, any byte is an error (a server sending more than promised);
///    `finish()` at the end of the input says whether the bundle was whole.
///
/// After an error the verifier stays failed: every later call throws the same error.
public struct BundleStreamVerifier {
    public enum Event {
        /// The header is verified: signature, then manifest.
        case header(BundleInfo)
        /// Bytes of image `image` (0-based) starting at `offset` within its payload. Valid
        /// only during the call; not yet verified.
        case payload(image: Int, offset: UInt64, bytes: UnsafeRawBufferPointer)
        /// Image `image`'s payload is complete and matches its sha256.
        case imageVerified(image: Int)
    }

    private enum State {
        case header(buffer: [UInt8], needed: Int)
        case payload(image: Int, received: UInt64, hasher: SHA256)
        case done
        case failed(BundleError)
    }

    private let keyring: Keyring
    private var state: State = .header(buffer: [], needed: BundleLayout.fixedLength)
    /// Bytes taken so far.
    public private(set) var position: UInt64 = 0
    public private(set) var bundle: BundleInfo?

    /// Only signatures by keys of `keyring` are accepted (there is no unverified mode:
    /// `BundleReader.readHeader` is the way to look at a bundle without keys).
    public init(keyring: Keyring) {
        self.keyring = keyring
    }

    public var isComplete: Bool {
        if case .done = state { return true }
        return false
    }

    public mutating func consume(_ bytes: [UInt8], _ handler: (Event) throws -> Void) throws {
        try bytes.withUnsafeBytes { raw in try consume(raw, handler) }
    }

    /// Takes the next bytes of the bundle. Errors of the bundle are `BundleError`s; an error
    /// the handler throws passes through (and stops the verifier too).
    public mutating func consume(_ chunk: UnsafeRawBufferPointer, _ handler: (Event) throws -> Void) throws {
        do {
            try step(chunk, handler)
        } catch let e as BundleError {
            state = .failed(e)
            throw e
        } catch {
            state = .failed(BundleError(.refused, "refused: \(error)"))
            throw error
        }
    }

    private mutating func step(_ chunk: UnsafeRawBufferPointer, _ handler: (Event) throws -> Void) throws {
        var at = 0
        while at < chunk.count {
            switch state {
            case .failed(let e):
                throw e
            case .header(var buffer, let needed):
                let take = min(needed - buffer.count, chunk.count - at)
                buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[at..<(at + take)]))
                at += take
                position += UInt64(take)
                // The fixed fields are looked at as they arrive (a wrong magic from its first
                // byte); beyond them, only once the bytes announced are there.
                guard buffer.count >= needed || buffer.count < BundleLayout.fixedLength else {
                    state = .header(buffer: buffer, needed: needed)
                    continue
                }
                switch BundleLayout.parseHeader(buffer) {
                case .needMore(let more):
                    state = .header(buffer: buffer, needed: more)
                case .invalid(let e):
                    throw BundleError(.format, "not a valid bundle: \(e)")
                case .header(let header):
                    let read = try BundleInfo.verify(header, keyring: keyring)
                    bundle = read
                    state = .payload(image: 0, received: 0, hasher: SHA256())
                    try handler(.header(read))
                }
            case .payload(let index, let received, var hasher):
                guard let bundle else { preconditionFailure("payload state without a header") }
                let image = bundle.manifest.images[index]
                let take = Int(min(UInt64(chunk.count - at), image.size - received))
                let bytes = UnsafeRawBufferPointer(rebasing: chunk[at..<(at + take)])
                hasher.update(bufferPointer: bytes)
                at += take
                position += UInt64(take)
                let now = received + UInt64(take)
                state = .payload(image: index, received: now, hasher: hasher)
                try handler(.payload(image: index, offset: received, bytes: bytes))
                guard now == image.size else { continue }
                let digest = BundleLayout.hex(Array(hasher.finalize()))
                guard digest == image.sha256 else {
                    let range = bundle.payloadRange(index)
                    throw BundleError(
                        .digest,
                        "corrupted: the payload of image \(index + 1) \"\(image.name)\" (\(image.slotClass), bytes \(range.lowerBound) to \(range.upperBound - 1)) does not match its sha256: the manifest says \(image.sha256), the payload has \(digest)"
                    )
                }
                state = index + 1 < bundle.manifest.images.count ? .payload(image: index + 1, received: 0, hasher: SHA256()) : .done
                try handler(.imageVerified(image: index))
            case .done:
                let total = bundle?.totalLength ?? position
                throw BundleError(
                    .trailingBytes,
                    "extra bytes: the bundle goes on after the end of its last payload at byte \(total) (at least \(chunk.count - at) more bytes); its manifest accounts for \(total) bytes"
                )
            }
        }
    }

    /// The input has ended: the bundle, when it was whole.
    public mutating func finish() throws(BundleError) -> BundleInfo {
        switch state {
        case .failed(let e):
            throw e
        case .done:
            guard let bundle else { preconditionFailure("done without a header") }
            return bundle
        case .header(let buffer, _):
            let e =
                position == 0
                ? BundleError(.truncated, "truncated: the bundle is empty")
                : BundleError(.truncated, "truncated: " + BundleLayout.describeEnd(at: position, prefix: buffer))
            state = .failed(e)
            throw e
        case .payload:
            guard let bundle else { preconditionFailure("payload state without a header") }
            let e = BundleError(
                .truncated,
                "truncated: " + BundleLayout.describeEnd(at: position, headerLength: bundle.headerLength, manifest: bundle.manifest))
            state = .failed(e)
            throw e
        }
    }
}

// MARK: - Files

/// One buffer for streaming files, allocated once per operation.
let bundleChunkSize = 1 << 20

/// A bundle file, read through `BundleStreamVerifier`.
public final class BundleReader {
    public let path: String
    public let fileSize: UInt64
    private let fd: Int32

    public init(path: String) throws(BundleError) {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw BundleError(.io, "cannot open \(path): \(String(cString: strerror(errno)))") }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            closeDescriptor(fd)
            throw BundleError(.io, "cannot stat \(path): \(String(cString: strerror(e)))")
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
            let n = prefix.withUnsafeMutableBytes { Glibc.pread(fd, $0.baseAddress! + got, want - got, off_t(got)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw BundleError(.io, "cannot read \(path): \(String(cString: strerror(errno)))")
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
        guard lseek(fd, 0, SEEK_SET) == 0 else { throw BundleError(.io, "cannot read \(path): \(String(cString: strerror(errno)))") }
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw BundleError(.io, "cannot read \(path) at byte \(verifier.position): \(String(cString: strerror(errno)))")
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
            let fd = Glibc.open(image.path, O_RDONLY | O_CLOEXEC)
            if fd < 0 { throw BundleError(.image, "cannot open the image \(image.path): \(String(cString: strerror(errno)))") }
            files.append(fd)
            var st = stat()
            guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
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

        let tmp = output + ".tmp-\(getpid())"
        _ = unlink(tmp)
        let out = Glibc.open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o644)
        if out < 0 { throw BundleError(.io, "cannot create \(tmp): \(String(cString: strerror(errno)))") }
        var isOpen = true
        do throws(BundleError) {
            do throws(SystemError) { try writeAll(out, header) } catch { throw BundleError(.io, "cannot write \(tmp): \(error)") }
            for (n, fd) in files.enumerated() {
                let image = manifest.images[n]
                guard lseek(fd, 0, SEEK_SET) == 0 else {
                    throw BundleError(.io, "cannot read \(images[n].path): \(String(cString: strerror(errno)))")
                }
                let (count, digest) = try stream(fd, path: images[n].path, buffer: buffer, limit: image.size) { chunk throws(BundleError) in
                    do throws(SystemError) { try writeAll(out, chunk) } catch { throw BundleError(.io, "cannot write \(tmp): \(error)") }
                }
                guard count == image.size, digest == image.sha256 else {
                    throw BundleError(
                        .image, "the image \(images[n].path) changed while the bundle was written; nothing was written to \(output)")
                }
            }
            guard fsync(out) == 0 else { throw BundleError(.io, "cannot write \(tmp): fsync: \(String(cString: strerror(errno)))") }
            closeDescriptor(out)
            isOpen = false
            guard rename(tmp, output) == 0 else {
                throw BundleError(.io, "cannot rename \(tmp) to \(output): \(String(cString: strerror(errno)))")
            }
        } catch {
            if isOpen { closeDescriptor(out) }
            _ = unlink(tmp)
            throw error
        }
        syncDirectory(of: output)
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
            let n = Glibc.read(fd, buffer.baseAddress, want)
            if n < 0 {
                if errno == EINTR { continue }
                throw BundleError(.io, "cannot read \(path) at byte \(count): \(String(cString: strerror(errno)))")
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

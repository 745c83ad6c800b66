import AIBoxCore
import Crypto
import FoundationEssentials
import Glibc

// Reading a bundle as it comes (a file, a download): the header checked, then each payload
// hashed and handed on. Memory stays bounded: the header (≤ 66 KiB) and one buffer.

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

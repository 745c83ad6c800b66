import AIBoxCore
import Crypto
import FoundationEssentials
import Glibc

// Update bundles on disk and on the wire (docs/BUNDLE.md): the errors of every bundle
// operation, and signing keys. Keyring.swift holds the trusted keys, BundleStreamVerifier.swift
// the reader that checks a bundle as it comes, BundleFiles.swift the file reader and writer.

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
        let fd: Int32
        do throws(SystemError) {
            fd = try syscall("open", detail: path) { open(path, O_RDONLY | O_CLOEXEC) }
        } catch {
            throw BundleError(.key, "cannot read the key \(path): \(error.reason)")
        }
        defer { closeDescriptor(fd) }
        var st = stat()
        guard (try? syscall("fstat", detail: path) { fstat(fd, &st) }) != nil, st.st_mode & S_IFMT == S_IFREG else {
            throw BundleError(.key, "\(path) is not a key file")
        }
        guard st.st_size <= maxKeyFileBytes else {
            throw BundleError(.key, "\(path) has \(st.st_size) bytes; a key file has a few hundred: is this the right file?")
        }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while bytes.count <= maxKeyFileBytes {
            let n: Int
            do throws(SystemError) {
                n = try syscall("read", detail: path) { buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } }
            } catch {
                throw BundleError(.key, "cannot read the key \(path): \(error.reason)")
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
            // A name that cannot even be looked at is left to the write to refuse.
            if (try? fileStatus(path, followSymlinks: false)) != nil {
                throw BundleError(.key, "\(path) already exists; keygen never overwrites a key: remove it first or choose another name")
            }
        }
        var secret = Array(privateKeyPEM(key).utf8)
        defer { for i in secret.indices { secret[i] = 0 } }
        try writeNewFile(privatePath, secret, mode: 0o600)
        do {
            try writeNewFile(publicPath, Array(publicKeyPEM(key.publicKey).utf8), mode: 0o644)
        } catch {
            // Just created by us: only a change under our feet (a read-only remount) could keep it.
            removeFileBestEffort(privatePath)
            throw error
        }
    }

    /// Creates `path` with `bytes` and exactly `mode`, or fails with nothing left behind.
    static func writeNewFile(_ path: String, _ bytes: [UInt8], mode: mode_t) throws(BundleError) {
        do throws(SystemError) {
            let file = try AtomicFile(path, mode: mode, placement: .createNew)
            try file.write(bytes)
            try file.commit()
        } catch {
            if error.function == "link" && error.errno == EEXIST {
                throw BundleError(.key, "\(path) already exists; keygen never overwrites a key: remove it first or choose another name")
            }
            throw BundleError(.io, "cannot write \(path): \(error)")
        }
    }
}

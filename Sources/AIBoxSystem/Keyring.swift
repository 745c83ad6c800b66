import AIBoxCore
import Crypto
import FoundationEssentials
import Glibc

// The public keys trusted to sign update bundles (docs/BUNDLE.md).

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
        let found: stat?
        do throws(SystemError) { found = try fileStatus(directory) } catch {
            throw BundleError(.key, "cannot read the keyring \(directory): \(error.reason)")
        }
        guard let st = found else { throw BundleError(.key, "cannot read the keyring \(directory): \(String(cString: strerror(ENOENT)))") }
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

import AIBoxCore
import CAIBoxOS
import Crypto
import Glibc

// First boot on disk: the secrets store.

/// `var/lib/aibox/secrets/`: one file per secret, directory 0700, files 0600, written
/// atomically. The values go nowhere else (workers get copies of the ones they list).
public struct SecretStore {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    /// Names are file names: lower case, digits, `.`, `-`, `_`; no path, at most 128.
    public static func isValidName(_ name: String) -> Bool { WorkerConfig.isValidSecretName(name) }

    func prepare() throws(SystemError) {
        try makeDirectories(directory, mode: 0o700)
        // An existing directory keeps whatever mode it had: make it 0700.
        _ = try syscall("chmod", detail: directory) { chmod(directory, 0o700) }
    }

    public func write(_ name: String, _ secret: Secret) throws(SystemError) {
        guard SecretStore.isValidName(name) else { throw SystemError("secret", errno: EINVAL, detail: "name \(name)") }
        try prepare()
        try writeFileAtomically(directory + "/" + name, Array(secret.reveal().utf8), mode: 0o600)
    }

    public func read(_ name: String) -> Secret? {
        guard SecretStore.isValidName(name), let bytes = readSmallFile(directory + "/" + name, limit: 64 << 10, followSymlinks: false)
        else { return nil }
        return Secret(String(decoding: bytes, as: UTF8.self))
    }

    public func names() -> [String] { listDirectory(directory).filter { SecretStore.isValidName($0) }.sorted() }

    /// The secrets' names, for a worker's families: no directory is no secret; a directory that
    /// cannot be read is an error, never taken for an empty one.
    public func listNames() throws(SystemError) -> [String] {
        do {
            return try directoryEntries(directory).filter { SecretStore.isValidName($0) }.sorted()
        } catch {
            if error.errno == ENOENT { return [] }
            throw error
        }
    }

    public func readAll() -> [String: Secret] {
        var out: [String: Secret] = [:]
        for n in names() { out[n] = read(n) }
        return out
    }

    public func remove(_ name: String) throws(SystemError) {
        guard SecretStore.isValidName(name) else { return }
        try removeFile(directory + "/" + name)
    }

    /// Every file of the directory; one that cannot be removed does not keep the others, and
    /// the first failure is thrown after: a secret left behind is reported, never passed over.
    public func removeAll() throws(SystemError) {
        var failure: SystemError?
        for n in listDirectory(directory) {
            do { try removeFile(directory + "/" + n) } catch { failure = failure ?? error }
        }
        syncDirectory(directory)
        if let failure { throw failure }
    }
}

import AIBoxCore
import CAIBoxOS
import Crypto
import Glibc

// First boot on disk (issue 4): the commit that makes a box provisioned (secrets in
// SecretStore.swift, the journal in SetupJournal.swift, OS files in SettingsApplier.swift), and
// factory reset. A power cut at any instant leaves either the old state or the new one: every
// file is written atomically, and `box.toml` — whose presence is what "provisioned" means — is
// written last.

/// Makes a box provisioned, or unprovisioned again.
public struct Provisioner {
    public let paths: Paths
    public var applier: SettingsApplier

    public init(paths: Paths, wifiInterface: String = "wlan0") {
        self.paths = paths
        applier = SettingsApplier(paths: paths, wifiInterface: wifiInterface)
    }

    public var isProvisioned: Bool { fileExists(paths.boxConfig) }

    /// Whether a time zone is installed (its zoneinfo file); nil when this system has no
    /// zoneinfo at all (no tzdata: nothing to check against).
    public static var zoneCheck: Validators.ZoneCheck? {
        guard fileExists("/usr/share/zoneinfo") else { return nil }
        return { @Sendable zone in fileExists("/usr/share/zoneinfo/" + zone) }
    }

    /// Secrets first, then the OS settings, then `box.toml` (atomically): a power cut before
    /// that last rename leaves the box unprovisioned, and a new attempt rewrites the same
    /// files. Setup's secrets no longer named by the configuration go last.
    ///
    /// All or nothing: every file is first written under a temporary name (write, fsync);
    /// only when all of them are written are they renamed into place, `box.toml` last. A
    /// failure while writing changes nothing; a power cut during the renames leaves the box
    /// unprovisioned (or, re-provisioning, on its old box.toml) and a new attempt completes it.
    public func commit(_ config: BoxConfig, secrets: [String: Secret]) throws(SystemError) {
        let store = SecretStore(directory: paths.secrets)
        let tx = FileTransaction()
        do throws(SystemError) {
            try store.prepare()
            for (name, value) in secrets.sorted(by: { $0.key < $1.key }) {
                guard SecretStore.isValidName(name) else { throw SystemError("secret", errno: EINVAL, detail: "name \(name)") }
                try tx.write(paths.secrets + "/" + name, Array(value.reveal().utf8), mode: 0o600)
            }
            try applier.stage(config, secrets: secrets, into: tx)
            try tx.write(paths.boxConfig, Array(config.tomlText().utf8), mode: 0o640)
        } catch {
            tx.abandon()
            throw error
        }
        try tx.commit()
        applier.tellRunningSystem(config)
        // Tidying after the box is provisioned, so not a failure of it: a secret no longer named
        // stays unused (given to no worker), and factory-reset reports one it cannot remove.
        let kept = Set(config.secretNames)
        for name in store.names() where Provisioner.isSetupSecret(name) && !kept.contains(name) { try? store.remove(name) }
        try? SecretStore(directory: paths.setupStaging).removeAll()
    }

    /// Secrets setup owns (others may be placed by the image or by hand, and stay).
    static func isSetupSecret(_ name: String) -> Bool {
        name.hasPrefix("provider.") || name.hasPrefix("channel.") || name.hasPrefix("wifi.")
    }

    /// Back to unprovisioned: `box.toml` goes first (from then on the box is in setup mode,
    /// whatever else a power cut interrupts), then secrets, staged answers, local worker
    /// overrides and the applied settings. The database's history and the update version
    /// floor stay; the journal is cleared by the caller (it owns the connection).
    public func factoryReset() throws(SystemError) {
        if try removeFile(paths.boxConfig) { syncDirectory(parentDirectory(paths.boxConfig)) }
        // From here, what cannot be removed does not keep the rest: the first failure is thrown
        // after, so a secret left behind is never reported as reset.
        var failure: SystemError?
        for directory in [paths.secrets, paths.setupStaging] {
            do { try SecretStore(directory: directory).removeAll() } catch { failure = failure ?? error }
        }
        // The workers' copies too (the daemon stops them; a copy must not outlive the reset).
        for w in listDirectory(paths.credentials) {
            do { try removeCredentials(directory: paths.credentials + "/" + w) } catch { failure = failure ?? error }
        }
        for f in listDirectory(paths.localWorkers) {
            do { try removeFile(paths.localWorkers + "/" + f) } catch { failure = failure ?? error }
        }
        syncDirectory(paths.localWorkers)
        do { try applier.reset() } catch { failure = failure ?? error }
        if let failure { throw failure }
    }
}

// MARK: Seeds

/// Why a seed did not provision the box.
public enum SeedFailure: Error, CustomStringConvertible {
    /// The file itself: missing, a symlink, not a regular file, too large, unreadable.
    case file(String)
    /// What is wrong inside, every problem at once.
    case invalid(SetupErrors)
    /// Writing the result failed: while staging, nothing was replaced; a failed rename
    /// (`function == "rename"`) replaced the files before it.
    case system(SystemError)

    public var description: String {
        switch self {
        case .file(let m): return m
        case .invalid(let e): return e.description
        case .system(let e): return "could not apply the seed: \(e)"
        }
    }
}

extension Provisioner {
    /// Reads a seed file: a regular file, not through a symlink, at most `Seed.maxBytes`.
    public static func readSeed(_ path: String) -> Result<[UInt8], SeedFailure> {
        do {
            return .success(try readRegularFile(path, limit: Seed.maxBytes, followSymlinks: false))
        } catch {
            switch error {
            case .notRegular(_, "a symbolic link"):
                return .failure(.file("\(path): is a symbolic link; a seed must be a regular file (copy it instead)"))
            case .notRegular(_, let kind):
                return .failure(.file("\(path): \(kind), not a regular file; a seed is a TOML file (provisioning/README.md)"))
            case .tooLarge(_, let size?, _):
                return .failure(
                    .file("\(path): the file is \(size) bytes; a seed has at most \(Seed.maxBytes) bytes (1 MiB): is this the right file?"))
            case .tooLarge(_, nil, _):
                return .failure(.file("\(path): grew while read; at most \(Seed.maxBytes) bytes"))
            case .cannotOpen(_, let e), .readFailed(_, let e):
                return .failure(.file("\(path): \(String(cString: strerror(e)))"))
            }
        }
    }

    /// Parses, validates and commits a seed: all or nothing. `source` names it in the events.
    public func provision(seed bytes: [UInt8], path: String, tier: LocalLLMTier, source: String) -> Result<BoxConfig, SeedFailure> {
        switch Seed.parse(bytes: bytes, path: path, tier: tier, zoneExists: Provisioner.zoneCheck) {
        case .failure(let errors): return .failure(.invalid(errors))
        case .success(let (config, secrets)):
            do {
                try commit(config, secrets: secrets)
            } catch {
                return .failure(.system(error))
            }
            if let journal = try? SetupJournal(path: paths.database) {
                try? journal.clear()
                journal.record("setup.provisioned", "provisioned from \(source) as \(config.name)")
            }
            return .success(config)
        }
    }
}

/// Removes a worker's credentials directory (mode 0500 while in use: made writable first):
/// every file, then the directory; the first failure is thrown after trying them all.
public func removeCredentials(directory dir: String) throws(SystemError) {
    do {
        try syscall("chmod", detail: dir) { chmod(dir, 0o700) }
    } catch {
        if error.errno == ENOENT { return }
        throw error
    }
    var failure: SystemError?
    for f in listDirectory(dir) {
        do { try removeFile(dir + "/" + f) } catch { failure = failure ?? error }
    }
    if let failure { throw failure }
    do {
        try syscall("rmdir", detail: dir) { rmdir(dir) }
    } catch {
        if error.errno != ENOENT { throw error }
    }
}

/// Files replaced together: each is written under a temporary name first (`AtomicFile`:
/// write, fsync); `commit` makes the removals, then puts the files in place in the order they
/// were staged. `abandon` deletes what was staged: nothing was replaced.
final class FileTransaction {
    private enum Staged {
        case file(AtomicFile)
        case symlink(temporary: String, path: String)
    }
    private var staged: [Staged] = []
    private var removals: [String] = []

    func write(_ path: String, _ text: String, mode: mode_t = 0o644) throws(SystemError) {
        try write(path, Array(text.utf8), mode: mode)
    }

    func write(_ path: String, _ bytes: [UInt8], mode: mode_t) throws(SystemError) {
        try makeDirectories(parentDirectory(path))
        let file = try AtomicFile(path, mode: mode)
        try file.write(bytes)
        try file.finish()
        staged.append(.file(file))
    }

    func symlink(_ path: String, target: String) throws(SystemError) {
        try makeDirectories(parentDirectory(path))
        let tmp = path + AtomicFile.suffix
        removeFileBestEffort(tmp)  // left by a power cut; one that stays makes symlink fail with EEXIST
        _ = try syscall("symlink", detail: tmp) { Glibc.symlink(target, tmp) }
        staged.append(.symlink(temporary: tmp, path: path))
    }

    func remove(_ path: String) { removals.append(path) }

    func abandon() {
        for s in staged {
            switch s {
            case .file(let f): f.abandon()
            case .symlink(let tmp, _): removeFileBestEffort(tmp)
            }
        }
        staged = []
        removals = []
    }

    func commit() throws(SystemError) {
        var directories: [String] = []
        // Removals first: one that fails (a directory where a file should go) stops the commit
        // before anything is replaced, and no power cut can leave a file that was to go (an SSH
        // key, a Wi-Fi password) beside the configuration placed last.
        for r in removals {
            do {
                try removeFile(r)
            } catch {
                abandon()
                throw SystemError(
                    error.function, errno: error.errno, detail: "\(error.detail ?? "") (no file was replaced; run the same setup again)")
            }
            let dir = parentDirectory(r)
            if !directories.contains(dir) { directories.append(dir) }
        }
        for (i, s) in staged.enumerated() {
            let path: String
            do {
                switch s {
                case .file(let f):
                    path = f.path
                    try f.place()
                case .symlink(let tmp, let p):
                    path = p
                    try syscall("rename", detail: p) { rename(tmp, p) }
                }
            } catch {
                staged = Array(staged[i...])
                abandon()
                throw SystemError(
                    error.function, errno: error.errno,
                    detail: "\(error.detail ?? "") (the files before it were replaced; run the same setup again)")
            }
            let dir = parentDirectory(path)
            if !directories.contains(dir) { directories.append(dir) }
        }
        for d in directories { syncDirectory(d) }
        staged = []
        removals = []
    }
}

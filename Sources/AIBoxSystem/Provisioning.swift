import AIBoxCore
import CAIBoxOS
import Crypto
import Glibc

/// First boot on disk (issue 4): secrets, the setup journal, the settings applied to the
/// OS, and the commit that makes a box provisioned. A power cut at any instant leaves either
/// the old state or the new one: every file is written atomically, and `box.toml` — whose
/// presence is what "provisioned" means — is written last.

// MARK: Secrets

/// `var/lib/aibox/secrets/`: one file per secret, directory 0700, files 0600, written
/// atomically. The values go nowhere else (workers get copies of the ones they list).
public struct SecretStore {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    /// Names are file names: lower case, digits, `.`, `-`, `_`; no path, at most 128.
    public static func isValidName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 128, !name.hasPrefix("."), !name.contains("..") else { return false }
        return name.utf8.allSatisfy { c in
            (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2E || c == 0x2D || c == 0x5F
        }
    }

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
        guard SecretStore.isValidName(name), let bytes = readSmallFile(directory + "/" + name, limit: 64 << 10) else { return nil }
        return Secret(String(decoding: bytes, as: UTF8.self))
    }

    public func names() -> [String] { listDirectory(directory).filter { SecretStore.isValidName($0) }.sorted() }

    public func readAll() -> [String: Secret] {
        var out: [String: Secret] = [:]
        for n in names() { out[n] = read(n) }
        return out
    }

    public func remove(_ name: String) {
        guard SecretStore.isValidName(name) else { return }
        _ = unlink(directory + "/" + name)
    }

    public func removeAll() {
        for n in listDirectory(directory) { _ = unlink(directory + "/" + n) }
        syncDirectory(directory)
    }
}

func syncDirectory(_ path: String) {
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return }
    _ = fsync(fd)
    closeDescriptor(fd)
}

// MARK: The setup journal

/// Each finished step of the interactive setup, in SQLite (`setup_journal`): a power cut
/// resumes at the first unfinished step with the earlier answers as defaults. Secret answers
/// are journaled by name; their values wait in `var/lib/aibox/setup/` (a `SecretStore`).
public final class SetupJournal {
    let db: SQLiteConnection

    public init(path: String) throws(SQLiteError) {
        // Beside the daemon's writes: wait for them rather than fail.
        db = try Store.connect(path, busyTimeoutMilliseconds: 2000)
        _ = try Schema.migrate(db)
    }

    public func load() -> [WizardStepRecord] {
        guard let rows = try? db.query("SELECT step, key, kind, value FROM setup_journal ORDER BY ordinal, position") else { return [] }
        var records: [WizardStepRecord] = []
        for r in rows {
            guard let step = r[0].string.flatMap(SetupStep.init(rawValue:)), let key = r[1].string, let kind = r[2].string else { continue }
            let text = r[3].string ?? ""
            let value: WizardAnswer.Value
            switch kind {
            case "text": value = .text(text)
            case "skipped": value = .skipped
            case "secret": value = .secret(name: text)
            case "password-hash": value = .passwordHash(text)
            default: continue
            }
            if records.last?.step != step { records.append(WizardStepRecord(step: step, answers: [])) }
            records[records.count - 1].answers.append(WizardAnswer(key: key, value: value))
        }
        return records
    }

    /// Replaces the journaled answers of `record.step`, in one transaction.
    public func save(_ record: WizardStepRecord) throws(SQLiteError) {
        try db.transaction { () throws(SQLiteError) in
            try db.query("DELETE FROM setup_journal WHERE step = ?", [.text(record.step.rawValue)])
            for (i, a) in record.answers.enumerated() {
                let (kind, value): (String, String?)
                switch a.value {
                case .text(let t): (kind, value) = ("text", t)
                case .skipped: (kind, value) = ("skipped", nil)
                case .secret(let name): (kind, value) = ("secret", name)
                case .passwordHash(let h): (kind, value) = ("password-hash", h)
                }
                try db.query(
                    "INSERT INTO setup_journal(step, ordinal, position, key, kind, value) VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        .text(record.step.rawValue), .integer(Int64(record.step.number)), .integer(Int64(i)), .text(a.key), .text(kind),
                        SQLiteValue(value),
                    ])
            }
        }
    }

    /// Forgets the steps not in `keep` (Ctrl-C: what this run added).
    public func retain(_ keep: Set<SetupStep>) throws(SQLiteError) {
        for s in SetupStep.allCases where !keep.contains(s) {
            try db.query("DELETE FROM setup_journal WHERE step = ?", [.text(s.rawValue)])
        }
    }

    public func clear() throws(SQLiteError) { try db.query("DELETE FROM setup_journal") }

    /// An event row, as the daemon writes them (`aibox events` shows both).
    public func record(_ kind: String, _ message: String) {
        _ = try? db.query(
            "INSERT INTO events(at, kind, worker, message) VALUES (?, ?, NULL, ?)",
            [.integer(Clock.wallMilliseconds()), .text(kind), .text(message)])
    }
}

// MARK: Applying settings

/// Writes the box's settings where the OS reads them: hostname, time zone,
/// systemd-networkd and wpa_supplicant files, the admin's SSH keys. Under a `--root` other
/// than `/` only the files are written (tests check them); on the box itself the running
/// system is told too (sethostname, `networkctl reload`, `chpasswd -e`).
public struct SettingsApplier {
    public let paths: Paths
    /// The Wi-Fi interface wpa_supplicant is started on (`wpa_supplicant@IFACE`).
    public var wifiInterface: String

    public init(paths: Paths, wifiInterface: String = "wlan0") {
        self.paths = paths
        self.wifiInterface = wifiInterface
    }

    var live: Bool { paths.root == "/" }
    static let marker = "# Written by aibox setup (etc/aibox/box.toml); aibox factory-reset removes it.\n"

    public var wiredNetworkFile: String { paths.under("etc/systemd/network/20-aibox-wired.network") }
    public var wirelessNetworkFile: String { paths.under("etc/systemd/network/25-aibox-wireless.network") }
    public var wpaFile: String { paths.under("etc/wpa_supplicant/wpa_supplicant-\(wifiInterface).conf") }
    public var sshDropIn: String { paths.under("etc/ssh/sshd_config.d/50-aibox.conf") }
    public var adminKeys: String { paths.under("etc/aibox/ssh/admin.keys") }

    /// Every file this writes, for factory-reset.
    public var ownedFiles: [String] { [wiredNetworkFile, wirelessNetworkFile, wpaFile, sshDropIn, adminKeys] }

    /// Writes the settings (each file atomically) and tells the running system.
    public func apply(_ c: BoxConfig, secrets: [String: Secret]) throws(SystemError) {
        let tx = FileTransaction()
        do throws(SystemError) {
            try stage(c, secrets: secrets, into: tx)
        } catch {
            tx.abandon()
            throw error
        }
        try tx.commit()
        tellRunningSystem(c)
    }

    /// Stages every file of the settings in `tx` (written under temporary names; nothing
    /// replaced until the transaction commits).
    func stage(_ c: BoxConfig, secrets: [String: Secret], into tx: FileTransaction) throws(SystemError) {
        try tx.write(paths.under("etc/hostname"), c.name + "\n")
        try tx.write(paths.under("etc/timezone"), c.timezone + "\n")
        try tx.symlink(paths.under("etc/localtime"), target: "/usr/share/zoneinfo/" + c.timezone)

        var wired = SettingsApplier.marker + "[Match]\nType=ether\n\n[Network]\n"
        switch c.network.wired {
        case .dhcp: wired += "DHCP=yes\n"
        case .static(let s):
            wired += "Address=\(s.address)/\(s.prefix)\n"
            if let g = s.gateway { wired += "Gateway=\(g)\n" }
            for d in s.dns { wired += "DNS=\(d)\n" }
        }
        try tx.write(wiredNetworkFile, wired)

        if let wifi = c.network.wifi {
            try tx.write(wirelessNetworkFile, SettingsApplier.marker + "[Match]\nType=wlan\n\n[Network]\nDHCP=yes\n")
            var conf =
                SettingsApplier.marker + "ctrl_interface=/run/wpa_supplicant\nupdate_config=0\ncountry=\(wifi.country)\n\nnetwork={\n"
            // The SSID in hex (any bytes, no quoting); the passphrase as its PSK, never in clear.
            conf += "    ssid=\(hex(Array(wifi.ssid.utf8)))\n"
            if let name = wifi.passphraseSecret, let pass = secrets[name] {
                conf += "    psk=\(hex(WPA.psk(passphrase: pass, ssid: wifi.ssid)))\n"
            } else {
                conf += "    key_mgmt=NONE\n"
            }
            conf += "}\n"
            try tx.write(wpaFile, conf, mode: 0o600)
        } else {
            tx.remove(wirelessNetworkFile)
            tx.remove(wpaFile)
        }

        if c.admin.sshKeys.isEmpty {
            tx.remove(adminKeys)
        } else {
            try tx.write(adminKeys, c.admin.sshKeys.joined(separator: "\n") + "\n")
        }
        try tx.write(
            sshDropIn,
            SettingsApplier.marker + "Match User admin\n    AuthorizedKeysFile .ssh/authorized_keys /etc/aibox/ssh/admin.keys\n")
    }

    /// On the box itself (root `/`): the running system learns the new settings.
    func tellRunningSystem(_ c: BoxConfig) {
        guard live else { return }
        _ = c.name.withCString { sethostname($0, strlen($0)) }
        if let hash = c.admin.passwordHash { _ = runProgram(["/usr/sbin/chpasswd", "-e"], input: "admin:\(hash)\n") }
        if fileExists("/usr/bin/networkctl") { _ = runProgram(["/usr/bin/networkctl", "reload"], input: nil) }
    }

    /// Back to the image's defaults: the files this wrote are removed, name and zone reset.
    public func reset() throws(SystemError) {
        let tx = FileTransaction()
        for f in ownedFiles { tx.remove(f) }
        do throws(SystemError) {
            try tx.write(paths.under("etc/hostname"), BoxConfig.defaultName + "\n")
            try tx.write(paths.under("etc/timezone"), BoxConfig.defaultTimezone + "\n")
            try tx.symlink(paths.under("etc/localtime"), target: "/usr/share/zoneinfo/" + BoxConfig.defaultTimezone)
        } catch {
            tx.abandon()
            throw error
        }
        try tx.commit()
    }

}

func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count * 2)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0xF)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// WPA2-Personal: the 256-bit PSK is PBKDF2-HMAC-SHA1(passphrase, SSID, 4096 rounds), as
/// IEEE 802.11i defines it and `wpa_passphrase` computes it.
enum WPA {
    static func psk(passphrase: Secret, ssid: String) -> [UInt8] {
        let key = SymmetricKey(data: Array(passphrase.reveal().utf8))
        var out: [UInt8] = []
        for block in UInt32(1)...2 {
            var u = Array(HMAC<Insecure.SHA1>.authenticationCode(for: Array(ssid.utf8) + block.bigEndianBytes, using: key))
            var t = u
            for _ in 1..<4096 {
                u = Array(HMAC<Insecure.SHA1>.authenticationCode(for: u, using: key))
                for i in t.indices { t[i] ^= u[i] }
            }
            out += t
        }
        return Array(out.prefix(32))
    }
}

extension UInt32 {
    fileprivate var bigEndianBytes: [UInt8] { [UInt8(self >> 24), UInt8(self >> 16 & 0xFF), UInt8(self >> 8 & 0xFF), UInt8(self & 0xFF)] }
}

/// Runs a program to its end, feeding `input` on stdin; its exit status, or nil when it
/// could not start. For the few system tools setup asks on a real box.
@discardableResult
public func runProgram(_ argv: [String], input: String?) -> Int32? { captureProgram(argv, input: input).status }

// MARK: Provisioning

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
        let kept = Set(config.secretNames)
        for name in store.names() where Provisioner.isSetupSecret(name) && !kept.contains(name) { store.remove(name) }
        SecretStore(directory: paths.setupStaging).removeAll()
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
        if fileExists(paths.boxConfig) {
            _ = try syscall("unlink", detail: paths.boxConfig) { unlink(paths.boxConfig) }
            syncDirectory(parentDirectory(paths.boxConfig))
        }
        SecretStore(directory: paths.secrets).removeAll()
        SecretStore(directory: paths.setupStaging).removeAll()
        // The workers' copies too (the daemon stops them; a copy must not outlive the reset).
        for w in listDirectory(paths.credentials) { removeCredentialsDirectory(paths.credentials + "/" + w) }
        for f in listDirectory(paths.localWorkers) { _ = unlink(paths.localWorkers + "/" + f) }
        syncDirectory(paths.localWorkers)
        try applier.reset()
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
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        if fd < 0 {
            let e = errno
            if e == ELOOP { return .failure(.file("\(path): is a symbolic link; a seed must be a regular file (copy it instead)")) }
            return .failure(.file("\(path): \(String(cString: strerror(e)))"))
        }
        defer { closeDescriptor(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            return .failure(.file("\(path): not a regular file; a seed is a TOML file (provisioning/README.md)"))
        }
        guard st.st_size <= Seed.maxBytes else {
            return .failure(
                .file(
                    "\(path): the file is \(st.st_size) bytes; a seed has at most \(Seed.maxBytes) bytes (1 MiB): is this the right file?"))
        }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size) + 1)
        var total = 0
        while total < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + total, $0.count - total) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return .failure(.file("\(path): \(String(cString: strerror(errno)))")) }
            if n == 0 { break }
            total += n
        }
        guard total <= Seed.maxBytes else { return .failure(.file("\(path): grew while read; at most \(Seed.maxBytes) bytes")) }
        return .success(Array(bytes[0..<total]))
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

/// Removes a worker's credentials directory (mode 0500 while in use: made writable first).
public func removeCredentialsDirectory(_ dir: String) {
    _ = chmod(dir, 0o700)
    for f in listDirectory(dir) { _ = unlink(dir + "/" + f) }
    _ = rmdir(dir)
}

/// Files replaced together: each is written under a temporary name first (write, fsync);
/// `commit` renames them into place in the order they were staged, then makes the removals.
/// `abandon` deletes what was staged: nothing was replaced.
final class FileTransaction {
    private var staged: [(temporary: String, path: String)] = []
    private var removals: [String] = []
    static let suffix = ".aibox-new"

    func write(_ path: String, _ text: String, mode: mode_t = 0o644) throws(SystemError) {
        try write(path, Array(text.utf8), mode: mode)
    }

    func write(_ path: String, _ bytes: [UInt8], mode: mode_t) throws(SystemError) {
        try makeDirectories(parentDirectory(path))
        let tmp = path + FileTransaction.suffix
        staged.append((tmp, path))
        let fd = try syscall("open", detail: tmp) { open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode) }
        defer { closeDescriptor(fd) }
        _ = fchmod(fd, mode)  // O_CREAT's mode does not apply to a file left by an earlier attempt
        try writeAll(fd, bytes)
        _ = try syscall("fsync", detail: tmp) { fsync(fd) }
    }

    func symlink(_ path: String, target: String) throws(SystemError) {
        try makeDirectories(parentDirectory(path))
        let tmp = path + FileTransaction.suffix
        staged.append((tmp, path))
        _ = unlink(tmp)
        _ = try syscall("symlink", detail: tmp) { Glibc.symlink(target, tmp) }
    }

    func remove(_ path: String) { removals.append(path) }

    func abandon() {
        for s in staged { _ = unlink(s.temporary) }
        staged = []
        removals = []
    }

    func commit() throws(SystemError) {
        var directories: [String] = []
        for (i, s) in staged.enumerated() {
            guard rename(s.temporary, s.path) == 0 else {
                let e = errno
                for rest in staged[i...] { _ = unlink(rest.temporary) }
                throw SystemError("rename", errno: e, detail: "\(s.path) (the files before it were replaced; run the same setup again)")
            }
            let dir = parentDirectory(s.path)
            if !directories.contains(dir) { directories.append(dir) }
        }
        for r in removals {
            _ = unlink(r)
            let dir = parentDirectory(r)
            if !directories.contains(dir) { directories.append(dir) }
        }
        for d in directories { syncDirectory(d) }
        staged = []
        removals = []
    }
}

import AIBoxCore
import CAIBoxOS
import Crypto
import Glibc

/// Installing an update bundle into the inactive slot (issue 5): the bundle streams through
/// `BundleStreamVerifier` (header and signature first), its payload into the slot while it
/// is hashed; the slot is read back and hashed again; only then is it made primary on trial.
/// The target slot is marked bad before its first byte is written, so no interruption ever
/// leaves a half-written slot bootable — or the other slot touched.

/// The update journal: the flow's rows in the database's meta table (`UpdateFlow.journalValues`),
/// written with an event in one transaction at every transition, so that a SIGKILL at any
/// point leaves the state before or after it; the boot environment settles the rest.
public final class UpdateJournal {
    let db: SQLiteConnection

    public init(path: String) throws(SQLiteError) {
        db = try Store.connect(path, busyTimeoutMilliseconds: 2000)
        _ = try Schema.migrate(db)
    }

    public func value(_ key: String) -> String? {
        try? db.query("SELECT value FROM meta WHERE key = ?", [.text(key)]).first?.first?.string
    }

    /// The flow as the journal holds it.
    public func load(slots: [SlotName]) throws(SQLiteError) -> UpdateFlow {
        var rows: [String: String] = [:]
        for row in try db.query("SELECT key, value FROM meta WHERE key LIKE 'update.%'") {
            if let k = row.first?.string, let v = row.dropFirst().first?.string { rows[k] = v }
        }
        return UpdateFlow(journal: rows, slots: slots)
    }

    /// The flow's state written, with its event, in one transaction.
    public func save(_ flow: UpdateFlow, slots: [SlotName], note: UpdateNote?) throws(SQLiteError) {
        try set(flow.journalValues(slots: slots), note: note)
    }

    public func set(_ values: [String: String?], note: UpdateNote? = nil) throws(SQLiteError) {
        try db.transaction { () throws(SQLiteError) in
            for (k, v) in values.sorted(by: { $0.key < $1.key }) {
                if let v {
                    try db.query("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", [.text(k), .text(v)])
                } else {
                    try db.query("DELETE FROM meta WHERE key = ?", [.text(k)])
                }
            }
            if let note { try insert(note) }
        }
    }

    /// The floor's copy in the database (where boxes kept it before the floor file).
    public var databaseFloor: SemanticVersion? { value("update.floor").flatMap(SemanticVersion.init) }
    public func slotVersion(_ slot: SlotName) -> String? { value("update.slot.\(slot).version") }

    /// An event; a database that cannot take it is no reason to stop an update.
    public func record(_ kind: String, _ message: String) { try? insert(UpdateNote(kind, message)) }

    private func insert(_ note: UpdateNote) throws(SQLiteError) {
        try db.query(
            "INSERT INTO events(at, kind, worker, message) VALUES (?, ?, NULL, ?)",
            [.integer(Clock.wallMilliseconds()), .text(note.kind), .text(note.message)])
    }
}

public struct UpdateError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ d: String) { description = d }
}

/// Progress of an install, for the terminal.
public struct InstallProgress: Sendable {
    public var bytes: UInt64
    public var total: UInt64
}

/// What an install tells its caller while it runs.
public enum InstallReport: Sendable {
    case progress(InstallProgress)
    case retry(DownloadRetry)
}

/// Everything an install needs, resolved under `paths`' root.
public struct UpdateContext {
    public let paths: Paths
    public let system: SystemDescription
    public let control: BootControl

    public static func load(_ paths: Paths) throws(UpdateError) -> UpdateContext {
        let path = paths.under("usr/lib/aibox/system.toml")
        guard let text = readTextFile(path) else {
            throw UpdateError(
                "no system description at \(path): the image says there which slots the box has and how it boots "
                    + "(compatible, bootloader, [slot.A] and [slot.B]; docs/UPDATES.md)")
        }
        switch SystemDescription.parse(text, path: path) {
        case .failure(let errors): throw UpdateError("\(path) is not valid:\n\(errors)")
        case .success(let system): return UpdateContext(paths: paths, system: system, control: system.bootControl(paths))
        }
    }

    /// A slot's device, under the root (image files in development).
    public func device(_ slot: SystemDescription.Slot) -> String { paths.under(String(slot.device.dropFirst())) }

    public var slotNames: [SlotName] { system.slots.map(\.name) }

    /// The running image's stamp (os-release IMAGE_VERSION, written by image/build): the
    /// version of what the booted slot holds. nil in a development root without one.
    public func stampedVersion() -> SemanticVersion? {
        for file in ["etc/os-release", "usr/lib/os-release"] {
            if let text = readTextFile(paths.under(file)) { return ImageStamp.version(osRelease: text) }
        }
        return nil
    }

    /// The booted slot's stamp recorded as its version in the journal (before an agent loads
    /// the flow from it): the factory slot's version is known without an install, and stays
    /// known while the other slot runs. Best effort: a journal that cannot take it changes nothing else.
    public func recordStampedVersion(in journal: UpdateJournal) {
        guard let version = stampedVersion(), let booted = try? bootedSlot(),
            journal.slotVersion(booted) != version.description
        else { return }
        try? journal.set(["update.slot.\(booted).version": version.description])
    }

    /// The slot running now. When nothing records it (a development root before its first
    /// simulated boot), the slot the boot loader would have chosen before any trial: the
    /// first good one.
    public func bootedSlot() throws(UpdateError) -> SlotName {
        if let b = control.booted() { return b }
        let env = try loadEnvironment()
        return env.order.first { env.state(of: $0) == .good } ?? env.primary ?? "A"
    }

    public func loadEnvironment() throws(UpdateError) -> BootEnvironment {
        do {
            return try control.load()
        } catch {
            throw UpdateError("cannot read the boot environment: \(error)")
        }
    }
}

public enum Installer {
    /// Installs the bundle into the slot not booted, each step through the agent's flow; the
    /// caller holds the update lock. Returns the slot and version.
    public static func install(
        _ source: BundleSource, agent: UpdateAgent, report: @escaping (InstallReport) -> Void
    ) throws(UpdateError) -> (slot: SlotName, version: SemanticVersion) {
        let context = agent.context
        let booted = try context.bootedSlot()
        guard let target = context.system.slots.first(where: { $0.name != booted }) else {
            throw UpdateError("no slot other than the booted one (\(booted)) in the system description")
        }
        let keyring: Keyring
        do {
            keyring = try Keyring.load(directory: context.paths.under("usr/lib/aibox/keys"))
        } catch {
            throw UpdateError("\(error)")
        }
        agent.holdsInstallLock = true
        try agent.handle(.installStarting(source, target: target.name))
        do {
            let makeSession = { InstallSession(target: target, agent: agent, keyring: keyring, report: report) }
            let ca = context.system.updateCA.map { context.paths.under(String($0.dropFirst())) }
            let version: SemanticVersion
            switch source {
            case .url(let url): version = try download(url, ca: ca, makeSession: makeSession, report: report)
            case .file(let path): version = try readFile(path, session: makeSession())
            }
            try agent.handle(.installVerified(tries: context.system.bootTries))
            return (target.name, version)
        } catch {
            let message = (error as? UpdateError)?.description ?? "\(error)"
            _ = try? agent.handle(.installFailed(message))
            throw UpdateError(message)
        }
    }

    static func readFile(_ path: String, session: InstallSession) throws -> SemanticVersion {
        let fd: Int32
        do throws(SystemError) {
            fd = try syscall("open", detail: path) { open(path, O_RDONLY | O_CLOEXEC) }
        } catch {
            throw UpdateError("cannot open \(path): \(error.reason)")
        }
        defer { closeDescriptor(fd) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n: Int
            do throws(SystemError) {
                n = try syscall("read", detail: path) { read(fd, buffer.baseAddress, buffer.count) }
            } catch {
                throw UpdateError("reading the bundle: \(error.reason)")
            }
            if n == 0 { break }
            try session.consume(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
        return try session.finish()
    }

    /// Download tuning: how long to wait for a connection, how long a stalled transfer may
    /// hang before it is cut, how often a cut transfer is resumed (`Downloader`'s).
    public static let connectTimeoutSeconds = 15
    public static let stallTimeoutSeconds = 30
    public static let retries = 6

    /// Streams a URL into the session through the shared download loop (`Downloader`): a
    /// cut transfer resumes with a Range request from the last byte taken; a server that
    /// answers a resume with the whole file makes the install start over. A bundle error
    /// stops at once.
    static func download(
        _ url: String, ca: String?, makeSession: @escaping () -> InstallSession, report: (InstallReport) -> Void
    ) throws -> SemanticVersion {
        let sink = InstallSink(makeSession: makeSession)
        var downloader = Downloader(url: url, caFile: ca)
        downloader.connectTimeoutSeconds = connectTimeoutSeconds
        downloader.stallTimeoutSeconds = stallTimeoutSeconds
        downloader.retries = retries
        do {
            try downloader.run(into: sink) { retry in
                sink.session.agent.journal.record("update.download-retry", retry.description)
                report(.retry(retry))
            }
        } catch let e as DownloadError {
            throw UpdateError(e.description)
        }
        return try sink.session.finish()
    }
}

/// The download loop's view of an install: a resume continues the session; starting over
/// (the server ignored the Range request) begins a new one.
final class InstallSink: DownloadSink {
    private let makeSession: () -> InstallSession
    private(set) var session: InstallSession

    init(makeSession: @escaping () -> InstallSession) {
        self.makeSession = makeSession
        session = makeSession()
    }

    var position: UInt64 { session.position }
    func consume(_ bytes: UnsafeRawBufferPointer) throws { try session.consume(bytes) }
    func startOver() throws { session = makeSession() }
}

/// One pass of a bundle through the verifier into the slot.
final class InstallSession {
    let target: SystemDescription.Slot
    let agent: UpdateAgent
    let report: (InstallReport) -> Void
    var verifier: BundleStreamVerifier
    var slot: SlotWriter?
    var manifest: BundleManifest?
    var total: UInt64 = 0
    var done: UInt64 = 0

    init(target: SystemDescription.Slot, agent: UpdateAgent, keyring: Keyring, report: @escaping (InstallReport) -> Void) {
        self.target = target
        self.agent = agent
        self.report = report
        verifier = BundleStreamVerifier(keyring: keyring)
    }

    /// Bytes of the bundle taken so far (where a resumed download continues).
    var position: UInt64 { verifier.position }

    func consume(_ bytes: UnsafeRawBufferPointer) throws {
        var v = verifier
        defer { verifier = v }
        try v.consume(bytes) { event in
            switch event {
            case .header(let bundle):
                try Installer.check(bundle.manifest, agent: agent)
                guard bundle.manifest.images.count == 1, let image = bundle.manifest.images.first, image.slotClass == "rootfs" else {
                    throw UpdateError(
                        "this box has rootfs slots only; the bundle has \(bundle.manifest.images.map(\.slotClass).joined(separator: ", "))")
                }
                // The target becomes bad before its first byte is written.
                try agent.handle(.headerVerified(bundle.manifest.version))
                slot = try SlotWriter(device: agent.context.device(target), size: image.size)
                manifest = bundle.manifest
                total = image.size
            case .payload(_, let offset, let bytes):
                try slot?.write(bytes, at: offset)
                done += UInt64(bytes.count)
                report(.progress(InstallProgress(bytes: done, total: total)))
            case .imageVerified(let index):
                guard let s = slot, let m = manifest else { return }
                try s.finishAndVerify(sha256: m.images[index].sha256)
            }
        }
    }

    func finish() throws -> SemanticVersion {
        var v = verifier
        _ = try v.finish()
        verifier = v
        guard let version = manifest?.version else { throw UpdateError("the bundle had no header") }
        return version
    }
}

extension Installer {
    /// Whether an install holds the update lock now.
    public static func isRunning(_ paths: Paths) -> Bool {
        guard fileExists(paths.updateLock) else { return false }
        return (try? ProcessLock(path: paths.updateLock)) == nil ? true : false
    }

    /// compatible, and the version floor (an older version only as a signed rollback; an
    /// unreadable floor file lets nothing else through): UpdatePolicy's rule, before any byte
    /// reaches the slot.
    static func check(_ m: BundleManifest, agent: UpdateAgent) throws(UpdateError) {
        if case .failure(let refusal) = UpdatePolicy.check(m, compatible: agent.context.system.compatible, floor: agent.readFloor()) {
            throw UpdateError(refusal.message)
        }
    }
}

/// Writes a payload into a slot (a block device or an image file), then reads it back.
final class SlotWriter {
    let device: String
    let fd: Int32
    let size: UInt64

    init(device: String, size: UInt64) throws(UpdateError) {
        self.device = device
        self.size = size
        // Not there yet (or not to be looked at): an image file, created.
        let isBlock = (try? fileStatus(device)).map { $0.st_mode & S_IFMT == S_IFBLK } ?? false
        let flags = O_WRONLY | O_CLOEXEC | (isBlock ? 0 : O_CREAT | O_NOFOLLOW)
        let fd: Int32
        do throws(SystemError) {
            fd = try syscall("open", detail: device) { open(device, flags, 0o600) }
        } catch {
            throw UpdateError("cannot open the slot \(device): \(error.reason)")
        }
        if isBlock {
            var capacity: UInt64 = 0
            // A size that cannot be read is not checked here: a write past the end fails with ENOSPC.
            if (try? syscall("ioctl(BLKGETSIZE64)", detail: device) { aibox_block_device_size(fd, &capacity) }) != nil, capacity < size {
                closeDescriptor(fd)
                throw UpdateError("the image is \(size) bytes; the slot \(device) holds \(capacity)")
            }
        } else {
            // An image file: as long as the image, with the space taken now (a full disk fails here, not half-way).
            do throws(SystemError) {
                try syscall("ftruncate", detail: device) { ftruncate(fd, 0) }
            } catch {
                closeDescriptor(fd)
                throw UpdateError("cannot write the slot \(device): \(error.reason)")
            }
            do throws(SystemError) {
                try syscallReturningError("posix_fallocate", detail: device) { posix_fallocate(fd, 0, off_t(size)) }
            } catch {
                closeDescriptor(fd)
                throw UpdateError("no room for the image in \(device): \(size) bytes needed (\(error.reason)); nothing was installed")
            }
        }
        // Set only now: a throw after every property is set would run deinit, which would
        // close it a second time.
        self.fd = fd
    }

    deinit { closeDescriptor(fd) }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(UpdateError) {
        var done = 0
        while done < bytes.count {
            let n: Int
            do throws(SystemError) {
                n = try syscall("pwrite", detail: device) {
                    pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
                }
            } catch {
                throw UpdateError("writing the slot \(device) at byte \(offset + UInt64(done)): \(error.reason)")
            }
            // A device that takes nothing more is full.
            guard n > 0 else {
                throw UpdateError("writing the slot \(device) at byte \(offset + UInt64(done)): \(String(cString: strerror(ENOSPC)))")
            }
            done += n
        }
    }

    /// fsync, then the slot read back from the device and hashed again.
    func finishAndVerify(sha256 expected: String) throws(UpdateError) {
        do throws(SystemError) {
            try syscall("fsync", detail: device) { fsync(fd) }
        } catch {
            throw UpdateError("fsync of the slot \(device): \(error.reason)")
        }
        let r: Int32
        do throws(SystemError) {
            r = try syscall("open", detail: device) { open(device, O_RDONLY | O_CLOEXEC) }
        } catch {
            throw UpdateError("cannot read the slot \(device) back: \(error.reason)")
        }
        defer { closeDescriptor(r) }
        // Not from the page cache where the device allows: what the boot loader will read.
        // Advice only: where it is not taken, the page cache is read.
        _ = try? syscallReturningError("posix_fadvise", detail: device) { posix_fadvise(r, 0, 0, POSIX_FADV_DONTNEED) }
        var hasher = SHA256()
        var left = size
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while left > 0 {
            let n: Int
            do throws(SystemError) {
                n = try syscall("read", detail: device) { read(r, &buffer, Int(min(UInt64(buffer.count), left))) }
            } catch {
                throw UpdateError("reading the slot \(device) back: \(error.reason)")
            }
            guard n > 0 else { throw UpdateError("reading the slot \(device) back: it ended \(left) bytes early") }
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            left -= UInt64(n)
        }
        let digest = BundleLayout.hex(Array(hasher.finalize()))
        guard digest == expected else {
            throw UpdateError(
                "the slot \(device) read back does not match the image (sha256 \(digest), expected \(expected)): not activated")
        }
    }
}

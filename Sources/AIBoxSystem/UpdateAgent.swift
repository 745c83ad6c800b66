import AIBoxCore
import Glibc

/// The update flow's hands (issue 9): it reads what the flow needs to see (the boot
/// environment, the booted slot, the update lock, the version floor), hands `UpdateFlow` the
/// event, and performs the actions it returns — boot environment writes, the floor, the
/// journal, a reboot. The installer, the daemon's trial and `aibox update` all go through it.
public final class UpdateAgent {
    public let context: UpdateContext
    public let journal: UpdateJournal
    public let rebooter: Rebooter
    /// Set by the installer (which holds the update lock): its own lock is no sign of another
    /// installer.
    public var holdsInstallLock = false
    public private(set) var flow = UpdateFlow()
    /// What could not be done but did not stop the rest: a floor not written, a journal entry
    /// lost. Each also an event where the database takes it; the caller reports them.
    private var problems: [String] = []
    /// The outcome of the last reboot action.
    public private(set) var lastReboot: Rebooter.Outcome?

    public init(context: UpdateContext, journal: UpdateJournal, rebooter: Rebooter) {
        self.context = context
        self.journal = journal
        self.rebooter = rebooter
    }

    /// The problems since the last call (see `problems`).
    public func takeProblems() -> [String] {
        defer { problems = [] }
        return problems
    }

    public var floorFile: String { context.paths.under(VersionFloor.fileName) }

    /// The floor as read now: the file, and the database's copy.
    public func readFloor() -> VersionFloor {
        VersionFloor(file: VersionFloorStore.read(floorFile), database: journal.databaseFloor)
    }

    public func observe() throws(UpdateError) -> UpdateObservation {
        UpdateObservation(
            booted: try context.bootedSlot(), env: try context.loadEnvironment(),
            installerRunning: !holdsInstallLock && Installer.isRunning(context.paths), floor: readFloor())
    }

    private func load() throws(UpdateError) {
        do {
            flow = try journal.load(slots: context.slotNames)
        } catch {
            throw UpdateError("cannot read the update journal: \(error)")
        }
    }

    /// The journal made to agree with the boot (status, the daemon's start, before any event).
    @discardableResult
    public func reconcile() throws(UpdateError) -> UpdateState {
        try load()
        let seen = try observe()
        try perform(flow.reconcile(seen))
        return flow.state
    }

    /// An event: the journal read again and reconciled, then the event — but for the
    /// installer's own steps, which go on from the flow its start left. Returns the actions
    /// performed (none: nothing to do).
    @discardableResult
    public func handle(_ event: UpdateEvent) throws(UpdateError) -> [UpdateAction] {
        switch event {
        case .headerVerified, .installVerified, .installFailed:
            break
        default:
            try reconcile()
        }
        let seen = try observe()
        let actions: [UpdateAction]
        do {
            actions = try flow.handle(event, seen: seen)
        } catch {
            throw UpdateError(error.description)
        }
        try perform(actions)
        return actions
    }

    /// Performs the flow's actions in order. A boot environment that cannot be written stops
    /// here (the journal still says what was true); the floor and the journal are reported.
    func perform(_ actions: [UpdateAction]) throws(UpdateError) {
        for action in actions {
            switch action {
            case .boot(let verbs):
                do {
                    try context.control.update { env in for v in verbs { env.apply(v) } }
                } catch {
                    throw UpdateError("cannot write the boot environment: \(error)")
                }
            case .raiseFloor(let v):
                writeFloor(v)
            case .save(let note):
                do {
                    try journal.save(flow, slots: context.slotNames, note: note)
                } catch {
                    problems.append("the update journal could not be written (\(error)); the boot environment has the truth")
                }
            case .reboot(let reason):
                lastReboot = rebooter.reboot(reason, journal: journal)
            }
        }
    }

    /// The floor file first (fsync'd: it outlives a database rebuilt after corruption), then
    /// the database's copy. A failure is an event and a problem, never silent.
    private func writeFloor(_ v: SemanticVersion) {
        do {
            try VersionFloorStore.write(v, to: floorFile)
        } catch {
            let message = "the version floor \(v) could not be written to \(floorFile): \(error)"
            problems.append(message)
            journal.record("update.floor-failed", message)
        }
        do {
            try journal.set(["update.floor": v.description])
        } catch {
            problems.append("the database's copy of the version floor \(v) could not be written: \(error)")
        }
    }
}

/// The floor file (var/lib/aibox/update-floor): read strictly, written atomically with fsync.
public enum VersionFloorStore {
    public static func read(_ path: String) -> VersionFloor.File {
        let found: stat?
        do {
            found = try fileStatus(path, followSymlinks: false)
        } catch {
            return .unreadable("\(error)")
        }
        guard let st = found else { return .absent }
        guard st.st_mode & S_IFMT == S_IFREG else { return .unreadable("\(path) is not a regular file") }
        guard let bytes = readSmallFile(path, limit: 4096) else { return .unreadable("\(path) cannot be read") }
        switch VersionFloorFile.decode(bytes) {
        case .success(let v): return .version(v)
        case .failure(let e): return .unreadable("\(path): \(e)")
        }
    }

    public static func write(_ v: SemanticVersion, to path: String) throws(SystemError) {
        try makeDirectories(parentDirectory(path))
        try writeFileAtomically(path, VersionFloorFile.encode(v), mode: 0o644)
    }
}

/// The one way an update reboots the box: `update install --reboot`, `update check --reboot`
/// and the daemon after a failed trial. A worker holding `run/aibox/reboot.inhibit` (a shared
/// flock while it does important work) defers it; on the box it is systemd's orderly reboot;
/// under another `--root` there is no machine to reboot: the request is an event, and the
/// test kit's boot simulator does what the boot loader would.
public struct Rebooter: Sendable {
    public enum Outcome: Equatable, Sendable, CustomStringConvertible {
        case rebooting
        /// Under a `--root` other than `/`.
        case requested
        case deferred
        case failed(String)

        public var description: String {
            switch self {
            case .rebooting: return "rebooting"
            case .requested: return "reboot requested (under --root nothing reboots)"
            case .deferred: return "reboot deferred: a worker holds run/aibox/reboot.inhibit"
            case .failed(let why): return "the reboot failed: \(why)"
            }
        }
    }

    public let paths: Paths

    public init(paths: Paths) { self.paths = paths }

    public var inhibitFile: String { paths.under("run/aibox/reboot.inhibit") }

    /// Reboots unless inhibited; every outcome an event.
    public func reboot(_ reason: String, journal: UpdateJournal) -> Outcome {
        // Held (exclusive) until systemctl has queued the reboot: no worker starts important
        // work in between.
        let lock: ProcessLock?
        do {
            try makeDirectories(parentDirectory(inhibitFile))
            lock = try ProcessLock(path: inhibitFile)
        } catch {
            journal.record("update.reboot-failed", "\(reason); \(inhibitFile): \(error)")
            return .failed("\(inhibitFile): \(error)")
        }
        guard let lock else {
            journal.record("update.reboot-deferred", "a worker holds \(inhibitFile): the reboot waits (\(reason))")
            return .deferred
        }
        defer { withExtendedLifetime(lock) {} }
        journal.record("update.reboot-requested", reason)
        guard paths.root == "/" else { return .requested }
        let status = runProgram(["/usr/bin/systemctl", "reboot"], input: nil)
        guard status == 0 else {
            let why = "systemctl reboot \(status.map { "exited with \($0)" } ?? "could not be started")"
            journal.record("update.reboot-failed", why)
            return .failed(why)
        }
        return .rebooting
    }

    /// Whether a worker holds the inhibit now (the daemon's retry of a deferred reboot).
    public var isInhibited: Bool {
        guard fileExists(inhibitFile) else { return false }
        do {
            return try ProcessLock(path: inhibitFile) == nil
        } catch {
            return false  // nobody can hold what cannot be opened
        }
    }
}

import AIBoxCore
import AIBoxSystem
import Glibc
import Logging

/// Where captured output goes.
public enum LogTarget: String, Sendable {
    case journal, files
}

public struct DaemonOptions: Sendable {
    public var paths: Paths
    public var logTarget: LogTarget
    public var environment: [String: String]
    /// How often memory-max is checked (a scan of /proc).
    public var memoryCheckInterval: Duration = .seconds(2)
    /// How often the files of `requires-files` are looked at for workers that wait for them.
    public var fileCheckInterval: Duration = .seconds(2)

    public init(paths: Paths, logTarget: LogTarget, environment: [String: String]) {
        self.paths = paths
        self.logTarget = logTarget
        self.environment = environment
    }
}

/// A worker's machine plus what the OS side holds for it.
final class WorkerSlot {
    /// Every change of the machine's deadline reaches the supervisor's queue of deadlines.
    var machine: WorkerMachine {
        didSet { deadlines.set(name, machine.deadline) }
    }
    let name: String
    private let deadlines: DeadlineQueue
    var pgid: Int32?
    var startTime: UInt64?
    var logFD: Int32 = -1
    var log: RotatingLog?
    var removeWhenStopped = false
    /// A copy of its secrets may be in run/aibox/credentials (unknown at start: a previous run's).
    var credentialsMayExist = true
    /// cgroup v2: the cgroup is made (at the first start) and these limits are written in it.
    var cgroupMade = false
    var appliedLimits: [String: String] = [:]
    /// cgroup.kill was written to it: it is made anew before the next start (see `SpawnRequest.cgroupByWrite`).
    var cgroupKilled = false
    /// The spawner's form of its definition (see `preparedSpawn`), kept from its first restart
    /// on; nil when the definition changes.
    var prepared: PreparedSpawn?
    var startedBefore = false
    /// cgroup v2: the main process has exited but processes are left in the cgroup; the exit
    /// reaches the machine once the cgroup is empty (or at `emptyDeadline`, whatever is left).
    var pendingExit: (status: ExitStatus, at: Instant)?
    var emptyDeadline: Instant?
    var pressure = PressureWatch()

    init(machine: WorkerMachine, deadlines: DeadlineQueue) {
        self.machine = machine
        self.name = machine.definition.name
        self.deadlines = deadlines
        deadlines.set(name, machine.deadline)
    }
}

/// The supervisor: one event loop that owns every worker's state machine and performs
/// their actions — spawn, signal, record.
public final class Supervisor {
    let options: DaemonOptions
    let paths: Paths
    let loop: EventLoop
    let store: Store
    let logger: Logger
    let manager: ServiceManagerNotifier
    var notifySocket: NotifySocket?
    var control: ControlListener?
    /// Each granted worker's own control socket (Supervisor+WorkerControl).
    var workerControls: [String: WorkerControl] = [:]
    /// An update check someone asked for, while it runs.
    var requestedUpdate: RequestedUpdate?
    var definitions: [WorkerDefinition] = [] {
        didSet {
            memoryLimited = definitions.contains { $0.memoryMax != nil }
            filesRequired = definitions.contains { !$0.requiresFiles.isEmpty }
        }
    }
    /// Some worker has `memory-max`: known when the definitions change, not looked up each turn.
    private var memoryLimited = false
    /// Some worker has `requires-files`: the same.
    private var filesRequired = false
    var nextFileCheck: Instant?
    var slots: [String: WorkerSlot] = [:]
    /// Every worker's deadline, kept by its slot: the loop's next wake-up without a look at each worker.
    let deadlines = DeadlineQueue()
    /// Exited workers handled but not reaped yet (see `onChildren`).
    var unreaped: [Int32] = []
    var order: [String] = []
    var levels: [String: Int] = [:]
    var byPID: [Int32: String] = [:]
    /// Process groups whose leader exited but whose members may linger.
    var lingeringGroups: Set<Int32> = []
    /// Which containment is in force; `cgroups` is the tree when it is cgroup v2.
    var containment = Containment.processGroups(reason: "not set up yet")
    var cgroups: CgroupTree?
    var nextOrphanCheck: Instant?
    var nextPressureCheck: Instant?
    /// Workers whose exit waits for their cgroup to empty (`pendingExit`).
    var awaitingEmpty: Set<String> = []
    var shuttingDown = false
    var shutdownGiveUp: Instant?
    var nextManagerPing: Instant?
    var nextMemoryCheck: Instant?
    var configProblem: String?
    var configSkipped: [String] = []
    var lastManagerStatus = ""
    /// Set when a worker's state changed this turn: dependencies and STATUS= are rechecked.
    var stateChanged = true
    /// STATUS= for systemd is looked at with the turn's bookkeeping.
    var statusChanged = true
    /// Set when a deadline that has already passed was set this turn.
    var dueNow = false
    /// Log lines of this turn, written after its spawns.
    var pendingLog: [(Logger.Level, String)] = []
    /// A turn that spawned leaves its log lines and database write for this long, so that the
    /// new process has the CPU to start (the daemon, woken as the child execs, would
    /// otherwise take the child's CPU for them); never longer, however many turns spawn.
    static let bookkeepingDelay: Duration = .milliseconds(10)
    var spawnsThisTurn = 0
    var bookkeepingDue: Instant?
    /// Workers started since the last bookkeeping, whose start time is still to be read.
    var startTimesToRead: [String] = []
    /// While a worker's exit is handled and its restart spawned, its events and database row
    /// wait here (`holdRecords`), so that no message is formatted before the spawn;
    /// `releaseRecords` makes them, in order, right after the spawns of the turn.
    var holdRecords = false
    var heldRecords: [(at: Int64, worker: String, event: WorkerEvent)] = []
    var heldPersist: [String] = []
    /// The restart jitter's random numbers (SystemRandomNumberGenerator costs a getrandom per exit).
    var random = SplitMix64(seed: UInt64.random(in: .min ... .max))
    let bootID: String
    var connections = ControlConnections()
    /// Starting workers' `ready-http` checks (Supervisor+Readiness).
    var readiness: [String: ReadinessProbe] = [:]
    public private(set) var exitCode: Int32 = 0

    public init(options: DaemonOptions, logger: Logger) throws {
        self.options = options
        self.paths = options.paths
        self.logger = logger
        self.loop = try EventLoop()
        self.manager = ServiceManagerNotifier(environment: options.environment)
        self.bootID = readTextFile("/proc/sys/kernel/random/boot_id")?.trimmingCharacters(in: " \n") ?? ""
        try makeDirectories(paths.stateDirectory, mode: 0o755)
        try makeDirectories(paths.runDirectory, mode: 0o755)
        self.store = Store(path: paths.database)
        store.onProblem = { [logger] problem in
            if let problem { logger.error("\(problem)") } else { logger.notice("database healthy again") }
        }
        if let p = store.problem { logger.error("\(p)") }
        if !store.unknownMigrations.isEmpty {
            // A newer build wrote this database (an A/B rollback): its additions are left alone.
            let text =
                "the database has migrations this build does not know (\(store.unknownMigrations.joined(separator: ", "))): a newer aibox wrote it; going on with the tables this build knows"
            logger.warning("\(text)")
            store.record(EventRecord(at: Clock.wallMilliseconds(), kind: "daemon.database-newer", worker: nil, message: text))
        }
    }

    // MARK: Start

    /// Loads the definitions and runs until SIGTERM; returns the exit code.
    public func run() throws -> Int32 {
        // One daemon per root: a second one would take the sockets from the first.
        guard let lock = try ProcessLock(path: paths.lockFile) else {
            let other = readTextFile(paths.pidFile)?.trimmingCharacters(in: " \n") ?? "?"
            writeStandardError(
                "aibox: another aibox daemon (pid \(other)) is already running with root \(paths.root); not starting a second one\n")
            return 1
        }
        defer { withExtendedLifetime(lock) {} }
        try loop.handleSignals([SIGCHLD, SIGTERM, SIGINT, SIGHUP]) { [unowned self] sig, sender in self.onSignal(sig, sender: sender) }
        try Reaper.becomeSubreaper()
        let (loaded, skipped) = ConfigFiles.load(paths)
        noteSkipped(skipped)
        switch loaded {
        case .failure(let errors):
            logger.critical("refusing to start: invalid worker definitions\n\(errors)")
            store.record(event(kind: "daemon.config-invalid", worker: nil, message: errors.description))
            store.flush(now: Clock.monotonic())
            writeStandardError("aibox: invalid worker definitions; not starting:\n\(errors)\n")
            return 1
        case .success(let defs):
            definitions = defs
        }
        setUpContainment()
        try makeDirectories(paths.logs, mode: 0o750)
        notifySocket = try NotifySocket(path: paths.notifySocket)
        try loop.add(notifySocket!.fd, events: EventLoop.readable) { [unowned self] _ in self.onNotify() }
        // Members of the `aibox` group (sysusers.d) may use the socket; others may not.
        control = try ControlListener(path: paths.controlSocket, group: getgrnam("aibox").map { $0.pointee.gr_gid })
        configureControlConnections()
        try loop.add(control!.fd, events: EventLoop.readable) { [unowned self] _ in self.onAccept() }
        loop.onTimer { [unowned self] in self.onTimer() }
        _ = try? writeFileAtomically(paths.pidFile, Array("\(getpid())\n".utf8))

        store.record(
            event(
                kind: "daemon.started", worker: nil,
                message: "aibox \(AIBoxVersion.current) started as pid \(getpid()) (log target \(options.logTarget.rawValue))"))
        store.setMeta("daemonPid", "\(getpid())")
        store.setMeta("version", AIBoxVersion.current)
        recoverFromPreviousRun()
        beginSetupWatch()
        beginUpdateWatch()
        beginFeedWatch()
        detectHardware()
        install(definitions)
        syncWorkerControls()
        let now = Clock.monotonic()
        for name in order { apply(name, slots[name]!.machine.start(now: now, dependenciesReady: missing(for: name))) }
        afterTurn()
        manager.send("READY=1\nSTATUS=\(summary())")
        if let interval = manager.watchdogInterval {
            nextManagerPing = Clock.monotonic() + interval
            manager.send("WATCHDOG=1")
        }
        logger.notice("supervising \(order.count) workers")
        rearm()
        loop.run()
        // Stopped: everything is down.
        cgroups?.tearDown()
        store.record(event(kind: "daemon.stopped", worker: nil, message: "stopped; every worker is down"))
        for (level, line) in pendingLog { logger.log(level: level, "\(line)") }
        for name in order { persist(name) }
        store.setMeta("daemonPid", "0")
        store.flush(now: Clock.monotonic())
        // Tidying: a stale pid file only names a pid in the CLI's "not responding" message.
        removeFileBestEffort(paths.pidFile)
        notifySocket = nil
        control = nil
        workerControls = [:]
        return exitCode
    }

    private func install(_ defs: [WorkerDefinition]) {
        let previous = Dictionary(store.loadWorkers().map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for d in defs {
            var m = WorkerMachine(definition: d)
            if let r = previous[d.name] {
                let exit: ExitStatus? = r.lastExitCode.map { .code($0) } ?? r.lastExitSignal.map { .signal($0) }
                m.restore(restarts: r.restarts, lastExit: exit)
            }
            slots[d.name] = WorkerSlot(machine: m, deadlines: deadlines)
        }
        order = defs.map(\.name)
        levels = DependencyOrder.levels(defs)
        lastExitAt = Dictionary(previous.compactMap { r in r.value.lastExitAt.map { (r.key, $0) } }, uniquingKeysWith: { a, _ in a })
        // Rows of workers no longer defined are history only.
        for name in previous.keys where slots[name] == nil { store.remove(worker: name) }
    }

    var lastExitAt: [String: Int64] = [:]
    var hw = HardwareState()
    var setup = SetupState()
    var trial = UpdateTrial()
    var feed = FeedSchedule()

    /// After a SIGKILL of the daemon, its workers may still run, unsupervised. Each recorded
    /// process group is killed if it is still ours: the leader must be the same process
    /// (pid and start time) or gone with members left — a reused pid is never touched.
    private func recoverFromPreviousRun() {
        // cgroup v2: whatever is in a worker's cgroup is that worker's, whatever its pid.
        var killed: Set<String> = []
        if let cg = cgroups {
            for name in cg.populatedWorkers() {
                let count = cg.processes(name).count
                cg.kill(name)
                killed.insert(name)
                store.record(
                    event(
                        kind: "worker.recovered", worker: name,
                        message: "killed \(count) process(es) left by the previous daemon run (cgroup.kill)"))
                logger.warning("worker \(name): killed \(count) leftover process(es) of its cgroup")
            }
        }
        for record in store.loadWorkers() where !killed.contains(record.name) {
            guard let pgid = record.pgid, pgid > 1, let start = record.startTime, record.bootID == bootID else { continue }
            let members = ProcFS.members(ofGroup: pgid)
            guard !members.isEmpty else { continue }
            if let leader = ProcFS.info(pgid), leader.startTime != UInt64(start) {
                logger.warning("worker \(record.name): pid \(pgid) was reused by another process; not touching it")
                continue
            }
            // A group gone meanwhile is what is wanted.
            sendSignal(SIGKILL, to: -pgid)
            store.record(
                event(
                    kind: "worker.recovered", worker: record.name,
                    message: "killed \(members.count) process(es) left by the previous daemon run (process group \(pgid))"))
            logger.warning("worker \(record.name): killed \(members.count) leftover process(es) of group \(pgid)")
            lingeringGroups.insert(pgid)
        }
    }

    // MARK: Events

    private func onSignal(_ sig: Int32, sender: Int32) {
        switch sig {
        case SIGCHLD: onChildren(sender: sender)
        case SIGHUP: _ = reload()
        case SIGTERM, SIGINT: beginShutdown(reason: sig == SIGTERM ? "SIGTERM" : "SIGINT")
        default: break
        }
        afterTurn()
    }

    /// A child changed state. The worker the signal names, when it has exited, is handled
    /// without being reaped: its restart (this turn) is cloned into its cgroup while the
    /// zombie still holds that cgroup's css_set, which the kernel would otherwise free and
    /// make anew (the largest part of a restart into a cgroup). `afterTurn` reaps it, and
    /// every other child, after the turn's spawns.
    private func onChildren(sender: Int32) {
        if sender > 0, cgroups != nil, byPID[sender] != nil, let status = Reaper.peekExited(sender) {
            unreaped.append(sender)
            handleExits([(sender, status)], noneLeft: false)
            return
        }
        let (reaped, noneLeft) = Reaper.reapAll()
        handleExits(reaped, noneLeft: noneLeft)
    }

    /// Reaps what `onChildren` left for after the turn's spawns (handled already: no longer
    /// in `byPID`, so `handleExits` passes over them), and whatever else has exited meanwhile
    /// (SIGCHLDs of children that died together arrive as one).
    private func reapAfterSpawns(now: Instant) {
        unreaped.removeAll(keepingCapacity: true)
        let (reaped, noneLeft) = Reaper.reapAll()
        handleExits(reaped, noneLeft: noneLeft)
        if dueNow {
            dueNow = false
            fireDueDeadlines(now: now)
        }
    }

    private func handleExits(_ reaped: [(pid: Int32, status: ExitStatus)], noneLeft: Bool) {
        let now = Clock.monotonic()
        holdRecords = true
        for (pid, status) in reaped {
            guard let name = byPID.removeValue(forKey: pid), let slot = slots[name] else {
                if pid == feed.pid || pid == setup.seeds?.running?.pid || pid == requestedUpdate?.pid {
                    releaseRecords()
                    if pid == feed.pid {
                        feedCheckEnded(status, now: now)
                    } else if pid == requestedUpdate?.pid {
                        requestedUpdateEnded(status)
                    } else {
                        setup.seeds?.childEnded(status)
                    }
                    holdRecords = true
                }
                continue
            }
            lastExitAt[name] = Clock.wallMilliseconds()
            let pgid = slot.pgid
            slot.pgid = nil
            slot.startTime = nil
            // Whatever is left of it goes with it: its whole cgroup, or its process group.
            if let cg = cgroups {
                if cg.isPopulated(name) && !awaitEmpty(name, slot, cg, status, now: now) { continue }
            } else if let pgid, sendSignal(SIGKILL, to: -pgid) {
                lingeringGroups.insert(pgid)
            }
            apply(name, slot.machine.exited(status, now: now, random: jitter()))
        }
        if shuttingDown && noneLeft && allStopped { loop.stop() }
    }

    private func onNotify() {
        let now = Clock.monotonic()
        notifySocket?.receiveAll { pid, msg in
            guard let name = worker(forPID: pid), let slot = slots[name] else { return }
            apply(name, slot.machine.notified(msg, now: now))
        }
        afterTurn()
    }

    /// The worker a notifying pid belongs to: its main process, or any process of its group.
    private func worker(forPID pid: Int32) -> String? {
        if let n = byPID[pid] { return n }
        if let cg = cgroups {
            return ProcFS.cgroupPath(pid).flatMap { cg.layout.workerName(ofCgroup: $0) }.flatMap { slots[$0] != nil ? $0 : nil }
        }
        guard let info = ProcFS.info(pid) else { return nil }
        return byPID[info.pgrp]
    }

    private func onTimer() {
        let now = Clock.monotonic()
        fireDueDeadlines(now: now)
        if let ping = nextManagerPing, ping <= now, let interval = manager.watchdogInterval {
            manager.send("WATCHDOG=1")
            nextManagerPing = now + interval
        }
        if let check = nextMemoryCheck, check <= now {
            checkMemory(now: now)
        }
        if let check = nextFileCheck, check <= now {
            checkRequiredFiles(now: now)
        }
        containmentTimer(now: now)
        hardwareTimer(now: now)
        setupTimer(now: now)
        feedTimer(now: now)
        controlTimer(now: now)
        if !readiness.isEmpty { readinessTimer(now: now) }
        if shuttingDown, let giveUp = shutdownGiveUp, giveUp <= now {
            logger.error("some processes did not go away after SIGKILL; exiting anyway")
            loop.stop()
        }
        afterTurn()
    }

    private func checkMemory(now: Instant) {
        if let cg = cgroups {
            for name in order {
                guard let slot = slots[name], slot.machine.definition.memoryMax != nil, slot.pgid != nil else { continue }
                apply(name, slot.machine.memoryMeasured(rss: cg.memoryBytes(name), now: now))
            }
            nextMemoryCheck = now + options.memoryCheckInterval
            return
        }
        var groups: [Int32: String] = [:]
        for name in order {
            if let slot = slots[name], slot.machine.definition.memoryMax != nil, let g = slot.pgid { groups[g] = name }
        }
        if !groups.isEmpty {
            let rss = ProcFS.residentBytes(ofGroups: Set(groups.keys))
            for (g, name) in groups {
                if let bytes = rss[g], let slot = slots[name] { apply(name, slot.machine.memoryMeasured(rss: bytes, now: now)) }
            }
        }
        nextMemoryCheck = now + options.memoryCheckInterval
    }

    /// Workers waiting for files of their `requires-files`: started once every file is there
    /// (a few stat calls every `fileCheckInterval`; a running worker is not stopped when one goes).
    private func checkRequiredFiles(now: Instant) {
        nextFileCheck = filesRequired ? now + options.fileCheckInterval : nil
        for name in order {
            guard let slot = slots[name], slot.machine.state == .waiting, !slot.machine.definition.requiresFiles.isEmpty else { continue }
            let missing = missing(for: name)
            if missing != slot.machine.waitingFor { apply(name, slot.machine.dependenciesChanged(now: now, missing: missing)) }
        }
    }

    /// After every turn of the loop: dependencies, the database, systemd's status, the timer.
    func afterTurnFromControl() { afterTurn() }

    /// Runs after every turn of the loop. Order matters for the restart latency: what is due
    /// now (a zero restart-delay) is spawned first; logging and the database come after, and
    /// `bookkeepingDelay` later when the turn spawned.
    func afterTurn() {
        let now = Clock.monotonic()
        if dueNow {
            dueNow = false
            fireDueDeadlines(now: now)
        }
        // One restart (a crash): the new process, woken with us when its exec let us go,
        // gets the CPU before the rest of this turn. Not for many at once, which would then
        // be spawned one start-up after another.
        if spawnsThisTurn == 1 { _ = try? syscall("sched_yield") { sched_yield() } }
        if !unreaped.isEmpty { reapAfterSpawns(now: now) }
        releaseRecords()
        if !shuttingDown {
            if trial.gate != nil && (stateChanged || trial.next.map { $0 <= now } ?? true) { updateTrialCheck(now: now) }
            if stateChanged && slots.values.contains(where: { $0.machine.state == .waiting }) {
                for name in order {
                    guard let slot = slots[name], slot.machine.state == .waiting else { continue }
                    apply(name, slot.machine.dependenciesChanged(now: now, missing: missing(for: name)))
                }
            }
        } else {
            advanceShutdown()
        }
        if spawnsThisTurn > 0 {
            spawnsThisTurn = 0
            if bookkeepingDue == nil { bookkeepingDue = now + Supervisor.bookkeepingDelay }
        }
        if stateChanged {
            stateChanged = false
            statusChanged = true
        }
        if shuttingDown || bookkeepingDue.map({ $0 <= Clock.monotonic() }) ?? true {
            bookkeepingDue = nil
            writeBookkeeping()
        }
        rearm()
    }

    /// What a turn leaves for after its spawns: the start times of new processes (for the
    /// recovery after a SIGKILL of the daemon), log lines, the database write, STATUS=.
    func writeBookkeeping() {
        for name in startTimesToRead {
            guard let slot = slots[name], let pgid = slot.pgid, slot.startTime == nil else { continue }
            slot.startTime = ProcFS.info(pgid)?.startTime
            persist(name)
        }
        startTimesToRead.removeAll(keepingCapacity: true)
        for (level, line) in pendingLog { logger.log(level: level, "\(line)") }
        pendingLog.removeAll(keepingCapacity: true)
        store.flush(now: Clock.monotonic())
        if statusChanged {
            statusChanged = false
            let s = summary()
            if s != lastManagerStatus {
                lastManagerStatus = s
                manager.send("STATUS=\(s)")
            }
        }
    }

    /// A number in 0..<1 for the restart jitter.
    func jitter() -> Double { random.nextFraction() }

    /// Fires every worker deadline that has passed.
    private func fireDueDeadlines(now: Instant) {
        for name in order {
            guard let slot = slots[name], let d = slot.machine.deadline, d <= now else { continue }
            apply(name, slot.machine.timerFired(now: now, missing: missing(for: name)))
        }
    }

    private func rearm() {
        var next: Instant? = nil
        func consider(_ i: Instant?) {
            if let i, next.map({ i < $0 }) ?? true { next = i }
        }
        consider(deadlines.earliest())
        for name in awaitingEmpty { consider(slots[name]?.emptyDeadline) }
        consider(nextManagerPing)
        if nextMemoryCheck == nil && memoryLimited {
            nextMemoryCheck = Clock.monotonic() + options.memoryCheckInterval
        }
        consider(nextMemoryCheck)
        if nextFileCheck == nil && filesRequired {
            nextFileCheck = Clock.monotonic() + options.fileCheckInterval
        }
        consider(nextFileCheck)
        consider(nextOrphanCheck)
        consider(nextPressureCheck)
        consider(hardwareDeadline)
        consider(setup.nextCheck)
        consider(trial.next)
        consider(feed.next)
        consider(store.nextRetry)
        consider(bookkeepingDue)
        consider(shutdownGiveUp)
        consider(connections.nextDeadline)
        if !readiness.isEmpty { consider(readinessDeadline) }
        loop.arm(at: next)
    }

    // MARK: Actions

    func apply(_ name: String, _ actions: [WorkerAction]) {
        guard let slot = slots[name] else { return }
        var changed = false
        for action in actions {
            switch action {
            case .spawn:
                spawn(name, slot)
                changed = true
            case .signalGroup(let sig):
                // The final SIGKILL takes the whole cgroup: nothing escapes by setsid or a double fork.
                if sig == Signals.kill, let cg = cgroups {
                    cg.kill(name)
                    slot.cgroupKilled = true
                } else if let g = slot.pgid {
                    sendSignal(sig, to: -g)  // none left in the group: it is stopped already
                }
            case .signalMain(let sig):
                // Only a pid not reaped yet: a reaped one may already name another process.
                if let pid = slot.machine.pid, byPID[pid] == name { sendSignal(sig, to: pid) }
            case .record(let e):
                changed = true
                if holdRecords {
                    heldRecords.append((Clock.wallMilliseconds(), name, e))
                } else {
                    record(e, worker: name, at: Clock.wallMilliseconds())
                }
            }
        }
        if changed {
            stateChanged = true
            if holdRecords { heldPersist.append(name) } else { persist(name) }
            // No process of it left: no copy of its secrets either (made again at its next start).
            if !slot.machine.state.hasProcess && slot.machine.state != .starting && slot.credentialsMayExist {
                removeCredentials(name)
                slot.credentialsMayExist = false
            }
        }
        if slot.machine.definition.readyHTTP != nil || !readiness.isEmpty { updateReadinessProbe(name, slot) }
        // A deadline already due (a zero restart-delay) fires in this same turn.
        if let d = slot.machine.deadline, d <= Clock.monotonic() { dueNow = true }
        if slot.removeWhenStopped && !slot.machine.state.hasProcess && slot.machine.state != .waiting {
            slots[name] = nil
            deadlines.set(name, nil)
            order.removeAll { $0 == name }
            store.remove(worker: name)
            if slot.cgroupMade { cgroups?.remove(name) }
        }
    }

    private func spawn(_ name: String, _ slot: WorkerSlot) {
        let d = slot.machine.definition
        let now = Clock.monotonic()
        var identity: UserIdentity?
        if let user = d.user, geteuid() == 0 { identity = UserIdentity.lookup(user) }
        var credentials: String?
        var outFD: Int32 = -1, errFD: Int32 = -1, readFD: Int32 = -1
        do {
            if !d.secrets.isEmpty || d.boxConfig {
                slot.credentialsMayExist = true
                credentials = try prepareCredentials(name, d.secrets, boxConfig: d.boxConfig, owner: identity)
            }
            if let workdir = d.workdir, !fileExists(workdir) {
                try makeDirectories(workdir, mode: 0o750)
                if let identity { try syscall("chown", detail: workdir) { chown(workdir, identity.uid, identity.gid) } }
            }
            if options.logTarget == .journal {
                outFD = Journal.streamFD(identifier: name, priority: LOG_INFO)
                errFD = Journal.streamFD(identifier: name, priority: LOG_WARNING)
            }
            if outFD < 0 || errFD < 0 {
                closeDescriptor(outFD)
                closeDescriptor(errFD)
                outFD = -1
                errFD = -1
                // No pipe (out of descriptors): the worker runs with its output lost rather than not at all.
                if let fds = try? makePipe() {
                    readFD = fds.read
                    outFD = fds.write
                    errFD = fds.write
                } else {
                    outFD = try syscall("open", detail: "/dev/null") { open("/dev/null", O_WRONLY | O_CLOEXEC) }
                    errFD = outFD
                }
            }
        } catch {
            closeDescriptor(outFD)
            if errFD != outFD { closeDescriptor(errFD) }
            apply(name, slot.machine.spawnFailed("\(error)", now: now, random: jitter()))
            return
        }
        defer {
            closeDescriptor(outFD)
            if errFD != outFD { closeDescriptor(errFD) }
        }
        var cgroupFD: Int32 = -1
        var cgroupFDOwned = false
        defer { if cgroupFDOwned { closeDescriptor(cgroupFD) } }
        do {
            let prepared = try preparedSpawn(name, slot, identity: identity, credentials: credentials)
            if let cg = cgroups { (cgroupFD, cgroupFDOwned) = try prepareCgroup(name, slot, cg) }
            let pid = try Spawner.spawn(
                prepared, stdoutFD: outFD, stderrFD: errFD, cgroupFD: cgroups == nil ? nil : cgroupFD,
                cgroupByWrite: slot.cgroupKilled)
            slot.pgid = pid
            slot.startTime = nil  // read with the turn's bookkeeping, once the child has started
            byPID[pid] = name
            spawnsThisTurn += 1
            startTimesToRead.append(name)
            if readFD >= 0 { attachLog(name, slot, readFD) }
            apply(name, slot.machine.spawned(pid: pid, now: now))
        } catch {
            closeDescriptor(readFD)
            apply(name, slot.machine.spawnFailed(error.description, now: now, random: jitter()))
        }
    }

    /// argv and environment in the form the spawner takes them. A worker that restarts keeps
    /// them (a worker that never does, most of them, costs no memory for it); one with a
    /// `user` has them made at each start, as its account may change.
    private func preparedSpawn(
        _ name: String, _ slot: WorkerSlot, identity: UserIdentity?, credentials: String?
    ) throws(SystemError) -> PreparedSpawn {
        if let cached = slot.prepared { return cached }
        let d = slot.machine.definition
        var env: [String: String] = [
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "NOTIFY_SOCKET": paths.notifySocket,
            "AIBOX_WORKER": name,
            "AIBOX_ROOT": paths.root,
        ]
        if let lang = options.environment["LANG"] { env["LANG"] = lang }
        if let tz = options.environment["TZ"] { env["TZ"] = tz }
        if let wd = d.watchdog { env["WATCHDOG_USEC"] = "\(wd.microseconds)" }
        if let identity, let user = d.user {
            env["HOME"] = identity.home
            env["USER"] = user
            env["LOGNAME"] = user
        }
        if let credentials { env["CREDENTIALS_DIRECTORY"] = credentials }
        if let wc = workerControls[name] { env["AIBOX_CONTROL_SOCKET"] = wc.listener.path }
        for (k, v) in d.env { env[k] = v }
        let prepared = try PreparedSpawn(
            SpawnRequest(argv: d.exec, environment: env, workdir: d.workdir, user: d.user, stdoutFD: -1, stderrFD: -1))
        if d.user == nil && slot.startedBefore { slot.prepared = prepared }
        slot.startedBefore = true
        return prepared
    }

    /// The worker's cgroup, made at its first start and kept; its limits written when they
    /// differ from what is there (a reload changed memory-max). Returns its directory (see
    /// `CgroupTree.directory`).
    private func prepareCgroup(_ name: String, _ slot: WorkerSlot, _ cg: CgroupTree) throws(SystemError) -> (fd: Int32, owned: Bool) {
        if !slot.cgroupMade || slot.cgroupKilled {
            // A fresh one at the first start (not a previous run's) and after a cgroup.kill;
            // one that still holds a dying process stays, entered the slower way.
            let fresh = cg.remove(name)
            try cg.prepare(name)
            slot.cgroupMade = true
            slot.cgroupKilled = !fresh
            if fresh { slot.appliedLimits = [:] }
        }
        let writes = CgroupLimits.writes(
            memoryMax: slot.machine.definition.memoryMax, tasksMax: cg.tasksPerWorker, controllers: cg.controllers)
        if !writes.isEmpty {
            let (applied, failures) = cg.applyLimits(writes, to: name, applied: slot.appliedLimits)
            slot.appliedLimits = applied
            for f in failures { pendingLog.append((.warning, "worker \(name): cannot set \(f)")) }
        }
        return try cg.directory(name)
    }

    /// A stopped worker's copy of its secrets goes; one that cannot go is said in the log
    /// (the next start fails on it too, with the same reason).
    func removeCredentials(_ name: String) {
        let dir = paths.credentials + "/" + name
        do {
            try AIBoxSystem.removeCredentials(directory: dir)
        } catch {
            pendingLog.append((.warning, "worker \(name): its copy of its secrets cannot be removed: \(error)"))
        }
    }

    /// box.toml as a worker with `box-config` gets it: without the admin's password hash (the
    /// one thing in it that is not the worker's business). nil when there is none, or it does
    /// not parse: the worker then finds no copy and says the box is not set up.
    private func workerBoxConfig(_ name: String) -> String? {
        guard let bytes = readSmallFile(paths.boxConfig, limit: Seed.maxBytes) else { return nil }
        switch BoxConfig.parse(text: String(decoding: bytes, as: UTF8.self), path: paths.boxConfig) {
        case .success(var config):
            config.admin.passwordHash = nil
            return config.tomlText()
        case .failure(let e):
            pendingLog.append((.warning, "worker \(name): no copy of box.toml for it: \(e.description)"))
            return nil
        }
    }

    /// $CREDENTIALS_DIRECTORY: a private copy of only the secrets this worker lists, owned by
    /// its user and readable by it alone. Anything that cannot be made so (a previous copy
    /// that cannot be removed, an owner or mode that cannot be set) fails the start. Families
    /// (`provider.*`) are looked up at each start: a secret added or removed since counts.
    private func prepareCredentials(_ name: String, _ secrets: [String], boxConfig: Bool, owner: UserIdentity?) throws -> String {
        let dir = paths.credentials + "/" + name
        // Listed before anything is removed: a secrets directory that cannot be read fails the start as it is.
        let available = secrets.contains(where: SecretSelection.isFamily) ? try SecretStore(directory: paths.secrets).listNames() : []
        let (required, optional) = SecretSelection.expand(secrets, available: available)
        try makeDirectories(paths.credentials, mode: 0o711)
        // Whatever the last start left (a secret since taken off the list among it) goes first.
        try AIBoxSystem.removeCredentials(directory: dir)
        try syscall("mkdir", detail: dir) { mkdir(dir, 0o700) }
        for s in required + optional {
            let bytes: [UInt8]
            do {
                bytes = try readRegularFile(paths.secrets + "/" + s, limit: 1 << 20, followSymlinks: false)
            } catch {
                let listed = required.contains(s)
                switch error {
                case .cannotOpen(_, ENOENT) where listed:
                    throw SystemError("open", errno: ENOENT, detail: "secret \"\(s)\" (not in \(paths.secrets))")
                case .cannotOpen(_, ENOENT):
                    continue  // a family's member removed since the listing: gone, as if listed a moment later
                case .notRegular where !listed:
                    // A link or a directory is no secret: a family takes only what the store writes.
                    pendingLog.append((.warning, "worker \(name): \(error.description); not handed over"))
                    continue
                default:
                    throw error
                }
            }
            let file = dir + "/" + s
            try writeFileAtomically(file, bytes, mode: 0o400)
            if let owner { try syscall("chown", detail: file) { chown(file, owner.uid, owner.gid) } }
        }
        if boxConfig, let text = workerBoxConfig(name) {
            let file = dir + "/box.toml"
            try writeFileAtomically(file, Array(text.utf8), mode: 0o400)
            if let owner { try syscall("chown", detail: file) { chown(file, owner.uid, owner.gid) } }
        }
        if let owner { try syscall("chown", detail: dir) { chown(dir, owner.uid, owner.gid) } }
        try syscall("chmod", detail: dir) { chmod(dir, 0o500) }
        return dir
    }

    private func attachLog(_ name: String, _ slot: WorkerSlot, _ fd: Int32) {
        // On a pipe just made, fcntl can fail only with EBADF, which stops the program anyway.
        try? setNonBlocking(fd, detail: "worker \(name)'s output")
        if slot.log == nil { slot.log = RotatingLog(directory: paths.logs, name: name) }
        // A previous run's pipe may still drain; keep both until each closes.
        let log = slot.log!
        do {
            try loop.add(fd, events: EventLoop.readable) { [unowned self] _ in
                guard drainPipe(fd, chunkSize: 65536, detail: "worker output", { log.append($0) }) else { return }
                // End of output: every writer (the worker's group) is gone.
                log.flushPartial()
                self.loop.remove(fd)
                closeDescriptor(fd)
            }
        } catch {
            closeDescriptor(fd)
        }
    }

    // MARK: Dependencies, shutdown, reload

    /// What a worker still waits for: workers of its `after` not ready yet, capabilities of
    /// its `requires-hardware` the box does not have ("hardware:gpu"), and files of its
    /// `requires-files` that are not there ("file:/var/lib/aibox/models/default.gguf").
    func missing(for name: String) -> [String] {
        guard let d = slots[name]?.machine.definition else { return [] }
        let workers = d.after.filter { dep in !(slots[dep]?.machine.isReady ?? true) }
        let hardware = d.requiresHardware.filter { !capabilities.contains($0) }.map { "hardware:" + $0 }
        let files = d.requiresFiles.filter { !Supervisor.isUsableFile($0) }.map { "file:" + $0 }
        return (setup.provisioned ? [] : ["setup"]) + workers + hardware + files
    }

    /// A file a worker can use: a regular file with something in it, links followed (a
    /// dangling link, an empty file, a directory are not).
    static func isUsableFile(_ path: String) -> Bool {
        guard let st = try? fileStatus(path) else { return false }
        return st.st_mode & S_IFMT == S_IFREG && st.st_size > 0
    }

    var allStopped: Bool { slots.values.allSatisfy { !$0.machine.state.hasProcess && $0.machine.state != .starting } }

    func beginShutdown(reason: String) {
        guard !shuttingDown else { return }
        shuttingDown = true
        logger.notice("\(reason): stopping every worker in reverse order")
        store.record(event(kind: "daemon.stopping", worker: nil, message: "\(reason): stopping every worker"))
        manager.send("STOPPING=1\nSTATUS=stopping workers")
        advanceShutdown()
    }

    /// Stops the deepest level of `after` first; the next level once that one is down.
    private func advanceShutdown() {
        let now = Clock.monotonic()
        let active = order.filter { n in
            guard let m = slots[n]?.machine else { return false }
            return m.state != .stopped && m.state != .parked || m.wanted == .up
        }
        if let deepest = active.compactMap({ levels[$0] }).max() {
            for name in active where levels[name] == deepest {
                if let slot = slots[name],
                    slot.machine.wanted == .up || slot.machine.state == .waiting || slot.machine.state == .backoff
                        || slot.machine.state == .quarantined
                {
                    apply(name, slot.machine.stop(now: now))
                }
            }
        }
        if allStopped {
            if shutdownGiveUp == nil {
                // Anything left in the workers' groups goes now; we reap it as subreaper.
                for g in lingeringGroups { sendSignal(SIGKILL, to: -g) }  // a group gone is what is wanted
                if let cg = cgroups { for name in cg.populatedWorkers() { cg.kill(name) } }
                shutdownGiveUp = now + .seconds(5)
            }
            let (_, noneLeft) = Reaper.reapAll()
            if noneLeft { loop.stop() }
        }
    }

    /// Reloads the definitions; invalid ones leave the running set untouched.
    public func reload() -> Result<ReloadPlan, ConfigErrors> {
        let (loaded, skipped) = ConfigFiles.load(paths)
        noteSkipped(skipped)
        switch loaded {
        case .failure(let errors):
            configProblem = errors.description
            logger.error("reload refused; the running workers are unchanged:\n\(errors)")
            store.record(event(kind: "daemon.reload-failed", worker: nil, message: "reload refused, nothing changed:\n\(errors)"))
            return .failure(errors)
        case .success(let defs):
            configProblem = nil
            let plan = ReloadPlan(old: definitions, new: defs)
            definitions = defs
            // Before any start: a worker's environment names its socket.
            syncWorkerControls()
            let now = Clock.monotonic()
            let byName = Dictionary(defs.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            for name in plan.removed {
                guard let slot = slots[name] else { continue }
                slot.removeWhenStopped = true
                apply(name, slot.machine.stop(now: now))
            }
            for name in plan.added {
                slots[name] = WorkerSlot(machine: WorkerMachine(definition: byName[name]!), deadlines: deadlines)
            }
            order = defs.map(\.name) + order.filter { byName[$0] == nil && slots[$0] != nil }
            levels = DependencyOrder.levels(defs)
            for name in plan.changed {
                guard let slot = slots[name] else { continue }
                slot.machine.replaceDefinition(byName[name]!)
                slot.prepared = nil
                apply(name, slot.machine.restart(now: now, reason: "definition changed", dependenciesReady: missing(for: name)))
            }
            for name in plan.added { apply(name, slots[name]!.machine.start(now: now, dependenciesReady: missing(for: name))) }
            let text =
                "reloaded: \(plan.added.count) added, \(plan.changed.count) changed, \(plan.removed.count) removed, \(plan.unchanged.count) unchanged"
            logger.notice("\(text)")
            store.record(event(kind: "daemon.reloaded", worker: nil, message: text))
            return .success(plan)
        }
    }

    /// Entries of the worker directories that are no worker file: each told once per load
    /// (event and log), and shown by `aibox status` until a load finds none.
    private func noteSkipped(_ skipped: [FileReadError]) {
        configSkipped = skipped.map(\.description)
        for e in skipped {
            let text = "\(e.path) \(e.reason); skipped (a worker file is a regular file of at most 1 MiB); the other workers run"
            logger.warning("\(text)")
            store.record(event(kind: "daemon.config-skipped", worker: nil, message: text))
        }
    }

    func record(_ e: WorkerEvent, worker name: String, at: Int64) {
        let message = e.message
        store.record(EventRecord(at: at, kind: e.kind, worker: name, message: message))
        switch e {
        case .exited, .quarantined, .parked, .watchdog, .readyTimeout, .memoryExceeded, .spawnFailed, .stopKilled:
            pendingLog.append((.warning, "worker \(name): \(message)"))
        default:
            pendingLog.append((.info, "worker \(name): \(message)"))
        }
    }

    /// Records what `holdRecords` kept back, in the order it happened.
    func releaseRecords() {
        holdRecords = false
        guard !heldRecords.isEmpty || !heldPersist.isEmpty else { return }
        for (at, name, e) in heldRecords { record(e, worker: name, at: at) }
        heldRecords.removeAll(keepingCapacity: true)
        for name in heldPersist { persist(name) }
        heldPersist.removeAll(keepingCapacity: true)
    }

    // MARK: Views

    func event(kind: String, worker: String?, message: String) -> EventRecord {
        EventRecord(at: Clock.wallMilliseconds(), kind: kind, worker: worker, message: message)
    }

    func persist(_ name: String) {
        guard let slot = slots[name] else { return }
        let m = slot.machine
        var code: Int32?, signal: Int32?
        switch m.lastExit {
        case .code(let c): code = c
        case .signal(let s): signal = s
        case nil: break
        }
        store.save(
            WorkerRecord(
                name: name, state: m.state.rawValue, pid: m.pid, pgid: slot.pgid, startTime: slot.startTime.map { Int64($0) },
                bootID: bootID, restarts: m.restarts, lastExitCode: code, lastExitSignal: signal, lastExitAt: lastExitAt[name],
                status: m.statusText, reason: reason(m), updatedAt: Clock.wallMilliseconds()))
    }

    func reason(_ m: WorkerMachine) -> String? {
        switch m.state {
        case .waiting: return "waiting for " + m.waitingFor.joined(separator: ", ")
        case .parked, .quarantined, .backoff, .stopped: return m.lastReason
        default: return nil
        }
    }

    func views() -> [WorkerView] {
        order.compactMap { name in
            guard let slot = slots[name] else { return nil }
            let m = slot.machine
            var last: WorkerView.LastExit?
            switch m.lastExit {
            case .code(let c): last = .init(code: c, signal: nil, at: lastExitAt[name])
            case .signal(let s): last = .init(code: nil, signal: s, at: lastExitAt[name])
            case nil: last = nil
            }
            return WorkerView(
                name: name, state: m.state.rawValue, pid: m.pid, restarts: m.restarts, lastExit: last, status: m.statusText,
                reason: reason(m), waitingFor: m.waitingFor, critical: m.definition.critical,
                resources: slot.cgroupMade ? cgroups?.resources(name) : nil)
        }
    }

    func statusView() -> StatusView {
        var counts: [String: Int] = [:]
        for s in slots.values { counts[s.machine.state.rawValue, default: 0] += 1 }
        return StatusView(
            daemonRunning: true, daemonPid: getpid(), version: AIBoxVersion.current, workers: counts, workerCount: slots.count,
            databaseProblem: store.problem, configProblem: configProblem, logTarget: options.logTarget.rawValue,
            hardware: hardware?.summary, hotplug: hotplugDescription, provisioned: setup.provisioned,
            update: updateSummary, configSkipped: configSkipped.isEmpty ? nil : configSkipped,
            containment: containment.summary)
    }

    func summary() -> String {
        var counts: [WorkerState: Int] = [:]
        for s in slots.values { counts[s.machine.state, default: 0] += 1 }
        var parts = setup.provisioned ? [] : ["waiting for setup"]
        parts.append("\(slots.count) workers")
        for st in WorkerState.allCases { if let n = counts[st] { parts.append("\(n) \(st.rawValue)") } }
        if store.problem != nil { parts.append("database problem") }
        return parts.joined(separator: ", ")
    }
}

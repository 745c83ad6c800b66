/// The states a worker is reported in (`aibox workers`).
public enum WorkerState: String, Sendable, Codable, CaseIterable {
    case waiting, starting, running, ready, stopping, stopped, backoff, quarantined, parked

    /// A process of the worker's may be alive.
    public var hasProcess: Bool { self == .starting || self == .running || self == .ready || self == .stopping }
}

/// How a process ended: a child's exit status is data.
public enum ExitStatus: Equatable, Sendable, CustomStringConvertible {
    case code(Int32)
    case signal(Int32)

    /// Exit status 78 (EX_CONFIG): "my configuration is wrong" — parked, not restarted.
    public static let configErrorCode: Int32 = 78

    public var isSuccess: Bool { self == .code(0) }

    public var description: String {
        switch self {
        case .code(let c): return "exit code \(c)"
        case .signal(let s): return "killed by \(Signals.name(of: s))"
        }
    }
}

/// What happened to a worker that an owner might ask about later.
public enum WorkerEvent: Equatable, Sendable {
    case started(pid: Int32)
    case ready
    case exited(ExitStatus, uptime: Duration)
    case backoff(delay: Duration, failures: Int)
    case restarting(reason: String)
    case quarantined(deaths: Int, window: Duration, retryIn: Duration)
    case released
    case parked(reason: String)
    case watchdog(timeout: Duration)
    /// `awaiting`: what did not come, "READY=1" or "200 from URL".
    case readyTimeout(timeout: Duration, awaiting: String = "READY=1")
    case memoryExceeded(rss: UInt64, limit: UInt64)
    case stopping(reason: String)
    case stopKilled(timeout: Duration)
    case stopped
    case spawnFailed(String)
    case waiting(for: [String])

    /// The event's kind as stored in the database (`worker.<kind>`).
    public var kind: String {
        switch self {
        case .started: return "worker.started"
        case .ready: return "worker.ready"
        case .exited: return "worker.exited"
        case .backoff: return "worker.backoff"
        case .restarting: return "worker.restarting"
        case .quarantined: return "worker.quarantined"
        case .released: return "worker.released"
        case .parked: return "worker.parked"
        case .watchdog: return "worker.watchdog"
        case .readyTimeout: return "worker.ready-timeout"
        case .memoryExceeded: return "worker.memory"
        case .stopping: return "worker.stopping"
        case .stopKilled: return "worker.stop-timeout"
        case .stopped: return "worker.stopped"
        case .spawnFailed: return "worker.spawn-failed"
        case .waiting: return "worker.waiting"
        }
    }

    /// One line for people.
    public var message: String {
        switch self {
        case .started(let pid): return "started as pid \(pid)"
        case .ready: return "ready"
        case .exited(let s, let up): return "exited (\(s)) after \(up.aiboxText)"
        case .backoff(let d, let n): return "restarting in \(d.aiboxText) (failure \(n) in a row)"
        case .restarting(let r): return "restarting: \(r)"
        case .quarantined(let n, let w, let q):
            return "crash loop: \(n) exits within \(w.aiboxText); quarantined, retried in \(q.aiboxText)"
        case .released: return "quarantine over; starting again"
        case .parked(let r): return "parked, not restarted: \(r)"
        case .watchdog(let t): return "watchdog: no WATCHDOG=1 for \(t.aiboxText); sent SIGABRT"
        case .readyTimeout(let t, let awaiting): return "no \(awaiting) within \(t.aiboxText); stopping"
        case .memoryExceeded(let rss, let limit): return "memory \(rss) bytes above memory-max \(limit); restarting gracefully"
        case .stopping(let r): return "stopping: \(r)"
        case .stopKilled(let t): return "did not stop within \(t.aiboxText); killed its process group"
        case .stopped: return "stopped"
        case .spawnFailed(let e): return "could not start: \(e)"
        case .waiting(let deps): return "waiting for \(deps.joined(separator: ", "))"
        }
    }
}

/// What the caller must do for a worker; the machine itself does no I/O.
public enum WorkerAction: Equatable, Sendable {
    /// Start the process; answer with `spawned` or `spawnFailed`.
    case spawn
    /// Send a signal to the worker's whole process group.
    case signalGroup(Int32)
    /// Send a signal to the main process only (the watchdog's SIGABRT, as systemd does).
    case signalMain(Int32)
    /// Record and report.
    case record(WorkerEvent)
}

/// A parsed notify datagram (systemd's sd_notify protocol): newline-separated assignments.
public struct NotifyMessage: Equatable, Sendable {
    public var ready = false
    public var watchdog = false
    public var watchdogTrigger = false
    public var stopping = false
    public var reloading = false
    public var status: String?
    public var extendTimeout: Duration?

    public init() {}

    /// One datagram from `$NOTIFY_SOCKET`, as received: any bytes (bad UTF-8 in STATUS= is replaced).
    public init(datagram: some Collection<UInt8>) {
        self.init()
        Array(datagram).withUnsafeBufferPointer { parse($0) }
    }

    /// One datagram in the receive buffer, read in place: a WATCHDOG=1 (each worker sends one
    /// every half watchdog interval) costs no allocation.
    public init(bytes: UnsafeBufferPointer<UInt8>) {
        self.init()
        parse(bytes)
    }

    public init(_ text: Substring) {
        self.init()
        var text = text
        text.withUTF8 { parse($0) }
    }

    /// Lines split at each newline byte, each `KEY=VALUE` split at its first `=` byte, as
    /// systemd reads them (so `READY=1\r` is not READY=1). Unknown keys and junk are ignored;
    /// values must be exact.
    private mutating func parse(_ p: UnsafeBufferPointer<UInt8>) {
        var lineStart = 0
        while lineStart < p.count {
            var end = lineStart
            var eq = -1
            while end < p.count && p[end] != 0x0A {
                if eq < 0 && p[end] == 0x3D { eq = end }
                end += 1
            }
            if eq >= 0 { assign(p, key: lineStart..<eq, value: (eq + 1)..<end) }
            lineStart = end + 1
        }
    }

    private mutating func assign(_ p: UnsafeBufferPointer<UInt8>, key: Range<Int>, value: Range<Int>) {
        func isKey(_ s: StaticString) -> Bool { Self.equal(p, key, s) }
        func isValue(_ s: StaticString) -> Bool { Self.equal(p, value, s) }
        func text() -> String { String(decoding: UnsafeBufferPointer(rebasing: p[value]), as: UTF8.self) }
        if isKey("WATCHDOG") {
            if isValue("1") { watchdog = true } else if isValue("trigger") { watchdogTrigger = true }
        } else if isKey("READY") {
            ready = isValue("1")
        } else if isKey("STATUS") {
            status = String(text().prefix(256))
        } else if isKey("STOPPING") {
            stopping = isValue("1")
        } else if isKey("RELOADING") {
            reloading = isValue("1")
        } else if isKey("EXTEND_TIMEOUT_USEC") {
            if let us = Int64(text()) { extendTimeout = .microseconds(us) }
        }
    }

    private static func equal(_ p: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, _ s: StaticString) -> Bool {
        guard range.count == s.utf8CodeUnitCount else { return false }
        let literal = s.utf8Start
        for i in 0..<range.count where p[range.lowerBound + i] != literal[i] { return false }
        return true
    }
}

/// One worker's supervision: wanted state apart from actual state (as runit keeps them),
/// restart policy, backoff, crash-loop quarantine, readiness and watchdog deadlines.
/// Events in, actions out; time and randomness are passed in.
public struct WorkerMachine: Sendable {
    public enum Wanted: String, Sendable { case up, down }

    /// Why the process is being stopped, which decides what its exit leads to.
    enum StopCause: Equatable, Sendable {
        case requested  // wanted down
        case restart(String)  // graceful restart: start again at once, not a failure
        case failure  // watchdog, ready timeout: a failure for the restart policy
        case workerSaidStopping  // STOPPING=1 from the worker itself
        case waitFor([String])  // a requirement went away (hardware unplugged): wait for it again
    }

    public private(set) var definition: WorkerDefinition
    public private(set) var state: WorkerState = .stopped
    public private(set) var wanted: Wanted = .down
    public private(set) var pid: Int32?
    /// The one deadline of the current state (ready timeout, watchdog, stop timeout,
    /// backoff, quarantine); nil when the state has none.
    public private(set) var deadline: Instant?
    public private(set) var restarts = 0
    public private(set) var consecutiveFailures = 0
    public private(set) var recentExits: [Instant] = []
    public private(set) var startedAt: Instant?
    public private(set) var lastExit: ExitStatus?
    public private(set) var statusText: String?
    public private(set) var waitingFor: [String] = []
    public private(set) var lastReason: String?
    var stopCause: StopCause?
    /// A start that is due but was held for dependencies counts as a restart.
    var pendingIsRestart = false

    public init(definition: WorkerDefinition, restarts: Int = 0) {
        self.definition = definition
        self.restarts = restarts
    }

    public var name: String { definition.name }

    /// Ready for those that name this worker in `after`: READY=1 for notify workers, a 200
    /// from the URL for ready-http ones, a running process for the others.
    public var isReady: Bool { state == .ready || (state == .running && !definition.awaitsReadiness) }

    // MARK: Wanted state

    /// Wanted up. Starts now if the dependencies are ready, else waits.
    public mutating func start(now: Instant, dependenciesReady: [String]) -> [WorkerAction] {
        wanted = .up
        switch state {
        case .starting, .running, .ready:
            return []
        case .stopping:
            // Started again while stopping: the exit leads to a start.
            if stopCause == .requested { stopCause = .restart("started while stopping") }
            return []
        case .stopped, .parked, .quarantined, .backoff, .waiting:
            let manual = state == .parked || state == .quarantined || state == .backoff
            if manual { consecutiveFailures = 0; recentExits = [] }
            deadline = nil
            return launch(now: now, missing: dependenciesReady, isRestart: state == .backoff || (state == .waiting && pendingIsRestart))
        }
    }

    /// Wanted down: stop-signal to the group, SIGKILL after stop-timeout.
    public mutating func stop(now: Instant) -> [WorkerAction] {
        wanted = .down
        switch state {
        case .starting, .running, .ready:
            return beginStop(now: now, cause: .requested, signal: definition.stopSignal, reason: "requested")
        case .stopping:
            stopCause = .requested
            return []
        case .waiting, .backoff, .quarantined, .parked:
            state = .stopped
            deadline = nil
            waitingFor = []
            return [.record(.stopped)]
        case .stopped:
            return []
        }
    }

    /// Graceful restart (`aibox restart`, a changed definition, memory): stop, then start at once.
    public mutating func restart(now: Instant, reason: String, dependenciesReady missing: [String]) -> [WorkerAction] {
        wanted = .up
        if state.hasProcess {
            if state == .stopping { stopCause = .restart(reason); return [] }
            return beginStop(now: now, cause: .restart(reason), signal: definition.stopSignal, reason: reason)
        }
        return start(now: now, dependenciesReady: missing)
    }

    /// A new definition. The caller restarts the worker when it changed in a way that needs it.
    public mutating func replaceDefinition(_ d: WorkerDefinition) { definition = d }

    /// Re-check a waiting worker once a dependency changed.
    public mutating func dependenciesChanged(now: Instant, missing: [String]) -> [WorkerAction] {
        guard state == .waiting, wanted == .up else { return [] }
        return launch(now: now, missing: missing, isRestart: pendingIsRestart)
    }

    // MARK: Process events

    public mutating func spawned(pid: Int32, now: Instant) -> [WorkerAction] {
        self.pid = pid
        startedAt = now
        statusText = nil
        if definition.awaitsReadiness {
            state = .starting
            deadline = now + definition.readyTimeout
        } else {
            state = .running
            deadline = definition.watchdog.map { now + $0 }
        }
        return [.record(.started(pid: pid))]
    }

    public mutating func spawnFailed(_ message: String, now: Instant, random: Double) -> [WorkerAction] {
        pid = nil
        startedAt = now
        var actions: [WorkerAction] = [.record(.spawnFailed(message))]
        actions += afterDeath(now: now, failure: true, random: random)
        return actions
    }

    public mutating func notified(_ msg: NotifyMessage, now: Instant) -> [WorkerAction] {
        guard state.hasProcess else { return [] }
        var actions: [WorkerAction] = []
        if let s = msg.status { statusText = s }
        // A ready-http worker is ready by its URL only.
        if msg.ready && state == .starting && definition.readyHTTP == nil {
            state = .ready
            deadline = definition.watchdog.map { now + $0 }
            actions.append(.record(.ready))
        }
        if msg.watchdog && (state == .ready || state == .running), let wd = definition.watchdog {
            deadline = now + wd
        }
        if let extend = msg.extendTimeout, state == .starting || state == .stopping {
            let extended = now + extend
            if deadline.map({ extended > $0 }) ?? true { deadline = extended }
        }
        if msg.watchdogTrigger && (state == .ready || state == .running) {
            actions += fireWatchdog(now: now)
        }
        if msg.stopping && state != .stopping {
            state = .stopping
            stopCause = wanted == .down ? .requested : .workerSaidStopping
            deadline = now + definition.stopTimeout
            actions.append(.record(.stopping(reason: "the worker sent STOPPING=1")))
        }
        return actions
    }

    /// The `ready-http` URL answered 200: ready, as READY=1 makes a notify worker.
    public mutating func readinessConfirmed(now: Instant) -> [WorkerAction] {
        guard state == .starting, pid != nil, definition.readyHTTP != nil else { return [] }
        state = .ready
        deadline = definition.watchdog.map { now + $0 }
        return [.record(.ready)]
    }

    /// The main process was reaped.
    public mutating func exited(_ status: ExitStatus, now: Instant, random: Double) -> [WorkerAction] {
        let uptime = startedAt.map { now.since($0) } ?? .zero
        pid = nil
        lastExit = status
        deadline = nil
        var actions: [WorkerAction] = [.record(.exited(status, uptime: uptime))]
        let cause = stopCause
        stopCause = nil
        if uptime >= definition.stableAfter { consecutiveFailures = 0 }

        if wanted == .down {
            state = .stopped
            actions.append(.record(.stopped))
            return actions
        }
        if case .restart(let reason) = cause {
            actions.append(.record(.restarting(reason: reason)))
            return actions + launch(now: now, missing: [], isRestart: true)
        }
        if case .waitFor(let missing) = cause {
            return actions + launch(now: now, missing: missing, isRestart: true)
        }
        if status == .code(ExitStatus.configErrorCode) && cause != .failure {
            state = .parked
            lastReason =
                "exit status 78 (EX_CONFIG): the worker reports that its configuration is wrong; fix it, then `aibox start \(name)` or reload"
            actions.append(.record(.parked(reason: lastReason!)))
            return actions
        }
        let failure = !status.isSuccess || cause == .failure
        switch definition.restart {
        case .never:
            state = .stopped
            lastReason = "restart = never"
            actions.append(.record(.stopped))
            return actions
        case .onFailure where !failure:
            state = .stopped
            lastReason = "exited cleanly and restart = on-failure"
            actions.append(.record(.stopped))
            return actions
        default:
            return actions + afterDeath(now: now, failure: failure, random: random)
        }
    }

    /// A deadline passed. `missing` names dependencies not ready, for a start that comes due.
    public mutating func timerFired(now: Instant, missing: [String]) -> [WorkerAction] {
        guard let d = deadline, d <= now else { return [] }
        deadline = nil
        switch state {
        case .starting:
            let awaiting = definition.readinessSignal
            var actions: [WorkerAction] = [.record(.readyTimeout(timeout: definition.readyTimeout, awaiting: awaiting))]
            actions += beginStop(now: now, cause: .failure, signal: definition.stopSignal, reason: "no \(awaiting) in time")
            return actions
        case .running, .ready:
            return fireWatchdog(now: now)
        case .stopping:
            // stop-timeout passed: the whole group gets SIGKILL. Its exit comes through `exited`.
            return [.record(.stopKilled(timeout: definition.stopTimeout)), .signalGroup(Signals.kill)]
        case .backoff:
            return launch(now: now, missing: missing, isRestart: true)
        case .quarantined:
            consecutiveFailures = 0
            recentExits = []
            return [.record(.released)] + launch(now: now, missing: missing, isRestart: true)
        case .waiting, .stopped, .parked:
            return []
        }
    }

    /// Something the worker requires went away (a capability of `requires-hardware`): it is
    /// stopped gracefully and waits, naming what it misses, until `dependenciesChanged`
    /// finds nothing missing. Not a failure: no backoff, no crash count.
    public mutating func requirementsLost(now: Instant, missing: [String]) -> [WorkerAction] {
        guard wanted == .up, !missing.isEmpty else { return [] }
        switch state {
        case .starting, .running, .ready:
            return beginStop(
                now: now, cause: .waitFor(missing), signal: definition.stopSignal, reason: "missing " + missing.joined(separator: ", "))
        case .stopping:
            if stopCause != .requested { stopCause = .waitFor(missing) }
            return []
        case .backoff, .quarantined:
            deadline = nil
            return launch(now: now, missing: missing, isRestart: true)
        case .waiting, .stopped, .parked:
            return []
        }
    }

    /// The process group's resident memory was measured above `memory-max`.
    public mutating func memoryMeasured(rss: UInt64, now: Instant) -> [WorkerAction] {
        guard let limit = definition.memoryMax, rss > limit, state == .running || state == .ready || state == .starting else {
            return []
        }
        return [.record(.memoryExceeded(rss: rss, limit: limit))]
            + beginStop(
                now: now, cause: .restart("memory above memory-max"), signal: definition.stopSignal, reason: "memory above memory-max")
    }

    /// After a daemon restart: the counts continue from the database.
    public mutating func restore(restarts: Int, lastExit: ExitStatus?) {
        self.restarts = restarts
        self.lastExit = lastExit
    }

    // MARK: Internals

    private mutating func fireWatchdog(now: Instant) -> [WorkerAction] {
        let timeout = definition.watchdog ?? .zero
        state = .stopping
        stopCause = wanted == .down ? .requested : .failure
        deadline = now + definition.stopTimeout
        return [.record(.watchdog(timeout: timeout)), .signalMain(Signals.abrt)]
    }

    private mutating func beginStop(now: Instant, cause: StopCause, signal: Int32, reason: String) -> [WorkerAction] {
        state = .stopping
        stopCause = cause
        deadline = now + definition.stopTimeout
        var actions: [WorkerAction] = [.record(.stopping(reason: reason)), .signalGroup(signal)]
        // A stop signal other than SIGKILL may find the process stopped (SIGSTOP): wake it.
        if signal != Signals.kill && signal != Signals.cont { actions.append(.signalGroup(Signals.cont)) }
        return actions
    }

    private mutating func launch(now: Instant, missing: [String], isRestart: Bool) -> [WorkerAction] {
        if !missing.isEmpty {
            let changed = state != .waiting || waitingFor != missing
            state = .waiting
            waitingFor = missing
            pendingIsRestart = isRestart
            deadline = nil
            return changed ? [.record(.waiting(for: missing))] : []
        }
        waitingFor = []
        pendingIsRestart = false
        if isRestart { restarts += 1 }
        state = .starting  // until `spawned` says more
        deadline = nil
        return [.spawn]
    }

    private mutating func afterDeath(now: Instant, failure: Bool, random: Double) -> [WorkerAction] {
        let window = definition.crashLoop.window
        recentExits.append(now)
        recentExits.removeAll { now.since($0) > window }
        if recentExits.count >= definition.crashLoop.burst {
            let n = recentExits.count
            state = .quarantined
            deadline = now + definition.crashLoop.quarantine
            lastReason = "crash loop: \(n) exits within \(window.aiboxText)"
            return [.record(.quarantined(deaths: n, window: window, retryIn: definition.crashLoop.quarantine))]
        }
        consecutiveFailures += 1
        let delay = Backoff(base: definition.restartDelay, max: definition.restartMaxDelay)
            .delay(attempt: consecutiveFailures, random: random)
        state = .backoff
        deadline = now + delay
        lastReason = failure ? "failed" : "exited"
        return [.record(.backoff(delay: delay, failures: consecutiveFailures))]
    }
}

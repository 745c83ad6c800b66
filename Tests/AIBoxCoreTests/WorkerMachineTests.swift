import Testing

@testable import AIBoxCore

/// A hand-driven clock: every test starts at t0 and moves time by hand.
let t0 = Instant(nanoseconds: 1_000_000_000_000)

func at(_ d: Duration) -> Instant { t0 + d }

func worker(_ change: (inout WorkerDefinition) -> Void = { _ in }) -> WorkerDefinition {
    var d = WorkerDefinition(name: "chat", exec: ["/usr/bin/chat"])
    change(&d)
    return d
}

func notifyMessage(_ text: String) -> NotifyMessage { NotifyMessage(Substring(text)) }

/// A machine whose process runs (non-notify: running; notify: starting), started at `now`.
func spawnedMachine(_ d: WorkerDefinition, pid: Int32 = 100, now: Instant = t0) -> WorkerMachine {
    var m = WorkerMachine(definition: d)
    _ = m.start(now: now, dependenciesReady: [])
    _ = m.spawned(pid: pid, now: now)
    return m
}

/// The random number for which the jitter factor is exactly 1.
let noJitter = 0.5

@Suite("Worker restart-policy state machine")
struct WorkerMachineTests {
    // MARK: Starting

    @Test("a non-notify worker: start asks for a spawn, spawned makes it running")
    func startNonNotify() {
        var m = WorkerMachine(definition: worker())
        #expect(m.state == .stopped)
        #expect(m.wanted == .down)
        #expect(m.start(now: t0, dependenciesReady: []) == [.spawn])
        #expect(m.state == .starting)
        #expect(m.wanted == .up)
        #expect(m.isReady == false)
        #expect(m.spawned(pid: 42, now: t0) == [.record(.started(pid: 42))])
        #expect(m.state == .running)
        #expect(m.pid == 42)
        #expect(m.startedAt == t0)
        #expect(m.deadline == nil)
        #expect(m.isReady == true)
        #expect(m.restarts == 0)
        // Starting what runs does nothing.
        #expect(m.start(now: at(.seconds(1)), dependenciesReady: []) == [])
        #expect(m.state == .running)
    }

    @Test("a notify worker starts with a ready deadline and is ready on READY=1")
    func startNotify() {
        var m = WorkerMachine(
            definition: worker {
                $0.notify = true; $0.readyTimeout = .seconds(90)
            })
        #expect(m.start(now: t0, dependenciesReady: []) == [.spawn])
        #expect(m.spawned(pid: 7, now: t0) == [.record(.started(pid: 7))])
        #expect(m.state == .starting)
        #expect(m.deadline == at(.seconds(90)))
        #expect(m.isReady == false)
        #expect(m.notified(notifyMessage("READY=1"), now: at(.seconds(2))) == [.record(.ready)])
        #expect(m.state == .ready)
        #expect(m.deadline == nil)
        #expect(m.isReady == true)
        // A second READY=1 is not a second event.
        #expect(m.notified(notifyMessage("READY=1"), now: at(.seconds(3))) == [])
    }

    @Test("READY=1 arms the watchdog deadline; WATCHDOG=1 pushes it")
    func watchdogPushes() {
        var m = spawnedMachine(
            worker {
                $0.notify = true; $0.watchdog = .seconds(30)
            })
        #expect(m.notified(notifyMessage("READY=1"), now: at(.seconds(1))) == [.record(.ready)])
        #expect(m.deadline == at(.seconds(31)))
        #expect(m.notified(notifyMessage("WATCHDOG=1"), now: at(.seconds(20))) == [])
        #expect(m.deadline == at(.seconds(50)))
        #expect(m.timerFired(now: at(.seconds(31)), missing: []) == [])
        #expect(m.state == .ready)
    }

    @Test("a non-notify worker with a watchdog gets its deadline when spawned")
    func nonNotifyWatchdog() {
        var m = spawnedMachine(worker { $0.watchdog = .seconds(30) })
        #expect(m.state == .running)
        #expect(m.deadline == at(.seconds(30)))
        _ = m.notified(notifyMessage("WATCHDOG=1"), now: at(.seconds(10)))
        #expect(m.deadline == at(.seconds(40)))
    }

    @Test("watchdog timeout: SIGABRT to the main process, SIGKILL to the group after stop-timeout, then backoff")
    func watchdogFires() {
        var m = spawnedMachine(
            worker {
                $0.notify = true; $0.watchdog = .seconds(30); $0.stopTimeout = .seconds(10)
            })
        _ = m.notified(notifyMessage("READY=1"), now: t0)
        #expect(m.timerFired(now: at(.seconds(29)), missing: []) == [])
        #expect(m.timerFired(now: at(.seconds(30)), missing: []) == [.record(.watchdog(timeout: .seconds(30))), .signalMain(Signals.abrt)])
        #expect(m.state == .stopping)
        #expect(m.deadline == at(.seconds(40)))
        #expect(m.isReady == false)
        #expect(m.timerFired(now: at(.seconds(39)), missing: []) == [])
        #expect(
            m.timerFired(now: at(.seconds(40)), missing: []) == [.record(.stopKilled(timeout: .seconds(10))), .signalGroup(Signals.kill)])
        #expect(m.state == .stopping)
        let actions = m.exited(.signal(Signals.kill), now: at(.seconds(41)), random: noJitter)
        #expect(actions == [.record(.exited(.signal(9), uptime: .seconds(41))), .record(.backoff(delay: .milliseconds(100), failures: 1))])
        #expect(m.state == .backoff)
        #expect(m.pid == nil)
        #expect(m.lastExit == .signal(9))
        #expect(m.deadline == at(.milliseconds(41_100)))
        #expect(m.timerFired(now: at(.milliseconds(41_100)), missing: []) == [.spawn])
        #expect(m.restarts == 1)
    }

    @Test("WATCHDOG=trigger fires the watchdog at once")
    func watchdogTrigger() {
        var m = spawnedMachine(worker { $0.watchdog = .seconds(30) })
        #expect(
            m.notified(notifyMessage("WATCHDOG=trigger"), now: at(.seconds(5))) == [
                .record(.watchdog(timeout: .seconds(30))), .signalMain(Signals.abrt),
            ])
        #expect(m.state == .stopping)
    }

    @Test("ready timeout: stop-signal and SIGCONT to the group, the exit goes to the restart policy")
    func readyTimeout() {
        var m = spawnedMachine(
            worker {
                $0.notify = true; $0.readyTimeout = .seconds(5); $0.stopSignal = Signals.int
            })
        #expect(m.timerFired(now: at(.seconds(4)), missing: []) == [])
        #expect(
            m.timerFired(now: at(.seconds(5)), missing: []) == [
                .record(.readyTimeout(timeout: .seconds(5))), .record(.stopping(reason: "no READY=1 in time")),
                .signalGroup(Signals.int), .signalGroup(Signals.cont),
            ])
        #expect(m.state == .stopping)
        #expect(m.deadline == at(.seconds(15)))
        let actions = m.exited(.code(0), now: at(.seconds(6)), random: noJitter)
        #expect(actions.last == .record(.backoff(delay: .milliseconds(100), failures: 1)))
        #expect(m.state == .backoff)
    }

    @Test("a ready timeout is a failure even when the worker then exits 0 under on-failure")
    func readyTimeoutIsFailure() {
        var m = spawnedMachine(
            worker {
                $0.notify = true; $0.restart = .onFailure
            })
        _ = m.timerFired(now: at(.seconds(90)), missing: [])
        _ = m.exited(.code(0), now: at(.seconds(91)), random: noJitter)
        #expect(m.state == .backoff)
        #expect(m.consecutiveFailures == 1)
    }

    @Test("EXTEND_TIMEOUT_USEC extends the ready deadline, never shortens it")
    func extendTimeout() {
        var m = spawnedMachine(
            worker {
                $0.notify = true; $0.readyTimeout = .seconds(90)
            })
        #expect(m.notified(notifyMessage("EXTEND_TIMEOUT_USEC=5000000"), now: at(.seconds(1))) == [])
        #expect(m.deadline == at(.seconds(90)))
        #expect(m.notified(notifyMessage("EXTEND_TIMEOUT_USEC=30000000"), now: at(.seconds(80))) == [])
        #expect(m.deadline == at(.seconds(110)))
        #expect(m.timerFired(now: at(.seconds(90)), missing: []) == [])
        #expect(m.state == .starting)
        #expect(m.timerFired(now: at(.seconds(110)), missing: []).first == .record(.readyTimeout(timeout: .seconds(90))))
    }

    @Test("EXTEND_TIMEOUT_USEC extends the stop deadline, and is ignored once ready")
    func extendStopTimeout() {
        var m = spawnedMachine(
            worker {
                $0.notify = true; $0.watchdog = nil
            })
        _ = m.notified(notifyMessage("READY=1"), now: t0)
        _ = m.notified(notifyMessage("EXTEND_TIMEOUT_USEC=60000000"), now: t0)
        #expect(m.deadline == nil)
        _ = m.stop(now: at(.seconds(1)))
        #expect(m.deadline == at(.seconds(11)))
        _ = m.notified(notifyMessage("EXTEND_TIMEOUT_USEC=60000000"), now: at(.seconds(2)))
        #expect(m.deadline == at(.seconds(62)))
    }

    @Test("STOPPING=1 puts the worker in stopping with a stop deadline, sending nothing")
    func workerSaysStopping() {
        var m = spawnedMachine(worker { $0.stopTimeout = .seconds(10) })
        #expect(m.notified(notifyMessage("STOPPING=1"), now: at(.seconds(3))) == [.record(.stopping(reason: "the worker sent STOPPING=1"))])
        #expect(m.state == .stopping)
        #expect(m.deadline == at(.seconds(13)))
        #expect(m.wanted == .up)
        // Its exit then goes to the restart policy (always: backoff).
        _ = m.exited(.code(0), now: at(.seconds(4)), random: noJitter)
        #expect(m.state == .backoff)
    }

    @Test("STATUS= is kept, and cleared by a new process")
    func statusText() {
        var m = spawnedMachine(worker())
        _ = m.notified(notifyMessage("STATUS=loading model"), now: t0)
        #expect(m.statusText == "loading model")
        _ = m.restart(now: t0, reason: "requested", dependenciesReady: [])
        _ = m.exited(.code(0), now: t0, random: noJitter)
        _ = m.spawned(pid: 101, now: t0)
        #expect(m.statusText == nil)
    }

    @Test("notify messages without a process are ignored")
    func notifyWithoutProcess() {
        var m = WorkerMachine(definition: worker { $0.notify = true })
        #expect(m.notified(notifyMessage("READY=1\nSTATUS=x"), now: t0) == [])
        #expect(m.state == .stopped)
        #expect(m.statusText == nil)
    }

    // MARK: Exits and the restart policy

    struct ExitCase: Sendable, CustomTestStringConvertible {
        var mode: RestartMode
        var status: ExitStatus
        var state: WorkerState
        var testDescription: String { "\(mode.rawValue), \(status) -> \(state)" }
    }

    static let exitCases: [ExitCase] = [
        ExitCase(mode: .always, status: .code(0), state: .backoff),
        ExitCase(mode: .always, status: .code(1), state: .backoff),
        ExitCase(mode: .always, status: .signal(Signals.kill), state: .backoff),
        ExitCase(mode: .onFailure, status: .code(0), state: .stopped),
        ExitCase(mode: .onFailure, status: .code(2), state: .backoff),
        ExitCase(mode: .onFailure, status: .signal(Signals.term), state: .backoff),
        ExitCase(mode: .never, status: .code(0), state: .stopped),
        ExitCase(mode: .never, status: .code(1), state: .stopped),
        ExitCase(mode: .never, status: .signal(Signals.abrt), state: .stopped),
        ExitCase(mode: .always, status: .code(78), state: .parked),
        ExitCase(mode: .onFailure, status: .code(78), state: .parked),
        ExitCase(mode: .never, status: .code(78), state: .parked),
    ]

    @Test("an exit goes where restart = always | on-failure | never says", arguments: exitCases)
    func exitPolicy(_ c: ExitCase) {
        var m = spawnedMachine(worker { $0.restart = c.mode })
        let actions = m.exited(c.status, now: at(.seconds(2)), random: noJitter)
        #expect(actions.first == .record(.exited(c.status, uptime: .seconds(2))))
        #expect(m.state == c.state)
        #expect(m.lastExit == c.status)
        #expect(m.pid == nil)
        #expect(m.wanted == .up)
        switch c.state {
        case .backoff:
            #expect(actions.count == 2)
            #expect(actions.last == .record(.backoff(delay: .milliseconds(100), failures: 1)))
            #expect(m.deadline == at(.milliseconds(2100)))
        case .stopped:
            #expect(actions == [.record(.exited(c.status, uptime: .seconds(2))), .record(.stopped)])
            #expect(m.deadline == nil)
            #expect(m.lastReason != nil)
            // Nothing brings it back by itself.
            #expect(m.timerFired(now: at(.seconds(3600)), missing: []) == [])
        case .parked:
            #expect(actions.count == 2)
            guard case .record(.parked(let reason))? = actions.last else {
                Issue.record("no parked event: \(actions)")
                return
            }
            #expect(reason.contains("exit status 78 (EX_CONFIG)"))
            #expect(reason.contains("aibox start chat"))
            #expect(m.deadline == nil)
            #expect(m.timerFired(now: at(.seconds(3600)), missing: []) == [])
        default:
            Issue.record("unexpected case")
        }
    }

    @Test("exit 78 after the watchdog fired is a failure, not a configuration error")
    func exit78AfterWatchdog() {
        var m = spawnedMachine(worker { $0.watchdog = .seconds(10) })
        _ = m.timerFired(now: at(.seconds(10)), missing: [])
        let actions = m.exited(.code(78), now: at(.seconds(11)), random: noJitter)
        #expect(m.state == .backoff)
        #expect(actions.last == .record(.backoff(delay: .milliseconds(100), failures: 1)))
    }

    @Test("a parked worker starts again when asked, counters cleared")
    func startFromParked() {
        var m = spawnedMachine(worker())
        _ = m.exited(.code(78), now: t0, random: noJitter)
        #expect(m.state == .parked)
        #expect(m.start(now: at(.seconds(60)), dependenciesReady: []) == [.spawn])
        #expect(m.consecutiveFailures == 0)
        #expect(m.recentExits.isEmpty)
    }

    // MARK: Backoff

    @Test(
        "backoff doubles per failure with ±20% jitter",
        arguments: [(0.0, 0.8), (0.5, 1.0), (1.0, 1.2)])
    func backoffJitter(random: Double, factor: Double) {
        for failures in 1...6 {
            let expected = Double(100_000_000 << (failures - 1)) * factor
            let d = Backoff(base: .milliseconds(100), max: .seconds(300)).delay(attempt: failures, random: random)
            #expect(abs(Double(d.nanoseconds) - expected) <= 1, "failures \(failures), random \(random): \(d)")
        }
    }

    @Test("backoff is capped at restart-max-delay, jitter included", arguments: [0.0, 0.5, 1.0])
    func backoffCap(random: Double) {
        #expect(Backoff(base: .milliseconds(100), max: .seconds(300)).delay(attempt: 20, random: random) == .seconds(300))
        #expect(Backoff(base: .milliseconds(100), max: .seconds(300)).delay(attempt: 1_000, random: random) == .seconds(300))
        // 1s·2^3 = 8s, ×1.2 = 9.6s: capped at 9s only with the top jitter.
        let d = Backoff(base: .seconds(1), max: .seconds(9)).delay(attempt: 4, random: random)
        if random == 1.0 {
            #expect(d == .seconds(9))
        } else {
            #expect(abs(Double(d.nanoseconds) - 8e9 * (0.8 + 0.4 * random)) <= 1)
        }
    }

    @Test("without jitter the rule is plain doubling to the cap (the hotplug monitor's 1, 2, 4 … 60 s)")
    func backoffWithoutJitter() {
        let rule = Backoff(base: .seconds(1), max: .seconds(60), jitter: 0)
        let seconds = (1...9).map { rule.delay(attempt: $0, random: 0.9).milliseconds / 1000 }
        #expect(seconds == [1, 2, 4, 8, 16, 32, 60, 60, 60])
    }

    @Test("random outside [0, 1] is clamped")
    func backoffClamp() {
        #expect(Backoff(base: .seconds(1), max: .seconds(60)).delay(attempt: 1, random: -3) == .milliseconds(800))
        #expect(Backoff(base: .seconds(1), max: .seconds(60)).delay(attempt: 1, random: 7) == .milliseconds(1200))
        #expect(Backoff(base: .seconds(1), max: .seconds(60)).delay(attempt: 0, random: 0.5) == .seconds(1))
    }

    /// Crashes a running machine at `now` and restarts it when the backoff is over; returns the delay.
    @discardableResult
    static func crash(_ m: inout WorkerMachine, at now: Instant, status: ExitStatus = .code(1), random: Double = noJitter) -> Duration? {
        let actions = m.exited(status, now: now, random: random)
        guard case .record(.backoff(let delay, _))? = actions.last else { return nil }
        #expect(m.deadline == now + delay)
        #expect(m.timerFired(now: now + delay, missing: []) == [.spawn])
        _ = m.spawned(pid: 100 + Int32(m.restarts), now: now + delay)
        return delay
    }

    @Test("successive crashes double the delay up to restart-max-delay")
    func backoffGrowsInMachine() {
        var m = spawnedMachine(
            worker {
                $0.restartMaxDelay = .seconds(1); $0.crashLoop.burst = 100
            })
        var now = at(.seconds(1))
        var delays: [Duration] = []
        for _ in 0..<7 {
            delays.append(Self.crash(&m, at: now) ?? .zero)
            now = now + .seconds(1)
        }
        #expect(delays == [100, 200, 400, 800, 1000, 1000, 1000].map { .milliseconds($0) })
        #expect(m.consecutiveFailures == 7)
        #expect(m.restarts == 7)
    }

    @Test("the jitter given to the machine shows in the delay", arguments: [(0.0, 80), (0.5, 100), (1.0, 120)])
    func jitterInMachine(random: Double, milliseconds: Int64) {
        var m = spawnedMachine(worker())
        let actions = m.exited(.code(1), now: t0, random: random)
        guard case .record(.backoff(let delay, 1))? = actions.last else {
            Issue.record("no backoff: \(actions)")
            return
        }
        #expect(abs(delay.nanoseconds - milliseconds * 1_000_000) <= 1)
    }

    @Test("running longer than stable-after resets the backoff")
    func stableResetsBackoff() {
        var m = spawnedMachine(
            worker {
                $0.stableAfter = .seconds(30); $0.crashLoop.burst = 100
            })
        Self.crash(&m, at: at(.seconds(1)))
        Self.crash(&m, at: at(.seconds(2)))
        #expect(m.consecutiveFailures == 2)
        // Runs 29 s: not stable, the delay keeps growing.
        let startedAt = m.startedAt!
        #expect(Self.crash(&m, at: startedAt + .seconds(29)) == .milliseconds(400))
        // Runs 31 s: stable, back to restart-delay.
        let again = m.startedAt!
        #expect(Self.crash(&m, at: again + .seconds(31)) == .milliseconds(100))
        #expect(m.consecutiveFailures == 1)
    }

    @Test("start during backoff starts at once, as a restart, with the backoff forgotten")
    func startDuringBackoff() {
        var m = spawnedMachine(worker())
        _ = m.exited(.code(1), now: t0, random: noJitter)
        #expect(m.state == .backoff)
        #expect(m.start(now: at(.milliseconds(10)), dependenciesReady: []) == [.spawn])
        #expect(m.consecutiveFailures == 0)
        #expect(m.restarts == 1)
        #expect(m.deadline == nil)
    }

    // MARK: Crash loops

    @Test("burst exits within window quarantine the worker; the timer releases it with counters reset")
    func crashLoop() {
        var m = spawnedMachine(
            worker { $0.crashLoop = CrashLoopPolicy(burst: 3, window: .seconds(60), quarantine: .seconds(600)) })
        Self.crash(&m, at: at(.seconds(1)))
        Self.crash(&m, at: at(.seconds(2)))
        let actions = m.exited(.code(1), now: at(.seconds(3)), random: noJitter)
        #expect(
            actions == [
                .record(.exited(.code(1), uptime: .milliseconds(800))),
                .record(.quarantined(deaths: 3, window: .seconds(60), retryIn: .seconds(600))),
            ])
        #expect(m.state == .quarantined)
        #expect(m.deadline == at(.seconds(603)))
        #expect(m.lastReason == "crash loop: 3 exits within 1m")
        #expect(m.timerFired(now: at(.seconds(602)), missing: []) == [])
        let restartsBefore = m.restarts
        #expect(m.timerFired(now: at(.seconds(603)), missing: []) == [.record(.released), .spawn])
        #expect(m.restarts == restartsBefore + 1)
        #expect(m.consecutiveFailures == 0)
        #expect(m.recentExits.isEmpty)
        _ = m.spawned(pid: 500, now: at(.seconds(603)))
        // One more crash is a first failure again, not a quarantine.
        #expect(Self.crash(&m, at: at(.seconds(604))) == .milliseconds(100))
        #expect(m.state == .running)
    }

    @Test("exits spread wider than the window never quarantine")
    func spreadExits() {
        var m = spawnedMachine(
            worker {
                $0.crashLoop = CrashLoopPolicy(burst: 3, window: .seconds(60), quarantine: .seconds(600))
                $0.restartMaxDelay = .seconds(10)
                $0.stableAfter = .seconds(3600)
            })
        for i in 1...12 {
            let actions = m.exited(.code(1), now: at(.seconds(31 * Int64(i))), random: noJitter)
            #expect(m.state == .backoff, "exit \(i): \(actions)")
            #expect(m.recentExits.count <= 2)
            let due = m.deadline ?? at(.seconds(31 * Int64(i)))
            #expect(m.timerFired(now: due, missing: []) == [.spawn])
            _ = m.spawned(pid: 200, now: due)
        }
        #expect(m.consecutiveFailures == 12)
    }

    @Test("spawn failures count as deaths: backoff, then quarantine")
    func spawnFailures() {
        var m = WorkerMachine(
            definition: worker { $0.crashLoop = CrashLoopPolicy(burst: 3, window: .seconds(60), quarantine: .seconds(60)) })
        #expect(m.start(now: t0, dependenciesReady: []) == [.spawn])
        #expect(
            m.spawnFailed("execve /usr/bin/chat: No such file or directory", now: t0, random: noJitter) == [
                .record(.spawnFailed("execve /usr/bin/chat: No such file or directory")),
                .record(.backoff(delay: .milliseconds(100), failures: 1)),
            ])
        #expect(m.state == .backoff)
        #expect(m.pid == nil)
        #expect(m.timerFired(now: at(.milliseconds(100)), missing: []) == [.spawn])
        _ = m.spawnFailed("again", now: at(.milliseconds(100)), random: noJitter)
        #expect(m.deadline == at(.milliseconds(300)))
        _ = m.timerFired(now: at(.milliseconds(300)), missing: [])
        let last = m.spawnFailed("again", now: at(.milliseconds(300)), random: noJitter)
        #expect(last.last == .record(.quarantined(deaths: 3, window: .seconds(60), retryIn: .seconds(60))))
        #expect(m.state == .quarantined)
    }

    // MARK: Stopping

    @Test("stop while running: stop-signal and SIGCONT to the group, SIGKILL after stop-timeout, then stopped")
    func stopRunning() {
        var m = spawnedMachine(worker { $0.stopTimeout = .seconds(10) })
        #expect(
            m.stop(now: at(.seconds(5))) == [
                .record(.stopping(reason: "requested")), .signalGroup(Signals.term), .signalGroup(Signals.cont),
            ])
        #expect(m.state == .stopping)
        #expect(m.wanted == .down)
        #expect(m.deadline == at(.seconds(15)))
        #expect(m.stop(now: at(.seconds(6))) == [])
        #expect(
            m.timerFired(now: at(.seconds(15)), missing: []) == [.record(.stopKilled(timeout: .seconds(10))), .signalGroup(Signals.kill)])
        #expect(
            m.exited(.signal(Signals.kill), now: at(.seconds(16)), random: noJitter) == [
                .record(.exited(.signal(9), uptime: .seconds(16))), .record(.stopped),
            ])
        #expect(m.state == .stopped)
        #expect(m.deadline == nil)
        #expect(m.restarts == 0)
    }

    @Test("stop-signal KILL is sent without SIGCONT")
    func stopWithKill() {
        var m = spawnedMachine(worker { $0.stopSignal = Signals.kill })
        #expect(m.stop(now: t0) == [.record(.stopping(reason: "requested")), .signalGroup(Signals.kill)])
    }

    @Test("a clean exit after stop is not counted as a failure")
    func stopThenCleanExit() {
        var m = spawnedMachine(worker())
        _ = m.stop(now: t0)
        _ = m.exited(.code(0), now: at(.seconds(1)), random: noJitter)
        #expect(m.state == .stopped)
        #expect(m.consecutiveFailures == 0)
        #expect(m.recentExits.isEmpty)
    }

    enum Idle: String, CaseIterable, Sendable { case backoff, quarantined, parked, waiting }

    static func machine(in idle: Idle) -> WorkerMachine {
        switch idle {
        case .backoff:
            var m = spawnedMachine(worker())
            _ = m.exited(.code(1), now: t0, random: noJitter)
            return m
        case .quarantined:
            var m = spawnedMachine(worker { $0.crashLoop.burst = 1 })
            _ = m.exited(.code(1), now: t0, random: noJitter)
            return m
        case .parked:
            var m = spawnedMachine(worker())
            _ = m.exited(.code(78), now: t0, random: noJitter)
            return m
        case .waiting:
            var m = WorkerMachine(definition: worker { $0.after = ["llm"] })
            _ = m.start(now: t0, dependenciesReady: ["llm"])
            return m
        }
    }

    @Test("stop while no process runs: stopped at once", arguments: Idle.allCases)
    func stopIdle(_ idle: Idle) {
        var m = Self.machine(in: idle)
        #expect(m.state.rawValue == idle.rawValue)
        #expect(m.stop(now: at(.seconds(1))) == [.record(.stopped)])
        #expect(m.state == .stopped)
        #expect(m.wanted == .down)
        #expect(m.deadline == nil)
        #expect(m.waitingFor.isEmpty)
        #expect(m.timerFired(now: at(.seconds(100_000)), missing: []) == [])
        #expect(m.dependenciesChanged(now: at(.seconds(2)), missing: []) == [])
        #expect(m.stop(now: at(.seconds(3))) == [])
    }

    @Test("start while stopping: the exit leads to a new start")
    func startWhileStopping() {
        var m = spawnedMachine(worker())
        _ = m.stop(now: t0)
        #expect(m.start(now: at(.seconds(1)), dependenciesReady: []) == [])
        #expect(
            m.exited(.signal(Signals.term), now: at(.seconds(2)), random: noJitter) == [
                .record(.exited(.signal(15), uptime: .seconds(2))), .record(.restarting(reason: "started while stopping")), .spawn,
            ])
        #expect(m.state == .starting)
    }

    // MARK: Restart

    @Test("restart: stop, then start again at once on exit, counted, with no backoff")
    func restart() {
        var m = spawnedMachine(worker())
        #expect(
            m.restart(now: at(.seconds(10)), reason: "requested", dependenciesReady: []) == [
                .record(.stopping(reason: "requested")), .signalGroup(Signals.term), .signalGroup(Signals.cont),
            ])
        #expect(m.state == .stopping)
        #expect(m.wanted == .up)
        #expect(
            m.exited(.signal(Signals.term), now: at(.seconds(11)), random: noJitter) == [
                .record(.exited(.signal(15), uptime: .seconds(11))), .record(.restarting(reason: "requested")), .spawn,
            ])
        #expect(m.restarts == 1)
        #expect(m.consecutiveFailures == 0)
        #expect(m.recentExits.isEmpty)
        #expect(m.deadline == nil)
        #expect(m.spawned(pid: 300, now: at(.seconds(11))) == [.record(.started(pid: 300))])
        #expect(m.state == .running)
    }

    @Test("restart of a stopped worker is a plain start")
    func restartStopped() {
        var m = WorkerMachine(definition: worker())
        #expect(m.restart(now: t0, reason: "requested", dependenciesReady: []) == [.spawn])
        #expect(m.restarts == 0)
    }

    @Test("restart while already stopping waits for the exit")
    func restartWhileStopping() {
        var m = spawnedMachine(worker())
        _ = m.stop(now: t0)
        #expect(m.restart(now: t0, reason: "definition changed", dependenciesReady: []) == [])
        #expect(m.exited(.code(0), now: t0, random: noJitter).suffix(2) == [.record(.restarting(reason: "definition changed")), .spawn])
    }

    // MARK: Memory

    @Test("memory above memory-max: graceful restart")
    func memoryAbove() {
        var m = spawnedMachine(worker { $0.memoryMax = 1 << 30 })
        #expect(
            m.memoryMeasured(rss: (1 << 30) + 1, now: at(.seconds(60))) == [
                .record(.memoryExceeded(rss: (1 << 30) + 1, limit: 1 << 30)),
                .record(.stopping(reason: "memory above memory-max")),
                .signalGroup(Signals.term), .signalGroup(Signals.cont),
            ])
        #expect(m.state == .stopping)
        #expect(
            m.exited(.code(0), now: at(.seconds(61)), random: noJitter).suffix(2) == [
                .record(.restarting(reason: "memory above memory-max")), .spawn,
            ])
        #expect(m.restarts == 1)
        #expect(m.consecutiveFailures == 0)
    }

    @Test("memory at or below memory-max, or no memory-max: nothing")
    func memoryBelow() {
        var m = spawnedMachine(worker { $0.memoryMax = 1 << 30 })
        #expect(m.memoryMeasured(rss: 1 << 30, now: t0) == [])
        #expect(m.memoryMeasured(rss: 1 << 20, now: t0) == [])
        #expect(m.state == .running)
        var unlimited = spawnedMachine(worker())
        #expect(unlimited.memoryMeasured(rss: .max, now: t0) == [])
        // And not while already stopping.
        _ = m.stop(now: t0)
        #expect(m.memoryMeasured(rss: 1 << 40, now: t0) == [])
    }

    // MARK: Dependencies

    @Test("start with dependencies missing waits; it starts once none are missing")
    func waitingForDependencies() {
        var m = WorkerMachine(definition: worker { $0.after = ["llm", "db"] })
        #expect(m.start(now: t0, dependenciesReady: ["llm", "db"]) == [.record(.waiting(for: ["llm", "db"]))])
        #expect(m.state == .waiting)
        #expect(m.waitingFor == ["llm", "db"])
        #expect(m.wanted == .up)
        #expect(m.dependenciesChanged(now: at(.seconds(1)), missing: ["llm", "db"]) == [])
        #expect(m.dependenciesChanged(now: at(.seconds(2)), missing: ["llm"]) == [.record(.waiting(for: ["llm"]))])
        #expect(m.dependenciesChanged(now: at(.seconds(3)), missing: []) == [.spawn])
        #expect(m.state == .starting)
        #expect(m.waitingFor.isEmpty)
        #expect(m.restarts == 0)
    }

    @Test("a restart held for dependencies still counts as a restart")
    func restartHeldForDependencies() {
        var m = spawnedMachine(worker { $0.after = ["llm"] })
        _ = m.exited(.code(1), now: t0, random: noJitter)
        #expect(m.timerFired(now: at(.milliseconds(100)), missing: ["llm"]) == [.record(.waiting(for: ["llm"]))])
        #expect(m.state == .waiting)
        #expect(m.restarts == 0)
        #expect(m.dependenciesChanged(now: at(.seconds(5)), missing: []) == [.spawn])
        #expect(m.restarts == 1)
    }

    @Test("dependenciesChanged does nothing unless waiting")
    func dependenciesChangedIgnored() {
        var m = spawnedMachine(worker())
        #expect(m.dependenciesChanged(now: t0, missing: []) == [])
        #expect(m.state == .running)
    }

    // MARK: Counting and readiness

    @Test("restarts: the first start does not count, each restart does, and counts survive the daemon")
    func restartCounting() {
        var m = spawnedMachine(worker())
        #expect(m.restarts == 0)
        Self.crash(&m, at: at(.seconds(1)))
        #expect(m.restarts == 1)
        _ = m.restart(now: at(.seconds(2)), reason: "requested", dependenciesReady: [])
        _ = m.exited(.code(0), now: at(.seconds(2)), random: noJitter)
        #expect(m.restarts == 2)
        var restored = WorkerMachine(definition: worker(), restarts: 7)
        _ = restored.start(now: t0, dependenciesReady: [])
        #expect(restored.restarts == 7)
        restored.restore(restarts: 9, lastExit: .code(3))
        #expect(restored.restarts == 9)
        #expect(restored.lastExit == .code(3))
    }

    struct ReadyCase: Sendable, CustomTestStringConvertible {
        var notify: Bool
        var step: String
        var ready: Bool
        var testDescription: String { "notify=\(notify) \(step) -> \(ready)" }
    }

    @Test(
        "isReady: READY=1 for notify workers, a running process for the others",
        arguments: [
            ReadyCase(notify: false, step: "stopped", ready: false),
            ReadyCase(notify: false, step: "launched", ready: false),
            ReadyCase(notify: false, step: "spawned", ready: true),
            ReadyCase(notify: false, step: "stopping", ready: false),
            ReadyCase(notify: true, step: "stopped", ready: false),
            ReadyCase(notify: true, step: "launched", ready: false),
            ReadyCase(notify: true, step: "spawned", ready: false),
            ReadyCase(notify: true, step: "ready", ready: true),
            ReadyCase(notify: true, step: "stopping", ready: false),
        ])
    func isReady(_ c: ReadyCase) {
        var m = WorkerMachine(definition: worker { $0.notify = c.notify })
        if c.step != "stopped" { _ = m.start(now: t0, dependenciesReady: []) }
        if ["spawned", "ready", "stopping"].contains(c.step) { _ = m.spawned(pid: 1, now: t0) }
        if ["ready", "stopping"].contains(c.step) { _ = m.notified(notifyMessage("READY=1"), now: t0) }
        if c.step == "stopping" { _ = m.stop(now: t0) }
        #expect(m.isReady == c.ready)
    }

    // MARK: Events for people

    @Test("events have a stored kind and a readable message")
    func eventText() {
        #expect(WorkerEvent.backoff(delay: .milliseconds(200), failures: 2).message == "restarting in 200ms (failure 2 in a row)")
        #expect(WorkerEvent.backoff(delay: .milliseconds(200), failures: 2).kind == "worker.backoff")
        #expect(
            WorkerEvent.quarantined(deaths: 5, window: .seconds(60), retryIn: .seconds(600)).message
                == "crash loop: 5 exits within 1m; quarantined, retried in 10m")
        #expect(WorkerEvent.exited(.signal(9), uptime: .seconds(90)).message == "exited (killed by SIGKILL) after 1m30s")
        #expect(WorkerEvent.exited(.code(3), uptime: .milliseconds(1500)).message == "exited (exit code 3) after 1.5s")
        #expect(WorkerEvent.watchdog(timeout: .seconds(30)).kind == "worker.watchdog")
        #expect(WorkerEvent.readyTimeout(timeout: .seconds(30)).kind == "worker.ready-timeout")
        #expect(WorkerEvent.waiting(for: ["a", "b"]).message == "waiting for a, b")
        #expect(Set(WorkerState.allCases.filter(\.hasProcess)) == [.starting, .running, .ready, .stopping])
    }
}

import AIBoxCore
import AIBoxSystem
import Glibc
import Logging

/// A starting worker's `ready-http` checks: one attempt at a time, on the loop (a
/// non-blocking connect, a GET, the status line), each bounded by `ReadyHTTP.attemptTimeout`,
/// the next after `ReadyHTTP.schedule`, all on the monotonic clock. The worker's own
/// `ready-timeout` ends the wait as it does for READY=1.
struct ReadinessProbe {
    /// The process the checks are for: a new start begins afresh.
    let pid: Int32
    let check: ReadyHTTP
    var attempts = 0
    /// When the next attempt begins; nil while one is under way.
    var next: Instant?
    var inFlight: HTTPProbe?
    var attemptDeadline: Instant?
    /// How the last attempt ended, said in the log if the worker never gets ready.
    var lastOutcome: String?

    var deadline: Instant? { attemptDeadline ?? next }
}

extension Supervisor {
    /// After a worker's actions: probing begins when a ready-http worker's process starts,
    /// and ends as soon as it is no longer starting (ready, exited, stopping).
    func updateReadinessProbe(_ name: String, _ slot: WorkerSlot) {
        let m = slot.machine
        if m.state == .starting, let pid = m.pid, let check = m.definition.readyHTTP {
            if readiness[name]?.pid == pid { return }
            endReadinessProbe(name)
            let first = Clock.monotonic() + ReadyHTTP.schedule.delay(attempt: 1, random: 0)
            readiness[name] = ReadinessProbe(pid: pid, check: check, next: first)
            return
        }
        guard let probe = readiness[name] else { return }
        if m.state != .ready, let outcome = probe.lastOutcome {
            pendingLog.append((.warning, "worker \(name): \(probe.check.url) never answered 200; the last attempt: \(outcome)"))
        }
        endReadinessProbe(name)
    }

    private func endReadinessProbe(_ name: String) {
        guard let probe = readiness.removeValue(forKey: name) else { return }
        if let p = probe.inFlight { loop.remove(p.fd) }
    }

    /// The earliest moment a probe needs the loop (for `rearm`).
    var readinessDeadline: Instant? { readiness.values.compactMap(\.deadline).min() }

    /// Begins the attempts that are due and ends those that took too long.
    func readinessTimer(now: Instant) {
        for name in Array(readiness.keys) {
            guard let probe = readiness[name] else { continue }
            if let d = probe.attemptDeadline, d <= now {
                attemptEnded(name, status: nil, reason: "no answer within \(ReadyHTTP.attemptTimeout.aiboxText)", now: now)
            } else if let n = probe.next, n <= now {
                beginAttempt(name, now: now)
            }
        }
    }

    private func beginAttempt(_ name: String, now: Instant) {
        guard var probe = readiness[name] else { return }
        probe.attempts += 1
        probe.next = nil
        do {
            let attempt = try HTTPProbe(probe.check)
            let fd = attempt.fd
            try loop.add(fd, events: EventLoop.writable) { [unowned self] _ in
                self.attemptProgressed(name, fd: fd)
                self.afterTurn()
            }
            probe.inFlight = attempt
            probe.attemptDeadline = now + ReadyHTTP.attemptTimeout
            readiness[name] = probe
        } catch {
            // Refused at once (nothing listens yet), or no descriptor left: the next attempt later.
            readiness[name] = probe
            attemptEnded(name, status: nil, reason: "\(error.function): \(error.reason)", now: now)
        }
    }

    private func attemptProgressed(_ name: String, fd: Int32) {
        guard let attempt = readiness[name]?.inFlight, attempt.fd == fd else { return }
        switch attempt.advance() {
        case .wantWrite: loop.modify(fd, events: EventLoop.writable)
        case .wantRead: loop.modify(fd, events: EventLoop.readable)
        case .finished(let status, let reason): attemptEnded(name, status: status, reason: reason, now: Clock.monotonic())
        }
    }

    /// One attempt is over: 200 makes the worker ready; anything else is tried again later.
    private func attemptEnded(_ name: String, status: Int?, reason: String, now: Instant) {
        guard var probe = readiness[name], let slot = slots[name] else { return }
        if let attempt = probe.inFlight { loop.remove(attempt.fd) }
        probe.inFlight = nil
        probe.attemptDeadline = nil
        // The next attempt is due in any case: a 200 that finds the worker no longer waiting
        // for it must not leave the probe without a deadline (a ready worker's probe ends).
        probe.next = now + ReadyHTTP.schedule.delay(attempt: probe.attempts + 1, random: 0)
        if status != 200 { probe.lastOutcome = reason }
        readiness[name] = probe
        if status == 200 { apply(name, slot.machine.readinessConfirmed(now: now)) }
    }
}

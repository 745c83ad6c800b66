/// Health-gated commit (issue 5), pure: after a slot boots on trial, it is marked good only
/// once every critical worker has been ready — without a restart — for `commitAfter`; a
/// critical worker in quarantine (crash loop), or no such stretch before `deadline`, makes
/// it bad. Time is passed in: the daemon gives the boot clock (CLOCK_BOOTTIME) with `started`
/// the boot itself, so the deadline counts from the boot — a daemon killed and restarted
/// during the trial makes a new gate with the same deadline, not a later one.
public struct TrialGate: Sendable {
    public struct Worker: Sendable {
        public var name: String
        public var ready: Bool
        public var quarantined: Bool
        public var restarts: Int
        public init(name: String, ready: Bool, quarantined: Bool, restarts: Int) {
            self.name = name
            self.ready = ready
            self.quarantined = quarantined
            self.restarts = restarts
        }
    }

    public enum Verdict: Equatable, Sendable {
        /// Nothing decided; look again at the latest by this instant (or on any change).
        case wait(until: Instant)
        case commit(String)
        case reject(String)
    }

    public let commitAfter: Duration
    public let deadline: Instant
    public private(set) var healthySince: Instant?
    private var restarts: [String: Int] = [:]

    public init(started: Instant, commitAfter: Duration, deadline: Duration) {
        self.commitAfter = commitAfter
        self.deadline = started + deadline
    }

    public mutating func evaluate(now: Instant, critical: [Worker]) -> Verdict {
        if let w = critical.first(where: \.quarantined) {
            return .reject("critical worker \(w.name) crash-looped (quarantined)")
        }
        let restarted = critical.contains { w in restarts[w.name].map { $0 != w.restarts } ?? false }
        for w in critical { restarts[w.name] = w.restarts }
        if critical.allSatisfy(\.ready) && !restarted {
            let since = healthySince ?? now
            healthySince = since
            if since + commitAfter <= now {
                let names = critical.isEmpty ? "no critical workers" : critical.map(\.name).joined(separator: ", ")
                return .commit("healthy for \(commitAfter.aiboxText) (\(names))")
            }
        } else {
            healthySince = nil
        }
        if now >= deadline {
            let waiting = critical.filter { !$0.ready }.map(\.name)
            return .reject(
                "not healthy within the commit deadline" + (waiting.isEmpty ? "" : ": \(waiting.joined(separator: ", ")) not ready"))
        }
        let next = healthySince.map { min($0 + commitAfter, deadline) } ?? deadline
        return .wait(until: next)
    }
}

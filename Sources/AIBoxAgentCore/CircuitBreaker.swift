import AIBoxCore

/// One circuit breaker: a provider/model (or a whole provider, for transport failures) that
/// failed is left alone for a while, then given one probe request; a probe that succeeds
/// closes it, one that fails opens it again for the next step of the ladder.
///
/// Times are monotonic instants of this boot (`bootID` names the boot): a breaker read back
/// from the database after a reboot, when the instants mean nothing, is half-open — one
/// probe, not a stampede and not a provider shunned for a stale reason.
public struct CircuitBreaker: Equatable, Sendable {
    public enum State: Equatable, Sendable {
        case closed
        /// Nothing is sent before `until`; then one probe.
        case open(until: Instant, reason: String)
        /// Off until the configuration changes (a key refused, a model that does not exist).
        case disabled(reason: String, configuration: UInt64)
        /// One probe is out; everyone else keeps away until it comes back.
        case probing(since: Instant)
    }

    public private(set) var state: State = .closed
    /// How many times in a row it opened (the ladder's step).
    public private(set) var failures = 0

    /// Cooldowns after failures in a row: 30 s, 1 min, 5 min (then 5 min).
    public static let ladder: [Duration] = [.seconds(30), .seconds(60), .seconds(300)]
    /// The same for a server on the box or the local network: one that aibox restarts is back
    /// within seconds, and every second it is shunned costs cloud money.
    public static let localLadder: [Duration] = [.seconds(5), .seconds(15), .seconds(60)]
    /// A provider out of credit: 5 h, then 24 h.
    public static let quotaLadder: [Duration] = [.seconds(5 * 3600), .seconds(24 * 3600)]
    /// A probe that neither succeeds nor fails within this is taken as failed.
    public static let probeTimeout: Duration = .seconds(300)

    public init() {}

    public init(state: State, failures: Int) {
        self.state = state
        self.failures = failures
    }

    /// Whether a request may go now. A breaker whose time is up lets exactly one through
    /// (and the caller must report how it went).
    public mutating func admit(now: Instant, configuration: UInt64) -> Bool {
        switch state {
        case .closed:
            return true
        case .open(let until, _):
            guard now >= until else { return false }
            state = .probing(since: now)
            return true
        case .disabled(_, let generation):
            guard generation != configuration else { return false }
            state = .probing(since: now)
            return true
        case .probing(let since):
            guard now >= since + CircuitBreaker.probeTimeout else { return false }
            state = .probing(since: now)
            return true
        }
    }

    /// Whether a request would be let through now, without taking the probe.
    public func isAvailable(now: Instant, configuration: UInt64) -> Bool {
        var copy = self
        return copy.admit(now: now, configuration: configuration)
    }

    public mutating func succeeded() {
        state = .closed
        failures = 0
    }

    /// A failure of the class given; returns whether the breaker changed from closed or
    /// probing to open or disabled (worth an event).
    @discardableResult
    public mutating func failed(_ kind: FailureClass, now: Instant, configuration: UInt64, reason: String, local: Bool = false) -> Bool {
        let ladder = local ? CircuitBreaker.localLadder : CircuitBreaker.ladder
        let wasOpen: Bool
        switch state {
        case .closed, .probing: wasOpen = false
        case .open, .disabled: wasOpen = true
        }
        switch kind {
        case .rejected, .contextOverflow:
            // The request's fault, not the route's: nothing to remember (a probe went through, so close).
            if case .probing = state { state = .closed }
            return false
        case .misconfigured:
            failures += 1
            state = .disabled(reason: reason, configuration: configuration)
        case .quotaExhausted:
            failures += 1
            state = .open(until: now + CircuitBreaker.step(CircuitBreaker.quotaLadder, failures), reason: reason)
        case .throttled(let retryAfter):
            failures += 1
            state = .open(until: now + max(CircuitBreaker.step(ladder, failures), retryAfter ?? .zero), reason: reason)
        case .unavailable:
            failures += 1
            state = .open(until: now + CircuitBreaker.step(ladder, failures), reason: reason)
        }
        return !wasOpen
    }

    static func step(_ ladder: [Duration], _ failures: Int) -> Duration {
        ladder[min(max(failures, 1), ladder.count) - 1]
    }
}

extension CircuitBreaker {
    /// A breaker read back from the database. From the same boot its instants still hold; from
    /// an earlier boot they mean nothing, and an open breaker is due for its probe at once
    /// (a disabled one stays disabled: what disabled it is configuration, not time).
    public func restored(sameBoot: Bool, now: Instant) -> CircuitBreaker {
        guard !sameBoot else { return self }
        switch state {
        case .open(_, let reason): return CircuitBreaker(state: .open(until: now, reason: reason), failures: failures)
        case .probing: return CircuitBreaker(state: .open(until: now, reason: "probe lost in a restart"), failures: failures)
        case .closed, .disabled: return self
        }
    }
}

/// FNV-1a, 64 bits: a hash that is the same in every process and on every boot (Swift's
/// `Hasher` is seeded per process), for "has this provider's configuration changed".
public func stableHash(_ parts: [String]) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for part in parts {
        for b in part.utf8 {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        h ^= 0xFF  // a separator no UTF-8 text contains
        h = h &* 0x0000_0100_0000_01b3
    }
    return h
}

import AIBoxCore

/// What aibox's watchdog is told about: the agent is alive while every operation under way —
/// a model call, a channel's poll or socket read — completes or fails within its deadline.
/// Each operation has a timer of its own that should end it at that deadline; one still open
/// `grace` after it is **stuck** (a timer that never fired, a task that ignored cancellation, a
/// wedged connection), and only a restart mends it. An operation that fails and backs off is
/// not stuck: an internet outage is not fixed by a restart.
public struct Liveness: Sendable {
    public struct Operation: Equatable, Sendable {
        public var what: String
        public var deadline: Instant
    }

    /// How long past its deadline an operation may take to end (its timer's own latency, a
    /// cancellation making its way through a connection).
    public static let grace: Duration = .seconds(30)

    private var open: [UInt64: Operation] = [:]
    private var next: UInt64 = 0

    public init() {}

    /// Starts tracking an operation; its token ends it.
    public mutating func begin(_ what: String, deadline: Instant) -> UInt64 {
        next += 1
        open[next] = Operation(what: what, deadline: deadline)
        return next
    }

    /// The operation made progress: its timer now ends it at `deadline`.
    public mutating func extend(_ token: UInt64, to deadline: Instant) { open[token]?.deadline = deadline }

    public mutating func end(_ token: UInt64) { open[token] = nil }

    public var count: Int { open.count }

    /// The operations still open more than `grace` past their deadline, oldest deadline first.
    public func stuck(now: Instant) -> [Operation] {
        open.values.filter { now >= $0.deadline + Liveness.grace }.sorted { $0.deadline < $1.deadline }
    }
}

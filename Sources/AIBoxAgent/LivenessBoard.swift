import AIBoxAgentCore
import AIBoxCore
import Synchronization

/// The agent's one `Liveness`, shared by every task that runs an operation with a deadline
/// (model calls; the channels' polls and reads). The worker loop sends `WATCHDOG=1` only while
/// nothing on it is stuck.
public final class LivenessBoard: Sendable {
    private let state = Mutex(Liveness())

    /// The channels' operations: their HTTP calls (AgentHTTP.call) and their socket loops.
    public static let channels = LivenessBoard()

    public init() {}

    public func begin(_ what: String, deadline: Instant) -> UInt64 { state.withLock { $0.begin(what, deadline: deadline) } }
    public func extend(_ token: UInt64, to deadline: Instant) { state.withLock { $0.extend(token, to: deadline) } }
    public func end(_ token: UInt64) { state.withLock { $0.end(token) } }
    public func stuck(now: Instant) -> [Liveness.Operation] { state.withLock { $0.stuck(now: now) } }
}

import AIBoxCore
import FoundationEssentials
import Glibc

/// Why a request to the daemon got no answer to use.
public enum DaemonClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The socket is there but may not be used (EACCES, EPERM).
    case permissionDenied(socket: String)
    /// Nothing within the timeout: the daemon is stopped or hung (its socket stays, and the
    /// kernel queues connections to it).
    case notResponding(timeout: Duration)
    /// The daemon answered, and refused (`{"ok": false, "error": …}`).
    case refused(String)
    /// The connection failed or closed without an answer, or the answer was not one.
    case failed(String)

    public var description: String {
        switch self {
        case .permissionDenied(let s): return "permission denied on \(s)"
        case .notResponding(let t): return "the daemon did not answer within \(t.aiboxText)"
        case .refused(let why): return why
        case .failed(let why): return why
        }
    }
}

/// One request on a control socket and its answer, bounded by `timeout` end to end. Blocking:
/// the CLI calls it as it is; async code runs it on a thread of its own (never on Swift's
/// cooperative pool, which a hung daemon would hold for the whole timeout).
public struct DaemonClient: Sendable {
    public static let defaultTimeout: Duration = .seconds(3)

    public let socket: String
    public let timeout: Duration

    public init(socket: String, timeout: Duration = DaemonClient.defaultTimeout) {
        self.socket = socket
        self.timeout = timeout
    }

    /// The daemon's answer: `{"ok": true, "data": …}` or `{"ok": false, "error": "…"}`.
    struct Envelope<T: Decodable>: Decodable {
        var ok: Bool
        var data: T?
        var error: String?
    }

    /// Sends `request`; nil when nobody listens (the daemon is not running).
    public func request<T: Decodable>(_ request: ControlRequest, as: T.Type) throws(DaemonClientError) -> T? {
        let connection: ControlConnection?
        do {
            connection = try ControlConnection(path: socket, timeout: timeout)
        } catch let e where e.errno == EACCES || e.errno == EPERM {
            throw .permissionDenied(socket: socket)
        } catch let e where e.errno == ETIMEDOUT {
            throw .notResponding(timeout: timeout)
        } catch {
            throw .failed("cannot reach the daemon: \(error)")
        }
        guard let conn = connection else { return nil }
        guard let line = try? JSONEncoder().encode(request) else { throw .failed("the request cannot be encoded") }
        let answer: String?
        do {
            try conn.send(line: String(decoding: line, as: UTF8.self))
            answer = try conn.readLine()
        } catch let e where e.errno == ETIMEDOUT {
            throw .notResponding(timeout: timeout)
        } catch {
            throw .failed("the daemon closed the connection without answering (\(error))")
        }
        guard let answer else { throw .failed("the daemon closed the connection without answering") }
        let envelope: Envelope<T>
        do {
            envelope = try JSONDecoder().decode(Envelope<T>.self, from: Data(answer.utf8))
        } catch {
            throw .failed("the daemon's answer is not what this version expects: \(error)")
        }
        guard envelope.ok, let data = envelope.data else { throw .refused(envelope.error ?? "the daemon refused the request") }
        return data
    }

    /// The daemon's pid, from its pid file.
    public static func pid(_ paths: Paths) -> Int32? {
        readTextFile(paths.pidFile).flatMap { Int32($0.trimmingCharacters(in: " \n")) }
    }
}

import AIBoxCore

/// The owner's replies to the box's commands (/workers, /restart, /logs, /update, /model):
/// short lines for a phone. Pure: the daemon's answers and the clock's reading are passed in.
public enum BoxReplies {
    /// Why the daemon gave no answer, as the agent's client saw it.
    public enum Unreachable: Error, Equatable, Sendable {
        /// The worker's definition grants no control socket (no AIBOX_CONTROL_SOCKET).
        case noSocket
        /// Nobody listens: aibox is not running.
        case notRunning
        /// The socket is there and took no request within the time.
        case notResponding(seconds: Int)
        /// The socket may not be used by this user.
        case permissionDenied
        /// aibox answered with a refusal.
        case refused(String)
        /// The connection broke, or the answer was not one.
        case failed(String)
    }

    public static func unreachable(_ u: Unreachable) -> String {
        switch u {
        case .noSocket:
            return "I have no control socket: my worker definition grants none (control = [\"workers\", \"logs\", \"restart\", \"update\"] in agent.toml). At the console: aibox workers, aibox restart, aibox logs."
        case .notRunning: return "The box's supervisor (aibox) is not running, so I cannot do that. At the console: systemctl status aibox."
        case .notResponding(let s): return "The box's supervisor (aibox) did not answer within \(s) s; it may be hung (its watchdog restarts it). Try again in a minute."
        case .permissionDenied: return "I may not use aibox's control socket (permission denied); its owner or mode is not what it should be."
        case .refused(let why): return "aibox refused: \(why)"
        case .failed(let why): return "I could not get an answer from aibox: \(why)"
        }
    }

    /// One line per worker: "agent: ready", "flaky: quarantined, 5 restarts (crash loop)".
    public static func workers(_ views: [WorkerView]) -> String {
        guard !views.isEmpty else { return "No workers are defined." }
        return views.map { w in
            var line = "\(w.name): \(w.state)"
            if w.restarts > 0 { line += ", \(w.restarts) restart\(w.restarts == 1 ? "" : "s")" }
            if let r = w.reason, !r.isEmpty { line += " (\(clip(r, 60)))" }
            return line
        }.joined(separator: "\n")
    }

    /// After a `restart`: the worker's state as the daemon left it.
    public static func restarted(_ view: WorkerView, previousPID: Int32?) -> String {
        let was = previousPID.map { " (was pid \($0))" } ?? ""
        return "Restarting \(view.name)\(was): now \(view.state)."
    }

    /// The lines, "HH:MM:SS text", each redacted by `redactor` (the daemon did it already;
    /// the agent's own secrets are taken out again). `timeOfDay` gives a stamp's local time.
    public static func logs(_ l: LogLines, redactor: SecretRedactor, timeOfDay: (Int64) -> String) -> String {
        guard !l.lines.isEmpty else { return "\(l.worker) has no output to show." }
        let head = "\(l.worker), last \(l.lines.count) line\(l.lines.count == 1 ? "" : "s"):"
        let body = l.lines.map { line in (line.at.map { timeOfDay($0) + " " } ?? "") + redactor.redact(line.text) }
        return ([head] + body).joined(separator: "\n")
    }

    public static let updateStarted = "Started; I will tell you how it ends."

    public static func confirmInstall(code: String, minutes: Int) -> String {
        "To install an update and reboot into it, send: /update install \(code)\n(the code is good for \(minutes) minutes, once)"
    }

    public static let wrongCode = "That code is wrong or too old."

    static func clip(_ s: String, _ n: Int) -> String { s.count > n ? String(s.prefix(n - 1)) + "…" : s }
}

/// A role's chain overridden for a while (`/model ROLE PROVIDER/MODEL`): the named route
/// first, then the rest of the role's chain as box.toml makes it.
extension RoutingTable {
    public enum OverrideError: Error, Equatable, Sendable, CustomStringConvertible {
        case unknownProvider(String, configured: [String])

        public var description: String {
            switch self {
            case .unknownProvider(let p, let configured):
                let list = configured.isEmpty ? "none is" : configured.joined(separator: ", ") + (configured.count == 1 ? " is" : " are")
                return "box.toml configures no provider \"\(String(p.prefix(40)))\"; \(list) configured"
            }
        }
    }

    /// The chain `role` runs with `route` first; the route takes its provider's settings from
    /// `providers` (any model of a configured provider: the provider says if it has none such).
    public func overriding(_ role: LLMRole, with route: Route, providers: [ProviderConfig]) -> Result<[ResolvedRoute], OverrideError> {
        guard let p = providers.first(where: { $0.name == route.provider }) else {
            return .failure(.unknownProvider(route.provider, configured: providers.map(\.name)))
        }
        let key = RouteKey(route)
        let known = chains.values.joined().first { $0.key == key }
        let first = ResolvedRoute(
            key: key, kind: p.kind, baseURL: p.baseURL, apiKeySecret: p.apiKeySecret,
            context: route.context ?? known?.context ?? ResolvedRoute.defaultContext(p.kind), isLocal: p.kind.isLocal)
        return .success([first] + (chains[role] ?? []).filter { $0.key != key })
    }
}

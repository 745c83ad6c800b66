/// An update check someone asked for (the `update-check` and `update-install` requests of the
/// control socket): the daemon runs `aibox update check --json` as its child and, when the
/// child ends, records one event that says the outcome in the owner's words. The unattended
/// checks record none of these (an owner is not told "no update" every six hours).
public enum UpdateRequest {
    /// What `aibox update check --json` prints.
    public struct Report: Codable, Sendable, Equatable {
        public var result: String
        public var version: String?
        public var url: String?
        public var reason: String?

        public init(result: String, version: String? = nil, url: String? = nil, reason: String? = nil) {
            self.result = result
            self.version = version
            self.url = url
            self.reason = reason
        }
    }

    /// The event kinds of an outcome (the agent tells the owner each of them).
    public static let availableKind = "update.available"
    public static let noneKind = "update.none"
    public static let installedKind = "update.install-done"
    public static let failedKind = "update.request-failed"
    public static let kinds = [availableKind, noneKind, installedKind, failedKind]

    /// Why a request cannot start now; nil when it can.
    public static func refusal(abBox: Bool, feedConfigured: Bool, running: Bool, shuttingDown: Bool) -> String? {
        if shuttingDown { return "the daemon is shutting down" }
        if !abBox { return "this box has no A/B slots (no usr/lib/aibox/system.toml): it is updated with its image, not by aibox" }
        if !feedConfigured { return "no update feed: box.toml's [updates] has no feed-url" }
        if running { return "an update check is already running; its outcome comes as an event" }
        return nil
    }

    /// The event for the child's end: its report (stdout, when it could be read) or its
    /// exit and the last line it wrote on stderr.
    public static func outcome(install: Bool, exitedZero: Bool, exit: String, report: Report?, stderr: String) -> (kind: String, message: String) {
        if exitedZero, let r = report {
            let version = r.version ?? "?"
            let why = r.reason.map { " (\($0))" } ?? ""
            switch r.result {
            case "available":
                return (availableKind, "update \(version) is available; /update install installs it")
            case "installed":
                return (installedKind, "update \(version) is installed; \(r.reason ?? "reboot to start it")")
            case "up-to-date":
                return (noneKind, "no update: \(r.reason ?? "this version is the newest")")
            case "deferred":
                return (noneKind, "update \(version) is not installed now\(why)")
            default:
                return (noneKind, "no update installed\(why)")
            }
        }
        let last = stderr.split(separator: "\n").last.map { String($0.hasPrefix("aibox: ") ? $0.dropFirst(7) : $0) }
        let what = install ? "the update install" : "the update check"
        return (failedKind, "\(what) failed (\(exit))" + (last.map { ": " + String($0.prefix(300)) } ?? ""))
    }
}

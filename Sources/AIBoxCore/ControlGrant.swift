/// What a worker may ask of the daemon on its own control socket (`control = [...]` in its
/// definition): a few requests, never the whole socket (start, stop, reload and setup-changed
/// stay with root and the `aibox` group on `run/aibox/control.sock`).
public enum ControlGrant: String, Sendable, CaseIterable, Comparable {
    /// `workers`: every worker's state.
    case workers
    /// `logs`: a worker's last lines of output, secrets redacted.
    case logs
    /// `restart`: restart a worker by name.
    case restart
    /// `update-check` and `update-install`: run the update check (and install) now.
    case update

    public static func < (a: ControlGrant, b: ControlGrant) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }

    /// Requests any worker socket answers: they change nothing and show nothing of others.
    public static let alwaysAllowed: Set<String> = ["ping", "status"]

    /// The grant a request needs; nil for a request no grant allows (start, stop, reload…).
    public static func needed(for command: String) -> ControlGrant? {
        switch command {
        case "workers": return .workers
        case "logs": return .logs
        case "restart": return .restart
        case "update-check", "update-install": return .update
        default: return nil
        }
    }

    /// Why `command` is refused on the socket of `worker` whose grant is `grants`; nil when it is allowed.
    public static func refusal(_ command: String, worker: String, grants: [ControlGrant]) -> String? {
        if alwaysAllowed.contains(command) { return nil }
        if let g = needed(for: command), grants.contains(g) { return nil }
        let list = grants.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
        return "\"\(String(command.prefix(40)))\" is not granted to worker \(worker) (control = [\(list)])"
    }
}

/// The last lines of a worker's output, as the `logs` request answers them.
public struct LogLines: Codable, Sendable, Equatable {
    public struct Line: Codable, Sendable, Equatable {
        /// When it came in (milliseconds since 1970); nil for a line without a stamp.
        public var at: Int64?
        public var text: String

        public init(at: Int64?, text: String) {
            self.at = at
            self.text = text
        }
    }

    public var worker: String
    /// "files" (logs/NAME.log and its rotations) or "journal".
    public var source: String
    public var lines: [Line]

    public init(worker: String, source: String, lines: [Line]) {
        self.worker = worker
        self.source = source
        self.lines = lines
    }

    /// At most this many lines, and this many characters of each (a phone's screen, a bounded answer).
    public static let maxLines = 200
    public static let maxLineCharacters = 500

    /// A line cut to `maxLineCharacters`.
    public static func clip(_ text: String) -> String {
        text.count > maxLineCharacters ? String(text.prefix(maxLineCharacters - 1)) + "…" : text
    }
}

/// Secret values taken out of text before it leaves the daemon or the agent.
public struct SecretRedactor: Sendable {
    /// Shorter values are not looked for: a two-character secret would blank half of every line.
    public static let minimumLength = 6
    public static let mark = "[secret]"
    /// The values looked for, longest first (a secret containing another is replaced whole).
    public let values: [String]

    /// `secrets`: the values as stored (a trailing newline is not part of one; a value of
    /// several lines is looked for line by line too, as output shows it so).
    public init(_ secrets: [String]) {
        var set = Set<String>()
        for s in secrets {
            var v = s
            while v.hasSuffix("\n") || v.hasSuffix("\r") { v.removeLast() }
            if v.count >= SecretRedactor.minimumLength { set.insert(v) }
            if v.contains("\n") {
                for part in v.split(separator: "\n") {
                    let line = part.trimmingCharacters(in: "\r \t")
                    if line.count >= SecretRedactor.minimumLength { set.insert(line) }
                }
            }
        }
        values = set.sorted { $0.utf8.count != $1.utf8.count ? $0.utf8.count > $1.utf8.count : $0 < $1 }
    }

    public func redact(_ text: String) -> String {
        var out = text
        for v in values where out.contains(v) { out = out.replacing(v, with: SecretRedactor.mark) }
        return out
    }
}

import AIBoxCore

/// An event of the box (aibox.db's, or the agent's own `owner.notice`), as the notices see it.
public struct BoxEvent: Equatable, Sendable {
    public var id: Int64
    public var kind: String
    public var worker: String?
    public var message: String

    public init(id: Int64, kind: String, worker: String?, message: String) {
        self.id = id
        self.kind = kind
        self.worker = worker
        self.message = message
    }
}

/// What the owner hears of the box's own trouble: a worker quarantined or parked, an update
/// installed, committed or rolled back, a device gone, the database failing, the budget or a
/// provider's key (the agent's `owner.notice`); and how an update check someone asked for
/// ended (`UpdateRequest`: available, none, installed, failed). Everything else stays in the
/// event log.
public enum BoxNotices {
    /// The line for the owner, and the key it is told once under (per day: a worker that is
    /// quarantined again tomorrow is told again tomorrow); nil when the event is not the owner's.
    public static func notice(_ e: BoxEvent, day: String) -> (key: String, text: String)? {
        let who = e.worker ?? "?"
        let text: String
        switch e.kind {
        case "worker.quarantined": text = "\(who) keeps failing and is paused for a while: \(e.message)"
        case "worker.parked": text = "\(who) is stopped until its configuration is fixed: \(e.message)"
        case "worker.unkillable": text = "\(who) cannot be stopped: \(e.message)"
        case "update.installed": text = "An update is installed: \(e.message)"
        case "update.committed": text = "The update is committed: \(e.message)"
        case "update.rolled-back": text = "The update was rolled back: \(e.message)"
        case "update.failed": text = "An update failed: \(e.message)"
        case "hardware.removed": text = "A device is gone: \(e.message)"
        case "hardware.monitor-failed": text = "Hardware monitoring failed: \(e.message)"
        case "daemon.database-rebuilt": text = "The box's database was damaged and has been rebuilt: \(e.message)"
        case "owner.notice": text = e.message
        case let k where UpdateRequest.kinds.contains(k):
            // The answer to an /update: told each time, however often it is asked in a day.
            return ("box:\(e.kind):\(e.id)", String((e.message.prefix(1).uppercased() + e.message.dropFirst()).prefix(NoticeDesk.maxLine)))
        default: return nil
        }
        // Updates and the agent's notices carry their own identity in the text; workers are told once a day per kind.
        let key = e.worker != nil ? "box:\(e.kind):\(who):\(day)" : "box:\(e.kind):\(stableHash([e.message])):\(day)"
        return (key, String(text.prefix(NoticeDesk.maxLine)))
    }
}

/// Gathers the owner's notices into messages: what comes within `gather` of the first goes
/// out as one message, at most one message every `minGap`, at most `maxLines` lines (the rest
/// counted), so a storm of events is a few messages, never a flood.
public struct NoticeDesk: Sendable {
    public static let gather: Duration = .seconds(10)
    public static let minGap: Duration = .seconds(60)
    public static let maxLines = 12
    public static let maxLine = 300

    private var pending: [String] = []
    private var more = 0
    private var since: Instant?
    private var lastSent: Instant?

    public init() {}

    public var isEmpty: Bool { pending.isEmpty }

    public mutating func take(_ line: String, now: Instant) {
        if since == nil { since = now }
        if pending.count < NoticeDesk.maxLines { pending.append(line) } else { more += 1 }
    }

    /// When the next message may go (nil: nothing waits).
    public func dueAt() -> Instant? {
        guard let since else { return nil }
        let gathered = since + NoticeDesk.gather
        guard let lastSent else { return gathered }
        return max(gathered, lastSent + NoticeDesk.minGap)
    }

    /// The message, once it is due.
    public mutating func message(now: Instant) -> String? {
        guard let due = dueAt(), now >= due else { return nil }
        var text = pending.count == 1 ? "AI Box: " + pending[0] : "AI Box:\n" + pending.map { "- " + $0 }.joined(separator: "\n")
        if more > 0 { text += "\n(and \(more) more: `aibox events`)" }
        pending = []
        more = 0
        since = nil
        lastSent = now
        return text
    }
}

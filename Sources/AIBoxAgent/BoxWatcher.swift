import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem

/// Follows the box's events — aibox.db's (read-only; the daemon writes it) and the agent's own
/// owner notices in agent.db — and gathers what the owner is to hear into messages
/// (`BoxNotices`, `NoticeDesk`). Where it has read up to is kept in agent.db, so a restart
/// neither repeats nor skips; a first start begins at the newest event (the owner is not told
/// the box's history). Each notice is told once (per worker and kind a day) across restarts.
public final class BoxWatcher {
    let paths: Paths
    let ledger: Ledger
    private var reader: StoreReader?
    private var desk = NoticeDesk()
    static let boxCursor = "cursor:aibox.db"
    static let agentCursor = "cursor:agent.db"

    public init(paths: Paths, ledger: Ledger) {
        self.paths = paths
        self.ledger = ledger
    }

    /// Reads what is new; returns a message for the owner once one is due.
    public func poll(now: Instant, wallMS: Int64) -> String? {
        let day = Ledger.localDay(wallMS)
        for e in newBoxEvents() + newAgentEvents() {
            guard let (key, text) = BoxNotices.notice(e, day: day), ledger.firstNotice(key, wallMS: wallMS) else { continue }
            desk.take(text, now: now)
        }
        return desk.message(now: now)
    }

    private func newBoxEvents() -> [BoxEvent] {
        if reader == nil { reader = try? StoreReader(path: paths.database) }
        guard let reader, let last = try? reader.lastEventID() else { return [] }
        // Unknown, or past the end (the database was rebuilt): from now on.
        guard let cursor = ledger.state(BoxWatcher.boxCursor).flatMap({ Int64($0) }), cursor <= last else {
            try? ledger.setState(BoxWatcher.boxCursor, String(last))
            return []
        }
        guard let events = try? reader.events(afterID: cursor, limit: 500), let newest = events.last?.id else { return [] }
        try? ledger.setState(BoxWatcher.boxCursor, String(newest))
        return events.map { BoxEvent(id: $0.id ?? 0, kind: $0.kind, worker: $0.worker, message: $0.message) }
    }

    private func newAgentEvents() -> [BoxEvent] {
        let last = ledger.lastEventID()
        guard let cursor = ledger.state(BoxWatcher.agentCursor).flatMap({ Int64($0) }), cursor <= last else {
            try? ledger.setState(BoxWatcher.agentCursor, String(last))
            return []
        }
        guard let events = try? ledger.events(afterID: cursor, limit: 500), let newest = events.last?.id else { return [] }
        try? ledger.setState(BoxWatcher.agentCursor, String(newest))
        return events.map { BoxEvent(id: $0.id, kind: $0.event.kind, worker: nil, message: $0.event.message) }
    }
}

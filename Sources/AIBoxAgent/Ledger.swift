import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem
import Glibc

/// The agent's own database (`agent.db` in its work directory; the daemon's aibox.db stays
/// the daemon's): the spend ledger, the circuit breakers, the routing events and the
/// "told the owner once" marks. Every process of the agent (the worker and each console
/// command) opens it; SQLite's locking makes a reservation one transaction among all of them.
public final class Ledger {
    let db: SQLiteConnection
    public let path: String

    public init(path: String) throws(SQLiteError) {
        self.path = path
        db = try SQLiteConnection(path: path, readOnly: false, busyTimeoutMilliseconds: 5000)
        try db.execute(
            """
            PRAGMA journal_mode=WAL;
            PRAGMA synchronous=NORMAL;
            CREATE TABLE IF NOT EXISTS charge(
                id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, day TEXT NOT NULL, month TEXT NOT NULL,
                provider TEXT NOT NULL, model TEXT NOT NULL, role TEXT NOT NULL,
                input_tokens INTEGER, output_tokens INTEGER,
                nano_usd INTEGER NOT NULL, state TEXT NOT NULL, estimated INTEGER NOT NULL DEFAULT 0);
            CREATE INDEX IF NOT EXISTS charge_day ON charge(day);
            CREATE INDEX IF NOT EXISTS charge_month ON charge(month);
            CREATE TABLE IF NOT EXISTS breaker(
                key TEXT PRIMARY KEY, state TEXT NOT NULL, until_ns INTEGER, reason TEXT,
                configuration INTEGER, failures INTEGER NOT NULL, boot_id TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS event(
                id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, kind TEXT NOT NULL, route TEXT, message TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS notice(key TEXT PRIMARY KEY, at_ms INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS message(
                id INTEGER PRIMARY KEY, conversation TEXT NOT NULL, at_ms INTEGER NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS message_conversation ON message(conversation, id);
            CREATE TABLE IF NOT EXISTS state(key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS summary(
                conversation TEXT PRIMARY KEY, at_ms INTEGER NOT NULL, through_id INTEGER NOT NULL, content TEXT NOT NULL);
            """)
    }

    // MARK: Budget

    public struct Reservation: Sendable {
        public var id: Int64
        public var amount: NanoUSD
        public var period: BudgetPeriod
    }

    public enum ReserveOutcome {
        case reserved(Reservation, warnings: [String])
        case refused(BudgetDecision)
    }

    /// The period a charge made now counts in: the wall clock's day in the box's time zone,
    /// unless the ledger already holds a later day (the clock went back).
    func period(wallMS: Int64) throws(SQLiteError) -> BudgetPeriod {
        let latest = try db.query("SELECT max(day) FROM charge").first?.first?.string.map(BudgetPeriod.init(day:))
        return BudgetPeriod.effective(clock: BudgetPeriod(day: Ledger.localDay(wallMS)), latestCharged: latest)
    }

    func use(in period: BudgetPeriod) throws(SQLiteError) -> BudgetUse {
        let day = try db.query("SELECT coalesce(sum(nano_usd), 0) FROM charge WHERE day = ?", [.text(period.day)])
        let month = try db.query("SELECT coalesce(sum(nano_usd), 0) FROM charge WHERE month = ?", [.text(period.month)])
        return BudgetUse(day: NanoUSD(day.first?.first?.int64 ?? 0), month: NanoUSD(month.first?.first?.int64 ?? 0))
    }

    /// What has been spent (settled and reserved) in the current day and month.
    public func currentUse(wallMS: Int64) throws(SQLiteError) -> (BudgetPeriod, BudgetUse) {
        let p = try period(wallMS: wallMS)
        return (p, try use(in: p))
    }

    /// Reserves `estimate` for a call, in one transaction with the check against the caps:
    /// two requests at once (from any process) cannot both pass a cap one of them fits under.
    ///
    /// Durability: the reservation is on disk before the call is made (`synchronous=FULL` for
    /// its commit), so a power cut mid-call leaves it charged in full. Everything else is
    /// written with `synchronous=NORMAL` (WAL): a power cut may lose the last settlements,
    /// events or breakers — a lost settlement leaves its reservation, which is never less
    /// than the charge, so the ledger errs on the side of spending less.
    public func reserve(
        _ estimate: NanoUSD, policy: BudgetPolicy, route: RouteKey, role: LLMRole, wallMS: Int64
    ) throws(SQLiteError) -> ReserveOutcome {
        var outcome = ReserveOutcome.refused(.allowed)
        try db.execute("PRAGMA synchronous=FULL")
        defer { try? db.execute("PRAGMA synchronous=NORMAL") }
        try db.transaction { () throws(SQLiteError) in
            let p = try period(wallMS: wallMS)
            let before = try use(in: p)
            let decision = policy.decide(use: before, estimate: estimate)
            guard decision == .allowed else {
                outcome = .refused(decision)
                return
            }
            try db.query(
                "INSERT INTO charge(at_ms, day, month, provider, model, role, nano_usd, state, estimated) VALUES(?,?,?,?,?,?,?,'reserved',1)",
                [.integer(wallMS), .text(p.day), .text(p.month), .text(route.provider), .text(route.model), .text(role.rawValue), .integer(estimate.value)])
            let id = try db.query("SELECT last_insert_rowid()").first?.first?.int64 ?? 0
            var after = before
            after.day = after.day + estimate
            after.month = after.month + estimate
            outcome = .reserved(Reservation(id: id, amount: estimate, period: p), warnings: policy.warningsCrossed(before: before, after: after))
        }
        return outcome
    }

    /// Replaces a reservation with what the call cost. A reservation never settled (the
    /// process died mid-call) stays charged in full.
    public func settle(_ r: Reservation, cost: NanoUSD, usage: Usage?, estimated: Bool) throws(SQLiteError) {
        try db.query(
            "UPDATE charge SET nano_usd = ?, input_tokens = ?, output_tokens = ?, state = 'settled', estimated = ? WHERE id = ?",
            [.integer(cost.value), SQLiteValue(usage.map { Int64($0.inputTokens) }), SQLiteValue(usage.map { Int64($0.outputTokens) }),
             .integer(estimated ? 1 : 0), .integer(r.id)])
    }

    /// Records a call that cost nothing (a local model), for the usage figures.
    public func recordFree(route: RouteKey, role: LLMRole, usage: Usage?, wallMS: Int64) throws(SQLiteError) {
        let p = BudgetPeriod(day: Ledger.localDay(wallMS))
        try db.query(
            "INSERT INTO charge(at_ms, day, month, provider, model, role, input_tokens, output_tokens, nano_usd, state) VALUES(?,?,?,?,?,?,?,?,0,'settled')",
            [.integer(wallMS), .text(p.day), .text(p.month), .text(route.provider), .text(route.model), .text(role.rawValue),
             SQLiteValue(usage.map { Int64($0.inputTokens) }), SQLiteValue(usage.map { Int64($0.outputTokens) })])
    }

    // MARK: Breakers

    /// Breakers as saved, restored for this boot (see `CircuitBreaker.restored`).
    public func breakers(bootID: String, now: Instant) throws(SQLiteError) -> [String: CircuitBreaker] {
        var out: [String: CircuitBreaker] = [:]
        for row in try db.query("SELECT key, state, until_ns, reason, configuration, failures, boot_id FROM breaker") {
            guard row.count == 7, let key = row[0].string, let state = row[1].string else { continue }
            let until = Instant(nanoseconds: UInt64(bitPattern: row[2].int64 ?? 0))
            let reason = row[3].string ?? ""
            let failures = Int(row[5].int64 ?? 0)
            let s: CircuitBreaker.State
            switch state {
            case "open": s = .open(until: until, reason: reason)
            case "disabled": s = .disabled(reason: reason, configuration: UInt64(bitPattern: row[4].int64 ?? 0))
            case "probing": s = .probing(since: until)
            default: s = .closed
            }
            out[key] = CircuitBreaker(state: s, failures: failures).restored(sameBoot: row[6].string == bootID, now: now)
        }
        return out
    }

    public func save(breaker b: CircuitBreaker, key: String, bootID: String) throws(SQLiteError) {
        if b.state == .closed && b.failures == 0 {
            try db.query("DELETE FROM breaker WHERE key = ?", [.text(key)])
            return
        }
        var state = "closed", until: Int64? = nil, reason: String? = nil, configuration: Int64? = nil
        switch b.state {
        case .closed: break
        case .open(let u, let r): (state, until, reason) = ("open", Int64(bitPattern: u.nanoseconds), r)
        case .disabled(let r, let c): (state, reason, configuration) = ("disabled", r, Int64(bitPattern: c))
        case .probing(let since): (state, until) = ("probing", Int64(bitPattern: since.nanoseconds))
        }
        try db.query(
            "INSERT OR REPLACE INTO breaker(key, state, until_ns, reason, configuration, failures, boot_id) VALUES(?,?,?,?,?,?,?)",
            [.text(key), .text(state), SQLiteValue(until), SQLiteValue(reason), SQLiteValue(configuration), .integer(Int64(b.failures)), .text(bootID)])
    }

    /// Forgets every breaker (benchmarks and tests measure a first failure each time).
    public func resetBreakers() throws(SQLiteError) { try db.execute("DELETE FROM breaker") }

    // MARK: Events and notices

    public func record(kind: String, route: RouteKey?, message: String, wallMS: Int64) {
        // An event that cannot be written must not fail the answer it describes.
        _ = try? db.query(
            "INSERT INTO event(at_ms, kind, route, message) VALUES(?,?,?,?)",
            [.integer(wallMS), .text(kind), SQLiteValue(route?.description), .text(message)])
        _ = try? db.query("DELETE FROM event WHERE id <= (SELECT max(id) FROM event) - 10000")
    }

    public struct Event: Sendable, Equatable {
        public var atMS: Int64
        public var kind: String
        public var route: String?
        public var message: String
    }

    public func events(limit: Int) throws(SQLiteError) -> [Event] {
        try db.query("SELECT at_ms, kind, route, message FROM event ORDER BY id DESC LIMIT ?", [.integer(Int64(limit))]).reversed().map {
            Event(atMS: $0[0].int64 ?? 0, kind: $0[1].string ?? "", route: $0[2].string, message: $0[3].string ?? "")
        }
    }

    /// True the first time `key` is noticed: "tell the owner once" across every process and restart.
    /// The agent's own events after `afterID` (id, event), oldest first: what the owner's notices follow.
    public func events(afterID: Int64, limit: Int) throws(SQLiteError) -> [(id: Int64, event: Event)] {
        try db.query("SELECT id, at_ms, kind, route, message FROM event WHERE id > ? ORDER BY id LIMIT ?", [.integer(afterID), .integer(Int64(limit))]).map {
            ($0[0].int64 ?? 0, Event(atMS: $0[1].int64 ?? 0, kind: $0[2].string ?? "", route: $0[3].string, message: $0[4].string ?? ""))
        }
    }

    public func lastEventID() -> Int64 { (try? db.query("SELECT max(id) FROM event").first?.first?.int64) ?? 0 }

    /// A small value the agent keeps across restarts (a follower's cursor).
    public func state(_ key: String) -> String? { try? db.query("SELECT value FROM state WHERE key = ?", [.text(key)]).first?.first?.string }

    public func setState(_ key: String, _ value: String) throws(SQLiteError) {
        try db.query("INSERT OR REPLACE INTO state(key, value) VALUES(?,?)", [.text(key), .text(value)])
    }

    public func firstNotice(_ key: String, wallMS: Int64) -> Bool {
        guard (try? db.query("INSERT OR IGNORE INTO notice(key, at_ms) VALUES(?,?)", [.text(key), .integer(wallMS)])) != nil else { return false }
        return (try? db.query("SELECT changes()").first?.first?.int64) == 1
    }

    // MARK: Conversations

    /// The most of a conversation kept, in estimated tokens: far more than any prompt takes
    /// (prompts are sized to their route), bounded so that a chat that never ends cannot fill the disk.
    public static let conversationTokens = 32_768

    /// A conversation as kept: its summary and the turns after it, oldest first.
    public func conversation(_ id: String) throws(SQLiteError) -> Conversation {
        let summary = try db.query("SELECT content FROM summary WHERE conversation = ?", [.text(id)]).first?.first?.string
        let turns: [Conversation.Turn] = try db.query("SELECT id, role, content FROM message WHERE conversation = ? ORDER BY id", [.text(id)])
            .compactMap {
                guard let row = $0[0].int64, let r = $0[1].string.flatMap(ChatMessage.Role.init(rawValue:)), let c = $0[2].string else { return nil }
                return Conversation.Turn(id: row, ChatMessage(r, c))
            }
        return Conversation(summary: summary, turns: turns)
    }

    /// Replaces the turns up to `through` by `summary`, in one transaction: a power cut leaves
    /// the turns or the summary, never neither. Turns added meanwhile (later ids) stay.
    public func compact(_ id: String, through: Int64, summary: String, wallMS: Int64) throws(SQLiteError) {
        try db.transaction { () throws(SQLiteError) in
            try db.query("DELETE FROM message WHERE conversation = ? AND id <= ?", [.text(id), .integer(through)])
            try db.query(
                "INSERT OR REPLACE INTO summary(conversation, at_ms, through_id, content) VALUES(?,?,?,?)",
                [.text(id), .integer(wallMS), .integer(through), .text(summary)])
        }
    }

    /// Adds a question and its answer (together: a question without its answer is not kept),
    /// then drops the oldest turns past `conversationTokens`.
    public func append(_ conversation: String, question: String, answer: String, wallMS: Int64) throws(SQLiteError) {
        try db.transaction { () throws(SQLiteError) in
            for (role, text) in [("user", question), ("assistant", answer)] {
                try db.query(
                    "INSERT INTO message(conversation, at_ms, role, content) VALUES(?,?,?,?)",
                    [.text(conversation), .integer(wallMS), .text(role), .text(text)])
            }
            let rows = try db.query("SELECT id, length(content) FROM message WHERE conversation = ? ORDER BY id DESC", [.text(conversation)])
            var tokens = 0
            for row in rows {
                tokens += Int((row[1].int64 ?? 0) + 3) / 4 + 4
                if tokens > Ledger.conversationTokens, let id = row[0].int64 {
                    try db.query("DELETE FROM message WHERE conversation = ? AND id <= ?", [.text(conversation), .integer(id)])
                    break
                }
            }
        }
    }

    public func forget(_ conversation: String) {
        _ = try? db.transaction { () throws(SQLiteError) in
            try db.query("DELETE FROM message WHERE conversation = ?", [.text(conversation)])
            try db.query("DELETE FROM summary WHERE conversation = ?", [.text(conversation)])
        }
    }

    /// `YYYY-MM-DD` of a wall-clock instant in the process's time zone (the box's: the agent
    /// sets TZ from box.toml).
    public static func localDay(_ wallMS: Int64) -> String { String(formatLocalTime(milliseconds: wallMS).prefix(10)) }
}

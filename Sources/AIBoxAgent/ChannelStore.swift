import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem
import Glibc

/// What the channels keep in agent.db, beside the ledger's tables and on its connection:
/// owners who paired, pairing codes waiting, the ids of messages already taken in
/// (de-duplication), and the queue of replies and notices still to send.
///
/// Pairing codes are written by `aibox-agent pair` and read by the worker, so they live here
/// for their few minutes: with the boot's id and a deadline on the monotonic clock (a code of
/// an earlier boot is void: a restart of the box ends it). Replies wait in the queue until
/// sent: they survive a restart of the agent and a power cut once enqueued.
public final class ChannelStore {
    let db: SQLiteConnection
    public let bootID: String

    /// The most message ids kept for de-duplication, and for how long.
    public static let seenLimit = 10_000
    public static let seenDays: Int64 = 7
    /// A message is given up after this many failed sends (kept as `failed` for `status`).
    public static let maxAttempts = 20
    /// The most failed messages kept.
    public static let failedLimit = 1000

    /// On the ledger's connection (the same agent.db, the same locking).
    public init(ledger: Ledger, bootID: String = ChannelStore.currentBootID()) throws(SQLiteError) {
        db = ledger.db
        self.bootID = bootID
        try db.execute(
            """
            CREATE TABLE IF NOT EXISTS channel_owner(
                channel TEXT NOT NULL, sender TEXT NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY(channel, sender));
            CREATE TABLE IF NOT EXISTS channel_pairing(
                channel TEXT PRIMARY KEY, code TEXT NOT NULL, boot_id TEXT NOT NULL, expires_ns INTEGER NOT NULL, at_ms INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS channel_seen(
                channel TEXT NOT NULL, message_id TEXT NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY(channel, message_id));
            CREATE INDEX IF NOT EXISTS channel_seen_at ON channel_seen(at_ms);
            CREATE TABLE IF NOT EXISTS channel_outbox(
                id INTEGER PRIMARY KEY, channel TEXT NOT NULL, chat TEXT NOT NULL, text TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0, next_ns INTEGER NOT NULL, boot_id TEXT NOT NULL,
                state TEXT NOT NULL, at_ms INTEGER NOT NULL, last_error TEXT, parts_sent INTEGER NOT NULL DEFAULT 0);
            CREATE INDEX IF NOT EXISTS channel_outbox_due ON channel_outbox(state, channel, chat, id);
            CREATE TABLE IF NOT EXISTS channel_inbox(
                id INTEGER PRIMARY KEY, channel TEXT NOT NULL, message_id TEXT NOT NULL, chat TEXT NOT NULL,
                sender TEXT NOT NULL, direct INTEGER NOT NULL, text TEXT NOT NULL, at_ms INTEGER NOT NULL);
            """)
    }

    /// This boot's id (`/proc/sys/kernel/random/boot_id`): monotonic instants are of one boot.
    public static func currentBootID() -> String {
        readTextFile("/proc/sys/kernel/random/boot_id")?.trimmingCharacters(in: " \n") ?? ""
    }

    func changes() throws(SQLiteError) -> Int64 { try db.query("SELECT changes()").first?.first?.int64 ?? 0 }

    // MARK: Owners

    /// An owner who paired.
    public struct PairedOwner: Equatable, Sendable {
        public var channel: ChannelKind
        public var sender: String
        public var atMS: Int64
    }

    /// Owners who paired, by channel then time; all channels when `channel` is nil.
    public func pairedOwners(_ channel: ChannelKind? = nil) throws(SQLiteError) -> [PairedOwner] {
        let rows: [[SQLiteValue]]
        if let channel {
            rows = try db.query(
                "SELECT channel, sender, at_ms FROM channel_owner WHERE channel = ? ORDER BY at_ms, sender", [.text(channel.rawValue)])
        } else {
            rows = try db.query("SELECT channel, sender, at_ms FROM channel_owner ORDER BY channel, at_ms, sender")
        }
        return rows.compactMap { r in
            guard let c = r[0].string.flatMap(ChannelKind.init(rawValue:)), let s = r[1].string else { return nil }
            return PairedOwner(channel: c, sender: s, atMS: r[2].int64 ?? 0)
        }
    }

    /// Everyone who owns the box on `channel`: box.toml's owners and those who paired.
    public func owners(_ channel: ChannelKind, config: ChannelsConfig) throws(SQLiteError) -> Set<String> {
        Set(config.owners(channel)).union(try pairedOwners(channel).map(\.sender))
    }

    /// Adds an owner (already one: nothing changes).
    public func addOwner(_ channel: ChannelKind, sender: String, wallMS: Int64) throws(SQLiteError) {
        try db.query(
            "INSERT OR IGNORE INTO channel_owner(channel, sender, at_ms) VALUES(?,?,?)",
            [.text(channel.rawValue), .text(sender), .integer(wallMS)])
    }

    /// Removes a paired owner; false when `sender` had not paired on `channel`.
    public func revoke(_ channel: ChannelKind, sender: String) throws(SQLiteError) -> Bool {
        try db.query("DELETE FROM channel_owner WHERE channel = ? AND sender = ?", [.text(channel.rawValue), .text(sender)])
        return try changes() == 1
    }

    // MARK: Pairing codes

    /// Keeps `code` as the channel's pairing code (replacing any other), for this boot.
    public func savePairing(_ channel: ChannelKind, _ code: OneTimeCode, wallMS: Int64) throws(SQLiteError) {
        try db.query(
            "INSERT OR REPLACE INTO channel_pairing(channel, code, boot_id, expires_ns, at_ms) VALUES(?,?,?,?,?)",
            [
                .text(channel.rawValue), .text(code.code), .text(bootID), .integer(Int64(bitPattern: code.expires.nanoseconds)),
                .integer(wallMS),
            ])
    }

    /// The codes waiting, valid at `now` in this boot; the others are deleted.
    public func pairing(now: Instant) throws(SQLiteError) -> Pairing {
        try db.query(
            "DELETE FROM channel_pairing WHERE boot_id != ? OR expires_ns <= ?",
            [.text(bootID), .integer(Int64(bitPattern: now.nanoseconds))])
        var codes: [ChannelKind: OneTimeCode] = [:]
        for r in try db.query("SELECT channel, code, expires_ns FROM channel_pairing") {
            guard let c = r[0].string.flatMap(ChannelKind.init(rawValue:)), let code = r[1].string, let e = r[2].int64 else { continue }
            codes[c] = OneTimeCode(code: code, expires: Instant(nanoseconds: UInt64(bitPattern: e)))
        }
        return Pairing(codes: codes)
    }

    /// Uses up `code` and makes `sender` an owner, in one transaction: of two processes (or two
    /// messages) with the same code, one pairs. False when the code was no longer there.
    public func pair(_ channel: ChannelKind, sender: String, code: String, now: Instant, wallMS: Int64) throws(SQLiteError) -> Bool {
        var paired = false
        try db.transaction { () throws(SQLiteError) in
            try db.query(
                "DELETE FROM channel_pairing WHERE channel = ? AND code = ? AND boot_id = ? AND expires_ns > ?",
                [.text(channel.rawValue), .text(code), .text(bootID), .integer(Int64(bitPattern: now.nanoseconds))])
            guard try changes() == 1 else { return }
            try addOwner(channel, sender: sender, wallMS: wallMS)
            paired = true
        }
        return paired
    }

    /// The gate (`OwnerGate.decide`) with what agent.db holds: the owners and the waiting
    /// code. A pairing is kept (the code used up in agent.db too); an ignored message becomes
    /// an event when the limiter allows — the sender's id and why, never the text.
    public func admit(
        _ m: IncomingMessage, config: ChannelsConfig, limiter: inout StrangerLimiter, ledger: Ledger, now: Instant, wallMS: Int64
    ) throws(SQLiteError) -> GateDecision {
        var pairing = try pairing(now: now)
        let waiting = pairing.pending(m.channel, now: now)
        let decision = OwnerGate.decide(m, owners: try owners(m.channel, config: config), pairing: &pairing, now: now, limiter: &limiter)
        switch decision {
        case .handle: return decision
        case .paired(let sender):
            guard let waiting, try pair(m.channel, sender: sender, code: waiting.code, now: now, wallMS: wallMS) else {
                return .ignore(IgnoredMessage(reason: .wrongCode, record: false, skipped: 0))
            }
            ledger.record(
                kind: "channel.paired", route: nil, message: "\(m.channel.rawValue): \(sender) paired and is an owner now", wallMS: wallMS)
            return decision
        case .ignore(let i):
            if i.record { ledger.record(kind: "channel.ignored", route: nil, message: i.eventText(m), wallMS: wallMS) }
            return decision
        }
    }

    // MARK: De-duplication

    /// True the first time a message id is seen on a channel (every later delivery of it is a
    /// duplicate). Keeps the last `seenLimit` ids, none older than `seenDays`.
    public func firstSeen(_ channel: ChannelKind, id: String, wallMS: Int64) throws(SQLiteError) -> Bool {
        var first = false
        try db.transaction { () throws(SQLiteError) in
            try db.query(
                "INSERT OR IGNORE INTO channel_seen(channel, message_id, at_ms) VALUES(?,?,?)",
                [.text(channel.rawValue), .text(id), .integer(wallMS)])
            first = try changes() == 1
            guard first else { return }
            try db.query(
                "DELETE FROM channel_seen WHERE rowid <= (SELECT max(rowid) FROM channel_seen) - ?",
                [.integer(Int64(ChannelStore.seenLimit))])
            try db.query("DELETE FROM channel_seen WHERE at_ms < ?", [.integer(wallMS - ChannelStore.seenDays * 86_400_000)])
        }
        return first
    }

    // MARK: The inbound queue

    /// Takes an owner's message in: seen (a later delivery of the same id is a duplicate) and
    /// waiting to be handled, in one synced transaction — once this returns, the channel may
    /// confirm the message to its service. False: a duplicate, nothing kept.
    public func take(_ m: IncomingMessage, wallMS: Int64) throws(SQLiteError) -> Bool {
        try db.execute("PRAGMA synchronous=FULL")
        defer { try? db.execute("PRAGMA synchronous=NORMAL") }
        var first = false
        try db.transaction { () throws(SQLiteError) in
            try db.query(
                "INSERT OR IGNORE INTO channel_seen(channel, message_id, at_ms) VALUES(?,?,?)",
                [.text(m.channel.rawValue), .text(m.id), .integer(wallMS)])
            first = try changes() == 1
            guard first else { return }
            try db.query(
                "INSERT INTO channel_inbox(channel, message_id, chat, sender, direct, text, at_ms) VALUES(?,?,?,?,?,?,?)",
                [.text(m.channel.rawValue), .text(m.id), .text(m.chat), .text(m.sender), .integer(m.isDirect ? 1 : 0), .text(m.text), .integer(wallMS)])
        }
        return first
    }

    /// Owners' messages taken in and not yet answered, oldest first (after a restart: those the
    /// agent was handling when it stopped).
    public func waiting(limit: Int = 64) throws(SQLiteError) -> [(id: Int64, message: IncomingMessage)] {
        try db.query("SELECT id, channel, message_id, chat, sender, direct, text FROM channel_inbox ORDER BY id LIMIT ?", [.integer(Int64(limit))])
            .compactMap { r in
                guard let id = r[0].int64, let c = r[1].string.flatMap(ChannelKind.init(rawValue:)), let mid = r[2].string, let chat = r[3].string,
                    let sender = r[4].string, let text = r[6].string
                else { return nil }
                return (id, IncomingMessage(channel: c, id: mid, chat: chat, sender: sender, isDirect: r[5].int64 == 1, text: text))
            }
    }

    /// A message handled: its replies queued and the message gone from the inbox, in one synced
    /// transaction — a crash before it handles the message again, after it never twice.
    public func answer(_ inboxID: Int64, with replies: [OutgoingMessage], now: Instant, wallMS: Int64) throws(SQLiteError) {
        try db.execute("PRAGMA synchronous=FULL")
        defer { try? db.execute("PRAGMA synchronous=NORMAL") }
        try db.transaction { () throws(SQLiteError) in
            for m in replies { try insertOutbox(m, now: now, wallMS: wallMS) }
            try db.query("DELETE FROM channel_inbox WHERE id = ?", [.integer(inboxID)])
        }
    }

    /// How many message ids are kept.
    public func seenCount() throws(SQLiteError) -> Int { Int(try db.query("SELECT count(*) FROM channel_seen").first?.first?.int64 ?? 0) }

    // MARK: The outbound queue

    /// A message waiting to be sent.
    public struct Queued: Equatable, Sendable {
        public var id: Int64
        public var message: OutgoingMessage
        /// Failed sends so far.
        public var attempts: Int
        /// Parts of a message the channel splits that are already out: a retry starts after them.
        public var partsSent: Int = 0
    }

    /// Queues a message; it is on disk (synced) when this returns, so a restart or a power
    /// cut after it does not lose it.
    @discardableResult
    public func enqueue(_ m: OutgoingMessage, now: Instant, wallMS: Int64) throws(SQLiteError) -> Int64 {
        try db.execute("PRAGMA synchronous=FULL")
        defer { try? db.execute("PRAGMA synchronous=NORMAL") }
        var id: Int64 = 0
        try db.transaction { () throws(SQLiteError) in
            try insertOutbox(m, now: now, wallMS: wallMS)
            id = try db.query("SELECT last_insert_rowid()").first?.first?.int64 ?? 0
        }
        return id
    }

    private func insertOutbox(_ m: OutgoingMessage, now: Instant, wallMS: Int64) throws(SQLiteError) {
        try db.query(
            "INSERT INTO channel_outbox(channel, chat, text, next_ns, boot_id, state, at_ms) VALUES(?,?,?,?,?,'queued',?)",
            [
                .text(m.channel.rawValue), .text(m.chat), .text(m.text), .integer(Int64(bitPattern: now.nanoseconds)), .text(bootID),
                .integer(wallMS),
            ])
    }

    /// Messages due at `now`, oldest first, at most one per chat (the oldest waiting: a chat's
    /// messages go out in order, a later one never overtakes one being retried). A message
    /// held back in an earlier boot is due at once (its monotonic time meant nothing now).
    public func due(now: Instant, channel: ChannelKind? = nil, limit: Int = 32) throws(SQLiteError) -> [Queued] {
        var sql = """
            SELECT id, channel, chat, text, attempts, next_ns, boot_id, parts_sent FROM channel_outbox o
            WHERE state = 'queued' AND NOT EXISTS (
                SELECT 1 FROM channel_outbox p WHERE p.state = 'queued' AND p.channel = o.channel AND p.chat = o.chat AND p.id < o.id)
            """
        var args: [SQLiteValue] = []
        if let channel {
            sql += " AND channel = ?"
            args.append(.text(channel.rawValue))
        }
        sql += " AND (boot_id != ? OR next_ns <= ?) ORDER BY id LIMIT ?"
        args += [.text(bootID), .integer(Int64(bitPattern: now.nanoseconds)), .integer(Int64(limit))]
        return try db.query(sql, args).compactMap { r in
            guard let id = r[0].int64, let c = r[1].string.flatMap(ChannelKind.init(rawValue:)), let chat = r[2].string,
                let text = r[3].string
            else { return nil }
            return Queued(
                id: id, message: OutgoingMessage(channel: c, chat: chat, text: text), attempts: Int(r[4].int64 ?? 0), partsSent: Int(r[7].int64 ?? 0))
        }
    }

    /// The message was delivered: it leaves the queue.
    public func markSent(_ id: Int64) throws(SQLiteError) {
        try db.query("DELETE FROM channel_outbox WHERE id = ?", [.integer(id)])
    }

    /// The send failed: try again after `delay` (on the monotonic clock), or — past
    /// `maxAttempts`, or when `giveUp` (the service refused it for good) — keep it as failed.
    /// `reason` is kept for `status`; it must hold no secret and no URL with a token.
    public func retryLater(
        _ id: Int64, after delay: Duration, now: Instant, reason: String, giveUp: Bool = false, partsSent: Int? = nil
    ) throws(SQLiteError) {
        try db.transaction { () throws(SQLiteError) in
            try db.query(
                """
                UPDATE channel_outbox SET attempts = attempts + 1, next_ns = ?, boot_id = ?, last_error = ?,
                    state = CASE WHEN ? OR attempts + 1 >= ? THEN 'failed' ELSE 'queued' END,
                    parts_sent = coalesce(?, parts_sent)
                WHERE id = ?
                """,
                [
                    .integer(Int64(bitPattern: (now + delay).nanoseconds)), .text(bootID), .text(reason), .integer(giveUp ? 1 : 0),
                    .integer(Int64(ChannelStore.maxAttempts)), SQLiteValue(partsSent.map { Int64($0) }), .integer(id),
                ])
            try db.query(
                "DELETE FROM channel_outbox WHERE state = 'failed' AND id <= (SELECT max(id) FROM channel_outbox WHERE state = 'failed') - ?",
                [.integer(Int64(ChannelStore.failedLimit))])
        }
    }

    /// Messages queued and failed, per channel (for `status`).
    public func queueCounts() throws(SQLiteError) -> [ChannelKind: (queued: Int, failed: Int)] {
        var out: [ChannelKind: (queued: Int, failed: Int)] = [:]
        for r in try db.query("SELECT channel, state, count(*) FROM channel_outbox GROUP BY channel, state") {
            guard let c = r[0].string.flatMap(ChannelKind.init(rawValue:)), let n = r[2].int64 else { continue }
            var v = out[c] ?? (0, 0)
            if r[1].string == "failed" { v.failed += Int(n) } else { v.queued += Int(n) }
            out[c] = v
        }
        return out
    }
}

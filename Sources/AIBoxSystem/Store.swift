import AIBoxCore
import Glibc

/// One event row: what happened, when (wall clock, for people), to which worker.
public struct EventRecord: Codable, Sendable, Equatable {
    public var id: Int64?
    /// Milliseconds since 1970 by the wall clock at the time (a box without RTC may say 1970).
    public var at: Int64
    public var kind: String
    public var worker: String?
    public var message: String

    public init(id: Int64? = nil, at: Int64, kind: String, worker: String?, message: String) {
        self.id = id
        self.at = at
        self.kind = kind
        self.worker = worker
        self.message = message
    }
}

/// The last known state of one worker: what `aibox workers` shows when the daemon is down,
/// and what a restarted daemon needs to find the processes its previous run left.
public struct WorkerRecord: Codable, Sendable, Equatable {
    public var name: String
    public var state: String
    public var pid: Int32?
    /// Process group (== pid of the leader) and the leader's start time in ticks since boot.
    public var pgid: Int32?
    public var startTime: Int64?
    public var bootID: String?
    public var restarts: Int
    public var lastExitCode: Int32?
    public var lastExitSignal: Int32?
    public var lastExitAt: Int64?
    public var status: String?
    public var reason: String?
    public var updatedAt: Int64

    public init(
        name: String, state: String, pid: Int32?, pgid: Int32?, startTime: Int64?, bootID: String?, restarts: Int,
        lastExitCode: Int32?, lastExitSignal: Int32?, lastExitAt: Int64?, status: String?, reason: String?, updatedAt: Int64
    ) {
        self.name = name
        self.state = state
        self.pid = pid
        self.pgid = pgid
        self.startTime = startTime
        self.bootID = bootID
        self.restarts = restarts
        self.lastExitCode = lastExitCode
        self.lastExitSignal = lastExitSignal
        self.lastExitAt = lastExitAt
        self.status = status
        self.reason = reason
        self.updatedAt = updatedAt
    }
}

/// Schema: named migrations, forward-only, each applied once in its own transaction and
/// recorded in `schema_migrations`. A name this build does not know means a newer build
/// wrote the file (the case after an A/B rollback): it is reported, and since migrations
/// only ever add, this build goes on with the tables it knows.
enum Schema {
    static let migrations: [(name: String, sql: String)] = [
        (
            "v1-events-workers",
            """
            CREATE TABLE events (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                at INTEGER NOT NULL,
                kind TEXT NOT NULL,
                worker TEXT,
                message TEXT NOT NULL);
            CREATE INDEX events_worker ON events(worker, id);
            CREATE TABLE workers (
                name TEXT PRIMARY KEY NOT NULL,
                state TEXT NOT NULL,
                pid INTEGER, pgid INTEGER, startTime INTEGER, bootID TEXT,
                restarts INTEGER NOT NULL DEFAULT 0,
                lastExitCode INTEGER, lastExitSignal INTEGER, lastExitAt INTEGER,
                status TEXT, reason TEXT,
                updatedAt INTEGER NOT NULL);
            CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
            """
        ),
        (
            // The hardware inventory as last seen, to tell what changed since the last boot.
            "v2-devices",
            """
            CREATE TABLE devices (
                syspath TEXT PRIMARY KEY NOT NULL,
                subsystem TEXT NOT NULL,
                devtype TEXT, devnode TEXT, vendorId TEXT, productId TEXT, pciClass TEXT,
                driver TEXT, model TEXT, idPath TEXT, memoryBytes INTEGER);
            """
        ),
        (
            // The interactive setup's finished steps (issue 4); secrets by name only.
            "v3-setup-journal",
            """
            CREATE TABLE setup_journal (
                step TEXT NOT NULL,
                ordinal INTEGER NOT NULL,
                position INTEGER NOT NULL,
                key TEXT NOT NULL,
                kind TEXT NOT NULL,
                value TEXT,
                PRIMARY KEY (step, position));
            """
        ),
    ]

    /// Applies what is missing; returns the names of migrations this build does not know.
    static func migrate(_ db: SQLiteConnection) throws(SQLiteError) -> [String] {
        try db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY NOT NULL)")
        let applied = Set(try db.query("SELECT name FROM schema_migrations").compactMap { $0.first?.string })
        for m in migrations where !applied.contains(m.name) {
            try db.transaction { () throws(SQLiteError) in
                try db.execute(m.sql)
                try db.query("INSERT INTO schema_migrations(name) VALUES (?)", [.text(m.name)])
            }
        }
        let known = Set(migrations.map(\.name))
        return applied.filter { !known.contains($0) }.sorted()
    }
}

/// The daemon's database. Supervision never waits on it: writes are queued and flushed in
/// one transaction per loop turn; when the file is corrupt it is moved aside and rebuilt;
/// when it is locked, read-only or the disk is full, the problem is reported, events are
/// kept in a bounded queue, and opening is retried on the monotonic clock.
public final class Store {
    public let path: String
    public let maxEvents: Int
    private var db: SQLiteConnection?
    private var pendingEvents: [EventRecord] = []
    private var pendingWorkers: [String: WorkerRecord] = [:]
    private var pendingDeletes: Set<String> = []
    private var pendingMeta: [String: String] = [:]
    private var pendingInventory: [DeviceRecord]?
    private var retryAt: Instant?
    private var insertsSincePrune = 0
    /// What is wrong with the database now; nil when healthy.
    public private(set) var problem: String?
    /// Set when a corrupt file was moved aside during this run.
    public private(set) var movedAside: String?
    /// Migrations found in the file that this build does not know (a newer build wrote it).
    public private(set) var unknownMigrations: [String] = []
    public var onProblem: ((String?) -> Void)?
    static let pendingLimit = 10_000

    public init(path: String, maxEvents: Int = 20_000) {
        self.path = path
        self.maxEvents = maxEvents
        open()
    }

    public var isHealthy: Bool { db != nil && problem == nil }

    private func setProblem(_ p: String?) {
        if p != problem {
            problem = p
            onProblem?(p)
        }
    }

    private static func isCorruption(_ e: SQLiteError) -> Bool {
        e.primaryCode == SQLiteError.corrupt || e.primaryCode == SQLiteError.notADatabase
    }

    private func open() {
        do {
            try makeDirectories(parentDirectory(path), mode: 0o755)
            let connection = try Store.connect(path)
            unknownMigrations = try Schema.migrate(connection)
            db = connection
            setProblem(nil)
        } catch let e as SQLiteError where Store.isCorruption(e) {
            rebuild(because: e)
        } catch {
            db = nil
            setProblem("database \(path) unavailable: \(error)")
        }
    }

    static func connect(_ path: String, readOnly: Bool = false, busyTimeoutMilliseconds: Int32 = 50) throws(SQLiteError)
        -> SQLiteConnection
    {
        let connection = try SQLiteConnection(path: path, readOnly: readOnly, busyTimeoutMilliseconds: busyTimeoutMilliseconds)
        if !readOnly {
            // WAL: readers (the CLI) never block the daemon. NORMAL: a power cut may lose the
            // last moments of history but never corrupts the file.
            try connection.query("PRAGMA journal_mode = WAL")
            try connection.execute("PRAGMA synchronous = NORMAL")
        }
        // A file that is not a database only shows on first read.
        try connection.query("SELECT count(*) FROM sqlite_master")
        return connection
    }

    /// Moves a corrupt database (and its WAL) aside and starts a new one.
    private func rebuild(because error: SQLiteError) {
        db = nil
        let aside = "\(path).corrupt-\(Clock.wallMilliseconds())"
        // Unchecked: a database that could not be moved is still there, and the connect below
        // fails on it and says so. (A WAL that stays would be replayed into the new file.)
        _ = try? syscall("rename", detail: path) { rename(path, aside) }
        _ = try? syscall("rename", detail: path + "-wal") { rename(path + "-wal", aside + "-wal") }
        removeFileBestEffort(path + "-shm")
        movedAside = aside
        do {
            let connection = try Store.connect(path)
            unknownMigrations = try Schema.migrate(connection)
            db = connection
            setProblem(nil)
            // Worker rows are rewritten from memory by the daemon.
            pendingEvents.append(
                EventRecord(
                    at: Clock.wallMilliseconds(), kind: "daemon.database-rebuilt", worker: nil,
                    message: "the database was corrupt (\(error)); moved aside to \(aside) and rebuilt"))
        } catch {
            setProblem("database \(path) was corrupt and could not be rebuilt: \(error)")
        }
    }

    // MARK: Writing

    public func record(_ event: EventRecord) {
        pendingEvents.append(event)
        if pendingEvents.count > Store.pendingLimit { pendingEvents.removeFirst(pendingEvents.count - Store.pendingLimit) }
    }

    public func save(_ worker: WorkerRecord) {
        pendingDeletes.remove(worker.name)
        pendingWorkers[worker.name] = worker
    }

    public func remove(worker name: String) {
        pendingWorkers[name] = nil
        pendingDeletes.insert(name)
    }

    public func setMeta(_ key: String, _ value: String) { pendingMeta[key] = value }

    /// Replaces the stored hardware inventory (at the next flush).
    public func saveInventory(_ devices: [DeviceRecord]) {
        pendingInventory = devices
        pendingMeta["hardware.stored"] = "1"  // an empty inventory is one too
    }

    public var hasPending: Bool {
        !pendingEvents.isEmpty || !pendingWorkers.isEmpty || !pendingDeletes.isEmpty || !pendingMeta.isEmpty
            || pendingInventory != nil
    }

    /// Writes what is queued in one transaction. Never throws: problems are reported.
    public func flush(now: Instant) {
        guard hasPending else { return }
        if db == nil {
            guard retryAt.map({ now >= $0 }) ?? true else { return }
            retryAt = now + .seconds(5)
            open()
            guard db != nil else { return }
        }
        guard let db else { return }
        let prune = insertsSincePrune + pendingEvents.count >= 500
        do {
            try db.transaction { () throws(SQLiteError) in
                for e in pendingEvents {
                    try db.query(
                        "INSERT INTO events(at, kind, worker, message) VALUES (?, ?, ?, ?)",
                        [.integer(e.at), .text(e.kind), SQLiteValue(e.worker), .text(e.message)])
                }
                for w in pendingWorkers.values {
                    try db.query(
                        """
                        INSERT OR REPLACE INTO workers(name, state, pid, pgid, startTime, bootID, restarts, lastExitCode,
                            lastExitSignal, lastExitAt, status, reason, updatedAt)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                        [
                            .text(w.name), .text(w.state), SQLiteValue(w.pid.map(Int64.init)), SQLiteValue(w.pgid.map(Int64.init)),
                            SQLiteValue(w.startTime), SQLiteValue(w.bootID), .integer(Int64(w.restarts)),
                            SQLiteValue(w.lastExitCode.map(Int64.init)), SQLiteValue(w.lastExitSignal.map(Int64.init)),
                            SQLiteValue(w.lastExitAt), SQLiteValue(w.status), SQLiteValue(w.reason), .integer(w.updatedAt),
                        ])
                }
                for d in pendingDeletes { try db.query("DELETE FROM workers WHERE name = ?", [.text(d)]) }
                for (k, v) in pendingMeta { try db.query("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", [.text(k), .text(v)]) }
                if let devices = pendingInventory {
                    try db.execute("DELETE FROM devices")
                    for d in devices {
                        try db.query(
                            """
                            INSERT OR REPLACE INTO devices(syspath, subsystem, devtype, devnode, vendorId, productId, pciClass,
                                driver, model, idPath, memoryBytes)
                            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                            """,
                            [
                                .text(d.syspath), .text(d.subsystem), SQLiteValue(d.devtype), SQLiteValue(d.devnode),
                                SQLiteValue(d.vendorId), SQLiteValue(d.productId), SQLiteValue(d.pciClass), SQLiteValue(d.driver),
                                SQLiteValue(d.model), SQLiteValue(d.idPath), SQLiteValue(d.memoryBytes.map { Int64(clamping: $0) }),
                            ])
                    }
                }
                if prune { try pruneEvents(keeping: maxEvents) }
            }
            insertsSincePrune = prune ? 0 : insertsSincePrune + pendingEvents.count
            pendingEvents = []
            pendingWorkers = [:]
            pendingDeletes = []
            pendingMeta = [:]
            pendingInventory = nil
            setProblem(nil)
        } catch let e where Store.isCorruption(e) {
            rebuild(because: e)
        } catch let e where e.primaryCode == SQLiteError.full {
            // Make room by dropping the older half of the history, then try again next turn.
            try? pruneEvents(keeping: maxEvents / 2)
            setProblem("database \(path): disk full; \(pendingEvents.count) events waiting in memory")
        } catch {
            setProblem("database \(path): \(error); \(pendingEvents.count) events waiting in memory")
            if [SQLiteError.readOnly, SQLiteError.ioError, SQLiteError.cantOpen].contains(error.primaryCode) {
                self.db = nil
                retryAt = now + .seconds(5)
            }
        }
    }

    private func pruneEvents(keeping count: Int) throws(SQLiteError) {
        try db?.query("DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?", [.integer(Int64(count))])
    }

    /// When a failed write should be tried again (for the loop's timer).
    public var nextRetry: Instant? { hasPending && !isHealthy ? retryAt : nil }

    // MARK: Reading (the daemon at start)

    public func loadWorkers() -> [WorkerRecord] {
        guard let db else { return [] }
        return (try? StoreReader.workers(db)) ?? []
    }

    /// One value of the meta table as stored (not what is queued).
    public func loadMeta(_ key: String) -> String? {
        guard let db else { return nil }
        return try? db.query("SELECT value FROM meta WHERE key = ?", [.text(key)]).first?.first?.string
    }

    /// The inventory stored by the previous run; nil when none was (the first start).
    public func loadInventory() -> [DeviceRecord]? {
        guard let db, let rows = try? db.query("SELECT \(StoreReader.deviceColumns) FROM devices") else { return nil }
        guard loadMeta("hardware.stored") == "1" else { return nil }
        return rows.map(StoreReader.device)
    }
}

/// Read-only access for the CLI: status, workers and events answer from here when the
/// daemon is down.
public struct StoreReader {
    let db: SQLiteConnection

    public init(path: String) throws {
        guard fileExists(path) else { throw SystemError("open", errno: ENOENT, detail: path) }
        db = try Store.connect(path, readOnly: true)
    }

    static let workerColumns =
        "name, state, pid, pgid, startTime, bootID, restarts, lastExitCode, lastExitSignal, lastExitAt, status, reason, updatedAt"

    static func workers(_ db: SQLiteConnection) throws(SQLiteError) -> [WorkerRecord] {
        try db.query("SELECT \(workerColumns) FROM workers ORDER BY name").map { r in
            WorkerRecord(
                name: r[0].string ?? "", state: r[1].string ?? "", pid: r[2].int32, pgid: r[3].int32, startTime: r[4].int64,
                bootID: r[5].string, restarts: Int(r[6].int64 ?? 0), lastExitCode: r[7].int32, lastExitSignal: r[8].int32,
                lastExitAt: r[9].int64, status: r[10].string, reason: r[11].string, updatedAt: r[12].int64 ?? 0)
        }
    }

    public func workers() throws -> [WorkerRecord] { try StoreReader.workers(db) }

    /// Events after `sinceMilliseconds` (wall clock), newest last, at most `limit`.
    public func events(sinceMilliseconds: Int64?, worker: String? = nil, limit: Int) throws -> [EventRecord] {
        var sql = "SELECT id, at, kind, worker, message FROM events WHERE 1"
        var args: [SQLiteValue] = []
        if let s = sinceMilliseconds {
            sql += " AND at >= ?"
            args.append(.integer(s))
        }
        if let worker {
            sql += " AND worker = ?"
            args.append(.text(worker))
        }
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(.integer(Int64(limit)))
        return try db.query(sql, args).reversed().map { r in
            EventRecord(id: r[0].int64, at: r[1].int64 ?? 0, kind: r[2].string ?? "", worker: r[3].string, message: r[4].string ?? "")
        }
    }

    /// Events after the one with id `afterID`, oldest first, at most `limit` (a follower's read).
    public func events(afterID: Int64, limit: Int) throws -> [EventRecord] {
        try db.query("SELECT id, at, kind, worker, message FROM events WHERE id > ? ORDER BY id LIMIT ?", [.integer(afterID), .integer(Int64(limit))]).map { r in
            EventRecord(id: r[0].int64, at: r[1].int64 ?? 0, kind: r[2].string ?? "", worker: r[3].string, message: r[4].string ?? "")
        }
    }

    /// The newest event's id (0 when there is none).
    public func lastEventID() throws -> Int64 { try db.query("SELECT max(id) FROM events").first?.first?.int64 ?? 0 }

    public func meta() throws -> [String: String] { try StoreReader.meta(db) }

    static func meta(_ db: SQLiteConnection) throws(SQLiteError) -> [String: String] {
        var out: [String: String] = [:]
        for r in try db.query("SELECT key, value FROM meta") {
            if let k = r[0].string, let v = r[1].string { out[k] = v }
        }
        return out
    }

    static let deviceColumns = "syspath, subsystem, devtype, devnode, vendorId, productId, pciClass, driver, model, idPath, memoryBytes"

    static func device(_ r: [SQLiteValue]) -> DeviceRecord {
        DeviceRecord(
            subsystem: r[1].string ?? "", syspath: r[0].string ?? "", devtype: r[2].string, devnode: r[3].string,
            vendorId: r[4].string, productId: r[5].string, pciClass: r[6].string, driver: r[7].string, model: r[8].string,
            idPath: r[9].string, memoryBytes: r[10].int64.map { UInt64(clamping: $0) })
    }
}

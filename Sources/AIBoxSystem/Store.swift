import AIBoxCore
import GRDB
import Glibc

/// One event row: what happened, when (wall clock, for people), to which worker.
public struct EventRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "events"
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
public struct WorkerRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "workers"
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

/// Schema, forward-only.
enum Schema {
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1-events-workers") { db in
            try db.create(table: "events") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("at", .integer).notNull()
                t.column("kind", .text).notNull()
                t.column("worker", .text)
                t.column("message", .text).notNull()
            }
            try db.create(index: "events_worker", on: "events", columns: ["worker", "id"])
            try db.create(table: "workers") { t in
                t.primaryKey("name", .text)
                t.column("state", .text).notNull()
                t.column("pid", .integer)
                t.column("pgid", .integer)
                t.column("startTime", .integer)
                t.column("bootID", .text)
                t.column("restarts", .integer).notNull().defaults(to: 0)
                t.column("lastExitCode", .integer)
                t.column("lastExitSignal", .integer)
                t.column("lastExitAt", .integer)
                t.column("status", .text)
                t.column("reason", .text)
                t.column("updatedAt", .integer).notNull()
            }
            try db.create(table: "meta") { t in
                t.primaryKey("key", .text)
                t.column("value", .text).notNull()
            }
        }
        return m
    }
}

/// The daemon's database. Supervision never waits on it: writes are queued and flushed in
/// one transaction per loop turn; when the file is corrupt it is moved aside and rebuilt;
/// when it is locked, read-only or the disk is full, the problem is reported, events are
/// kept in a bounded queue, and opening is retried on the monotonic clock.
public final class Store {
    public let path: String
    public let maxEvents: Int
    private var queue: DatabaseQueue?
    private var pendingEvents: [EventRecord] = []
    private var pendingWorkers: [String: WorkerRecord] = [:]
    private var pendingDeletes: Set<String> = []
    private var pendingMeta: [String: String] = [:]
    private var retryAt: Instant?
    private var insertsSincePrune = 0
    /// What is wrong with the database now; nil when healthy.
    public private(set) var problem: String?
    /// Set when a corrupt file was moved aside during this run.
    public private(set) var movedAside: String?
    public var onProblem: ((String?) -> Void)?
    static let pendingLimit = 10_000

    public init(path: String, maxEvents: Int = 20_000) {
        self.path = path
        self.maxEvents = maxEvents
        open()
    }

    public var isHealthy: Bool { queue != nil && problem == nil }

    private func setProblem(_ p: String?) {
        if p != problem {
            problem = p
            onProblem?(p)
        }
    }

    private func open() {
        do {
            try makeDirectories(parentDirectory(path), mode: 0o755)
            let q = try Store.openQueue(path)
            try Schema.migrator.migrate(q)
            queue = q
            setProblem(nil)
        } catch let e as DatabaseError where e.resultCode == .SQLITE_CORRUPT || e.resultCode == .SQLITE_NOTADB {
            rebuild(because: e)
        } catch {
            queue = nil
            setProblem("database \(path) unavailable: \(describe(error))")
        }
    }

    static func openQueue(_ path: String, readonly: Bool = false) throws -> DatabaseQueue {
        var config = Configuration()
        config.readonly = readonly
        config.busyMode = .timeout(0.05)
        config.journalMode = readonly ? .default : .wal
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        let q = try DatabaseQueue(path: path, configuration: config)
        // A file that is not a database only shows on first read.
        try q.read { db in _ = try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master") }
        return q
    }

    /// Moves a corrupt database (and its WAL) aside and starts a new one.
    private func rebuild(because error: Error) {
        queue = nil
        let aside = "\(path).corrupt-\(Clock.wallMilliseconds())"
        _ = rename(path, aside)
        _ = rename(path + "-wal", aside + "-wal")
        _ = unlink(path + "-shm")
        movedAside = aside
        do {
            let q = try Store.openQueue(path)
            try Schema.migrator.migrate(q)
            queue = q
            setProblem(nil)
            pendingEvents.append(
                EventRecord(
                    at: Clock.wallMilliseconds(), kind: "daemon.database-rebuilt", worker: nil,
                    message: "the database was corrupt (\(describe(error))); moved aside to \(aside) and rebuilt"))
            // Worker rows are rewritten from memory by the daemon.
        } catch {
            setProblem("database \(path) was corrupt and could not be rebuilt: \(describe(error))")
        }
    }

    private func describe(_ error: Error) -> String {
        if let e = error as? DatabaseError {
            return "\(e.resultCode): \(e.message ?? "")"
        }
        return "\(error)"
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

    public var hasPending: Bool {
        !pendingEvents.isEmpty || !pendingWorkers.isEmpty || !pendingDeletes.isEmpty || !pendingMeta.isEmpty
    }

    /// Writes what is queued in one transaction. Never throws: problems are reported.
    public func flush(now: Instant) {
        guard hasPending else { return }
        if queue == nil {
            guard retryAt.map({ now >= $0 }) ?? true else { return }
            retryAt = now + .seconds(5)
            open()
            guard queue != nil else { return }
        }
        guard let queue else { return }
        let events = pendingEvents, workers = pendingWorkers, deletes = pendingDeletes, meta = pendingMeta
        let prune = insertsSincePrune + events.count >= 500
        let maxEvents = self.maxEvents
        do {
            try queue.write { db in
                for e in events { try e.insert(db) }
                for w in workers.values { try w.save(db) }
                for d in deletes { try db.execute(sql: "DELETE FROM workers WHERE name = ?", arguments: [d]) }
                for (k, v) in meta { try db.execute(sql: "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", arguments: [k, v]) }
                if prune {
                    try db.execute(
                        sql: "DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?", arguments: [maxEvents])
                }
            }
            insertsSincePrune = prune ? 0 : insertsSincePrune + events.count
            pendingEvents = []
            pendingWorkers = [:]
            pendingDeletes = []
            pendingMeta = [:]
            setProblem(nil)
        } catch let e as DatabaseError where e.resultCode == .SQLITE_CORRUPT || e.resultCode == .SQLITE_NOTADB {
            rebuild(because: e)
        } catch let e as DatabaseError where e.resultCode == .SQLITE_FULL {
            // Make room by dropping old history, then try again on the next turn.
            _ = try? queue.write { db in
                try db.execute(sql: "DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?", arguments: [maxEvents / 2])
            }
            setProblem("database \(path): disk full; \(pendingEvents.count) events waiting in memory")
        } catch {
            setProblem("database \(path): \(describe(error)); \(pendingEvents.count) events waiting in memory")
            if let e = error as? DatabaseError,
                e.resultCode == .SQLITE_READONLY || e.resultCode == .SQLITE_IOERR || e.resultCode == .SQLITE_CANTOPEN
            {
                self.queue = nil
                retryAt = now + .seconds(5)
            }
        }
    }

    /// When a failed write should be tried again (for the loop's timer).
    public var nextRetry: Instant? { hasPending && !isHealthy ? retryAt : nil }

    // MARK: Reading (the daemon at start)

    public func loadWorkers() -> [WorkerRecord] {
        (try? queue?.read { db in try WorkerRecord.fetchAll(db) }) ?? []
    }
}

/// Read-only access for the CLI: status, workers and events answer from here when the
/// daemon is down.
public struct StoreReader {
    let queue: DatabaseQueue

    public init(path: String) throws {
        guard fileExists(path) else { throw SystemError("open", errno: ENOENT, detail: path) }
        queue = try Store.openQueue(path, readonly: true)
    }

    public func workers() throws -> [WorkerRecord] {
        try queue.read { db in try WorkerRecord.order(Column("name")).fetchAll(db) }
    }

    /// Events after `sinceMilliseconds` (wall clock), newest last, at most `limit`.
    public func events(sinceMilliseconds: Int64?, worker: String? = nil, limit: Int) throws -> [EventRecord] {
        try queue.read { db in
            var request = EventRecord.order(Column("id").desc).limit(limit)
            if let s = sinceMilliseconds { request = request.filter(Column("at") >= s) }
            if let worker { request = request.filter(Column("worker") == worker) }
            return try request.fetchAll(db).reversed()
        }
    }

    public func meta() throws -> [String: String] {
        try queue.read { db in
            Dictionary(
                uniqueKeysWithValues: try Row.fetchAll(db, sql: "SELECT key, value FROM meta").map {
                    ($0["key"] as String, $0["value"] as String)
                })
        }
    }
}

import CSQLite
import Glibc

/// An SQLite error: the primary result code (SQLITE_CORRUPT, SQLITE_FULL, …) and message.
public struct SQLiteError: Error, CustomStringConvertible, Sendable {
    public var code: Int32
    public var message: String

    public var primaryCode: Int32 { code & 0xFF }

    public var description: String {
        let name = String(cString: sqlite3_errstr(code))
        return message.isEmpty || message == name ? name : "\(name): \(message)"
    }

    public static let busy = SQLITE_BUSY, locked = SQLITE_LOCKED, corrupt = SQLITE_CORRUPT, notADatabase = SQLITE_NOTADB
    public static let full = SQLITE_FULL, readOnly = SQLITE_READONLY, ioError = SQLITE_IOERR, cantOpen = SQLITE_CANTOPEN
}

/// A value bound to or read from a statement.
public enum SQLiteValue: Sendable, Equatable {
    case integer(Int64)
    case text(String)
    case null

    public init(_ v: Int64?) { self = v.map { .integer($0) } ?? .null }
    public init(_ v: String?) { self = v.map { .text($0) } ?? .null }
}

/// One connection to an SQLite database file, over the C API (libsqlite3). Used from the
/// daemon's single thread, or by one CLI invocation.
public final class SQLiteConnection {
    private var handle: OpaquePointer?

    /// Opens (creating it unless `readOnly`), with a busy timeout.
    public init(path: String, readOnly: Bool, busyTimeoutMilliseconds: Int32) throws(SQLiteError) {
        let flags = readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
        let rc = sqlite3_open_v2(path, &handle, flags | SQLITE_OPEN_NOMUTEX, nil)
        if rc != SQLITE_OK {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? ""
            sqlite3_close_v2(handle)
            handle = nil
            throw SQLiteError(code: rc, message: message)
        }
        sqlite3_extended_result_codes(handle, 1)
        sqlite3_busy_timeout(handle, busyTimeoutMilliseconds)
    }

    deinit { sqlite3_close_v2(handle) }

    private func error(_ rc: Int32) -> SQLiteError {
        SQLiteError(code: rc, message: String(cString: sqlite3_errmsg(handle)))
    }

    /// Runs statements without results.
    public func execute(_ sql: String) throws(SQLiteError) {
        let rc = sqlite3_exec(handle, sql, nil, nil, nil)
        if rc != SQLITE_OK { throw error(rc) }
    }

    /// Runs one statement with arguments; returns its rows as columns of values.
    @discardableResult
    public func query(_ sql: String, _ arguments: [SQLiteValue] = []) throws(SQLiteError) -> [[SQLiteValue]] {
        var statement: OpaquePointer?
        var rc = sqlite3_prepare_v2(handle, sql, -1, &statement, nil)
        guard rc == SQLITE_OK else { throw error(rc) }
        defer { sqlite3_finalize(statement) }
        for (i, value) in arguments.enumerated() {
            let index = Int32(i + 1)
            switch value {
            case .integer(let n): rc = sqlite3_bind_int64(statement, index, n)
            case .text(let s): rc = aibox_sqlite3_bind_text(statement, index, s)
            case .null: rc = sqlite3_bind_null(statement, index)
            }
            guard rc == SQLITE_OK else { throw error(rc) }
        }
        var rows: [[SQLiteValue]] = []
        while true {
            rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { return rows }
            guard rc == SQLITE_ROW else { throw error(rc) }
            let count = sqlite3_column_count(statement)
            var row: [SQLiteValue] = []
            row.reserveCapacity(Int(count))
            for c in 0..<count {
                switch sqlite3_column_type(statement, c) {
                case SQLITE_NULL: row.append(.null)
                case SQLITE_INTEGER: row.append(.integer(sqlite3_column_int64(statement, c)))
                default:
                    row.append(sqlite3_column_text(statement, c).map { .text(String(cString: $0)) } ?? .null)
                }
            }
            rows.append(row)
        }
    }

    /// `body` in one transaction (BEGIN IMMEDIATE), rolled back if it throws.
    public func transaction(_ body: () throws(SQLiteError) -> Void) throws(SQLiteError) {
        try execute("BEGIN IMMEDIATE")
        do {
            try body()
            try execute("COMMIT")
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }
}

extension SQLiteValue {
    public var int64: Int64? { if case .integer(let n) = self { return n } else { return nil } }
    public var int32: Int32? { int64.map { Int32(truncatingIfNeeded: $0) } }
    public var string: String? { if case .text(let s) = self { return s } else { return nil } }
}

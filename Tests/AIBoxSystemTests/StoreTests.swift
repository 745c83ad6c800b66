import Glibc
import Testing

@testable import AIBoxCore
@testable import AIBoxSystem

@Suite("SQLite store")
struct StoreTests {
    static func worker(_ name: String, state: String = "running", pid: Int32? = 1234, restarts: Int = 0) -> WorkerRecord {
        WorkerRecord(
            name: name, state: state, pid: pid, pgid: pid, startTime: 5555, bootID: "boot-1", restarts: restarts,
            lastExitCode: 1, lastExitSignal: nil, lastExitAt: 1_700_000_000_000, status: "serving", reason: nil,
            updatedAt: 1_700_000_000_500)
    }

    @Test("a database written by a newer build (unknown migration) is recognised and still used")
    func newerBuildsDatabase() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/aibox.db"
            do {
                let first = Store(path: path)
                #expect(first.unknownMigrations.isEmpty)
            }
            let db = try SQLiteConnection(path: path, readOnly: false, busyTimeoutMilliseconds: 50)
            try db.execute("CREATE TABLE future (x INTEGER); INSERT INTO schema_migrations(name) VALUES ('v9-future')")
            let store = Store(path: path)
            #expect(store.unknownMigrations == ["v9-future"])
            #expect(store.isHealthy)
            store.record(EventRecord(at: 1, kind: "k", worker: nil, message: "m"))
            store.flush(now: Clock.monotonic())
            #expect(try StoreReader(path: path).events(sinceMilliseconds: nil, limit: 10).map(\.kind) == ["k"])
            #expect(try db.query("SELECT count(*) FROM future").first?.first?.int64 == 0, "the newer build's table is left alone")
        }
    }

    @Test("events, workers and meta are written and read back by StoreReader")
    func roundTrip() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/var/lib/aibox/aibox.db"
            let store = Store(path: path)
            #expect(store.problem == nil)
            #expect(store.isHealthy)
            let events = [
                EventRecord(at: 1000, kind: "daemon.started", worker: nil, message: "aibox 1.0 started"),
                EventRecord(at: 2000, kind: "worker.started", worker: "chat", message: "started as pid 1234"),
                EventRecord(at: 3000, kind: "worker.exited", worker: "llm", message: "exited (exit code 1) after 2s"),
            ]
            for e in events { store.record(e) }
            store.save(Self.worker("llm", state: "backoff", pid: nil, restarts: 3))
            store.save(Self.worker("chat"))
            store.save(Self.worker("old"))
            store.setMeta("version", "1.0.0")
            #expect(store.hasPending)
            store.flush(now: Clock.monotonic())
            #expect(!store.hasPending)
            #expect(store.problem == nil)

            let reader = try StoreReader(path: path)
            let read = try reader.events(sinceMilliseconds: nil, limit: 100)
            #expect(read.map(\.kind) == events.map(\.kind))
            #expect(read.map(\.message) == events.map(\.message))
            #expect(read.map(\.worker) == [nil, "chat", "llm"])
            #expect(read.map(\.at) == [1000, 2000, 3000])
            #expect(read.allSatisfy { $0.id != nil })
            #expect(try reader.events(sinceMilliseconds: 2000, limit: 100).map(\.at) == [2000, 3000])
            #expect(try reader.events(sinceMilliseconds: nil, worker: "chat", limit: 100).map(\.kind) == ["worker.started"])
            // The newest `limit`, oldest first.
            #expect(try reader.events(sinceMilliseconds: nil, limit: 2).map(\.at) == [2000, 3000])
            #expect(
                try reader.workers() == [
                    Self.worker("chat"), Self.worker("llm", state: "backoff", pid: nil, restarts: 3), Self.worker("old"),
                ])
            #expect(try reader.meta() == ["version": "1.0.0"])
            #expect(store.loadWorkers().count == 3)

            // Updates replace, removals delete.
            store.save(Self.worker("chat", state: "stopped", pid: nil))
            store.remove(worker: "old")
            store.flush(now: Clock.monotonic())
            #expect(try reader.workers().map(\.name) == ["chat", "llm"])
            #expect(try reader.workers().first?.state == "stopped")
        }
    }

    @Test("StoreReader on a missing database says so")
    func readerMissing() throws {
        try withTemporaryDirectory { dir in
            let error = #expect(throws: SystemError.self) { try StoreReader(path: dir + "/none.db") }
            #expect(error?.errno == ENOENT)
            #expect(error?.description.contains(dir + "/none.db") == true)
        }
    }

    @Test("retention keeps at most maxEvents, the newest")
    func retention() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/aibox.db"
            let store = Store(path: path, maxEvents: 100)
            // 300 + 300: the second flush crosses 500 inserts and prunes.
            for round in 0..<2 {
                for i in 0..<300 {
                    store.record(
                        EventRecord(at: Int64(round * 300 + i), kind: "test.event", worker: nil, message: "event \(round * 300 + i)"))
                }
                store.flush(now: Clock.monotonic())
            }
            #expect(store.problem == nil)
            let events = try StoreReader(path: path).events(sinceMilliseconds: nil, limit: 10_000)
            #expect(events.count == 100)
            #expect(events.first?.message == "event 500")
            #expect(events.last?.message == "event 599")
        }
    }

    @Test("retention on one large flush")
    func retentionOneFlush() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/aibox.db"
            let store = Store(path: path, maxEvents: 50)
            for i in 0..<700 { store.record(EventRecord(at: Int64(i), kind: "test.event", worker: "w", message: "event \(i)")) }
            store.flush(now: Clock.monotonic())
            let events = try StoreReader(path: path).events(sinceMilliseconds: nil, limit: 10_000)
            #expect(events.map(\.message) == (650..<700).map { "event \($0)" })
        }
    }

    @Test("a corrupt database is moved aside and rebuilt, with an event saying so")
    func corruptRebuilt() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/aibox.db"
            let garbage = String(repeating: "this is not an SQLite database. ", count: 256)
            try writeFile(path, garbage)
            var problems: [String?] = []
            let store = Store(path: path)
            store.onProblem = { problems.append($0) }
            #expect(store.problem == nil)
            #expect(store.isHealthy)
            let aside = try #require(store.movedAside)
            #expect(aside.hasPrefix(path + ".corrupt-"))
            let asideNames = listDirectory(dir).filter { $0.hasPrefix("aibox.db.corrupt-") }
            #expect(asideNames.count == 1)
            #expect(readTextFile(aside) == garbage)

            store.record(EventRecord(at: 1, kind: "daemon.started", worker: nil, message: "started"))
            store.flush(now: Clock.monotonic())
            let events = try StoreReader(path: path).events(sinceMilliseconds: nil, limit: 10)
            #expect(events.map(\.kind) == ["daemon.database-rebuilt", "daemon.started"])
            #expect(events.first?.message.contains(aside) == true)
            #expect(problems.isEmpty)
        }
    }

    @Test("an unopenable database: problem reported, events kept in memory, written once it can open")
    func unopenableThenFixed() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/aibox.db"
            // Root ignores permissions; a directory where the file should be stops root too.
            #expect(mkdir(path, 0o755) == 0)
            var problems: [String?] = []
            let store = Store(path: path)
            store.onProblem = { problems.append($0) }
            let problem = try #require(store.problem)
            #expect(problem.contains(path))
            #expect(!store.isHealthy)
            #expect(store.movedAside == nil)

            let t = Clock.monotonic()
            store.record(EventRecord(at: 1, kind: "worker.started", worker: "chat", message: "one"))
            store.save(StoreTests.worker("chat"))
            store.flush(now: t)
            #expect(store.problem != nil)
            #expect(store.hasPending)
            let retry = try #require(store.nextRetry)
            #expect(retry > t)
            store.record(EventRecord(at: 2, kind: "worker.exited", worker: "chat", message: "two"))

            // Fixed; before the retry time nothing is tried.
            #expect(rmdir(path) == 0)
            store.flush(now: t + .milliseconds(10))
            #expect(store.hasPending)
            #expect(!fileExists(path))

            store.flush(now: retry)
            #expect(store.problem == nil)
            #expect(store.isHealthy)
            #expect(!store.hasPending)
            #expect(store.nextRetry == nil)
            #expect(problems.last == .some(nil))
            let reader = try StoreReader(path: path)
            #expect(try reader.events(sinceMilliseconds: nil, limit: 10).map(\.message) == ["one", "two"])
            #expect(try reader.workers().map(\.name) == ["chat"])
        }
    }

    @Test("a missing parent directory is created")
    func createsDirectories() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/a/b/c/aibox.db"
            let store = Store(path: path)
            store.record(EventRecord(at: 1, kind: "k", worker: nil, message: "m"))
            store.flush(now: Clock.monotonic())
            #expect(store.problem == nil)
            let reader = try StoreReader(path: path)
            #expect(try reader.events(sinceMilliseconds: nil, limit: 1).count == 1)
        }
    }
}

import Testing

@testable import AIBoxCore

/// What an 80-column console shows of `aibox status`, `workers` and `events`.
@Suite struct TextLayoutTests {
    static let parkedReason =
        "exit status 78 (EX_CONFIG): the worker reports that its configuration is wrong; fix it, then `aibox start mailer` or reload"

    static func worker(_ name: String, _ state: String, pid: Int32? = nil, reason: String? = nil, status: String? = nil) -> WorkerView {
        WorkerView(
            name: name, state: state, pid: pid, restarts: 0, lastExit: nil, status: status, reason: reason, waitingFor: [],
            critical: false)
    }

    /// Workers in every state that carries a detail, and names of every length a name may have.
    static let workers: [WorkerView] = {
        var parked = worker("mailer", "parked", reason: parkedReason)
        parked.lastExit = .init(code: 78, signal: nil, at: 1)
        var looping = worker("flaky", "quarantined", reason: "crash loop: 5 exits within 1m; retried in 5m")
        looping.restarts = 4
        looping.lastExit = .init(code: nil, signal: 9, at: 1)
        return [
            worker("chat", "ready", pid: 4_194_303, status: "serving 3 chats"),
            parked,
            looping,
            worker("vision", "waiting", reason: "waiting for hardware:camera, hardware:tpu.coral, hardware:gpu.nvidia, setup"),
            worker(String(repeating: "n", count: 63), "backoff", reason: "failed"),
            worker("a-worker-with-a-name-of-thirty-five", "stopped", reason: "restart = never"),
        ]
    }()

    @Test func everyWorkerLineFitsEightyColumnsAndTheColumnsLineUp() throws {
        let lines = TextLayout.workerTable(Self.workers)
        for l in lines { #expect(l.count <= 80, "\(l.count): \(l)") }
        #expect(lines.first?.hasPrefix("NAME ") == true)
        // STATE starts at the same column on the header and on every worker's row.
        let stateColumn = try #require(lines[0].range(of: "STATE")).lowerBound.utf16Offset(in: lines[0])
        for w in Self.workers {
            let row = try #require(lines.first { $0.contains(" \(w.state) ") || $0.hasSuffix(" \(w.state)") }, "no row for \(w.name)")
            let at = try #require(row.range(of: " \(w.state)")).lowerBound.utf16Offset(in: row) + 1
            #expect(at == stateColumn, "\(row)")
        }
        // The parked worker's reason, whole, on the lines under its row, indented by 4.
        let parkedRow = try #require(lines.firstIndex { $0.hasPrefix("mailer ") })
        #expect(lines[parkedRow].hasSuffix("code 78"), "\(lines[parkedRow])")
        let under = lines[(parkedRow + 1)...].prefix { $0.hasPrefix("    ") }
        #expect(under.count >= 2)
        #expect(under.map { $0.dropFirst(4) }.joined(separator: " ") == Self.parkedReason)
        // A name too long for its column takes a line of its own; one that fits stays in it.
        #expect(lines.contains(String(repeating: "n", count: 63)))
        #expect(lines.contains { $0.hasPrefix("a-worker-with-a-name-of-thirty-five  stopped") })
        #expect(lines.contains { $0.contains("quarantined") && $0.hasSuffix("SIGKILL") })
    }

    @Test func aShortDetailStaysOnItsRowUnderTheDetailHeader() throws {
        let lines = TextLayout.workerTable([Self.workers[0], Self.workers[1]])
        #expect(lines[0] == "NAME    STATE   PID      RESTARTS  LAST EXIT  DETAIL")
        #expect(lines[1] == "chat    ready   4194303  0         -          serving 3 chats")
        #expect(lines[2] == "mailer  parked  -        0         code 78")
        #expect(lines[3...].allSatisfy { $0.hasPrefix("    ") && $0.count <= 80 })
    }

    static func event(_ kind: String, _ worker: String, _ message: String) -> TextLayout.EventRow {
        TextLayout.EventRow(time: "2026-11-27 10:00:00", kind: kind, worker: worker, message: message)
    }

    @Test func eventColumnsLineUpAndLongMessagesWrapUnderTheirColumn() throws {
        let rows = [
            Self.event("daemon.started", "-", "aibox 1.0.0 started as pid 1 (log target journal)"),
            Self.event("worker.parked", "mailer", Self.parkedReason),
            Self.event("worker.ready-timeout", "vision", "no READY=1 in time"),
            Self.event("x", "a", ""),
        ]
        let lines = TextLayout.events(rows)
        for l in lines { #expect(l.count <= 80, "\(l.count): \(l)") }
        // time, kind and worker columns: "2026-11-27 10:00:00" + 2, kind 20 + 2, worker 6 + 2.
        let messageColumn = 19 + 2 + 20 + 2 + 6 + 2
        #expect(lines[0] == "2026-11-27 10:00:00  daemon.started        -       aibox 1.0.0 started as pid 1")
        #expect(lines[1] == String(repeating: " ", count: messageColumn) + "(log target journal)")
        let parked = try #require(lines.firstIndex { $0.contains("worker.parked") })
        #expect(lines[parked].dropFirst(messageColumn).hasPrefix("exit status 78"))
        let continued = lines[(parked + 1)...].prefix { $0.hasPrefix(String(repeating: " ", count: messageColumn)) }
        #expect(
            ([lines[parked]] + continued).map { $0.dropFirst(messageColumn) }.joined(separator: " ") == Self.parkedReason)
        #expect(lines.contains("2026-11-27 10:00:00  worker.ready-timeout  vision  no READY=1 in time"))
        #expect(lines.last == "2026-11-27 10:00:00  x                     a")
    }

    @Test func eventsWithLongKindsOrNamesPutTheMessageUnderneath() {
        let rows = [
            Self.event("provisioning.volume-removed", "assistant-main", "/dev/sdb1 (AIBOX)"),
            Self.event("worker.parked", "mailer", Self.parkedReason),
        ]
        let lines = TextLayout.events(rows)
        for l in lines { #expect(l.count <= 80, "\(l.count): \(l)") }
        #expect(lines[0] == "2026-11-27 10:00:00  provisioning.volume-removed  assistant-main")
        #expect(lines[1] == "    /dev/sdb1 (AIBOX)")
        #expect(lines[2] == "2026-11-27 10:00:00  worker.parked                mailer")
        #expect(lines[3...].allSatisfy { $0.hasPrefix("    ") })
        #expect(lines[3...].map { $0.dropFirst(4) }.joined(separator: " ") == Self.parkedReason)
        // Names longer than a line leaves for them: the worker goes with the message.
        let long = String(repeating: "w", count: 63)
        let narrow = TextLayout.events([Self.event("worker.started", long, "pid 42"), Self.event("worker.parked", "mailer", "x")])
        for l in narrow { #expect(l.count <= 80, "\(l.count): \(l)") }
        #expect(
            narrow == ["2026-11-27 10:00:00  worker.started", "    \(long): pid 42", "2026-11-27 10:00:00  worker.parked", "    mailer: x"])
    }

    @Test func wrapLosesNothingAndKeepsLineEnds() {
        let url = "https://example.com/" + String(repeating: "a", count: 100)
        let lines = TextLayout.wrap("see \(url) now\nsecond line", first: "aibox: ", then: "  ")
        for l in lines { #expect(l.count <= 80, "\(l)") }
        #expect(lines[0] == "aibox: see")
        #expect(lines.map { $0.hasPrefix("aibox: ") ? String($0.dropFirst(7)) : String($0.dropFirst(2)) }.joined().contains(url))
        #expect(lines.last == "  second line")
        #expect(lines.dropLast().last?.hasSuffix("a now") == true)
        #expect(TextLayout.labelled("hardware:", "gpu npu; RAM 15.5 GiB") == ["hardware:  gpu npu; RAM 15.5 GiB"])
    }
}

import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// The built `aibox` binary end to end, against a running daemon and without one.
@Suite(.serialized) struct CommandLineTests {
    @Test func workersJSONIsAsSpecified() throws {
        let box = try TestBox(
            """
            [worker.agent]
            exec = ["@WORKER@", "--ready-after", "0"]
            notify = true
            critical = true

            [worker.dies]
            exec = ["@WORKER@", "--no-notify", "--exit-after", "50", "--exit-code", "4"]
            restart = "never"
            """)
        try box.startDaemon()
        defer { box.stopDaemon() }
        try box.waitFor("agent", ["ready"])
        try box.waitFor("dies", ["stopped"])
        let r = try box.aibox(["workers", "--json"])
        #expect(r.code == 0)
        #expect(r.stderr.isEmpty)
        let array = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
        #expect(array.count == 2)
        let agent = try #require(array.first { $0["name"] as? String == "agent" })
        #expect(agent["state"] as? String == "ready")
        #expect((agent["pid"] as? Int).map { $0 > 0 } == true)
        #expect(agent["restarts"] as? Int == 0)
        #expect(agent["lastExit"] is NSNull, "lastExit must be null when none: \(agent)")
        let dies = try #require(array.first { $0["name"] as? String == "dies" })
        #expect(dies["pid"] is NSNull)
        let last = try #require(dies["lastExit"] as? [String: Any])
        #expect(last["code"] as? Int == 4)
        #expect(last["signal"] == nil)
        #expect((last["at"] as? Int).map { $0 > 0 } == true)
        for w in array {
            #expect(WorkerState(rawValue: w["state"] as? String ?? "") != nil)
        }
    }

    @Test func startStopRestartLogsAndEvents() throws {
        let box = try TestBox(
            """
            [worker.talker]
            exec = ["@WORKER@", "--ready-after", "0", "--watchdog-stop", "-1"]
            notify = true
            watchdog = "1s"
            """)
        try box.startDaemon()
        defer { box.stopDaemon() }
        let pid = try #require(try box.waitFor("talker", ["ready"])?.pid)

        #expect(try box.aibox(["stop", "talker"]).code == 0)
        try box.waitFor("talker", ["stopped"])
        #expect(try box.aibox(["start", "talker"]).code == 0)
        let again = try #require(try box.waitFor("talker", ["ready"])?.pid)
        #expect(again != pid)
        let r = try box.aibox(["restart", "talker"])
        #expect(r.code == 0)
        #expect(try waitUntil { (try box.worker("talker")).map { $0.pid != again && $0.state == "ready" } ?? false })
        #expect(try box.worker("talker")?.restarts == 1, "a requested restart counts once")

        let unknown = try box.aibox(["restart", "nope"])
        #expect(unknown.code == 1)
        #expect(unknown.stderr.contains("no worker named \"nope\""))

        // Output captured to a file, read back by `aibox logs`.
        #expect(try waitUntil { try box.aibox(["logs", "talker", "-n", "3"]).stdout.components(separatedBy: "heartbeat").count >= 3 })
        let logs = try box.aibox(["logs", "talker", "-n", "2"])
        #expect(logs.stdout.split(separator: "\n").count == 2, "\(logs.stdout)")

        let events = try box.aibox(["events", "--worker", "talker"])
        #expect(events.stdout.contains("worker.started"))
        #expect(events.stdout.contains("control.restart"))
        let since = try box.aibox(["events", "--since", "1h", "--json"])
        let list = try JSONDecoder().decode([EventRecord].self, from: Data(since.stdout.utf8))
        #expect(list.contains { $0.kind == "daemon.started" })
        let bad = try box.aibox(["events", "--since", "yesterday-ish"])
        #expect(bad.code == 2)
        #expect(bad.stderr.contains("--since"))
    }

    @Test func logsFollowPrintsNewOutput() throws {
        let box = try TestBox(
            """
            [worker.chatty]
            exec = ["@WORKER@", "--ready-after", "0"]
            notify = true
            watchdog = "100ms"
            """)
        try box.startDaemon()
        defer { box.stopDaemon() }
        try box.waitFor("chatty", ["ready"])
        let p = Process()
        p.executableURL = URL(fileURLWithPath: aiboxBinary)
        p.arguments = ["logs", "chatty", "-n", "0", "--follow", "--root", box.root]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        // SIGKILL: children of the test runner inherit its blocked SIGTERM.
        defer {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
        // Lines written after the command started reach it.
        var seen = Data()
        let fd = out.fileHandleForReading.fileDescriptor
        let got = waitUntil(.seconds(10)) {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 50) > 0 { seen += out.fileHandleForReading.availableData }
            return String(decoding: seen, as: UTF8.self).contains("heartbeat")
        }
        #expect(got, "logs --follow printed: \(String(decoding: seen, as: UTF8.self))")
    }

    @Test func statusWorkersAndEventsAnswerWhenTheDaemonIsDown() throws {
        let box = try TestBox(
            """
            [worker.solo]
            exec = ["@WORKER@", "--no-notify"]
            """)
        // Never started: no database yet.
        let never = try box.aibox(["status"])
        #expect(never.code == 3)
        #expect(never.stdout.contains("NOT RUNNING"))
        #expect(try box.aibox(["start", "solo"]).code == 3)

        try box.startDaemon()
        try box.waitFor("solo", ["running"])
        #expect(box.stopDaemon() == 0)

        let status = try box.aibox(["status", "--json"])
        #expect(status.code == 3, "a distinct exit code says the daemon is not running")
        let s = try JSONDecoder().decode(StatusView.self, from: Data(status.stdout.utf8))
        #expect(s.daemonRunning == false)
        #expect(s.workerCount == 1)
        let workers = try box.aibox(["workers", "--json"])
        #expect(workers.code == 3)
        let list = try JSONDecoder().decode([WorkerView].self, from: Data(workers.stdout.utf8))
        #expect(list.map(\.name) == ["solo"])
        #expect(list.first?.state == "stopped")
        let human = try box.aibox(["workers"])
        #expect(human.stdout.contains("NOT RUNNING"))
        let events = try box.aibox(["events"])
        #expect(events.code == 0)
        #expect(events.stdout.contains("daemon.stopped"))
        let reload = try box.aibox(["reload"])
        #expect(reload.code == 3)
        #expect(reload.stderr.contains("not running"))
    }

    /// A parent may leave 0, 1 or 2 closed (`>&-` in a script, a careless service manager):
    /// each command runs as with /dev/null there, never stopping on EBADF.
    @Test func aCommandStartedWithStandardDescriptorsClosedRunsAsWithDevNull() throws {
        let box = try TestBox(provisioned: false)
        func shell(_ command: String) throws -> CommandResult {
            try run("/bin/sh", ["-c", "exec \"$0\" \(command) --root \"$1\"", aiboxBinary, box.root])
        }
        let status = try shell("status </dev/null")
        #expect(status.code == 3 && status.stdout.contains("NOT RUNNING"), "\(status)")
        for closed in ["status >&-", "status <&- >&-", "status 2>&-"] {
            let r = try shell(closed)
            #expect(r.code == status.code, "\(closed): \(r.stderr)")
        }
        // Setup reading answers from a closed standard input ends as at the end of input.
        let atEnd = try shell("setup </dev/null")
        #expect(atEnd.code == 1 && atEnd.stdout.contains("end of input"), "\(atEnd)")
        let closed = try shell("setup <&-")
        #expect(closed.code == atEnd.code && closed.stdout == atEnd.stdout, "\(closed.stdout)\n\(closed.stderr)")
    }

    @Test func aSecondDaemonOnTheSameRootRefusesToStart() throws {
        let box = try TestBox(
            """
            [worker.only]
            exec = ["@WORKER@", "--no-notify"]
            """)
        try box.startDaemon()
        defer { box.stopDaemon() }
        let pid = try #require(try box.waitFor("only", ["running"])?.pid)
        let second = try box.aibox(["daemon", "--log-target", "files"])
        #expect(second.code == 1)
        #expect(second.stderr.contains("another aibox daemon (pid \(box.daemonPID)) is already running"), "\(second.stderr)")
        // The first one is undisturbed.
        #expect(try box.aibox(["status"]).code == 0)
        #expect(try box.worker("only")?.pid == pid)
    }

    @Test func othersCannotUseTheControlSocketAndMayNeverChangeAnything() throws {
        try #require(geteuid() == 0, "switching to another user needs root (CI runs as root)")
        let box = try TestBox(
            """
            [worker.guarded]
            exec = ["@WORKER@", "--no-notify"]
            """)
        try box.startDaemon()
        defer { box.stopDaemon() }
        let pid = try #require(try box.waitFor("guarded", ["running"])?.pid)
        let asNobody = ["--reuid=65534", "--regid=65534", "--clear-groups", aiboxBinary]
        chmod(box.root, 0o755)
        // The socket is 0660: another user cannot connect, and is told why — not "not running".
        let denied = try run("/usr/bin/setpriv", asNobody + ["workers", "--root", box.root])
        #expect(denied.code == 1)
        #expect(denied.stderr.contains("permission denied"), "\(denied.stderr)")
        // Were the socket opened up by mistake, the peer's credentials still forbid changes.
        chmod(box.paths.controlSocket, 0o666)
        let read = try run("/usr/bin/setpriv", asNobody + ["workers", "--json", "--root", box.root])
        #expect(read.code == 0, "\(read.stderr)")
        let stop = try run("/usr/bin/setpriv", asNobody + ["stop", "guarded", "--root", box.root])
        #expect(stop.code == 1)
        #expect(stop.stderr.contains("permission denied: only root or members of the control socket's group may stop"), "\(stop.stderr)")
        #expect(try box.worker("guarded")?.pid == pid)
        #expect(try box.worker("guarded")?.state == "running")
    }

    @Test func aRequestLineNestedToCrashTheJSONDecoderIsRefusedAndTheDaemonKeepsRunning() throws {
        let box = try TestBox(
            """
            [worker.steady]
            exec = ["@WORKER@", "--no-notify"]
            """)
        try box.startDaemon()
        defer { box.stopDaemon() }
        let pid = try #require(try box.waitFor("steady", ["running"])?.pid)
        // 513 `[` and the newline: FoundationEssentials' JSONDecoder traps on exactly this.
        // 60,000 levels still fit in a request (64 KiB).
        for depth in [513, 60_000] {
            let connection = try #require(try ControlConnection(path: box.paths.controlSocket, timeout: .seconds(5)))
            try connection.send(line: String(repeating: "[", count: depth))
            let answer = try #require(try connection.readLine())
            #expect(answer.contains(#""ok":false"#) && answer.contains("not a valid request"), "\(answer)")
        }
        // Still the same daemon answering, with its worker untouched.
        let status = try box.aibox(["status", "--json"])
        #expect(status.code == 0 && status.stdout.contains(#""daemonRunning" : true"#), "\(status.stdout)\(status.stderr)")
        #expect(try box.worker("steady")?.pid == pid)
    }

    @Test func usageErrorsExitTwo() throws {
        let r = try run(aiboxBinary, ["workers", "--bogus"])
        #expect(r.code == 2)
        #expect(r.stdout.isEmpty)
        let logs = try run(aiboxBinary, ["logs", "Not_A_Name", "--root", "/tmp"])
        #expect(logs.code == 2)
        #expect(logs.stderr.contains("not a worker name"))
    }

    @Test func withoutRootRightsAndWithoutRootDirItSaysWhatToPass() throws {
        // Run as nobody: the daemon must not fail on a permission error, but say what to do.
        let r = try run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", aiboxBinary, "daemon"])
        #expect(r.code == 1)
        #expect(r.stderr.contains("--root DIR"), "\(r.stderr)")
    }
}

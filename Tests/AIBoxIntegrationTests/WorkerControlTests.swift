import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// A worker's own control socket (`control = [...]`) under a real daemon: what it may ask,
/// what it may not, who may connect, and requested update checks on the daemon's socket.
@Suite(.serialized) struct WorkerControlTests {
    static let secretValue = "sk-test-VERY-SECRET-4242"

    /// One request on `socket`; the daemon's refusal as `DaemonClientError.refused`.
    func ask<T: Decodable>(_ socket: String, _ r: ControlRequest, as: T.Type) throws(DaemonClientError) -> T? {
        try DaemonClient(socket: socket, timeout: .seconds(5)).request(r, as: T.self)
    }

    func refusal(_ socket: String, _ r: ControlRequest) -> String? {
        do {
            _ = try ask(socket, r, as: [String: Bool].self)
            return nil
        } catch {
            if case .refused(let why) = error { return why }
            return "not a refusal: \(error)"
        }
    }

    func environment(_ pid: Int32) -> [String] {
        String(decoding: readSmallFile("/proc/\(pid)/environ") ?? [], as: UTF8.self).split(separator: "\0").map(String.init)
    }

    @Test func aWorkersSocketTakesItsGrantAndNothingElse() throws {
        let box = try TestBox(
            """
            [worker.ctl]
            exec = ["@WORKER@", "--no-notify"]
            control = ["workers", "logs", "restart"]

            [worker.printer]
            exec = ["/bin/sh", "-c", "echo \\"the key is $(cat $CREDENTIALS_DIRECTORY/api-key) and more\\"; echo second line; exec sleep 1000"]
            secrets = ["api-key"]

            [worker.other]
            exec = ["@WORKER@", "--no-notify"]
            """)
        try makeDirectories(box.paths.secrets, mode: 0o700)
        try writeFileAtomically(box.paths.secrets + "/api-key", Array((Self.secretValue + "\n").utf8), mode: 0o600)
        try box.startDaemon()
        defer { box.stopDaemon() }
        let ctl = try #require(try box.waitFor("ctl", ["running"])?.pid)
        try box.waitFor("printer", ["running"])
        let otherPID = try #require(try box.waitFor("other", ["running"])?.pid)

        // The granted worker is told where its socket is; the other has none.
        let socket = box.paths.workerControlSocket("ctl")
        #expect(environment(ctl).contains("AIBOX_CONTROL_SOCKET=\(socket)"), "\(environment(ctl))")
        #expect(!environment(otherPID).contains { $0.hasPrefix("AIBOX_CONTROL_SOCKET=") })
        #expect(!fileExists(box.paths.workerControlSocket("other")) && !fileExists(box.paths.workerControlSocket("printer")))
        let st = try #require(try fileStatus(socket)), dir = try #require(try fileStatus(box.paths.workerControlDirectory))
        #expect(st.st_mode & 0o777 == 0o600 && st.st_uid == geteuid(), "the socket is 0600, its worker's user's (here the daemon's own)")
        #expect(dir.st_mode & 0o777 == 0o755)
        // The daemon's own socket is as it was.
        #expect(try #require(try fileStatus(box.paths.controlSocket)).st_mode & 0o777 == 0o660)

        // Granted: workers, logs (secrets redacted), restart; and ping, status.
        let views = try #require(try ask(socket, ControlRequest(command: "workers"), as: [WorkerView].self))
        #expect(Set(views.map(\.name)) == ["ctl", "printer", "other"])
        #expect(try ask(socket, ControlRequest(command: "ping"), as: [String: Int].self)?["pid"] == Int(box.daemonPID))
        var logs: LogLines?
        #expect(
            waitUntil {
                logs = try? ask(socket, ControlRequest(command: "logs", worker: "printer", lines: 10), as: LogLines.self)
                return logs?.lines.contains { $0.text == "second line" } == true
            }, "\(String(describing: logs))")
        #expect(logs?.source == "files")
        #expect(logs?.lines.map(\.text) == ["the key is [secret] and more", "second line"], "\(String(describing: logs))")
        #expect(logs?.lines.allSatisfy { $0.at != nil } == true, "each line has its time")
        #expect(refusal(socket, ControlRequest(command: "logs", worker: "printer", lines: 201))?.contains("from 1 to 200") == true)
        #expect(refusal(socket, ControlRequest(command: "logs", worker: "nobody-here"))?.contains("no worker named") == true)
        // The value is in the log file, and never in an answer.
        #expect(readTextFile(box.paths.logs + "/printer.log")?.contains(Self.secretValue) == true)

        let restarted = try #require(try ask(socket, ControlRequest(command: "restart", worker: "other"), as: WorkerView.self))
        #expect(restarted.name == "other")
        let after = try box.waitForEvent("control.restart", worker: "other")
        #expect(after.first?.message == "restart requested by uid \(geteuid()) through worker ctl's control socket", "\(after)")
        #expect(waitUntil { (try? box.worker("other"))?.flatMap { $0.state == "running" ? $0.pid : nil }.map { $0 != otherPID } ?? false })

        // Not granted: refused, and nothing happens.
        let running = try #require(try box.worker("other")?.pid)
        for command in ["stop", "start", "reload", "setup-changed", "update-check", "update-install"] {
            let why = refusal(socket, ControlRequest(command: command, worker: "other"))
            #expect(why == "\"\(command)\" is not granted to worker ctl (control = [\"workers\", \"logs\", \"restart\"])", "\(command): \(why ?? "answered")")
        }
        #expect(try box.worker("other")?.pid == running && box.worker("other")?.state == "running")
        #expect(try box.events().allSatisfy { $0.kind != "control.stop" && $0.kind != "daemon.reloaded" })

        // The daemon's socket still takes everything from root; an update check needs an A/B box.
        #expect(try box.aibox(["stop", "other"]).code == 0)
        #expect(refusal(box.paths.controlSocket, ControlRequest(command: "update-check"))?.contains("no A/B slots") == true)

        // A reload that takes the grant away takes the socket away.
        try box.write(
            """
            [worker.ctl]
            exec = ["@WORKER@", "--no-notify"]

            [worker.printer]
            exec = ["/bin/sh", "-c", "exec sleep 1000"]

            [worker.other]
            exec = ["@WORKER@", "--no-notify"]
            """)
        #expect(try box.aibox(["reload"]).code == 0)
        #expect(!fileExists(socket), "the socket stays after its grant went")
        #expect(
            waitUntil {
                guard let w = try? box.worker("ctl"), w.state == "running", let pid = w.pid, pid != ctl else { return false }
                return !environment(pid).contains { $0.hasPrefix("AIBOX_CONTROL_SOCKET=") }
            }, "ctl was not restarted without its socket")
    }

    /// As root: the socket is the worker's user's, and only that user and root connect.
    @Test func onlyTheWorkersUserAndRootMayConnect() throws {
        try #require(geteuid() == 0, "running a worker as another user needs root (CI runs as root)")
        let box = try TestBox(
            """
            [worker.ctl]
            exec = ["@WORKER@", "--no-notify"]
            user = "nobody"
            control = ["workers"]
            """)
        // Others may pass through the test's root (mkdtemp makes it 0700), as through / on a box.
        chmod(box.root, 0o755)
        try box.startDaemon()
        defer { box.stopDaemon() }
        try box.waitFor("ctl", ["running"])
        let socket = box.paths.workerControlSocket("ctl")
        let st = try #require(try fileStatus(socket)), dir = try #require(try fileStatus(box.paths.workerControlDirectory))
        #expect(st.st_uid == 65534 && st.st_mode & 0o777 == 0o600, "uid \(st.st_uid) mode \(String(st.st_mode & 0o777, radix: 8))")
        #expect(dir.st_uid == 0 && dir.st_mode & 0o777 == 0o755)
        // A client as nobody (the worker's user) and as another user (daemon, uid 1).
        func connectAs(_ uid: Int) throws -> CommandResult {
            try run(
                "/usr/bin/setpriv",
                [
                    "--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", "/usr/bin/python3", "-c",
                    "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b'{\"command\":\"ping\"}\\n'); print(s.makefile().readline())",
                    socket,
                ])
        }
        let nobody = try connectAs(65534)
        #expect(nobody.code == 0 && nobody.stdout.contains("\"ok\":true"), "\(nobody.stdout) \(nobody.stderr)")
        let stranger = try connectAs(1)
        #expect(stranger.code != 0 && stranger.stderr.contains("Permission denied"), "\(stranger.stdout) \(stranger.stderr)")
        // Root connects, and gets the grant, no more.
        #expect(try ask(socket, ControlRequest(command: "workers"), as: [WorkerView].self)?.first?.name == "ctl")
        #expect(refusal(socket, ControlRequest(command: "restart", worker: "ctl"))?.contains("not granted to worker ctl") == true)
    }

    /// `update-check` on the daemon's socket: refused without a feed, started at once with one,
    /// refused again while it runs, and its outcome recorded as an event when the child ends.
    @Test func aRequestedUpdateCheckRunsOnceAtATimeAndRecordsItsOutcome() throws {
        let u = try UpdateBox()
        let (bundle, _) = try u.bundle(version: "1.2.0", bytes: 1 << 20)
        let server = try UpdateTests.Server.serving(bundle, for: u)
        let dir = server.directory
        try writeFileAtomically(
            dir + "/feed.json",
            Array(
                """
                {"format": 1, "compatible": "aibox-test", "channels": {"stable": {"version": "1.2.0", "url": "\(server.url("ok", "u.aibox"))"}}}
                """.utf8))
        #expect(try run(aiboxBinary, ["bundle", "sign", dir + "/feed.json", "--key", u.key]).code == 0)
        try u.startDaemon()
        defer { u.box.stopDaemon() }
        let socket = u.box.paths.controlSocket
        #expect(refusal(socket, ControlRequest(command: "update-check"))?.contains("no update feed") == true)
        try writeFileAtomically(
            u.box.paths.boxConfig,
            Array(
                """
                name = "test-box"
                [admin]
                ssh-keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGh owner@example"]
                [updates]
                feed-url = "\(server.url("hold", "feed.json"))"
                automatic = false

                """.utf8))
        #expect(try ask(socket, ControlRequest(command: "update-check"), as: [String: Bool].self)?["started"] == true)
        // The child is at the feed, which holds its answer: a second request is refused.
        #expect(waitUntil { server.requests.contains { $0.hasPrefix("/hold/feed.json") } }, "\(server.requests)")
        #expect(refusal(socket, ControlRequest(command: "update-install"))?.contains("already running") == true)
        _ = creat(dir + "/release", 0o644)
        let available = try u.box.waitForEvent("update.available", timeout: .seconds(30))
        #expect(available.first?.message == "update 1.2.0 is available; /update install installs it", "\(available)")
        let asked = try u.box.events().filter { $0.kind == "control.update-check" }
        #expect(asked.count == 1 && asked.first?.message.hasPrefix("update-check requested by uid \(geteuid())") == true, "\(asked)")
        #expect(try u.control.load().state(of: "B") == .bad, "a check installs nothing")
        #expect(!fileExists(u.box.paths.runDirectory + "/update-request.json"), "its output is tidied away")
        // Done: another may start.
        #expect(try ask(socket, ControlRequest(command: "update-check"), as: [String: Bool].self)?["started"] == true)
        try u.box.waitForEvent("update.available", count: 2, timeout: .seconds(30))
    }
}

import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// `ready-http` under the real daemon, against real HTTP servers on 127.0.0.1 (python3):
/// ready only on a 200, a ready-timeout when none comes, and servers that never answer or
/// answer junk neither wedge the daemon nor leave it a socket.
@Suite struct HTTPReadinessTests {
    /// `health PORT FLAG`: http.server answering /health with 503, or 200 once FLAG exists,
    /// printing each request. `silent PORT`: accepts and never answers. `flood PORT`: sends
    /// bytes without a line end, as many as the connection takes.
    static let server = """
        import http.server, os, socket, sys
        mode, port = sys.argv[1], int(sys.argv[2])
        if mode == "health":
            flag = sys.argv[3]
            class Health(http.server.BaseHTTPRequestHandler):
                def do_GET(self):
                    code = 200 if self.path == "/health" and os.path.exists(flag) else 503
                    self.send_response(code)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    print("request", self.path, code, flush=True)
                def log_message(self, *args):
                    pass
            http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(64)
        held = []
        while True:
            c, _ = s.accept()
            print("connection", flush=True)
            if mode == "flood":
                c.setblocking(False)
                try:
                    while True:
                        c.send(b"A" * 65536)
                except OSError:
                    pass
            held.append(c)

        """

    /// A TCP port nothing listens on now (bound to port 0, then released).
    static func freePort() throws -> UInt16 {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(s >= 0)
        defer { close(s) }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &a) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, len) == 0 && getsockname(s, $0, &len) == 0 }
        }
        try #require(bound)
        return UInt16(bigEndian: a.sin_port)
    }

    static func writeServer(_ box: TestBox) throws -> String {
        let path = box.root + "/server.py"
        try writeFileAtomically(path, Array(server.utf8))
        return path
    }

    static func requests(_ box: TestBox, _ worker: String, _ code: Int) throws -> Int {
        try box.aibox(["logs", worker, "-n", "10000"]).stdout.components(separatedBy: "request /health \(code)").count - 1
    }

    /// The daemon's TCP sockets: descriptors of it whose inode is in /proc/net/tcp or tcp6.
    static func tcpSockets(of pid: Int32) -> Int {
        var inodes: Set<String> = []
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            for line in (readTextFile(table) ?? "").split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                if fields.count > 9 { inodes.insert(String(fields[9])) }
            }
        }
        var count = 0
        for fd in listDirectory("/proc/\(pid)/fd") {
            var buf = [CChar](repeating: 0, count: 256)
            let n = readlink("/proc/\(pid)/fd/\(fd)", &buf, 255)
            guard n > 0 else { continue }
            let target = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if target.hasPrefix("socket:["), inodes.contains(String(target.dropFirst(8).dropLast())) { count += 1 }
        }
        return count
    }

    @Test func aWorkerIsReadyOnlyOnceItsURLAnswers200() throws {
        let port = try Self.freePort()
        let box = try TestBox()
        let server = try Self.writeServer(box)
        let flag = box.root + "/model-loaded"
        try box.write(
            """
            [worker.llm]
            exec = ["/usr/bin/python3", "\(server)", "health", "\(port)", "\(flag)"]
            ready-http = "http://127.0.0.1:\(port)/health"
            ready-timeout = "60s"

            [worker.agent]
            exec = ["@WORKER@", "--no-notify"]
            after = ["llm"]
            """)
        try box.startDaemon()
        defer { box.stopDaemon() }

        // Its server answers 503 (a model loading): probed again and again, it stays starting.
        #expect(try waitUntil { try Self.requests(box, "llm", 503) >= 4 }, "the URL was not probed again after a 503")
        let loading = try #require(try box.worker("llm"))
        #expect(loading.state == "starting" && loading.pid != nil, "\(loading)")
        let agent = try #require(try box.worker("agent"))
        #expect(agent.state == "waiting" && agent.waitingFor == ["llm"], "what comes after it waits: \(agent)")
        #expect(try box.events(worker: "llm").allSatisfy { $0.kind != "worker.ready" })

        // The model is loaded: the next 200 makes it ready, within the probes' spacing (≤ 1 s).
        let loaded = Clock.monotonic()
        try writeFileAtomically(flag, [])
        try box.waitFor("llm", ["ready"], timeout: .seconds(5))
        #expect(Clock.monotonic().since(loaded) < .seconds(3))
        #expect(try Self.requests(box, "llm", 200) == 1)
        try box.waitForEvent("worker.ready", worker: "llm")
        try box.waitFor("agent", ["running"])
        // Probing stops at readiness: with attempts at most 1 s apart, 2.5 s without one shows it.
        let seen = try Self.requests(box, "llm", 200) + Self.requests(box, "llm", 503)
        usleep(2_500_000)
        #expect(try Self.requests(box, "llm", 200) + Self.requests(box, "llm", 503) == seen, "still probed after it was ready")
        #expect(Self.tcpSockets(of: box.daemonPID) == 0, "the daemon kept a connection")
    }

    @Test func aURLThatNeverAnswersEndsInAReadyTimeoutLikeANotifyWorker() throws {
        let port = try Self.freePort()
        let box = try TestBox(
            """
            [worker.deaf]
            exec = ["@WORKER@", "--no-notify"]
            ready-http = "http://127.0.0.1:\(port)/health"
            ready-timeout = "1s"
            stop-timeout = "1s"
            restart-delay = "50ms"
            """)
        try box.startDaemon()
        defer { box.stopDaemon() }
        #expect(try box.waitFor("deaf", ["starting"])?.pid != nil)
        let timeout = try box.waitForEvent("worker.ready-timeout", worker: "deaf")
        #expect(timeout.first?.message == "no 200 from http://127.0.0.1:\(port)/health within 1s; stopping", "\(timeout)")
        try box.waitForEvent("worker.backoff", worker: "deaf")
        #expect(try waitUntil { (try box.worker("deaf")?.restarts ?? 0) >= 1 }, "not started again after the failure")
        #expect(try box.events(worker: "deaf").allSatisfy { $0.kind != "worker.ready" })
        #expect(
            waitUntil {
                box.daemonLog().contains(
                    "http://127.0.0.1:\(port)/health never answered 200; the last attempt: connect: Connection refused")
            },
            "\(box.daemonLog())")
    }

    @Test func serversThatHangOrFloodNeitherWedgeTheDaemonNorLeaveItASocket() throws {
        let silentPort = try Self.freePort(), floodPort = try Self.freePort()
        let box = try TestBox()
        let server = try Self.writeServer(box)
        try box.write(
            """
            [worker.silent]
            exec = ["/usr/bin/python3", "\(server)", "silent", "\(silentPort)"]
            ready-http = "http://127.0.0.1:\(silentPort)/health"
            ready-timeout = "3s"
            stop-timeout = "1s"
            restart-delay = "5m"

            [worker.flood]
            exec = ["/usr/bin/python3", "\(server)", "flood", "\(floodPort)"]
            ready-http = "http://127.0.0.1:\(floodPort)/health"
            ready-timeout = "3s"
            stop-timeout = "1s"
            restart-delay = "5m"

            [worker.steady]
            exec = ["@WORKER@", "--no-notify"]
            """)
        try box.startDaemon()
        defer { box.stopDaemon() }
        // While the probes wait on the hung server, the daemon answers at once.
        #expect(try waitUntil { (try box.aibox(["logs", "silent", "-n", "10"]).stdout.contains("connection")) })
        for _ in 0..<5 {
            let t = Clock.monotonic()
            #expect(try box.aibox(["workers", "--json"]).code == 0)
            #expect(Clock.monotonic().since(t) < .seconds(1), "the control socket waited")
        }
        for name in ["silent", "flood"] {
            let timeout = try box.waitForEvent("worker.ready-timeout", worker: name, timeout: .seconds(10))
            #expect(timeout.first?.message.contains("no 200 from http://127.0.0.1:") == true)
            try box.waitFor(name, ["backoff"], timeout: .seconds(10))
        }
        #expect(try box.worker("steady")?.state == "running")
        let log = box.daemonLog()
        #expect(
            log.contains("worker silent: http://127.0.0.1:\(silentPort)/health never answered 200; the last attempt: no answer within 2s"),
            "\(log)")
        #expect(
            log.contains(
                "worker flood: http://127.0.0.1:\(floodPort)/health never answered 200; the last attempt: the answer is not an HTTP/1 status line"
            ), "\(log)")
        // Every attempt's connection was closed: none is left to either server.
        #expect(
            waitUntil(.seconds(5)) { Self.tcpSockets(of: box.daemonPID) == 0 },
            "the daemon holds \(Self.tcpSockets(of: box.daemonPID)) TCP sockets")
        #expect(
            try box.aibox(["logs", "flood", "-n", "100"]).stdout.components(separatedBy: "connection").count - 1 >= 2,
            "the flooding server was tried more than once")
    }
}

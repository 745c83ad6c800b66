import Testing

@testable import AIBoxCore

@Suite("ready-http: readiness from a URL that answers 200")
struct ReadyHTTPTests {
    func url(_ text: String) throws -> ReadyHTTP { try ReadyHTTP.parse(text).get() }

    func refusal(_ text: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) -> String {
        switch ReadyHTTP.parse(text) {
        case .success(let u):
            Issue.record("\(text) was taken: \(u.address) \(u.port) \(u.target)", sourceLocation: sourceLocation)
            return ""
        case .failure(let e): return e.message
        }
    }

    // MARK: The URL

    @Test("loopback URLs: address, port and target as sent")
    func goodURLs() throws {
        let llama = try url("http://127.0.0.1:8080/health")
        #expect(llama.address == [127, 0, 0, 1] && llama.port == 8080 && llama.target == "/health")
        #expect(llama.url == "http://127.0.0.1:8080/health")
        let bare = try url("http://127.0.0.1")
        #expect(bare.port == 80 && bare.target == "/")
        let query = try url("http://127.0.0.1:9000?ready=1")
        #expect(query.target == "/?ready=1")
        #expect(try url("http://127.1.2.3:1/a/b?c=d%20e").address == [127, 1, 2, 3])
        #expect(try url("HTTP://localhost:65535/").address == [127, 0, 0, 1])
        #expect(try url("http://LocalHost:8080/").port == 8080)
        let v6 = try url("http://[::1]:8080/health")
        #expect(v6.address == [UInt8](repeating: 0, count: 15) + [1] && v6.port == 8080)
    }

    @Test(
        "what is refused, and what the message says",
        arguments: [
            ("https://127.0.0.1:8080/health", "https is not supported"),
            ("ftp://127.0.0.1/", "\"ftp\" is not supported"),
            ("127.0.0.1:8080/health", "is not a URL"),
            ("http://10.0.0.2:8080/health", "10.0.0.2 is not a loopback address"),
            ("http://example.com/health", "\"example.com\" must be on this box"),
            ("http://[::2]:80/", "must be on this box"),
            ("http://127.1/", "must be on this box"),
            ("http://127.0.0.256/", "must be on this box"),
            ("http://:8080/health", "names no address"),
            ("http://127.0.0.1:0/health", "\"0\" is not a port"),
            ("http://127.0.0.1:65536/", "is not a port"),
            ("http://127.0.0.1:/", "is not a port"),
            ("http://127.0.0.1:80a/", "is not a port"),
            ("http://user:pw@127.0.0.1/", "user name or password"),
            ("http://127.0.0.1/health#top", "fragment"),
            ("http://127.0.0.1/he alth", "printable ASCII without spaces"),
            ("http://127.0.0.1/\r\nX-Injected: 1", "printable ASCII"),
            ("http://127.0.0.1/é", "printable ASCII"),
            ("http://[::1/", "closing ']'"),
        ])
    func badURLs(_ text: String, says: String) {
        let message = refusal(text)
        #expect(message.contains(says), "\(text): \(message)")
    }

    @Test("a very long URL is refused")
    func tooLong() {
        #expect(refusal("http://127.0.0.1/" + String(repeating: "a", count: 1100)).contains("longer than 1024"))
    }

    @Test("the request: one GET with Host and Connection: close")
    func request() throws {
        let r = String(decoding: try url("http://127.0.0.1:8080/health?x=1").request, as: UTF8.self)
        #expect(r.hasPrefix("GET /health?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"))
        #expect(r.contains("\r\nConnection: close\r\n"))
        #expect(r.hasSuffix("\r\n\r\n"))
        #expect(String(decoding: try url("http://localhost/").request, as: UTF8.self).hasPrefix("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"))
        #expect(String(decoding: try url("http://[::1]:81/").request, as: UTF8.self).contains("Host: [::1]:81\r\n"))
    }

    // MARK: The answer

    @Test(
        "the status line, whole or not yet",
        arguments: [
            ("HTTP/1.1 200 OK\r\n", ReadyHTTP.Answer.status(200)),
            ("HTTP/1.0 200 OK\r\nServer: x\r\n\r\n{}", .status(200)),
            ("HTTP/1.1 503 Service Unavailable\r\n", .status(503)),
            ("HTTP/1.1 200\r\n", .status(200)),
            ("HTTP/1.1 200\n", .status(200)),
            ("HTTP/1.1 204 No Content\r\n", .status(204)),
            ("", .incomplete),
            ("HTTP/1.1 20", .incomplete),
            ("HTTP/1.1 200 OK", .incomplete),
            ("HTTP/2 200\r\n", .malformed),
            ("HTTP/1.1 2000 OK\r\n", .malformed),
            ("HTTP/1.1  200 OK\r\n", .malformed),
            ("http/1.1 200 OK\r\n", .malformed),
            ("SSH-2.0-OpenSSH_9.2\r\n", .malformed),
            ("\r\n", .malformed),
        ])
    func statusLine(_ text: String, expected: ReadyHTTP.Answer) {
        #expect(ReadyHTTP.answer(Array(text.utf8)) == expected, "\(text.debugDescription)")
    }

    @Test("no line within the bound is malformed, however much more comes")
    func bounded() {
        let junk = [UInt8](repeating: 0x41, count: ReadyHTTP.maximumStatusLine)
        #expect(ReadyHTTP.answer(junk) == .malformed)
        #expect(ReadyHTTP.answer(junk.dropLast()) == .incomplete)
        #expect(ReadyHTTP.answer(junk + Array("\r\nHTTP/1.1 200 OK\r\n".utf8)) == .malformed)
    }

    @Test("the same answer however the bytes arrive, split anywhere")
    func splitAnywhere() {
        let whole = Array("HTTP/1.1 503 Loading model\r\nContent-Length: 0\r\n\r\n".utf8)
        for cut in 0...whole.count {
            let head = ReadyHTTP.answer(whole[..<cut])
            let lineEnd = whole.firstIndex(of: 0x0A)!
            #expect(head == (cut > lineEnd ? .status(503) : .incomplete), "cut at \(cut)")
        }
    }

    @Test("attempts 50 ms after the start, then twice as far apart up to a second")
    func schedule() {
        let delays = (1...8).map { ReadyHTTP.schedule.delay(attempt: $0, random: 0) }
        #expect(
            delays == [
                .milliseconds(50), .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .seconds(1), .seconds(1),
                .seconds(1),
            ])
        #expect(ReadyHTTP.attemptTimeout == .seconds(2))
    }

    // MARK: The worker file

    @Test("the key parses; with notify = true it is refused")
    func workerKey() throws {
        let w = try #require(
            try parse("[worker.llm]\nexec = [\"/llama-server\"]\nready-http = \"http://127.0.0.1:8080/health\"\n").get().first)
        #expect(w.readyHTTP?.url == "http://127.0.0.1:8080/health")
        #expect(w.notify == false && w.awaitsReadiness)
        #expect(w.readinessSignal == "200 from http://127.0.0.1:8080/health")

        let both = parseErrors("[worker.llm]\nexec = [\"/llama-server\"]\nnotify = true\nready-http = \"http://127.0.0.1:8080/health\"\n")
        #expect(both.count == 1)
        #expect(both.first?.key == "worker.llm.ready-http" && both.first?.location.line == 4)
        #expect(both.first?.message.contains("two ways to say ready; keep one") == true, "\(both)")

        let bad = parseErrors("[worker.llm]\nexec = [\"/llama-server\"]\n\nready-http = \"https://api.example.com/health\"\n")
        #expect(bad.count == 1)
        #expect(bad.first?.key == "worker.llm.ready-http" && bad.first?.location.line == 4)
        #expect(
            bad.first?.description
                == "\(vendorPath):4: worker.llm.ready-http: \"https://api.example.com/health\" https is not supported: the check is made on loopback, where TLS adds nothing; use http://, such as \"http://127.0.0.1:8080/health\""
        )
        let number = parseErrors("[worker.llm]\nexec = [\"/llama-server\"]\nready-http = 8080\n")
        #expect(number.first?.message.contains("must be a string") == true)
    }

    // MARK: The machine

    func llm(_ change: (inout WorkerDefinition) -> Void = { _ in }) -> WorkerDefinition {
        worker {
            $0.readyHTTP = try? ReadyHTTP.parse("http://127.0.0.1:8080/health").get()
            $0.readyTimeout = .seconds(60)
            change(&$0)
        }
    }

    @Test("a ready-http worker starts starting, with the ready deadline, and is ready when the URL answers 200")
    func readyByURL() {
        var m = WorkerMachine(definition: llm { $0.watchdog = .seconds(30) })
        #expect(m.start(now: t0, dependenciesReady: []) == [.spawn])
        #expect(m.spawned(pid: 7, now: t0) == [.record(.started(pid: 7))])
        #expect(m.state == .starting && !m.isReady)
        #expect(m.deadline == at(.seconds(60)))
        // READY=1 is not its way of saying it.
        #expect(m.notified(notifyMessage("READY=1"), now: at(.seconds(1))) == [])
        #expect(m.state == .starting)
        #expect(m.readinessConfirmed(now: at(.seconds(5))) == [.record(.ready)])
        #expect(m.state == .ready && m.isReady)
        #expect(m.deadline == at(.seconds(35)), "the watchdog counts from readiness")
        // Once ready, a second 200 changes nothing.
        #expect(m.readinessConfirmed(now: at(.seconds(6))) == [])
    }

    @Test("a 200 counts only while starting with a process, and only for a ready-http worker")
    func confirmationOutOfPlace() {
        var waiting = WorkerMachine(definition: llm())
        #expect(waiting.readinessConfirmed(now: t0) == [])
        _ = waiting.start(now: t0, dependenciesReady: ["hardware:llm-local"])
        #expect(waiting.readinessConfirmed(now: t0) == [] && waiting.state == .waiting)
        var launched = WorkerMachine(definition: llm())
        _ = launched.start(now: t0, dependenciesReady: [])
        #expect(launched.state == .starting && launched.pid == nil)
        #expect(launched.readinessConfirmed(now: t0) == [], "no process yet")
        var notify = spawnedMachine(worker { $0.notify = true })
        #expect(notify.readinessConfirmed(now: t0) == [] && notify.state == .starting)
    }

    @Test("no 200 within ready-timeout: stopped as a failure, the event names the URL")
    func readyTimeout() {
        var m = spawnedMachine(
            llm {
                $0.readyTimeout = .seconds(3); $0.stopSignal = Signals.term
            })
        let actions = m.timerFired(now: at(.seconds(3)), missing: [])
        #expect(
            actions == [
                .record(.readyTimeout(timeout: .seconds(3), awaiting: "200 from http://127.0.0.1:8080/health")),
                .record(.stopping(reason: "no 200 from http://127.0.0.1:8080/health in time")),
                .signalGroup(Signals.term), .signalGroup(Signals.cont),
            ])
        #expect(
            WorkerEvent.readyTimeout(timeout: .seconds(3), awaiting: "200 from http://127.0.0.1:8080/health").message
                == "no 200 from http://127.0.0.1:8080/health within 3s; stopping")
        let after = m.exited(.signal(Signals.term), now: at(.seconds(4)), random: noJitter)
        #expect(after.contains { if case .record(.backoff) = $0 { return true } else { return false } }, "a failure: backoff")
    }
}

import AIBoxAgent
import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// The loopback fake of the WhatsApp Cloud API and of Meta's webhook deliveries
/// (Fixtures/whatsapp_fake.py) as a real process.
final class FakeWhatsApp {
    let server: FixtureServer
    var base: String { server.base }

    init(token: String, appSecret: String, verifyToken: String, phoneNumberID: String) throws {
        server = try FixtureServer("whatsapp_fake.py") { _ in
            ["--token", token, "--app-secret", appSecret, "--verify-token", verifyToken, "--phone-number-id", phoneNumberID]
        }
    }

    func http(_ method: String, _ path: String, _ body: String? = nil) throws -> [String: Any] {
        let args = ["-s", "-m", "30", "-X", method, base + path] + (body.map { ["-H", "content-type: application/json", "-d", $0] } ?? [])
        let out = try runProgram("/usr/bin/curl", args).stdout
        return (try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]) ?? [:]
    }

    /// Where the fake delivers to.
    func webhook(port: Int) throws { _ = try http("POST", "/_fake/webhook", #"{"url": "http://127.0.0.1:\#(port)/whatsapp/webhook"}"#) }

    /// Meta delivering a user's message (`extra`: more JSON members); the statuses the webhook answered.
    func deliver(from: String, text: String, extra: String = "") throws -> (id: String, statuses: [Int]) {
        let a = try http("POST", "/_fake/deliver", #"{"from": "\#(from)", "text": "\#(text)"\#(extra)}"#)
        return (a["id"] as? String ?? "", (a["statuses"] as? [Any])?.map { $0 as? Int ?? -1 } ?? [])
    }

    func verify(_ body: String = "{}") throws -> [String: Any] { try http("POST", "/_fake/verify", body) }
    func script(_ faults: String) throws { _ = try http("POST", "/_fake/script", "{\"faults\": \(faults)}") }
    func sent() throws -> [[String: Any]] { try http("GET", "/_fake/sent")["sent"] as? [[String: Any]] ?? [] }
    func requests() throws -> [[String: Any]] { try http("GET", "/_fake/requests")["requests"] as? [[String: Any]] ?? [] }
}

/// A raw TCP client of the webhook, for what no well-behaved client does.
struct RawClient {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard r == 0 else { throw SystemError("connect", errno: errno) }
    }

    func close() { _ = Glibc.close(fd) }

    /// Sends what it can; the bytes sent (stops at the first error: the peer closed).
    @discardableResult
    func send(_ bytes: [UInt8]) -> Int {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }
            off += n
        }
        return off
    }

    /// Reads until the peer closes or `limit` passes; the bytes and whether it closed.
    func readToClose(within limit: Duration) -> (bytes: [UInt8], closed: Bool) {
        let deadline = Clock.monotonic() + limit
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while Clock.monotonic() < deadline {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let left = Int32(max(1, deadline.since(Clock.monotonic()).nanoseconds / 1_000_000))
            guard poll(&p, 1, left) > 0 else { continue }
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { return (out, true) }
            out += buf[0..<n]
        }
        return (out, false)
    }
}

@Suite("WhatsApp channel against the loopback fake", .serialized)
struct WhatsAppChannelTests {
    static let token = "EAAG-very-secret-access-token"
    static let appSecret = "app-secret-d41d8cd98f00b204"
    static let verifyToken = "verify-word-8c1f"
    static let phone = "106540352242922"
    static let owner = "4915112345678"

    func channel(_ fake: FakeWhatsApp, token: String = token, listen: String = "127.0.0.1:0", maxConnections: Int = 32, requestTimeout: Duration = .seconds(2))
        throws -> WhatsAppConnection
    {
        try WhatsAppConnection(
            phoneNumberID: Self.phone, token: Secret(token), appSecret: Secret(Self.appSecret), verifyToken: Secret(Self.verifyToken),
            baseURL: fake.base,
            webhook: WhatsAppWebhookSettings(listen: listen, maxConnections: maxConnections, requestTimeout: requestTimeout, rebindDelay: .seconds(1)),
            retry: WhatsAppRetry(rateLimited: .seconds(60), transient: .seconds(5)), sendTimeout: .seconds(5))
    }

    func fake() throws -> FakeWhatsApp {
        try FakeWhatsApp(token: Self.token, appSecret: Self.appSecret, verifyToken: Self.verifyToken, phoneNumberID: Self.phone)
    }

    /// Starts serving the webhook and points the fake at it; the port.
    func serve(_ c: WhatsAppConnection, _ fake: FakeWhatsApp, _ inbox: Inbox) async throws -> (Task<Void, Never>, Int) {
        let run = Task(executorPreference: TestThreads.shared) { await c.run(deliver: { inbox.add($0) }) }
        #expect(await eventually(within: .seconds(10)) { c.listeningPort != nil })
        let port = try #require(c.listeningPort)
        try fake.webhook(port: port)
        return (run, port)
    }

    @Test("the fake's self-test passes (its payloads signed as Meta signs them, checked by a webhook of its own)")
    func fakeSelfTest() throws {
        let out = try runProgram("/usr/bin/python3", [fixtures + "/whatsapp_fake_selftest.py"])
        #expect(out.code == 0, "\(out.stdout)\(out.stderr)")
        #expect(out.stdout.contains("all checks passed"))
    }

    @Test("a delivered message reaches the receiver once, a duplicate delivery too; until then the channel says it only sends")
    func deliveredOnce() async throws {
        try await onTestThreads {
            let fake = try fake()
            let c = try channel(fake)
            let inbox = Inbox()
            let (run, _) = try await serve(c, fake, inbox)
            #expect(c.receiving == "sending only: no webhook delivery seen")
            let first = try fake.deliver(from: Self.owner, text: "hello box")
            #expect(first.statuses == [200])
            #expect(inbox.messages == [IncomingMessage(channel: .whatsapp, id: first.id, chat: Self.owner, sender: Self.owner, isDirect: true, text: "hello box")])
            // Meta's at-least-once: the same payload twice, and the same id again later.
            let dup = try fake.deliver(from: Self.owner, text: "twice", extra: #", "id": "wamid.dup1", "duplicate": true"#)
            #expect(dup.statuses == [200, 200])
            #expect(try fake.deliver(from: Self.owner, text: "twice", extra: #", "id": "wamid.dup1""#).statuses == [200])
            #expect(inbox.messages.map(\.text) == ["hello box", "twice"])
            // A status receipt and an image: answered 200, nothing delivered.
            #expect(try fake.deliver(from: Self.owner, text: "x", extra: #", "statuses_only": true"#).statuses == [200])
            _ = try fake.http("POST", "/_fake/deliver", #"{"from": "\#(Self.owner)"}"#)
            #expect(inbox.messages.count == 2)
            #expect(c.state == .up)
            #expect(c.receiving.hasPrefix("receiving:"))
            run.cancel()
            await run.value
            #expect(c.listeningPort == nil)
            await c.shutdown()
        }
    }

    @Test("a receiver that could not record a message gets 503 (Meta delivers again) and the repeat is taken")
    func unrecordedIsRedelivered() async throws {
        try await onTestThreads {
            let fake = try fake()
            let c = try channel(fake)
            let inbox = Inbox()
            let refusals = Inbox()
            let run = Task(executorPreference: TestThreads.shared) {
                await c.run(deliver: { m in
                    if refusals.messages.isEmpty { return !refusals.add(m) }
                    return inbox.add(m)
                })
            }
            #expect(await eventually(within: .seconds(10)) { c.listeningPort != nil })
            try fake.webhook(port: try #require(c.listeningPort))
            #expect(try fake.deliver(from: Self.owner, text: "keep me", extra: #", "id": "wamid.keep""#).statuses == [503])
            #expect(try fake.deliver(from: Self.owner, text: "keep me", extra: #", "id": "wamid.keep""#).statuses == [200])
            #expect(inbox.messages.map(\.id) == ["wamid.keep"])
            run.cancel()
            await run.value
            await c.shutdown()
        }
    }

    @Test("a bad or missing signature is answered 401 and nothing is delivered")
    func badSignature() async throws {
        try await onTestThreads {
            let fake = try fake()
            let c = try channel(fake)
            let inbox = Inbox()
            let (run, _) = try await serve(c, fake, inbox)
            #expect(try fake.deliver(from: Self.owner, text: "forged", extra: #", "bad_signature": true"#).statuses == [401])
            #expect(try fake.deliver(from: Self.owner, text: "unsigned", extra: #", "no_signature": true"#).statuses == [401])
            #expect(inbox.messages.isEmpty)
            #expect(c.receiving == "sending only: no webhook delivery seen")
            run.cancel()
            await run.value
            await c.shutdown()
        }
    }

    @Test("the verification handshake: our verify token gets the challenge back, another gets 403")
    func verifyHandshake() async throws {
        try await onTestThreads {
            let fake = try fake()
            let c = try channel(fake)
            let inbox = Inbox()
            let (run, port) = try await serve(c, fake, inbox)
            let good = try fake.verify(#"{"challenge": "1158201444"}"#)
            #expect(good["status"] as? Int == 200 && good["body"] as? String == "1158201444")
            let bad = try fake.verify(#"{"verify_token": "guess"}"#)
            #expect(bad["status"] as? Int == 403)
            #expect((bad["body"] as? String)?.contains(Self.verifyToken) == false)
            // Another path is not the webhook.
            let other = try runProgram("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(port)/other"])
            #expect(other.stdout == "404")
            run.cancel()
            await run.value
            await c.shutdown()
        }
    }

    @Test("sending: the messages call with the bearer token, a long text in parts, round trip measured; without a webhook it still sends")
    func sending() async throws {
        try await onTestThreads {
            let fake = try fake()
            // The webhook's port is taken: the channel still sends.
            let blocker = try FixtureServer("whatsapp_fake.py") { _ in ["--token", "x", "--app-secret", "y"] }
            let c = try channel(fake, listen: "127.0.0.1:\(blocker.port)")
            let run = Task(executorPreference: TestThreads.shared) { await c.run(deliver: { _ in true }) }
            #expect(await eventually(within: .seconds(10)) { c.receiving.contains("cannot listen") })
            #expect(c.listeningPort == nil)
            let text = (0..<300).map { "line \($0): " + String(repeating: "é", count: 12) }.joined(separator: "\n")
            #expect(text.count > 4096)
            #expect(await c.send(OutgoingMessage(channel: .whatsapp, chat: Self.owner, text: text)) == .sent)
            let sent = try fake.sent()
            #expect(sent.count == 2)
            #expect(sent.map { $0["text"] as? String ?? "" }.joined() == text)
            #expect(sent.allSatisfy { $0["to"] as? String == Self.owner })
            #expect(try fake.requests().allSatisfy { $0["token_ok"] as? Bool == true })
            #expect(c.state == .up)
            #expect(c.lastRoundTrip != nil && c.lastRoundTrip! < .seconds(5))
            run.cancel()
            await run.value
            await c.shutdown()
        }
    }

    @Test("131047 (outside the 24-hour window): this message fails with a reason the owner can act on; the channel stays up")
    func outsideWindow() async throws {
        try await onTestThreads {
            let fake = try fake()
            let c = try channel(fake)
            try fake.script(#"[{"fault": "status", "code": 131047}]"#)
            let outcome = await c.send(OutgoingMessage(channel: .whatsapp, chat: Self.owner, text: "your update is installed"))
            guard case .failed(let reason) = outcome else { Issue.record("\(outcome)"); return }
            #expect(reason.contains("131047") && reason.contains("24 hours") && reason.contains("send the box any message"))
            #expect(await c.send(OutgoingMessage(channel: .whatsapp, chat: Self.owner, text: "next")) == .sent)
            #expect(c.state == .up)
            await c.shutdown()
        }
    }

    @Test("rate limits (429 / 130429, 131056): a retry after Retry-After or the configured wait, from the part not sent")
    func rateLimited() async throws {
        try await onTestThreads {
            let fake = try fake()
            let c = try channel(fake)
            let long = String(repeating: "a", count: 5000)
            try fake.script(#"[{"fault": "status", "code": 130429, "http": 429, "retry_after": 7}]"#)
            let first = await c.send(OutgoingMessage(channel: .whatsapp, chat: Self.owner, text: long), fromPart: 1)
            guard case .retry(let after, let reason, let partsSent) = first else { Issue.record("\(first)"); return }
            #expect(after == .seconds(7) && partsSent == 1 && reason.contains("130429"))
            if case .retrying = c.state {} else { Issue.record("state \(c.state)") }
            try fake.script(#"[{"fault": "status", "code": 131056}]"#)
            let pair = await c.send(OutgoingMessage(channel: .whatsapp, chat: Self.owner, text: "x"))
            guard case .retry(let after2, _, 0) = pair else { Issue.record("\(pair)"); return }
            #expect(after2 == .seconds(60))
            try fake.script(#"[{"fault": "status", "code": 131000}]"#)
            guard case .retry(let after3, _, _) = await c.send(OutgoingMessage(channel: .whatsapp, chat: Self.owner, text: "x")) else { Issue.record("500"); return }
            #expect(after3 == .seconds(5))
            #expect(await c.send(OutgoingMessage(channel: .whatsapp, chat: Self.owner, text: long), fromPart: 1) == .sent)
            #expect(try fake.sent().map { ($0["text"] as? String)?.count ?? 0 } == [5000 - 4096])
            #expect(c.state == .up)
            await c.shutdown()
        }
    }

    @Test("a refused token (401, code 190): broken, and later sends fail without a call")
    func wrongTokenBreaks() async throws {
        try await onTestThreads {
            let fake = try fake()
            let wrong = "EAAG-wrong-token"
            let c = try channel(fake, token: wrong)
            let outcome = await c.send(OutgoingMessage(channel: .whatsapp, chat: Self.owner, text: "hi"))
            guard case .failed(let reason) = outcome, case .broken(let why) = c.state else { Issue.record("\(outcome) \(c.state)"); return }
            #expect(reason == why && why.contains("190") && why.contains("access token"))
            #expect(!why.contains(wrong))
            #expect(try fake.requests().count == 1)
            #expect(await c.send(OutgoingMessage(channel: .whatsapp, chat: Self.owner, text: "again")) == .failed(reason: why))
            #expect(try fake.requests().count == 1)
            await c.shutdown()
        }
    }

    @Test("a messages call never answered is given up at its deadline as a retry")
    func sendHang() async throws {
        try await onTestThreads {
            let fake = try fake()
            try fake.script(#"[{"fault": "hang"}]"#)
            let c = try WhatsAppConnection(
                phoneNumberID: Self.phone, token: Secret(Self.token), appSecret: Secret(Self.appSecret), verifyToken: Secret(Self.verifyToken),
                baseURL: fake.base, sendTimeout: .seconds(1))
            let start = Clock.monotonic()
            let outcome = await c.send(OutgoingMessage(channel: .whatsapp, chat: Self.owner, text: "hello"))
            let took = Clock.monotonic().since(start)
            #expect(took >= .milliseconds(950) && took < .seconds(3), "took \(took)")
            guard case .retry(_, let reason, 0) = outcome else { Issue.record("\(outcome)"); return }
            #expect(reason.contains("no answer within 1s"))
            await c.shutdown()
        }
    }

    @Test("hostile: a 10 MiB body is refused with 413 after its head, without being read")
    func oversizedBody() async throws {
        try await onTestThreads {
            let fake = try fake()
            let c = try channel(fake)
            let inbox = Inbox()
            let (run, port) = try await serve(c, fake, inbox)
            let client = try RawClient(port: port)
            let size = 10 << 20
            let head = "POST /whatsapp/webhook HTTP/1.1\r\nHost: box\r\nContent-Type: application/json\r\nX-Hub-Signature-256: sha256=\(String(repeating: "0", count: 64))\r\nContent-Length: \(size)\r\n\r\n"
            client.send(Array(head.utf8))
            let answer = client.readToClose(within: .seconds(5))
            #expect(String(decoding: answer.bytes, as: UTF8.self).hasPrefix("HTTP/1.1 413"))
            #expect(answer.closed)
            // The rest of the body finds the connection closed long before 10 MiB.
            var sent = 0
            let chunk = [UInt8](repeating: 0x7B, count: 1 << 16)
            for _ in 0..<(size / chunk.count) {
                let n = client.send(chunk)
                sent += n
                if n < chunk.count { break }
            }
            #expect(sent < size)
            client.close()
            // Chunked bodies past the bound are cut the same way.
            let chunked = try RawClient(port: port)
            chunked.send(Array("POST /whatsapp/webhook HTTP/1.1\r\nHost: box\r\nTransfer-Encoding: chunked\r\n\r\n".utf8))
            var total = 0
            while total <= WhatsAppWebhook.maxBody + (1 << 16) {
                let piece = Array(String(chunk.count, radix: 16).utf8) + [13, 10] + chunk + [13, 10]
                if chunked.send(piece) < piece.count { break }
                total += chunk.count
            }
            let cut = chunked.readToClose(within: .seconds(5))
            #expect(cut.closed)
            if !cut.bytes.isEmpty { #expect(String(decoding: cut.bytes, as: UTF8.self).hasPrefix("HTTP/1.1 413")) }
            chunked.close()
            #expect(inbox.messages.isEmpty)
            // The server still serves.
            #expect(try fake.deliver(from: Self.owner, text: "after").statuses == [200])
            run.cancel()
            await run.value
            await c.shutdown()
        }
    }

    @Test("hostile: a client that sends nothing is cut at the request deadline; idle connections past the limit are closed at once")
    func idleClientsBounded() async throws {
        try await onTestThreads {
            let fake = try fake()
            let c = try channel(fake, maxConnections: 4, requestTimeout: .seconds(1))
            let inbox = Inbox()
            let (run, _) = try await serve(c, fake, inbox)
            let port = try #require(c.listeningPort)
            // One silent client: closed after about 1 s.
            let silent = try RawClient(port: port)
            let start = Clock.monotonic()
            let r = silent.readToClose(within: .seconds(5))
            let took = Clock.monotonic().since(start)
            #expect(r.closed && r.bytes.isEmpty)
            #expect(took >= .milliseconds(900) && took < .seconds(3), "cut after \(took)")
            silent.close()
            // Four hold every slot; a fifth is closed at accept; a half-sent head is cut too.
            let holders = try (0..<4).map { _ in try RawClient(port: port) }
            holders[0].send(Array("POST /whatsapp/webhook HTTP/1.1\r\nHost: b".utf8))
            try await Task.sleep(for: .milliseconds(200))
            let fifth = try RawClient(port: port)
            let t5 = Clock.monotonic()
            let r5 = fifth.readToClose(within: .seconds(3))
            #expect(r5.closed && Clock.monotonic().since(t5) < .milliseconds(700), "the fifth connection was held \(Clock.monotonic().since(t5))")
            fifth.close()
            // Once the holders are cut at their deadline, Meta's delivery gets through.
            for h in holders { #expect(h.readToClose(within: .seconds(3)).closed) }
            for h in holders { h.close() }
            #expect(try fake.deliver(from: Self.owner, text: "through").statuses == [200])
            #expect(inbox.messages.map(\.text) == ["through"])
            run.cancel()
            await run.value
            await c.shutdown()
        }
    }

    @Test("the token, the app secret and the verify token appear in no state, reason or outcome, even when Graph echoes them")
    func secretsNeverShown() async throws {
        try await onTestThreads {
            let fake = try fake()
            let c = try channel(fake)
            let inbox = Inbox()
            let (run, _) = try await serve(c, fake, inbox)
            var seen: [String] = []
            try fake.script(
                #"[{"fault": "status", "code": 131000, "message": "failed for token \#(Self.token) secret \#(Self.appSecret)"}, {"fault": "status", "code": 100, "message": "bad \#(Self.verifyToken)"}]"#)
            let echoed = await c.send(OutgoingMessage(channel: .whatsapp, chat: Self.owner, text: "x"))
            seen += ["\(echoed)", "\(c.state)"]
            let echoed2 = await c.send(OutgoingMessage(channel: .whatsapp, chat: Self.owner, text: "x"))
            seen += ["\(echoed2)", "\(c.state)", c.receiving]
            #expect(seen[0].contains("131000") && seen[0].contains(Secret.masked))
            #expect(seen[2].contains(Secret.masked))
            _ = try fake.deliver(from: Self.owner, text: "x", extra: #", "bad_signature": true"#)
            _ = try fake.verify(#"{"verify_token": "guess"}"#)
            seen += ["\(c.state)", c.receiving, String(describing: c), String(reflecting: c)]
            var dumped = ""
            dump(c, to: &dumped)
            seen.append(dumped)
            run.cancel()
            await run.value
            await c.shutdown()
            let closed = try WhatsAppConnection(
                phoneNumberID: Self.phone, token: Secret(Self.token), appSecret: Secret(Self.appSecret), verifyToken: Secret(Self.verifyToken),
                baseURL: "http://127.0.0.1:1")
            let refused = await closed.send(OutgoingMessage(channel: .whatsapp, chat: Self.owner, text: "x"))
            seen += ["\(refused)", "\(closed.state)"]
            await closed.shutdown()
            for s in seen {
                for secret in [Self.token, Self.appSecret, Self.verifyToken] { #expect(!s.contains(secret), "\(s)") }
            }
            // Bad settings say what is wrong, naming no secret.
            #expect(throws: WhatsAppConnection.SettingsError.self) {
                try WhatsAppConnection(phoneNumberID: Self.phone, token: Secret(Self.token), appSecret: Secret("s"), verifyToken: Secret("v"), baseURL: "http://graph.facebook.com")
            }
            do {
                _ = try WhatsAppConnection(phoneNumberID: "+49 151", token: Secret(Self.token), appSecret: Secret("s"), verifyToken: Secret("v"))
                Issue.record("a phone number taken as its id")
            } catch { #expect("\(error)".contains("Phone number ID")) }
            do {
                _ = try WhatsAppConnection(phoneNumberID: Self.phone, token: Secret(Self.token), appSecret: Secret("s"), verifyToken: Secret("v"), webhook: WhatsAppWebhookSettings(listen: "localhost"))
                Issue.record("a listen address without a port taken")
            } catch { #expect("\(error)".contains("\"localhost\"") && "\(error)".contains("HOST:PORT")) }
        }
    }
}

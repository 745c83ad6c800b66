import AIBoxAgent
import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// The loopback fake of Slack's Socket Mode and Web API (Fixtures/slack_fake.py) as a real process.
final class FakeSlack {
    let server: FixtureServer
    var base: String { server.base + "/api" }
    var dir: String { server.dir }

    /// `launcher` and `host`: on a test host of its own (see FixtureServer), listening there.
    init(
        appToken: String, botToken: String, pingMS: Int = 500, ackTimeoutMS: Int = 1000, refreshCloseMS: Int = 3000, launcher: [String] = [],
        host: String = "127.0.0.1"
    ) throws {
        server = try FixtureServer("slack_fake.py", launcher: launcher) { _ in
            [
                "--app-token", appToken, "--bot-token", botToken, "--ping-ms", String(pingMS), "--ack-timeout-ms", String(ackTimeoutMS),
                "--refresh-close-ms", String(refreshCloseMS), "--host", host,
            ]
        }
    }

    @discardableResult
    private func http(_ method: String, _ path: String, _ body: Any? = nil) throws -> [String: Any] {
        var args = ["-s", "-X", method, server.base + path]
        if let body {
            let text = String(decoding: try JSONSerialization.data(withJSONObject: body), as: UTF8.self)
            args += ["-H", "content-type: application/json", "-d", text]
        }
        let out = try runProgram("/usr/bin/curl", args).stdout
        return (try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]) ?? [:]
    }

    /// A user's message as a message event (in their DM with the bot unless `channel` is given);
    /// its event_id.
    @discardableResult
    func userSends(
        user: String, text: String, team: String? = nil, channel: String? = nil, channelType: String = "im", subtype: String? = nil,
        botID: String? = nil
    ) throws -> String {
        var body: [String: Any] = ["user": user, "text": text, "channel_type": channelType]
        if let team { body["team"] = team }
        if let channel { body["channel"] = channel }
        if let subtype { body["subtype"] = subtype }
        if let botID { body["bot_id"] = botID }
        return try http("POST", "/_fake/send", body)["event_id"] as? String ?? ""
    }

    /// Faults: `[{"fault": "silent"}]` as JSON text.
    func script(_ faults: String) throws {
        let answer = try http("POST", "/_fake/script", try JSONSerialization.jsonObject(with: Data("{\"faults\": \(faults)}".utf8)))
        if answer["queued"] == nil { throw SystemError("the fake refused the script: \(answer)", errno: 0) }
    }

    func sockets() throws -> [String: Any] { try http("GET", "/_fake/sockets") }
    func connections() throws -> [[String: Any]] { try sockets()["connections"] as? [[String: Any]] ?? [] }
    func maxOpen() throws -> Int { try sockets()["max_open"] as? Int ?? -1 }
    func requests(_ method: String? = nil) throws -> [[String: Any]] {
        let all = try http("GET", "/_fake/requests")["requests"] as? [[String: Any]] ?? []
        return method.map { m in all.filter { $0["method"] as? String == m } } ?? all
    }
    func opens() throws -> [[String: Any]] { try requests("apps.connections.open") }
    func sent() throws -> [[String: Any]] { try http("GET", "/_fake/sent")["sent"] as? [[String: Any]] ?? [] }
    func events() throws -> [[String: Any]] { try http("GET", "/_fake/events")["events"] as? [[String: Any]] ?? [] }
}

/// The states a channel went through, sampled while waiting (every text, to look for tokens in).
final class StateLog: @unchecked Sendable {
    private let lock = NSLock()
    private var seen: [ChannelState] = []

    func note(_ s: ChannelState) { lock.withLock { if seen.last != s { seen.append(s) } } }
    var states: [ChannelState] { lock.withLock { seen } }
}

@Suite("Slack channel against the loopback fake", .serialized)
struct SlackChannelTests {
    static let appToken = "xapp-1-A0FAKEAPP-1234567890-secretappleveltokenvalue"
    static let botToken = "xoxb-1234567890-0987654321-secretbottokenvalue"

    func channel(
        _ fake: FakeSlack, appToken: String = appToken, botToken: String = botToken, ping: Duration = .seconds(1),
        hello: Duration = .seconds(5)
    )
        throws -> SlackConnection
    {
        try SlackConnection(
            botToken: Secret(botToken), appToken: Secret(appToken), baseURL: fake.base,
            settings: SlackSettings(
                backoff: Backoff(base: .milliseconds(200), max: .seconds(1), jitter: 0.2), helloTimeout: hello, pingInterval: ping),
            callTimeout: .seconds(5), taskExecutor: TestThreads.shared)
    }

    func startRun(_ c: SlackConnection, _ inbox: Inbox) -> Task<Void, Never> {
        Task(executorPreference: TestThreads.shared) { await c.run(deliver: { inbox.add($0) }) }
    }

    /// Waits for `condition`, noting the channel's state at each look.
    func watch(_ c: SlackConnection, _ log: StateLog, within limit: Duration, _ condition: () throws -> Bool) async rethrows -> Bool {
        try await eventually(within: limit) {
            log.note(c.state)
            return try condition()
        }
    }

    func isBroken(_ s: ChannelState) -> Bool { if case .broken = s { true } else { false } }

    @Test(
        "a user's DM is delivered with TEAM:USER and its event id, then acknowledged; the bot's own messages and edits are acknowledged, not delivered"
    )
    func messageDeliveredAndAcknowledged() async throws {
        try await onTestThreads {
            let fake = try FakeSlack(appToken: Self.appToken, botToken: Self.botToken)
            let c = try channel(fake)
            let inbox = Inbox()
            let run = startRun(c, inbox)
            defer { run.cancel() }
            #expect(await eventually(within: .seconds(10)) { c.state == .up })
            let id = try fake.userSends(user: "U1", text: "hello box")
            try fake.userSends(user: "U0FAKEBOT", text: "my own reply", botID: "B0FAKEBOT")
            try fake.userSends(user: "U1", text: "edited", subtype: "message_changed")
            // A stranger's message is delivered too: the hub's owner gate ignores it.
            try fake.userSends(user: "U7", text: "a stranger", team: "T0OTHER")
            try fake.userSends(user: "U1", text: "in a channel", channel: "C1", channelType: "channel")
            #expect(await eventually(within: .seconds(10)) { inbox.messages.count == 3 })
            #expect(
                inbox.messages.first
                    == IncomingMessage(channel: .slack, id: id, chat: "DU1", sender: "T0AIBOX:U1", isDirect: true, text: "hello box"))
            #expect(inbox.messages.map(\.sender) == ["T0AIBOX:U1", "T0OTHER:U7", "T0AIBOX:U1"])
            #expect(inbox.messages.last?.isDirect == false && inbox.messages.last?.chat == "C1")
            // Every envelope acknowledged once: none was delivered again.
            #expect(
                try await eventually(within: .seconds(5)) {
                    try fake.events().count == 5 && (try fake.events()).allSatisfy { $0["acked"] as? Bool == true }
                })
            try await Task.sleep(for: .milliseconds(1500))  // past the fake's 1 s ack timeout
            #expect(try fake.events().allSatisfy { ($0["envelopes"] as? [Any])?.count == 1 })
            #expect(inbox.messages.count == 3)
            #expect(c.lastRoundTrip != nil)
            #expect(try fake.opens().map { $0["auth"] as? String } == ["app"])
            #expect(try fake.connections().count == 1)
            run.cancel()
            await run.value
            // Shutdown closed the socket.
            #expect(await eventually(within: .seconds(5)) { (try? fake.sockets()["open"] as? Int) == 0 })
            #expect(try fake.connections().first?["client_initiated_close"] as? Bool == true)
        }
    }

    @Test("ok:false invalid_auth on apps.connections.open, or a wrong app-level token: broken, run returns, no retry, no token in any text")
    func refusedAppTokenBreaks() async throws {
        try await onTestThreads {
            let fake = try FakeSlack(appToken: Self.appToken, botToken: Self.botToken)
            try fake.script(#"[{"fault": "error", "method": "apps.connections.open", "error": "invalid_auth"}]"#)
            let c = try channel(fake)
            let run = startRun(c, Inbox())
            #expect(await eventually(within: .seconds(10)) { isBroken(c.state) })
            await run.value  // returns by itself
            guard case .broken(let why) = c.state else { return }
            #expect(why.contains("invalid_auth") && why.contains("App-Level Tokens"))
            try await Task.sleep(for: .seconds(1))
            #expect(try fake.opens().count == 1)

            // The bot token where the app-level token belongs.
            let d = try channel(fake, appToken: Self.botToken)
            let run2 = startRun(d, Inbox())
            await run2.value
            guard case .broken(let why2) = d.state else { Issue.record("\(d.state)"); return }
            #expect(why2.contains("not_allowed_token_type"))
            for text in ["\(c.state)", "\(d.state)"] { #expect(!text.contains(Self.appToken) && !text.contains(Self.botToken)) }
        }
    }

    @Test("429 on apps.connections.open: the next call waits its Retry-After, then the channel is up")
    func rateLimitedOpenWaits() async throws {
        try await onTestThreads {
            let fake = try FakeSlack(appToken: Self.appToken, botToken: Self.botToken)
            try fake.script(#"[{"fault": "status", "method": "apps.connections.open", "code": 429, "retry_after": 2}]"#)
            let c = try channel(fake)
            let log = StateLog()
            let run = startRun(c, Inbox())
            defer { run.cancel() }
            #expect(await watch(c, log, within: .seconds(10)) { c.state == .up })
            let opens = try fake.opens()
            #expect(opens.count == 2 && opens[0]["status"] as? Int == 429)
            let gap = (opens[1]["time"] as! Double) - (opens[0]["end"] as! Double)
            #expect(gap >= 1.95 && gap < 4, "the call after a 429 came \(gap) s later; Retry-After was 2 s")
            #expect(log.states.contains(.retrying(reason: "apps.connections.open: 429 Too Many Requests: retry after 2s")))
            run.cancel()
            await run.value
        }
    }

    @Test(
        "refresh_requested, then warning: the new socket opens before the old closes, never more than two, the channel stays up, no message lost"
    )
    func refreshKeepsEveryMessage() async throws {
        try await onTestThreads {
            let fake = try FakeSlack(appToken: Self.appToken, botToken: Self.botToken, refreshCloseMS: 3000)
            let c = try channel(fake)
            let inbox = Inbox()
            let log = StateLog()
            let run = startRun(c, inbox)
            defer { run.cancel() }
            #expect(await eventually(within: .seconds(10)) { c.state == .up })
            var expected: [String] = []
            for (round, reason) in ["refresh_requested", "warning"].enumerated() {
                for i in 0..<4 {
                    try fake.userSends(user: "U1", text: "\(reason) before \(i)")
                    expected.append("\(reason) before \(i)")
                }
                try fake.script("[{\"fault\": \"disconnect\", \"reason\": \"\(reason)\"}]")
                // Messages while the new socket is being opened.
                for i in 0..<6 {
                    try fake.userSends(user: "U1", text: "\(reason) during \(i)")
                    expected.append("\(reason) during \(i)")
                    log.note(c.state)
                    try await Task.sleep(for: .milliseconds(50))
                }
                #expect(
                    try await watch(c, log, within: .seconds(10)) {
                        let conns = try fake.connections()
                        return conns.count == round + 2 && conns[round]["open"] as? Bool == false
                            && conns[round + 1]["hello"] as? Bool == true
                    })
                for i in 0..<4 {
                    try fake.userSends(user: "U1", text: "\(reason) after \(i)")
                    expected.append("\(reason) after \(i)")
                }
            }
            #expect(await watch(c, log, within: .seconds(15)) { Set(inbox.messages.map(\.text)) == Set(expected) })
            #expect(Set(inbox.messages.map(\.id)).count == expected.count)
            #expect(try fake.maxOpen() <= 2)
            let conns = try fake.connections()
            for i in 0..<2 {
                // The next socket was open (and said hello) before the old one closed, which the client closed.
                #expect((conns[i + 1]["opened"] as! Double) < (conns[i]["closed"] as! Double))
                #expect(conns[i]["client_initiated_close"] as? Bool == true)
            }
            #expect(log.states.allSatisfy { $0 == .up }, "\(log.states)")
            #expect(try fake.events().allSatisfy { $0["dropped"] as? Bool == false })
            run.cancel()
            await run.value
        }
    }

    @Test(
        "a socket that goes silent without closing is found dead by its unanswered ping and rebuilt within two ping intervals or so; its message comes again"
    )
    func silentSocketRebuilt() async throws {
        try await onTestThreads {
            let fake = try FakeSlack(appToken: Self.appToken, botToken: Self.botToken, pingMS: 200, ackTimeoutMS: 1500)
            let c = try channel(fake, ping: .milliseconds(500))
            let inbox = Inbox()
            let log = StateLog()
            let run = startRun(c, inbox)
            defer { run.cancel() }
            #expect(await eventually(within: .seconds(10)) { c.state == .up })
            try fake.script(#"[{"fault": "silent"}]"#)
            let silent = Clock.monotonic()
            // Sent into the dead socket: not acknowledged, so Slack retries it.
            try fake.userSends(user: "U1", text: "during the silence")
            #expect(
                try await watch(c, log, within: .seconds(8)) {
                    let conns = try fake.connections()
                    return conns.count == 2 && conns[1]["hello"] as? Bool == true && c.state == .up
                })
            let rebuilt = Clock.monotonic().since(silent)
            // Found within 2 × 500 ms, the backoff (≤ 240 ms), a new socket.
            #expect(rebuilt < .milliseconds(2500), "rebuilt after \(rebuilt.aiboxText)")
            #expect(
                log.states.contains {
                    if case .retrying(let why) = $0 { why.contains("ping was not answered within 500ms") } else { false }
                }, "\(log.states)")
            // The client gave up on it with 1001 (going away: the ping timed out).
            #expect(try fake.connections().first?["client_close_code"] as? Int == 1001)
            #expect(await eventually(within: .seconds(10)) { inbox.messages.map(\.text) == ["during the silence"] })
            run.cancel()
            await run.value
        }
    }

    @Test("a socket that never says hello is closed at the deadline and another opened")
    func noHelloReplaced() async throws {
        try await onTestThreads {
            let fake = try FakeSlack(appToken: Self.appToken, botToken: Self.botToken)
            try fake.script(#"[{"fault": "no_hello"}]"#)
            let c = try channel(fake, hello: .seconds(1))
            let log = StateLog()
            let start = Clock.monotonic()
            let run = startRun(c, Inbox())
            defer { run.cancel() }
            #expect(await watch(c, log, within: .seconds(10)) { c.state == .up })
            let took = Clock.monotonic().since(start)
            #expect(took >= .milliseconds(1000) && took < .seconds(4), "up after \(took.aiboxText)")
            #expect(log.states.contains(.retrying(reason: "the socket did not say hello within 1s")))
            let conns = try fake.connections()
            #expect(conns.count == 2 && conns[0]["hello"] as? Bool == false && conns[0]["client_initiated_close"] as? Bool == true)
            run.cancel()
            await run.value
        }
    }

    @Test("Slack delivering an event twice (retry_attempt 1): both envelopes acknowledged, one message taken in by the hub's store")
    func duplicateTakenOnce() async throws {
        try await onTestThreads {
            let fake = try FakeSlack(appToken: Self.appToken, botToken: Self.botToken)
            let store = Locked(try ChannelStore(ledger: try Ledger(path: fake.dir + "/agent.db")))
            let c = try channel(fake)
            let inbox = Inbox()
            let run = Task(executorPreference: TestThreads.shared) {
                await c.run(deliver: { m in
                    _ = inbox.add(m)
                    // The hub's de-duplication: recorded (true) whether new or a repeat.
                    return store.withLock { (try? $0.take(m, wallMS: 1)) != nil }
                })
            }
            defer { run.cancel() }
            #expect(await eventually(within: .seconds(10)) { c.state == .up })
            try fake.script(#"[{"fault": "duplicate"}]"#)
            let id = try fake.userSends(user: "U1", text: "once please")
            #expect(
                try await eventually(within: .seconds(10)) {
                    let envelopes = try fake.events().first?["envelopes"] as? [[String: Any]] ?? []
                    return envelopes.count == 2 && envelopes.allSatisfy { $0["acked"] as? Bool == true }
                })
            let envelopes = try fake.events().first?["envelopes"] as? [[String: Any]] ?? []
            #expect(envelopes.map { $0["retry_attempt"] as? Int } == [0, 1])
            #expect(inbox.messages.map(\.id) == [id, id])
            #expect(try store.withLock { try $0.waiting() }.map(\.message.text) == ["once please"])
            run.cancel()
            await run.value
        }
    }

    @Test("disconnect link_disabled (Socket Mode turned off): broken, naming the setting; run returns; no new socket")
    func linkDisabledBreaks() async throws {
        try await onTestThreads {
            let fake = try FakeSlack(appToken: Self.appToken, botToken: Self.botToken)
            let c = try channel(fake)
            let run = startRun(c, Inbox())
            #expect(await eventually(within: .seconds(10)) { c.state == .up })
            try fake.script(#"[{"fault": "disconnect", "reason": "link_disabled"}]"#)
            #expect(await eventually(within: .seconds(5)) { isBroken(c.state) })
            await run.value
            guard case .broken(let why) = c.state else { return }
            #expect(why.contains("link_disabled") && why.contains("Socket Mode"))
            try await Task.sleep(for: .seconds(1))
            #expect(try fake.opens().count == 1 && fake.connections().count == 1)
        }
    }

    @Test(
        "chat.postMessage: a long reply in parts of at most 4000 characters, an owner's TEAM:USER to their DM; ratelimited waits Retry-After from the part it stopped at; refusals told apart"
    )
    func postMessage() async throws {
        try await onTestThreads {
            let fake = try FakeSlack(appToken: Self.appToken, botToken: Self.botToken)
            let c = try channel(fake)
            let text = (0..<700).map { "línea \($0) de texto" }.joined(separator: "\n")  // 13,189 characters
            let long = OutgoingMessage(channel: .slack, chat: "T0AIBOX:U1", text: text)
            #expect(await c.send(long) == .sent)
            let sent = try fake.sent()
            #expect(sent.count == 4)
            #expect(sent.allSatisfy { ($0["text"] as? String ?? "").count <= 4000 && $0["channel"] as? String == "DU1" })
            #expect(sent.map { $0["text"] as? String ?? "" }.joined() == text)
            #expect(try fake.requests("chat.postMessage").allSatisfy { $0["auth"] as? String == "bot" })

            try fake.script(#"[{"fault": "status", "method": "chat.postMessage", "code": 429, "retry_after": 2}]"#)
            #expect(
                await c.send(long, fromPart: 2)
                    == .retry(after: .seconds(2), reason: "chat.postMessage: 429 ratelimited: retry after 2s", partsSent: 2))
            #expect(await c.send(long, fromPart: 2) == .sent)
            #expect(try fake.sent().count == 6)

            #expect(
                await c.send(OutgoingMessage(channel: .slack, chat: "CNOTIN1", text: "hi"))
                    == .failed(reason: "chat.postMessage: not_in_channel: invite the bot to the channel"))
            #expect(
                await c.send(OutgoingMessage(channel: .slack, chat: "C404", text: "hi"))
                    == .failed(reason: "chat.postMessage: channel_not_found: no such channel, or the bot cannot see it"))
            try fake.script(#"[{"fault": "error", "method": "chat.postMessage", "error": "internal_error"}]"#)
            guard case .retry(_, let reason, 0) = await c.send(OutgoingMessage(channel: .slack, chat: "C1", text: "hi")) else {
                Issue.record("not a retry"); return
            }
            #expect(reason.contains("internal_error"))

            let wrong = "xoxb-1111111111-2222222222-wrongbottokenvalue"
            let d = try channel(fake, botToken: wrong)
            let outcome = await d.send(OutgoingMessage(channel: .slack, chat: "C1", text: "hi"))
            guard case .failed(let why) = outcome else { Issue.record("\(outcome)"); return }
            #expect(why.contains("invalid_auth"))
            #expect(isBroken(d.state))
            #expect(!"\(outcome) \(d.state)".contains(wrong))
        }
    }

    @Test("the tokens appear in no state, reason, outcome or message, even when a server echoes them")
    func tokensNeverShown() async throws {
        try await onTestThreads {
            let fake = try FakeSlack(appToken: Self.appToken, botToken: Self.botToken)
            // Slack's error codes are short words; one that is a token is not quoted.
            try fake.script(
                #"[{"fault": "error", "method": "apps.connections.open", "error": "\#(Self.appToken)"}, {"fault": "error", "method": "chat.postMessage", "error": "\#(Self.botToken)"}, {"fault": "status", "method": "apps.connections.open", "code": 500}]"#
            )
            let c = try channel(fake)
            let inbox = Inbox()
            let log = StateLog()
            let run = startRun(c, inbox)
            defer { run.cancel() }
            #expect(await watch(c, log, within: .seconds(10)) { c.state == .up })
            try fake.userSends(user: "U1", text: "hello")
            #expect(await eventually(within: .seconds(5)) { inbox.messages.count == 1 })
            var seen = log.states.map { "\($0)" } + inbox.messages.map { "\($0)" }
            seen.append("\(await c.send(OutgoingMessage(channel: .slack, chat: "C1", text: "x")))")
            seen.append("\(await c.send(OutgoingMessage(channel: .slack, chat: "C1", text: "x")))")
            run.cancel()
            await run.value
            seen.append("\(c.state) \(String(describing: c.lastRoundTrip))")
            // Nothing listens on a closed port: a transport failure's text.
            let closed = try SlackConnection(
                botToken: Secret(Self.botToken), appToken: Secret(Self.appToken), baseURL: "http://127.0.0.1:1/api")
            seen.append("\(await closed.send(OutgoingMessage(channel: .slack, chat: "C1", text: "x")))")
            #expect(seen.contains { $0.contains("something unreadable") })
            #expect(seen.contains { $0.contains("HTTP 500") })
            for s in seen { #expect(!s.contains(Self.appToken) && !s.contains(Self.botToken) && !s.contains("secret"), "\(s)") }
        }
    }

    @Test("a Web API base URL over http to another machine is refused, naming the rule")
    func insecureBaseURL() throws {
        #expect { try SlackConnection(botToken: Secret("b"), appToken: Secret("a"), baseURL: "http://slack.example/api") } throws: {
            "\($0)".contains("https")
        }
    }

    @Test("the fake's own self-test (its wire format and faults, with a WebSocket client of its own) passes")
    func fakeSelfTest() throws {
        let out = try runProgram("/usr/bin/python3", [fixtures + "/slack_fake_selftest.py"])
        #expect(out.code == 0, "\(out.stdout)\(out.stderr)")
        #expect(out.stdout.contains("ok"))
    }

    @Test(
        "the worker runs Slack from box.toml: an owner's DM answered from the model, a stranger's not; the tokens only in their secret files"
    )
    func workerAnswersOverSlack() throws {
        let llm = try FakeProvider()
        let fake = try FakeSlack(appToken: Self.appToken, botToken: Self.botToken)
        let b = try AgentBox()
        try b.configure(
            """
            [providers.local]
            kind = "ollama"
            base-url = "\(llm.base)"
            models = ["llama3.2:3b"]

            [channels.slack]
            bot-token-secret = "channel.slack.bot-token"
            app-token-secret = "channel.slack.app-token"
            owners = ["T0AIBOX:U0OWNER1"]
            base-url = "\(fake.base)"

            """)
        try b.secret("channel.slack.bot-token", Self.botToken)
        try b.secret("channel.slack.app-token", Self.appToken)
        let worker = try b.startWorker()
        defer { killAndReap(worker) }
        #expect(
            waitFor(.seconds(30)) { ((try? fake.connections()) ?? []).contains { $0["hello"] as? Bool == true } },
            "\(readTextFile(b.root + "/agent.log") ?? "")")
        try fake.userSends(user: "U0STRANGER", text: "stranger here")
        try fake.userSends(user: "U0OWNER1", text: "hello box")
        func sent(_ chat: String) -> [String] {
            ((try? fake.sent()) ?? []).filter { $0["channel"] as? String == chat }.compactMap { $0["text"] as? String }
        }
        #expect(waitFor(.seconds(30)) { sent("DU0OWNER1").count == 1 }, "\(readTextFile(b.root + "/agent.log") ?? "")")
        #expect(sent("DU0OWNER1") == ["ollama llama3.2:3b: hello box"])
        // The stranger's message came first; by now it would have been answered.
        #expect(sent("DU0STRANGER").isEmpty)
        #expect(
            waitFor(.seconds(10)) {
                let st = (try? b.agent(["status", "--json"]).json) ?? [:]
                return ((st["channels"] as? [[String: Any]]) ?? []).contains {
                    $0["channel"] as? String == "slack" && $0["state"] as? String == "up"
                }
            })
        // Each token is in its secret file and nowhere else of the box, nor in the worker's log.
        for (name, token) in [("channel.slack.bot-token", Self.botToken), ("channel.slack.app-token", Self.appToken)] {
            let grep = try runProgram("/bin/grep", ["-r", "-l", "-a", "-F", token, b.root])
            #expect(grep.stdout.split(separator: "\n").map(String.init) == [b.paths.secrets + "/" + name], "\(grep.stdout)")
        }
    }
}

/// A value behind a lock, for a closure that must be Sendable.
final class Locked<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T

    init(_ value: T) { self.value = value }

    func withLock<R>(_ body: (inout T) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

import AIBoxAgent
import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// The loopback fake of Discord's Gateway and REST (Fixtures/discord_fake.py) as a real process.
final class FakeDiscord {
    let server: FixtureServer
    var base: String { server.base + "/api/v10" }
    var dir: String { server.dir }

    /// `launcher` and `host`: on a test host of its own (see FixtureServer), listening there.
    init(token: String, heartbeatMS: Int = 500, launcher: [String] = [], host: String = "127.0.0.1") throws {
        server = try FixtureServer("discord_fake.py", launcher: launcher) { _ in
            ["--token", token, "--heartbeat-ms", String(heartbeatMS), "--host", host]
        }
    }

    @discardableResult
    private func http(_ method: String, _ path: String, _ body: String? = nil) throws -> [String: Any] {
        let args = ["-s", "-X", method, server.base + path] + (body.map { ["-H", "content-type: application/json", "-d", $0] } ?? [])
        let out = try runProgram("/usr/bin/curl", args).stdout
        return (try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]) ?? [:]
    }

    /// A user's message, dispatched as MESSAGE_CREATE; its id.
    @discardableResult
    func userSends(author: String, text: String, guild: String? = nil, bot: Bool = false) throws -> String {
        let g = guild.map { ", \"guild_id\": \"\($0)\", \"channel_id\": \"chan-\($0)\"" } ?? ""
        return try http("POST", "/_fake/send", "{\"author_id\": \"\(author)\", \"content\": \"\(text)\", \"bot\": \(bot)\(g)}")["message_id"] as? String ?? ""
    }

    /// Faults: `[{"fault": "mute"}]` as JSON text.
    func script(_ faults: String) throws { try http("POST", "/_fake/script", "{\"faults\": \(faults)}") }

    func gateway() throws -> [String: Any] { try http("GET", "/_fake/gateway") }
    func identifies() throws -> Int { (try gateway()["identifies"] as? [Any])?.count ?? -1 }
    func resumes() throws -> [[String: Any]] { try gateway()["resumes"] as? [[String: Any]] ?? [] }
    func connections() throws -> [[String: Any]] { try gateway()["connections"] as? [[String: Any]] ?? [] }
    func requests() throws -> [[String: Any]] { try http("GET", "/_fake/requests")["requests"] as? [[String: Any]] ?? [] }
    func sent() throws -> [[String: Any]] { try http("GET", "/_fake/sent")["sent"] as? [[String: Any]] ?? [] }
}

@Suite("Discord channel against the loopback fake", .serialized)
struct DiscordChannelTests {
    static let token = "MTIzNDU2Nzg5MDEy.Gsecret.discord-bot-token-value"

    func channel(_ fake: FakeDiscord, store: any DiscordSessionStore = MemoryDiscordSessionStore(), token: String = token) throws -> DiscordConnection {
        try DiscordConnection(
            token: Secret(token), baseURL: fake.base,
            settings: DiscordSettings(backoff: Backoff(base: .milliseconds(200), max: .seconds(1), jitter: 0.2), helloTimeout: .seconds(5)),
            store: store, sendTimeout: .seconds(5), taskExecutor: TestThreads.shared)
    }

    func startRun(_ c: DiscordConnection, _ inbox: Inbox) -> Task<Void, Never> {
        Task(executorPreference: TestThreads.shared) { await c.run(deliver: { inbox.add($0) }) }
    }

    /// Every text the channel gave out, to look for the token in.
    func texts(_ c: DiscordConnection) -> String { "\(c.state) \(String(describing: c.lastRoundTrip))" }

    @Test("a user's message is delivered once with its sender and channel; a bot's is skipped; a guild message is not direct")
    func messageDeliveredOnce() async throws {
        try await onTestThreads {
            let fake = try FakeDiscord(token: Self.token)
            let c = try channel(fake)
            let inbox = Inbox()
            let run = startRun(c, inbox)
            defer { run.cancel() }
            #expect(await eventually(within: .seconds(10)) { c.state == .up })
            let id = try fake.userSends(author: "4242", text: "hello box")
            try fake.userSends(author: "77", text: "from a bot", bot: true)
            try fake.userSends(author: "4242", text: "in a server", guild: "900")
            #expect(await eventually(within: .seconds(10)) { inbox.messages.count == 2 })
            try await Task.sleep(for: .milliseconds(300))
            #expect(inbox.messages.count == 2)
            #expect(inbox.messages.first == IncomingMessage(channel: .discord, id: id, chat: "dm-4242", sender: "4242", isDirect: true, text: "hello box"))
            #expect(inbox.messages.last?.isDirect == false)
            #expect(inbox.messages.last?.chat == "chan-900")
            // Heartbeats are answered: a round trip is known.
            #expect(await eventually(within: .seconds(3)) { c.lastRoundTrip != nil })
            #expect(try fake.identifies() == 1)
            run.cancel()
            await run.value
            await c.shutdown()
        }
    }

    @Test("a socket that stops answering is found dead by the missed heartbeat ACK and resumed, without a second identify, within two intervals or so")
    func missedAckResumes() async throws {
        try await onTestThreads {
            let fake = try FakeDiscord(token: Self.token, heartbeatMS: 500)
            let c = try channel(fake)
            let inbox = Inbox()
            let run = startRun(c, inbox)
            defer { run.cancel() }
            #expect(await eventually(within: .seconds(10)) { c.state == .up })
            try fake.script("[{\"fault\": \"mute\"}]")
            let muted = Clock.monotonic()
            // A message while the socket is a zombie is replayed by the resume.
            try fake.userSends(author: "1", text: "during the outage")
            #expect(await eventually(within: .seconds(5)) { (try? fake.resumes().count) == 1 })
            let detected = Clock.monotonic().since(muted)
            // Two intervals (1 s), the backoff (≤ 0.24 s) and the handshake.
            #expect(detected < .milliseconds(2000), "resumed after \(detected.aiboxText)")
            #expect(try fake.resumes().first?["ok"] as? Bool == true)
            #expect(await eventually(within: .seconds(5)) { c.state == .up && inbox.messages.map(\.text) == ["during the outage"] })
            #expect(try fake.identifies() == 1)
            #expect(!texts(c).contains(Self.token))
            // The dead socket was closed by the client with a resumable code.
            #expect(try fake.connections().first?["client_close_code"] as? Int == 4000)
            #expect(try fake.connections().first?["client_initiated_close"] as? Bool == true)
            run.cancel()
            await run.value
            await c.shutdown()
        }
    }

    @Test("op 7 Reconnect → resume; invalid session (resumable) → resume; invalid session (not resumable) → identify again")
    func reconnectAndInvalidSession() async throws {
        try await onTestThreads {
            let fake = try FakeDiscord(token: Self.token)
            let c = try channel(fake)
            let inbox = Inbox()
            let run = startRun(c, inbox)
            defer { run.cancel() }
            #expect(await eventually(within: .seconds(10)) { c.state == .up })
            try fake.script("[{\"fault\": \"reconnect\"}]")
            #expect(await eventually(within: .seconds(5)) { (try? fake.resumes().count) == 1 && c.state == .up })
            try fake.script("[{\"fault\": \"invalid_session\", \"resumable\": true}]")
            #expect(await eventually(within: .seconds(10)) { (try? fake.resumes().count) == 2 && c.state == .up })
            #expect(try fake.identifies() == 1)
            try fake.script("[{\"fault\": \"invalid_session\", \"resumable\": false}]")
            #expect(await eventually(within: .seconds(10)) { (try? fake.identifies()) == 2 && c.state == .up })
            #expect(try fake.resumes().count == 2)
            // The new session still delivers.
            try fake.userSends(author: "5", text: "after")
            #expect(await eventually(within: .seconds(5)) { inbox.messages.map(\.text) == ["after"] })
            run.cancel()
            await run.value
            await c.shutdown()
        }
    }

    @Test("a dropped TCP connection (no close frame) and a close 4000 are resumed")
    func dropAndCloseResume() async throws {
        try await onTestThreads {
            let fake = try FakeDiscord(token: Self.token)
            let c = try channel(fake)
            let run = startRun(c, Inbox())
            defer { run.cancel() }
            #expect(await eventually(within: .seconds(10)) { c.state == .up })
            try fake.script("[{\"fault\": \"drop\"}]")
            #expect(await eventually(within: .seconds(5)) { (try? fake.resumes().count) == 1 && c.state == .up })
            try fake.script("[{\"fault\": \"close\", \"code\": 4000}]")
            #expect(await eventually(within: .seconds(5)) { (try? fake.resumes().count) == 2 && c.state == .up })
            #expect(try fake.identifies() == 1)
            run.cancel()
            await run.value
            await c.shutdown()
        }
    }

    @Test("a wrong token: the Gateway lookup's 401 breaks the channel; a 4004 close breaks it too; no reconnect; no token in any text")
    func wrongTokenBroken() async throws {
        try await onTestThreads {
            let fake = try FakeDiscord(token: Self.token)
            let wrong = "MTIz.wrong-token-value-xyz"
            let c = try channel(fake, token: wrong)
            let run = startRun(c, Inbox())
            #expect(await eventually(within: .seconds(10)) { if case .broken = c.state { true } else { false } })
            await run.value  // run ends by itself once broken
            guard case .broken(let why) = c.state else { return }
            #expect(why.contains("401"))
            #expect(!texts(c).contains(wrong))
            await c.shutdown()

            // A stored session with a wrong token: the Gateway itself answers 4004.
            let store = MemoryDiscordSessionStore(
                DiscordSessionRecord(sessionID: "sess-x", sequence: 1, resumeURL: "ws://127.0.0.1:\(fake.server.port)/resume"))
            let d = try channel(fake, store: store, token: wrong)
            let run2 = startRun(d, Inbox())
            #expect(await eventually(within: .seconds(10)) { if case .broken = d.state { true } else { false } })
            await run2.value
            guard case .broken(let why2) = d.state else { return }
            #expect(why2.contains("4004"))
            #expect(!texts(d).contains(wrong))
            let before = try fake.connections().count
            try await Task.sleep(for: .seconds(1))
            #expect(try fake.connections().count == before)
            await d.shutdown()
        }
    }

    @Test("4014 on identify: broken, saying to enable the Message Content intent")
    func disallowedIntents() async throws {
        try await onTestThreads {
            let fake = try FakeDiscord(token: Self.token)
            try fake.script("[{\"fault\": \"close\", \"code\": 4014, \"on\": \"identify\"}]")
            let c = try channel(fake)
            let run = startRun(c, Inbox())
            #expect(await eventually(within: .seconds(10)) { if case .broken = c.state { true } else { false } })
            await run.value
            guard case .broken(let why) = c.state else { return }
            #expect(why.contains("enable the Message Content intent in the Developer Portal"))
            try await Task.sleep(for: .milliseconds(500))
            #expect(try fake.connections().count == 1)
            await c.shutdown()
        }
    }

    @Test("a restart with the stored session resumes instead of identifying; shutdown closes with a resumable code")
    func restartResumes() async throws {
        try await onTestThreads {
            let fake = try FakeDiscord(token: Self.token)
            let path = fake.dir + "/discord-session.json"
            let store = FileDiscordSessionStore(path: path)
            let inbox = Inbox()
            do {
                let c = try channel(fake, store: store)
                let run = startRun(c, inbox)
                #expect(await eventually(within: .seconds(10)) { c.state == .up })
                try fake.userSends(author: "1", text: "one")
                #expect(await eventually(within: .seconds(5)) { inbox.messages.count == 1 })
                run.cancel()
                await run.value
                await c.shutdown()
            }
            #expect(await eventually(within: .seconds(5)) { (try? fake.connections().first?["open"] as? Bool) == false })
            let code = try fake.connections().first?["client_close_code"] as? Int
            #expect(code == 4000)
            #expect(try fake.connections().first?["client_initiated_close"] as? Bool == true)
            let record = try #require(try store.load())
            #expect(record.sessionID != nil && record.identifies.count == 1)
            #expect(readTextFile(path)?.contains(Self.token) == false)
            // A message while the agent is down comes with the resume.
            try fake.userSends(author: "1", text: "two")
            let c = try channel(fake, store: store)
            let run = startRun(c, inbox)
            #expect(await eventually(within: .seconds(10)) { c.state == .up && inbox.messages.count == 2 })
            #expect(inbox.messages.map(\.text) == ["one", "two"])
            #expect(try fake.identifies() == 1)
            #expect(try fake.resumes().map { $0["session_id"] as? String } == [record.sessionID])
            #expect(try fake.connections().last?["path"] as? String == "/resume")
            run.cancel()
            await run.value
            await c.shutdown()
        }
    }

    @Test("create message: long text split at 2000 characters; 429 honoured with its retry_after; 401 breaks; no token in any outcome")
    func restSend() async throws {
        try await onTestThreads {
            let fake = try FakeDiscord(token: Self.token)
            let c = try channel(fake)
            let long = String(repeating: "línea de texto ", count: 300)  // 4500 characters
            #expect(await c.send(OutgoingMessage(channel: .discord, chat: "55", text: long)) == .sent)
            let sent = try fake.sent()
            #expect(sent.count == 3)
            #expect(sent.allSatisfy { ($0["content"] as? String ?? "").count <= 2000 && $0["channel_id"] as? String == "55" })
            #expect(sent.map { $0["content"] as? String ?? "" }.joined() == long)
            #expect(try fake.requests().allSatisfy { $0["auth_ok"] as? Bool == true })

            try fake.script("[{\"fault\": \"status\", \"code\": 429, \"retry_after\": 0.75}]")
            let limited = await c.send(OutgoingMessage(channel: .discord, chat: "55", text: "hi"))
            #expect(limited == .retry(after: .milliseconds(750), reason: "create message: 429 You are being rate limited.", partsSent: 0))
            try fake.script("[{\"fault\": \"status\", \"code\": 429, \"reset_after\": 1.5}]")
            guard case .retry(let after, _, _) = await c.send(OutgoingMessage(channel: .discord, chat: "55", text: "hi")) else {
                Issue.record("not a retry")
                return
            }
            #expect(after == .milliseconds(1500))
            #expect(await c.send(OutgoingMessage(channel: .discord, chat: "55", text: "hi")) == .sent)
            await c.shutdown()

            let wrong = "MTIz.wrong-token-value-xyz"
            let d = try channel(fake, token: wrong)
            let outcome = await d.send(OutgoingMessage(channel: .discord, chat: "55", text: "hi"))
            guard case .failed(let why) = outcome else {
                Issue.record("401 not a failure: \(outcome)")
                return
            }
            #expect(why.contains("401"))
            #expect(!"\(outcome) \(d.state)".contains(wrong))
            if case .broken = d.state {} else { Issue.record("401 did not break the channel") }
            await d.shutdown()
        }
    }

    @Test("a REST base URL over http to another machine is refused, naming the rule")
    func insecureBaseURL() throws {
        #expect(throws: DiscordConnection.SettingsError.self) {
            try DiscordConnection(token: Secret("t"), baseURL: "http://discord.example/api/v10", store: MemoryDiscordSessionStore())
        }
        do {
            _ = try DiscordConnection(token: Secret("t"), baseURL: "http://discord.example/api/v10", store: MemoryDiscordSessionStore())
        } catch {
            #expect(error.description.contains("https"))
        }
    }

    @Test("the fake's own self-test (its wire format and faults, with a WebSocket client of its own) passes")
    func fakeSelfTest() throws {
        let out = try runProgram("/usr/bin/python3", [fixtures + "/discord_fake_selftest.py"])
        #expect(out.code == 0, "\(out.stdout)\(out.stderr)")
        #expect(out.stdout.contains("ok"))
    }

    @Test("a session file that is not a record is an error naming the file")
    func sessionFile() throws {
        let dir = try temporaryDirectory("discord")
        defer { _ = try? runProgram("/bin/rm", ["-rf", dir]) }
        let store = FileDiscordSessionStore(path: dir + "/session.json")
        #expect(try store.load() == nil)
        let record = DiscordSessionRecord(sessionID: "s", sequence: 9, resumeURL: "wss://r", identifies: [1, 2])
        try store.save(record)
        #expect(try store.load() == record)
        try writeFileAtomically(dir + "/session.json", Array("{garbage".utf8))
        #expect { try store.load() } throws: { "\($0)".contains(dir + "/session.json") }
    }
}

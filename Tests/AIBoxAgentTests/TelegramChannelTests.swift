import AIBoxAgent
import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// The loopback fake of Telegram's Bot API (Fixtures/telegram_fake.py) as a real process.
final class FakeTelegram {
    let server: FixtureServer
    var port: Int { server.port }
    var base: String { server.base }
    var dir: String { server.dir }

    /// `launcher` and `host`: on a test host of its own (see FixtureServer), listening there.
    init(token: String, launcher: [String] = [], host: String = "127.0.0.1") throws {
        server = try FixtureServer("telegram_fake.py", launcher: launcher) { _ in ["--token", token, "--host", host] }
    }

    private func http(_ method: String, _ path: String, _ body: String? = nil) throws -> [String: Any] {
        let args = ["-s", "-X", method, base + path] + (body.map { ["-H", "content-type: application/json", "-d", $0] } ?? [])
        let out = try runProgram("/usr/bin/curl", args).stdout
        return (try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]) ?? [:]
    }

    /// A user's message, as an update; its update_id.
    @discardableResult
    func userSends(from: Int, text: String?, chatType: String = "private") throws -> Int {
        let t = text.map { ", \"text\": \"\($0)\"" } ?? ""
        return try http("POST", "/_fake/send", "{\"from_id\": \(from), \"chat_type\": \"\(chatType)\"\(t)}")["update_id"] as? Int ?? -1
    }

    /// Queues faults: `[{"fault": "status", "code": 409}]` as JSON text.
    func script(_ faults: String) throws { _ = try http("POST", "/_fake/script", "{\"faults\": \(faults)}") }

    /// The Bot API calls received, in order.
    func requests(method: String? = nil) throws -> [[String: Any]] {
        let all = try http("GET", "/_fake/requests")["requests"] as? [[String: Any]] ?? []
        return method.map { m in all.filter { $0["method"] as? String == m } } ?? all
    }

    func sent() throws -> [[String: Any]] { try http("GET", "/_fake/sent")["sent"] as? [[String: Any]] ?? [] }
}

/// What `run` delivered, in order.
final class Inbox: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [IncomingMessage] = []

    func add(_ m: IncomingMessage) -> Bool {
        lock.withLock { items.append(m) }
        return true
    }

    var messages: [IncomingMessage] { lock.withLock { items } }
}

/// Waits for `condition` with a bound; true when it held in time.
func eventually(within limit: Duration, _ condition: () throws -> Bool) async rethrows -> Bool {
    let deadline = Clock.monotonic() + limit
    while Clock.monotonic() < deadline {
        if try condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try condition()
}

@Suite("Telegram channel against the loopback fake", .serialized)
struct TelegramChannelTests {
    static let token = "7000001:AAH-very-secret-token-value"

    /// A channel with short timings for tests.
    func channel(_ fake: FakeTelegram, store: any TelegramOffsetStore = MemoryOffsetStore(), longPoll: Duration = .seconds(2), slack: Duration = .seconds(2), token: String = token)
        throws -> TelegramConnection
    {
        try TelegramConnection(
            token: Secret(token), baseURL: fake.base,
            settings: TelegramPollSettings(
                longPoll: longPoll, slack: slack, conflictBackoff: Backoff(base: .seconds(2), max: .seconds(2), jitter: 0.2),
                errorBackoff: Backoff(base: .milliseconds(500), max: .seconds(1), jitter: 0.2)),
            store: store, sendTimeout: .seconds(5))
    }

    func startRun(_ c: TelegramConnection, _ inbox: Inbox) -> Task<Void, Never> {
        Task(executorPreference: TestThreads.shared) { await c.run(deliver: { inbox.add($0) }) }
    }

    @Test("a user's message is delivered once, with its sender and chat; the offset is stored past it, past non-text updates too")
    func messageDeliveredOnce() async throws {
        try await onTestThreads {
            let fake = try FakeTelegram(token: Self.token)
            let dir = fake.dir
            let store = FileOffsetStore(path: dir + "/offset")
            let c = try channel(fake, store: store)
            let inbox = Inbox()
            let run = startRun(c, inbox)
            defer { run.cancel() }
            let id = try fake.userSends(from: 4242, text: "hello box")
            #expect(await eventually(within: .seconds(30)) { inbox.messages.count == 1 })
            let m = try #require(inbox.messages.first)
            #expect(m == IncomingMessage(channel: .telegram, id: String(id), chat: "4242", sender: "4242", isDirect: true, text: "hello box"))
            #expect(await eventually(within: .seconds(5)) { (try? store.load()) == Int64(id + 1) })
            #expect(c.state == .up)
            // A sticker (no text) moves the offset on without a delivery.
            let sticker = try fake.userSends(from: 4242, text: nil)
            #expect(await eventually(within: .seconds(30)) { (try? store.load()) == Int64(sticker + 1) })
            // A group message is not direct.
            try fake.userSends(from: 4343, text: "in a group", chatType: "group")
            #expect(await eventually(within: .seconds(30)) { inbox.messages.count == 2 })
            #expect(inbox.messages.last?.isDirect == false)
            try await Task.sleep(for: .milliseconds(300))
            #expect(inbox.messages.count == 2)
            // Every poll asked for messages only.
            let polls = try fake.requests(method: "getUpdates")
            #expect(polls.allSatisfy { (($0["body"] as? [String: Any])?["allowed_updates"] as? [String]) == ["message"] })
            run.cancel()
            await run.value
            await c.shutdown()
        }
    }

    @Test("a restart resumes from the stored offset: nothing is delivered twice")
    func restartResumes() async throws {
        try await onTestThreads {
            let fake = try FakeTelegram(token: Self.token)
            let store = FileOffsetStore(path: fake.dir + "/offset")
            let inbox = Inbox()
            do {
                let c = try channel(fake, store: store)
                let run = startRun(c, inbox)
                let id = try fake.userSends(from: 1, text: "one")
                #expect(await eventually(within: .seconds(30)) { (try? store.load()) == Int64(id + 1) })
                run.cancel()
                await run.value
                await c.shutdown()
            }
            try fake.userSends(from: 1, text: "two")
            let c = try channel(fake, store: store)
            let run = startRun(c, inbox)
            #expect(await eventually(within: .seconds(30)) { inbox.messages.count == 2 })
            try await Task.sleep(for: .milliseconds(500))
            #expect(inbox.messages.map(\.text) == ["one", "two"])
            run.cancel()
            await run.value
            await c.shutdown()
        }
    }

    @Test("a message the receiver could not record is not confirmed: Telegram sends it again, nothing is lost")
    func unrecordedComesAgain() async throws {
        try await onTestThreads {
            let fake = try FakeTelegram(token: Self.token)
            let store = MemoryOffsetStore()
            let c = try channel(fake, store: store)
            let inbox = Inbox()
            let refusals = Inbox()
            // The first attempt fails (a full disk), the next succeeds.
            let run = Task(executorPreference: TestThreads.shared) {
                await c.run(deliver: { m in
                    if refusals.messages.isEmpty { return !refusals.add(m) }
                    return inbox.add(m)
                })
            }
            defer { run.cancel() }
            let id = try fake.userSends(from: 3, text: "keep me")
            #expect(await eventually(within: .seconds(30)) { inbox.messages.count == 1 })
            #expect(refusals.messages.map(\.text) == ["keep me"])
            #expect(inbox.messages.map(\.text) == ["keep me"])
            #expect(store.load() == Int64(id + 1))
            // The offset sent before the message was recorded never confirmed it.
            let offsets = try fake.requests(method: "getUpdates").map { ($0["body"] as? [String: Any])?["offset"] as? Int }
            #expect(offsets.first! == nil)
            #expect(offsets.filter { $0 == id + 1 }.count >= 1)
            #expect(offsets.firstIndex(of: id + 1)! >= 2)
            run.cancel()
            await run.value
            await c.shutdown()
        }
    }

    @Test("an offset file that is not a number is an error naming the file; the offset is written whole")
    func offsetFile() throws {
        let fake = try FakeTelegram(token: Self.token)
        let store = FileOffsetStore(path: fake.dir + "/offset")
        #expect(try store.load() == nil)
        try store.save(123_456_789_012)
        #expect(try store.load() == 123_456_789_012)
        #expect(readTextFile(fake.dir + "/offset") == "123456789012\n")
        try writeFileAtomically(fake.dir + "/offset", Array("12ab\n".utf8))
        do {
            _ = try store.load()
            Issue.record("garbage taken as an offset")
        } catch {
            #expect("\(error)".contains(fake.dir + "/offset"))
            #expect("\(error)".contains("12ab"))
        }
    }

    @Test("Telegram serving a confirmed update again: it is delivered once (the poller drops updates below its offset)")
    func duplicateDeliveredOnce() async throws {
        try await onTestThreads {
            let fake = try FakeTelegram(token: Self.token)
            let c = try channel(fake)
            let inbox = Inbox()
            let run = startRun(c, inbox)
            defer { run.cancel() }
            try fake.userSends(from: 5, text: "first")
            #expect(await eventually(within: .seconds(30)) { inbox.messages.count == 1 })
            try fake.script(#"[{"fault": "duplicate", "method": "getUpdates"}]"#)
            // The duplicate fault waits for the next poll: the one held now answers empty first.
            #expect(try await eventually(within: .seconds(30)) { (try fake.requests(method: "getUpdates")).contains { $0["fault"] as? String == "duplicate" } })
            try fake.userSends(from: 5, text: "second")
            #expect(await eventually(within: .seconds(30)) { inbox.messages.count >= 2 })
            try await Task.sleep(for: .milliseconds(500))
            #expect(inbox.messages.map(\.text) == ["first", "second"])
            run.cancel()
            await run.value
            await c.shutdown()
        }
    }

    @Test("409 Conflict: state retrying with the reason, the next poll not before the backoff, then up again")
    func conflictBacksOff() async throws {
        try await onTestThreads {
            let fake = try FakeTelegram(token: Self.token)
            try fake.script(#"[{"fault": "status", "code": 409, "method": "getUpdates", "times": 2, "description": "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"}]"#)
            let c = try channel(fake)
            let inbox = Inbox()
            let run = startRun(c, inbox)
            defer { run.cancel() }
            #expect(await eventually(within: .seconds(5)) { if case .retrying = c.state { return true } else { return false } })
            guard case .retrying(let reason) = c.state else { Issue.record("\(c.state)"); return }
            #expect(reason.contains("409") && reason.contains("webhook"))
            #expect(await eventually(within: .seconds(15)) { c.state == .up })
            let polls = try fake.requests(method: "getUpdates")
            #expect(polls.count >= 3)
            // 2 s less 20 % jitter at least between a 409 and the next poll.
            for i in 0..<2 {
                let gap = (polls[i + 1]["time"] as! Double) - (polls[i]["end"] as! Double)
                #expect(gap >= 1.55, "poll \(i + 1) came \(gap) s after a 409")
            }
            run.cancel()
            await run.value
            await c.shutdown()
        }
    }

    @Test("429 with retry_after: the next poll waits that long")
    func tooManyRequestsHonoured() async throws {
        try await onTestThreads {
            let fake = try FakeTelegram(token: Self.token)
            try fake.script(#"[{"fault": "status", "code": 429, "retry_after": 2, "method": "getUpdates"}]"#)
            let c = try channel(fake)
            let inbox = Inbox()
            let run = startRun(c, inbox)
            defer { run.cancel() }
            #expect(try await eventually(within: .seconds(30)) { (try fake.requests(method: "getUpdates")).count >= 2 })
            let polls = try fake.requests(method: "getUpdates")
            #expect(polls[0]["status"] as? Int == 429)
            let gap = (polls[1]["time"] as! Double) - (polls[0]["end"] as! Double)
            #expect(gap >= 1.95, "the poll after a 429 came \(gap) s later; retry_after was 2 s")
            #expect(gap < 4)
            run.cancel()
            await run.value
            await c.shutdown()
        }
    }

    @Test("a poll that is never answered is cut at its deadline and polling resumes")
    func hangDetected() async throws {
        try await onTestThreads {
            let fake = try FakeTelegram(token: Self.token)
            // Long poll 1 s + 1 s of slack: a dead connection is known within 2 s of a poll's start.
            let c = try channel(fake, longPoll: .seconds(1), slack: .seconds(1))
            let inbox = Inbox()
            let run = startRun(c, inbox)
            defer { run.cancel() }
            #expect(await eventually(within: .seconds(6)) { c.state == .up })
            // The long poll under way is answered (after its 1 s); the next one hangs.
            try fake.script(#"[{"fault": "hang", "method": "getUpdates"}]"#)
            let start = Clock.monotonic()
            #expect(await eventually(within: .seconds(8)) { if case .retrying = c.state { return true } else { return false } })
            let detected = Clock.monotonic().since(start)
            // At least the hung poll's 2 s; at most the poll under way (1 s), the hung one's 2 s
            // and room for a loaded 2-core CI machine (seen: 5.1 s) — not a TCP timeout's minutes.
            #expect(detected >= .milliseconds(1900) && detected < .seconds(7), "detected after \(detected)")
            guard case .retrying(let reason) = c.state else { return }
            #expect(reason.contains("no answer within 2s"))
            try fake.userSends(from: 9, text: "after the hang")
            #expect(await eventually(within: .seconds(8)) { inbox.messages.count == 1 })
            #expect(c.state == .up)
            run.cancel()
            await run.value
            await c.shutdown()
        }
    }

    @Test("a wrong token: broken, run returns, no more polls")
    func wrongTokenBreaks() async throws {
        try await onTestThreads {
            let fake = try FakeTelegram(token: Self.token)
            let wrong = "7000001:AAH-wrong-token-value"
            let c = try channel(fake, token: wrong)
            let inbox = Inbox()
            let run = startRun(c, inbox)
            let start = Clock.monotonic()
            await run.value  // returns by itself
            #expect(Clock.monotonic().since(start) < .seconds(5))
            guard case .broken(let reason) = c.state else { Issue.record("\(c.state)"); return }
            #expect(reason.contains("401"))
            #expect(!reason.contains(wrong))
            try await Task.sleep(for: .seconds(1))
            #expect(try fake.requests(method: "getUpdates").count == 1)
            await c.shutdown()
        }
    }

    @Test("a long reply is sent as several messages split at line ends; 429 and refusals are told apart")
    func sendSplitsAndClassifies() async throws {
        try await onTestThreads {
            let fake = try FakeTelegram(token: Self.token)
            let c = try channel(fake)
            let text = (0..<350).map { "line \($0): " + String(repeating: "é", count: 10) }.joined(separator: "\n")
            #expect(text.utf16.count > 4096)
            #expect(await c.send(OutgoingMessage(channel: .telegram, chat: "4242", text: text)) == .sent)
            let sent = try fake.sent()
            #expect(sent.count == 2)
            #expect(sent.map { $0["text"] as? String ?? "" }.joined() == text)
            #expect(sent.allSatisfy { $0["chat_id"] as? Int == 4242 })
            // The second part throttled: retry from part 1 after retry_after.
            try fake.script(#"[{"fault": "status", "code": 429, "retry_after": 3, "method": "sendMessage"}]"#)
            let long = OutgoingMessage(channel: .telegram, chat: "4242", text: text)
            let first = await c.send(long, fromPart: 1)
            guard case .retry(let after, let reason, let partsSent) = first else { Issue.record("\(first)"); return }
            #expect(after == .seconds(3) && partsSent == 1 && reason.contains("429"))
            #expect(await c.send(long, fromPart: 1) == .sent)
            #expect(try fake.sent().count == 3)
            try fake.script(#"[{"fault": "status", "code": 403, "method": "sendMessage"}]"#)
            let blocked = await c.send(OutgoingMessage(channel: .telegram, chat: "4242", text: "hi"))
            #expect(blocked == .failed(reason: "sendMessage: 403 Forbidden: bot was blocked by the user"))
            await c.shutdown()
        }
    }

    @Test("a sendMessage never answered is given up at its deadline and told as a retry")
    func sendHang() async throws {
        try await onTestThreads {
            let fake = try FakeTelegram(token: Self.token)
            try fake.script(#"[{"fault": "hang", "method": "sendMessage"}]"#)
            let c = try TelegramConnection(token: Secret(Self.token), baseURL: fake.base, store: MemoryOffsetStore(), sendTimeout: .seconds(1))
            let start = Clock.monotonic()
            let outcome = await c.send(OutgoingMessage(channel: .telegram, chat: "8", text: "hello"))
            let took = Clock.monotonic().since(start)
            #expect(took >= .milliseconds(950) && took < .seconds(3), "took \(took)")
            guard case .retry(_, let reason, let partsSent) = outcome else { Issue.record("\(outcome)"); return }
            #expect(partsSent == 0 && reason.contains("no answer within 1s"))
            #expect(await c.send(OutgoingMessage(channel: .telegram, chat: "8", text: "hello")) == .sent)
            await c.shutdown()
        }
    }

    @Test("the token appears in no state, reason or outcome, even when a server echoes it")
    func tokenNeverShown() async throws {
        try await onTestThreads {
            let fake = try FakeTelegram(token: Self.token)
            try fake.script(
                #"[{"fault": "status", "code": 500, "method": "getUpdates", "description": "Internal error at /bot\#(Self.token)/getUpdates"}, {"fault": "status", "code": 502, "method": "sendMessage", "description": "bad gateway for bot\#(Self.token)"}]"#)
            let c = try channel(fake)
            let inbox = Inbox()
            let run = startRun(c, inbox)
            var seen: [String] = []
            _ = try await eventually(within: .seconds(5)) {
                seen.append("\(c.state)")
                return (try fake.requests(method: "getUpdates")).count >= 2
            }
            #expect(seen.contains { $0.contains("500") })
            let outcome = await c.send(OutgoingMessage(channel: .telegram, chat: "1", text: "x"))
            seen.append("\(outcome)")
            #expect("\(outcome)".contains("502"))
            run.cancel()
            await run.value
            await c.shutdown()
            // Nothing listens on a closed port: a transport failure's text.
            let closed = try TelegramConnection(token: Secret(Self.token), baseURL: "http://127.0.0.1:1", store: MemoryOffsetStore())
            let refused = await closed.send(OutgoingMessage(channel: .telegram, chat: "1", text: "x"))
            seen.append("\(refused)")
            await closed.shutdown()
            #expect(seen.count > 3)
            // The echoes were seen, masked.
            #expect(seen.contains { $0.contains("500") && $0.contains(Secret.masked) })
            #expect("\(outcome)".contains(Secret.masked))
            #expect(refused != .sent)
            for s in seen { #expect(!s.contains(Self.token) && !s.contains("AAH-very-secret"), "\(s)") }
            // Settings errors name no URL path with a token either, and http to another host is refused.
            #expect(throws: TelegramConnection.SettingsError.self) { try TelegramConnection(token: Secret(Self.token), baseURL: "http://api.telegram.org", store: MemoryOffsetStore()) }
        }
    }
}

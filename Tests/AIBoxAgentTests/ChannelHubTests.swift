import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// The agent worker with its Telegram channel against the loopback fake of the Bot API and the
/// provider fake as its local model: owners answered, strangers not, nothing lost when killed.
@Suite("the worker's channels", .serialized)
struct ChannelHubTests {
    static let token = "7000002:AAH-hub-test-token-value-xyz"
    static let owner = 4242

    /// A box whose chat goes to the provider fake, with Telegram at the Bot API fake.
    func box(_ llm: FakeProvider, _ telegram: FakeTelegram) throws -> AgentBox {
        let b = try AgentBox()
        try b.configure(
            local: llm,
            """
            \(ChannelTable.telegram(owner: "\(ChannelHubTests.owner)", at: telegram.base))

            """)
        try b.secret("channel.telegram.token", ChannelHubTests.token)
        return b
    }

    /// The texts the bot sent to a chat, in order.
    func sent(_ t: FakeTelegram, to chat: Int) throws -> [String] {
        try t.sent().filter { "\($0["chat_id"] ?? "")" == "\(chat)" }.compactMap { $0["text"] as? String }
    }

    @Test("an owner's message is answered from the model; /help by the agent; a stranger gets nothing and costs no model call")
    func ownersOnly() throws {
        let llm = try FakeProvider()
        let telegram = try FakeTelegram(token: ChannelHubTests.token)
        let b = try box(llm, telegram)
        let worker = try b.startWorker()
        defer { killAndReap(worker) }
        try telegram.userSends(from: 777, text: "stranger here")
        try telegram.userSends(from: ChannelHubTests.owner, text: "hello box")
        #expect(waitFor(.seconds(30)) { ((try? sent(telegram, to: ChannelHubTests.owner)) ?? []).count == 1 }, "\(readTextFile(b.root + "/agent.log") ?? "")")
        #expect(try sent(telegram, to: ChannelHubTests.owner) == ["ollama llama3.2:3b: hello box"])
        try telegram.userSends(from: ChannelHubTests.owner, text: "/help")
        #expect(waitFor(.seconds(30)) { ((try? sent(telegram, to: ChannelHubTests.owner)) ?? []).count == 2 })
        #expect(try sent(telegram, to: ChannelHubTests.owner).last?.hasPrefix("Commands (in a direct message):") == true)
        // The stranger's message came first; by now it would have been answered.
        #expect(try sent(telegram, to: 777).isEmpty)
        let asked = try llm.requests(path: "/api/chat").compactMap { (($0["body"] as? [String: Any])?["messages"] as? [[String: Any]])?.last?["content"] as? String }
        #expect(asked.filter { $0.contains("stranger") }.isEmpty && asked.filter { $0 == "hello box" }.count == 1, "\(asked)")
        #expect(try b.events().contains { $0["kind"] as? String == "channel.ignored" && !(($0["message"] as? String) ?? "").contains("stranger here") })
        // `status` at the console shows the worker's channels (kept in agent.db by the worker).
        #expect(
            waitFor(.seconds(10)) {
                let st = (try? b.agent(["status", "--json"]).json) ?? [:]
                return ((st["channels"] as? [[String: Any]])?.first).map { $0["channel"] as? String == "telegram" && $0["state"] as? String == "up" } ?? false
            })
        #expect(try b.agent(["status"]).stdout.contains("  telegram  up"))
        // Idle, the worker sleeps: its loops wait for work (a spin would burn a core).
        let before = cpuSeconds(worker.processIdentifier)
        let start = Clock.monotonic()
        usleep(5_000_000)
        let used = cpuSeconds(worker.processIdentifier) - before
        #expect(used < 0.5, "the idle worker used \(used) s of CPU in \(Clock.monotonic().since(start))")
        // The token is in its secret file and nowhere else of the box, nor in the worker's log.
        let grep = try runProgram("/bin/grep", ["-r", "-l", "-a", "-F", ChannelHubTests.token, b.root])
        #expect(grep.stdout.split(separator: "\n").map(String.init) == [b.paths.secrets + "/channel.telegram.token"], "\(grep.stdout)")
    }

    @Test("the worker SIGKILLed while the model answers: after its restart the reply is sent, exactly once")
    func killedMidReply() throws {
        let llm = try FakeProvider()
        let telegram = try FakeTelegram(token: ChannelHubTests.token)
        let b = try box(llm, telegram)
        // The first answer takes seconds (each streamed word 1 s apart).
        try llm.script(#"[{"fault": "delay_ms", "ms": 1000}]"#)
        var worker = try b.startWorker()
        try telegram.userSends(from: ChannelHubTests.owner, text: "a slow question")
        #expect(waitFor(.seconds(30)) { ((try? llm.requests(path: "/api/chat")) ?? []).contains { ($0["fault"] as? String) == "delay_ms" } })
        killAndReap(worker)
        #expect(try sent(telegram, to: ChannelHubTests.owner).isEmpty)
        worker = try b.startWorker()
        defer { killAndReap(worker) }
        #expect(waitFor(.seconds(30)) { ((try? sent(telegram, to: ChannelHubTests.owner)) ?? []).count == 1 }, "\(readTextFile(b.root + "/agent.log") ?? "")")
        // One more message as a barrier: once its answer is out, nothing else is coming.
        try telegram.userSends(from: ChannelHubTests.owner, text: "and another")
        #expect(waitFor(.seconds(30)) { ((try? sent(telegram, to: ChannelHubTests.owner)) ?? []).count == 2 })
        #expect(try sent(telegram, to: ChannelHubTests.owner) == ["ollama llama3.2:3b: a slow question", "ollama llama3.2:3b: and another"])
    }

    @Test("a channel whose service refuses its token stops for good; the owner is told on the other channel, which goes on answering")
    func brokenToldElsewhere() throws {
        let llm = try FakeProvider()
        let telegram = try FakeTelegram(token: ChannelHubTests.token)
        let discordToken = "MTIzNDU2Nzg5MDE1.Gbroken.discord-bot-token-value"
        // The fake knows another token: Discord's refusal of this one (401 on REST, 4004 on identify).
        let discord = try FakeDiscord(token: "MTIzNDU2Nzg5MDE2.Gother.discord-bot-token-value")
        let b = try box(llm, telegram)
        try b.configure(
            local: llm,
            """
            \(ChannelTable.telegram(owner: "\(ChannelHubTests.owner)", at: telegram.base))

            \(ChannelTable.discord(owner: "80351110224678912", at: discord.base))

            """)
        try b.secret("channel.discord.token", discordToken)
        let worker = try b.startWorker()
        defer { killAndReap(worker) }
        #expect(waitFor(.seconds(30)) { b.channelStates()["discord"] == "broken" }, "\(b.channelStates())")
        #expect(
            waitFor(.seconds(40)) { ((try? sent(telegram, to: ChannelHubTests.owner)) ?? []).contains { $0.contains("discord channel is refused") } },
            "\(readTextFile(b.root + "/agent.log") ?? "")")
        let notice = try sent(telegram, to: ChannelHubTests.owner).first { $0.contains("discord") } ?? ""
        #expect(!notice.contains(discordToken))
        // Telegram goes on.
        try telegram.userSends(from: ChannelHubTests.owner, text: "still there?")
        #expect(waitFor(.seconds(30)) { ((try? sent(telegram, to: ChannelHubTests.owner)) ?? []).contains("ollama llama3.2:3b: still there?") })
        // No retries of a refused token in all that time: the one look-up that was refused.
        #expect(try discord.requests().map { "\($0["path"] ?? "") \($0["status"] ?? "")" } == ["/api/v10/gateway/bot 401"])
    }
}

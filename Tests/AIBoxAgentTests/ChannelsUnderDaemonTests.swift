import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// The box as an owner meets it: a real `aibox daemon` running llama-server with the test
/// model (`llm-local`) and the agent, whose Telegram, Slack, Discord and WhatsApp channels talk to
/// their loopback fakes. Owners are answered by the real model on every channel; a stranger is
/// not; the box's trouble reaches every owner on every channel; the tokens stay in their files.
@Suite("channels under a real daemon, with the real local model", .serialized)
struct ChannelsUnderDaemonTests {
    static let telegramToken = "7000003:AAH-daemon-test-token-value-abc"
    static let discordToken = "MTIzNDU2Nzg5MDEz.Gdaemon.discord-bot-token-value"
    static let whatsAppToken = "EAAG-daemon-test-access-token"
    static let appSecret = "app-secret-5f4dcc3b5aa765d6"
    static let verifyToken = "verify-word-daemon-91"
    static let phone = "106540352242922"
    static let slackAppToken = "xapp-1-A0FAKEAPP-1234567890-daemonappleveltokenvalue"
    static let slackBotToken = "xoxb-1234567890-0987654321-daemonbottokenvalue"
    static let slackOwner = "U0OWNER1"
    static let telegramOwner = 4242
    static let discordOwner = "80351110224678912"
    static let whatsAppOwner = "4915112345678"

    @Test("an owner's message is answered by the local model on Telegram, Slack, Discord and WhatsApp; a stranger's is not; a quarantine is told on all four")
    func ownersOnEveryChannel() throws {
        let (server, gguf) = try LocalModelTests.localModel()
        let telegram = try FakeTelegram(token: Self.telegramToken)
        let discord = try FakeDiscord(token: Self.discordToken, heartbeatMS: 2000)
        let whatsapp = try FakeWhatsApp(token: Self.whatsAppToken, appSecret: Self.appSecret, verifyToken: Self.verifyToken, phoneNumberID: Self.phone)
        let slack = try FakeSlack(appToken: Self.slackAppToken, botToken: Self.slackBotToken, pingMS: 5000, ackTimeoutMS: 3000)
        let b = try AgentBox()
        let port = try closedPort()
        let hook = try closedPort()
        try whatsapp.webhook(port: hook)
        try b.configure(
            """
            [providers.local]
            kind = "llamacpp"
            base-url = "http://127.0.0.1:\(port)"
            models = ["smollm2"]

            [routing]
            chat = [{ provider = "local", model = "smollm2", context = 2048 }]

            \(ChannelTable.telegram(owner: "\(Self.telegramOwner)", at: telegram.base))

            \(ChannelTable.discord(owner: "\(Self.discordOwner)", at: discord.base))

            \(ChannelTable.slack(owner: "T0AIBOX:\(Self.slackOwner)", at: slack.base))

            [channels.whatsapp]
            phone-number-id = "\(Self.phone)"
            access-token-secret = "channel.whatsapp.access-token"
            app-secret-secret = "channel.whatsapp.app-secret"
            verify-token-secret = "channel.whatsapp.verify-token"
            owners = ["\(Self.whatsAppOwner)"]
            base-url = "\(whatsapp.base)"
            listen = "127.0.0.1:\(hook)"

            """)
        try b.secret("channel.telegram.token", Self.telegramToken)
        try b.secret("channel.discord.token", Self.discordToken)
        try b.secret("channel.slack.bot-token", Self.slackBotToken)
        try b.secret("channel.slack.app-token", Self.slackAppToken)
        try b.secret("channel.whatsapp.access-token", Self.whatsAppToken)
        try b.secret("channel.whatsapp.app-secret", Self.appSecret)
        try b.secret("channel.whatsapp.verify-token", Self.verifyToken)
        try makeDirectories(b.paths.vendorWorkers)
        try writeFileAtomically(
            b.paths.vendorWorkers + "/agent.toml",
            Array(
                """
                [worker.llm-local]
                exec = ["\(server)", "--host", "127.0.0.1", "--port", "\(port)", "--alias", "smollm2", "-m", "\(gguf)", "-c", "2048", "-t", "2", "-np", "1", "--temp", "0"]
                ready-http = "http://127.0.0.1:\(port)/health"
                ready-timeout = "60s"

                [worker.agent]
                exec = ["\(agentBinary)", "run", "--root", "\(b.root)"]
                env = { AGENT_LOCAL_LLM_TIER = "small" }
                notify = true
                watchdog = "10s"
                secrets = ["channel.*"]

                # Runs until the file `fail` appears; from then on it exits at once.
                [worker.flaky]
                exec = ["/bin/sh", "-c", "if [ -e \(b.root)/fail ]; then exit 1; fi; exec sleep 1000"]
                restart-delay = "10ms"
                crash-loop = { burst = 3, window = "60s", quarantine = "10m" }

                """.utf8))
        let daemon = try b.startDaemon()
        defer { b.stopDaemon(daemon) }
        #expect(b.waitForWorker("llm-local", state: "ready", timeout: .seconds(60)), "\(b.daemonLog())")
        #expect(b.waitForWorker("agent", state: "ready", timeout: .seconds(20)), "\(b.daemonLog())")

        // A stranger first, on Telegram; then each owner on their channel.
        try telegram.userSends(from: 777, text: "let me in")
        try telegram.userSends(from: Self.telegramOwner, text: "What is the capital of France? Answer in one word.")
        try discord.userSends(author: Self.discordOwner, text: "What is the capital of Italy? Answer in one word.")
        #expect(waitFor(.seconds(20)) { b.channelStates()["slack"] == "up" }, "\(b.channelStates())")
        try slack.userSends(user: Self.slackOwner, text: "What is the capital of Germany? Answer in one word.")
        #expect(
            waitFor(.seconds(30)) { (try? whatsapp.deliver(from: Self.whatsAppOwner, text: "What is the capital of Spain? Answer in one word.").statuses) == [200] },
            "the agent's webhook did not take Meta's delivery:\n\(b.agentLog())")

        func telegramReplies() -> [String] {
            ((try? telegram.sent()) ?? []).filter { "\($0["chat_id"] ?? "")" == "\(Self.telegramOwner)" }.compactMap { $0["text"] as? String }
        }
        func discordReplies() -> [String] {
            ((try? discord.sent()) ?? []).filter { $0["channel_id"] as? String == "dm-\(Self.discordOwner)" }.compactMap { $0["content"] as? String }
        }
        func slackReplies() -> [String] {
            ((try? slack.sent()) ?? []).filter { $0["channel"] as? String == "D\(Self.slackOwner)" }.compactMap { $0["text"] as? String }
        }
        func whatsAppReplies() -> [String] {
            ((try? whatsapp.sent()) ?? []).filter { $0["to"] as? String == Self.whatsAppOwner }.compactMap { $0["text"] as? String }
        }
        // One answer at a time from a 135M model on two cores: a few seconds each.
        #expect(
            waitFor(.seconds(180)) { !telegramReplies().isEmpty && !discordReplies().isEmpty && !whatsAppReplies().isEmpty && !slackReplies().isEmpty },
            "replies: telegram \(telegramReplies()), discord \(discordReplies()), whatsapp \(whatsAppReplies()), slack \(slackReplies())\n\(b.agentLog())")
        for (channel, replies) in [("telegram", telegramReplies()), ("discord", discordReplies()), ("whatsapp", whatsAppReplies()), ("slack", slackReplies())] {
            #expect(replies.count == 1, "\(channel): \(replies)")
            let reply = replies.first ?? ""
            #expect(!reply.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty && !reply.hasPrefix("(no answer"), "\(channel): \(reply)")
        }
        // Each answer is the model's: the conversation is kept per channel and chat.
        #expect(try b.agent(["status", "--json"]).json["channels"] as? [[String: Any]] != nil)
        #expect(((try? telegram.sent()) ?? []).allSatisfy { "\($0["chat_id"] ?? "")" != "777" })
        #expect(try b.events().contains { $0["kind"] as? String == "channel.ignored" })

        // Every channel up, with a round trip, in `aibox-agent status`.
        #expect(
            waitFor(.seconds(40)) {
                let rows = ((try? b.agent(["status", "--json"]).json["channels"]) as? [[String: Any]]) ?? []
                return Set(rows.filter { $0["state"] as? String == "up" }.compactMap { $0["channel"] as? String }) == ["telegram", "discord", "whatsapp", "slack"]
            }, "\((try? b.agent(["status"]).stdout) ?? "")")

        // A worker goes to quarantine: every owner is told, once, on every channel (Discord's
        // through the DM channel the agent opens).
        _ = creat(b.root + "/fail", 0o644)
        let flaky = try #require(try b.workerPID("flaky"))
        kill(flaky, SIGKILL)
        #expect(b.waitForWorker("flaky", state: "quarantined", timeout: .seconds(20)), "\(b.daemonLog())")
        let notice = "flaky keeps failing"
        #expect(
            waitFor(.seconds(60)) {
                telegramReplies().contains { $0.contains(notice) } && discordReplies().contains { $0.contains(notice) }
                    && whatsAppReplies().contains { $0.contains(notice) } && slackReplies().contains { $0.contains(notice) }
            }, "telegram \(telegramReplies()), discord \(discordReplies()), whatsapp \(whatsAppReplies()), slack \(slackReplies())\n\(b.agentLog())")
        for replies in [telegramReplies(), discordReplies(), whatsAppReplies(), slackReplies()] {
            #expect(replies.filter { $0.contains(notice) }.count == 1, "\(replies)")
        }

        // Each token is in its secret file (and the copy aibox hands the agent) and nowhere else.
        for (name, token) in [
            ("channel.telegram.token", Self.telegramToken), ("channel.discord.token", Self.discordToken),
            ("channel.whatsapp.access-token", Self.whatsAppToken), ("channel.whatsapp.app-secret", Self.appSecret),
            ("channel.whatsapp.verify-token", Self.verifyToken), ("channel.slack.bot-token", Self.slackBotToken),
            ("channel.slack.app-token", Self.slackAppToken),
        ] {
            let grep = try runProgram("/bin/grep", ["-r", "-l", "-a", "-F", token, b.root])
            let files = grep.stdout.split(separator: "\n").map(String.init).filter { !$0.contains("/run/aibox/credentials/agent/") }
            #expect(files == [b.paths.secrets + "/" + name], "\(name) is in \(files)")
        }
    }
    @Test("Discord under the daemon: a zombie socket is rebuilt in process; a wedged agent is restarted by the watchdog and resumes; killed mid-reply, it replies once")
    func discordKeptAlive() throws {
        let llm = try FakeProvider()
        let discord = try FakeDiscord(token: Self.discordToken, heartbeatMS: 1000)
        let b = try AgentBox()
        try b.configure(
            local: llm,
            """
            \(ChannelTable.discord(owner: "\(Self.discordOwner)", at: discord.base))

            """)
        try b.secret("channel.discord.token", Self.discordToken)
        try makeDirectories(b.paths.vendorWorkers)
        try writeFileAtomically(
            b.paths.vendorWorkers + "/agent.toml",
            Array(
                """
                [worker.agent]
                exec = ["\(agentBinary)", "run", "--root", "\(b.root)"]
                env = { AGENT_LOCAL_LLM_TIER = "small" }
                notify = true
                watchdog = "5s"
                stop-timeout = "2s"
                restart-delay = "100ms"
                secrets = ["channel.*"]

                """.utf8))
        let daemon = try b.startDaemon()
        defer { b.stopDaemon(daemon) }
        #expect(b.waitForWorker("agent", state: "ready", timeout: .seconds(20)), "\(b.daemonLog())")
        #expect(waitFor(.seconds(20)) { b.channelStates()["discord"] == "up" }, "\(b.agentLog())")
        let first = try #require(try b.workerPID("agent"))
        #expect(try discord.identifies() == 1)

        // The socket goes quiet without closing: the agent finds it dead and resumes in process.
        try discord.script(#"[{"fault": "mute"}]"#)
        #expect(waitFor(.seconds(20)) { ((try? discord.resumes()) ?? []).contains { $0["ok"] as? Bool == true } }, "\(b.agentLog())")
        #expect(try b.workerPID("agent") == first)

        // The whole agent wedges (SIGSTOP): aibox's watchdog restarts it; the new process resumes
        // the stored session instead of identifying again.
        let resumesBefore = try discord.resumes().count
        kill(first, SIGSTOP)
        #expect(b.waitForWorker("agent", state: "ready", timeout: .seconds(30), notPID: first), "\(b.daemonLog())")
        #expect(waitFor(.seconds(20)) { ((try? discord.resumes()) ?? []).count > resumesBefore }, "\(b.agentLog())")
        #expect(try discord.identifies() == 1)
        #expect(b.daemonEvents().contains { $0["kind"] as? String == "worker.watchdog" && $0["worker"] as? String == "agent" }, "\(b.daemonEvents())")

        // Killed while the model answers: after the restart the reply goes out once.
        try llm.script(#"[{"fault": "delay_ms", "ms": 1000}]"#)
        try discord.userSends(author: Self.discordOwner, text: "a slow question")
        #expect(waitFor(.seconds(30)) { ((try? llm.requests(path: "/api/chat")) ?? []).contains { ($0["fault"] as? String) == "delay_ms" } })
        let second = try #require(try b.workerPID("agent"))
        kill(second, SIGKILL)
        #expect(b.waitForWorker("agent", state: "ready", timeout: .seconds(30), notPID: second), "\(b.daemonLog())")
        func replies() -> [String] {
            ((try? discord.sent()) ?? []).filter { $0["channel_id"] as? String == "dm-\(Self.discordOwner)" }.compactMap { $0["content"] as? String }
        }
        #expect(waitFor(.seconds(30)) { replies().count == 1 }, "\(replies())\n\(b.agentLog())")
        try discord.userSends(author: Self.discordOwner, text: "and another")
        #expect(waitFor(.seconds(30)) { replies().count == 2 })
        #expect(replies() == ["ollama llama3.2:3b: a slow question", "ollama llama3.2:3b: and another"])
        #expect(try discord.identifies() == 1)
    }
}

extension AgentBox {
    /// aibox's events (`aibox events --json`), oldest first.
    func daemonEvents() -> [[String: Any]] {
        let out = (try? runProgram(aiboxBinary, ["events", "--json", "-n", "1000", "--root", root]).stdout) ?? ""
        return ((try? JSONSerialization.jsonObject(with: Data(out.utf8))) as? [[String: Any]]) ?? []
    }

    /// The agent worker's captured output (under the daemon).
    func agentLog() -> String {
        (try? runProgram(aiboxBinary, ["logs", "agent", "-n", "200", "--root", root]).stdout) ?? ""
    }
}

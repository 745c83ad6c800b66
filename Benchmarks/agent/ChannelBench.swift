// aibox-agent-bench --channels: the channels' figures (docs/BENCHMARKS.md §10).
//
//   aibox-agent-bench --channels --agent PATH/aibox-agent --fixtures Tests/AIBoxAgentTests/Fixtures \
//       --llama-server PATH --gguf PATH [--messages N] [--idle-seconds S]
//
// Message to reply: an owner's message queued at the loopback fake of Telegram's Bot API, the
// agent worker (`aibox-agent run`, a process of its own) long-polling it, answering from
// llama-server with the test model, and sending the reply back; both instants are taken by the
// fake's own clock (its /_fake/send answer and its record of sendMessage). Each message comes
// from another owner (its own conversation, so every prompt is the same size). The agent's own
// share: the same with the loopback fake of a model that answers at once.
//
// Memory: the worker with Telegram, Slack, Discord and WhatsApp live and idle (each used once
// first), its resident set sampled every 30 s.
import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc

struct ChannelOptions {
    var agent = ""
    var fixtures = ""
    var llamaServer = ""
    var gguf = ""
    var messages = 40
    var idleSeconds = 600
}

enum ChannelBench {
    static let token = "7000009:AAH-bench-telegram-token-value"
    static let discordToken = "MTIzNDU2Nzg5MDE5.Gbench.discord-bot-token-value"
    static let whatsAppToken = "EAAG-bench-whatsapp-access-token"
    static let appSecret = "app-secret-bench-0123456789"
    static let verifyToken = "verify-word-bench"
    static let slackAppToken = "xapp-1-A0FAKEAPP-1234567890-benchappleveltokenvalue"
    static let slackBotToken = "xoxb-1234567890-0987654321-benchbottokenvalue"

    static func parse(_ args: [String]) -> ChannelOptions {
        var o = ChannelOptions()
        var it = args.makeIterator()
        while let a = it.next() {
            switch a {
            case "--channels": continue
            case "--agent": o.agent = it.next() ?? ""
            case "--fixtures": o.fixtures = it.next() ?? ""
            case "--llama-server": o.llamaServer = it.next() ?? ""
            case "--gguf": o.gguf = it.next() ?? ""
            case "--messages": o.messages = Int(it.next() ?? "") ?? o.messages
            case "--idle-seconds": o.idleSeconds = Int(it.next() ?? "") ?? o.idleSeconds
            default:
                say("usage: aibox-agent-bench --channels --agent PATH --fixtures DIR --llama-server PATH --gguf PATH [--messages N] [--idle-seconds S]")
                exit(2)
            }
        }
        return o
    }

    nonisolated(unsafe) static var fixtures = 0

    /// A fixture on an ephemeral port; its port.
    static func fixture(_ o: ChannelOptions, _ dir: String, _ script: String, _ args: [String]) throws -> (Process, Int) {
        // A file of its own each time (a fake stopped by SIGKILL leaves its port file behind).
        fixtures += 1
        let portFile = dir + "/" + script + ".\(fixtures).port"
        let p = try startProcess("/usr/bin/python3", [o.fixtures + "/" + script, "--port", "0", "--port-file", portFile] + args, log: dir + "/" + script + ".log")
        var port = 0
        for _ in 0..<500 where port == 0 {
            port = Int((try? String(contentsOfFile: portFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
            if port == 0 { usleep(20_000) }
        }
        return (p, port)
    }

    static func json(_ url: String, post body: String? = nil) -> [String: Any] {
        let p = Process()
        let out = Pipe()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        p.arguments = ["-s", "--max-time", "10", url] + (body.map { ["-X", "POST", "-H", "content-type: application/json", "-d", $0] } ?? [])
        p.standardOutput = out
        try? p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            say("\(url): not a JSON object (curl exit \(p.terminationStatus)): \(String(decoding: data.prefix(200), as: UTF8.self))")
            return [:]
        }
        return object
    }

    static func box(_ root: String, model: String, channels: String) throws {
        try makeDirectories(root + "/etc/aibox")
        try makeDirectories(root + "/var/lib/aibox/secrets", mode: 0o700)
        try """
        name = "bench"
        [admin]
        ssh-keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl bench@box"]
        \(model)
        \(channels)
        """.write(toFile: root + "/etc/aibox/box.toml", atomically: true, encoding: .utf8)
        for (name, value) in [
            ("channel.telegram.token", token), ("channel.discord.token", discordToken), ("channel.whatsapp.access-token", whatsAppToken),
            ("channel.whatsapp.app-secret", appSecret), ("channel.whatsapp.verify-token", verifyToken),
            ("channel.slack.app-token", slackAppToken), ("channel.slack.bot-token", slackBotToken),
        ] {
            try writeFileAtomically(root + "/var/lib/aibox/secrets/" + name, Array(value.utf8), mode: 0o600)
        }
    }

    /// Owners 1001…(1000+n) each send one message; each message's queue-to-reply time (ms) by the fake's clock.
    static func replies(_ o: ChannelOptions, dir: String, model: String, label: String) throws -> [Double] {
        let (telegram, port) = try fixture(o, dir, "telegram_fake.py", ["--token", token])
        defer { stop(telegram) }
        let root = dir + "/" + label
        let owners = (1...o.messages).map { "\"\(1000 + $0)\"" }.joined(separator: ", ")
        try box(
            root, model: model,
            channels: """
                [channels.telegram]
                token-secret = "channel.telegram.token"
                owners = [\(owners)]
                base-url = "http://127.0.0.1:\(port)"
                """)
        let agent = try startProcess(o.agent, ["run", "--root", root], env: ["AGENT_LOCAL_LLM_TIER": "small"], log: root + "/agent.log")
        defer { stop(agent) }
        let base = "http://127.0.0.1:\(port)"
        var times: [Double] = []
        // One warm-up message (the first reply pays the connections and the model's first load).
        for i in 0...o.messages {
            let from = i == 0 ? 1001 : 1000 + i
            let sentBefore = (json(base + "/_fake/sent")["sent"] as? [[String: Any]])?.count ?? 0
            let queued = json(base + "/_fake/send", post: "{\"from_id\": \(from), \"text\": \"What is the capital of France? Answer in one word.\"}")
            guard let at = (queued["at"] as? NSNumber)?.doubleValue else { throw CLIBenchError("the Telegram fake did not queue the message: \(queued) (port \(port))") }
            let end = Clock.monotonic() + .seconds(120)
            var reply: [String: Any]?
            while reply == nil && Clock.monotonic() < end {
                let sent = json(base + "/_fake/sent")["sent"] as? [[String: Any]] ?? []
                if sent.count > sentBefore { reply = sent[sentBefore] } else { usleep(5_000) }
            }
            guard let r = reply, let replyAt = r["at"] as? Double else { throw CLIBenchError("no reply within 120 s (\(label))") }
            if i > 0 { times.append((replyAt - at) * 1000) }
        }
        return times
    }

    static func run(_ args: [String]) async throws {
        let o = parse(args)
        let dir = "/tmp/aibox-channel-bench-\(getpid())"
        try makeDirectories(dir)
        defer { _ = try? FileManager.default.removeItem(atPath: dir) }

        // The real local model.
        let llamaPort = 18_000 + Int(getpid() % 1000)
        let llama = try startProcess(
            o.llamaServer, ["--host", "127.0.0.1", "--port", "\(llamaPort)", "--alias", "smollm2", "-m", o.gguf, "-c", "2048", "-t", "2", "-np", "1", "--temp", "0"])
        defer { stop(llama) }
        let healthEnd = Clock.monotonic() + .seconds(60)
        while !httpOK("http://127.0.0.1:\(llamaPort)/health") && Clock.monotonic() < healthEnd { usleep(100_000) }
        let real = try replies(
            o, dir: dir,
            model: """
                [providers.local]
                kind = "llamacpp"
                base-url = "http://127.0.0.1:\(llamaPort)"
                models = ["smollm2"]
                [routing]
                chat = [{ provider = "local", model = "smollm2", context = 2048 }]
                """, label: "real")
        stop(llama)

        // The same with a model that answers at once: what is left is the agent's and the fakes'.
        let (llm, llmPort) = try fixture(o, dir, "llm_fake.py", [])
        defer { stop(llm) }
        let instant = try replies(
            o, dir: dir,
            model: """
                [providers.local]
                kind = "ollama"
                base-url = "http://127.0.0.1:\(llmPort)"
                models = ["llama3.2:3b"]
                """, label: "instant")
        let r = Stats(real), i = Stats(instant)
        print("| model | messages | p50 ms | p99 ms |")
        print("|---|---:|---:|---:|")
        print("| SmolLM2-135M on llama-server (2 threads) | \(r.n) | \(f(r.p50, 1)) | \(f(r.p99, 1)) |")
        print("| a loopback fake that answers at once (the agent's share) | \(i.n) | \(f(i.p50, 1)) | \(f(i.p99, 1)) |")

        // Memory: every channel live, idle.
        guard o.idleSeconds > 0 else { return }
        let (telegram, tPort) = try fixture(o, dir, "telegram_fake.py", ["--token", token])
        defer { stop(telegram) }
        let (discord, dPort) = try fixture(o, dir, "discord_fake.py", ["--token", discordToken, "--heartbeat-ms", "41250"])
        defer { stop(discord) }
        let (whatsapp, wPort) = try fixture(
            o, dir, "whatsapp_fake.py", ["--token", whatsAppToken, "--app-secret", appSecret, "--verify-token", verifyToken, "--phone-number-id", "106540352242922"])
        defer { stop(whatsapp) }
        // Slack's own ping interval is about 30 s; its fake pings as often.
        let (slack, sPort) = try fixture(o, dir, "slack_fake.py", ["--app-token", slackAppToken, "--bot-token", slackBotToken, "--ping-ms", "30000"])
        defer { stop(slack) }
        let root = dir + "/idle"
        try box(
            root,
            model: """
                [providers.local]
                kind = "ollama"
                base-url = "http://127.0.0.1:\(llmPort)"
                models = ["llama3.2:3b"]
                """,
            channels: """
                [channels.telegram]
                token-secret = "channel.telegram.token"
                owners = ["1001"]
                base-url = "http://127.0.0.1:\(tPort)"
                [channels.discord]
                token-secret = "channel.discord.token"
                owners = ["80351110224678912"]
                base-url = "http://127.0.0.1:\(dPort)/api/v10"
                [channels.whatsapp]
                phone-number-id = "106540352242922"
                access-token-secret = "channel.whatsapp.access-token"
                app-secret-secret = "channel.whatsapp.app-secret"
                verify-token-secret = "channel.whatsapp.verify-token"
                owners = ["4915112345678"]
                base-url = "http://127.0.0.1:\(wPort)"
                [channels.slack]
                bot-token-secret = "channel.slack.bot-token"
                app-token-secret = "channel.slack.app-token"
                owners = ["T0AIBOX:U0OWNER1"]
                base-url = "http://127.0.0.1:\(sPort)/api"
                """)
        let agent = try startProcess(o.agent, ["run", "--root", root], env: ["AGENT_LOCAL_LLM_TIER": "small"], log: root + "/agent.log")
        defer { stop(agent) }
        // Each channel used once (a message in, a reply out) before the idle time starts.
        _ = json("http://127.0.0.1:\(tPort)/_fake/send", post: #"{"from_id": 1001, "text": "hello"}"#)
        _ = json("http://127.0.0.1:\(dPort)/_fake/send", post: #"{"author_id": "80351110224678912", "content": "hello"}"#)
        _ = json("http://127.0.0.1:\(sPort)/_fake/send", post: #"{"user": "U0OWNER1", "text": "hello"}"#)
        sleep(5)
        var samples: [(Int, Int)] = []
        let start = Clock.monotonic()
        while true {
            let t = Int(Clock.monotonic().since(start).components.seconds)
            samples.append((t, rssKiB(agent.processIdentifier)))
            if t >= o.idleSeconds { break }
            sleep(30)
        }
        print("")
        print("| idle s | " + samples.map { "\($0.0)" }.joined(separator: " | ") + " |")
        print("|---|" + samples.map { _ in "---:" }.joined(separator: "|") + "|")
        print("| RSS MiB | " + samples.map { f(Double($0.1) / 1024, 1) }.joined(separator: " | ") + " |")
    }
}

struct CLIBenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

import AIBoxCore
import AIBoxAgentCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// The owner's box commands over Telegram under a real daemon: the agent worker with its own
/// control socket, the Bot API fake, the provider fake as its model.
@Suite("the owner's box commands", .serialized)
struct BoxCommandTests {
    static let token = "7000003:AAH-commands-test-token-xyz"
    static let owner = 5151
    static let stranger = 777

    /// box.toml (the provider fake as local model, Telegram at its fake, `extra` after them)
    /// and the workers: the agent with `control`, and `x`, which says hello once.
    func box(_ llm: FakeProvider, _ telegram: FakeTelegram, extra: String = "") throws -> AgentBox {
        let b = try AgentBox()
        try b.configure(
            local: llm,
            """
            \(ChannelTable.telegram(owner: "\(Self.owner)", at: telegram.base))

            \(extra)
            """)
        try b.secret("channel.telegram.token", Self.token)
        try makeDirectories(b.paths.vendorWorkers)
        try writeFileAtomically(
            b.paths.vendorWorkers + "/workers.toml",
            Array(
                """
                [worker.agent]
                exec = ["\(agentBinary)", "run", "--root", "\(b.root)"]
                env = { AGENT_LOCAL_LLM_TIER = "small" }
                notify = true
                watchdog = "10s"
                secrets = ["provider.*", "channel.*"]
                control = ["workers", "logs", "restart", "update"]

                [worker.x]
                exec = ["/bin/sh", "-c", "echo x says hello; exec sleep 1000"]

                """.utf8))
        return b
    }

    func sent(_ t: FakeTelegram) -> [String] {
        ((try? t.sent()) ?? []).filter { "\($0["chat_id"] ?? "")" == "\(Self.owner)" }.compactMap { $0["text"] as? String }
    }

    /// Sends `text` as the owner and waits for the reply it gets (the next message to the owner).
    func say(_ text: String, _ t: FakeTelegram, _ b: AgentBox, timeout: Duration = .seconds(30)) throws -> String {
        let before = sent(t).count
        try t.userSends(from: Self.owner, text: text)
        let got = waitFor(timeout) { sent(t).count > before }
        #expect(got, "no reply to \(text):\n\(b.daemonLog())")
        return got ? sent(t)[before] : ""
    }

    func boxEvents(_ b: AgentBox) throws -> [EventRecord] {
        let out = try runProgram(b.aiboxBinary, ["events", "--json", "-n", "1000", "--root", b.root])
        return (try? JSONDecoder().decode([EventRecord].self, from: Data(out.stdout.utf8))) ?? []
    }

    @Test("/workers, /restart, /logs and /model for the owner; a stranger's /restart does nothing")
    func workersRestartLogsModel() throws {
        let llm = try FakeProvider()
        let telegram = try FakeTelegram(token: Self.token)
        let b = try box(llm, telegram)
        let daemon = try b.startDaemon()
        defer { b.stopDaemon(daemon) }
        #expect(b.waitForWorker("agent", state: "ready", timeout: .seconds(30)), "\(b.daemonLog())")
        #expect(b.waitForWorker("x", state: "running", timeout: .seconds(10)))
        let x = try #require(try b.workerPID("x"))

        // The stranger first; the owner's /workers after it is the barrier.
        try telegram.userSends(from: Self.stranger, text: "/restart x")
        let workers = try say("/workers", telegram, b)
        #expect(workers.contains("agent: ready") && workers.contains("x: running"), "\(workers)")
        #expect(try b.workerPID("x") == x, "a stranger restarted x")
        #expect(try boxEvents(b).allSatisfy { $0.kind != "control.restart" })
        #expect(((try? telegram.sent()) ?? []).allSatisfy { "\($0["chat_id"] ?? "")" != "\(Self.stranger)" }, "the stranger got an answer")

        let restart = try say("/restart x", telegram, b)
        #expect(restart.hasPrefix("Restarting x"), "\(restart)")
        #expect(b.waitForWorker("x", state: "running", timeout: .seconds(10), notPID: x), "x's pid did not change")
        let events = try boxEvents(b).filter { $0.kind == "control.restart" && $0.worker == "x" }
        #expect(events.count == 1 && events.first?.message.contains("through worker agent's control socket") == true, "\(events)")
        #expect(try say("/restart agent", telegram, b).contains("cannot restart myself"))

        var logs = ""
        #expect(
            waitFor(.seconds(10)) {
                logs = (try? say("/logs x 5", telegram, b)) ?? ""
                return logs.contains("x says hello")
            }, "\(logs)")
        #expect(logs.hasPrefix("x, last "), "\(logs)")

        // /model: the next question goes to the model named; a provider not configured is refused.
        let model = try say("/model chat local/other-model", telegram, b)
        #expect(model.contains("now goes to local/other-model > local/llama3.2:3b"), "\(model)")
        #expect(try say("what model?", telegram, b) == "ollama other-model: what model?")
        let asked = try llm.requests(path: "/api/chat").compactMap { ($0["body"] as? [String: Any])?["model"] as? String }
        #expect(asked.last == "other-model", "\(asked)")
        #expect(try say("/model chat nowhere/m", telegram, b) == "box.toml configures no provider \"nowhere\"; local is configured.")
        #expect(try say("/model chat default", telegram, b).contains("back to box.toml's routes: local/llama3.2:3b"))
        #expect(try say("and now?", telegram, b) == "ollama llama3.2:3b: and now?")
    }

    @Test("/update install: a code, a wrong code asks again, the right one starts the install; the owner is told how it ended")
    func updateInstall() throws {
        let llm = try FakeProvider()
        let telegram = try FakeTelegram(token: Self.token)
        let feed = try TestFeed()
        let b = try box(llm, telegram, extra: "[updates]\nfeed-url = \"\(feed.url("feed.json"))\"\nautomatic = false\n")
        try feed.install(into: b)
        let daemon = try b.startDaemon()
        defer { b.stopDaemon(daemon) }
        #expect(b.waitForWorker("agent", state: "ready", timeout: .seconds(30)), "\(b.daemonLog())")

        /// The code a reply asks to be sent back.
        func code(_ reply: String) -> String { String(reply.components(separatedBy: "/update install ").last?.prefix { $0 != "\n" } ?? "") }
        let ask = try say("/update install", telegram, b)
        let first = code(ask)
        #expect(first.count == 6, "\(ask)")
        #expect(ask.hasPrefix("To install an update and reboot into it, send: /update install "), "\(ask)")
        // A code that differs from the one issued in its first character.
        let other = OneTimeCode.alphabet.first { $0 != first.first } ?? "A"
        let wrong = try say("/update install \(other)\(first.dropFirst())", telegram, b)
        #expect(wrong.hasPrefix("That code is wrong or too old."), "\(wrong)")
        // The first code was used up by the wrong try: it does not work any more.
        let again = try say("/update install \(first)", telegram, b)
        #expect(again.hasPrefix("That code is wrong or too old."), "\(again)")
        let fresh = code(again)
        #expect(try boxEvents(b).allSatisfy { $0.kind != "control.update-install" }, "installed without a good code")
        #expect(try say("/update install \(fresh)", telegram, b) == "Started; I will tell you how it ends.")
        #expect(
            // "reboot requested" (under a test root nothing reboots), or "deferred" should the
            // agent still hold the reboot inhibit for the message that started it.
            waitFor(.seconds(60)) { sent(telegram).contains { $0.contains("Update 1.2.0 is installed; reboot") } },
            "\(sent(telegram))\n\(b.daemonLog())")
        let events = try boxEvents(b)
        #expect(events.contains { $0.kind == "control.update-install" && $0.message.contains("through worker agent's control socket") })
        #expect(events.contains { $0.kind == "update.installed" } && events.contains { $0.kind.hasPrefix("update.reboot-") })
        #expect(feed.slotBytes(b, "B") == feed.image, "the new slot holds the bundle's image")
    }

    @Test("the daemon not running: a clear reply, and the agent goes on")
    func daemonGone() throws {
        let llm = try FakeProvider()
        let telegram = try FakeTelegram(token: Self.token)
        let b = try box(llm, telegram)
        // The agent on its own, told of a socket nobody listens on.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: agentBinary)
        p.arguments = ["run", "--root", b.root]
        var env = ProcessInfo.processInfo.environment
        for (k, v) in b.environment { env[k] = v }
        env["NOTIFY_SOCKET"] = nil
        env["AIBOX_CONTROL_SOCKET"] = b.root + "/run/aibox/control.d/agent.sock"
        p.environment = env
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
        #expect(try say("/workers", telegram, b).hasPrefix("The box's supervisor (aibox) is not running"))
        // A socket that takes connections and never answers: a bounded wait, then a reply.
        try makeDirectories(b.root + "/run/aibox/control.d")
        let silent = try ControlListener(path: b.root + "/run/aibox/control.d/agent.sock", mode: 0o600)
        let start = Clock.monotonic()
        #expect(try say("/restart x", telegram, b).contains("did not answer within 5 s"))
        #expect(Clock.monotonic().since(start) < .seconds(20))
        withExtendedLifetime(silent) {}
        #expect(try say("still there?", telegram, b) == "ollama llama3.2:3b: still there?")
    }
}

/// A signed update feed for an A/B box made under an agent test's root: two image-file slots
/// and the file boot environment, a signing key, a bundle of version 1.2.0 and the feed,
/// served by the integration tests' HTTP server on 127.0.0.1.
final class TestFeed {
    let scratch: String
    let key: String
    let image: [UInt8]
    let server = Process()
    let port: Int

    init() throws {
        scratch = try temporaryDirectory("feed")
        key = scratch + "/signing.pem"
        let aibox = agentProducts + "/aibox"
        try makeDirectories(scratch + "/www")
        try makeDirectories(scratch + "/keys")
        var k = try runProgram(aibox, ["bundle", "keygen", "--private", key, "--public", scratch + "/keys/dev.pub"])
        try #require(k.code == 0, "keygen: \(k.stderr)")
        image = (0..<(256 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try writeFileAtomically(scratch + "/rootfs.img", image)
        k = try runProgram(
            aibox,
            [
                "bundle", "create", "--compatible", "aibox-test", "--version", "1.2.0", "--image", "rootfs=\(scratch)/rootfs.img", "--key", key,
                "--output", scratch + "/www/u.aibox",
            ])
        try #require(k.code == 0, "bundle create: \(k.stderr)")
        server.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        server.arguments = [repository + "/Tests/AIBoxIntegrationTests/Fixtures/http-server.py", scratch + "/www"]
        let out = Pipe()
        server.standardOutput = out
        try server.run()
        let first = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        port = try #require(Int(first.trimmingCharacters(in: .whitespacesAndNewlines)), "the feed server did not start: \(first)")
        try writeFileAtomically(
            scratch + "/www/feed.json",
            Array(
                """
                {"format": 1, "compatible": "aibox-test", "channels": {"stable": {"version": "1.2.0", "url": "\(url("u.aibox"))"}}}
                """.utf8))
        k = try runProgram(aibox, ["bundle", "sign", scratch + "/www/feed.json", "--key", key])
        try #require(k.code == 0, "sign: \(k.stderr)")
    }

    deinit {
        kill(server.processIdentifier, SIGKILL)
        server.waitUntilExit()
        _ = try? runProgram("/bin/rm", ["-rf", scratch])
    }

    func url(_ name: String) -> String { "http://127.0.0.1:\(port)/ok/\(name)" }

    /// The box's side: its slots, its boot environment and the key it trusts.
    func install(into b: AgentBox) throws {
        try makeDirectories(b.paths.under("usr/lib/aibox/keys"))
        try makeDirectories(b.paths.under("var/lib/aibox/slots"))
        _ = try runProgram("/bin/cp", [scratch + "/keys/dev.pub", b.paths.under("usr/lib/aibox/keys/dev.pub")])
        try writeFileAtomically(
            b.paths.under("usr/lib/aibox/system.toml"),
            Array(
                """
                compatible = "aibox-test"
                bootloader = "file"
                boot-env = "/var/lib/aibox/bootenv"
                boot-tries = 3
                commit-after = "5m"
                commit-deadline = "30m"
                feed-interval = "6h"
                [slot.A]
                device = "/var/lib/aibox/slots/A.img"
                [slot.B]
                device = "/var/lib/aibox/slots/B.img"
                """.utf8))
    }

    func slotBytes(_ b: AgentBox, _ slot: String) -> [UInt8]? { readSmallFile(b.paths.under("var/lib/aibox/slots/\(slot).img"), limit: 64 << 20) }
}

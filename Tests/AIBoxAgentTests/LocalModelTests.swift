import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// The real local model: llama.cpp's llama-server with SmolLM2-135M (scripts/local-model
/// installs both; .ci/run does), run by a real `aibox daemon` as the `llm-local` worker, with
/// the real agent worker beside it. The model is tiny: content is asserted loosely, protocol
/// and accounting strictly.
@Suite("the real local model under aibox", .serialized)
struct LocalModelTests {
    static let question = "What is the capital of France? Answer in one word."

    /// LLAMA_SERVER and GGUF from scripts/local-model; a missing install fails the test
    /// saying what to run (it is never skipped).
    static func localModel() throws -> (server: String, gguf: String) {
        let out = try runProgram(repository + "/scripts/local-model", ["path"])
        var server = "", gguf = ""
        for line in out.stdout.split(separator: "\n") {
            if line.hasPrefix("LLAMA_SERVER=") { server = String(line.dropFirst(13)) }
            if line.hasPrefix("GGUF=") { gguf = String(line.dropFirst(5)) }
        }
        guard out.code == 0, !server.isEmpty, !gguf.isEmpty else {
            throw SystemError("the local model is not installed: run scripts/local-model install (\(out.stderr))", errno: 0)
        }
        return (server, gguf)
    }

    @Test("llama-server as a worker: the agent answers from it; SIGKILLed, the cloud answers, aibox restarts it, the probe brings it back")
    func underSupervision() throws {
        let (server, gguf) = try LocalModelTests.localModel()
        let cloud = try FakeProvider(apiKey: "sk-ant-local-test-000111")
        let b = try AgentBox()
        let port = try closedPort()
        try b.configure(
            """
            [providers.local]
            kind = "llamacpp"
            base-url = "http://127.0.0.1:\(port)"
            models = ["smollm2"]

            [providers.anthropic]
            kind = "anthropic"
            base-url = "\(cloud.base)"
            api-key-secret = "provider.anthropic.api-key"
            models = ["claude-3-5-haiku-latest"]

            [routing]
            chat = [{ provider = "local", model = "smollm2", context = 2048 }, { provider = "anthropic", model = "claude-3-5-haiku-latest" }]

            """)
        try b.secret("provider.anthropic.api-key", "sk-ant-local-test-000111")
        try makeDirectories(b.paths.vendorWorkers)
        try writeFileAtomically(
            b.paths.vendorWorkers + "/agent.toml",
            Array(
                """
                [worker.llm-local]
                exec = ["\(server)", "--host", "127.0.0.1", "--port", "\(port)", "--alias", "smollm2", "-m", "\(gguf)", "-c", "2048", "-t", "2", "--temp", "0"]
                ready-http = "http://127.0.0.1:\(port)/health"
                ready-timeout = "60s"
                restart-delay = "100ms"

                [worker.agent]
                exec = ["\(agentBinary)", "run", "--root", "\(b.root)"]
                env = { AGENT_LOCAL_LLM_TIER = "small" }
                notify = true
                watchdog = "10s"
                secrets = ["provider.*"]

                """.utf8))
        let daemon = try b.startDaemon()
        defer { b.stopDaemon(daemon) }
        #expect(b.waitForWorker("llm-local", state: "ready", timeout: .seconds(60)), "llama-server never became ready:\n\(b.daemonLog())")
        #expect(b.waitForWorker("agent", state: "ready", timeout: .seconds(20)), "the agent worker never became ready:\n\(b.daemonLog())")

        let first = try b.ask(LocalModelTests.question)
        #expect(first.json["route"] as? String == "local/smollm2", "\(first.stdout)\(first.stderr)")
        #expect((first.json["answer"] as? String ?? "").contains("Paris"))
        let tokens = first.json["tokens"] as? [String: Int]
        #expect((tokens?["input"] ?? 0) > 0 && (tokens?["output"] ?? 0) > 0, "llama-server reports usage in the stream")
        #expect(first.json["costUSD"] as? Double == 0)

        // The local model dies: the same question is answered by the cloud at once.
        let pid = try #require(try b.workerPID("llm-local"))
        kill(pid, SIGKILL)
        #expect(waitFor(.seconds(10)) { kill(pid, 0) != 0 })
        let second = try b.ask(LocalModelTests.question)
        #expect(second.json["route"] as? String == "anthropic/claude-3-5-haiku-latest", "\(second.stdout)")
        #expect(((second.json["attempts"] as? [[String: Any]])?.first?["outcome"] as? String) == "failed")

        // aibox brings it back; once its breaker's 5 s are up, one probe returns chat to it.
        #expect(b.waitForWorker("llm-local", state: "ready", timeout: .seconds(60), notPID: pid), "llama-server was not restarted:\n\(b.daemonLog())")
        var back = false
        let deadline = Clock.monotonic() + .seconds(30)
        while !back && Clock.monotonic() < deadline {
            let o = try b.ask(LocalModelTests.question)
            back = o.json["route"] as? String == "local/smollm2"
            if !back { usleep(500_000) }
        }
        #expect(back, "the agent did not return to the local model")
        #expect(try b.events().contains { $0["kind"] as? String == "route.recovered" && $0["route"] as? String == "local/smollm2" })
        // The agent worker tells aibox what it is doing.
        #expect((try b.workerStatus("agent") ?? "").hasPrefix("chat: local/smollm2"))
        // The key went to the provider and is nowhere else: not in any file of the box but its
        // secret (the daemon's database and log, agent.db, the worker's credentials copy under
        // run/ aside), not in any output.
        #expect((try cloud.requests(path: "/v1/messages").first?["headers"] as? [String: Any])?["x-api-key"] as? String == "sk-ant-local-test-000111")
        let grep = try runProgram("/bin/grep", ["-r", "-l", "-a", "-F", "sk-ant-local-test-000111", b.root])
        let files = grep.stdout.split(separator: "\n").map(String.init).filter { !$0.contains("/run/aibox/credentials/agent/") }
        #expect(files == [b.paths.secrets + "/provider.anthropic.api-key"], "the key is in \(files)")
        #expect(!(first.stdout + second.stdout + first.stderr + second.stderr).contains("sk-ant-local-test-000111"))
    }

    @Test("a prompt over the local model's context: llama-server's 400 is a context overflow, and the next route with room answers")
    func contextOverflow() throws {
        let llama = try LlamaServer(context: 256)
        let port = llama.port
        defer { withExtendedLifetime(llama) {} }  // the server lives as long as the test
        let cloud = try FakeProvider()
        let b = try AgentBox()
        // The route says 8192 (wrong: the server runs with 256), so the prompt is sent and refused.
        try b.configure(
            """
            [providers.local]
            kind = "llamacpp"
            base-url = "http://127.0.0.1:\(port)"
            models = ["smollm2"]

            [providers.lan]
            kind = "ollama"
            base-url = "\(cloud.base)"
            models = ["llama3.2:3b"]

            [routing]
            chat = [{ provider = "local", model = "smollm2", context = 8192 }, { provider = "lan", model = "llama3.2:3b", context = 32768 }]

            """)
        let long = String(repeating: "The box keeps running all day and all night. ", count: 60)
        let o = try b.ask(long)
        #expect(o.json["route"] as? String == "lan/llama3.2:3b", "\(o.stdout)\(o.stderr)")
        let reason = (o.json["attempts"] as? [[String: Any]])?.first?["reason"] as? String ?? ""
        #expect(reason.contains("400") && reason.contains("exceed_context_size_error"), "\(reason)")
        // Not the server's fault: its breaker stays closed, a short question goes to it at once.
        let short = try b.ask("Hi")
        #expect(short.json["route"] as? String == "local/smollm2", "\(short.stdout)")
    }

    @Test("the shipped price table reads")
    func shippedPrices() throws {
        let b = try AgentBox()
        try makeDirectories(b.root + "/usr/lib/aibox/agent")
        try writeFileAtomically(b.paths.under("usr/lib/aibox/agent/prices.toml"), try readRegularFile(repository + "/image/agent/prices.toml", limit: 1 << 20))
        try b.configure("[budget]\ndaily-usd = 1.0\n")
        let o = try b.agent(["status", "--json"])
        #expect(o.code == 0, "\(o.stderr)")
    }
}

/// Waits for `condition` on the monotonic clock, up to `timeout`.
func waitFor(_ timeout: Duration, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Clock.monotonic() + timeout
    while Clock.monotonic() < deadline {
        if try condition() { return true }
        usleep(50_000)
    }
    return try condition()
}

extension AgentBox {
    var aiboxBinary: String { agentProducts + "/aibox" }

    func startDaemon() throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: aiboxBinary)
        p.arguments = ["daemon", "--root", root, "--log-target", "files", "--log-level", "debug"]
        var env = ProcessInfo.processInfo.environment
        env["NOTIFY_SOCKET"] = nil
        env["WATCHDOG_USEC"] = nil
        p.environment = env
        _ = creat(root + "/daemon.log", 0o644)
        let log = FileHandle(forWritingAtPath: root + "/daemon.log")
        p.standardError = log
        p.standardOutput = log
        try p.run()
        return p
    }

    func stopDaemon(_ p: Process) {
        kill(p.processIdentifier, SIGTERM)
        if !waitFor(.seconds(30), { !p.isRunning }) { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
    }

    func daemonLog() -> String { readTextFile(root + "/daemon.log") ?? "" }

    func workers() -> [[String: Any]] {
        guard let o = try? runProgram(aiboxBinary, ["workers", "--json", "--root", root]), o.code == 0 else { return [] }
        let j = try? JSONSerialization.jsonObject(with: Data(o.stdout.utf8))
        return (j as? [[String: Any]]) ?? ((j as? [String: Any])?["workers"] as? [[String: Any]]) ?? []
    }

    func worker(_ name: String) -> [String: Any]? { workers().first { $0["name"] as? String == name } }

    func workerPID(_ name: String) throws -> pid_t? { (worker(name)?["pid"] as? Int).map { pid_t($0) } }

    func workerStatus(_ name: String) throws -> String? { worker(name)?["status"] as? String }

    func waitForWorker(_ name: String, state: String, timeout: Duration, notPID: pid_t? = nil) -> Bool {
        waitFor(timeout) {
            guard let w = worker(name), w["state"] as? String == state else { return false }
            return notPID == nil || (w["pid"] as? Int).map { pid_t($0) } != notPID
        }
    }
}

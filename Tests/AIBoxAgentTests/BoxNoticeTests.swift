import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// The agent follows aibox's events under a real daemon and tells the owner of trouble once.
@Suite("the box speaks up", .serialized)
struct BoxSpeaksUpTests {
    func ownerLines(_ b: AgentBox) -> [String] {
        let o = try? runProgram(b.aiboxBinary, ["logs", "agent", "-n", "500", "--root", b.root])
        return (o?.stdout ?? "").split(separator: "\n").map(String.init).filter { $0.contains("for the owner:") }
    }

    @Test("a worker quarantined under a real daemon: the owner is told once, and not again after the agent restarts")
    func quarantined() throws {
        let fake = try FakeProvider()
        let b = try AgentBox()
        try b.configure(
            """
            [providers.local]
            kind = "ollama"
            base-url = "\(fake.base)"
            models = ["llama3.2:3b"]

            """)
        try makeDirectories(b.paths.vendorWorkers)
        // flaky runs until the file `fail` appears; from then on it exits at once.
        try writeFileAtomically(
            b.paths.vendorWorkers + "/workers.toml",
            Array(
                """
                [worker.flaky]
                exec = ["/bin/sh", "-c", "if [ -e \(b.root)/fail ]; then exit 1; fi; exec sleep 1000"]
                restart-delay = "10ms"
                crash-loop = { burst = 3, window = "60s", quarantine = "10m" }

                [worker.agent]
                exec = ["\(agentBinary)", "run", "--root", "\(b.root)"]
                env = { AGENT_LOCAL_LLM_TIER = "small" }
                notify = true
                watchdog = "10s"

                """.utf8))
        let daemon = try b.startDaemon()
        defer { b.stopDaemon(daemon) }
        #expect(b.waitForWorker("agent", state: "ready", timeout: .seconds(20)), "\(b.daemonLog())")
        #expect(b.waitForWorker("flaky", state: "running", timeout: .seconds(20)), "\(b.daemonLog())")
        #expect(ownerLines(b).isEmpty)
        _ = creat(b.root + "/fail", 0o644)
        let flaky = try #require(try b.workerPID("flaky"))
        kill(flaky, SIGKILL)
        #expect(b.waitForWorker("flaky", state: "quarantined", timeout: .seconds(20)), "\(b.daemonLog())")
        #expect(waitFor(.seconds(30)) { !ownerLines(b).isEmpty }, "no notice:\n\(b.daemonLog())")
        let lines = ownerLines(b)
        #expect(lines.count == 1 && lines[0].contains("AI Box: flaky keeps failing and is paused for a while"), "\(lines)")
        // The agent restarts; the same quarantine is not told again (its cursor and the told-once mark are in agent.db).
        let pid = try #require(try b.workerPID("agent"))
        _ = try runProgram(b.aiboxBinary, ["restart", "agent", "--root", b.root])
        #expect(b.waitForWorker("agent", state: "ready", timeout: .seconds(20), notPID: pid))
        usleep(4_000_000)  // two of the worker's 2-s polls: nothing more may come
        #expect(ownerLines(b).count == 1, "\(ownerLines(b))")
    }
}

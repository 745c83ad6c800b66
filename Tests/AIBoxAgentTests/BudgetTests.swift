import AIBoxAgent
import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// The cloud budget with real processes and a real agent.db: reservations before calls,
/// charges after, the cap, the one notice, and no overspending by requests at once.
@Suite("budget", .serialized)
struct BudgetTests {
    static let key = "sk-ant-budget-test-0123456789"
    let cloud: FakeProvider
    let local: FakeProvider

    init() throws {
        cloud = try FakeProvider(apiKey: BudgetTests.key)
        local = try FakeProvider()
    }

    /// chat = [anthropic, local]; a price of $1 per thousand output tokens, so a call's
    /// reservation (1024 reply tokens) is about $1.03.
    func box(budget: String, priced: Bool = true) throws -> AgentBox {
        let b = try AgentBox()
        try b.configureCloudAndLocal(
            cloud: cloud.base, key: BudgetTests.key, local: local.base,
            """
            [routing]
            chat = [{ provider = "anthropic", model = "claude-3-5-haiku-latest" }, { provider = "local", model = "llama3.2:3b" }]

            \(budget)
            """)
        if priced {
            try makeDirectories(b.root + "/usr/lib/aibox/agent")
            try writeFileAtomically(
                b.paths.under("usr/lib/aibox/agent/prices.toml"),
                Array("[anthropic]\n\"claude-3-5-haiku-latest\" = { input = 1, output = 1000 }\n".utf8))
        }
        return b
    }

    func spent(_ b: AgentBox) throws -> Double {
        ((try b.agent(["status", "--json"]).json["budget"] as? [String: Any])?["spentTodayUSD"] as? Double) ?? -1
    }

    @Test("a reply with usage is charged its tokens; one without is charged its whole reservation, never nothing")
    func charges() throws {
        let b = try box(budget: "[budget]\ndaily-usd = 100.0\n")
        let first = try b.ask("How far is the moon?")
        #expect(first.json["route"] as? String == "anthropic/claude-3-5-haiku-latest", "\(first.stdout)\(first.stderr)")
        let tokens = first.json["tokens"] as? [String: Int]
        let expected = Double(tokens?["input"] ?? 0) * 1e-6 + Double(tokens?["output"] ?? 0) * 1e-3
        #expect(abs((first.json["costUSD"] as? Double ?? 0) - expected) < 1e-9)
        #expect(first.json["costEstimated"] as? Bool == false)
        #expect(abs(try spent(b) - expected) < 1e-9)

        try cloud.script(#"[{"fault": "no_usage"}]"#)
        let second = try b.ask("And the sun?")
        #expect(second.json["costEstimated"] as? Bool == true)
        #expect((second.json["costUSD"] as? Double ?? 0) > 1.0, "charged the reservation (1024 reply tokens at $0.001)")
    }

    @Test("the agent killed in the middle of a cloud call: its reservation stays charged in full")
    func killedMidCall() throws {
        let b = try box(budget: "[budget]\ndaily-usd = 100.0\n")
        try cloud.script(#"[{"fault": "stall", "after": 2, "seconds": 60}]"#)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: agentBinary)
        p.arguments = ["ask", "--json", "--root", b.root, "a long question"]
        var env = ProcessInfo.processInfo.environment
        for (k, v) in b.environment { env[k] = v }
        p.environment = env
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        #expect(waitFor(.seconds(15)) { ((try? cloud.requests(path: "/v1/messages").count) ?? 0) == 1 }, "the call reached the provider")
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        // 1024 reply tokens at $0.001 and the prompt: the whole reservation, not nothing.
        #expect(try spent(b) > 1.024)
    }

    @Test("the wall clock jumps back to 1970 (no RTC, no NTP yet): the day already charged goes on, no fresh allowance; forward: a new day")
    func clockJumps() throws {
        let b = try box(budget: "[budget]\ndaily-usd = 2.5\n")
        try cloud.script(#"[{"fault": "no_usage", "times": -1}]"#)  // each cloud call charged its reservation, about $1.03
        func at(_ time: String) throws -> Output { try ask(b, at: time) }
        #expect(try at("2026-12-02 12:00:00").json["route"] as? String == "anthropic/claude-3-5-haiku-latest")
        // Rebooted without a clock: 1970. The day counted is still 2026-12-02.
        #expect(try at("1970-01-01 00:00:10").json["route"] as? String == "anthropic/claude-3-5-haiku-latest")
        let third = try at("1970-01-01 00:01:00")
        #expect(third.json["route"] as? String == "local/llama3.2:3b", "2 × $1.03 charged today; a third would pass $2.50: \(third.stdout)")
        // NTP answers: the next day is a new day.
        #expect(try at("2026-12-03 08:00:00").json["route"] as? String == "anthropic/claude-3-5-haiku-latest")
        #expect(try cloud.requests(path: "/v1/messages").count == 3)
    }

    @Test("the disk fills: no cloud call without its reservation written, the local model still answers; space again: the cloud again")
    func diskFull() throws {
        try #require(geteuid() == 0, "mounting a small tmpfs needs root (CI runs as root)")
        let b = try box(budget: "[budget]\ndaily-usd = 100.0\n")
        let dir = b.paths.agentDirectory
        try makeDirectories(dir)
        let mounted = try runProgram("/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir])
        try #require(mounted.code == 0, "mount failed: \(mounted.stderr)")
        defer { _ = try? runProgram("/bin/umount", ["-l", dir]) }
        #expect(try b.ask("first").json["route"] as? String == "anthropic/claude-3-5-haiku-latest")
        // Fill what is left of it.
        _ = try runProgram("/bin/dd", ["if=/dev/zero", "of=" + dir + "/filler", "bs=4k"])
        let full = try b.ask("second")
        #expect(full.code == 0)
        #expect(full.json["route"] as? String == "local/llama3.2:3b", "\(full.stdout)\(full.stderr)")
        let reason = (full.json["attempts"] as? [[String: Any]])?.first?["reason"] as? String ?? ""
        #expect(reason.contains("agent.db cannot be written"), "\(reason)")
        #expect(try b.agent(["status", "--json"]).json["ledgerProblem"] as? String != nil, "status says agent.db is unavailable")
        #expect(try cloud.requests(path: "/v1/messages").count == 1, "no cloud call without its reservation")
        _ = try runProgram("/bin/rm", ["-f", dir + "/filler"])
        #expect(try b.ask("third").json["route"] as? String == "anthropic/claude-3-5-haiku-latest")
    }

    @Test("a spent monthly cap is told once that month, not once a day")
    func monthlyNoticeOnce() throws {
        let b = try box(budget: "[budget]\nmonthly-usd = 1.5\n")
        try cloud.script(#"[{"fault": "no_usage", "times": -1}]"#)
        for day in ["2026-12-02", "2026-12-02", "2026-12-03", "2026-12-04"] { _ = try ask(b, at: day + " 10:00:00") }
        #expect(try cloud.requests(path: "/v1/messages").count == 1)
        let notices = try b.events().filter { $0["kind"] as? String == "owner.notice" }
        #expect(notices.count == 1, "\(notices)")
        // A new month, a new allowance.
        #expect(try ask(b, at: "2027-01-01 10:00:00").json["route"] as? String == "anthropic/claude-3-5-haiku-latest")
    }

    /// `aibox-agent ask` with the wall clock at `time` (libfaketime; the monotonic clock is left alone).
    func ask(_ b: AgentBox, at time: String) throws -> Output {
        let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
        try #require(fileExists(lib), "libfaketime is missing: apt-get install libfaketime (.ci/run does)")
        // Through /usr/bin/env: a Swift program exec'd directly under LD_PRELOAD=libfaketime loses its argv.
        var env = b.environment
        env["LD_PRELOAD"] = lib
        env["FAKETIME"] = "@" + time
        env["DONT_FAKE_MONOTONIC"] = "1"
        return try runProgram("/usr/bin/env", [agentBinary, "ask", "--json", "--root", b.root, "hello at \(time)"], environment: env)
    }

    @Test("the cap reached: only the local model answers, the cloud is not called, and the owner is told exactly once")
    func capReached() throws {
        let b = try box(budget: "[budget]\ndaily-usd = 1.5\nwhen-exhausted = \"local\"\n")
        try cloud.script(#"[{"fault": "no_usage"}]"#)  // charged its reservation: about $1.03 of $1.50
        #expect(try b.ask("one").json["route"] as? String == "anthropic/claude-3-5-haiku-latest")
        for q in ["two", "three", "four"] {
            let o = try b.ask(q)
            #expect(o.code == 0)
            #expect(o.json["route"] as? String == "local/llama3.2:3b")
        }
        #expect(try cloud.requests(path: "/v1/messages").count == 1)
        #expect(try spent(b) <= 1.5)
        let notices = try b.events().filter { $0["kind"] as? String == "owner.notice" }
        #expect(notices.count == 1)
        #expect((notices.first?["message"] as? String)?.contains("daily cloud budget") == true)
    }

    @Test("when-exhausted = refuse: no answer, the reason said, and no model called")
    func refuse() throws {
        let b = try box(budget: "[budget]\ndaily-usd = 0.5\nwhen-exhausted = \"refuse\"\n")
        let o = try b.ask("anything")
        #expect(o.code == 1)
        #expect((o.json["error"] as? String)?.contains("budget") == true, "\(o.stdout)")
        #expect(try cloud.requests(path: "/v1/messages").isEmpty)
        #expect(try local.requests(path: "/api/chat").isEmpty)
    }

    @Test("a cloud model without a price is not used while a budget is set")
    func unpriced() throws {
        let b = try box(budget: "[budget]\nmonthly-usd = 30.0\n", priced: false)
        let o = try b.ask("hello")
        #expect(o.json["route"] as? String == "local/llama3.2:3b")
        #expect(((o.json["attempts"] as? [[String: Any]])?.first?["reason"] as? String)?.contains("no price") == true)
        #expect(try cloud.requests(path: "/v1/messages").isEmpty)
    }

    @Test("requests at once cannot overspend: the cap fits one reservation, exactly one goes to the cloud")
    func concurrent() throws {
        let b = try box(budget: "[budget]\ndaily-usd = 1.5\n")
        // Slow replies keep every call in flight together.
        try cloud.script(#"[{"fault": "delay_ms", "ms": 150, "times": -1}]"#)
        var procs: [(Process, Pipe)] = []
        for i in 0..<4 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: agentBinary)
            p.arguments = ["ask", "--json", "--root", b.root, "question \(i)"]
            var env = ProcessInfo.processInfo.environment
            for (k, v) in b.environment { env[k] = v }
            p.environment = env
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle.nullDevice
            try p.run()
            procs.append((p, out))
        }
        var routes: [String] = []
        for (p, out) in procs {
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            let j = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
            routes.append(j?["route"] as? String ?? "none")
        }
        #expect(routes.filter { $0 == "anthropic/claude-3-5-haiku-latest" }.count == 1, "\(routes)")
        #expect(routes.filter { $0 == "local/llama3.2:3b" }.count == 3, "\(routes)")
        #expect(try cloud.requests(path: "/v1/messages").count == 1)
        #expect(try spent(b) <= 1.5)
    }
}

import AIBoxAgent
import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// Conversations kept in agent.db and folded by the local model; the local model's one
/// request at a time; its warm-up at the worker's start.
@Suite("conversations and the local model's turn", .serialized)
struct ConversationMemoryTests {
    /// Runs `aibox-agent chat` with `lines` on its standard input (a pipe: not a terminal).
    func chat(_ b: AgentBox, _ lines: [String]) throws -> Output {
        try runProgram(agentBinary, ["chat", "--root", b.root], environment: b.environment, input: lines.joined(separator: "\n") + "\n")
    }

    static let filler = String(repeating: "the box on the shelf hums along all day and night, ", count: 5)

    func configureLocal(_ b: AgentBox, _ fake: FakeProvider, context: Int) throws {
        try b.configure(
            """
            [providers.local]
            kind = "ollama"
            base-url = "\(fake.base)"
            models = ["llama3.2:3b"]

            [routing]
            chat = { provider = "local", model = "llama3.2:3b", context = \(context) }

            """)
    }

    @Test("a long conversation is folded by the local model: the next question carries the summary, not the folded turns")
    func compaction() throws {
        let fake = try FakeProvider()
        let b = try AgentBox()
        try configureLocal(b, fake, context: 1400)
        // Each question ends in a marker past the 60 characters the fake echoes back, so a
        // marker in a later request can only come from the kept turns.
        let questions = (1...4).map { "Question \($0): \(ConversationMemoryTests.filler) end-marker-\($0)" }
        let o = try chat(b, questions)
        #expect(o.code == 0, "\(o.stderr)")
        let requests = try fake.requests(path: "/api/chat").compactMap { $0["body"] as? [String: Any] }
        func messages(_ body: [String: Any]) -> [(role: String, content: String)] {
            ((body["messages"] as? [[String: Any]]) ?? []).map { ($0["role"] as? String ?? "", $0["content"] as? String ?? "") }
        }
        // Three questions, the folding, the fourth question.
        try #require(requests.count == 5, "\(requests.count) requests: \(o.stdout)")
        let fold = messages(requests[3])
        #expect(fold.first?.role == "system" && fold.first?.content.contains("Summarise") == true)
        #expect(fold.last?.content.contains("end-marker-1") == true && fold.last?.content.contains("end-marker-2") == true)
        #expect(fold.last?.content.contains("end-marker-3") == false, "the last exchange is never folded")
        #expect(((requests[3]["options"] as? [String: Any])?["num_predict"] as? Int).map { $0 <= Compaction.summaryTokens } == true)
        let fourth = messages(requests[4])
        let summary = "Summary of the conversation so far: ollama llama3.2:3b: Conversation:"
        #expect(fourth.first?.role == "system" && fourth.first?.content.hasPrefix(summary) == true, "\(fourth)")
        let kept = fourth.dropFirst().map(\.content).joined(separator: "\n")
        #expect(!kept.contains("end-marker-1") && !kept.contains("end-marker-2"))
        #expect(kept.contains("end-marker-3") && kept.contains("end-marker-4"))
        // agent.db: the summary and the turns after it; the event names what was folded.
        let db = try SQLiteConnection(path: b.paths.agentDatabase, readOnly: true, busyTimeoutMilliseconds: 1000)
        let stored = try db.query("SELECT content FROM summary").first?.first?.string ?? ""
        #expect(stored.hasPrefix("ollama llama3.2:3b: Conversation:"))
        let rows = try db.query("SELECT content FROM message ORDER BY id").compactMap { $0[0].string }
        #expect(rows.count == 4 && rows[0].contains("end-marker-3"))
        let events = try b.events().filter { $0["kind"] as? String == "conversation.compacted" }
        #expect(events.count == 1 && (events.first?["message"] as? String)?.contains("4 messages folded") == true, "\(events)")
        // /new forgets the summary too.
        _ = try chat(b, ["/new"])
        #expect(try db.query("SELECT count(*) FROM summary").first?.first?.int64 == 0)
        #expect(try db.query("SELECT count(*) FROM message").first?.first?.int64 == 0)
    }

    @Test("the real local model folds a long conversation and goes on answering")
    func realCompaction() throws {
        // DRY sampling (--dry-multiplier): at temperature 0 the model otherwise repeats the
        // filler to the agent's 1024 tokens of reply, minutes of CPU per answer.
        let llama = try LlamaServer(context: 1400, extra: ["-np", "1", "--temp", "0", "--dry-multiplier", "0.8"])
        let port = llama.port
        defer { withExtendedLifetime(llama) {} }  // the server lives as long as the test
        let b = try AgentBox()
        try b.configure(
            """
            [providers.local]
            kind = "llamacpp"
            base-url = "http://127.0.0.1:\(port)"
            models = ["smollm2"]

            [routing]
            chat = { provider = "local", model = "smollm2", context = 1400 }

            """)
        // Three questions, each answered in one process over one keep-alive connection to
        // llama-server: the third is asked after a folding (1400 tokens less the agent's 1024
        // of reply leave 376 for the prompt; two exchanges of about 150 are more than 3/4).
        let facts = ["My name is Ada.", "My box is in Lyon.", "I keep bees."]
        let o = try chat(b, facts.map { "\($0) \(ConversationMemoryTests.filler)\(ConversationMemoryTests.filler)Answer in one short sentence." })
        #expect(o.code == 0, "\(o.stderr)")
        #expect(!o.stdout.contains("(no answer"), "\(o.stdout)")
        #expect(o.stdout.components(separatedBy: "[local/smollm2").count == 4, "\(o.stdout)")
        let all = try b.events()
        #expect(all.contains { $0["kind"] as? String == "conversation.compacted" }, "\(all)")
        let db = try SQLiteConnection(path: b.paths.agentDatabase, readOnly: true, busyTimeoutMilliseconds: 1000)
        #expect((try db.query("SELECT length(content) FROM summary").first?.first?.int64 ?? 0) > 0)
    }

    @Test("a local model serves one request at a time: the second waits its turn instead of timing out in the server's queue")
    func oneAtATime() async throws {
        try await onTestThreads {
            let fake = try FakeProvider()
            let b = try AgentBox()
            try configureLocal(b, fake, context: 4096)
            // Each reply takes about 6 × 250 ms.
            try fake.script(#"[{"fault": "delay_ms", "ms": 250, "times": 2}]"#)
            let settings = try AgentSettings.load(paths: b.paths, environment: b.environment).get()
            let client = ProviderClient()
            let assistant = Assistant(settings: settings, ledger: try Ledger(path: ":memory:"), client: client)
            async let first = assistant.ask(role: .chat, message: "first question")
            async let second = assistant.ask(role: .chat, message: "second question")
            let (a, c) = await (first, second)
            await client.shutdown()
            #expect((try? a.get().route.description) == "local/llama3.2:3b")
            #expect((try? c.get().route.description) == "local/llama3.2:3b")
            let times = try fake.requests(path: "/api/chat").compactMap { $0["time"] as? Double }
            try #require(times.count == 2)
            let firstTook = (try? a.get().totalMS) ?? 0
            // The second request reached the model only once the first was answered.
            #expect((times[1] - times[0]) * 1000 >= min(firstTook, (try? c.get().totalMS) ?? 0) * 0.9, "\(times), first took \(firstTook) ms")
            #expect(times[1] - times[0] >= 1.0, "\(times)")
        }
    }

    @Test("the worker warms the local model at its start: one token asked, before any question, again while the model loads")
    func warmUp() throws {
        let fake = try FakeProvider()
        let b = try AgentBox()
        try configureLocal(b, fake, context: 4096)
        // The model is still loading at the first try (llama-server: 503 "Loading model").
        try fake.script(#"[{"fault": "status", "code": 503}]"#)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: agentBinary)
        p.arguments = ["run", "--root", b.root]
        var env = ProcessInfo.processInfo.environment
        for (k, v) in b.environment { env[k] = v }
        env["NOTIFY_SOCKET"] = nil
        p.environment = env
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
        var warm: [[String: Any]] = []
        #expect(
            try waitFor(.seconds(20)) {
                warm = try fake.requests(path: "/api/chat")
                return warm.count >= 2
            })
        #expect(warm.count == 2 && warm.first?["fault"] as? String == "status", "\(warm)")
        for body in warm.map({ $0["body"] as? [String: Any] }) {
            #expect((body?["options"] as? [String: Any])?["num_predict"] as? Int == 1, "\(body ?? [:])")
            #expect(body?["model"] as? String == "llama3.2:3b")
        }
        // Once warm, it asks no more.
        usleep(1_500_000)
        #expect(try fake.requests(path: "/api/chat").count == 2)
        // Not a request of the owner's: no event, no breaker, no charge.
        let status = try b.agent(["status", "--json"]).json
        #expect((status["events"] as? [Any])?.isEmpty == true, "\(status)")
    }
}

import Testing

@testable import AIBoxAgentCore

@Suite("conversation compaction")
struct ConversationTests {
    /// `n` exchanges, each question `words` words long (about 1.5 tokens a word), ids 1, 2, 3 …
    func conversation(_ n: Int, words: Int = 40, summary: String? = nil) -> Conversation {
        var turns: [Conversation.Turn] = []
        for i in 0..<n {
            let q = (0..<words).map { "q\(i)w\($0)" }.joined(separator: " ")
            turns.append(.init(id: Int64(2 * i + 1), ChatMessage(.user, q)))
            turns.append(.init(id: Int64(2 * i + 2), ChatMessage(.assistant, "answer \(i)")))
        }
        return Conversation(summary: summary, turns: turns)
    }

    @Test("a conversation within three quarters of its room is left alone")
    func small() {
        let c = conversation(2)
        #expect(c.tokens < (4096 - 1024) * 3 / 4)
        #expect(Compaction.plan(c, context: 4096, replyTokens: 1024, summarizerContext: 4096) == nil)
    }

    @Test("past three quarters, the oldest whole exchanges are folded until a third of the room is left, never the last exchange")
    func folds() throws {
        let c = conversation(20)
        let room = 2048 - 512
        #expect(c.tokens > room * 3 / 4)
        let plan = try #require(Compaction.plan(c, context: 2048, replyTokens: 512, summarizerContext: 4096))
        // It ends on an answer: a question is never folded without its answer.
        let last = try #require(c.turns.firstIndex { $0.id == plan.through })
        #expect(c.turns[last].message.role == .assistant)
        #expect(plan.folded == last + 1)
        let left = Conversation(turns: Array(c.turns[(last + 1)...]))
        #expect(left.tokens <= room / 3)
        // One exchange fewer would have left more than a third.
        #expect(Conversation(turns: Array(c.turns[(last - 1)...])).tokens > room / 3)
        #expect(plan.through < c.turns[c.turns.count - 2].id)
        // The request: the instruction, then every folded turn in order, and nothing after them.
        #expect(plan.request.map(\.role) == [.system, .user])
        let transcript = plan.request[1].content
        #expect(transcript.contains("User: q0w0 ") && transcript.contains("Assistant: answer \(last / 2)"))
        #expect(!transcript.contains("q\(last / 2 + 1)w0"))
        #expect(plan.maxTokens == Compaction.summaryTokens)
    }

    @Test("the summary so far is folded again with the turns after it")
    func refolds() throws {
        let c = conversation(20, summary: "The user is Ada; her box is in Lyon.")
        let plan = try #require(Compaction.plan(c, context: 2048, replyTokens: 512, summarizerContext: 4096))
        #expect(plan.request[1].content.contains("Summary so far: The user is Ada; her box is in Lyon."))
        #expect(c.system("Be brief.") == "Be brief.\n\nSummary of the conversation so far: The user is Ada; her box is in Lyon.")
        #expect(c.system(nil) == "Summary of the conversation so far: The user is Ada; her box is in Lyon.")
        #expect(Conversation().system("Be brief.") == "Be brief.")
    }

    @Test("a backlog larger than the summariser's context is folded in parts, each request within that context")
    func parts() throws {
        var c = conversation(40)
        let summarizer = 1024
        var rounds = 0
        while let plan = Compaction.plan(c, context: 2048, replyTokens: 512, summarizerContext: summarizer) {
            #expect(TokenEstimate.tokens(plan.request) + plan.maxTokens <= summarizer)
            #expect(plan.maxTokens == summarizer / 8)
            c = Conversation(summary: "summary \(rounds)", turns: c.turns.filter { $0.id > plan.through })
            rounds += 1
            if rounds > 40 { break }
        }
        #expect(rounds > 1 && rounds <= 40)
        #expect(c.tokens <= (2048 - 512) * 3 / 4)
        #expect(c.turns.count >= 2)
    }

    @Test("one exchange too large for the summariser is not folded (the prompt fit drops it instead)")
    func tooLarge() {
        let c = conversation(3, words: 600)
        #expect(Compaction.plan(c, context: 4096, replyTokens: 1024, summarizerContext: 512) == nil)
    }

    @Test("no room at all: nothing to plan")
    func noRoom() {
        #expect(Compaction.plan(conversation(10), context: 512, replyTokens: 1024, summarizerContext: 4096) == nil)
    }
}

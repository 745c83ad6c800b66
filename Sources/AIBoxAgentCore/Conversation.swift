/// A conversation as agent.db keeps it: a summary of the turns folded away (by the local
/// model), then the turns since, oldest first.
public struct Conversation: Equatable, Sendable {
    /// One kept message and its row in agent.db (folding removes rows up to an id).
    public struct Turn: Equatable, Sendable {
        public var id: Int64
        public var message: ChatMessage
        public init(id: Int64, _ message: ChatMessage) {
            self.id = id
            self.message = message
        }
    }

    public var summary: String?
    public var turns: [Turn]

    public init(summary: String? = nil, turns: [Turn] = []) {
        self.summary = summary
        self.turns = turns
    }

    public var messages: [ChatMessage] { turns.map(\.message) }

    /// The system prompt a request of this conversation sends: the caller's, and the summary
    /// of what was folded (which `PromptFit` never drops, as it never drops the system prompt).
    public func system(_ base: String?) -> String? {
        guard let summary, !summary.isEmpty else { return base }
        let told = "Summary of the conversation so far: " + summary
        guard let base, !base.isEmpty else { return told }
        return base + "\n\n" + told
    }

    /// Estimated tokens of what a prompt of this conversation carries.
    public var tokens: Int {
        (summary.map { TokenEstimate.tokens($0) + 12 } ?? 0) + turns.reduce(0) { $0 + TokenEstimate.tokens($1.message.content) + 4 }
    }
}

/// When and how a conversation is compacted: once it takes more than three quarters of the
/// room the smallest context of its chain leaves for a prompt, its oldest whole exchanges are
/// folded, with the summary before them, into a new summary by the local model, until a third
/// of that room is left to the recent turns. Before this, `PromptFit` dropped the oldest turns
/// unread; after it, a long conversation still remembers what it was about.
public enum Compaction {
    /// The local model's reply allowance for a summary.
    public static let summaryTokens = 256

    /// One folding: the rows up to `through` are replaced by the model's answer to `request`.
    public struct Plan: Equatable, Sendable {
        public var through: Int64
        public var folded: Int
        public var request: [ChatMessage]
        public var maxTokens: Int
    }

    static let instruction =
        "You keep the memory of a chat between a user and an assistant. Summarise the conversation below in a few short sentences: keep names, numbers, facts the user gave, decisions and open questions. Write only the summary."

    /// - Parameters:
    ///   - context: the smallest context (tokens) among the routes the conversation's role may take.
    ///   - replyTokens: the reply allowance of those requests.
    ///   - summarizerContext: the local model's context: the folding request must fit it, so a
    ///     long backlog is folded over several plans, oldest first.
    public static func plan(_ c: Conversation, context: Int, replyTokens: Int, summarizerContext: Int) -> Plan? {
        let room = context - replyTokens
        guard room > 0, c.tokens > room * 3 / 4, c.turns.count > 2 else { return nil }
        let maxTokens = min(summaryTokens, max(32, summarizerContext / 8))
        let requestRoom = summarizerContext - maxTokens - TokenEstimate.tokens(instruction) - 24
        var transcript = c.summary.map { "Summary so far: \($0)\n\n" } ?? ""
        var remaining = c.tokens
        var through: Int64?
        var folded = 0
        var pending = "", pendingTokens = 0, pendingCount = 0
        // Whole exchanges only, and never the last one: the newest question keeps its answer beside it.
        for turn in c.turns.dropLast(2) {
            let line = (turn.message.role == .assistant ? "Assistant: " : "User: ") + turn.message.content + "\n"
            pending += line
            pendingTokens += TokenEstimate.tokens(turn.message.content) + 4
            pendingCount += 1
            guard turn.message.role == .assistant else { continue }
            if TokenEstimate.tokens(transcript + pending) > requestRoom { break }
            transcript += pending
            remaining -= pendingTokens
            through = turn.id
            folded += pendingCount
            pending = ""
            pendingTokens = 0
            pendingCount = 0
            if remaining <= room / 3 { break }
        }
        guard let through else { return nil }
        return Plan(
            through: through, folded: folded,
            request: [ChatMessage(.system, instruction), ChatMessage(.user, "Conversation:\n" + transcript)], maxTokens: maxTokens)
    }
}

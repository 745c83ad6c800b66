import AIBoxAgent
import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// agent.db's channel tables (a restart is a reopening of the file) and the console's
/// `pair` and `owners` through the built binary.
@Suite(.serialized) struct ChannelOwnerTests {
    /// A fresh agent.db in a temporary directory.
    final class Database {
        let dir: String
        var path: String { dir + "/agent.db" }

        init() throws {
            dir = try temporaryDirectory("channels")
        }

        deinit { _ = try? runProgram("/bin/rm", ["-rf", dir]) }

        /// The store as a process opening agent.db sees it (a new connection each time).
        func open(bootID: String = ChannelStore.currentBootID()) throws -> (ChannelStore, Ledger) {
            let ledger = try Ledger(path: path)
            return (try ChannelStore(ledger: ledger, bootID: bootID), ledger)
        }
    }

    static func reply(_ chat: String, _ text: String) -> OutgoingMessage { OutgoingMessage(channel: .telegram, chat: chat, text: text) }

    @Test func aQueuedReplySurvivesARestartAndAChatKeepsItsOrder() throws {
        let db = try Database()
        let now = Clock.monotonic()
        do {
            let (store, _) = try db.open()
            try store.enqueue(Self.reply("A", "first for A"), now: now, wallMS: 1)
            try store.enqueue(Self.reply("A", "second for A"), now: now, wallMS: 2)
            try store.enqueue(Self.reply("B", "only for B"), now: now, wallMS: 3)
        }
        // The agent restarted: the queue is still there.
        let (store, _) = try db.open()
        var due = try store.due(now: now)
        #expect(due.map(\.message.text) == ["first for A", "only for B"])
        // A's first fails: A's second waits behind it; B's goes.
        try store.retryLater(due[0].id, after: .seconds(30), now: now, reason: "HTTP 502")
        try store.markSent(due[1].id)
        #expect(try store.due(now: now + .seconds(29)).isEmpty)
        due = try store.due(now: now + .seconds(30))
        #expect(due.map(\.message.text) == ["first for A"] && due.first?.attempts == 1)
        try store.markSent(due[0].id)
        #expect(try store.due(now: now + .seconds(30)).map(\.message.text) == ["second for A"])
        // Held back in another boot: due at once in this one (its monotonic time means nothing now).
        let (other, _) = try db.open(bootID: "another-boot")
        let id = try #require(try other.due(now: now).first?.id)
        try other.retryLater(id, after: .seconds(3600), now: now, reason: "HTTP 429")
        #expect(try other.due(now: now).isEmpty)
        #expect(try store.due(now: now).map(\.id) == [id])
    }

    @Test func theRetryOfASplitMessageStartsAfterThePartsAlreadySent() throws {
        let db = try Database()
        let now = Clock.monotonic()
        let (store, _) = try db.open()
        try store.enqueue(Self.reply("A", "a long reply in three parts"), now: now, wallMS: 1)
        var q = try #require(try store.due(now: now).first)
        #expect(q.partsSent == 0)
        try store.retryLater(q.id, after: .seconds(1), now: now, reason: "HTTP 429", partsSent: 2)
        q = try #require(try db.open().0.due(now: now + .seconds(1)).first)
        #expect(q.partsSent == 2 && q.attempts == 1)
        // A retry that says nothing of parts (a failure before any) keeps the count.
        try store.retryLater(q.id, after: .seconds(1), now: now, reason: "timed out")
        #expect(try store.due(now: now + .seconds(2)).first?.partsSent == 2)
    }

    @Test func anOwnersMessageTakenInIsHandledOnceAndItsReplyQueuedAsItLeaves() throws {
        let db = try Database()
        let now = Clock.monotonic()
        let m = IncomingMessage(channel: .telegram, id: "500001", chat: "4242", sender: "4242", isDirect: true, text: "hello")
        do {
            let (store, _) = try db.open()
            #expect(try store.take(m, wallMS: 1))
            #expect(try store.take(m, wallMS: 2) == false)  // delivered twice: kept once
        }
        // A restart before it was answered: it is still waiting.
        let (store, _) = try db.open()
        let waiting = try store.waiting()
        #expect(waiting.map(\.message) == [m])
        try store.answer(try #require(waiting.first?.id), with: [Self.reply("4242", "hi there")], now: now, wallMS: 3)
        #expect(try store.waiting().isEmpty)
        #expect(try store.due(now: now).map(\.message.text) == ["hi there"])
        #expect(try store.take(m, wallMS: 4) == false)  // and a late duplicate is still one
    }

    @Test func aMessageIsGivenUpAfterItsAttemptsAndKeptAsFailed() throws {
        let db = try Database()
        let (store, _) = try db.open()
        var now = Clock.monotonic()
        let id = try store.enqueue(Self.reply("C", "never delivered"), now: now, wallMS: 1)
        try store.enqueue(OutgoingMessage(channel: .slack, chat: "D", text: "refused"), now: now, wallMS: 1)
        for _ in 0..<ChannelStore.maxAttempts {
            #expect(try store.due(now: now, channel: .telegram).map(\.id) == [id])
            try store.retryLater(id, after: .seconds(1), now: now, reason: "timed out")
            now = now + .seconds(1)
        }
        #expect(try store.due(now: now, channel: .telegram).isEmpty)
        let refused = try #require(try store.due(now: now, channel: .slack).first)
        try store.retryLater(refused.id, after: .seconds(1), now: now, reason: "channel_not_found", giveUp: true)
        let counts = try store.queueCounts()
        #expect(counts[.telegram]?.failed == 1 && counts[.telegram]?.queued == 0)
        #expect(counts[.slack]?.failed == 1)
    }

    @Test func deliveriesAreDeduplicatedAcrossARestartWithinBounds() throws {
        let db = try Database()
        let day: Int64 = 86_400_000
        let wall = Clock.wallMilliseconds()
        do {
            let (store, _) = try db.open()
            #expect(try store.firstSeen(.telegram, id: "1001", wallMS: wall))
            #expect(try !store.firstSeen(.telegram, id: "1001", wallMS: wall))
            #expect(try store.firstSeen(.discord, id: "1001", wallMS: wall))
        }
        let (store, _) = try db.open()
        #expect(try !store.firstSeen(.telegram, id: "1001", wallMS: wall + 1000))
        // Eight days on, the id is forgotten (a service redelivers within hours, not days).
        #expect(try store.firstSeen(.slack, id: "old", wallMS: wall - 8 * day))
        #expect(try store.firstSeen(.slack, id: "new", wallMS: wall))
        #expect(try store.firstSeen(.slack, id: "old", wallMS: wall))
        // A flood of ids: the newest 10,000 are kept, no more.
        for i in 0..<(ChannelStore.seenLimit + 50) { _ = try store.firstSeen(.whatsapp, id: "wamid.\(i)", wallMS: wall) }
        #expect(try store.seenCount() <= ChannelStore.seenLimit)
        #expect(try !store.firstSeen(.whatsapp, id: "wamid.\(ChannelStore.seenLimit + 49)", wallMS: wall))
    }

    /// A box with Telegram (one owner in box.toml) and Discord (none).
    static func channelBox() throws -> AgentBox {
        let box = try AgentBox()
        try box.configure(
            """
            [channels.telegram]
            token-secret = "channel.telegram.token"
            owners = ["111111"]

            [channels.discord]
            token-secret = "channel.discord.token"

            """)
        return box
    }

    @Test func pairingFromTheConsoleMakesTheSenderAnOwnerOnce() throws {
        let box = try Self.channelBox()
        let pair = try box.agent(["pair", "telegram", "--json"])
        #expect(pair.code == 0, "\(pair.stderr)")
        let code = try #require(pair.json["code"] as? String)
        #expect(code.count == 8 && pair.json["validSeconds"] as? Int == 600)
        let text = try box.agent(["pair", "telegram"])
        #expect(text.stdout.contains("Pairing code for telegram: ") && text.stdout.contains("valid 10 minutes"))
        // Each new code replaces the last.
        let second = try #require(try box.agent(["pair", "telegram", "--json"]).json["code"] as? String)
        #expect(second != code)

        // The worker's side: agent.db has the code; a stranger's guess, then the code.
        let ledger = try Ledger(path: box.paths.agentDatabase)
        let store = try ChannelStore(ledger: ledger)
        let config = try BoxConfig.parse(
            text: String(decoding: try readRegularFile(box.paths.boxConfig, limit: 1 << 20), as: UTF8.self), path: "box.toml"
        ).get()
        var limiter = StrangerLimiter()
        func message(_ text: String, from sender: String) -> IncomingMessage {
            IncomingMessage(channel: .telegram, id: "u\(sender)", chat: sender, sender: sender, isDirect: true, text: text)
        }
        let now = Clock.monotonic(), wall = Clock.wallMilliseconds()
        #expect(
            try store.admit(
                message("111111 says hi", from: "111111"), config: config.channels, limiter: &limiter, ledger: ledger, now: now,
                wallMS: wall) == .handle)
        guard
            case .ignore(let wrong) = try store.admit(
                message("my secret guess", from: "666"), config: config.channels, limiter: &limiter, ledger: ledger, now: now, wallMS: wall),
            wrong.reason == .wrongCode
        else {
            Issue.record("a wrong code was not ignored as one")
            return
        }
        #expect(
            try store.admit(message(code, from: "555"), config: config.channels, limiter: &limiter, ledger: ledger, now: now, wallMS: wall)
                != .paired(sender: "555"))
        #expect(
            try store.admit(
                message(second, from: "555"), config: config.channels, limiter: &limiter, ledger: ledger, now: now, wallMS: wall)
                == .paired(sender: "555"))
        #expect(
            try store.admit(
                message(second, from: "777"), config: config.channels, limiter: &limiter, ledger: ledger, now: now, wallMS: wall)
                != .paired(sender: "777"))
        #expect(
            try store.admit(
                message("hello", from: "555"), config: config.channels, limiter: &limiter, ledger: ledger, now: now, wallMS: wall)
                == .handle)
        // Events say who and why, never what was written.
        let events = try box.events().compactMap { $0["message"] as? String }
        #expect(events.contains("telegram: ignored a message from 666 (a wrong pairing code)"))
        #expect(events.contains("telegram: 555 paired and is an owner now"))
        #expect(!events.joined().contains("my secret guess"))

        // owners lists both, and Discord as a channel nobody can use yet.
        let owners = try box.agent(["owners", "--json"])
        let list = try #require(owners.json["owners"] as? [[String: Any]])
        #expect(list.map { "\($0["channel"]!):\($0["id"]!):\($0["source"]!)" } == ["telegram:111111:box.toml", "telegram:555:paired"])
        #expect(owners.json["channelsWithoutOwners"] as? [String] == ["discord"])
        let plain = try box.agent(["owners"])
        #expect(plain.stdout.contains("discord: no owner; nobody can use it until someone pairs (aibox-agent pair discord)"))

        // box.toml's owner is not revoked here; the paired one is.
        let refused = try box.agent(["owners", "revoke", "telegram", "111111"])
        #expect(refused.code == 1 && refused.stderr.contains("remove it there: `aibox setup`, or edit owners in [channels.telegram]"))
        let revoked = try box.agent(["owners", "revoke", "telegram", "555"])
        #expect(revoked.code == 0 && revoked.stdout == "telegram: 555 is no longer an owner.\n")
        #expect(try store.owners(.telegram, config: config.channels) == ["111111"])
        let again = try box.agent(["owners", "revoke", "telegram", "555"])
        #expect(again.code == 1 && again.stderr.contains("555 is not an owner of telegram"))
    }

    @Test func pairNamesWhatIsWrongWithTheChannel() throws {
        let box = try Self.channelBox()
        let unknown = try box.agent(["pair", "signal"])
        #expect(unknown.code == 2 && unknown.stderr.contains("no channel \"signal\"; the channels are telegram, slack, discord, whatsapp"))
        let absent = try box.agent(["pair", "slack"])
        #expect(absent.code == 2 && absent.stderr.contains("slack is not set up in") && absent.stderr.contains("`aibox setup`"))
    }

    @Test func aCodeOfAnotherBootIsVoid() throws {
        let db = try Database()
        let (store, _) = try db.open(bootID: "boot-1")
        var random = SystemRandomNumberGenerator()
        var pairing = Pairing()
        let now = Clock.monotonic()
        try store.savePairing(.slack, pairing.issue(.slack, now: now, using: &random), wallMS: 1)
        #expect(try store.pairing(now: now).pending(.slack, now: now) != nil)
        let (rebooted, _) = try db.open(bootID: "boot-2")
        #expect(try rebooted.pairing(now: now).codes.isEmpty)
        #expect(try store.pairing(now: now).codes.isEmpty)
    }
}

import AIBoxCore
import Testing

@testable import AIBoxAgentCore

@Suite("owners, pairing and chat commands")
struct OwnersTests {
    static let t0 = Instant(nanoseconds: 1_000_000_000_000)
    static func at(_ seconds: Double) -> Instant { t0 + .nanoseconds(Int64(seconds * 1e9)) }

    static func message(_ text: String, from sender: String = "555", direct: Bool = true, channel: ChannelKind = .telegram)
        -> IncomingMessage
    {
        IncomingMessage(channel: channel, id: "1", chat: sender, sender: sender, isDirect: direct, text: text)
    }

    // MARK: Codes

    @Test func codesAreEightUnambiguousCharactersAndDifferEachTime() {
        var random = SplitMix64(seed: 7)
        var pairing = Pairing()
        var seen: Set<String> = []
        for _ in 0..<200 {
            let c = pairing.issue(.telegram, now: Self.t0, using: &random)
            #expect(c.code.count == 8)
            #expect(c.code.allSatisfy { OneTimeCode.alphabet.contains($0) })
            #expect(c.expires == Self.t0 + Pairing.validity)
            seen.insert(c.code)
        }
        #expect(seen.count == 200)
        for ambiguous in "0O1IL5S2Z8B" { #expect(!OneTimeCode.alphabet.contains(ambiguous)) }
    }

    @Test func aCodeIsSingleUseAndOnlyOnItsChannel() {
        var random = SplitMix64(seed: 1)
        var pairing = Pairing()
        let c = pairing.issue(.telegram, now: Self.t0, using: &random)
        let r1 = pairing.consume(.slack, text: c.code, now: Self.at(1))
        #expect(!r1)
        // Typed in lower case with a space, or after /start (Telegram's deep link): the same code.
        let typed = c.code.lowercased().prefix(4) + " " + c.code.lowercased().dropFirst(4)
        let r2 = pairing.consume(.telegram, text: "/start " + typed, now: Self.at(1))
        #expect(r2)
        let r3 = pairing.consume(.telegram, text: c.code, now: Self.at(2))
        #expect(!r3)
        #expect(pairing.pending(.telegram, now: Self.at(2)) == nil)
    }

    @Test func aCodeExpiresOnTheMonotonicClock() {
        var random = SplitMix64(seed: 2)
        var pairing = Pairing()
        let c = pairing.issue(.discord, now: Self.t0, using: &random)
        #expect(pairing.pending(.discord, now: Self.at(599)) == c)
        #expect(pairing.pending(.discord, now: Self.at(600)) == nil)
        let r4 = pairing.consume(.discord, text: c.code, now: Self.at(600))
        #expect(!r4)
        #expect(pairing.codes.isEmpty)
    }

    @Test func aNewCodeReplacesTheOldOne() {
        var random = SplitMix64(seed: 3)
        var pairing = Pairing()
        let first = pairing.issue(.telegram, now: Self.t0, using: &random)
        let second = pairing.issue(.telegram, now: Self.at(10), using: &random)
        #expect(first.code != second.code)
        let r5 = pairing.consume(.telegram, text: first.code, now: Self.at(11))
        #expect(!r5)
        let r6 = pairing.consume(.telegram, text: second.code, now: Self.at(11))
        #expect(r6)
    }

    // MARK: The gate

    @Test func ownersPassStrangersAreIgnoredAndTheCodePairs() {
        var random = SplitMix64(seed: 4)
        var pairing = Pairing()
        var limiter = StrangerLimiter()
        let owners: Set<String> = ["111"]
        #expect(
            OwnerGate.decide(Self.message("hi", from: "111"), owners: owners, pairing: &pairing, now: Self.t0, limiter: &limiter) == .handle
        )
        guard case .ignore(let i) = OwnerGate.decide(Self.message("hi"), owners: owners, pairing: &pairing, now: Self.t0, limiter: &limiter)
        else {
            Issue.record("a stranger was let through")
            return
        }
        #expect(i.reason == .stranger && i.record)
        #expect(i.eventText(Self.message("secret words")) == "telegram: ignored a message from 555 (not an owner)")

        let code = pairing.issue(.telegram, now: Self.t0, using: &random).code
        // A wrong code: ignored like any stranger, and the right code still works after.
        guard
            case .ignore(let w) = OwnerGate.decide(
                Self.message("AAAAAAAA"), owners: owners, pairing: &pairing, now: Self.at(1), limiter: &limiter)
        else {
            Issue.record("a wrong code was taken")
            return
        }
        #expect(w.reason == .wrongCode)
        // The code in a group is not taken (anyone in the group would see it).
        #expect(
            OwnerGate.decide(
                Self.message(code, from: "556", direct: false), owners: owners, pairing: &pairing, now: Self.at(1), limiter: &limiter)
                != .paired(sender: "556"))
        #expect(
            OwnerGate.decide(Self.message(code), owners: owners, pairing: &pairing, now: Self.at(2), limiter: &limiter)
                == .paired(sender: "555"))
        // Used up: a second sender with the same code is a stranger.
        guard
            case .ignore = OwnerGate.decide(
                Self.message(code, from: "777"), owners: owners, pairing: &pairing, now: Self.at(3), limiter: &limiter)
        else {
            Issue.record("a used code paired again")
            return
        }
    }

    @Test func aStrangerIsRateLimitedAndSoAreTheEvents() {
        var pairing = Pairing()
        var limiter = StrangerLimiter()
        var reasons: [IgnoredMessage.Reason] = []
        var recorded = 0
        for i in 0..<100 {
            if case .ignore(let m) = OwnerGate.decide(
                Self.message("x"), owners: [], pairing: &pairing, now: Self.at(Double(i) / 10), limiter: &limiter)
            {
                reasons.append(m.reason)
                if m.record { recorded += 1 }
            }
        }
        #expect(reasons.count == 100)
        #expect(reasons.prefix(3).allSatisfy { $0 == .stranger })
        #expect(reasons.dropFirst(3).allSatisfy { $0 == .rateLimited })
        #expect(recorded == 10)
        // A minute later the next event says how many went unrecorded.
        if case .ignore(let m) = OwnerGate.decide(Self.message("x"), owners: [], pairing: &pairing, now: Self.at(80), limiter: &limiter) {
            #expect(m.record && m.skipped == 90)
            #expect(m.eventText(Self.message("x")).hasSuffix("; 90 more not recorded"))
        } else {
            Issue.record("let through")
        }
    }

    @Test func aFloodFromEverNewSendersIsBoundedInMemoryAndByTheChannelBucket() {
        var pairing = Pairing()
        var random = SplitMix64(seed: 5)
        let code = pairing.issue(.telegram, now: Self.t0, using: &random).code
        var limiter = StrangerLimiter(rules: .init(maxSenders: 64))
        var looked = 0
        for i in 0..<10_000 {
            let d = OwnerGate.decide(
                Self.message("guess\(i)", from: "\(1000 + i)"), owners: [], pairing: &pairing, now: Self.at(Double(i) / 1000),
                limiter: &limiter)
            if case .ignore(let m) = d, m.reason == .wrongCode { looked += 1 }
            #expect(limiter.rememberedSenders <= 64)
        }
        // Ten seconds of flood: the channel's bucket (20, then one per 6 s) let a handful be looked at.
        #expect(looked >= 20 && looked <= 22)
        // The owner-to-be, sending the code once the flood has passed, still pairs.
        #expect(
            OwnerGate.decide(Self.message(code, from: "42"), owners: [], pairing: &pairing, now: Self.at(400), limiter: &limiter)
                == .paired(sender: "42"))
    }

    // MARK: Commands

    @Test(
        "the command table",
        arguments: [
            ("/status", ChatCommand.Parsed.command(.status)),
            ("/STATUS", .command(.status)),
            ("/status@aibox_kitchen_bot", .command(.status)),
            ("  /workers", .command(.workers)),
            ("/restart llm-local", .command(.restart(worker: "llm-local"))),
            ("/logs llm-local", .command(.logs(worker: "llm-local", lines: 20))),
            ("/logs llm-local 50", .command(.logs(worker: "llm-local", lines: 50))),
            ("/budget", .command(.budget)),
            ("/model chat openai/gpt-4o-mini", .command(.model(role: .chat, route: Route(provider: "openai", model: "gpt-4o-mini")))),
            ("/model Code local/qwen/2.5", .command(.model(role: .code, route: Route(provider: "local", model: "qwen/2.5")))),
            ("/model chat default", .command(.model(role: .chat, route: nil))),
            ("/update check", .command(.updateCheck)),
            ("/update install", .command(.updateInstall(confirmation: nil))),
            ("/update install k7p-2xq", .command(.updateInstall(confirmation: "K7P2XQ"))),
            ("/help", .command(.help)),
            ("/start", .command(.help)),
            ("hello /status", .text),
            ("what is 2/3?", .text),
        ])
    func parses(_ text: String, _ expected: ChatCommand.Parsed) {
        #expect(ChatCommand.parse(text) == expected)
    }

    @Test(
        "misused commands say what is right",
        arguments: [
            ("/restart", "Usage: /restart WORKER"),
            ("/restart ../etc", "is not a worker name"),
            ("/logs w 0", "N is a number of lines from 1 to 200"),
            ("/logs w 201", "N is a number of lines from 1 to 200"),
            ("/logs w many", "N is a number of lines"),
            ("/model chat", "Usage: /model ROLE PROVIDER/MODEL"),
            ("/model poetry openai/gpt-4o", "\"poetry\" is not a role"),
            ("/model chat gpt-4o", "is not PROVIDER/MODEL"),
            ("/update", "say check or install"),
            ("/status now", "/status takes nothing after it"),
            ("/reboot", "There is no command /reboot"),
        ])
    func refuses(_ text: String, _ fragment: String) {
        guard case .invalid(let reply) = ChatCommand.parse(text) else {
            Issue.record("\(text) was taken")
            return
        }
        #expect(reply.contains(fragment), "\(reply)")
    }

    @Test func anUnknownCommandAnswersWithTheHelp() {
        guard case .invalid(let reply) = ChatCommand.parse("/x") else {
            Issue.record("taken")
            return
        }
        #expect(reply.contains("/restart WORKER") && reply.contains("/update install"))
    }

    @Test func commandsComeFromDirectMessagesOnly() {
        #expect(OwnerIntent.of(Self.message("/restart web")) == .command(.restart(worker: "web")))
        #expect(OwnerIntent.of(Self.message("/restart web", direct: false)) == .reply("Commands are taken in a direct message to me only."))
        #expect(OwnerIntent.of(Self.message("/nonsense", direct: false)) == .reply("Commands are taken in a direct message to me only."))
        #expect(OwnerIntent.of(Self.message("how warm is it?", direct: false)) == .conversation)
        #expect(OwnerIntent.of(Self.message("how warm is it?")) == .conversation)
    }

    @Test func anUpdateConfirmationIsPerChatSingleUseAndExpires() {
        var random = SplitMix64(seed: 6)
        var c = Confirmations()
        let code = c.issue("telegram:1", now: Self.t0, using: &random).code
        #expect(code.count == 6)
        let r7 = c.confirm("telegram:2", typed: code, now: Self.at(1))
        #expect(!r7)
        let r8 = c.confirm("telegram:1", typed: code.lowercased(), now: Self.at(1))
        #expect(r8)
        let r9 = c.confirm("telegram:1", typed: code, now: Self.at(2))
        #expect(!r9)
        // A wrong attempt uses the code up; a late one fails.
        let again = c.issue("telegram:1", now: Self.t0, using: &random).code
        let r10 = c.confirm("telegram:1", typed: "AAAAAA", now: Self.at(1))
        #expect(!r10)
        let r11 = c.confirm("telegram:1", typed: again, now: Self.at(1))
        #expect(!r11)
        let late = c.issue("telegram:1", now: Self.t0, using: &random).code
        let r12 = c.confirm("telegram:1", typed: late, now: Self.at(300))
        #expect(!r12)
    }

    @Test func ownersOfEachConfiguredChannel() {
        let channels = ChannelsConfig(
            telegram: TelegramChannel(owners: ["123"]),
            whatsapp: WhatsAppChannel(phoneNumberId: "106540352242922", owners: ["4915112345678"]))
        #expect(channels.configured == [.telegram, .whatsapp])
        #expect(channels.owners(.telegram) == ["123"])
        #expect(channels.owners(.whatsapp) == ["4915112345678"])
        #expect(channels.owners(.slack) == [])
    }
}

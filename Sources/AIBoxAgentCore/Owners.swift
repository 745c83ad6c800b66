import AIBoxCore

// Who may use the box over a channel (issue 11): owners from box.toml and from pairing, the
// gate every incoming message passes before anything else looks at it, and the commands an
// owner gives in a direct message. Pure: the clock and randomness are passed in.

extension ChannelsConfig {
    /// The owners box.toml lists for a channel (none when the channel is not configured).
    public func owners(_ kind: ChannelKind) -> [String] {
        switch kind {
        case .telegram: return telegram?.owners ?? []
        case .slack: return slack?.owners ?? []
        case .discord: return discord?.owners ?? []
        case .whatsapp: return whatsapp?.owners ?? []
        }
    }

    /// The channels box.toml configures, in `ChannelKind` order.
    public var configured: [ChannelKind] {
        ChannelKind.allCases.filter {
            switch $0 {
            case .telegram: return telegram != nil
            case .slack: return slack != nil
            case .discord: return discord != nil
            case .whatsapp: return whatsapp != nil
            }
        }
    }
}

/// A one-time code: typed by a person into a chat app (a pairing code, an update's
/// confirmation), valid until `expires` on the monotonic clock, good for one use.
public struct OneTimeCode: Equatable, Sendable {
    public var code: String
    public var expires: Instant

    public init(code: String, expires: Instant) {
        self.code = code
        self.expires = expires
    }

    /// Letters and digits nobody mistakes for one another on a phone: no 0/O, 1/I/L, 5/S, 2/Z, 8/B.
    public static let alphabet: [Character] = Array("ACDEFGHJKMNPQRTUVWXY34679")

    /// A fresh code of `length` characters from `alphabet`.
    public static func make(length: Int, using random: inout some RandomNumberGenerator) -> String {
        String((0..<length).map { _ in alphabet[Int(random.next(upperBound: UInt64(alphabet.count)))] })
    }

    /// What a person typed, as a code: upper case, without spaces and dashes.
    public static func normalized(_ text: String) -> String {
        String(text.uppercased().filter { $0 != " " && $0 != "-" && $0 != "\t" && $0 != "\n" && $0 != "\r" })
    }

    /// Whether `typed` is this code, still valid at `now`. The comparison takes the same time
    /// whatever the first wrong character (a code is not to be guessed character by character).
    public func matches(_ typed: String, now: Instant) -> Bool {
        guard now < expires else { return false }
        let a = Array(OneTimeCode.normalized(typed).utf8), b = Array(code.utf8)
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}

/// Pairing codes: `aibox-agent pair CHANNEL` issues one, the would-be owner sends it to the
/// bot in a direct message, and the sender becomes an owner. One code per channel at a time
/// (a new one replaces the old), valid `validity` on the monotonic clock, consumed on use.
public struct Pairing: Equatable, Sendable {
    public static let codeLength = 8
    public static let validity: Duration = .seconds(10 * 60)

    public private(set) var codes: [ChannelKind: OneTimeCode]

    public init(codes: [ChannelKind: OneTimeCode] = [:]) { self.codes = codes }

    /// A new code for `channel`, replacing any earlier one.
    public mutating func issue(_ channel: ChannelKind, now: Instant, using random: inout some RandomNumberGenerator) -> OneTimeCode {
        let c = OneTimeCode(code: OneTimeCode.make(length: Pairing.codeLength, using: &random), expires: now + Pairing.validity)
        codes[channel] = c
        return c
    }

    /// The code waiting on `channel`, if it is still valid.
    public func pending(_ channel: ChannelKind, now: Instant) -> OneTimeCode? {
        codes[channel].flatMap { now < $0.expires ? $0 : nil }
    }

    /// Whether `text` is the channel's code: if so it is used up. Expired codes are dropped.
    public mutating func consume(_ channel: ChannelKind, text: String, now: Instant) -> Bool {
        guard let c = codes[channel] else { return false }
        if now >= c.expires {
            codes[channel] = nil
            return false
        }
        guard c.matches(Pairing.codeText(text), now: now) else { return false }
        codes[channel] = nil
        return true
    }

    /// The code in a message: the text itself, or what follows `/pair` or `/start` (a Telegram
    /// deep link `t.me/bot?start=CODE` sends `/start CODE`).
    public static func codeText(_ text: String) -> String {
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" })
        if words.count >= 2, let w = words.first.map({ $0.lowercased() }), w == "/pair" || w == "/start" {
            return words.dropFirst().joined()
        }
        return text
    }
}

/// A token bucket: up to `capacity` at once, refilled at `perSecond`.
public struct TokenBucket: Equatable, Sendable {
    public var capacity: Double
    public var perSecond: Double
    public private(set) var tokens: Double
    public private(set) var last: Instant

    public init(capacity: Double, perSecond: Double, now: Instant) {
        self.capacity = capacity
        self.perSecond = perSecond
        tokens = capacity
        last = now
    }

    /// Takes one token if there is one.
    public mutating func take(now: Instant) -> Bool {
        if now > last {
            tokens = min(capacity, tokens + Double(now.since(last).nanoseconds) / 1e9 * perSecond)
            last = now
        }
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}

/// How much a channel listens to people who are not its owners: a bucket per sender (at most
/// `maxSenders` remembered: the one heard of longest ago is forgotten first, so a flood from
/// ever new ids cannot grow memory) and one for the whole channel; events about them are
/// rate-limited too, and those not written are counted.
public struct StrangerLimiter: Sendable {
    public struct Rules: Sendable, Equatable {
        public var perSender: (capacity: Double, perSecond: Double)
        public var perChannel: (capacity: Double, perSecond: Double)
        public var events: (capacity: Double, perSecond: Double)
        public var maxSenders: Int

        public init(
            perSender: (Double, Double) = (3, 1.0 / 60), perChannel: (Double, Double) = (20, 1.0 / 6),
            events: (Double, Double) = (10, 1.0 / 60), maxSenders: Int = 1024
        ) {
            self.perSender = perSender
            self.perChannel = perChannel
            self.events = events
            self.maxSenders = maxSenders
        }

        public static func == (a: Rules, b: Rules) -> Bool {
            a.perSender == b.perSender && a.perChannel == b.perChannel && a.events == b.events && a.maxSenders == b.maxSenders
        }
    }

    public let rules: Rules
    var senders: [String: TokenBucket] = [:]
    var channels: [ChannelKind: TokenBucket] = [:]
    var events: [ChannelKind: TokenBucket] = [:]
    /// Events not written since the last one that was, per channel.
    var unrecorded: [ChannelKind: Int] = [:]

    public init(rules: Rules = Rules()) { self.rules = rules }

    /// How many senders are remembered now (never more than `rules.maxSenders`).
    public var rememberedSenders: Int { senders.count }

    /// Whether a stranger's message is looked at at all (a pairing code is checked only then).
    public mutating func admit(_ channel: ChannelKind, sender: String, now: Instant) -> Bool {
        let key = channel.rawValue + "\u{0}" + sender
        var bucket = senders[key] ?? TokenBucket(capacity: rules.perSender.capacity, perSecond: rules.perSender.perSecond, now: now)
        if senders[key] == nil && senders.count >= rules.maxSenders, let oldest = senders.min(by: { $0.value.last < $1.value.last })?.key {
            senders[oldest] = nil
        }
        let own = bucket.take(now: now)
        senders[key] = bucket
        var whole = channels[channel] ?? TokenBucket(capacity: rules.perChannel.capacity, perSecond: rules.perChannel.perSecond, now: now)
        // The channel's bucket is spent only by messages the sender's own bucket let through.
        let all = own && whole.take(now: now)
        channels[channel] = whole
        return all
    }

    /// Whether an event about an ignored message is written; if so, how many were not since
    /// the last one written (to be said in it).
    public mutating func recordEvent(_ channel: ChannelKind, now: Instant) -> (record: Bool, skipped: Int) {
        var bucket = events[channel] ?? TokenBucket(capacity: rules.events.capacity, perSecond: rules.events.perSecond, now: now)
        let ok = bucket.take(now: now)
        events[channel] = bucket
        guard ok else {
            unrecorded[channel, default: 0] += 1
            return (false, 0)
        }
        let skipped = unrecorded[channel] ?? 0
        unrecorded[channel] = 0
        return (true, skipped)
    }
}

/// Why a message was ignored, for the event (never its text: a stranger's words are not logged).
public struct IgnoredMessage: Equatable, Sendable {
    public enum Reason: String, Sendable {
        /// The sender is not an owner (and sent no pairing code).
        case stranger
        /// A code was being waited for and this was not it.
        case wrongCode = "wrong-code"
        /// Too many messages from this sender or on this channel.
        case rateLimited = "rate-limited"
    }

    public var reason: Reason
    /// Whether an event is written about it (events are rate-limited too).
    public var record: Bool
    /// Ignored messages on the channel not written as events since the last one.
    public var skipped: Int

    public init(reason: Reason, record: Bool, skipped: Int) {
        self.reason = reason
        self.record = record
        self.skipped = skipped
    }

    /// The event's text: the channel, the sender's id, why — never the message.
    public func eventText(_ m: IncomingMessage) -> String {
        let why: String
        switch reason {
        case .stranger: why = "not an owner"
        case .wrongCode: why = "a wrong pairing code"
        case .rateLimited: why = "rate-limited"
        }
        return "\(m.channel.rawValue): ignored a message from \(m.sender) (\(why))"
            + (skipped > 0 ? "; \(skipped) more not recorded" : "")
    }
}

/// What becomes of an incoming message.
public enum GateDecision: Equatable, Sendable {
    /// From an owner: on to commands or the conversation.
    case handle
    /// It carried the channel's pairing code: the sender is an owner from now on (the code is used up).
    case paired(sender: String)
    /// No answer, no model call.
    case ignore(IgnoredMessage)
}

/// The gate every incoming message passes first.
public enum OwnerGate {
    /// Owners are handled; anyone else is looked at only within the rate limits, and only to
    /// see whether a direct message is the channel's pending pairing code (then it is used up).
    /// Anything else is ignored: no answer at all, no model call.
    public static func decide(
        _ m: IncomingMessage, owners: Set<String>, pairing: inout Pairing, now: Instant, limiter: inout StrangerLimiter
    ) -> GateDecision {
        if owners.contains(m.sender) { return .handle }
        func ignore(_ r: IgnoredMessage.Reason) -> GateDecision {
            let (record, skipped) = limiter.recordEvent(m.channel, now: now)
            return .ignore(IgnoredMessage(reason: r, record: record, skipped: skipped))
        }
        guard limiter.admit(m.channel, sender: m.sender, now: now) else { return ignore(.rateLimited) }
        guard m.isDirect, pairing.pending(m.channel, now: now) != nil else { return ignore(.stranger) }
        return pairing.consume(m.channel, text: m.text, now: now) ? .paired(sender: m.sender) : ignore(.wrongCode)
    }
}

/// A command an owner sends in a direct message, taken before any model sees the text.
public enum ChatCommand: Equatable, Sendable {
    case status
    case workers
    case restart(worker: String)
    case logs(worker: String, lines: Int)
    case budget
    /// A temporary override of a role's chain; nil: back to box.toml's.
    case model(role: LLMRole, route: Route?)
    case updateCheck
    /// Without a code: asks for confirmation (the reply holds a code); with one: installs if it is the code issued.
    case updateInstall(confirmation: String?)
    case help

    public static let defaultLogLines = 20
    public static let logLines = 1...200

    /// What `parse` makes of a message.
    public enum Parsed: Equatable, Sendable {
        case command(ChatCommand)
        /// A command misspelt or misused: the reply says what is right.
        case invalid(reply: String)
        /// Not a command: a conversation.
        case text
    }

    public static let helpText = """
        Commands (in a direct message):
        /status — the box at a glance
        /workers — each worker's state
        /restart WORKER — restart a worker
        /logs WORKER [N] — its last N log lines (default 20, at most 200)
        /budget — cloud spending today and this month
        /model ROLE PROVIDER/MODEL — use that model for chat, code or reasoning until the agent restarts (/model ROLE default: back to box.toml's)
        /update check — is there an update?
        /update install — install it (asks for a confirmation code first)
        /help — this list
        Anything else is a question for the assistant.
        """

    /// Reads a message: a command when it starts with '/'. Names are case-insensitive, and
    /// Telegram's `/status@botname` form is taken as `/status`.
    public static func parse(_ text: String) -> Parsed {
        let trimmed = text.drop(while: { $0 == " " || $0 == "\n" || $0 == "\t" })
        guard trimmed.first == "/" else { return .text }
        let words = trimmed.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }).map(String.init)
        guard let first = words.first else { return .text }
        let name = String(first.dropFirst().prefix { $0 != "@" }).lowercased()
        let args = Array(words.dropFirst())
        func usage(_ u: String, _ why: String) -> Parsed { .invalid(reply: "\(why). Usage: \(u)") }
        switch name {
        case "status", "workers", "budget", "help", "start":
            guard args.isEmpty else { return usage("/\(name)", "/\(name) takes nothing after it") }
            switch name {
            case "status": return .command(.status)
            case "workers": return .command(.workers)
            case "budget": return .command(.budget)
            default: return .command(.help)
            }
        case "restart":
            guard args.count == 1 else { return usage("/restart WORKER", "name one worker") }
            guard WorkerDefinition.isValidName(args[0]) else {
                return usage("/restart WORKER", "\"\(clip(args[0]))\" is not a worker name (a-z, 0-9 and '-'; /workers lists them)")
            }
            return .command(.restart(worker: args[0]))
        case "logs":
            guard (1...2).contains(args.count) else { return usage("/logs WORKER [N]", "name one worker, and how many lines if not 20") }
            guard WorkerDefinition.isValidName(args[0]) else {
                return usage("/logs WORKER [N]", "\"\(clip(args[0]))\" is not a worker name (a-z, 0-9 and '-'; /workers lists them)")
            }
            var n = defaultLogLines
            if args.count == 2 {
                guard let v = Int(args[1]), logLines.contains(v) else {
                    return usage("/logs WORKER [N]", "N is a number of lines from \(logLines.lowerBound) to \(logLines.upperBound)")
                }
                n = v
            }
            return .command(.logs(worker: args[0], lines: n))
        case "model":
            let u = "/model ROLE PROVIDER/MODEL (ROLE: chat, code or reasoning), or /model ROLE default"
            guard args.count == 2 else { return usage(u, "give a role and a model") }
            guard let role = LLMRole(rawValue: args[0].lowercased()) else { return usage(u, "\"\(clip(args[0]))\" is not a role") }
            if args[1].lowercased() == "default" { return .command(.model(role: role, route: nil)) }
            guard let slash = args[1].firstIndex(of: "/"), slash != args[1].startIndex, slash != args[1].index(before: args[1].endIndex)
            else { return usage(u, "\"\(clip(args[1]))\" is not PROVIDER/MODEL") }
            return .command(
                .model(
                    role: role, route: Route(provider: String(args[1][..<slash]), model: String(args[1][args[1].index(after: slash)...]))))
        case "update":
            let u = "/update check, or /update install"
            switch args.first?.lowercased() {
            case "check" where args.count == 1: return .command(.updateCheck)
            case "install" where args.count == 1: return .command(.updateInstall(confirmation: nil))
            case "install" where args.count == 2: return .command(.updateInstall(confirmation: OneTimeCode.normalized(args[1])))
            default: return usage(u, "say check or install")
            }
        default:
            return .invalid(reply: "There is no command /\(clip(name)).\n" + helpText)
        }
    }

    /// A user's word in a reply, cut to 40 characters.
    static func clip(_ s: String) -> String { s.count > 40 ? String(s.prefix(39)) + "…" : s }
}

/// What an owner's message is, once past the gate.
public enum OwnerIntent: Equatable, Sendable {
    case command(ChatCommand)
    /// A reply that needs no command to be run (a usage note, the help text).
    case reply(String)
    /// A conversation through the router.
    case conversation
}

extension OwnerIntent {
    /// Commands are taken from direct messages only; in a group, a command gets a pointer to
    /// the direct chat, and any other text is a conversation.
    public static func of(_ m: IncomingMessage) -> OwnerIntent {
        switch ChatCommand.parse(m.text) {
        case .text: return .conversation
        case .command where !m.isDirect, .invalid where !m.isDirect:
            return .reply("Commands are taken in a direct message to me only.")
        case .command(let c): return .command(c)
        case .invalid(let r): return .reply(r)
        }
    }
}

/// Confirmation codes for commands that change the box (`/update install`): one per chat,
/// valid `validity`, consumed on use.
public struct Confirmations: Equatable, Sendable {
    public static let codeLength = 6
    public static let validity: Duration = .seconds(5 * 60)

    public private(set) var codes: [String: OneTimeCode] = [:]

    public init() {}

    /// A code for `chat` (a conversation key), replacing any earlier one.
    public mutating func issue(_ chat: String, now: Instant, using random: inout some RandomNumberGenerator) -> OneTimeCode {
        let c = OneTimeCode(code: OneTimeCode.make(length: Confirmations.codeLength, using: &random), expires: now + Confirmations.validity)
        codes[chat] = c
        return c
    }

    /// Whether `typed` confirms: the chat's code, in time. Any attempt uses the code up (a
    /// wrong one too: confirming is asked for again).
    public mutating func confirm(_ chat: String, typed: String, now: Instant) -> Bool {
        guard let c = codes.removeValue(forKey: chat) else { return false }
        return c.matches(typed, now: now)
    }
}

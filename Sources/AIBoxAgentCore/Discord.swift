import AIBoxCore
import FoundationEssentials

// Discord's Gateway and REST API as values: the Gateway session as a state machine (events
// in, actions out, the clock and randomness injected), the frames it sends and the parsing of
// what Discord sends. No I/O: DiscordConnection in AIBoxAgent moves the bytes.
//
// The bot token goes in Identify and Resume frames and in REST's Authorization header. So
// actions name the frame to send (`DiscordOutbound`), never its bytes; the adapter encodes it
// with the token at the last moment. No action, state or reason holds the token.

/// What Discord's Gateway sent: one frame `{"op": N, "d": …, "s": N, "t": "NAME"}`.
public enum DiscordInbound: Equatable, Sendable {
    /// op 10 Hello: heartbeat every `interval`.
    case hello(interval: Duration)
    /// op 11 Heartbeat ACK.
    case heartbeatAck
    /// op 1 from Discord: send a heartbeat now.
    case heartbeatRequest
    /// op 0 Dispatch with its sequence number.
    case dispatch(sequence: Int64?, DiscordDispatch)
    /// op 7 Reconnect: reconnect and resume.
    case reconnect
    /// op 9 Invalid Session; `resumable` is its `d`.
    case invalidSession(resumable: Bool)
    /// Anything else (an opcode a client does not get, or a frame not understood).
    case other(String)
}

/// The dispatches the session needs.
public enum DiscordDispatch: Equatable, Sendable {
    /// READY: the session's id and where to resume it.
    case ready(sessionID: String, resumeURL: String)
    /// RESUMED: missed events were replayed.
    case resumed
    /// MESSAGE_CREATE; nil when it is not for the assistant (a bot's, or without text).
    case message(IncomingMessage?)
    /// Any other event (its name).
    case other(String)
}

/// A frame the session sends; the adapter encodes it (`DiscordWire.encode`), adding the token.
public enum DiscordOutbound: Equatable, Sendable {
    /// op 1 with the last sequence number.
    case heartbeat(sequence: Int64?)
    /// op 2 with the token and the intents.
    case identify
    /// op 6 with the token, the session id and the last sequence number.
    case resume(sessionID: String, sequence: Int64?)
}

/// What survives a restart of the agent: the session to resume and the identifies of the
/// last day (wall-clock seconds, for the identify budget).
public struct DiscordSessionRecord: Codable, Equatable, Sendable {
    public var sessionID: String?
    public var sequence: Int64?
    public var resumeURL: String?
    public var identifies: [Int64]

    public init(sessionID: String? = nil, sequence: Int64? = nil, resumeURL: String? = nil, identifies: [Int64] = []) {
        self.sessionID = sessionID
        self.sequence = sequence
        self.resumeURL = resumeURL
        self.identifies = identifies
    }

    /// A session that can be resumed.
    public var resumable: Bool { sessionID != nil && resumeURL != nil }
}

/// How the Gateway lookup (`GET /gateway/bot`) ended.
public enum DiscordLookupResult: Equatable, Sendable {
    case found(url: String)
    /// An HTTP status other than 2xx, with Discord's message.
    case refused(status: Int, message: String)
    /// No answer (`why` holds no token).
    case transport(String)
}

/// What the session asks its adapter to do, in order.
public enum DiscordAction: Equatable, Sendable {
    /// GET /gateway/bot, then report `lookedUp`.
    case lookUpGateway
    /// Open a WebSocket to `url`, then report `connected` (or `closed`); no Hello by
    /// `helloDeadline` is a dead connection (the session's `tick` sees to it).
    case connect(url: String)
    /// Send this frame on the open socket.
    case send(DiscordOutbound)
    /// Close the open socket with `code` (never 1000/1001: the session stays resumable) and
    /// forget it: nothing more from it is reported.
    case close(code: Int)
    /// Hand these messages to the receiver, then call `delivered`.
    case deliver([IncomingMessage])
    /// Store the record durably.
    case persist(DiscordSessionRecord)
    /// The channel's state changed.
    case report(ChannelState)
}

/// The session's timings and limits.
public struct DiscordSettings: Equatable, Sendable {
    /// After a close, a dropped connection or a failed lookup (resume or identify again).
    public var backoff: Backoff
    /// How long a new socket may wait for Hello, and a resume or identify for its answer.
    public var helloTimeout: Duration
    /// Identifies allowed in 24 hours. Discord allows 1000 a day and resets the token of a
    /// bot that goes past it; a healthy box identifies once and then resumes, so 10 a day is
    /// plenty, and a loop that needs more waits instead of costing the owner the token.
    public var identifiesPerDay: Int

    public init(
        backoff: Backoff = Backoff(base: .seconds(1), max: .seconds(60), jitter: 0.2), helloTimeout: Duration = .seconds(20),
        identifiesPerDay: Int = 10
    ) {
        self.backoff = backoff
        self.helloTimeout = helloTimeout
        self.identifiesPerDay = identifiesPerDay
    }
}

/// Discord's Gateway session, as a state machine.
///
/// The adapter calls `start`, then reports each event (`lookedUp`, `connected`, `received`,
/// `closed`, `delivered`) and calls `tick` when `nextDeadline` is reached; it carries out the
/// actions each returns, in order. One socket at a time: after a `.close` or a `closed`, the
/// old socket's events are not reported.
///
/// Heartbeats: the first after `interval × random` (Discord's jitter), then every
/// `interval`. A heartbeat due while the previous one has no ACK means a zombie connection:
/// it is closed (code 4000, so the session stays resumable) and resumed.
///
/// Exactly once: the sequence number that a resume replays from is persisted only after the
/// receiver recorded the messages; a power cut in between replays them, and the receiver
/// drops them by id.
public struct DiscordSession: Sendable {
    /// The close code of every close the session makes itself: not 1000/1001, which would
    /// invalidate the session.
    public static let resumableCloseCode = 4000

    public let settings: DiscordSettings
    public private(set) var record: DiscordSessionRecord
    public private(set) var state: ChannelState = .starting
    /// The last heartbeat's round trip (sent to ACK).
    public private(set) var lastRoundTrip: Duration?
    /// Failures in a row (the backoff's attempt), reset by READY or RESUMED.
    public private(set) var failures = 0
    /// The Gateway URL from the lookup (resumes go to the session's own URL).
    public private(set) var gatewayURL: String?

    enum Phase: Equatable {
        case idle
        case lookingUp
        case connecting(resume: Bool)
        /// Socket open, waiting for Hello.
        case hello(resume: Bool)
        /// Identify or Resume sent, waiting for READY / RESUMED.
        case handshaking(resume: Bool)
        case ready
        /// Waiting before the next try.
        case waiting(until: Instant, resume: Bool)
        case broken
    }

    private var phase: Phase = .idle
    private var interval: Duration?
    private var heartbeatDue: Instant?
    private var heartbeatSent: Instant?
    private var awaitingAck = false
    private var handshakeDeadline: Instant?
    /// The sequence of the last dispatch seen (sent in heartbeats); `record.sequence` is the
    /// last one whose messages were recorded.
    private var sequence: Int64?
    private var pendingSequence: Int64?

    public init(settings: DiscordSettings = DiscordSettings(), record: DiscordSessionRecord) {
        self.settings = settings
        self.record = record
        sequence = record.sequence
    }

    /// When `tick` is due next (a heartbeat, the end of a wait, a handshake's deadline).
    public var nextDeadline: Instant? {
        switch phase {
        case .waiting(let until, _): return until
        case .connecting, .hello, .handshaking: return [heartbeatDue, handshakeDeadline].compactMap { $0 }.min()
        case .ready: return heartbeatDue
        default: return nil
        }
    }

    /// The first connection: a stored session is resumed, else the Gateway is looked up.
    public mutating func start(now: Instant, wall: Int64) -> [DiscordAction] {
        [.report(.starting)] + connect(resume: record.resumable, now: now, wall: wall)
    }

    /// The lookup ended.
    public mutating func lookedUp(_ result: DiscordLookupResult, now: Instant, wall: Int64, random: Double) -> [DiscordAction] {
        guard phase == .lookingUp else { return [] }
        switch result {
        case .found(let url):
            gatewayURL = url
            phase = .connecting(resume: false)
            handshakeDeadline = now + settings.helloTimeout
            return [.connect(url: DiscordWire.gatewayQuery(url))]
        case .refused(let status, let message):
            if status == 401 {
                return brokenNow("GET /gateway/bot: Discord refused the bot token (401 \(message))")
            }
            return backoff("GET /gateway/bot: \(status) \(message)", resume: false, now: now, random: random)
        case .transport(let why):
            return backoff("GET /gateway/bot: \(why)", resume: false, now: now, random: random)
        }
    }

    /// The socket asked for by `.connect` is open.
    public mutating func connected(now: Instant) -> [DiscordAction] {
        guard case .connecting(let resume) = phase else { return [] }
        phase = .hello(resume: resume)
        handshakeDeadline = now + settings.helloTimeout
        return []
    }

    /// A frame arrived on the open socket.
    public mutating func received(_ frame: DiscordInbound, now: Instant, wall: Int64, random: Double) -> [DiscordAction] {
        switch (frame, phase) {
        case (.hello(let every), .hello(let resume)):
            interval = every
            heartbeatDue = now + every.scaled(by: min(max(random, 0), 1))
            awaitingAck = false
            handshakeDeadline = now + settings.helloTimeout
            if resume, let id = record.sessionID {
                phase = .handshaking(resume: true)
                return [.send(.resume(sessionID: id, sequence: sequence))]
            }
            return identify(now: now, wall: wall)
        case (.heartbeatAck, _):
            awaitingAck = false
            if let sent = heartbeatSent { lastRoundTrip = now.since(sent) }
            return []
        case (.heartbeatRequest, .handshaking), (.heartbeatRequest, .ready):
            heartbeatSent = now
            awaitingAck = true
            return [.send(.heartbeat(sequence: sequence))]
        case (.dispatch(let seq, let event), .handshaking), (.dispatch(let seq, let event), .ready):
            if let seq { sequence = max(sequence ?? seq, seq) }
            switch event {
            case .ready(let id, let url):
                record.sessionID = id
                record.resumeURL = url
                record.sequence = sequence
                return up() + [.persist(record)]
            case .resumed:
                record.sequence = sequence
                return up() + [.persist(record)]
            case .message(let m?):
                pendingSequence = sequence
                return [.deliver([m])]
            case .message(nil), .other:
                return []
            }
        case (.reconnect, .handshaking), (.reconnect, .ready):
            return drop(reason: "Discord asked for a reconnect (op 7)", resume: record.resumable, delay: .zero, now: now)
        case (.invalidSession(let resumable), .handshaking), (.invalidSession(let resumable), .ready):
            if !resumable { forgetSession() }
            // Discord asks for a pause of 1–5 s before the next Identify or Resume.
            let pause = Duration.seconds(1) + Duration.seconds(4).scaled(by: min(max(random, 0), 1))
            var actions = resumable ? [] : [DiscordAction.persist(record)]
            actions += drop(reason: "Discord invalidated the session (op 9, resumable: \(resumable))", resume: resumable && record.resumable, delay: pause, now: now)
            return actions
        default:
            return []
        }
    }

    /// The receiver took the messages of `.deliver` (`recorded`: durably), or did not.
    public mutating func delivered(recorded: Bool, now: Instant, random: Double) -> [DiscordAction] {
        guard let next = pendingSequence else { return [] }
        pendingSequence = nil
        guard recorded else {
            // Not recorded: resume from the last recorded sequence, so Discord replays it.
            sequence = record.sequence
            failures += 1
            return drop(
                reason: "a received message could not be recorded", resume: record.resumable,
                delay: settings.backoff.delay(attempt: failures, random: random), now: now)
        }
        record.sequence = next
        return [.persist(record)]
    }

    /// The socket closed without being asked (`code`: Discord's close code; nil: the
    /// connection dropped without a close frame, or could not be opened).
    public mutating func closed(code: Int?, why: String, now: Instant, random: Double) -> [DiscordAction] {
        switch phase {
        case .connecting, .hello, .handshaking, .ready: break
        default: return []
        }
        let what = code.map { "closed with \($0) \(why)" } ?? why
        switch code {
        case 4004:
            return brokenNow("the Gateway refused the bot token (4004 Authentication failed): set a new token")
        case 4010:
            return brokenNow("the Gateway refused the shard (4010 Invalid shard)")
        case 4011:
            return brokenNow("the Gateway needs sharding for this bot (4011 Sharding required): the bot is in too many servers for one connection")
        case 4012:
            return brokenNow("the Gateway refused the API version (4012 Invalid API version)")
        case 4013:
            return brokenNow("the Gateway refused the intents (4013 Invalid intents)")
        case 4014:
            return brokenNow("the Gateway refused the intents (4014 Disallowed intents): enable the Message Content intent in the Developer Portal (Bot → Privileged Gateway Intents)")
        case 4007, 4009:
            // A bad sequence or a timed-out session: it cannot be resumed.
            forgetSession()
            return [.persist(record)] + backoff("the Gateway \(what): identifying anew", resume: false, now: now, random: random)
        default:
            return backoff("the Gateway \(what)", resume: record.resumable, now: now, random: random)
        }
    }

    /// `nextDeadline` was reached.
    public mutating func tick(now: Instant, wall: Int64, random: Double) -> [DiscordAction] {
        switch phase {
        case .waiting(let until, let resume):
            guard now >= until else { return [] }
            return connect(resume: resume && record.resumable, now: now, wall: wall)
        case .connecting, .hello, .handshaking, .ready:
            if phase != .ready, let d = handshakeDeadline, now >= d {
                failures += 1
                return drop(
                    reason: "the Gateway did not answer within \(settings.helloTimeout.aiboxText)", resume: record.resumable,
                    delay: settings.backoff.delay(attempt: failures, random: random), now: now)
            }
            guard let due = heartbeatDue, let every = interval, now >= due else { return [] }
            if awaitingAck {
                // No ACK since the last heartbeat: a zombie connection.
                failures += 1
                return drop(
                    reason: "no heartbeat ACK within \(every.aiboxText): the connection is dead", resume: record.resumable,
                    delay: settings.backoff.delay(attempt: failures, random: random), now: now)
            }
            heartbeatDue = now + every
            heartbeatSent = now
            awaitingAck = true
            return [.send(.heartbeat(sequence: sequence))]
        default:
            return []
        }
    }

    /// The agent stops: the socket is closed so that the session stays resumable, and the
    /// record is stored for the next start.
    public mutating func shutdown() -> [DiscordAction] {
        let open: Bool
        switch phase {
        case .connecting, .hello, .handshaking, .ready: open = true
        default: open = false
        }
        phase = .idle
        return (open ? [.close(code: Self.resumableCloseCode)] : []) + [.persist(record)]
    }

    // MARK: steps

    private mutating func connect(resume: Bool, now: Instant, wall: Int64) -> [DiscordAction] {
        interval = nil
        heartbeatDue = nil
        awaitingAck = false
        handshakeDeadline = now + settings.helloTimeout
        if resume, let url = record.resumeURL {
            phase = .connecting(resume: true)
            return [.connect(url: DiscordWire.gatewayQuery(url))]
        }
        if let url = gatewayURL {
            phase = .connecting(resume: false)
            return [.connect(url: DiscordWire.gatewayQuery(url))]
        }
        phase = .lookingUp
        return [.lookUpGateway]
    }

    private mutating func identify(now: Instant, wall: Int64) -> [DiscordAction] {
        let day: Int64 = 86_400
        // Identifies of the last day; one more than a day ahead is a clock set back, forgotten.
        record.identifies = record.identifies.filter { $0 > wall - day && $0 <= wall + day }
        if record.identifies.count >= settings.identifiesPerDay {
            let oldest = record.identifies.min() ?? wall
            let wait = Duration.seconds(max(1, oldest + day - wall))
            return drop(
                reason: "\(settings.identifiesPerDay) identifies in 24 h (the box's own limit, to keep Discord from resetting the token): the next in \(wait.aiboxText)",
                resume: false, delay: wait, now: now)
        }
        record.identifies.append(wall)
        phase = .handshaking(resume: false)
        return [.persist(record), .send(.identify)]
    }

    private mutating func up() -> [DiscordAction] {
        phase = .ready
        failures = 0
        handshakeDeadline = nil
        return report(.up)
    }

    private mutating func forgetSession() {
        record.sessionID = nil
        record.resumeURL = nil
        record.sequence = nil
        sequence = nil
    }

    /// Closes the open socket (resumably) and tries again after `delay`.
    private mutating func drop(reason: String, resume: Bool, delay: Duration, now: Instant) -> [DiscordAction] {
        phase = .waiting(until: now + delay, resume: resume)
        pendingSequence = nil
        return [.close(code: Self.resumableCloseCode)] + report(.retrying(reason: reason))
    }

    /// The socket is gone already: try again after the backoff.
    private mutating func backoff(_ reason: String, resume: Bool, now: Instant, random: Double) -> [DiscordAction] {
        failures += 1
        phase = .waiting(until: now + settings.backoff.delay(attempt: failures, random: random), resume: resume)
        pendingSequence = nil
        return report(.retrying(reason: reason))
    }

    private mutating func brokenNow(_ reason: String) -> [DiscordAction] {
        phase = .broken
        return report(.broken(reason: reason))
    }

    private mutating func report(_ s: ChannelState) -> [DiscordAction] {
        if s == state { return [] }
        state = s
        return [.report(s)]
    }
}

/// A REST call ready to send (without its Authorization header, which the adapter adds).
public struct DiscordRequest: Equatable, Sendable {
    public var method: String
    public var url: String
    /// JSON.
    public var body: [UInt8]

    public init(method: String, url: String, body: [UInt8]) {
        self.method = method
        self.url = url
        self.body = body
    }
}

/// How a REST call ended.
public enum DiscordSendResult: Equatable, Sendable {
    case sent
    /// 429: wait `after` (the body's `retry_after`, else `X-RateLimit-Reset-After`).
    case rateLimited(after: Duration, message: String)
    /// 401: the token is wrong or revoked.
    case unauthorized(String)
    /// Another status: 5xx is worth a retry, 4xx is not.
    case refused(status: Int, message: String)
}

public enum DiscordWire {
    /// Discord's REST API (version 10).
    public static let defaultBaseURL = "https://discord.com/api/v10"
    /// The most characters of content one message may have.
    public static let maxText = 2000
    /// GUILD_MESSAGES (1 << 9) | DIRECT_MESSAGES (1 << 12) | MESSAGE_CONTENT (1 << 15).
    public static let intents = (1 << 9) | (1 << 12) | (1 << 15)
    /// The most of a frame or an answer read.
    public static let maxBody = 1 << 20
    static let maxNesting = 32

    /// `url` with the Gateway's version and encoding (a query it had is replaced).
    public static func gatewayQuery(_ url: String) -> String {
        var base = url
        if let q = base.firstIndex(of: "?") { base = String(base[..<q]) }
        // Discord gives its URL without a path ("wss://gateway.discord.gg"): the path is "/".
        if let scheme = base.firstRange(of: "://"), !base[scheme.upperBound...].contains("/") { base += "/" }
        return base + "?v=10&encoding=json"
    }

    /// The frame's JSON text; Identify and Resume carry the token.
    public static func encode(_ frame: DiscordOutbound, token: Secret) -> String {
        struct Frame<D: Encodable>: Encodable {
            var op: Int
            var d: D
        }
        struct Identify: Encodable {
            struct Properties: Encodable {
                var os = "linux"
                var browser = "aibox"
                var device = "aibox"
            }
            var token: String
            var intents: Int
            var properties = Properties()
        }
        struct Resume: Encodable {
            var token: String
            var session_id: String
            var seq: Int64?
            // `seq` is sent as null when there is none (Encodable would leave it out).
            func encode(to encoder: any Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(token, forKey: .token)
                try c.encode(session_id, forKey: .session_id)
                try c.encode(seq, forKey: .seq)
            }
            enum CodingKeys: String, CodingKey { case token, session_id, seq }
        }
        switch frame {
        case .heartbeat(let seq): return seq.map { "{\"op\":1,\"d\":\($0)}" } ?? "{\"op\":1,\"d\":null}"
        case .identify: return text(Frame(op: 2, d: Identify(token: token.reveal(), intents: intents)))
        case .resume(let id, let seq): return text(Frame(op: 6, d: Resume(token: token.reveal(), session_id: id, seq: seq)))
        }
    }

    /// A Gateway frame.
    public static func parse(_ bytes: [UInt8]) -> DiscordInbound {
        struct Envelope: Decodable {
            var op: Int
            var s: Int64?
            var t: String?
        }
        guard bytes.count <= maxBody, JSONNesting.firstBeyond(maxNesting, in: bytes) == nil,
            let e = try? JSONDecoder().decode(Envelope.self, from: Data(bytes))
        else { return .other("a frame that is not Discord's") }
        let data = Data(bytes)
        switch e.op {
        case 10:
            struct Hello: Decodable {
                struct D: Decodable { var heartbeat_interval: Int64 }
                var d: D
            }
            guard let h = try? JSONDecoder().decode(Hello.self, from: data), h.d.heartbeat_interval > 0 else {
                return .other("a Hello without heartbeat_interval")
            }
            return .hello(interval: .milliseconds(h.d.heartbeat_interval))
        case 11: return .heartbeatAck
        case 1: return .heartbeatRequest
        case 7: return .reconnect
        case 9:
            struct Invalid: Decodable { var d: Bool? }
            return .invalidSession(resumable: (try? JSONDecoder().decode(Invalid.self, from: data))?.d ?? false)
        case 0:
            return .dispatch(sequence: e.s, dispatch(e.t ?? "", data))
        default:
            return .other("op \(e.op)")
        }
    }

    static func dispatch(_ name: String, _ data: Data) -> DiscordDispatch {
        switch name {
        case "READY":
            struct Ready: Decodable {
                struct D: Decodable {
                    var session_id: String
                    var resume_gateway_url: String
                }
                var d: D
            }
            guard let r = try? JSONDecoder().decode(Ready.self, from: data) else { return .other("READY without a session") }
            return .ready(sessionID: r.d.session_id, resumeURL: r.d.resume_gateway_url)
        case "RESUMED":
            return .resumed
        case "MESSAGE_CREATE":
            struct Create: Decodable {
                struct D: Decodable {
                    struct Author: Decodable {
                        var id: String
                        var bot: Bool?
                    }
                    var id: String
                    var channel_id: String
                    var guild_id: String?
                    var author: Author
                    var content: String?
                }
                var d: D
            }
            guard let c = try? JSONDecoder().decode(Create.self, from: data) else { return .message(nil) }
            let m = c.d
            guard m.author.bot != true, let text = m.content, !text.isEmpty else { return .message(nil) }
            return .message(
                IncomingMessage(channel: .discord, id: m.id, chat: m.channel_id, sender: m.author.id, isDirect: m.guild_id == nil, text: text))
        default:
            return .other(name)
        }
    }

    /// The Gateway URL of a `GET /gateway/bot` answer.
    public static func parseGateway(status: Int, body: [UInt8]) -> DiscordLookupResult {
        guard (200..<300).contains(status) else { return .refused(status: status, message: message(body, status: status)) }
        struct Answer: Decodable { var url: String }
        guard body.count <= maxBody, let a = try? JSONDecoder().decode(Answer.self, from: Data(body)) else {
            return .transport("GET /gateway/bot: an answer without a url")
        }
        return .found(url: a.url)
    }

    /// The create-message calls for `message`: one per part of its text (at most
    /// `maxText` characters each, cut as Telegram's are).
    public static func createMessage(baseURL: String, _ message: OutgoingMessage) -> [DiscordRequest] {
        struct Body: Encodable { var content: String }
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        return split(message.text).map { part in
            DiscordRequest(method: "POST", url: base + "/channels/" + message.chat + "/messages", body: Array(text(Body(content: part)).utf8))
        }
    }

    /// Create DM: the direct channel with `user` (Discord answers the existing one if there is one).
    public static func openDirect(baseURL: String, user: String) -> DiscordRequest {
        struct Body: Encodable { var recipient_id: String }
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        return DiscordRequest(method: "POST", url: base + "/users/@me/channels", body: Array(text(Body(recipient_id: user)).utf8))
    }

    /// The channel id of a Create DM answer (200 with a channel object); nil otherwise.
    public static func parseDirect(status: Int, body: [UInt8]) -> String? {
        struct Channel: Decodable { var id: String }
        guard (200..<300).contains(status), body.count <= maxBody, let c = try? JSONDecoder().decode(Channel.self, from: Data(body)),
            // It goes into a URL's path: a snowflake's digits (and a fake's letters), nothing else.
            !c.id.isEmpty, c.id.utf8.count <= 32,
            c.id.unicodeScalars.allSatisfy({ ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || $0 == "-" })
        else { return nil }
        return c.id
    }

    /// `text` in parts of at most `limit` characters (Discord counts characters, not
    /// UTF-16 units), cut after a line break, else a space, else anywhere.
    public static func split(_ text: String, limit: Int = maxText) -> [String] {
        // Every character is at least one UTF-16 unit, so a cut within `limit` units is within
        // `limit` characters; TelegramWire.split cuts at the same places.
        TelegramWire.split(text, limit: limit)
    }

    /// A REST answer: its status, body and `X-RateLimit-Reset-After` header.
    public static func parseSend(status: Int, body: [UInt8], resetAfter: String?) -> DiscordSendResult {
        if (200..<300).contains(status) { return .sent }
        let text = message(body, status: status)
        switch status {
        case 429:
            struct Limited: Decodable { var retry_after: Double? }
            let seconds =
                (try? JSONDecoder().decode(Limited.self, from: Data(body.prefix(maxBody))))?.retry_after
                ?? resetAfter.flatMap { Double($0) } ?? 5
            let clamped = min(max(seconds, 0), 86_400)
            return .rateLimited(after: .milliseconds(Int64((clamped * 1000).rounded(.up))), message: text)
        case 401: return .unauthorized(text)
        default: return .refused(status: status, message: text)
        }
    }

    /// Discord's `message` of an error body, else the status.
    static func message(_ body: [UInt8], status: Int) -> String {
        struct E: Decodable { var message: String? }
        guard body.count <= maxBody, let m = (try? JSONDecoder().decode(E.self, from: Data(body)))?.message else { return "HTTP \(status)" }
        return String(m.prefix(200))
    }

    static func text<T: Encodable>(_ v: T) -> String {
        // Encoding these plain structs cannot fail.
        (try? String(decoding: JSONEncoder().encode(v), as: UTF8.self)) ?? "{}"
    }
}

import AIBoxCore
import FoundationEssentials

// Slack's Socket Mode and Web API as values: the connection as a state machine (results and
// frames in, actions out, the clock and randomness injected), the requests it sends and the
// parsing of what Slack sends. No I/O: SlackConnection in AIBoxAgent moves the bytes.
//
// Two tokens: the app-level token (xapp-) opens sockets (apps.connections.open), the bot token
// (xoxb-) posts messages (chat.postMessage). Both go only in an Authorization header, which the
// adapter adds; no action, state or reason here holds either, nor the socket URL (its ticket
// lets anyone in).

/// What Slack sent on a socket: one JSON text frame.
public enum SlackInbound: Equatable, Sendable {
    /// `{"type": "hello", …}`: the socket is ready.
    case hello
    /// `{"type": "disconnect", "reason": …}`: `refresh_requested` and `warning` ask for a new
    /// socket (this one closes soon), `link_disabled` says Socket Mode was turned off.
    case disconnect(reason: String)
    /// An envelope to acknowledge by its `envelope_id`, with the message in it for the
    /// assistant (nil: not one — the bot's own message, an edit, a join, another event type).
    case envelope(id: String, message: IncomingMessage?)
    /// Anything else (no envelope to acknowledge, or not Slack's).
    case other(String)
}

/// How `apps.connections.open` ended.
public enum SlackOpenResult: Equatable, Sendable {
    case opened(url: String)
    /// `ok: false` with Slack's error code.
    case refused(error: String)
    /// HTTP 429: wait `after` (its `Retry-After`).
    case rateLimited(after: Duration)
    /// No answer, a 5xx, or an answer that is not Slack's (`why` holds no token).
    case transport(String)
}

/// What the session asks its adapter to do, in order. Sockets are numbered by the session.
public enum SlackAction: Equatable, Sendable {
    /// POST apps.connections.open with the app-level token, then report `opened`.
    case openConnection
    /// Open a WebSocket to `url` as socket `socket`; report its frames (`received`) and its end
    /// (`closed`, also after a `.close`).
    case connect(socket: Int, url: String)
    /// Send `{"envelope_id": …}` on that socket.
    case ack(socket: Int, envelope: String)
    /// Hand the message to the receiver, then call `delivered` with the same socket and envelope.
    case deliver(socket: Int, envelope: String, IncomingMessage)
    /// Close the socket (its end is still reported by `closed`).
    case close(socket: Int)
    /// The channel's state changed.
    case report(ChannelState)
}

/// The session's timings.
public struct SlackSettings: Equatable, Sendable {
    /// After a failed apps.connections.open, a socket that dropped or never said hello.
    public var backoff: Backoff
    /// How long a new socket may take to open and say hello.
    public var helloTimeout: Duration
    /// The adapter pings each socket this often; a ping unanswered when the next is due means a
    /// dead socket (swift-websocket answers Slack's own pings and does not show them, so the
    /// adapter pings instead, as Slack's SDKs do).
    public var pingInterval: Duration
    /// A 429 without Retry-After.
    public var defaultRetryAfter: Duration

    public init(
        backoff: Backoff = Backoff(base: .seconds(1), max: .seconds(60), jitter: 0.2), helloTimeout: Duration = .seconds(20),
        pingInterval: Duration = .seconds(10), defaultRetryAfter: Duration = .seconds(5)
    ) {
        self.backoff = backoff
        self.helloTimeout = helloTimeout
        self.pingInterval = pingInterval
        self.defaultRetryAfter = defaultRetryAfter
    }
}

/// Slack's Socket Mode, as a state machine.
///
/// The adapter calls `start`, then reports each event (`opened`, `received`, `delivered`,
/// `closed`) and calls `tick` when `nextDeadline` is reached; it carries out the actions each
/// returns, in order.
///
/// Refreshes: Slack asks for a new socket with a `disconnect` frame and closes the old one a
/// little later. The new socket is opened while the old one still delivers, and the old one is
/// closed once the new one said hello; a socket being closed counts until its end is
/// reported, so there are never more than two.
///
/// Exactly once: an envelope is acknowledged only after the receiver recorded its message
/// durably (a fast insert, well within Slack's 3 s); one not recorded is not acknowledged, so
/// Slack sends it again. Slack's retries of an event come in new envelopes with the same
/// `event_id`, which is the message's id: the receiver drops the repeats.
public struct SlackSession: Sendable {
    public let settings: SlackSettings
    public private(set) var state: ChannelState = .starting
    /// The last new socket's time from opening to hello.
    public private(set) var lastRoundTrip: Duration?
    /// Failures in a row (the backoff's attempt), reset by a hello.
    public private(set) var failures = 0

    struct Socket: Equatable {
        enum Phase: Equatable {
            /// Opening: hello due by `deadline`.
            case opening(since: Instant, deadline: Instant)
            case ready
            /// Closed by the session; its end not yet reported.
            case closing
        }
        var id: Int
        var phase: Phase
        /// Slack asked for a new socket in its place.
        var retiring = false
    }

    private var sockets: [Socket] = []
    private var nextID = 1
    /// apps.connections.open under way.
    private var opening = false
    /// No new socket before this (a backoff, a Retry-After).
    private var waitUntil: Instant?
    private var stopped = false

    public init(settings: SlackSettings = SlackSettings()) {
        self.settings = settings
    }

    /// Sockets open or closing, for tests and status.
    public var socketCount: Int { sockets.count }

    /// When `tick` is due next: the end of a wait, a hello's deadline.
    public var nextDeadline: Instant? {
        if stopped { return nil }
        var times = sockets.compactMap { s -> Instant? in
            if case .opening(_, let d) = s.phase { return d }
            return nil
        }
        if let w = waitUntil { times.append(w) }
        return times.min()
    }

    public mutating func start(now: Instant) -> [SlackAction] {
        [.report(.starting)] + pump(now)
    }

    /// apps.connections.open ended.
    public mutating func opened(_ result: SlackOpenResult, now: Instant, random: Double) -> [SlackAction] {
        guard opening, !stopped else { return [] }
        opening = false
        switch result {
        case .opened(let url):
            let id = nextID
            nextID += 1
            sockets.append(Socket(id: id, phase: .opening(since: now, deadline: now + settings.helloTimeout)))
            return [.connect(socket: id, url: url)]
        case .refused(let error):
            if let why = SlackWire.fatalOpenError(error) { return stop("apps.connections.open: \(why)") }
            return failed("apps.connections.open: Slack answered \(error)", now: now, random: random)
        case .rateLimited(let after):
            waitUntil = now + after
            return retrying("apps.connections.open: 429 Too Many Requests: retry after \(after.aiboxText)")
        case .transport(let why):
            return failed("apps.connections.open: \(why)", now: now, random: random)
        }
    }

    /// A frame arrived on a socket.
    public mutating func received(socket id: Int, _ frame: SlackInbound, now: Instant, random: Double) -> [SlackAction] {
        guard !stopped, let i = sockets.firstIndex(where: { $0.id == id }) else { return [] }
        switch frame {
        case .hello:
            guard case .opening(let since, _) = sockets[i].phase else { return [] }
            sockets[i].phase = .ready
            lastRoundTrip = now.since(since)
            failures = 0
            waitUntil = nil
            // The new socket replaces every other: they are closed (each counts until it ended).
            var actions: [SlackAction] = []
            for j in sockets.indices where sockets[j].id != id && sockets[j].phase != .closing {
                sockets[j].phase = .closing
                actions.append(.close(socket: sockets[j].id))
            }
            return actions + report(.up) + pump(now)
        case .disconnect(let reason):
            if reason == "link_disabled" {
                return stop(
                    "Slack turned Socket Mode off for the app (disconnect: link_disabled): turn it on again under Settings → Socket Mode")
            }
            sockets[i].retiring = true
            return pump(now)
        case .envelope(let envelope, let message?):
            return [.deliver(socket: id, envelope: envelope, message)]
        case .envelope(let envelope, nil):
            return sockets[i].phase == .closing ? [] : [.ack(socket: id, envelope: envelope)]
        case .other:
            return []
        }
    }

    /// The receiver took the message of `.deliver` (`recorded`: durably), or did not.
    public mutating func delivered(socket id: Int, envelope: String, recorded: Bool) -> [SlackAction] {
        // Not recorded: no acknowledgement, so Slack sends it again.
        guard recorded, let s = sockets.first(where: { $0.id == id }), s.phase != .closing else { return [] }
        return [.ack(socket: id, envelope: envelope)]
    }

    /// A socket ended: closed by Slack, dropped, never opened, or closed by the session.
    public mutating func closed(socket id: Int, why: String, now: Instant, random: Double) -> [SlackAction] {
        guard let i = sockets.firstIndex(where: { $0.id == id }) else { return [] }
        let gone = sockets.remove(at: i)
        if stopped || gone.phase == .closing { return pump(now) }
        // Slack closing a socket it asked to replace, or another socket still opening: no
        // failure (yet); otherwise the next socket after the backoff.
        if gone.retiring { return retrying("Slack closed the socket it asked to replace; a new one is opening") + pump(now) }
        if sockets.contains(where: { $0.phase != .closing }) { return retrying("the socket \(why)") + pump(now) }
        return failed("the socket \(why)", now: now, random: random) + pump(now)
    }

    /// `nextDeadline` was reached.
    public mutating func tick(now: Instant, random: Double) -> [SlackAction] {
        guard !stopped else { return [] }
        var actions: [SlackAction] = []
        for j in sockets.indices {
            guard case .opening(_, let deadline) = sockets[j].phase, now >= deadline else { continue }
            // Never said hello: dead.
            sockets[j].phase = .closing
            actions.append(.close(socket: sockets[j].id))
        }
        if !actions.isEmpty {
            actions += failed("the socket did not say hello within \(settings.helloTimeout.aiboxText)", now: now, random: random)
        }
        return actions + pump(now)
    }

    /// The agent stops: every socket is closed.
    public mutating func shutdown() -> [SlackAction] {
        stopped = true
        var actions: [SlackAction] = []
        for j in sockets.indices where sockets[j].phase != .closing {
            sockets[j].phase = .closing
            actions.append(.close(socket: sockets[j].id))
        }
        return actions
    }

    // MARK: steps

    /// Opens a socket when one is wanted and allowed: none is left that is not retiring, at
    /// most one exists (with the new one, two), no open is under way and no wait is running.
    private mutating func pump(_ now: Instant) -> [SlackAction] {
        if stopped || opening { return [] }
        if let w = waitUntil {
            if now < w { return [] }
            waitUntil = nil
        }
        let live = sockets.filter { $0.phase != .closing && !$0.retiring }
        guard live.isEmpty, sockets.count < 2 else { return [] }
        opening = true
        return [.openConnection]
    }

    /// A failure: the next socket after the backoff; retrying unless a socket still serves.
    private mutating func failed(_ reason: String, now: Instant, random: Double) -> [SlackAction] {
        failures += 1
        waitUntil = now + settings.backoff.delay(attempt: failures, random: random)
        return retrying(reason)
    }

    private mutating func retrying(_ reason: String) -> [SlackAction] {
        if sockets.contains(where: { $0.phase == .ready }) { return [] }
        return report(.retrying(reason: reason))
    }

    /// Refused for good: every socket closed, nothing more until the configuration changes.
    private mutating func stop(_ reason: String) -> [SlackAction] {
        let actions = shutdown()
        return actions + report(.broken(reason: reason))
    }

    private mutating func report(_ s: ChannelState) -> [SlackAction] {
        if s == state { return [] }
        state = s
        return [.report(s)]
    }
}

/// A Web API call ready to send (without its Authorization header, which the adapter adds).
public struct SlackRequest: Equatable, Sendable {
    /// The Web API method (`chat.postMessage`): what texts name, never the URL.
    public var method: String
    public var url: String
    public var body: [UInt8]
    public var contentType: String
}

/// How a chat.postMessage ended.
public enum SlackSendResult: Equatable, Sendable {
    case sent
    /// Try again after `after` (a 429, Slack's trouble).
    case retry(after: Duration, reason: String)
    /// This message cannot go (no such channel, the bot not in it, too long).
    case failed(reason: String)
    /// No message can go until the configuration changes (a refused bot token, a scope missing).
    case broken(reason: String)
}

public enum SlackWire {
    /// Slack's Web API.
    public static let defaultBaseURL = "https://slack.com/api"
    /// The most characters of text one message is given: Slack asks for at most 4,000 (it
    /// truncates past 40,000).
    public static let maxText = 4000
    /// The most of a frame or an answer read.
    public static let maxBody = 1 << 20
    /// Events nest their blocks some levels deep; anything deeper is not Slack's.
    static let maxNesting = 32

    /// Refusals of apps.connections.open that no retry mends, with what to do.
    public static func fatalOpenError(_ error: String) -> String? {
        switch error {
        case "invalid_auth", "not_authed", "token_revoked", "token_expired":
            return "Slack refused the app-level token (\(error)): create a new one under Basic Information → App-Level Tokens"
        case "account_inactive":
            return "Slack refused the app-level token (account_inactive): the app or its workspace was deleted or deactivated"
        case "not_allowed_token_type":
            return "Slack refused the token (not_allowed_token_type): the app-level token (xapp-…) opens sockets, not the bot token"
        case "missing_scope":
            return "the app-level token lacks the connections:write scope (missing_scope): create one with it"
        case "forbidden_team", "team_access_not_granted", "no_permission":
            return "Slack does not let this app connect to the workspace (\(error))"
        default:
            return nil
        }
    }

    /// POST apps.connections.open (no arguments: the token is the header).
    public static func openConnection(baseURL: String) -> SlackRequest {
        SlackRequest(
            method: "apps.connections.open", url: trimmed(baseURL) + "/apps.connections.open", body: [],
            contentType: "application/x-www-form-urlencoded")
    }

    /// The chat.postMessage calls for `message`: one per part of its text (at most `maxText`
    /// characters, cut as Telegram's are). A chat that is an owner's `TEAM:USER` goes to that
    /// user's direct messages with the bot (Slack takes a user id as the channel).
    public static func postMessage(baseURL: String, _ message: OutgoingMessage) -> [SlackRequest] {
        struct Body: Encodable {
            var channel: String
            var text: String
        }
        let channel = message.chat.split(separator: ":").last.map(String.init) ?? message.chat
        let url = trimmed(baseURL) + "/chat.postMessage"
        // Every character is at least one UTF-16 unit: a cut within `maxText` units is within
        // `maxText` characters.
        return TelegramWire.split(message.text, limit: maxText).map { part in
            SlackRequest(
                method: "chat.postMessage", url: url, body: encode(Body(channel: channel, text: part)),
                contentType: "application/json; charset=utf-8")
        }
    }

    /// The acknowledgement of an envelope.
    public static func ack(_ envelope: String) -> String {
        struct Ack: Encodable { var envelope_id: String }
        return String(decoding: encode(Ack(envelope_id: envelope)), as: UTF8.self)
    }

    /// An apps.connections.open answer: its status, body and Retry-After header.
    public static func parseOpen(status: Int, body: [UInt8], retryAfter: String?, defaultRetryAfter: Duration) -> SlackOpenResult {
        if status == 429 { return .rateLimited(after: seconds(retryAfter) ?? defaultRetryAfter) }
        guard (200..<300).contains(status) else { return .transport("HTTP \(status)") }
        struct Answer: Decodable {
            var ok: Bool
            var url: String?
            var error: String?
        }
        guard let a: Answer = decode(body) else { return .transport("an answer that is not Slack's (HTTP \(status))") }
        if a.ok, let url = a.url { return .opened(url: url) }
        if a.ok { return .transport("an answer without a url") }
        let error = code(a.error)
        return error == "ratelimited" ? .rateLimited(after: seconds(retryAfter) ?? defaultRetryAfter) : .refused(error: error)
    }

    /// A chat.postMessage answer: its status, body and Retry-After header.
    public static func parseSend(status: Int, body: [UInt8], retryAfter: String?, defaultRetryAfter: Duration) -> SlackSendResult {
        struct Answer: Decodable {
            var ok: Bool
            var error: String?
            var needed: String?
        }
        let answer: Answer? = decode(body)
        if status == 429 || answer?.error == "ratelimited" {
            let after = seconds(retryAfter) ?? defaultRetryAfter
            return .retry(after: after, reason: "chat.postMessage: 429 ratelimited: retry after \(after.aiboxText)")
        }
        guard (200..<300).contains(status), let a = answer else {
            return .retry(after: .seconds(5), reason: "chat.postMessage: an answer that is not Slack's (HTTP \(status))")
        }
        if a.ok { return .sent }
        let error = code(a.error)
        switch error {
        case "invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive":
            return .broken(
                reason: "chat.postMessage: Slack refused the bot token (\(error)): copy the Bot User OAuth Token from OAuth & Permissions")
        case "not_allowed_token_type":
            return .broken(
                reason:
                    "chat.postMessage: Slack refused the token (not_allowed_token_type): messages are posted with the bot token (xoxb-…)")
        case "missing_scope":
            return .broken(
                reason:
                    "chat.postMessage: the bot token lacks the \(a.needed.map(code) ?? "chat:write") scope (missing_scope): add it under OAuth & Permissions and reinstall the app"
            )
        case "internal_error", "fatal_error", "service_unavailable", "request_timeout":
            return .retry(after: .seconds(5), reason: "chat.postMessage: Slack answered \(error)")
        case "channel_not_found":
            return .failed(reason: "chat.postMessage: channel_not_found: no such channel, or the bot cannot see it")
        case "not_in_channel":
            return .failed(reason: "chat.postMessage: not_in_channel: invite the bot to the channel")
        default:
            return .failed(reason: "chat.postMessage: Slack answered \(error)")
        }
    }

    /// A socket frame.
    public static func parse(_ bytes: [UInt8]) -> SlackInbound {
        struct Head: Decodable {
            var type: String?
            var envelope_id: String?
            var reason: String?
        }
        guard let head: Head = decode(bytes) else { return .other("a frame that is not Slack's") }
        switch head.type {
        case "hello": return .hello
        case "disconnect": return .disconnect(reason: code(head.reason))
        default: break
        }
        guard let envelope = head.envelope_id, !envelope.isEmpty else { return .other("\(code(head.type)) without an envelope_id") }
        guard head.type == "events_api" else { return .envelope(id: envelope, message: nil) }
        return .envelope(id: envelope, message: message(bytes, envelope: envelope))
    }

    /// The message of an events_api envelope, when it is one for the assistant: a plain message
    /// (no subtype: not an edit, a join, a bot's) from a user, with text.
    static func message(_ bytes: [UInt8], envelope: String) -> IncomingMessage? {
        struct Envelope: Decodable {
            struct Payload: Decodable {
                struct Event: Decodable {
                    var type: String?
                    var subtype: String?
                    var channel_type: String?
                    var channel: String?
                    var user: String?
                    var user_team: String?
                    var bot_id: String?
                    var text: String?
                }
                var team_id: String?
                var event_id: String?
                var event: Event?
            }
            var payload: Payload?
        }
        guard let p = (decode(bytes) as Envelope?)?.payload, let e = p.event, e.type == "message", e.subtype == nil, e.bot_id == nil,
            let user = e.user, !user.isEmpty, let channel = e.channel, !channel.isEmpty, let text = e.text, !text.isEmpty,
            let team = e.user_team ?? p.team_id, !team.isEmpty
        else { return nil }
        // `event_id` names the event, and Slack's retries of it (new envelopes) keep it.
        let id = p.event_id.flatMap { $0.isEmpty ? nil : $0 } ?? envelope
        return IncomingMessage(
            channel: .slack, id: id, chat: channel, sender: team + ":" + user, isDirect: e.channel_type == "im", text: text)
    }

    /// Retry-After in whole seconds (Slack's), bounded to a day.
    static func seconds(_ header: String?) -> Duration? {
        guard let h = header?.trimmingCharacters(in: " \t"), let s = Int64(h), s >= 0 else { return nil }
        return .seconds(min(s, 86_400))
    }

    /// An error code as Slack writes them (a short snake_case word); anything else is not quoted.
    static func code(_ text: String?) -> String {
        guard let t = text, !t.isEmpty, t.count <= 64,
            t.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ":" || $0 == ".") })
        else { return "something unreadable" }
        return t
    }

    static func trimmed(_ base: String) -> String {
        var b = base
        while b.hasSuffix("/") { b.removeLast() }
        return b
    }

    static func decode<T: Decodable>(_ bytes: [UInt8]) -> T? {
        guard bytes.count <= maxBody, JSONNesting.firstBeyond(maxNesting, in: bytes) == nil else { return nil }
        return try? JSONDecoder().decode(T.self, from: Data(bytes))
    }

    static func encode<T: Encodable>(_ v: T) -> [UInt8] {
        // Encoding these plain structs cannot fail.
        (try? Array(JSONEncoder().encode(v))) ?? []
    }
}

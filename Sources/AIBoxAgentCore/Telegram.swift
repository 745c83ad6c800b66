import AIBoxCore
import FoundationEssentials

// Telegram's Bot API as values: the getUpdates long poll as a state machine (results in,
// actions out, the clock and randomness injected), the requests it sends and the parsing of
// its answers. No I/O: TelegramConnection in AIBoxAgent moves the bytes.
//
// The bot token is part of every Telegram URL (https://api.telegram.org/bot<TOKEN>/METHOD).
// So a URL is built in one place (`TelegramRequest`), which prints as its method only, and
// every failure here carries a method name, a status and Telegram's description — never a URL.

/// What Telegram said when it refused a call: `{"ok":false,"error_code":N,"description":"…",
/// "parameters":{"retry_after":S}}`.
public struct TelegramError: Error, Equatable, Sendable {
    public var code: Int
    public var description: String
    /// `parameters.retry_after`, on 429.
    public var retryAfter: Duration?

    public init(code: Int, description: String, retryAfter: Duration? = nil) {
        self.code = code
        self.description = description
        self.retryAfter = retryAfter
    }
}

/// One update of a getUpdates answer: its id, and the message it carries when it is a text
/// message (other updates — edits, joins, stickers — are skipped, but their id still moves
/// the offset on).
public struct TelegramUpdate: Equatable, Sendable {
    public var id: Int64
    public var message: IncomingMessage?

    public init(id: Int64, message: IncomingMessage?) {
        self.id = id
        self.message = message
    }
}

/// How a getUpdates call ended.
public enum TelegramPollResult: Equatable, Sendable {
    /// `ok: true` with its updates (possibly none: the long poll timed out quietly).
    case updates([TelegramUpdate])
    /// An HTTP status other than 2xx, or `ok: false`: Telegram's error.
    case refused(TelegramError)
    /// No answer: the connection failed (`why` holds no URL).
    case transport(String)
    /// No answer by the request's deadline: a dead connection.
    case timedOut
}

/// What the poller asks its adapter to do, in order.
public enum TelegramAction: Equatable, Sendable {
    /// Call getUpdates with this offset and long-poll timeout; no answer by `deadline` means
    /// a dead connection (report `.timedOut`).
    case poll(offset: Int64?, timeout: Duration, deadline: Instant)
    /// Sleep until `until`, then call `wake`.
    case wait(until: Instant)
    /// Hand these messages to the receiver, then call `delivered`.
    case deliver([IncomingMessage])
    /// Store the offset durably (the next start resumes from it).
    case persistOffset(Int64)
    /// The channel's state changed.
    case report(ChannelState)
}

/// The poller's timings.
public struct TelegramPollSettings: Equatable, Sendable {
    /// getUpdates' `timeout`: how long Telegram holds a poll open when nothing comes (whole
    /// seconds; Telegram's own examples use 25–50 s).
    public var longPoll: Duration
    /// How much longer than `longPoll` an answer may take before the connection is taken as
    /// dead.
    public var slack: Duration
    /// After a 409 (another getUpdates consumer, or a webhook set for this bot): never a
    /// tight loop, the other consumer will not go away by itself.
    public var conflictBackoff: Backoff
    /// After a 5xx, a transport failure or a dead connection.
    public var errorBackoff: Backoff
    /// A 429 without `retry_after`.
    public var defaultRetryAfter: Duration

    public init(
        longPoll: Duration = .seconds(30), slack: Duration = .seconds(15),
        conflictBackoff: Backoff = Backoff(base: .seconds(30), max: .seconds(300), jitter: 0.2),
        errorBackoff: Backoff = Backoff(base: .seconds(1), max: .seconds(60), jitter: 0.2),
        defaultRetryAfter: Duration = .seconds(5)
    ) {
        self.longPoll = longPoll
        self.slack = slack
        self.conflictBackoff = conflictBackoff
        self.errorBackoff = errorBackoff
        self.defaultRetryAfter = defaultRetryAfter
    }
}

/// Telegram's getUpdates long poll, as a state machine.
///
/// Exactly once: the offset (the last `update_id` + 1) confirms updates to Telegram, which
/// then forgets them. So the poller hands the messages on first, and only once the receiver
/// says it recorded them durably (de-duplicating by id) is the offset persisted and sent. A
/// power cut between the two makes Telegram send the same updates again; the receiver drops
/// them by id. The other order would lose them. Updates below the offset (Telegram serving a
/// confirmed update again) are dropped here.
public struct TelegramPoller: Sendable {
    public let settings: TelegramPollSettings
    /// The next update wanted (nil before the first update ever).
    public private(set) var offset: Int64?
    public private(set) var state: ChannelState = .starting
    /// The last getUpdates that answered, from request to answer.
    public private(set) var lastRoundTrip: Duration?
    /// Failures in a row (the backoff's attempt), reset by an answer.
    public private(set) var failures = 0
    private var conflicts = 0
    private var pendingOffset: Int64?
    private var pollStarted: Instant?
    /// How long the poll under way may take (its long poll and the slack).
    private var pollLimit: Duration = .zero

    public init(settings: TelegramPollSettings = TelegramPollSettings(), offset: Int64?) {
        self.settings = settings
        self.offset = offset
    }

    /// The first poll.
    public mutating func start(now: Instant) -> [TelegramAction] {
        [.report(.starting), poll(now)]
    }

    /// The wait asked for is over.
    public mutating func wake(now: Instant) -> [TelegramAction] {
        if case .broken = state { return [] }
        return [poll(now)]
    }

    /// The receiver took the messages of `.deliver` (`recorded`: durably), or did not.
    public mutating func delivered(recorded: Bool, now: Instant, random: Double) -> [TelegramAction] {
        guard let next = pendingOffset else { return [poll(now)] }
        pendingOffset = nil
        guard recorded else {
            // Not confirmed: Telegram sends them again after a pause.
            failures += 1
            return report(.retrying(reason: "the received messages could not be recorded")) + [
                .wait(until: now + settings.errorBackoff.delay(attempt: failures, random: random))
            ]
        }
        offset = next
        return [.persistOffset(next), poll(now)]
    }

    /// A getUpdates call ended.
    public mutating func received(_ result: TelegramPollResult, now: Instant, random: Double) -> [TelegramAction] {
        if let started = pollStarted { lastRoundTrip = now.since(started) }
        pollStarted = nil
        switch result {
        case .updates(let updates):
            failures = 0
            conflicts = 0
            var actions = report(.up)
            let fresh = updates.filter { offset == nil || $0.id >= offset! }
            guard let last = fresh.map(\.id).max() else { return actions + [poll(now)] }
            let messages = fresh.compactMap(\.message)
            if messages.isEmpty {
                offset = last + 1
                return actions + [.persistOffset(last + 1), poll(now)]
            }
            pendingOffset = last + 1
            actions.append(.deliver(messages))
            return actions
        case .refused(let e):
            switch e.code {
            case 401, 404:
                // Telegram's answer to a wrong or revoked token: retrying changes nothing.
                return report(.broken(reason: "getUpdates: Telegram refused the bot token (\(e.code) \(e.description))"))
            case 409:
                conflicts += 1
                let reason = "getUpdates: 409 Conflict: another program polls this bot, or a webhook is set (\(e.description))"
                return report(.retrying(reason: reason)) + [
                    .wait(until: now + settings.conflictBackoff.delay(attempt: conflicts, random: random))
                ]
            case 429:
                let wait = e.retryAfter ?? settings.defaultRetryAfter
                return report(.retrying(reason: "getUpdates: 429 Too Many Requests: retry after \(wait.aiboxText)")) + [.wait(until: now + wait)]
            default:
                return backoff("getUpdates: \(e.code) \(e.description)", now: now, random: random)
            }
        case .transport(let why):
            return backoff("getUpdates: \(why)", now: now, random: random)
        case .timedOut:
            return backoff("getUpdates: no answer within \(pollLimit.aiboxText): the connection is dead", now: now, random: random)
        }
    }

    private mutating func backoff(_ reason: String, now: Instant, random: Double) -> [TelegramAction] {
        failures += 1
        return report(.retrying(reason: reason)) + [.wait(until: now + settings.errorBackoff.delay(attempt: failures, random: random))]
    }

    /// A report when the state changes (a 409 repeated is reported once).
    private mutating func report(_ s: ChannelState) -> [TelegramAction] {
        if s == state { return [] }
        state = s
        return [.report(s)]
    }

    /// A long poll once the channel is up; until then (at start, after a failure) a poll that
    /// Telegram answers at once, so that a working connection shows `up` without waiting out a
    /// long poll with nothing in it.
    private mutating func poll(_ now: Instant) -> TelegramAction {
        pollStarted = now
        let wait: Duration = state == .up ? settings.longPoll : .zero
        pollLimit = wait + settings.slack
        return .poll(offset: offset, timeout: wait, deadline: now + pollLimit)
    }
}

/// A Bot API call ready to send. It prints as its method only: `url` holds the token.
public struct TelegramRequest: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var method: String
    /// Holds the token: for the HTTP client only, never for text.
    public var url: String
    /// JSON.
    public var body: [UInt8]

    public var description: String { method }
    public var debugDescription: String { method }
    public var customMirror: Mirror { Mirror(self, children: ["method": method]) }
}

/// How sending a message ended.
public enum TelegramSendResult: Equatable, Sendable {
    /// Telegram's id of the message sent.
    case sent(messageID: Int64)
    case refused(TelegramError)
}

public enum TelegramWire {
    /// Telegram's API.
    public static let defaultBaseURL = "https://api.telegram.org"
    /// The most UTF-16 code units of text one message may have.
    public static let maxText = 4096
    /// The most of an answer read: 100 updates of 4096 characters each, with their JSON.
    public static let maxBody = 4 << 20
    /// Answers nest a few levels; anything deeper is not Telegram's.
    public static let maxNesting = 16

    /// The request for `method` with this JSON body.
    public static func request(baseURL: String, token: Secret, method: String, body: [UInt8]) -> TelegramRequest {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        return TelegramRequest(method: method, url: base + "/bot" + token.reveal() + "/" + method, body: body)
    }

    /// getUpdates with the offset, the long poll's timeout (whole seconds) and only messages
    /// asked for.
    public static func getUpdates(baseURL: String, token: Secret, offset: Int64?, timeout: Duration) -> TelegramRequest {
        struct Body: Encodable {
            var offset: Int64?
            var timeout: Int64
            var allowed_updates: [String]
        }
        let seconds = max(0, timeout.components.seconds)
        return request(
            baseURL: baseURL, token: token, method: "getUpdates",
            body: encode(Body(offset: offset, timeout: seconds, allowed_updates: ["message"])))
    }

    /// The sendMessage calls for `message`: one per part of its text (`split`).
    public static func sendMessage(baseURL: String, token: Secret, _ message: OutgoingMessage) -> [TelegramRequest] {
        split(message.text).map { part in
            request(baseURL: baseURL, token: token, method: "sendMessage", body: sendMessageBody(chat: message.chat, text: part))
        }
    }

    /// `{"chat_id": …, "text": …}`: a numeric chat id as a number, a `@channel` name as text.
    public static func sendMessageBody(chat: String, text: String) -> [UInt8] {
        struct Numeric: Encodable {
            var chat_id: Int64
            var text: String
        }
        struct Named: Encodable {
            var chat_id: String
            var text: String
        }
        if let id = Int64(chat) { return encode(Numeric(chat_id: id, text: text)) }
        return encode(Named(chat_id: chat, text: text))
    }

    /// `text` in parts of at most `limit` UTF-16 code units, cut after the last line break
    /// in a part, else after its last space, else anywhere between two characters. Nothing is
    /// dropped: the parts joined are the text.
    public static func split(_ text: String, limit: Int = maxText) -> [String] {
        if text.utf16.count <= limit { return [text] }
        var parts: [String] = []
        var rest = Substring(text)
        while rest.utf16.count > limit {
            // The longest prefix of whole characters within the limit.
            var end = rest.startIndex
            var units = 0
            for i in rest.indices {
                let n = rest[i].utf16.count
                if units + n > limit { break }
                units += n
                end = rest.index(after: i)
            }
            if end == rest.startIndex { end = rest.index(after: rest.startIndex) }  // one character over the limit
            let head = rest[rest.startIndex..<end]
            var cut = end
            if let nl = head.lastIndex(where: \.isNewline), nl > head.startIndex {
                cut = head.index(after: nl)
            } else if let sp = head.lastIndex(of: " "), sp > head.startIndex {
                cut = head.index(after: sp)
            }
            parts.append(String(rest[rest.startIndex..<cut]))
            rest = rest[cut...]
        }
        if !rest.isEmpty { parts.append(String(rest)) }
        return parts
    }

    /// A getUpdates answer: its status and body.
    public static func parseUpdates(status: Int, body: [UInt8]) -> TelegramPollResult {
        switch envelope(status: status, body: body, method: "getUpdates") {
        case .failure(let e): return .refused(e)
        case .success(let bytes):
            guard let answer = try? JSONDecoder().decode(UpdatesAnswer.self, from: Data(bytes)) else {
                return .transport("getUpdates: an answer that is not a list of updates")
            }
            return .updates(answer.result.map(\.value))
        }
    }

    /// A sendMessage answer: its status and body.
    public static func parseSend(status: Int, body: [UInt8]) -> TelegramSendResult {
        switch envelope(status: status, body: body, method: "sendMessage") {
        case .failure(let e): return .refused(e)
        case .success(let bytes):
            struct Answer: Decodable {
                struct Message: Decodable { var message_id: Int64 }
                var result: Message
            }
            guard let a = try? JSONDecoder().decode(Answer.self, from: Data(bytes)) else {
                return .refused(TelegramError(code: status, description: "an answer without the message sent"))
            }
            return .sent(messageID: a.result.message_id)
        }
    }

    /// The body when Telegram said `ok: true`, else its error (made up from the status when
    /// the body is not Telegram's).
    static func envelope(status: Int, body: [UInt8], method: String) -> Result<[UInt8], TelegramError> {
        struct Envelope: Decodable {
            struct Parameters: Decodable { var retry_after: Int64? }
            var ok: Bool
            var error_code: Int?
            var description: String?
            var parameters: Parameters?
        }
        guard body.count <= maxBody, JSONNesting.firstBeyond(maxNesting, in: body) == nil,
            let e = try? JSONDecoder().decode(Envelope.self, from: Data(body))
        else {
            return .failure(TelegramError(code: (200..<300).contains(status) ? 502 : status, description: "an answer that is not Telegram's (HTTP \(status))"))
        }
        if e.ok && (200..<300).contains(status) { return .success(body) }
        let retry = e.parameters?.retry_after.map { Duration.seconds(max(0, min($0, 86_400))) }
        let text = String((e.description ?? "HTTP \(status)").prefix(200))
        return .failure(TelegramError(code: e.error_code ?? status, description: text, retryAfter: retry))
    }

    struct UpdatesAnswer: Decodable {
        var result: [WireUpdate]
    }

    /// An update as Telegram sends it; only what a text message needs is read.
    struct WireUpdate: Decodable {
        struct Message: Decodable {
            struct Chat: Decodable {
                var id: Int64
                var type: String
            }
            struct User: Decodable { var id: Int64 }
            var chat: Chat
            var from: User?
            var text: String?
        }
        var update_id: Int64
        var message: Message?

        enum CodingKeys: String, CodingKey { case update_id, message }

        /// A message of a shape not understood is skipped like any other update, never
        /// the whole answer (its offset must still move on).
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            update_id = try c.decode(Int64.self, forKey: .update_id)
            message = try? c.decodeIfPresent(Message.self, forKey: .message)
        }

        var value: TelegramUpdate {
            guard let m = message, let text = m.text, let from = m.from else { return TelegramUpdate(id: update_id, message: nil) }
            return TelegramUpdate(
                id: update_id,
                message: IncomingMessage(
                    channel: .telegram, id: String(update_id), chat: String(m.chat.id), sender: String(from.id),
                    isDirect: m.chat.type == "private", text: text))
        }
    }

    static func encode<T: Encodable>(_ v: T) -> [UInt8] {
        // Encoding these plain structs cannot fail.
        (try? Array(JSONEncoder().encode(v))) ?? []
    }
}

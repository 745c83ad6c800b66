import AIBoxCore
import Crypto
import FoundationEssentials

// The WhatsApp Business Cloud API as values: the messages call that sends, the classification
// of Graph API errors, and the webhook Meta delivers messages to (its verification handshake,
// its `X-Hub-Signature-256` HMAC, its payload). No I/O: WhatsAppConnection in AIBoxAgent moves
// the bytes and serves the webhook.
//
// Three secrets: the access token (`Authorization: Bearer …` on every send), the app secret
// (the HMAC key of every delivery) and the verify token (the webhook handshake's shared word).
// They are `Secret`s here and appear in no printable value: a request prints as its endpoint,
// every failure carries Graph's code, status and message — with the token masked by the
// adapter should Graph echo it.

/// What the Graph API said when it refused a call: `{"error": {"message", "type", "code",
/// "error_subcode", "fbtrace_id"}}`, with the HTTP status.
public struct WhatsAppError: Error, Equatable, Sendable {
    public var status: Int
    /// Graph's `code` (190: the token; 131047: outside the 24-hour window; 130429: throughput).
    public var code: Int?
    public var subcode: Int?
    public var type: String?
    public var message: String
    /// Meta's trace id, for a support request.
    public var trace: String?

    public init(status: Int, code: Int? = nil, subcode: Int? = nil, type: String? = nil, message: String, trace: String? = nil) {
        self.status = status
        self.code = code
        self.subcode = subcode
        self.type = type
        self.message = message
        self.trace = trace
    }

    /// `HTTP 400, code 131047: Re-engagement message` — what a reason quotes.
    public var summary: String {
        var s = "HTTP \(status)"
        if let code { s += ", code \(code)" }
        if let subcode { s += "/\(subcode)" }
        return s + ": " + message
    }
}

/// How a refused send is to be taken.
public enum WhatsAppVerdict: Equatable, Sendable {
    /// Try again later (throughput limits, Meta's outages, a lost connection).
    case retry(after: Duration, reason: String)
    /// This message will not go (the 24-hour window, a number not on WhatsApp); others may.
    case failed(reason: String)
    /// Nothing will go until the owner changes the configuration (a bad or expired token,
    /// missing permissions): the channel is broken.
    case broken(reason: String)
}

/// A Graph API call ready to send. It prints as its endpoint name only: `authorization`
/// holds the access token.
public struct WhatsAppRequest: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// `POST /{phone-number-id}/messages`: the URL, for the HTTP client.
    public var url: String
    /// `Bearer TOKEN`: for the HTTP client only, never for text.
    public var authorization: String
    /// JSON.
    public var body: [UInt8]

    public var description: String { "messages" }
    public var debugDescription: String { "messages" }
    public var customMirror: Mirror { Mirror(self, children: ["endpoint": "messages"]) }
}

/// How a messages call ended.
public enum WhatsAppSendResult: Equatable, Sendable {
    /// Accepted; WhatsApp's id of the message (`wamid.…`).
    case sent(id: String)
    case refused(WhatsAppError)
}

/// The retry delays of sends.
public struct WhatsAppRetry: Equatable, Sendable {
    /// After a throughput or pair rate limit (130429, 131056, 80007, HTTP 429 without
    /// Retry-After). Meta's advice for 131056 is to wait before messaging the same number.
    public var rateLimited: Duration
    /// After a 5xx, a transport failure or a send not answered in time.
    public var transient: Duration

    public init(rateLimited: Duration = .seconds(60), transient: Duration = .seconds(5)) {
        self.rateLimited = rateLimited
        self.transient = transient
    }
}

public enum WhatsAppWire {
    /// Meta's Graph API.
    public static let defaultBaseURL = "https://graph.facebook.com"
    /// The Graph API version in every path.
    public static let defaultAPIVersion = "v21.0"
    /// The most characters of a text message's body.
    public static let maxText = 4096
    /// The most of a Graph answer read.
    public static let maxAnswer = 1 << 20
    /// Graph answers and webhook payloads nest a few levels; anything deeper is not Meta's.
    public static let maxNesting = 16

    /// The messages calls for `message`: one per part of its text (split like Telegram's, at a
    /// line end, else a space, within 4096 characters). `to` is the recipient's number, digits
    /// only.
    public static func sendMessage(
        baseURL: String, apiVersion: String = defaultAPIVersion, phoneNumberID: String, token: Secret, _ message: OutgoingMessage
    ) -> [WhatsAppRequest] {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        let url = base + "/" + apiVersion + "/" + phoneNumberID + "/messages"
        return TelegramWire.split(message.text, limit: maxText).map { part in
            WhatsAppRequest(url: url, authorization: "Bearer " + token.reveal(), body: messageBody(to: message.chat, text: part))
        }
    }

    /// `{"messaging_product":"whatsapp","recipient_type":"individual","to":…,"type":"text","text":{"body":…}}`.
    public static func messageBody(to: String, text: String) -> [UInt8] {
        struct Text: Encodable {
            var body: String
            var preview_url = false
        }
        struct Body: Encodable {
            var messaging_product = "whatsapp"
            var recipient_type = "individual"
            var to: String
            var type = "text"
            var text: Text
        }
        return TelegramWire.encode(Body(to: to, text: Text(body: text)))
    }

    /// A messages answer: its status and body. 2xx with `messages[0].id` is sent; anything else
    /// is refused with Graph's error (made up from the status when the body is not Graph's).
    public static func parseSend(status: Int, body: [UInt8]) -> WhatsAppSendResult {
        struct Answer: Decodable {
            struct Message: Decodable { var id: String }
            struct Failure: Decodable {
                var message: String?
                var type: String?
                var code: Int?
                var error_subcode: Int?
                var fbtrace_id: String?
            }
            var messages: [Message]?
            var error: Failure?
        }
        let answer: Answer? =
            body.count <= maxAnswer && JSONNesting.firstBeyond(maxNesting, in: body) == nil
            ? try? JSONDecoder().decode(Answer.self, from: Data(body)) : nil
        if (200..<300).contains(status) {
            if let id = answer?.messages?.first?.id { return .sent(id: String(id.prefix(200))) }
            return .refused(WhatsAppError(status: 502, message: "an answer without the message's id (HTTP \(status))"))
        }
        guard let e = answer?.error else {
            return .refused(WhatsAppError(status: status, message: "an answer that is not the Graph API's"))
        }
        return .refused(
            WhatsAppError(
                status: status, code: e.code, subcode: e.error_subcode, type: e.type.map { String($0.prefix(80)) },
                message: String((e.message ?? "no message").prefix(300)), trace: e.fbtrace_id.map { String($0.prefix(80)) }))
    }

    /// How to take a refusal. `retryAfter`: the answer's Retry-After header, in seconds, if any.
    public static func classify(_ e: WhatsAppError, retryAfter: Duration? = nil, retry: WhatsAppRetry = WhatsAppRetry()) -> WhatsAppVerdict {
        let what = "messages: " + e.summary
        switch e.code ?? -1 {
        case 190, 102, 463, 467:
            // OAuthException: the access token expired, was revoked or is not a token.
            return .broken(reason: "\(what) — the access token is invalid or expired; create a system user's permanent token and store it as channel.whatsapp.access-token")
        case 10, 200...299:
            return .broken(reason: "\(what) — the token lacks the whatsapp_business_messaging permission")
        case 130429, 131056, 80007, 4, 17, 32, 613:
            return .retry(after: retryAfter ?? retry.rateLimited, reason: "\(what) — rate limited")
        case 131047:
            return .failed(
                reason: "\(what) — WhatsApp lets a business answer freely only within 24 hours of the person's last message; send the box any message from WhatsApp, then it can answer again")
        case 131026:
            return .failed(reason: "\(what) — the number cannot receive this message (not on WhatsApp, or an old app)")
        case 131030:
            return .failed(reason: "\(what) — a test number may message only the numbers added to its allowed list at Meta")
        case 1, 2, 131000, 131016, 133004:
            return .retry(after: retryAfter ?? retry.transient, reason: "\(what) — a temporary failure at Meta")
        default:
            break
        }
        switch e.status {
        case 401: return .broken(reason: "\(what) — the access token was refused")
        case 403: return .broken(reason: "\(what) — the token may not send for this phone number id")
        case 429: return .retry(after: retryAfter ?? retry.rateLimited, reason: "\(what) — rate limited")
        case 408, 500...: return .retry(after: retryAfter ?? retry.transient, reason: what)
        default: return .failed(reason: what)
        }
    }
}

/// An HTTP answer of the webhook.
public struct WebhookReply: Equatable, Sendable {
    public var status: Int
    /// `text/plain` throughout (the challenge is echoed as text).
    public var body: String

    public init(status: Int, body: String) {
        self.status = status
        self.body = body
    }

    public static let forbidden = WebhookReply(status: 403, body: "forbidden\n")
    public static let unauthorized = WebhookReply(status: 401, body: "bad signature\n")
    public static let tooLarge = WebhookReply(status: 413, body: "payload too large\n")
    public static let ok = WebhookReply(status: 200, body: "ok\n")
    public static let notFound = WebhookReply(status: 404, body: "not found\n")
    public static let notAllowed = WebhookReply(status: 405, body: "method not allowed\n")
}

/// What a POST to the webhook carried.
public enum WebhookDelivery: Equatable, Sendable {
    /// Not Meta's (a missing, malformed or wrong signature): nothing was parsed.
    case rejected(WebhookReply, why: String)
    /// Signed by Meta: its text messages (possibly none: statuses, other types, a payload not
    /// understood — `skipped` says how many entries were not taken).
    case signed(messages: [IncomingMessage], skipped: Int)
}

/// The webhook Meta calls: `GET` for the verification handshake, `POST` for each delivery.
///
/// A POST's signature is checked on the raw body before anything parses it. A signed POST is
/// answered 200 whatever it holds (Meta retries a delivery answered otherwise, for days),
/// unless the receiver could not record its messages: then 503, and Meta delivers it again.
/// Meta delivers a message more than once at times (retries, at-least-once); `RecentIDs` in the
/// adapter drops repeats it has seen, the receiver (agent.db) drops them by
/// `IncomingMessage.id` across restarts.
public struct WhatsAppWebhook: Sendable {
    /// The path served.
    public static let path = "/whatsapp/webhook"
    /// The most of a body read: Meta's payloads are a few KiB.
    public static let maxBody = 1 << 20
    /// The longest challenge echoed.
    public static let maxChallenge = 1024

    let verifyToken: Secret
    let appSecret: Secret
    /// Deliveries for another phone number of the same app are skipped; nil takes all.
    let phoneNumberID: String?

    public init(verifyToken: Secret, appSecret: Secret, phoneNumberID: String? = nil) {
        self.verifyToken = verifyToken
        self.appSecret = appSecret
        self.phoneNumberID = phoneNumberID
    }

    /// The handshake: `hub.mode=subscribe`, `hub.verify_token` ours, `hub.challenge` echoed as
    /// text; anything else 403. `query`: the URL's query string, undecoded.
    public func verify(query: String) -> WebhookReply {
        let q = Self.parseQuery(query)
        guard q["hub.mode"] == "subscribe", let token = q["hub.verify_token"], let challenge = q["hub.challenge"],
            !verifyToken.reveal().isEmpty,
            Self.constantTimeEqual(Array(token.utf8), Array(verifyToken.reveal().utf8)),
            !challenge.isEmpty, challenge.utf8.count <= Self.maxChallenge,
            challenge.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F })
        else { return .forbidden }
        return WebhookReply(status: 200, body: challenge)
    }

    /// A POST: `signature` is the `X-Hub-Signature-256` header (nil when absent), `body` the
    /// raw bytes as received.
    public func receive(signature: String?, body: [UInt8]) -> WebhookDelivery {
        guard let signature else { return .rejected(.unauthorized, why: "no X-Hub-Signature-256 header") }
        guard let mac = Self.signatureBytes(signature) else {
            return .rejected(.unauthorized, why: "an X-Hub-Signature-256 header that is not sha256= and 64 hex digits")
        }
        guard body.count <= Self.maxBody else { return .rejected(.tooLarge, why: "a body of \(body.count) bytes; at most \(Self.maxBody)") }
        let key = SymmetricKey(data: Array(appSecret.reveal().utf8))
        let expected = Array(HMAC<SHA256>.authenticationCode(for: body, using: key))
        guard Self.constantTimeEqual(mac, expected) else {
            return .rejected(.unauthorized, why: "a signature that does not match the body (another app secret, or an altered body)")
        }
        let (messages, skipped) = parse(body)
        return .signed(messages: messages, skipped: skipped)
    }

    /// `sha256=` and 64 hex digits (either case), as bytes; nil for anything else.
    static func signatureBytes(_ header: String) -> [UInt8]? {
        let h = Array(header.utf8)
        let prefix = Array("sha256=".utf8)
        guard h.count == prefix.count + 64, Array(h[0..<prefix.count]) == prefix else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(32)
        var i = prefix.count
        while i < h.count {
            guard let hi = hexValue(h[i]), let lo = hexValue(h[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// Equal bytes, in a time that depends on the lengths only.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }

    /// `entry[].changes[].value.messages[]` of type text, as messages; statuses, other message
    /// types and changes for another phone number are skipped (counted). A payload not
    /// understood is skipped whole.
    func parse(_ body: [UInt8]) -> (messages: [IncomingMessage], skipped: Int) {
        guard JSONNesting.firstBeyond(WhatsAppWire.maxNesting, in: body) == nil,
            let payload = try? JSONDecoder().decode(Payload.self, from: Data(body))
        else { return ([], 1) }
        var messages: [IncomingMessage] = []
        var skipped = 0
        for entry in payload.entry ?? [] {
            for change in entry.changes ?? [] {
                guard let value = change.value else { continue }
                if let ours = phoneNumberID, let theirs = value.metadata?.phone_number_id, theirs != ours {
                    skipped += (value.messages ?? []).count
                    continue
                }
                for m in value.textMessages {
                    guard let m, m.type == "text", let text = m.text?.body, !m.id.isEmpty, !m.from.isEmpty,
                        m.from.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
                    else {
                        skipped += 1
                        continue
                    }
                    messages.append(IncomingMessage(channel: .whatsapp, id: m.id, chat: m.from, sender: m.from, isDirect: true, text: text))
                }
            }
        }
        return (messages, skipped)
    }

    /// The webhook payload; only what a text message needs is read, and an element of
    /// another shape is skipped, never the whole payload.
    struct Payload: Decodable {
        struct Entry: Decodable { var changes: [Change]? }
        struct Change: Decodable {
            var value: Value?
            var field: String?
        }
        struct Value: Decodable {
            struct Metadata: Decodable { var phone_number_id: String? }
            var metadata: Metadata?
            var messages: [Lenient<Message>]?
            enum CodingKeys: String, CodingKey { case metadata, messages }
            init(from decoder: any Decoder) throws {
                let c = try decoder.container(keyedBy: CodingKeys.self)
                metadata = try? c.decodeIfPresent(Metadata.self, forKey: .metadata)
                messages = try? c.decodeIfPresent([Lenient<Message>].self, forKey: .messages)
            }
        }
        struct Message: Decodable {
            struct Text: Decodable { var body: String }
            var from: String
            var id: String
            var type: String
            var text: Text?
        }
        var entry: [Entry]?
    }

    /// A value, or nil when it has another shape.
    struct Lenient<T: Decodable>: Decodable {
        var value: T?
        init(from decoder: any Decoder) throws { value = try? T(from: decoder) }
    }

    /// `a=b&c=d`, percent-decoded (`+` is a space); the first of a repeated key wins.
    static func parseQuery(_ query: String) -> [String: String] {
        var out: [String: String] = [:]
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let k = percentDecode(kv[0]), let v = percentDecode(kv.count > 1 ? kv[1] : "") else { continue }
            if out[k] == nil { out[k] = v }
        }
        return out
    }

    static func percentDecode(_ s: Substring) -> String? {
        var bytes: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let c = it.popFirst() {
            if c == UInt8(ascii: "+") {
                bytes.append(0x20)
            } else if c == UInt8(ascii: "%") {
                guard let a = it.popFirst(), let b = it.popFirst(), let hi = hexValue(a), let lo = hexValue(b) else { return nil }
                bytes.append(hi << 4 | lo)
            } else {
                bytes.append(c)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }
}

extension WhatsAppWebhook.Payload.Value {
    /// The messages that have the shape of a message (others nil).
    var textMessages: [WhatsAppWebhook.Payload.Message?] { (messages ?? []).map(\.value) }
}

/// The ids of the last deliveries taken, to drop Meta's repeats: a bounded set, the oldest
/// forgotten first.
public struct RecentIDs: Sendable {
    public let capacity: Int
    private var order: [String] = []
    private var members: Set<String> = []
    private var head = 0

    public init(capacity: Int = 4096) { self.capacity = max(1, capacity) }

    public func contains(_ id: String) -> Bool { members.contains(id) }

    /// Remembers `id`; false when it was already known.
    @discardableResult
    public mutating func insert(_ id: String) -> Bool {
        guard !members.contains(id) else { return false }
        if order.count < capacity {
            order.append(id)
        } else {
            members.remove(order[head])
            order[head] = id
            head = (head + 1) % capacity
        }
        members.insert(id)
        return true
    }
}

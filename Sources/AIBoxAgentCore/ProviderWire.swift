import AIBoxCore
import FoundationEssentials

// The providers' wire formats, as values: the request a call sends, and a decoder that turns
// the streamed answer into text, usage and failures. No I/O: the adapter moves the bytes.

/// One message of a conversation.
public struct ChatMessage: Equatable, Sendable, Codable {
    public enum Role: String, Sendable, Codable { case system, user, assistant }
    public var role: Role
    public var content: String

    public init(_ role: Role, _ content: String) {
        self.role = role
        self.content = content
    }
}

/// What one call asks of a model.
public struct ModelRequest: Equatable, Sendable {
    public var model: String
    public var messages: [ChatMessage]
    /// The most tokens the reply may have (Anthropic requires it; the budget reserves it).
    public var maxTokens: Int
    public var temperature: Double?
    /// The context window to ask for where the server takes one per request (Ollama's `num_ctx`).
    public var context: Int?

    public init(model: String, messages: [ChatMessage], maxTokens: Int, temperature: Double? = nil, context: Int? = nil) {
        self.model = model
        self.messages = messages
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.context = context
    }
}

/// Tokens a call used, as the provider reported them.
public struct Usage: Equatable, Sendable, Codable {
    public var inputTokens: Int
    public var outputTokens: Int

    public init(inputTokens: Int, outputTokens: Int) {
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
    }
}

/// An HTTP request ready to send. `headers` may hold the API key: never log them.
public struct WireRequest: Sendable {
    public var url: String
    public var headers: [(String, String)]
    public var body: [UInt8]
}

public enum ProviderWire {
    /// Anthropic's API version header: the one its streaming events are documented for.
    public static let anthropicVersion = "2023-06-01"
    /// How long Ollama keeps a model loaded after a call (its default, 5 min, reloads a
    /// model that chats every quarter of an hour from disk each time).
    public static let ollamaKeepAlive = "30m"

    /// The streaming request for `kind` at `baseURL` (as box.toml gives it, without a
    /// trailing slash or with one).
    public static func request(kind: ProviderKind, baseURL: String, apiKey: Secret?, _ r: ModelRequest) -> WireRequest {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        var headers: [(String, String)] = [("content-type", "application/json")]
        let body: [UInt8]
        let url: String
        switch kind {
        case .openai, .llamacpp:
            // box.toml's OpenAI base URL includes /v1 (as OpenAI's SDKs take it); llama.cpp's is the server's root.
            url = base + (kind == .openai ? "/chat/completions" : "/v1/chat/completions")
            if let apiKey { headers.append(("authorization", "Bearer " + apiKey.reveal())) }
            headers.append(("accept", "text/event-stream"))
            // OpenAI's own API wants max_completion_tokens (max_tokens is refused by its
            // reasoning models); compatible servers know max_tokens.
            let official = kind == .openai && hostOf(base) == "api.openai.com"
            body = encode(
                OpenAIRequest(
                    model: r.model, messages: r.messages, stream: true, stream_options: .init(include_usage: true),
                    max_tokens: official ? nil : r.maxTokens, max_completion_tokens: official ? r.maxTokens : nil,
                    temperature: r.temperature))
        case .anthropic:
            url = base + "/v1/messages"
            if let apiKey { headers.append(("x-api-key", apiKey.reveal())) }
            headers.append(("anthropic-version", anthropicVersion))
            headers.append(("accept", "text/event-stream"))
            let system = r.messages.filter { $0.role == .system }.map(\.content).joined(separator: "\n\n")
            body = encode(
                AnthropicRequest(
                    model: r.model, max_tokens: r.maxTokens, system: system.isEmpty ? nil : system,
                    messages: r.messages.filter { $0.role != .system }, stream: true, temperature: r.temperature))
        case .ollama:
            // The native API, not /v1: only it takes num_ctx (the /v1 path truncates long prompts silently).
            url = base + "/api/chat"
            if let apiKey { headers.append(("authorization", "Bearer " + apiKey.reveal())) }
            body = encode(
                OllamaRequest(
                    model: r.model, messages: r.messages, stream: true, keep_alive: ollamaKeepAlive,
                    options: .init(num_ctx: r.context, num_predict: r.maxTokens, temperature: r.temperature)))
        }
        return WireRequest(url: url, headers: headers, body: body)
    }

    /// The failure a non-2xx answer means, from its status, body and `Retry-After` header.
    public static func failure(status: Int, body: [UInt8], retryAfter: String?) -> CallFailure {
        let e = (try? JSONDecoder().decode(ErrorEnvelope.self, from: Data(body)))?.error
        return .http(
            status: status, type: e?.type, code: e?.code, message: e?.message.map { String($0.prefix(300)) },
            retryAfter: FailureClassifier.retryAfter(header: retryAfter))
    }

    static func hostOf(_ url: String) -> String? {
        guard case .success(let u) = Validators.url(url) else { return nil }
        return u.host.lowercased()
    }

    static func encode<T: Encodable>(_ v: T) -> [UInt8] {
        // Encoding these plain structs cannot fail.
        (try? Array(JSONEncoder().encode(v))) ?? []
    }

    struct OpenAIRequest: Encodable {
        struct StreamOptions: Encodable { var include_usage: Bool }
        var model: String
        var messages: [ChatMessage]
        var stream: Bool
        var stream_options: StreamOptions
        var max_tokens: Int?
        var max_completion_tokens: Int?
        var temperature: Double?
    }

    struct AnthropicRequest: Encodable {
        var model: String
        var max_tokens: Int
        var system: String?
        var messages: [ChatMessage]
        var stream: Bool
        var temperature: Double?
    }

    struct OllamaRequest: Encodable {
        struct Options: Encodable {
            var num_ctx: Int?
            var num_predict: Int
            var temperature: Double?
        }
        var model: String
        var messages: [ChatMessage]
        var stream: Bool
        var keep_alive: String
        var options: Options
    }

    /// `{"error": {...}}` (OpenAI, llama.cpp, Anthropic's inner object) or `{"error": "text"}` (Ollama).
    struct ErrorEnvelope: Decodable {
        var error: ErrorBody?
    }

    struct ErrorBody: Decodable {
        var type: String?
        var code: String?
        var message: String?

        init(from decoder: any Decoder) throws {
            if let text = try? decoder.singleValueContainer().decode(String.self) {
                message = text
                return
            }
            let c = try decoder.container(keyedBy: Keys.self)
            type = try? c.decode(String.self, forKey: .type)
            message = try? c.decode(String.self, forKey: .message)
            // OpenAI's code is a string; llama.cpp's is the HTTP status as a number.
            code = (try? c.decode(String.self, forKey: .code)) ?? (try? c.decode(Int.self, forKey: .code)).map(String.init)
        }

        enum Keys: String, CodingKey { case type, code, message }
    }
}

/// Reads one streamed answer, whatever the provider: feed it the body's bytes as they come,
/// then `finish()` at the end of the body. The reply is whole only when `finish()` returns nil.
public struct ReplyDecoder: Sendable {
    public let kind: ProviderKind
    public private(set) var text = ""
    public private(set) var usage: Usage?
    /// Why the model stopped (`stop`, `length`, `end_turn`, …), when it said.
    public private(set) var stopReason: String?
    /// Whether the protocol's end marker came (`[DONE]`, `message_stop`, `done: true`).
    public private(set) var complete = false
    /// Whether any byte of the body has come (time to first byte is measured to it).
    public private(set) var started = false
    private var sse = ServerSentEventParser()
    private var lines = JSONLinesSplitter()
    private var inputTokens: Int?
    /// A reply bigger than this is cut off as a failure (a runaway stream must not exhaust memory).
    public static let maxReplyBytes = 1 << 20

    public init(kind: ProviderKind) { self.kind = kind }

    /// Takes the next bytes; a failure ends the call.
    public mutating func feed(_ bytes: some Collection<UInt8>) -> CallFailure? {
        if !bytes.isEmpty { started = true }
        switch kind {
        case .openai, .llamacpp, .anthropic:
            let events: [ServerSentEvent]
            do { events = try sse.feed(bytes) } catch { return .midStream("\(error)") }
            for e in events {
                if let f = kind == .anthropic ? anthropic(e) : openAI(e) { return f }
            }
        case .ollama:
            let objects: [[UInt8]]
            do { objects = try lines.feed(bytes) } catch { return .midStream("\(error)") }
            for o in objects {
                if let f = ollama(o) { return f }
            }
        }
        if text.utf8.count > ReplyDecoder.maxReplyBytes { return .midStream("reply longer than \(ReplyDecoder.maxReplyBytes) bytes") }
        return nil
    }

    /// The body ended: nil if the reply is whole, else why not.
    public mutating func finish() -> CallFailure? {
        if kind == .ollama {
            if let last = lines.finish(), let f = ollama(last) { return f }
        }
        guard complete else { return .midStream(started ? "the stream ended before its end marker" : "an empty answer") }
        return nil
    }

    private mutating func openAI(_ e: ServerSentEvent) -> CallFailure? {
        guard !complete else { return nil }
        if e.data == "[DONE]" {
            complete = true
            return nil
        }
        guard let chunk = try? JSONDecoder().decode(OpenAIChunk.self, from: Data(e.data.utf8)) else {
            return .midStream("a chunk that is not JSON")
        }
        if let err = chunk.error {
            return .midStream("error in the stream: " + (err.message ?? err.type ?? "unknown"))
        }
        for c in chunk.choices ?? [] {
            if let t = c.delta?.content { text += t }
            if let r = c.finish_reason { stopReason = r }
        }
        if let u = chunk.usage { usage = Usage(inputTokens: u.prompt_tokens ?? 0, outputTokens: u.completion_tokens ?? 0) }
        return nil
    }

    private mutating func anthropic(_ e: ServerSentEvent) -> CallFailure? {
        guard !complete else { return nil }
        let type = e.type
        switch type {
        case "ping": return nil
        case "message_stop":
            complete = true
            return nil
        default: break
        }
        guard let ev = try? JSONDecoder().decode(AnthropicEvent.self, from: Data(e.data.utf8)) else {
            return .midStream("an event that is not JSON (\(type))")
        }
        switch type {
        case "error":
            let t = ev.error?.type ?? "error"
            return .midStream("\(t) in the stream: \(ev.error?.message ?? "")")
        case "message_start":
            inputTokens = ev.message?.usage?.input_tokens
            if let out = ev.message?.usage?.output_tokens { usage = Usage(inputTokens: inputTokens ?? 0, outputTokens: out) }
        case "content_block_delta":
            if let t = ev.delta?.text { text += t }
        case "message_delta":
            if let r = ev.delta?.stop_reason { stopReason = r }
            if let out = ev.usage?.output_tokens {
                usage = Usage(inputTokens: ev.usage?.input_tokens ?? inputTokens ?? 0, outputTokens: out)
            }
        default: break
        }
        return nil
    }

    private mutating func ollama(_ line: [UInt8]) -> CallFailure? {
        guard !complete else { return nil }
        guard let o = try? JSONDecoder().decode(OllamaChunk.self, from: Data(line)) else { return .midStream("a line that is not JSON") }
        if let err = o.error { return .midStream("error in the stream: \(err)") }
        if let t = o.message?.content { text += t }
        if o.done == true {
            complete = true
            stopReason = o.done_reason
            if o.prompt_eval_count != nil || o.eval_count != nil {
                usage = Usage(inputTokens: o.prompt_eval_count ?? 0, outputTokens: o.eval_count ?? 0)
            }
        }
        return nil
    }

    struct OpenAIChunk: Decodable {
        struct Choice: Decodable {
            struct Delta: Decodable { var content: String? }
            var delta: Delta?
            var finish_reason: String?
        }
        struct Usage: Decodable {
            var prompt_tokens: Int?
            var completion_tokens: Int?
        }
        var choices: [Choice]?
        var usage: Usage?
        var error: ProviderWire.ErrorBody?
    }

    struct AnthropicEvent: Decodable {
        struct Message: Decodable { var usage: U? }
        struct U: Decodable {
            var input_tokens: Int?
            var output_tokens: Int?
        }
        struct Delta: Decodable {
            var text: String?
            var stop_reason: String?
        }
        var message: Message?
        var delta: Delta?
        var usage: U?
        var error: ProviderWire.ErrorBody?
    }

    struct OllamaChunk: Decodable {
        struct M: Decodable { var content: String? }
        var message: M?
        var done: Bool?
        var done_reason: String?
        var prompt_eval_count: Int?
        var eval_count: Int?
        var error: String?
    }
}

import AIBoxCore
import FoundationEssentials
import Testing

@testable import AIBoxAgentCore

@Suite("wire formats")
struct WireTests {
    func decode(_ kind: ProviderKind, _ body: String, splitEvery n: Int) -> (ReplyDecoder, CallFailure?) {
        var d = ReplyDecoder(kind: kind)
        let bytes = Array(body.utf8)
        var i = 0
        while i < bytes.count {
            if let f = d.feed(bytes[i..<min(bytes.count, i + n)]) { return (d, f) }
            i += n
        }
        return (d, d.finish())
    }

    static let openAIStream = """
        data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}

        data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"The capital"},"finish_reason":null}]}

        data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" is Paris."},"finish_reason":null}]}

        data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}

        data: {"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":21,"completion_tokens":7,"total_tokens":28}}

        data: [DONE]


        """

    static let anthropicStream = """
        event: message_start
        data: {"type":"message_start","message":{"id":"m1","type":"message","role":"assistant","content":[],"model":"claude","usage":{"input_tokens":25,"output_tokens":1}}}

        event: content_block_start
        data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

        event: ping
        data: {"type": "ping"}

        event: content_block_delta
        data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" there"}}

        event: content_block_stop
        data: {"type":"content_block_stop","index":0}

        event: message_delta
        data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}

        event: message_stop
        data: {"type":"message_stop"}


        """

    static let ollamaStream = """
        {"model":"m","created_at":"2026-01-01T00:00:00Z","message":{"role":"assistant","content":"Bon"},"done":false}
        {"model":"m","created_at":"2026-01-01T00:00:00Z","message":{"role":"assistant","content":"jour"},"done":false}
        {"model":"m","created_at":"2026-01-01T00:00:00Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":26,"eval_count":3}

        """

    @Test("each provider's stream gives the same reply and usage however the bytes are split", arguments: [1, 2, 7, 64, 100_000])
    func streams(split: Int) {
        let (o, of) = decode(.openai, Self.openAIStream, splitEvery: split)
        #expect(of == nil)
        #expect(o.text == "The capital is Paris.")
        #expect(o.usage == Usage(inputTokens: 21, outputTokens: 7))
        #expect(o.stopReason == "stop")
        let (a, af) = decode(.anthropic, Self.anthropicStream, splitEvery: split)
        #expect(af == nil)
        #expect(a.text == "Hello there")
        #expect(a.usage == Usage(inputTokens: 25, outputTokens: 15))
        #expect(a.stopReason == "end_turn")
        let (l, lf) = decode(.ollama, Self.ollamaStream, splitEvery: split)
        #expect(lf == nil)
        #expect(l.text == "Bonjour")
        #expect(l.usage == Usage(inputTokens: 26, outputTokens: 3))
    }

    @Test("a stream cut before its end marker, garbage in it, or an error event is a mid-stream failure")
    func brokenStreams() {
        let cut = String(Self.openAIStream[..<Self.openAIStream.firstRange(of: "data: [DONE]")!.lowerBound])
        if case .midStream? = decode(.openai, cut, splitEvery: 5).1 {} else { Issue.record("a cut OpenAI stream passed") }
        let garbage = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {not json\n\n"
        if case .midStream? = decode(.openai, garbage, splitEvery: 3).1 {} else { Issue.record("malformed SSE passed") }
        let error = Self.anthropicStream.replacing(
            "event: message_delta", with: "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\nevent: message_delta")
        guard case .midStream(let why)? = decode(.anthropic, error, splitEvery: 11).1 else { Issue.record("an error event passed"); return }
        #expect(why.contains("overloaded_error"))
        let ollamaCut = Self.ollamaStream.split(separator: "\n").prefix(2).joined(separator: "\n")
        if case .midStream? = decode(.ollama, ollamaCut, splitEvery: 4).1 {} else { Issue.record("a cut Ollama stream passed") }
        if case .midStream? = decode(.openai, "", splitEvery: 1).1 {} else { Issue.record("an empty body passed") }
    }

    @Test("a stream without usage leaves usage unknown (the budget then charges the reservation)")
    func noUsage() {
        let s = Self.openAIStream.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.contains("\"usage\"") }.joined(separator: "\n")
        let (d, f) = decode(.openai, s, splitEvery: 9)
        #expect(f == nil)
        #expect(d.usage == nil)
        #expect(CallCost.charge(Price(inputPerMillion: 1, outputPerMillion: 2)!, usage: d.usage, reserved: NanoUSD(777)) == (NanoUSD(777), true))
    }

    @Test("error bodies of each provider become failures the classifier reads")
    func errorBodies() {
        let openAI = #"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#
        #expect(FailureClassifier.classify(ProviderWire.failure(status: 429, body: Array(openAI.utf8), retryAfter: nil)) == .quotaExhausted)
        let anthropic = #"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
        #expect(FailureClassifier.classify(ProviderWire.failure(status: 529, body: Array(anthropic.utf8), retryAfter: "3")) == .throttled(retryAfter: .seconds(3)))
        let llama = #"{"error":{"code":400,"message":"request (3031 tokens) exceeds the available context size (2048 tokens)","type":"exceed_context_size_error","n_prompt_tokens":3031,"n_ctx":2048}}"#
        guard case .http(400, "exceed_context_size_error", "400", _, nil) = ProviderWire.failure(status: 400, body: Array(llama.utf8), retryAfter: nil) else {
            Issue.record("llama.cpp's numeric code")
            return
        }
        let spend = #"{"type":"error","error":{"type":"rate_limit_error","message":"You have reached your organization's monthly spend limit."}}"#
        #expect(FailureClassifier.classify(ProviderWire.failure(status: 429, body: Array(spend.utf8), retryAfter: nil)) == .quotaExhausted)
        let credit = #"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API."}}"#
        #expect(FailureClassifier.classify(ProviderWire.failure(status: 400, body: Array(credit.utf8), retryAfter: nil)) == .quotaExhausted)
        let ollama = #"{"error":"model \"nope\" not found, try pulling it first"}"#
        #expect(FailureClassifier.classify(ProviderWire.failure(status: 404, body: Array(ollama.utf8), retryAfter: nil)) == .misconfigured)
        #expect(FailureClassifier.classify(ProviderWire.failure(status: 502, body: Array("<html>bad gateway".utf8), retryAfter: nil)) == .throttled(retryAfter: nil))
    }

    @Test("requests: each provider's path, headers and body as its API documents them")
    func requests() {
        let r = ModelRequest(model: "m", messages: [ChatMessage(.system, "be brief"), ChatMessage(.user, "hi")], maxTokens: 50, context: 4096)
        let key = Secret("sk-test-123")
        let o = ProviderWire.request(kind: .openai, baseURL: "https://api.openai.com/v1/", apiKey: key, r)
        #expect(o.url == "https://api.openai.com/v1/chat/completions")
        #expect(o.headers.contains { $0 == ("authorization", "Bearer sk-test-123") })
        let ob = String(decoding: o.body, as: UTF8.self)
        #expect(ob.contains(#""max_completion_tokens":50"#) && !ob.contains("max_tokens"))
        #expect(ob.contains(#""stream_options":{"include_usage":true}"#))
        let l = ProviderWire.request(kind: .llamacpp, baseURL: "http://127.0.0.1:8080", apiKey: nil, r)
        #expect(l.url == "http://127.0.0.1:8080/v1/chat/completions")
        #expect(!l.headers.contains { $0.0 == "authorization" })
        #expect(String(decoding: l.body, as: UTF8.self).contains(#""max_tokens":50"#))
        let a = ProviderWire.request(kind: .anthropic, baseURL: "https://api.anthropic.com", apiKey: key, r)
        #expect(a.url == "https://api.anthropic.com/v1/messages")
        #expect(a.headers.contains { $0 == ("x-api-key", "sk-test-123") } && a.headers.contains { $0 == ("anthropic-version", "2023-06-01") })
        let ab = String(decoding: a.body, as: UTF8.self)
        #expect(ab.contains(#""system":"be brief""#))
        #expect(ab.contains(#""messages":[{"#) && !ab.contains(#""role":"system""#))
        let n = ProviderWire.request(kind: .ollama, baseURL: "http://127.0.0.1:11434", apiKey: nil, r)
        #expect(n.url == "http://127.0.0.1:11434/api/chat")
        let nb = String(decoding: n.body, as: UTF8.self)
        #expect(nb.contains(#""num_ctx":4096"#) && nb.contains(#""keep_alive":"30m""#))
    }
}

@Suite("routing table")
struct RoutingTableTests {
    let local = ProviderConfig(name: "local", kind: .llamacpp, models: ["smollm2"])
    let openai = ProviderConfig(name: "openai", kind: .openai, apiKeySecret: "provider.openai.api-key", models: ["gpt-4o-mini", "gpt-4o"])
    let claude = ProviderConfig(name: "anthropic", kind: .anthropic, apiKeySecret: "provider.anthropic.api-key", models: ["claude-sonnet"])

    func chain(_ t: RoutingTable, _ role: LLMRole) -> [String] { (t.chains[role] ?? []).map(\.key.description) }

    @Test("local first where the hardware allows: chat starts local and ends in the cloud; code and reasoning end local")
    func localFirst() {
        let t = RoutingTable.build(
            routing: [.reasoning: [Route(provider: "anthropic", model: "claude-sonnet")]], providers: [openai, claude, local], tier: .small)
        #expect(chain(t, .chat) == ["local/smollm2", "openai/gpt-4o-mini"])
        #expect(chain(t, .reasoning) == ["anthropic/claude-sonnet", "local/smollm2"])
        #expect(chain(t, .code) == ["openai/gpt-4o-mini", "local/smollm2"])
        #expect(t.localOnly(.reasoning).map(\.key.description) == ["local/smollm2"])
    }

    @Test("without a local tier, the cloud comes first and a local server is the last resort")
    func noTier() {
        let t = RoutingTable.build(routing: [:], providers: [openai, local], tier: .none)
        #expect(chain(t, .chat) == ["openai/gpt-4o-mini", "local/smollm2"])
        let cloudOnly = RoutingTable.build(routing: [:], providers: [openai], tier: .medium)
        #expect(chain(cloudOnly, .chat) == ["openai/gpt-4o-mini"])
        #expect(RoutingTable.build(routing: [:], providers: [], tier: .large).chains[.chat] == [])
    }

    @Test("a chain written in box.toml runs as written, without duplicates or unknown routes")
    func explicitChain() {
        let written = [Route(provider: "openai", model: "gpt-4o"), Route(provider: "anthropic", model: "claude-sonnet", context: 200_000), Route(provider: "openai", model: "gpt-4o"), Route(provider: "nobody", model: "x")]
        let t = RoutingTable.build(routing: [.chat: written], providers: [openai, claude, local], tier: .small)
        #expect(chain(t, .chat) == ["openai/gpt-4o", "anthropic/claude-sonnet"])
        #expect(t.chains[.chat]?[1].context == 200_000)
        #expect(t.chains[.chat]?[0].context == 128_000)
        #expect(t.chains[.chat]?.allSatisfy { !$0.isLocal } == true)
    }

    @Test("a model's context written on one route holds for the routes the table adds (the local model first, the last resort)")
    func contextCarried() {
        let t = RoutingTable.build(
            routing: [.chat: [Route(provider: "local", model: "smollm2", context: 2048)], .code: [Route(provider: "openai", model: "gpt-4o", context: 64_000)]],
            providers: [openai, local], tier: .small)
        #expect(chain(t, .chat) == ["local/smollm2"])
        #expect(t.chains[.chat]?.first?.context == 2048)
        #expect(chain(t, .code) == ["openai/gpt-4o", "local/smollm2"])
        #expect(t.chains[.code]?.map(\.context) == [64_000, 2048])
        #expect(t.chains[.reasoning]?.map(\.context) == [2048])
    }
}

@Suite("prompt sizing, prices")
struct PromptAndPriceTests {
    @Test("the prompt keeps the newest turns that fit and never starts on an assistant turn")
    func fit() {
        let history = (0..<40).map { i in ChatMessage(i % 2 == 0 ? .user : .assistant, String(repeating: "word ", count: 50)) }
        guard case .fits(let m, let dropped) = PromptFit.fit(system: "sys", history: history, message: ChatMessage(.user, "now?"), context: 1024, replyTokens: 256) else {
            Issue.record("did not fit")
            return
        }
        #expect(m.first == ChatMessage(.system, "sys"))
        #expect(m.last == ChatMessage(.user, "now?"))
        #expect(m[1].role == .user)
        #expect(dropped > 0 && dropped < 40)
        #expect(TokenEstimate.tokens(m) <= 1024 - 256)
        let huge = ChatMessage(.user, String(repeating: "x", count: 20_000))
        #expect(PromptFit.fit(system: nil, history: [], message: huge, context: 2048, replyTokens: 256) == .tooLong(needed: 5007 + 256, context: 2048))
    }

    @Test("prices.toml: by provider name over kind, overrides model by model, errors with file, line and key")
    func prices() {
        let shipped = """
            [openai]
            "gpt-4o-mini" = { input = 0.15, output = 0.6 }
            "gpt-4o" = { input = 2.5, output = 10 }
            """
        let local = """
            [work-openai]
            "gpt-4o-mini" = { input = 0.3, output = 1.2 }
            """
        guard case .success(let a) = PriceTable.parse(text: shipped, path: "p.toml"), case .success(let b) = PriceTable.parse(text: local, path: "o.toml") else {
            Issue.record("valid files refused")
            return
        }
        let t = a.overridden(by: b)
        #expect(t.price(provider: "openai", kind: .openai, model: "gpt-4o-mini") == Price(inputPerMillion: 0.15, outputPerMillion: 0.6))
        #expect(t.price(provider: "work-openai", kind: .openai, model: "gpt-4o-mini") == Price(inputPerMillion: 0.3, outputPerMillion: 1.2))
        #expect(t.price(provider: "work-openai", kind: .openai, model: "gpt-4o") == Price(inputPerMillion: 2.5, outputPerMillion: 10))
        #expect(t.price(provider: "x", kind: .anthropic, model: "gpt-4o") == nil)
        guard case .failure(let e) = PriceTable.parse(text: "[openai]\n\"m\" = { input = -1, output = 2 }\n\"n\" = { input = 1, output = 2, cached = 3 }\n", path: "bad.toml") else {
            Issue.record("a negative price passed")
            return
        }
        #expect(e.description.contains("bad.toml:2: openai.m: input and output must be numbers"))
        #expect(e.description.contains("bad.toml:3: openai.n: unknown key cached"))
    }

    @Test("a reservation covers the prompt with a fifth to spare and the whole reply allowance")
    func estimate() {
        let p = Price(inputPerMillion: 1, outputPerMillion: 4)!  // 1 µ$ and 4 µ$ per token
        #expect(CallCost.estimate(p, promptTokens: 1000, maxTokens: 500) == NanoUSD(1200 * 1000 + 500 * 4000))
        #expect(CallCost.charge(p, usage: Usage(inputTokens: 10, outputTokens: 2), reserved: NanoUSD(99_999)) == (NanoUSD(18_000), false))
    }
}

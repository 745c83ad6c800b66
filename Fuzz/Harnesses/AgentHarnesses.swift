import AIBoxAgentCore
import AIBoxCore

// What the agent reads from the network and its files: a provider's streamed reply (SSE or
// NDJSON, from any server a box.toml names) and prices.toml.

/// A streamed reply: the first byte picks the provider kind, the second how the rest is cut
/// into reads. Whatever the bytes, the decoder ends in a whole reply or a failure, holds no
/// more than its bound, and the same bytes read in other pieces give the same outcome.
func fuzzReplyStream(_ bytes: [UInt8]) -> Verdict {
    guard bytes.count >= 2 else { return Verdict(accepted: false) }
    let kinds: [ProviderKind] = [.openai, .anthropic, .ollama, .llamacpp]
    let kind = kinds[Int(bytes[0]) % kinds.count]
    let body = Array(bytes.dropFirst(2))
    let step = max(1, Int(bytes[1]))
    func read(_ pieces: Int) -> (String, Usage?, Bool, String?) {
        var d = ReplyDecoder(kind: kind)
        var failure: CallFailure?
        var i = 0
        while i < body.count, failure == nil {
            failure = d.feed(body[i..<min(body.count, i + pieces)])
            i += pieces
        }
        if failure == nil { failure = d.finish() }
        let why: String? = failure.map { if case .midStream = $0 { return "mid-stream" } else { return "\($0)" } }
        return (d.text, d.usage, d.complete, why)
    }
    let whole = read(max(1, body.count))
    let cut = read(step)
    var problems: [String] = []
    if whole.0 != cut.0 || whole.1 != cut.1 || whole.2 != cut.2 || whole.3 != cut.3 {
        problems.append("reply-stream: \(kind) read whole and in pieces of \(step) differ: \(whole) vs \(cut)")
    }
    if whole.0.utf8.count > ReplyDecoder.maxReplyBytes + (1 << 20) { problems.append("reply-stream: the reply outgrew its bound") }
    return Verdict(accepted: whole.3 == nil, problems: problems)
}

/// prices.toml: accepted or refused with every error on a line of the file.
func fuzzPrices(_ bytes: [UInt8]) -> Verdict {
    switch PriceTable.parse(text: text(bytes), path: "prices.toml") {
    case .success(let t):
        let negative = t.prices.values.flatMap(\.values).contains { $0.inputPerToken < 0 || $0.outputPerToken < 0 }
        return Verdict(accepted: true, problems: negative ? ["prices: a negative price was accepted"] : [])
    case .failure(let e):
        let lines = e.description.split(separator: "\n").map { line -> Int? in
            let parts = line.split(separator: ":", maxSplits: 2)
            return parts.count > 1 ? Int(parts[1]) : nil
        }
        return Verdict(accepted: false, problems: linesInside(lines.map { $0 == 0 ? nil : $0 }, of: bytes, "prices"))
    }
}

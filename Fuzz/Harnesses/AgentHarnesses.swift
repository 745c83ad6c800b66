import AIBoxAgentCore
import AIBoxCore
import Crypto

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

/// A POST body to the WhatsApp webhook, signed as Meta signs it and then with one bit of the
/// signature changed. Signed, it is taken whatever it holds (Meta would redeliver a refusal for
/// days), and every message out of it has an id and a WhatsApp number (digits) as its sender;
/// badly signed, it is refused with 401 before anything reads it.
func fuzzWhatsAppWebhook(_ bytes: [UInt8]) -> Verdict {
    let secret = "fuzz-app-secret"
    let hook = WhatsAppWebhook(verifyToken: Secret("fuzz-verify"), appSecret: Secret(secret), phoneNumberID: "106540352242922")
    let mac = Array(HMAC<SHA256>.authenticationCode(for: bytes, using: SymmetricKey(data: Array(secret.utf8))))
    func header(_ m: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        return "sha256=" + String(decoding: m.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] }, as: UTF8.self)
    }
    var problems: [String] = []
    var accepted = false
    switch hook.receive(signature: header(mac), body: bytes) {
    case .rejected(let reply, let why):
        if !(reply.status == 413 && bytes.count > WhatsAppWebhook.maxBody) {
            problems.append("whatsapp-webhook: a body signed with the app secret was refused: \(reply.status) \(why)")
        }
    case .signed(let messages, _):
        accepted = !messages.isEmpty
        for m in messages where m.id.isEmpty || m.sender.isEmpty || !m.sender.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) || m.chat != m.sender || !m.isDirect {
            problems.append("whatsapp-webhook: a message taken with id \"\(m.id)\" from \"\(m.sender)\"")
        }
    }
    var forged = mac
    forged[Int(bytes.first ?? 0) % forged.count] ^= 1 << ((bytes.last ?? 0) % 8)
    if case .signed = hook.receive(signature: header(forged), body: bytes) {
        problems.append("whatsapp-webhook: a body with a wrong signature was taken")
    }
    return Verdict(accepted: accepted, problems: problems)
}

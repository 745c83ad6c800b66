import AIBoxCore
import Crypto
import Foundation
import Testing

@testable import AIBoxAgentCore

@Suite("WhatsApp webhook and Cloud API wire")
struct WhatsAppTests {
    static let appSecret = "app-secret-7f3a9c"
    static let verifyToken = "verify-word-19"
    static let phone = "106540352242922"
    let hook = WhatsAppWebhook(verifyToken: Secret(verifyToken), appSecret: Secret(appSecret), phoneNumberID: phone)

    func sign(_ body: [UInt8], key: String = appSecret) -> String {
        "sha256=" + HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Array(key.utf8))).map { String(format: "%02x", $0) }.joined()
    }

    func payload(messages: String, statuses: String? = nil, phoneID: String = phone) -> [UInt8] {
        let st = statuses.map { #", "statuses": \#($0)"# } ?? ""
        return Array(
            #"""
            {"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":"\#(phoneID)"},"contacts":[{"profile":{"name":"Owner"},"wa_id":"4915112345678"}],"messages":\#(messages)\#(st)},"field":"messages"}]}]}
            """#.utf8)
    }

    let textMessage = #"[{"from":"4915112345678","id":"wamid.HBgM1","timestamp":"1700000000","type":"text","text":{"body":"hello box"}}]"#

    // MARK: Signature

    @Test func aGoodSignatureIsTakenAndTheTextMessageParsed() {
        let body = payload(messages: textMessage)
        let d = hook.receive(signature: sign(body), body: body)
        #expect(
            d == .signed(
                messages: [IncomingMessage(channel: .whatsapp, id: "wamid.HBgM1", chat: "4915112345678", sender: "4915112345678", isDirect: true, text: "hello box")],
                skipped: 0))
        // Upper-case hex is the same signature.
        if case .signed(let m, _) = hook.receive(signature: sign(body).uppercased().replacingOccurrences(of: "SHA256=", with: "sha256="), body: body) {
            #expect(m.count == 1)
        } else {
            Issue.record("upper-case hex refused")
        }
    }

    @Test func aBadMissingOrMalformedSignatureIs401AndNothingParsed() {
        let body = payload(messages: textMessage)
        func rejected(_ sig: String?, _ b: [UInt8]) -> String? {
            if case .rejected(let reply, let why) = hook.receive(signature: sig, body: b) {
                #expect(reply.status == 401)
                return why
            }
            return nil
        }
        #expect(rejected(nil, body)?.contains("no X-Hub-Signature-256") == true)
        #expect(rejected(sign(body, key: "another-secret"), body)?.contains("does not match") == true)
        // The body altered after signing.
        var altered = body
        altered[altered.count - 5] ^= 1
        #expect(rejected(sign(body), altered)?.contains("does not match") == true)
        // Wrong prefix, no prefix, short, non-hex, sha1.
        let hex = String(sign(body).dropFirst(7))
        #expect(rejected("sha1=" + hex, body)?.contains("not sha256=") == true)
        #expect(rejected(hex, body) != nil)
        #expect(rejected("sha256=" + hex.dropLast(2), body) != nil)
        #expect(rejected("sha256=" + hex.dropLast(1) + "g", body) != nil)
        #expect(rejected("sha256= " + hex, body) != nil)
        #expect(rejected("", body) != nil)
        // Garbage signed with a wrong key is not parsed (a parse would count it as skipped).
        let garbage = Array("not json".utf8)
        #expect(rejected(sign(garbage, key: "x"), garbage) != nil)
        // The secret is in no reason.
        for sig in [nil, "sha1=00", sign(body, key: "k")] {
            #expect(!"\(hook.receive(signature: sig, body: body))".contains(Self.appSecret))
        }
        #expect(!"\(hook)".contains(Self.appSecret) && !"\(hook)".contains(Self.verifyToken))
    }

    @Test func anOversizedBodyIs413() {
        let big = [UInt8](repeating: 0x20, count: WhatsAppWebhook.maxBody + 1)
        guard case .rejected(let r, _) = hook.receive(signature: sign(big), body: big) else { Issue.record("taken"); return }
        #expect(r.status == 413)
    }

    @Test func constantTimeEqualIsEqualityOfBytes() {
        #expect(WhatsAppWebhook.constantTimeEqual([1, 2, 3], [1, 2, 3]))
        #expect(!WhatsAppWebhook.constantTimeEqual([1, 2, 3], [1, 2, 4]))
        #expect(!WhatsAppWebhook.constantTimeEqual([1, 2, 3], [1, 2]))
        #expect(WhatsAppWebhook.constantTimeEqual([], []))
    }

    // MARK: Verification

    @Test func theHandshakeEchoesTheChallengeOnlyForOurVerifyToken() {
        #expect(hook.verify(query: "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=verify-word-19") == WebhookReply(status: 200, body: "1158201444"))
        // Percent-encoded and in another order.
        #expect(hook.verify(query: "hub.verify_token=verify%2Dword%2D19&hub.challenge=abc&hub.mode=subscribe").status == 200)
        #expect(hook.verify(query: "hub.mode=subscribe&hub.challenge=1&hub.verify_token=verify-word-18") == .forbidden)
        #expect(hook.verify(query: "hub.mode=subscribe&hub.challenge=1&hub.verify_token=verify-word-190") == .forbidden)
        #expect(hook.verify(query: "hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=verify-word-19") == .forbidden)
        #expect(hook.verify(query: "hub.mode=subscribe&hub.verify_token=verify-word-19") == .forbidden)
        #expect(hook.verify(query: "") == .forbidden)
        #expect(hook.verify(query: "hub.mode=subscribe&hub.challenge=%3Cscript%3E&hub.verify_token=verify-word-19").status == 200)
        #expect(hook.verify(query: "hub.mode=subscribe&hub.challenge=a%0Ab&hub.verify_token=verify-word-19") == .forbidden)
        #expect(hook.verify(query: "hub.mode=subscribe&hub.challenge=\(String(repeating: "9", count: 2000))&hub.verify_token=verify-word-19") == .forbidden)
        // An empty verify token configured matches nothing, not even an empty one.
        let open = WhatsAppWebhook(verifyToken: Secret(""), appSecret: Secret("s"))
        #expect(open.verify(query: "hub.mode=subscribe&hub.challenge=1&hub.verify_token=") == .forbidden)
    }

    // MARK: Payloads

    @Test func statusesOnlyAndNonTextMessagesDeliverNothing() {
        let statuses = payload(
            messages: "[]", statuses: #"[{"id":"wamid.out1","status":"delivered","timestamp":"1700000001","recipient_id":"4915112345678"}]"#)
        #expect(hook.receive(signature: sign(statuses), body: statuses) == .signed(messages: [], skipped: 0))
        let onlyStatuses = Array(
            #"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"value":{"messaging_product":"whatsapp","statuses":[{"id":"wamid.x","status":"read"}]},"field":"messages"}]}]}"#.utf8)
        #expect(hook.receive(signature: sign(onlyStatuses), body: onlyStatuses) == .signed(messages: [], skipped: 0))
        let image = payload(messages: #"[{"from":"4915112345678","id":"wamid.img","timestamp":"1","type":"image","image":{"id":"1"}}, {"from":"4915112345678","id":"wamid.t","timestamp":"1","type":"text","text":{"body":"and text"}}, {"weird": true}]"#)
        guard case .signed(let m, let skipped) = hook.receive(signature: sign(image), body: image) else { Issue.record("rejected"); return }
        #expect(m.map(\.text) == ["and text"])
        #expect(skipped == 2)
        // Another phone number of the same app: skipped.
        let other = payload(messages: textMessage, phoneID: "999")
        #expect(hook.receive(signature: sign(other), body: other) == .signed(messages: [], skipped: 1))
        // Signed but not JSON: taken (answered 200), nothing delivered.
        let garbage = Array("{{{".utf8)
        #expect(hook.receive(signature: sign(garbage), body: garbage) == .signed(messages: [], skipped: 1))
        // A sender that is not a WhatsApp id (digits) is skipped.
        let odd = payload(messages: #"[{"from":"+49 151","id":"wamid.o","timestamp":"1","type":"text","text":{"body":"x"}}]"#)
        #expect(hook.receive(signature: sign(odd), body: odd) == .signed(messages: [], skipped: 1))
    }

    @Test func recentIDsForgetTheOldestPastCapacity() {
        var r = RecentIDs(capacity: 3)
        let first = [r.insert("a"), r.insert("b"), r.insert("c")]
        #expect(first == [true, true, true])
        let again = r.insert("a")
        #expect(!again)
        let d = r.insert("d")
        #expect(d)
        #expect(!r.contains("a") && r.contains("b") && r.contains("d"))
    }

    // MARK: Sending

    @Test func theMessagesCallCarriesTheTokenOnlyInItsAuthorization() throws {
        let token = "EAAG-secret-token"
        let long = String(repeating: "word ", count: 1000)
        let reqs = WhatsAppWire.sendMessage(baseURL: "https://graph.facebook.com/", phoneNumberID: Self.phone, token: Secret(token), OutgoingMessage(channel: .whatsapp, chat: "4915112345678", text: long))
        #expect(reqs.count == 2)
        #expect(reqs.allSatisfy { $0.url == "https://graph.facebook.com/v21.0/\(Self.phone)/messages" && $0.authorization == "Bearer " + token })
        let bodies = try reqs.map { try JSONSerialization.jsonObject(with: Data($0.body)) as! [String: Any] }
        #expect(bodies.allSatisfy { $0["messaging_product"] as? String == "whatsapp" && $0["to"] as? String == "4915112345678" && $0["type"] as? String == "text" })
        let texts = bodies.map { ($0["text"] as! [String: Any])["body"] as! String }
        #expect(texts.joined() == long)
        #expect(texts.allSatisfy { $0.count <= 4096 })
        for r in reqs {
            #expect("\(r)" == "messages")
            var dumped = ""
            dump(r, to: &dumped)
            #expect(!dumped.contains(token) && !String(reflecting: r).contains(token))
        }
    }

    @Test func answersAreParsed() {
        #expect(WhatsAppWire.parseSend(status: 200, body: Array(#"{"messaging_product":"whatsapp","contacts":[{"input":"1","wa_id":"1"}],"messages":[{"id":"wamid.X"}]}"#.utf8)) == .sent(id: "wamid.X"))
        let e = WhatsAppWire.parseSend(status: 400, body: Array(#"{"error":{"message":"(#131047) Re-engagement message","type":"OAuthException","code":131047,"error_subcode":2494010,"fbtrace_id":"Az8or2yhqkZfEZ-_4Qn_Bam"}}"#.utf8))
        #expect(e == .refused(WhatsAppError(status: 400, code: 131047, subcode: 2494010, type: "OAuthException", message: "(#131047) Re-engagement message", trace: "Az8or2yhqkZfEZ-_4Qn_Bam")))
        #expect(WhatsAppWire.parseSend(status: 502, body: Array("<html>bad gateway</html>".utf8)) == .refused(WhatsAppError(status: 502, message: "an answer that is not the Graph API's")))
        guard case .refused(let noID) = WhatsAppWire.parseSend(status: 200, body: Array("{}".utf8)) else { Issue.record("sent without id"); return }
        #expect(noID.status == 502)
    }

    @Test func errorsAreClassified() {
        func verdict(_ status: Int, _ code: Int?, retryAfter: Duration? = nil) -> WhatsAppVerdict {
            WhatsAppWire.classify(WhatsAppError(status: status, code: code, message: "m"), retryAfter: retryAfter, retry: WhatsAppRetry(rateLimited: .seconds(60), transient: .seconds(5)))
        }
        func isBroken(_ v: WhatsAppVerdict) -> Bool { if case .broken = v { true } else { false } }
        #expect(isBroken(verdict(401, 190)))
        #expect(isBroken(verdict(401, nil)))
        #expect(isBroken(verdict(403, 200)))
        guard case .broken(let why) = verdict(401, 190) else { return }
        #expect(why.contains("190") && why.contains("access token"))
        for (s, c) in [(400, 130429), (400, 131056), (400, 80007), (429, nil), (429, 4)] {
            guard case .retry(let after, let reason) = verdict(s, c) else { Issue.record("\(s) \(String(describing: c)) not a retry"); continue }
            #expect(after == .seconds(60) && reason.contains("rate limited"))
        }
        if case .retry(let after, _) = verdict(429, 130429, retryAfter: .seconds(7)) { #expect(after == .seconds(7)) } else { Issue.record("429") }
        guard case .failed(let window) = verdict(400, 131047) else { Issue.record("131047"); return }
        #expect(window.contains("131047") && window.contains("24 hours") && window.contains("send the box any message"))
        for s in [500, 502, 503] {
            guard case .retry(let after, _) = verdict(s, nil) else { Issue.record("\(s)"); continue }
            #expect(after == .seconds(5))
        }
        if case .retry = verdict(500, 131000) {} else { Issue.record("131000") }
        if case .failed = verdict(400, 100) {} else { Issue.record("100") }
        if case .failed = verdict(400, 131026) {} else { Issue.record("131026") }
    }
}

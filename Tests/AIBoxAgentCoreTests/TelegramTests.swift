import AIBoxCore
import Foundation
import Testing

@testable import AIBoxAgentCore

@Suite("Telegram poller")
struct TelegramPollerTests {
    let t0 = Instant(nanoseconds: 1_000_000_000_000)

    func text(_ id: Int64, from: Int64 = 42, chat: Int64 = 42, type: String = "private", _ t: String = "hi") -> TelegramUpdate {
        TelegramUpdate(
            id: id, message: IncomingMessage(channel: .telegram, id: String(id), chat: String(chat), sender: String(from), isDirect: type == "private", text: t))
    }

    func pollOf(_ actions: [TelegramAction]) -> (offset: Int64?, timeout: Duration, deadline: Instant)? {
        for a in actions { if case .poll(let o, let t, let d) = a { return (o, t, d) } }
        return nil
    }

    func waitOf(_ actions: [TelegramAction]) -> Instant? {
        for a in actions { if case .wait(let u) = a { return u } }
        return nil
    }

    @Test func firstPollIsAnsweredAtOnceThenLongPollsWithADeadlineBeyondThem() {
        var p = TelegramPoller(settings: TelegramPollSettings(longPoll: .seconds(30), slack: .seconds(15)), offset: 77)
        let a = p.start(now: t0)
        #expect(a.first == .report(.starting))
        // Not up yet: a poll Telegram answers at once shows whether the connection works.
        let first = pollOf(a)
        #expect(first?.offset == 77)
        #expect(first?.timeout == .zero)
        #expect(first?.deadline == t0 + .seconds(15))
        // Up: long polls, each given up 15 s after Telegram should have answered.
        let b = p.received(.updates([]), now: t0 + .milliseconds(40), random: 0.5)
        #expect(b.first == .report(.up))
        #expect(pollOf(b)?.timeout == .seconds(30))
        #expect(pollOf(b)?.deadline == t0 + .milliseconds(40) + .seconds(45))
        // After a failure, the first poll is short again.
        let c = p.received(.timedOut, now: t0 + .seconds(100), random: 0.5)
        guard case .wait(let until) = c.last else { Issue.record("no wait after a failure: \(c)"); return }
        #expect(pollOf(p.wake(now: until))?.timeout == .zero)
    }

    @Test func messagesAreDeliveredBeforeTheOffsetIsPersisted() {
        var p = TelegramPoller(offset: nil)
        _ = p.start(now: t0)
        let a = p.received(.updates([text(10), text(11, "second")]), now: t0 + .seconds(1), random: 0.5)
        #expect(a == [.report(.up), .deliver([text(10).message!, text(11, "second").message!])])
        // Nothing is confirmed (no poll, no offset) until the receiver recorded them.
        #expect(p.offset == nil)
        let b = p.delivered(recorded: true, now: t0 + .seconds(1), random: 0.5)
        #expect(b.first == .persistOffset(12))
        #expect(pollOf(b)?.offset == 12)
        #expect(p.lastRoundTrip == .seconds(1))
    }

    @Test func unrecordedMessagesAreNotConfirmed() {
        var p = TelegramPoller(offset: 5)
        _ = p.start(now: t0)
        _ = p.received(.updates([text(5)]), now: t0, random: 0.5)
        let a = p.delivered(recorded: false, now: t0, random: 0.5)
        #expect(!a.contains { if case .persistOffset = $0 { return true } else { return false } })
        #expect(waitOf(a) != nil)
        #expect(pollOf(p.wake(now: t0 + .seconds(2)))?.offset == 5)
    }

    @Test func updatesWithoutTextMoveTheOffsetOnWithoutADelivery() {
        var p = TelegramPoller(offset: nil)
        _ = p.start(now: t0)
        let a = p.received(.updates([TelegramUpdate(id: 30, message: nil), TelegramUpdate(id: 31, message: nil)]), now: t0, random: 0.5)
        #expect(a == [.report(.up), .persistOffset(32), .poll(offset: 32, timeout: .seconds(30), deadline: t0 + .seconds(45))])
    }

    @Test func updatesBelowTheOffsetAreDroppedAsDuplicates() {
        var p = TelegramPoller(offset: nil)
        _ = p.start(now: t0)
        _ = p.received(.updates([text(10)]), now: t0, random: 0.5)
        _ = p.delivered(recorded: true, now: t0, random: 0.5)
        // Telegram serves update 10 again, with 11.
        let a = p.received(.updates([text(10), text(11)]), now: t0, random: 0.5)
        #expect(a == [.deliver([text(11).message!])])
        // Only 10 again: nothing delivered, polling goes on with the same offset.
        _ = p.delivered(recorded: true, now: t0, random: 0.5)
        let b = p.received(.updates([text(10), text(11)]), now: t0, random: 0.5)
        #expect(pollOf(b)?.offset == 12)
        #expect(!b.contains { if case .deliver = $0 { return true } else { return false } })
    }

    @Test func conflictBacksOffAndIsReportedOnce() {
        var p = TelegramPoller(offset: 1)
        var now = t0
        var actions = p.start(now: now)
        var polls = 0
        var reports: [ChannelState] = []
        let hour = t0 + .seconds(3600)
        // A webhook is set for an hour: every poll gets 409.
        while now < hour {
            for a in actions {
                if case .report(let s) = a { reports.append(s) }
            }
            if pollOf(actions) != nil {
                polls += 1
                actions = p.received(.refused(TelegramError(code: 409, description: "Conflict: can't use getUpdates method while webhook is active")), now: now, random: 0.5)
            } else if let until = waitOf(actions) {
                #expect(until.since(now) >= .seconds(24))  // 30 s less 20 % jitter at most
                now = until
                actions = p.wake(now: now)
            } else {
                Issue.record("no poll and no wait: \(actions)")
                break
            }
        }
        // At least 30 s apart, backing off to 5 min: a few dozen polls, not thousands.
        #expect(polls < 30)
        #expect(polls > 10)
        #expect(reports.count == 2)  // starting, then retrying once
        guard case .retrying(let reason) = reports.last else { Issue.record("not retrying: \(reports)"); return }
        #expect(reason.contains("409"))
        #expect(reason.contains("webhook"))
    }

    @Test func tooManyRequestsWaitsRetryAfter() {
        var p = TelegramPoller(offset: 1)
        _ = p.start(now: t0)
        let a = p.received(.refused(TelegramError(code: 429, description: "Too Many Requests: retry after 17", retryAfter: .seconds(17))), now: t0, random: 0.9)
        #expect(waitOf(a) == t0 + .seconds(17))
        guard case .retrying(let reason) = p.state else { Issue.record("\(p.state)"); return }
        #expect(reason.contains("429"))
    }

    @Test func aWrongTokenBreaksTheChannelForGood() {
        for code in [401, 404] {
            var p = TelegramPoller(offset: 1)
            _ = p.start(now: t0)
            let a = p.received(.refused(TelegramError(code: code, description: code == 401 ? "Unauthorized" : "Not Found")), now: t0, random: 0.5)
            #expect(a.count == 1)
            guard case .report(.broken(let reason)) = a.first else { Issue.record("\(a)"); continue }
            #expect(reason.contains("\(code)"))
            #expect(p.wake(now: t0 + .seconds(60)).isEmpty)
        }
    }

    @Test func serverErrorsAndTransportFailuresBackOffExponentiallyWithACap() {
        var p = TelegramPoller(settings: TelegramPollSettings(errorBackoff: Backoff(base: .seconds(1), max: .seconds(60), jitter: 0.2)), offset: 1)
        var now = t0
        _ = p.start(now: now)
        var delays: [Duration] = []
        for i in 0..<10 {
            let result: TelegramPollResult = i % 2 == 0 ? .refused(TelegramError(code: 502, description: "Bad Gateway")) : .transport("connection refused")
            let until = waitOf(p.received(result, now: now, random: 0.5))!
            delays.append(until.since(now))
            now = until
            _ = p.wake(now: now)
        }
        #expect(Array(delays.prefix(4)) == [.seconds(1), .seconds(2), .seconds(4), .seconds(8)])
        #expect(delays.last == .seconds(60))
        // Jitter comes from the random number given.
        var q = TelegramPoller(offset: 1)
        _ = q.start(now: t0)
        #expect(waitOf(q.received(.transport("x"), now: t0, random: 0))! == t0 + .milliseconds(800))
        // An answer resets the backoff.
        _ = p.received(.updates([]), now: now, random: 0.5)
        #expect(p.state == .up)
        #expect(waitOf(p.received(.transport("x"), now: now, random: 0.5)) == now + .seconds(1))
    }

    @Test func aHungPollIsCutAtItsDeadlineAndPollingResumes() {
        var p = TelegramPoller(settings: TelegramPollSettings(longPoll: .seconds(25), slack: .seconds(10)), offset: 3)
        _ = p.start(now: t0)
        let deadline = pollOf(p.received(.updates([]), now: t0, random: 0.5))!.deadline
        #expect(deadline == t0 + .seconds(35))
        let a = p.received(.timedOut, now: deadline, random: 0.5)
        guard case .retrying(let reason) = p.state else { Issue.record("\(p.state)"); return }
        #expect(reason.contains("no answer within 35s"))
        let next = p.wake(now: waitOf(a)!)
        #expect(pollOf(next)?.offset == 3)
    }
}

@Suite("Telegram wire")
struct TelegramWireTests {
    let token = Secret("123456:ABC-secret-token")

    @Test func getUpdatesAsksForMessagesOnly() throws {
        let r = TelegramWire.getUpdates(baseURL: "http://127.0.0.1:9/", token: token, offset: 12, timeout: .seconds(30))
        #expect(r.url == "http://127.0.0.1:9/bot123456:ABC-secret-token/getUpdates")
        let body = try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any]
        #expect(body?["offset"] as? Int == 12)
        #expect(body?["timeout"] as? Int == 30)
        #expect(body?["allowed_updates"] as? [String] == ["message"])
        // The request prints as its method, however it is printed.
        #expect("\(r)" == "getUpdates")
        #expect(String(reflecting: r) == "getUpdates")
        var dumped = ""
        dump(r, to: &dumped)
        #expect(!dumped.contains("secret-token"))
    }

    @Test func updatesAreParsed() {
        let body = """
            {"ok":true,"result":[
             {"update_id":100,"message":{"message_id":1,"date":1,"chat":{"id":42,"type":"private"},"from":{"id":42,"is_bot":false,"first_name":"A"},"text":"hello"}},
             {"update_id":101,"message":{"message_id":2,"date":1,"chat":{"id":-100200,"type":"group"},"from":{"id":43,"is_bot":false,"first_name":"B"},"text":"/status"}},
             {"update_id":102,"message":{"message_id":3,"date":1,"chat":{"id":42,"type":"private"},"from":{"id":42,"is_bot":false,"first_name":"A"},"sticker":{"file_id":"x"}}},
             {"update_id":103,"edited_message":{"message_id":1,"date":1,"chat":{"id":42,"type":"private"},"text":"hello!"}},
             {"update_id":104,"message":{"chat":"not an object"}}
            ]}
            """
        let r = TelegramWire.parseUpdates(status: 200, body: Array(body.utf8))
        #expect(
            r
                == .updates([
                    TelegramUpdate(id: 100, message: IncomingMessage(channel: .telegram, id: "100", chat: "42", sender: "42", isDirect: true, text: "hello")),
                    TelegramUpdate(id: 101, message: IncomingMessage(channel: .telegram, id: "101", chat: "-100200", sender: "43", isDirect: false, text: "/status")),
                    TelegramUpdate(id: 102, message: nil), TelegramUpdate(id: 103, message: nil), TelegramUpdate(id: 104, message: nil),
                ]))
    }

    @Test func errorsAreParsed() {
        let conflict = #"{"ok":false,"error_code":409,"description":"Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"}"#
        #expect(TelegramWire.parseUpdates(status: 409, body: Array(conflict.utf8)) == .refused(TelegramError(code: 409, description: "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running")))
        let rate = #"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#
        #expect(TelegramWire.parseUpdates(status: 429, body: Array(rate.utf8)) == .refused(TelegramError(code: 429, description: "Too Many Requests: retry after 7", retryAfter: .seconds(7))))
        // A proxy's HTML page: the status is what counts.
        guard case .refused(let e) = TelegramWire.parseUpdates(status: 502, body: Array("<html>bad gateway</html>".utf8)) else { Issue.record("not refused"); return }
        #expect(e.code == 502)
        // Nested too deep: refused before the decoder sees it.
        guard case .refused = TelegramWire.parseUpdates(status: 200, body: Array((String(repeating: "[", count: 600)).utf8)) else { Issue.record("deep JSON taken"); return }
        #expect(TelegramWire.parseSend(status: 200, body: Array(#"{"ok":true,"result":{"message_id":9,"date":1,"chat":{"id":1,"type":"private"}}}"#.utf8)) == .sent(messageID: 9))
    }

    @Test func sendMessageSplitsLongTextAtLineAndSpaceBoundaries() throws {
        #expect(TelegramWire.split("short") == ["short"])
        let lines = (0..<200).map { "line \($0) " + String(repeating: "x", count: 20) }.joined(separator: "\n")
        let parts = TelegramWire.split(lines)
        #expect(parts.count == 2)
        #expect(parts.joined() == lines)
        #expect(parts.allSatisfy { $0.utf16.count <= 4096 })
        #expect(parts[0].hasSuffix("\n"))
        // A CRLF line end (one Character in Swift) is a line end too.
        let crlf = String(repeating: "a", count: 3000) + "\r\n" + String(repeating: "b", count: 3000)
        #expect(TelegramWire.split(crlf) == [String(repeating: "a", count: 3000) + "\r\n", String(repeating: "b", count: 3000)])
        // No line break: cut after a space.
        let words = String(repeating: "word ", count: 2000)
        let w = TelegramWire.split(words)
        #expect(w.joined() == words && w.allSatisfy { $0.utf16.count <= 4096 && $0.hasSuffix(" ") })
        // Emoji take two UTF-16 units each and are never cut in half.
        let emoji = String(repeating: "😀", count: 3000)
        let e = TelegramWire.split(emoji)
        #expect(e.map { $0.utf16.count } == [4096, 1904])
        let reqs = TelegramWire.sendMessage(baseURL: TelegramWire.defaultBaseURL, token: token, OutgoingMessage(channel: .telegram, chat: "42", text: lines))
        #expect(reqs.count == 2)
        let first = try JSONSerialization.jsonObject(with: Data(reqs[0].body)) as? [String: Any]
        #expect(first?["chat_id"] as? Int == 42)
        #expect(first?["text"] as? String == parts[0])
        #expect(reqs[0].url.hasPrefix("https://api.telegram.org/bot"))
    }
}

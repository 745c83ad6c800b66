import AIBoxCore
import Foundation
import Testing

@testable import AIBoxAgentCore

@Suite("Slack Socket Mode session")
struct SlackSessionTests {
    let t0 = Instant(nanoseconds: 1_000_000_000_000)
    let url1 = "wss://wss-primary.slack.com/link/?ticket=one&app_id=A1"
    let url2 = "wss://wss-primary.slack.com/link/?ticket=two&app_id=A1"
    let settings = SlackSettings(backoff: Backoff(base: .seconds(1), max: .seconds(8), jitter: 0.2), helloTimeout: .seconds(10))

    func message(_ id: String) -> IncomingMessage {
        IncomingMessage(channel: .slack, id: id, chat: "D1", sender: "T1:U1", isDirect: true, text: "hi")
    }

    /// A session whose first socket said hello 200 ms after it was asked for.
    func ready() -> SlackSession {
        var s = SlackSession(settings: settings)
        _ = s.start(now: t0)
        _ = s.opened(.opened(url: url1), now: t0, random: 0.5)
        _ = s.received(socket: 1, .hello, now: t0 + .milliseconds(200), random: 0.5)
        return s
    }

    func stateOf(_ a: [SlackAction]) -> ChannelState? {
        a.compactMap { if case .report(let s) = $0 { s } else { nil } }.last
    }

    @Test func opensASocketAndIsUpAtHello() {
        var s = SlackSession(settings: settings)
        #expect(s.start(now: t0) == [.report(.starting), .openConnection])
        #expect(s.opened(.opened(url: url1), now: t0, random: 0) == [.connect(socket: 1, url: url1)])
        #expect(s.nextDeadline == t0 + .seconds(10))
        #expect(s.received(socket: 1, .hello, now: t0 + .milliseconds(250), random: 0) == [.report(.up)])
        #expect(s.lastRoundTrip == .milliseconds(250))
        #expect(s.nextDeadline == nil)
        #expect(s.socketCount == 1)
    }

    @Test func aRefusedAppTokenBreaksTheChannelForGood() {
        for error in ["invalid_auth", "not_authed", "account_inactive", "token_revoked", "not_allowed_token_type", "missing_scope"] {
            var s = SlackSession(settings: settings)
            _ = s.start(now: t0)
            let a = s.opened(.refused(error: error), now: t0, random: 0.5)
            guard case .broken(let why) = stateOf(a) else { Issue.record("\(error): \(a)"); continue }
            #expect(why.contains(error) && why.hasPrefix("apps.connections.open: "))
            #expect(s.nextDeadline == nil)
            #expect(s.tick(now: t0 + .seconds(3600), random: 0.5) == [])
        }
    }

    @Test func otherRefusalsAndTransportFailuresBackOffWithTheSharedBackoff() {
        var s = SlackSession(settings: settings)
        _ = s.start(now: t0)
        var now = t0
        for (attempt, result) in [
            SlackOpenResult.refused(error: "internal_error"), .transport("HTTP 503"), .transport("no answer within 30s"),
        ].enumerated() {
            let a = s.opened(result, now: now, random: 0.5)
            #expect(attempt > 0 || stateOf(a) == .retrying(reason: "apps.connections.open: Slack answered internal_error"))
            let delay = settings.backoff.delay(attempt: attempt + 1, random: 0.5)
            let due = now + delay
            #expect(s.nextDeadline == due)
            #expect(s.tick(now: now + (delay - .milliseconds(1)), random: 0.5) == [])
            #expect(s.tick(now: due, random: 0.5) == [.openConnection])
            now = due
        }
        #expect(s.failures == 3)
        // A hello ends the failures.
        _ = s.opened(.opened(url: url1), now: now, random: 0.5)
        #expect(s.received(socket: 1, .hello, now: now, random: 0.5) == [.report(.up)])
        #expect(s.failures == 0)
    }

    @Test func a429WaitsItsRetryAfter() {
        var s = SlackSession(settings: settings)
        _ = s.start(now: t0)
        let a = s.opened(.rateLimited(after: .seconds(7)), now: t0, random: 0.5)
        #expect(stateOf(a) == .retrying(reason: "apps.connections.open: 429 Too Many Requests: retry after 7s"))
        #expect(s.nextDeadline == t0 + .seconds(7))
        #expect(s.tick(now: t0 + .seconds(6), random: 0.5) == [])
        #expect(s.tick(now: t0 + .seconds(7), random: 0.5) == [.openConnection])
    }

    @Test func aRefreshOpensTheNewSocketBeforeClosingTheOldNeverMoreThanTwo() {
        var s = ready()
        #expect(s.received(socket: 1, .disconnect(reason: "refresh_requested"), now: t0 + .seconds(1), random: 0.5) == [.openConnection])
        // A second disconnect, a warning, changes nothing: one new socket is enough.
        #expect(s.received(socket: 1, .disconnect(reason: "warning"), now: t0 + .seconds(1), random: 0.5) == [])
        #expect(s.opened(.opened(url: url2), now: t0 + .seconds(2), random: 0.5) == [.connect(socket: 2, url: url2)])
        #expect(s.socketCount == 2)
        // The old socket still delivers (and acknowledges) until the new one says hello.
        #expect(
            s.received(socket: 1, .envelope(id: "e1", message: message("Ev1")), now: t0 + .seconds(2), random: 0.5) == [
                .deliver(socket: 1, envelope: "e1", message("Ev1"))
            ])
        #expect(s.delivered(socket: 1, envelope: "e1", recorded: true) == [.ack(socket: 1, envelope: "e1")])
        #expect(s.received(socket: 2, .hello, now: t0 + .seconds(2) + .milliseconds(100), random: 0.5) == [.close(socket: 1)])
        #expect(s.state == .up && s.lastRoundTrip == .milliseconds(100))
        // Slack asks again before the old socket's end was reported: no third socket yet.
        #expect(s.received(socket: 2, .disconnect(reason: "refresh_requested"), now: t0 + .seconds(3), random: 0.5) == [])
        #expect(s.socketCount == 2)
        #expect(s.closed(socket: 1, why: "closed with 1000", now: t0 + .seconds(3), random: 0.5) == [.openConnection])
        #expect(s.opened(.opened(url: url1), now: t0 + .seconds(4), random: 0.5) == [.connect(socket: 3, url: url1)])
        #expect(s.socketCount == 2)
        #expect(s.received(socket: 3, .hello, now: t0 + .seconds(4), random: 0.5) == [.close(socket: 2)])
        #expect(s.state == .up && s.failures == 0)
    }

    @Test func slackClosingTheOldSocketFirstIsNoFailure() {
        var s = ready()
        _ = s.received(socket: 1, .disconnect(reason: "warning"), now: t0 + .seconds(1), random: 0.5)
        // Slack closes the old socket while the new one is still being asked for.
        let a = s.closed(socket: 1, why: "closed with 1000", now: t0 + .seconds(2), random: 0.5)
        #expect(stateOf(a) == .retrying(reason: "Slack closed the socket it asked to replace; a new one is opening"))
        #expect(!a.contains(.openConnection))  // one is under way already
        #expect(s.opened(.opened(url: url2), now: t0 + .seconds(2), random: 0.5) == [.connect(socket: 2, url: url2)])
        #expect(s.received(socket: 2, .hello, now: t0 + .seconds(2), random: 0.5) == [.report(.up)])
        #expect(s.failures == 0)
    }

    @Test func aReplacementThatFailsIsRetriedWhileTheOldSocketServes() {
        var s = ready()
        _ = s.received(socket: 1, .disconnect(reason: "refresh_requested"), now: t0 + .seconds(1), random: 0.5)
        // Still up: the old socket serves while the next try waits.
        #expect(s.opened(.transport("HTTP 502"), now: t0 + .seconds(1), random: 0.5) == [])
        #expect(s.state == .up)
        let due = try! #require(s.nextDeadline)
        #expect(s.tick(now: due, random: 0.5) == [.openConnection])
    }

    @Test func linkDisabledBreaksAndClosesEverySocket() {
        var s = ready()
        _ = s.received(socket: 1, .disconnect(reason: "refresh_requested"), now: t0, random: 0.5)
        _ = s.opened(.opened(url: url2), now: t0, random: 0.5)
        let a = s.received(socket: 2, .disconnect(reason: "link_disabled"), now: t0, random: 0.5)
        #expect(a.filter { if case .close = $0 { true } else { false } } == [.close(socket: 1), .close(socket: 2)])
        guard case .broken(let why) = stateOf(a) else { Issue.record("\(a)"); return }
        #expect(why.contains("link_disabled") && why.contains("Socket Mode"))
        #expect(s.closed(socket: 1, why: "closed", now: t0, random: 0.5) == [])
        #expect(s.tick(now: t0 + .seconds(100), random: 0.5) == [])
    }

    @Test func aSocketWithoutHelloIsClosedAndReplacedAfterTheBackoff() {
        var s = SlackSession(settings: settings)
        _ = s.start(now: t0)
        _ = s.opened(.opened(url: url1), now: t0, random: 0.5)
        #expect(s.tick(now: t0 + .seconds(9), random: 0.5) == [])
        let a = s.tick(now: t0 + .seconds(10), random: 0.5)
        #expect(a == [.close(socket: 1), .report(.retrying(reason: "the socket did not say hello within 10s"))])
        // Its end (reported later) changes nothing; the next socket after the backoff.
        #expect(s.closed(socket: 1, why: "closed with 1000", now: t0 + .seconds(10), random: 0.5) == [])
        #expect(s.tick(now: t0 + .seconds(11), random: 0.5) == [.openConnection])
    }

    @Test func anUnexpectedEndIsRetriedWithACappedBackoff() {
        var s = ready()
        var now = t0 + .seconds(1)
        var delays: [Duration] = []
        for i in 1...6 {
            let a = s.closed(socket: i, why: "ended without a close frame", now: now, random: 0.5)
            #expect(stateOf(a) == (i == 1 ? .retrying(reason: "the socket ended without a close frame") : nil))
            let due = try! #require(s.nextDeadline)
            delays.append(due.since(now))
            #expect(s.tick(now: due, random: 0.5) == [.openConnection])
            #expect(s.opened(.opened(url: url1), now: due, random: 0.5) == [.connect(socket: i + 1, url: url1)])
            now = due
        }
        #expect(delays == [.seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(8), .seconds(8)])
    }

    @Test func envelopesAreAcknowledgedOnlyOnceRecorded() {
        var s = ready()
        // Nothing for the assistant: acknowledged at once.
        #expect(s.received(socket: 1, .envelope(id: "e0", message: nil), now: t0, random: 0.5) == [.ack(socket: 1, envelope: "e0")])
        #expect(
            s.received(socket: 1, .envelope(id: "e1", message: message("Ev1")), now: t0, random: 0.5) == [
                .deliver(socket: 1, envelope: "e1", message("Ev1"))
            ])
        // Not recorded: no acknowledgement, Slack sends it again.
        #expect(s.delivered(socket: 1, envelope: "e1", recorded: false) == [])
        #expect(s.delivered(socket: 1, envelope: "e1", recorded: true) == [.ack(socket: 1, envelope: "e1")])
        // A socket gone (or closing) cannot acknowledge: Slack's retry brings it again.
        #expect(s.delivered(socket: 9, envelope: "e2", recorded: true) == [])
        #expect(s.received(socket: 1, .other("x"), now: t0, random: 0.5) == [])
    }

    @Test func shutdownClosesEverySocket() {
        var s = ready()
        _ = s.received(socket: 1, .disconnect(reason: "refresh_requested"), now: t0, random: 0.5)
        _ = s.opened(.opened(url: url2), now: t0, random: 0.5)
        #expect(s.shutdown() == [.close(socket: 1), .close(socket: 2)])
        #expect(s.nextDeadline == nil)
        #expect(s.closed(socket: 2, why: "closed", now: t0, random: 0.5) == [])
    }
}

@Suite("Slack's wire format")
struct SlackWireTests {
    func envelope(_ event: String, envelope: String = "env-1", eventID: String? = "Ev0123", retry: Int = 0) -> [UInt8] {
        let id = eventID.map { ", \"event_id\": \"\($0)\"" } ?? ""
        return Array(
            """
            {"envelope_id": "\(envelope)", "type": "events_api", "accepts_response_payload": false, "retry_attempt": \(retry),
             "retry_reason": "", "payload": {"token": "x", "team_id": "T0AIBOX", "api_app_id": "A1", "type": "event_callback"\(id),
             "event_time": 1700000000, "event": \(event)}}
            """.utf8)
    }

    let im =
        #"{"type": "message", "channel": "D024BE91L", "user": "U2147483697", "text": "Hello box", "ts": "1355517523.000005", "channel_type": "im", "client_msg_id": "c1", "blocks": [{"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": "Hello box"}]}]}]}"#

    @Test func aDirectMessageIsAnIncomingMessageNamedByItsEventID() {
        let m = IncomingMessage(
            channel: .slack, id: "Ev0123", chat: "D024BE91L", sender: "T0AIBOX:U2147483697", isDirect: true, text: "Hello box")
        #expect(SlackWire.parse(envelope(im)) == .envelope(id: "env-1", message: m))
        // Slack's retry of the same event: a new envelope, the same event id, so the same message id.
        #expect(SlackWire.parse(envelope(im, envelope: "env-2", retry: 1)) == .envelope(id: "env-2", message: m))
        // Without an event id, the envelope names it.
        guard case .envelope(_, let noID?) = SlackWire.parse(envelope(im, eventID: nil)) else { Issue.record("no message"); return }
        #expect(noID.id == "env-1")
    }

    @Test func aChannelMessageIsNotDirectAndAnotherTeamsUserKeepsItsTeam() {
        let event =
            #"{"type": "message", "channel": "C1", "user": "U9", "user_team": "T0OTHER", "text": "hey", "ts": "1.2", "channel_type": "channel"}"#
        guard case .envelope(_, let m?) = SlackWire.parse(envelope(event)) else { Issue.record("no message"); return }
        #expect(!m.isDirect && m.chat == "C1" && m.sender == "T0OTHER:U9")
    }

    @Test func theBotsOwnMessagesEditsJoinsAndOtherEventsAreAcknowledgedNotDelivered() {
        for event in [
            #"{"type": "message", "channel": "D1", "user": "U0BOT", "bot_id": "B1", "text": "my own reply", "channel_type": "im"}"#,
            #"{"type": "message", "subtype": "message_changed", "channel": "D1", "channel_type": "im", "message": {"text": "x"}}"#,
            #"{"type": "message", "subtype": "channel_join", "channel": "C1", "user": "U1", "text": "<@U1> has joined"}"#,
            #"{"type": "message", "channel": "D1", "user": "U1", "text": "", "channel_type": "im"}"#,
            #"{"type": "reaction_added", "user": "U1", "reaction": "thumbsup"}"#,
            #"{"type": "app_mention", "channel": "C1", "user": "U1", "text": "<@U0BOT> hi"}"#,
            #""a string, not an event""#,
        ] {
            #expect(SlackWire.parse(envelope(event)) == .envelope(id: "env-1", message: nil), "\(event)")
        }
        let slash = Array(
            #"{"envelope_id": "env-9", "type": "slash_commands", "payload": {"command": "/x"}, "accepts_response_payload": true}"#.utf8)
        #expect(SlackWire.parse(slash) == .envelope(id: "env-9", message: nil))
    }

    @Test func helloDisconnectAndWhatIsNotSlacks() {
        let hello =
            #"{"type": "hello", "num_connections": 1, "debug_info": {"host": "applink-1", "approximate_connection_time": 18060}, "connection_info": {"app_id": "A1"}}"#
        #expect(SlackWire.parse(Array(hello.utf8)) == .hello)
        #expect(
            SlackWire.parse(Array(#"{"type": "disconnect", "reason": "refresh_requested", "debug_info": {"host": "h"}}"#.utf8))
                == .disconnect(reason: "refresh_requested"))
        #expect(
            SlackWire.parse(Array(#"{"type": "disconnect", "reason": "<script>"}"#.utf8)) == .disconnect(reason: "something unreadable"))
        #expect(SlackWire.parse(Array("not json".utf8)) == .other("a frame that is not Slack's"))
        #expect(SlackWire.parse(Array(#"{"type": "events_api", "payload": {}}"#.utf8)) == .other("events_api without an envelope_id"))
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(
            SlackWire.parse(Array(#"{"envelope_id": "e", "type": "events_api", "payload": \#(deep)}"#.utf8))
                == .other("a frame that is not Slack's"))
        #expect(SlackWire.parse([UInt8](repeating: 0x20, count: SlackWire.maxBody + 1)) == .other("a frame that is not Slack's"))
    }

    @Test func theAcknowledgementIsTheEnvelopeID() throws {
        let ack = SlackWire.ack("a\"b")
        let obj = try JSONSerialization.jsonObject(with: Data(ack.utf8)) as? [String: String]
        #expect(obj == ["envelope_id": "a\"b"])
    }

    @Test func connectionsOpenAnswers() {
        let d = Duration.seconds(5)
        #expect(
            SlackWire.parseOpen(
                status: 200, body: Array(#"{"ok": true, "url": "wss://x/link/?ticket=t"}"#.utf8), retryAfter: nil, defaultRetryAfter: d)
                == .opened(url: "wss://x/link/?ticket=t"))
        #expect(
            SlackWire.parseOpen(
                status: 200, body: Array(#"{"ok": false, "error": "invalid_auth"}"#.utf8), retryAfter: nil, defaultRetryAfter: d)
                == .refused(error: "invalid_auth"))
        #expect(
            SlackWire.parseOpen(
                status: 429, body: Array(#"{"ok": false, "error": "ratelimited"}"#.utf8), retryAfter: "7", defaultRetryAfter: d)
                == .rateLimited(after: .seconds(7)))
        #expect(SlackWire.parseOpen(status: 429, body: [], retryAfter: "soon", defaultRetryAfter: d) == .rateLimited(after: d))
        #expect(
            SlackWire.parseOpen(status: 503, body: Array("<html>".utf8), retryAfter: nil, defaultRetryAfter: d) == .transport("HTTP 503"))
        #expect(
            SlackWire.parseOpen(status: 200, body: Array("<html>".utf8), retryAfter: nil, defaultRetryAfter: d)
                == .transport("an answer that is not Slack's (HTTP 200)"))
        #expect(SlackWire.fatalOpenError("internal_error") == nil)
        #expect(SlackWire.fatalOpenError("token_revoked")?.contains("App-Level Tokens") == true)
    }

    @Test func postMessageAnswersAreToldApart() {
        func send(_ status: Int, _ body: String, _ retryAfter: String? = nil) -> SlackSendResult {
            SlackWire.parseSend(status: status, body: Array(body.utf8), retryAfter: retryAfter, defaultRetryAfter: .seconds(5))
        }
        #expect(send(200, #"{"ok": true, "channel": "D1", "ts": "1.2"}"#) == .sent)
        #expect(
            send(429, #"{"ok": false, "error": "ratelimited"}"#, "3")
                == .retry(after: .seconds(3), reason: "chat.postMessage: 429 ratelimited: retry after 3s"))
        #expect(
            send(200, #"{"ok": false, "error": "ratelimited"}"#)
                == .retry(after: .seconds(5), reason: "chat.postMessage: 429 ratelimited: retry after 5s"))
        #expect(
            send(200, #"{"ok": false, "error": "internal_error"}"#)
                == .retry(after: .seconds(5), reason: "chat.postMessage: Slack answered internal_error"))
        #expect(
            send(502, "bad gateway") == .retry(after: .seconds(5), reason: "chat.postMessage: an answer that is not Slack's (HTTP 502)"))
        #expect(
            send(200, #"{"ok": false, "error": "not_in_channel"}"#)
                == .failed(reason: "chat.postMessage: not_in_channel: invite the bot to the channel"))
        #expect(
            send(200, #"{"ok": false, "error": "channel_not_found"}"#)
                == .failed(reason: "chat.postMessage: channel_not_found: no such channel, or the bot cannot see it"))
        #expect(send(200, #"{"ok": false, "error": "msg_too_long"}"#) == .failed(reason: "chat.postMessage: Slack answered msg_too_long"))
        guard case .broken(let why) = send(200, #"{"ok": false, "error": "invalid_auth"}"#) else { Issue.record("not broken"); return }
        #expect(why.contains("invalid_auth") && why.contains("bot token"))
        guard case .broken(let scope) = send(200, #"{"ok": false, "error": "missing_scope", "needed": "chat:write"}"#) else {
            Issue.record("not broken"); return
        }
        #expect(scope.contains("chat:write"))
    }

    @Test func aLongReplyIsSplitAtTheLimitAndAnOwnersChatIsTheirDM() throws {
        let text = (0..<900).map { "line \($0) ✓" }.joined(separator: "\n")  // ~11,000 characters
        let requests = SlackWire.postMessage(
            baseURL: "https://slack.com/api/", OutgoingMessage(channel: .slack, chat: "T0AIBOX:U1", text: text))
        #expect(requests.count == 3)
        var joined = ""
        for r in requests {
            #expect(r.url == "https://slack.com/api/chat.postMessage" && r.method == "chat.postMessage")
            let body = try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: String])
            #expect(body["channel"] == "U1")
            let part = try #require(body["text"])
            #expect(part.count <= SlackWire.maxText)
            // Cut at line ends.
            #expect(part.hasSuffix("\n") || r == requests.last)
            joined += part
        }
        #expect(joined == text)
        #expect(
            SlackWire.postMessage(baseURL: "https://slack.com/api", OutgoingMessage(channel: .slack, chat: "C1", text: "hi")).count == 1)
        #expect(SlackWire.openConnection(baseURL: "https://slack.com/api").url == "https://slack.com/api/apps.connections.open")
    }
}

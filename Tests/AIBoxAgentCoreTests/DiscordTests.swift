import AIBoxCore
import Foundation
import Testing

@testable import AIBoxAgentCore

@Suite("Discord Gateway session")
struct DiscordSessionTests {
    let t0 = Instant(nanoseconds: 1_000_000_000_000)
    let wall: Int64 = 1_800_000_000
    let gw = "wss://gateway.discord.gg"
    let resumeURL = "wss://resume.discord.gg"

    func message(_ id: String, guild: Bool = false) -> IncomingMessage {
        IncomingMessage(channel: .discord, id: id, chat: "c1", sender: "u1", isDirect: !guild, text: "hi")
    }

    /// A session past READY on its first connection; heartbeats every 40 s, the first at 20 s.
    func ready() -> DiscordSession {
        var s = DiscordSession(record: DiscordSessionRecord())
        _ = s.start(now: t0, wall: wall)
        _ = s.lookedUp(.found(url: gw), now: t0, wall: wall, random: 0)
        _ = s.connected(now: t0)
        _ = s.received(.hello(interval: .seconds(40)), now: t0, wall: wall, random: 0.5)
        _ = s.received(.dispatch(sequence: 1, .ready(sessionID: "S1", resumeURL: resumeURL)), now: t0, wall: wall, random: 0)
        return s
    }

    func closeOf(_ a: [DiscordAction]) -> Int? {
        for x in a { if case .close(let c) = x { return c } }
        return nil
    }

    func stateOf(_ a: [DiscordAction]) -> ChannelState? {
        a.compactMap { if case .report(let s) = $0 { s } else { nil } }.last
    }

    @Test func noSessionLooksUpTheGatewayAndIdentifiesAfterHello() {
        var s = DiscordSession(record: DiscordSessionRecord())
        #expect(s.start(now: t0, wall: wall) == [.report(.starting), .lookUpGateway])
        #expect(s.lookedUp(.found(url: gw), now: t0, wall: wall, random: 0) == [.connect(url: gw + "/?v=10&encoding=json")])
        #expect(s.connected(now: t0) == [])
        let a = s.received(.hello(interval: .seconds(40)), now: t0, wall: wall, random: 0.25)
        #expect(a == [.persist(DiscordSessionRecord(identifies: [wall])), .send(.identify)])
        // The first heartbeat after interval × jitter (0.25 → 10 s), then every interval.
        #expect(s.nextDeadline == t0 + .seconds(10))
        #expect(s.tick(now: t0 + .seconds(10), wall: wall, random: 0) == [.send(.heartbeat(sequence: nil))])
        _ = s.received(.heartbeatAck, now: t0 + .seconds(10) + .milliseconds(30), wall: wall, random: 0)
        #expect(s.lastRoundTrip == .milliseconds(30))
        let r = s.received(.dispatch(sequence: 1, .ready(sessionID: "S1", resumeURL: resumeURL)), now: t0 + .seconds(11), wall: wall, random: 0)
        #expect(r == [.report(.up), .persist(DiscordSessionRecord(sessionID: "S1", sequence: 1, resumeURL: resumeURL, identifies: [wall]))])
        #expect(s.nextDeadline == t0 + .seconds(50))
        #expect(s.tick(now: t0 + .seconds(50), wall: wall, random: 0) == [.send(.heartbeat(sequence: 1))])
    }

    @Test func aStoredSessionIsResumedNotIdentified() {
        var s = DiscordSession(record: DiscordSessionRecord(sessionID: "S1", sequence: 41, resumeURL: resumeURL))
        #expect(s.start(now: t0, wall: wall) == [.report(.starting), .connect(url: resumeURL + "/?v=10&encoding=json")])
        _ = s.connected(now: t0)
        #expect(s.received(.hello(interval: .seconds(40)), now: t0, wall: wall, random: 0.5) == [.send(.resume(sessionID: "S1", sequence: 41))])
        let a = s.received(.dispatch(sequence: 42, .resumed), now: t0, wall: wall, random: 0)
        #expect(a == [.report(.up), .persist(DiscordSessionRecord(sessionID: "S1", sequence: 42, resumeURL: resumeURL))])
    }

    @Test func aMissedAckIsAZombieClosedResumablyAndResumed() {
        var s = ready()
        #expect(s.tick(now: t0 + .seconds(20), wall: wall, random: 0) == [.send(.heartbeat(sequence: 1))])
        // No ACK; the next heartbeat is due: the connection is dead.
        let a = s.tick(now: t0 + .seconds(60), wall: wall, random: 0.5)
        #expect(closeOf(a) == 4000)
        guard case .retrying(let why) = stateOf(a) else { Issue.record("not retrying: \(a)"); return }
        #expect(why.contains("no heartbeat ACK"))
        let next = s.nextDeadline!
        #expect(next > t0 + .seconds(60))
        #expect(s.tick(now: next, wall: wall, random: 0) == [.connect(url: resumeURL + "/?v=10&encoding=json")])
        _ = s.connected(now: next)
        #expect(s.received(.hello(interval: .seconds(40)), now: next, wall: wall, random: 0) == [.send(.resume(sessionID: "S1", sequence: 1))])
        #expect(s.record.identifies == [wall])
    }

    @Test func anAckedHeartbeatKeepsTheConnection() {
        var s = ready()
        _ = s.tick(now: t0 + .seconds(20), wall: wall, random: 0)
        _ = s.received(.heartbeatAck, now: t0 + .seconds(21), wall: wall, random: 0)
        #expect(s.tick(now: t0 + .seconds(60), wall: wall, random: 0) == [.send(.heartbeat(sequence: 1))])
        #expect(s.state == .up)
    }

    @Test func discordAskingForAHeartbeatGetsOneAtOnce() {
        var s = ready()
        #expect(s.received(.heartbeatRequest, now: t0 + .seconds(3), wall: wall, random: 0) == [.send(.heartbeat(sequence: 1))])
    }

    @Test func reconnectResumesAtOnce() {
        var s = ready()
        let a = s.received(.reconnect, now: t0 + .seconds(5), wall: wall, random: 0)
        #expect(closeOf(a) == 4000)
        #expect(s.nextDeadline == t0 + .seconds(5))
        #expect(s.tick(now: t0 + .seconds(5), wall: wall, random: 0) == [.connect(url: resumeURL + "/?v=10&encoding=json")])
    }

    @Test func invalidSessionResumableResumesAfterOneToFiveSeconds() {
        var s = ready()
        _ = s.received(.invalidSession(resumable: true), now: t0, wall: wall, random: 1)
        #expect(s.nextDeadline == t0 + .seconds(5))
        #expect(s.tick(now: t0 + .seconds(5), wall: wall, random: 0) == [.connect(url: resumeURL + "/?v=10&encoding=json")])
    }

    @Test func invalidSessionNotResumableIdentifiesAgainAfterOneToFiveSeconds() {
        var s = ready()
        let a = s.received(.invalidSession(resumable: false), now: t0, wall: wall, random: 0)
        #expect(a.contains(.persist(DiscordSessionRecord(identifies: [wall]))))
        #expect(s.nextDeadline == t0 + .seconds(1))
        #expect(s.tick(now: t0 + .seconds(1), wall: wall, random: 0) == [.connect(url: gw + "/?v=10&encoding=json")])
        _ = s.connected(now: t0 + .seconds(1))
        let b = s.received(.hello(interval: .seconds(40)), now: t0 + .seconds(1), wall: wall + 1, random: 0)
        #expect(b.last == .send(.identify))
        #expect(s.record.identifies == [wall, wall + 1])
    }

    @Test(arguments: [
        (4004, "bot token"), (4010, "shard"), (4011, "Sharding required"), (4012, "API version"), (4013, "Invalid intents"),
        (4014, "enable the Message Content intent in the Developer Portal"),
    ])
    func refusalsBreakTheChannelWithoutRetries(code: Int, words: String) {
        var s = ready()
        let a = s.closed(code: code, why: "", now: t0, random: 0)
        guard case .broken(let why) = stateOf(a) else { Issue.record("not broken: \(a)"); return }
        #expect(why.contains(words))
        #expect(s.nextDeadline == nil)
        #expect(s.tick(now: t0 + .seconds(3600), wall: wall, random: 0) == [])
    }

    @Test(arguments: [4007, 4009])
    func aSessionThatCannotBeResumedIsIdentifiedAnew(code: Int) {
        var s = ready()
        let a = s.closed(code: code, why: "", now: t0, random: 0)
        #expect(a.contains(.persist(DiscordSessionRecord(identifies: [wall]))))
        let next = s.nextDeadline!
        #expect(s.tick(now: next, wall: wall, random: 0) == [.connect(url: gw + "/?v=10&encoding=json")])
    }

    @Test func otherClosesResumeWithCappedBackoff() {
        var s = DiscordSession(settings: DiscordSettings(backoff: Backoff(base: .seconds(1), max: .seconds(8), jitter: 0)), record: DiscordSessionRecord(sessionID: "S1", sequence: 5, resumeURL: resumeURL))
        _ = s.start(now: t0, wall: wall)
        var waits: [Duration] = []
        var now = t0
        for _ in 0..<6 {
            let a = s.closed(code: nil, why: "the connection dropped", now: now, random: 0.5)
            guard case .retrying = stateOf(a) ?? s.state else { Issue.record("not retrying"); return }
            let next = s.nextDeadline!
            waits.append(next.since(now))
            now = next
            #expect(s.tick(now: now, wall: wall, random: 0) == [.connect(url: resumeURL + "/?v=10&encoding=json")])
        }
        #expect(waits == [.seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(8), .seconds(8)])
        // A close code of Discord's own (4000 Unknown error) resumes too.
        _ = s.closed(code: 4000, why: "", now: now, random: 0)
        #expect(s.tick(now: s.nextDeadline!, wall: wall, random: 0) == [.connect(url: resumeURL + "/?v=10&encoding=json")])
    }

    @Test func messagesAreDeliveredThenTheirSequencePersisted() {
        var s = ready()
        let m = message("900")
        #expect(s.received(.dispatch(sequence: 2, .message(m)), now: t0, wall: wall, random: 0) == [.deliver([m])])
        #expect(s.delivered(recorded: true, now: t0, random: 0) == [.persist(DiscordSessionRecord(sessionID: "S1", sequence: 2, resumeURL: resumeURL, identifies: [wall]))])
        // A bot's message or another event moves the sequence on without a delivery.
        #expect(s.received(.dispatch(sequence: 3, .message(nil)), now: t0, wall: wall, random: 0) == [])
        #expect(s.tick(now: t0 + .seconds(20), wall: wall, random: 0) == [.send(.heartbeat(sequence: 3))])
    }

    @Test func aMessageNotRecordedIsReplayedByAResumeFromTheLastRecordedSequence() {
        var s = ready()
        _ = s.received(.dispatch(sequence: 2, .message(message("900"))), now: t0, wall: wall, random: 0)
        let a = s.delivered(recorded: false, now: t0, random: 0)
        #expect(closeOf(a) == 4000)
        _ = s.tick(now: s.nextDeadline!, wall: wall, random: 0)
        _ = s.connected(now: t0 + .seconds(2))
        #expect(s.received(.hello(interval: .seconds(40)), now: t0 + .seconds(2), wall: wall, random: 0) == [.send(.resume(sessionID: "S1", sequence: 1))])
    }

    @Test func shutdownClosesResumablyAndKeepsTheSession() {
        var s = ready()
        let a = s.shutdown()
        #expect(a == [.close(code: 4000), .persist(DiscordSessionRecord(sessionID: "S1", sequence: 1, resumeURL: resumeURL, identifies: [wall]))])
        #expect(DiscordSession.resumableCloseCode != 1000 && DiscordSession.resumableCloseCode != 1001)
    }

    @Test func identifiesAreCappedPerDayAcrossRestarts() {
        let earlier = (0..<10).map { wall - 3600 * Int64($0) - 60 }
        var s = DiscordSession(record: DiscordSessionRecord(identifies: earlier))
        _ = s.start(now: t0, wall: wall)
        _ = s.lookedUp(.found(url: gw), now: t0, wall: wall, random: 0)
        _ = s.connected(now: t0)
        let a = s.received(.hello(interval: .seconds(40)), now: t0, wall: wall, random: 0)
        #expect(!a.contains(.send(.identify)))
        #expect(closeOf(a) == 4000)
        guard case .retrying(let why) = stateOf(a) else { Issue.record("not retrying"); return }
        #expect(why.contains("10 identifies in 24 h"))
        // The oldest (9 h 1 min ago) leaves the day in 14 h 59 min.
        #expect(s.nextDeadline == t0 + .seconds(86_400 - 9 * 3600 - 60))
        // Identifies older than a day, or more than a day ahead (a clock set back), do not count.
        var fresh = DiscordSession(record: DiscordSessionRecord(identifies: [wall - 90_000, wall + 90_000]))
        _ = fresh.start(now: t0, wall: wall)
        _ = fresh.lookedUp(.found(url: gw), now: t0, wall: wall, random: 0)
        _ = fresh.connected(now: t0)
        #expect(fresh.received(.hello(interval: .seconds(40)), now: t0, wall: wall, random: 0).last == .send(.identify))
        #expect(fresh.record.identifies == [wall])
    }

    @Test func noHelloInTimeIsADeadConnection() {
        var s = DiscordSession(settings: DiscordSettings(helloTimeout: .seconds(5)), record: DiscordSessionRecord(sessionID: "S1", resumeURL: resumeURL))
        _ = s.start(now: t0, wall: wall)
        _ = s.connected(now: t0)
        #expect(s.nextDeadline == t0 + .seconds(5))
        let a = s.tick(now: t0 + .seconds(5), wall: wall, random: 0)
        #expect(closeOf(a) == 4000)
    }

    @Test func aSocketThatNeverOpensIsGivenUpAtTheHelloDeadline() {
        var s = DiscordSession(settings: DiscordSettings(helloTimeout: .seconds(5)), record: DiscordSessionRecord(sessionID: "S1", resumeURL: resumeURL))
        _ = s.start(now: t0, wall: wall)
        #expect(s.nextDeadline == t0 + .seconds(5))
        #expect(closeOf(s.tick(now: t0 + .seconds(5), wall: wall, random: 0)) == 4000)
        // A late `connected` of the socket given up changes nothing.
        #expect(s.connected(now: t0 + .seconds(6)) == [])
    }

    @Test func theGatewayURLGetsItsVersionAndEncoding() {
        #expect(DiscordWire.gatewayQuery("wss://gateway.discord.gg") == "wss://gateway.discord.gg/?v=10&encoding=json")
        #expect(DiscordWire.gatewayQuery("wss://g.example/path?v=9") == "wss://g.example/path?v=10&encoding=json")
        #expect(DiscordWire.gatewayQuery("ws://127.0.0.1:5000/resume") == "ws://127.0.0.1:5000/resume?v=10&encoding=json")
    }

    @Test func aRefusedLookupIsBrokenOn401AndRetriedOtherwise() {
        var s = DiscordSession(record: DiscordSessionRecord())
        _ = s.start(now: t0, wall: wall)
        guard case .retrying = stateOf(s.lookedUp(.refused(status: 502, message: "Bad Gateway"), now: t0, wall: wall, random: 0)) else {
            Issue.record("502 not retried")
            return
        }
        #expect(s.tick(now: s.nextDeadline!, wall: wall, random: 0) == [.lookUpGateway])
        guard case .broken = stateOf(s.lookedUp(.refused(status: 401, message: "401: Unauthorized"), now: t0, wall: wall, random: 0)) else {
            Issue.record("401 not broken")
            return
        }
    }
}

@Suite("Discord wire")
struct DiscordWireTests {
    let token = Secret("MTA-secret.token-value")

    @Test func framesAreParsed() {
        #expect(DiscordWire.parse(Array(#"{"op":10,"d":{"heartbeat_interval":41250}}"#.utf8)) == .hello(interval: .milliseconds(41250)))
        #expect(DiscordWire.parse(Array(#"{"op":11}"#.utf8)) == .heartbeatAck)
        #expect(DiscordWire.parse(Array(#"{"op":1,"d":null}"#.utf8)) == .heartbeatRequest)
        #expect(DiscordWire.parse(Array(#"{"op":7,"d":null}"#.utf8)) == .reconnect)
        #expect(DiscordWire.parse(Array(#"{"op":9,"d":true}"#.utf8)) == .invalidSession(resumable: true))
        #expect(DiscordWire.parse(Array(#"{"op":9,"d":false}"#.utf8)) == .invalidSession(resumable: false))
        #expect(
            DiscordWire.parse(Array(#"{"op":0,"s":1,"t":"READY","d":{"v":10,"session_id":"abc","resume_gateway_url":"wss://r.example","user":{"id":"1"}}}"#.utf8))
                == .dispatch(sequence: 1, .ready(sessionID: "abc", resumeURL: "wss://r.example")))
        #expect(DiscordWire.parse(Array(#"{"op":0,"s":9,"t":"RESUMED","d":{}}"#.utf8)) == .dispatch(sequence: 9, .resumed))
        #expect(DiscordWire.parse(Array("not json".utf8)) == .other("a frame that is not Discord's"))
    }

    @Test func messageCreateBecomesAnIncomingMessage() {
        let dm = #"{"op":0,"s":5,"t":"MESSAGE_CREATE","d":{"id":"111","channel_id":"222","author":{"id":"333","username":"o"},"content":"hello"}}"#
        #expect(
            DiscordWire.parse(Array(dm.utf8))
                == .dispatch(sequence: 5, .message(IncomingMessage(channel: .discord, id: "111", chat: "222", sender: "333", isDirect: true, text: "hello"))))
        let guild = #"{"op":0,"s":6,"t":"MESSAGE_CREATE","d":{"id":"1","channel_id":"2","guild_id":"9","author":{"id":"3"},"content":"x"}}"#
        guard case .dispatch(_, .message(let m?)) = DiscordWire.parse(Array(guild.utf8)) else { Issue.record("no message"); return }
        #expect(m.isDirect == false)
        let bot = #"{"op":0,"s":7,"t":"MESSAGE_CREATE","d":{"id":"1","channel_id":"2","author":{"id":"3","bot":true},"content":"x"}}"#
        #expect(DiscordWire.parse(Array(bot.utf8)) == .dispatch(sequence: 7, .message(nil)))
    }

    @Test func identifyAndResumeCarryTheTokenAndTheIntents() throws {
        let identify = try JSONSerialization.jsonObject(with: Data(DiscordWire.encode(.identify, token: token).utf8)) as! [String: Any]
        #expect(identify["op"] as? Int == 2)
        let d = identify["d"] as! [String: Any]
        #expect(d["token"] as? String == token.reveal())
        #expect(d["intents"] as? Int == 512 | 4096 | 32768)
        let resume = try JSONSerialization.jsonObject(with: Data(DiscordWire.encode(.resume(sessionID: "S", sequence: 7), token: token).utf8)) as! [String: Any]
        #expect(resume["op"] as? Int == 6)
        #expect((resume["d"] as! [String: Any])["seq"] as? Int == 7)
        #expect(DiscordWire.encode(.heartbeat(sequence: nil), token: token) == #"{"op":1,"d":null}"#)
        #expect(DiscordWire.encode(.heartbeat(sequence: 12), token: token) == #"{"op":1,"d":12}"#)
        // Actions name the frame; their text never holds the token.
        #expect(!"\(DiscordAction.send(.identify))".contains(token.reveal()))
    }

    @Test func longTextIsSplitAt2000Characters() {
        let text = String(repeating: "word ", count: 900)  // 4500 characters
        let requests = DiscordWire.createMessage(baseURL: "http://127.0.0.1:1/api/v10/", OutgoingMessage(channel: .discord, chat: "55", text: text))
        #expect(requests.count == 3)
        #expect(requests.allSatisfy { $0.url == "http://127.0.0.1:1/api/v10/channels/55/messages" && $0.method == "POST" })
        let parts = requests.map { r in (try! JSONSerialization.jsonObject(with: Data(r.body)) as! [String: Any])["content"] as! String }
        #expect(parts.allSatisfy { $0.count <= 2000 })
        #expect(parts.joined() == text)
    }

    @Test func anOwnersDirectChannelIsOpenedByCreateDM() {
        let r = DiscordWire.openDirect(baseURL: "http://127.0.0.1:1/api/v10/", user: "80351110224678912")
        #expect(r.method == "POST" && r.url == "http://127.0.0.1:1/api/v10/users/@me/channels")
        #expect(String(decoding: r.body, as: UTF8.self) == #"{"recipient_id":"80351110224678912"}"#)
        #expect(DiscordWire.parseDirect(status: 200, body: Array(#"{"id":"319674150115610528","type":1}"#.utf8)) == "319674150115610528")
        // Not a channel: a refusal, no id, or an id that would change the URL it goes into.
        #expect(DiscordWire.parseDirect(status: 403, body: Array(#"{"id":"1"}"#.utf8)) == nil)
        #expect(DiscordWire.parseDirect(status: 200, body: Array(#"{"type":1}"#.utf8)) == nil)
        #expect(DiscordWire.parseDirect(status: 200, body: Array(#"{"id":"1/../../users"}"#.utf8)) == nil)
        #expect(DiscordWire.parseDirect(status: 200, body: Array(#"{"id":""}"#.utf8)) == nil)
    }

    @Test func restAnswersAreClassified() {
        #expect(DiscordWire.parseSend(status: 200, body: Array("{}".utf8), resetAfter: nil) == .sent)
        #expect(
            DiscordWire.parseSend(status: 429, body: Array(#"{"message":"You are being rate limited.","retry_after":1.5,"global":false}"#.utf8), resetAfter: "3")
                == .rateLimited(after: .milliseconds(1500), message: "You are being rate limited."))
        #expect(DiscordWire.parseSend(status: 429, body: [], resetAfter: "2.25") == .rateLimited(after: .milliseconds(2250), message: "HTTP 429"))
        #expect(DiscordWire.parseSend(status: 401, body: Array(#"{"message":"401: Unauthorized","code":0}"#.utf8), resetAfter: nil) == .unauthorized("401: Unauthorized"))
        #expect(DiscordWire.parseSend(status: 404, body: Array(#"{"message":"Unknown Channel","code":10003}"#.utf8), resetAfter: nil) == .refused(status: 404, message: "Unknown Channel"))
        #expect(DiscordWire.parseGateway(status: 200, body: Array(#"{"url":"wss://g.example","shards":1}"#.utf8)) == .found(url: "wss://g.example"))
        #expect(DiscordWire.parseGateway(status: 401, body: Array(#"{"message":"401: Unauthorized"}"#.utf8)) == .refused(status: 401, message: "401: Unauthorized"))
    }
}

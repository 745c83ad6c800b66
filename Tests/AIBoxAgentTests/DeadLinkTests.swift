import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// A test host of its own: a network namespace joined to this one by a veth pair (10.199.N.1
/// here, 10.199.N.2 there). `cut` drops every packet the far host sends back (a blackhole
/// route there): its connections go silent, with no FIN and no reset, as over a dead link.
final class FarHost {
    static let ip = "/usr/sbin/ip"
    let name: String
    let vethHere: String
    let subnet: Int
    var here: String { "10.199.\(subnet).1" }
    var there: String { "10.199.\(subnet).2" }
    /// What runs a program on the far host.
    var launcher: [String] { [FarHost.ip, "netns", "exec", name] }

    init() throws {
        guard geteuid() == 0 else {
            throw SystemError("a test host in a network namespace needs root (CI runs as root); run the tests as root", errno: EPERM)
        }
        let id = Int(getpid())
        name = "aibox-far-\(id)"
        vethHere = "abf\(id % 1_000_000)h"
        subnet = id % 250 + 1
        try FarHost.run(["netns", "add", name])
        try FarHost.run(["link", "add", vethHere, "type", "veth", "peer", "name", "abf\(id % 1_000_000)t", "netns", name])
        try FarHost.run(["addr", "add", "\(here)/30", "dev", vethHere])
        try FarHost.run(["link", "set", vethHere, "up"])
        try FarHost.run(["netns", "exec", name, FarHost.ip, "addr", "add", "\(there)/30", "dev", "abf\(id % 1_000_000)t"])
        try FarHost.run(["netns", "exec", name, FarHost.ip, "link", "set", "abf\(id % 1_000_000)t", "up"])
        try FarHost.run(["netns", "exec", name, FarHost.ip, "link", "set", "lo", "up"])
    }

    deinit {
        _ = try? FarHost.run(["link", "del", vethHere])
        _ = try? FarHost.run(["netns", "del", name])
    }

    func cut() throws { try FarHost.run(["netns", "exec", name, FarHost.ip, "route", "add", "blackhole", "\(here)/32"]) }
    func heal() throws { try FarHost.run(["netns", "exec", name, FarHost.ip, "route", "del", "blackhole", "\(here)/32"]) }

    static func run(_ args: [String]) throws {
        let o = try runProgram(ip, args)
        guard o.code == 0 else { throw SystemError("ip \(args.joined(separator: " ")): \(o.stderr)", errno: 0) }
    }
}

/// Fixtures/tcp_relay.py: 127.0.0.1:PORT here → FAR:PORT, for each port (the agent speaks plain
/// HTTP and WebSocket to loopback only).
final class Relay {
    let process = Process()

    init(to far: String, ports: [Int]) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [fixtures + "/tcp_relay.py"] + ports.flatMap { ["\($0)", "\(far):\($0)"] }
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let line = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        guard line.hasPrefix("ready") else { throw SystemError("tcp_relay.py did not start", errno: 0) }
    }

    deinit { killAndReap(process) }
}

/// Connections that die without a FIN: the Telegram, Slack and Discord fakes on a far test
/// host, the path to it cut. Each channel notices within its own deadline (Discord: a heartbeat
/// not acknowledged; Slack: a ping not answered; Telegram: the long poll's 45 s), backs off, and resumes once the path is back
/// (Discord resumes its session: no new identify).
@Suite("silently dead connections", .serialized)
struct DeadLinkTests {
    static let telegramToken = "7000004:AAH-deadlink-test-token-value"
    static let discordToken = "MTIzNDU2Nzg5MDE0.Gdeadlk.discord-bot-token-value"
    static let slackAppToken = "xapp-1-A0FAKEAPP-1234567890-deadlinkappleveltoken"
    static let slackBotToken = "xoxb-1234567890-0987654321-deadlinkbottokenvalue"
    static let telegramOwner = 4242
    static let discordOwner = "80351110224678912"

    @Test("the path to Telegram, Slack and Discord drops every packet: each is found dead within its deadline and resumes when the path is back")
    func deadLinks() throws {
        let far = try FarHost()
        let telegram = try FakeTelegram(token: Self.telegramToken, launcher: far.launcher, host: far.there)
        let discord = try FakeDiscord(token: Self.discordToken, heartbeatMS: 2000, launcher: far.launcher, host: far.there)
        let slack = try FakeSlack(appToken: Self.slackAppToken, botToken: Self.slackBotToken, pingMS: 5000, ackTimeoutMS: 3000, launcher: far.launcher, host: far.there)
        let relay = try Relay(to: far.there, ports: [telegram.port, discord.server.port, slack.server.port])
        defer { withExtendedLifetime(relay) {} }
        let llm = try FakeProvider()
        let b = try AgentBox()
        try b.configure(
            local: llm,
            """
            \(ChannelTable.telegram(owner: "\(Self.telegramOwner)", at: telegram.base))

            \(ChannelTable.discord(owner: "\(Self.discordOwner)", at: discord.base))

            \(ChannelTable.slack(owner: "T0AIBOX:U0OWNER1", at: slack.base))

            """)
        try b.secret("channel.telegram.token", Self.telegramToken)
        try b.secret("channel.discord.token", Self.discordToken)
        try b.secret("channel.slack.bot-token", Self.slackBotToken)
        try b.secret("channel.slack.app-token", Self.slackAppToken)
        let worker = try b.startWorker()
        defer { killAndReap(worker) }
        let log = { readTextFile(b.root + "/agent.log") ?? "" }
        #expect(waitFor(.seconds(30)) { b.channelStates() == ["telegram": "up", "discord": "up", "slack": "up"] }, "\(b.channelStates())\n\(log())")
        // Both answer before the cut.
        try telegram.userSends(from: Self.telegramOwner, text: "before")
        try discord.userSends(author: Self.discordOwner, text: "before")
        try slack.userSends(user: "U0OWNER1", text: "before")
        #expect(waitFor(.seconds(30)) { ((try? telegram.sent()) ?? []).count == 1 && ((try? discord.sent()) ?? []).count == 1 && ((try? slack.sent()) ?? []).count == 1 })
        #expect(try discord.identifies() == 1)

        // The far host's packets are dropped from now on.
        try far.cut()
        let cutAt = Clock.monotonic()
        var found: [String: Duration] = [:]
        let deadline = cutAt + .seconds(75)
        while found.count < 3 && Clock.monotonic() < deadline {
            for (channel, state) in b.channelStates() where state != "up" && found[channel] == nil {
                found[channel] = Clock.monotonic().since(cutAt)
            }
            usleep(200_000)
        }
        // Discord: a heartbeat every 2 s, the connection dead when one is not acknowledged by
        // the next. Slack: a ping every 10 s, the socket dead when one is not answered by the
        // next. Telegram: the long poll (30 s) with its 15 s of slack. Status lags by ≤ 2 s.
        let discordFound = try #require(found["discord"], "Discord was not found dead: \(b.channelStates())\n\(log())")
        let telegramFound = try #require(found["telegram"], "Telegram was not found dead: \(b.channelStates())\n\(log())")
        let slackFound = try #require(found["slack"], "Slack was not found dead: \(b.channelStates())\n\(log())")
        #expect(discordFound <= .seconds(10), "Discord: \(discordFound)")
        #expect(slackFound <= .seconds(25), "Slack: \(slackFound)")
        #expect(telegramFound <= .seconds(50), "Telegram: \(telegramFound)")

        // The path comes back: both resume (on their backoff's next try), and answer again.
        try far.heal()
        let healAt = Clock.monotonic()
        var resumed: [String: Duration] = [:]
        while resumed.count < 3 && Clock.monotonic() < healAt + .seconds(90) {
            for (channel, state) in b.channelStates() where state == "up" && resumed[channel] == nil {
                resumed[channel] = Clock.monotonic().since(healAt)
            }
            usleep(200_000)
        }
        #expect(resumed.count == 3, "not back: \(b.channelStates())\n\(log())")
        try telegram.userSends(from: Self.telegramOwner, text: "after")
        try discord.userSends(author: Self.discordOwner, text: "after")
        try slack.userSends(user: "U0OWNER1", text: "after")
        #expect(
            waitFor(.seconds(60)) { ((try? telegram.sent()) ?? []).count == 2 && ((try? discord.sent()) ?? []).count == 2 && ((try? slack.sent()) ?? []).count == 2 },
            "\(log())")
        // Discord's session was resumed, not identified again (identifies are capped per day).
        #expect(try discord.identifies() == 1)
        #expect(try discord.resumes().contains { $0["ok"] as? Bool == true })
        // The figures (docs/BENCHMARKS.md): how long each took to notice and to come back.
        let figures = "dead link: found dead: discord \(discordFound), slack \(slackFound), telegram \(telegramFound); back after the heal: discord \(resumed["discord"] ?? .zero), slack \(resumed["slack"] ?? .zero), telegram \(resumed["telegram"] ?? .zero)\n"
        writeStandardError(figures)
        if let out = ProcessInfo.processInfo.environment["AIBOX_DEADLINK_FIGURES"] {
            try writeFileAtomically(out, Array(figures.utf8))
        }
    }
}

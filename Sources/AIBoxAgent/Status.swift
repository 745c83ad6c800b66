import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem
import FoundationEssentials
import Glibc

/// What `aibox-agent status` shows: each role's chain with its breakers, the budget, the
/// latest routing events.
public struct AgentStatus: Encodable, Sendable {
    public struct RouteState: Encodable, Sendable {
        var route: String
        var local: Bool
        var context: Int
        /// `ok`, `off` (a breaker open, or a probe out) or `disabled` (until the configuration changes).
        var state: String
        var reason: String?
        var retryInSeconds: Int?
    }
    public struct BudgetState: Encodable, Sendable {
        var limited: Bool
        var day: String
        var month: String
        var spentTodayUSD: Double
        var spentThisMonthUSD: Double
        var dailyCapUSD: Double?
        var monthlyCapUSD: Double?
        var whenExhausted: String
        var exhausted: String?
    }
    public struct EventRow: Encodable, Sendable {
        var at: String
        var kind: String
        var route: String?
        var message: String
    }
    var localLlmTier: String
    /// Why agent.db cannot be used (then no cloud call is made under a budget); nil when it can.
    var ledgerProblem: String?
    var routes: [String: [RouteState]]
    var budget: BudgetState
    var events: [EventRow]
    /// The worker's channels: its own in its STATUS=; at the console, as the worker last wrote
    /// them into agent.db (`channelsAt` says when; a console command runs no channel).
    var channels: [ChannelRow] = []
    var channelsAt: String?

    public struct ChannelRow: Codable, Sendable, Equatable {
        var channel: String
        /// `starting`, `up`, `retrying` or `broken`.
        var state: String
        var reason: String?
        var lastRoundTripMs: Double?

        init(_ kind: ChannelKind, _ state: ChannelState, _ roundTrip: Duration?) {
            channel = kind.rawValue
            switch state {
            case .starting: self.state = "starting"
            case .up: self.state = "up"
            case .retrying(let r):
                self.state = "retrying"
                reason = r
            case .broken(let r):
                self.state = "broken"
                reason = r
            }
            lastRoundTripMs = roundTrip.map { Double($0.components.seconds) * 1000 + Double($0.components.attoseconds) / 1e15 }
        }
    }

    public static func gather(_ assistant: Assistant, now: Instant, wallMS: Int64) async -> AgentStatus {
        await assistant.status(now: now, wallMS: wallMS)
    }
}

extension Assistant {
    func status(now: Instant, wallMS: Int64) -> AgentStatus {
        typealias RouteState = AgentStatus.RouteState
        let s = settings
        let breakers = (try? ledger.breakers(bootID: bootID, now: now)) ?? [:]
        var routes: [String: [RouteState]] = [:]
        for role in LLMRole.allCases {
            routes[role.rawValue] = chain(role).map { r in
                let generation = s.configurationHash(provider: r.key.provider)
                var state = "ok", reason: String?, retry: Int?
                for key in [r.key.provider, r.key.description] {
                    guard let b = breakers[key], !b.isAvailable(now: now, configuration: generation) else { continue }
                    switch b.state {
                    case .disabled(let why, _): (state, reason) = ("disabled", why)
                    case .open(let until, let why): (state, reason, retry) = ("off", why, Int(until.since(now).components.seconds))
                    case .probing: (state, reason) = ("off", "a probe is out")
                    case .closed: break
                    }
                }
                return RouteState(route: r.key.description, local: r.isLocal, context: r.context, state: state, reason: reason, retryInSeconds: retry)
            }
        }
        let (period, use) = (try? ledger.currentUse(wallMS: wallMS)) ?? (BudgetPeriod(day: Ledger.localDay(wallMS)), BudgetUse())
        let budget = AgentStatus.BudgetState(
            limited: s.policy.isLimited, day: period.day, month: period.month, spentTodayUSD: use.day.dollars, spentThisMonthUSD: use.month.dollars,
            dailyCapUSD: s.policy.daily?.dollars, monthlyCapUSD: s.policy.monthly?.dollars, whenExhausted: s.policy.whenExhausted.rawValue,
            exhausted: budgetExhausted(wallMS: wallMS))
        let events = ((try? ledger.events(limit: 10)) ?? []).map {
            AgentStatus.EventRow(at: formatLocalTime(milliseconds: $0.atMS), kind: $0.kind, route: $0.route, message: $0.message)
        }
        var st = AgentStatus(localLlmTier: s.tier.rawValue, ledgerProblem: ledgerProblem, routes: routes, budget: budget, events: events)
        if let saved = ledger.state(AgentStatus.channelsKey).flatMap({ try? JSONDecoder().decode(SavedChannels.self, from: Data($0.utf8)) }) {
            st.channels = saved.channels
            st.channelsAt = formatLocalTime(milliseconds: saved.atMS)
        }
        return st
    }
}

/// The worker's channels as kept in agent.db for the console's `status`.
struct SavedChannels: Codable {
    var atMS: Int64
    var channels: [AgentStatus.ChannelRow]
}

extension AgentStatus {
    static let channelsKey = "status:channels"

    /// The worker keeps its channels' states in agent.db for `status` at the console: when a
    /// state changes, and at most every 30 s besides (a round trip changes with each poll; a
    /// write every tick would wear a small box's flash for nothing).
    struct ChannelsWriter {
        var last: [ChannelRow]?
        var lastAt: Instant?

        mutating func write(_ rows: [ChannelRow], ledger: Ledger, now: Instant, wallMS: Int64) {
            let states = rows.map { [$0.channel, $0.state, $0.reason ?? ""] }
            let changed = last.map { $0.map { [$0.channel, $0.state, $0.reason ?? ""] } != states } ?? true
            guard changed || lastAt.map({ now.since($0) >= .seconds(30) }) ?? true else { return }
            guard let data = try? JSONEncoder().encode(SavedChannels(atMS: wallMS, channels: rows)) else { return }
            try? ledger.setState(AgentStatus.channelsKey, String(decoding: data, as: UTF8.self))
            last = rows
            lastAt = now
        }
    }

    /// The screen: at most 80 columns.
    public func lines(width: Int = 80) -> [String] {
        var out: [String] = ["local LLM tier: \(localLlmTier)"]
        if let p = ledgerProblem { out.append(fitColumns("agent.db unavailable (\(p)): local models only", width: width)) }
        for role in LLMRole.allCases {
            let chain = routes[role.rawValue] ?? []
            out.append("\(role.rawValue):" + (chain.isEmpty ? " no route" : ""))
            for r in chain {
                var line = "  \(r.route)\(r.local ? " (local)" : "")  \(r.state)"
                if let why = r.reason { line += ": \(why)" }
                if let t = r.retryInSeconds { line += ", probe in \(t) s" }
                out.append(fitColumns(line, width: width))
            }
        }
        var b = "budget: "
        if budget.limited {
            var parts: [String] = []
            if let d = budget.dailyCapUSD { parts.append("today \(usd(budget.spentTodayUSD)) of \(usd(d))") }
            if let m = budget.monthlyCapUSD { parts.append("this month \(usd(budget.spentThisMonthUSD)) of \(usd(m))") }
            b += parts.joined(separator: ", ")
            if let e = budget.exhausted { out.append(fitColumns(b, width: width)); b = "  " + e }
        } else {
            b += "none set; spent today \(usd(budget.spentTodayUSD)), this month \(usd(budget.spentThisMonthUSD))"
        }
        out.append(fitColumns(b, width: width))
        if !channels.isEmpty {
            out.append("channels" + (channelsAt.map { " (the worker, \($0)):" } ?? ":"))
            for c in channels {
                var line = "  \(c.channel)  \(c.state)"
                if let r = c.reason { line += ": \(r)" }
                if let ms = c.lastRoundTripMs { line += ", last round trip \(Int(ms.rounded())) ms" }
                out.append(fitColumns(line, width: width))
            }
        }
        if !events.isEmpty {
            out.append("recent:")
            for e in events { out.append(fitColumns("  \(e.at) \(e.kind) \(e.message)", width: width)) }
        }
        return out
    }

    /// One line for `aibox workers` (STATUS=).
    public var summary: String {
        let chat = (routes["chat"] ?? []).map { $0.state == "ok" ? $0.route : "\($0.route) (\($0.state))" }.joined(separator: " > ")
        var s = "chat: " + (chat.isEmpty ? "no route" : chat)
        if budget.limited, let d = budget.dailyCapUSD { s += "; today \(usd(budget.spentTodayUSD)) of \(usd(d))" }
        if budget.exhausted != nil { s += "; cloud budget spent" }
        if !channels.isEmpty { s += "; " + channels.map { "\($0.channel) \($0.state)" }.joined(separator: ", ") }
        return s
    }

    func usd(_ d: Double) -> String { NanoUSD(dollars: d).map(\.description) ?? "$?" }
}

extension AgentConsole {
    public static func status(root: String, json: Bool) async {
        let s = settings(root: root)
        let assistant = assistant(s, client: nil)
        let st = await AgentStatus.gather(assistant, now: Clock.monotonic(), wallMS: Clock.wallMilliseconds())
        if json { printJSON(st) } else { writeStandardOutput(st.lines().joined(separator: "\n") + "\n") }
    }

    /// The worker: ready once its configuration and database are open, then alive (watchdog
    /// pings) with its status line up to date, its channels running, until aibox stops it.
    public static func runWorker(root: String) async {
        let s = settings(root: root)
        let assistant = assistant(s, client: ProviderClient())
        let watchdogMicroseconds = currentEnvironment()["WATCHDOG_USEC"].flatMap { Int64($0) } ?? 0
        let tick: Duration = watchdogMicroseconds > 0 ? .microseconds(watchdogMicroseconds / 2) : .seconds(10)
        var first = true
        // Warm the local model while the loop runs: READY does not wait for it.
        Task {
            for line in await assistant.warmUp() { writeStandardError("aibox-agent: \(line)\n") }
        }
        var told = false
        // The channels (each on its own connection to agent.db: the ledger's is the assistant's).
        let (connections, problems) = ChannelHub.connections(s)
        for p in problems { writeStandardError("aibox-agent: channel \(p)\n") }
        var hub: ChannelHub?
        if !connections.isEmpty {
            do {
                let h = try ChannelHub(settings: s, assistant: assistant, ledger: openLedger(s).0, connections: connections)
                hub = h
                Task { await h.run() }
            } catch {
                writeStandardError("aibox-agent: the channels cannot keep their messages in agent.db (\(error)); they stay off\n")
            }
        }
        // The box's trouble for the owner: to every owner on every channel, and to the log.
        let watcher = BoxWatcher(paths: s.paths, ledger: openLedger(s).0)
        var channelsWriter = AgentStatus.ChannelsWriter()
        while true {
            if let message = watcher.poll(now: Clock.monotonic(), wallMS: Clock.wallMilliseconds()) {
                for line in message.split(separator: "\n") { writeStandardError("aibox-agent: for the owner: \(line)\n") }
                await hub?.tellOwners(message)
            }
            var st = await AgentStatus.gather(assistant, now: Clock.monotonic(), wallMS: Clock.wallMilliseconds())
            if let hub {
                st.channels = hub.states().map { AgentStatus.ChannelRow($0.0, $0.1, $0.2) }
                channelsWriter.write(st.channels, ledger: watcher.ledger, now: Clock.monotonic(), wallMS: Clock.wallMilliseconds())
            }
            // Alive while nothing is stuck: an operation its own timer failed to end is mended
            // only by a restart, which aibox's watchdog brings when the pings stop.
            let now = Clock.monotonic()
            if let stuck = (assistant.liveness.stuck(now: now) + LivenessBoard.channels.stuck(now: now)).min(by: { $0.deadline < $1.deadline }) {
                let why = "stuck: \(stuck.what), past its deadline by \(Clock.monotonic().since(stuck.deadline).components.seconds) s"
                if !told { writeStandardError("aibox-agent: \(why); no more watchdog pings\n") }
                told = true
                notify((first ? "READY=1\n" : "") + "STATUS=" + why)
            } else {
                notify((first ? "READY=1\n" : "") + "WATCHDOG=1\nSTATUS=" + st.summary)
            }
            first = false
            try? await Task.sleep(for: min(tick, .seconds(2)))
        }
    }
}

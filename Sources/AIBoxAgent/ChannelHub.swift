import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem
import Glibc

/// A channel's connection as the hub drives it (Telegram's, and each channel's after it).
public protocol ChannelConnection: AnyObject, Sendable {
    var kind: ChannelKind { get }
    var state: ChannelState { get }
    var lastRoundTrip: Duration? { get }
    /// Receives until cancelled or refused for good; `deliver` answers whether it recorded the
    /// message durably (only then is it confirmed to the service).
    func run(deliver: @escaping @Sendable (IncomingMessage) async -> Bool) async
    func send(_ message: OutgoingMessage, fromPart: Int) async -> SendOutcome
    /// The chat a notice to `owner` (an id of `owners`) goes to; nil: not known now.
    func directChat(with owner: String) async -> String?
}

extension ChannelConnection {
    /// Telegram's direct chat id is its user's id; WhatsApp's chat is the number.
    public func directChat(with owner: String) async -> String? { owner }
}

extension TelegramConnection: ChannelConnection {
    public var kind: ChannelKind { .telegram }
}

extension DiscordConnection: ChannelConnection {
    public var kind: ChannelKind { .discord }
}

extension WhatsAppConnection: ChannelConnection {
    public var kind: ChannelKind { .whatsapp }
}

/// The channels at work in the worker: each connection run (and run again, after a pause, if
/// it ever returns while not refused); every message through the owner gate (strangers cost
/// nothing); an owner's message taken into agent.db's inbox before its service is told it
/// arrived, then answered — a command, or a conversation through the router — with the reply
/// queued in the same transaction that takes the message out; the queue sent in order per chat,
/// retried on the monotonic clock. A message being handled holds `run/aibox/reboot.inhibit`
/// (an unattended update's reboot waits for it).
public actor ChannelHub {
    let settings: AgentSettings
    let assistant: Assistant
    let store: ChannelStore
    let ledger: Ledger
    let inhibitPath: String
    public nonisolated let connections: [ChannelKind: any ChannelConnection]
    private var limiter = StrangerLimiter()
    private var handling = false
    /// The loops that nap until there is work, and their naps.
    enum Loop { case inbox, outbox }
    private var naps: [Loop: CheckedContinuation<Void, Never>] = [:]

    /// How long a connection that returned (not refused for good) waits before it runs again.
    static let rerunDelay: Duration = .seconds(5)

    public init(settings: AgentSettings, assistant: Assistant, ledger: Ledger, connections: [any ChannelConnection]) throws(SQLiteError) {
        self.settings = settings
        self.assistant = assistant
        self.ledger = ledger
        store = try ChannelStore(ledger: ledger)
        inhibitPath = settings.paths.under("run/aibox/reboot.inhibit")
        var byKind: [ChannelKind: any ChannelConnection] = [:]
        for c in connections { byKind[c.kind] = c }
        self.connections = byKind
    }

    /// The connections box.toml configures and whose secrets are there; what could not be set
    /// up, in words (for the log and the owner: never a token).
    public static func connections(_ s: AgentSettings) -> ([any ChannelConnection], problems: [String]) {
        var out: [any ChannelConnection] = []
        var problems: [String] = []
        let channels = s.config.channels
        let dir = s.paths.agentDirectory
        /// The secret named, or a problem saying it is missing.
        func secret(_ kind: ChannelKind, _ what: String, _ name: String) -> Secret? {
            if let v = s.secret(name) { return v }
            problems.append("\(kind.rawValue): its \(what) (secret \(name)) is missing; `aibox setup` stores it")
            return nil
        }
        if let t = channels.telegram, let token = secret(.telegram, "token", t.tokenSecret) {
            do {
                out.append(
                    try TelegramConnection(
                        token: token, baseURL: t.baseURL ?? TelegramWire.defaultBaseURL, store: FileOffsetStore(path: dir + "/telegram.offset")))
            } catch { problems.append("telegram: \(error.description)") }
        }
        if let d = channels.discord, let token = secret(.discord, "token", d.tokenSecret) {
            do {
                out.append(
                    try DiscordConnection(
                        token: token, baseURL: d.baseURL ?? DiscordWire.defaultBaseURL,
                        store: FileDiscordSessionStore(path: dir + "/discord.session")))
            } catch { problems.append("discord: \(error.description)") }
        }
        if let w = channels.whatsapp, let token = secret(.whatsapp, "access token", w.accessTokenSecret) {
            // Without the app secret the box sends only (no delivery could be verified).
            let appSecret = w.appSecretSecret.flatMap { secret(.whatsapp, "app secret", $0) }
            let verify = w.verifyTokenSecret.flatMap { secret(.whatsapp, "verify token", $0) }
            do {
                out.append(
                    try WhatsAppConnection(
                        phoneNumberID: w.phoneNumberId, token: token, appSecret: appSecret, verifyToken: verify,
                        baseURL: w.baseURL ?? WhatsAppWire.defaultBaseURL,
                        webhook: WhatsAppWebhookSettings(listen: w.listen ?? WhatsAppConnection.defaultListen)))
            } catch { problems.append("whatsapp: \(error.description)") }
        }
        if let c = channels.slack, let bot = secret(.slack, "bot token", c.botTokenSecret), let app = secret(.slack, "app-level token", c.appTokenSecret) {
            do {
                out.append(try SlackConnection(botToken: bot, appToken: app, baseURL: c.baseURL ?? SlackWire.defaultBaseURL))
            } catch { problems.append("slack: \(error.description)") }
        }
        return (out, problems)
    }

    /// Runs every channel, the inbox and the outbox until cancelled.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            for connection in connections.values {
                group.addTask { await self.keep(connection) }
            }
            group.addTask { await self.handleInbox() }
            group.addTask { await self.sendOutbox() }
            await group.waitForAll()
        }
    }

    /// A connection's run, run again when it returns while not refused for good.
    private nonisolated func keep(_ connection: any ChannelConnection) async {
        while !Task.isCancelled {
            await connection.run(deliver: { m in await self.receive(m) })
            if Task.isCancelled { return }
            if case .broken(let reason) = connection.state {
                await noticeBroken(connection.kind, reason)
                return
            }
            try? await Task.sleep(for: ChannelHub.rerunDelay)
        }
    }

    private func noticeBroken(_ kind: ChannelKind, _ reason: String) {
        let wall = Clock.wallMilliseconds()
        // Told on the other channels (the box's notices go to every owner on every channel that works).
        ledger.record(kind: "owner.notice", route: nil, message: "The \(kind.rawValue) channel is refused and stopped: \(reason)", wallMS: wall)
    }

    /// A message from a channel: strangers and wrong codes end here (no answer, no model call);
    /// an owner's message is in the inbox (synced) before this returns true.
    func receive(_ m: IncomingMessage) -> Bool {
        let now = Clock.monotonic(), wall = Clock.wallMilliseconds()
        do {
            switch try store.admit(m, config: settings.config.channels, limiter: &limiter, ledger: ledger, now: now, wallMS: wall) {
            case .ignore: return true
            case .paired:
                try store.enqueue(OutgoingMessage(channel: m.channel, chat: m.chat, text: "Paired: you are an owner of this box now. /help lists the commands."), now: now, wallMS: wall)
                kick()
                return true
            case .handle:
                _ = try store.take(m, wallMS: wall)
                kick()
                return true
            }
        } catch {
            // agent.db cannot be written: not confirmed, the service delivers it again.
            return false
        }
    }

    /// Wakes every loop that naps (something came in, or is to go out).
    private func kick() {
        for (_, c) in naps { c.resume() }
        naps = [:]
    }

    /// Ends one loop's nap (its timer), if it is still napping.
    private func wake(_ loop: Loop) {
        naps.removeValue(forKey: loop)?.resume()
    }

    /// Waits for a kick, or `atMost`. Each loop naps in a slot of its own: one loop's nap never
    /// ends another's (two loops taking turns to wake each other would spin).
    private func nap(_ loop: Loop, _ atMost: Duration) async {
        let timer = Task {
            // Cancelled (the nap ended first): it must not end the loop's next nap.
            guard (try? await Task.sleep(for: atMost)) != nil else { return }
            self.wake(loop)
        }
        await withCheckedContinuation { c in
            naps.removeValue(forKey: loop)?.resume()
            naps[loop] = c
        }
        timer.cancel()
    }

    /// Owners' messages, oldest first, one at a time (the local model takes one anyway); what
    /// the agent was handling when it stopped comes first after a restart.
    private func handleInbox() async {
        while !Task.isCancelled {
            let waiting = (try? store.waiting(limit: 8)) ?? []
            if waiting.isEmpty {
                await nap(.inbox, .seconds(1))
                continue
            }
            for (id, m) in waiting where !Task.isCancelled {
                let inhibit = holdInhibit()
                let replies = await answer(m)
                releaseInhibit(inhibit)
                try? store.answer(id, with: replies.map { OutgoingMessage(channel: m.channel, chat: m.chat, text: $0) }, now: Clock.monotonic(), wallMS: Clock.wallMilliseconds())
                kick()  // the reply is queued: the outbox sends it now, not at its next look
            }
        }
    }

    /// What an owner's message is answered with.
    func answer(_ m: IncomingMessage) async -> [String] {
        switch OwnerIntent.of(m) {
        case .reply(let text): return [text]
        case .command(let c): return [await command(c, chat: m.conversation)]
        case .conversation:
            let kept = await assistant.conversation(m.conversation)
            switch await assistant.ask(role: .chat, system: kept.system(nil), history: kept.messages, message: m.text) {
            case .success(let a):
                await assistant.remember(m.conversation, role: .chat, question: m.text, answer: a.text)
                return [a.text]
            case .failure(let f):
                return ["(no answer: \(f))"]
            }
        }
    }

    /// The commands the agent answers itself; the box's own (workers, restart, logs, updates)
    /// go through aibox's control socket, and /model to the assistant (`BoxCommands`).
    /// `chat`: the conversation's key (a confirmation code is the chat's own).
    func command(_ c: ChatCommand, chat: String) async -> String {
        switch c {
        case .help: return ChatCommand.helpText
        case .status, .budget:
            let st = await AgentStatus.gather(assistant, now: Clock.monotonic(), wallMS: Clock.wallMilliseconds())
            return st.summary
        default:
            return await boxCommands().reply(c, chat: chat)
        }
    }

    private var commandsOfTheBox: BoxCommands?

    private func boxCommands() -> BoxCommands {
        if let b = commandsOfTheBox { return b }
        let b = BoxCommands(settings: settings, assistant: assistant)
        commandsOfTheBox = b
        return b
    }

    /// The queue, sent: the oldest message of each chat whose time has come.
    private func sendOutbox() async {
        while !Task.isCancelled {
            let due = (try? store.due(now: Clock.monotonic())) ?? []
            if due.isEmpty {
                await nap(.outbox, .seconds(1))
                continue
            }
            for q in due where !Task.isCancelled {
                guard let connection = connections[q.message.channel] else {
                    try? store.retryLater(q.id, after: .seconds(60), now: Clock.monotonic(), reason: "\(q.message.channel.rawValue) is not configured", giveUp: true)
                    continue
                }
                switch await connection.send(q.message, fromPart: q.partsSent) {
                case .sent: try? store.markSent(q.id)
                case .retry(let after, let reason, let parts):
                    // Parts already out (counted from the message's first) are not sent again.
                    try? store.retryLater(q.id, after: after, now: Clock.monotonic(), reason: reason, partsSent: max(parts, q.partsSent))
                case .failed(let reason):
                    try? store.retryLater(q.id, after: .zero, now: Clock.monotonic(), reason: reason, giveUp: true)
                }
            }
        }
    }

    /// Sends a message of the box's (a notice) to every owner on every configured channel.
    /// An owner whose direct chat cannot be found now (Discord not answering) misses it; it is
    /// in the log either way.
    public func tellOwners(_ text: String) async {
        for kind in connections.keys.sorted() {
            guard let connection = connections[kind] else { continue }
            if case .broken = connection.state { continue }  // refused: nothing would go out
            for owner in ((try? store.owners(kind, config: settings.config.channels)) ?? []).sorted() {
                guard let chat = await connection.directChat(with: owner) else { continue }
                _ = try? store.enqueue(OutgoingMessage(channel: kind, chat: chat, text: text), now: Clock.monotonic(), wallMS: Clock.wallMilliseconds())
            }
        }
        kick()
    }

    /// Each channel's state and last round trip, for status.
    public nonisolated func states() -> [(ChannelKind, ChannelState, Duration?)] {
        connections.keys.sorted().map { ($0, connections[$0]!.state, connections[$0]!.lastRoundTrip) }
    }

    // MARK: The reboot inhibit

    private func holdInhibit() -> Int32 {
        guard handling == false else { return -1 }
        let fd = open(inhibitPath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return -1 }  // no file: no daemon that reboots (or not yet made)
        if flock(fd, LOCK_SH) != 0 {
            close(fd)
            return -1
        }
        handling = true
        return fd
    }

    private func releaseInhibit(_ fd: Int32) {
        guard fd >= 0 else { return }
        handling = false
        close(fd)  // the lock goes with the descriptor
    }
}

import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem
import AsyncHTTPClient
import FoundationEssentials
import Glibc
import Logging
import NIOCore
import NIOPosix
import NIOWebSocket
import Synchronization
import WSClient

/// Where the Discord session (its id, sequence number and resume URL, and the identifies of
/// the last day) is kept across restarts, so that a restart resumes instead of identifying.
public protocol DiscordSessionStore: Sendable {
    /// The stored record, or nil before the first session.
    func load() throws -> DiscordSessionRecord?
    /// Stores `record` durably.
    func save(_ record: DiscordSessionRecord) throws
}

/// The record as JSON in a file of its own, replaced atomically (write, fsync, rename): a
/// power cut leaves the old record or the new, never half of one.
public struct FileDiscordSessionStore: DiscordSessionStore {
    public let path: String

    public init(path: String) { self.path = path }

    public func load() throws -> DiscordSessionRecord? {
        guard let text = readTextFile(path) else { return nil }
        guard let record = try? JSONDecoder().decode(DiscordSessionRecord.self, from: Data(text.utf8)) else {
            throw SystemError(
                "read", errno: 0,
                detail: "\(path): not a Discord session record (JSON with sessionID, sequence, resumeURL, identifies); delete it to identify anew")
        }
        return record
    }

    public func save(_ record: DiscordSessionRecord) throws {
        let bytes = (try? Array(JSONEncoder().encode(record))) ?? []
        try writeFileAtomically(path, bytes + [0x0A], mode: 0o600)
    }
}

/// The record in memory only (tests).
public final class MemoryDiscordSessionStore: DiscordSessionStore {
    private let value: Mutex<DiscordSessionRecord?>

    public init(_ record: DiscordSessionRecord? = nil) { value = Mutex(record) }

    public func load() -> DiscordSessionRecord? { value.withLock { $0 } }
    public func save(_ record: DiscordSessionRecord) { value.withLock { $0 = record } }
}

/// A Discord bot's connection: the Gateway session (`run`) and create message (`send`).
///
/// The token goes only into Identify and Resume frames (encoded at the moment they are
/// written) and into REST's Authorization header; every text this type gives out (state
/// reasons, send outcomes) is made of statuses, close codes and Discord's messages, with the
/// token masked out besides. Duplicates: a resume replays events after the last sequence
/// recorded; the receiver drops what it has by `IncomingMessage.id`.
public final class DiscordConnection: Sendable {
    /// A bad base URL.
    public struct SettingsError: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    let baseURL: String
    let token: Secret
    public let settings: DiscordSettings
    let store: any DiscordSessionStore
    /// How long a create message may take before it is given up (and retried later).
    let sendTimeout: Duration
    /// A 429 without retry_after nor X-RateLimit-Reset-After.
    let defaultRetryAfter: Duration = .seconds(5)
    private let status: Mutex<(state: ChannelState, roundTrip: Duration?)> = Mutex((.starting, nil))
    /// Owners' direct channels, by user id.
    private let directs: Mutex<[String: String]> = Mutex([:])

    /// `baseURL`: Discord's REST API with its version (the default), or a fake's; https unless
    /// it is the box itself. The Gateway's URL comes from `GET /gateway/bot`.
    /// Where the connection's own tasks run (nil: the default executor; tests give threads of
    /// their own, which the cooperative threads' blocked tests cannot starve).
    let taskExecutor: (any TaskExecutor)?

    public init(
        token: Secret, baseURL: String = DiscordWire.defaultBaseURL, settings: DiscordSettings = DiscordSettings(),
        store: any DiscordSessionStore, sendTimeout: Duration = .seconds(30), taskExecutor: (any TaskExecutor)? = nil
    ) throws(SettingsError) {
        self.taskExecutor = taskExecutor
        if let why = AgentHTTP.unsafe(baseURL, secure: "https") { throw SettingsError(description: "the Discord base URL: \(why)") }
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
        self.token = token
        self.settings = settings
        self.store = store
        self.sendTimeout = sendTimeout
    }

    /// Nothing to release: the HTTP client is the agent's one (`AgentHTTP`).
    public func shutdown() async {}

    /// How the channel is doing.
    public var state: ChannelState { status.withLock { $0.state } }
    /// The last heartbeat's round trip (sent to ACK).
    public var lastRoundTrip: Duration? { status.withLock { $0.roundTrip } }

    enum Event: Sendable {
        case lookedUp(DiscordLookupResult)
        case connected(Int)
        case frame(Int, [UInt8])
        case closed(Int, code: Int?, why: String)
        case tick
    }

    enum Command: Sendable {
        case text(String)
        case close(Int)
    }

    /// Keeps the Gateway session until the channel is broken (a refused token, disallowed
    /// intents) or the task is cancelled; then the socket is closed so that the session stays
    /// resumable, and the session is stored. Each message goes to `deliver`, which answers
    /// whether it recorded it durably.
    public func run(deliver: @escaping @Sendable (IncomingMessage) async -> Bool) async {
        let stored: DiscordSessionRecord?
        do { stored = try store.load() } catch {
            // An unreadable record: identify anew (the budget restarts with it).
            stored = nil
        }
        var session = DiscordSession(settings: settings, record: stored ?? DiscordSessionRecord())
        let (events, input) = AsyncStream<Event>.makeStream()
        var generation = 0
        var socket: (generation: Int, commands: AsyncStream<Command>.Continuation, task: Task<Void, Never>)?
        var timer: Task<Void, Never>?
        var generator = SystemRandomNumberGenerator()
        let logger = Logger(label: "aibox.discord", factory: { _ in SwiftLogNoOpLogHandler() })
        let watch = LivenessBoard.channels.begin("Discord's gateway loop", deadline: Clock.monotonic() + .seconds(60))
        defer { LivenessBoard.channels.end(watch) }

        func wall() -> Int64 { Int64(time(nil)) }
        func random() -> Double { Double.random(in: 0...1, using: &generator) }

        func perform(_ actions: [DiscordAction]) async {
            var queue = actions
            while !queue.isEmpty {
                switch queue.removeFirst() {
                case .report(let s):
                    status.withLock { $0.state = scrub(s) }
                case .persist(let record):
                    // A failed save costs an identify (or a replay) after a restart, no more.
                    try? store.save(record)
                case .lookUpGateway:
                    Task(executorPreference: taskExecutor) { input.yield(.lookedUp(await self.lookUpGateway())) }
                case .connect(let url):
                    generation += 1
                    socket?.commands.finish()
                    if let why = AgentHTTP.unsafe(url, secure: "wss") {
                        input.yield(.closed(generation, code: nil, why: "the Gateway URL: \(why)"))
                        socket = nil
                        continue
                    }
                    let (commands, writer) = AsyncStream<Command>.makeStream()
                    let task = openSocket(url: url, generation: generation, commands: commands, events: input, logger: logger)
                    socket = (generation, writer, task)
                case .send(let frame):
                    socket?.commands.yield(.text(DiscordWire.encode(frame, token: token)))
                case .close(let code):
                    socket?.commands.yield(.close(code))
                    socket?.commands.finish()
                    socket = nil
                case .deliver(let messages):
                    var recorded = true
                    for m in messages where recorded { recorded = await deliver(m) }
                    queue += session.delivered(recorded: recorded, now: Clock.monotonic(), random: random())
                }
            }
            status.withLock { $0.roundTrip = session.lastRoundTrip }
            // The loop is due again by the session's next deadline: if no tick comes by then
            // (a timer that never fired, a loop that wedged), it is stuck.
            LivenessBoard.channels.extend(watch, to: session.nextDeadline ?? Clock.monotonic() + .seconds(3600))
            // The next tick.
            timer?.cancel()
            timer = nil
            if let due = session.nextDeadline {
                timer = Task(executorPreference: taskExecutor) {
                    let now = Clock.monotonic()
                    if due > now {
                        do { try await Task.sleep(for: due.since(now)) } catch { return }
                    }
                    input.yield(.tick)
                }
            }
        }

        await perform(session.start(now: Clock.monotonic(), wall: wall()))
        for await event in events {
            if Task.isCancelled { break }
            let now = Clock.monotonic()
            switch event {
            case .lookedUp(let result):
                await perform(session.lookedUp(result, now: now, wall: wall(), random: random()))
            case .connected(let g) where g == socket?.generation:
                await perform(session.connected(now: now))
            case .frame(let g, let bytes) where g == socket?.generation:
                await perform(session.received(DiscordWire.parse(bytes), now: now, wall: wall(), random: random()))
            case .closed(let g, let code, let why) where g == generation:
                socket = nil
                await perform(session.closed(code: code, why: scrub(why), now: now, random: random()))
            case .tick:
                await perform(session.tick(now: now, wall: wall(), random: random()))
            default:
                continue  // an event of a socket already given up
            }
            if case .broken = session.state { break }
        }
        timer?.cancel()
        // Close resumably and wait (bounded) for the close frame to be written.
        let open = socket
        await perform(session.shutdown())
        timer?.cancel()
        if let open {
            let done = Task(executorPreference: taskExecutor) { await open.task.value }
            let watchdog = Task(executorPreference: taskExecutor) {
                try? await Task.sleep(for: .seconds(3))
                open.task.cancel()
            }
            await done.value
            watchdog.cancel()
        }
        input.finish()
    }

    /// Opens the WebSocket and pumps it: frames and the close go to `events`, `commands` are
    /// written. Ends when either side closes.
    private func openSocket(
        url: String, generation: Int, commands: AsyncStream<Command>, events: AsyncStream<Event>.Continuation, logger: Logger
    ) -> Task<Void, Never> {
        Task(executorPreference: taskExecutor) {
            // A short close timeout: a zombie peer never answers our close frame.
            let configuration = WebSocketClientConfiguration(maxFrameSize: DiscordWire.maxBody, closeTimeout: .seconds(1))
            do {
                let frame = try await WebSocketClient.connect(url: url, configuration: configuration, logger: logger) { inbound, outbound, _ in
                    events.yield(.connected(generation))
                    await withTaskGroup(of: Void.self) { group in
                        group.addTask {
                            do {
                                for try await message in inbound.messages(maxSize: DiscordWire.maxBody) {
                                    switch message {
                                    case .text(let s): events.yield(.frame(generation, Array(s.utf8)))
                                    case .binary(let b): events.yield(.frame(generation, Array(b.readableBytesView)))
                                    }
                                }
                            } catch {}
                        }
                        group.addTask {
                            for await command in commands {
                                switch command {
                                case .text(let s):
                                    do { try await outbound.write(.text(s)) } catch { return }
                                case .close(let code):
                                    try? await outbound.close(WebSocketErrorCode(codeNumber: code), reason: "aibox")
                                    return
                                }
                            }
                        }
                        await group.next()
                        group.cancelAll()
                    }
                }
                let code = frame.map { Int(UInt16(webSocketErrorCode: $0.closeCode)) }
                events.yield(.closed(generation, code: code, why: frame?.reason.map { "(\($0.prefix(120)))" } ?? "the connection ended without a close frame"))
            } catch {
                events.yield(.closed(generation, code: nil, why: "the Gateway connection failed: \(Self.describe(error))"))
            }
        }
    }

    static func describe(_ error: any Error) -> String {
        if let e = error as? WebSocketClientError { return "\(e)" }
        if let e = error as? IOError { return "\(e.description)" }
        return String("\(error)".prefix(200))
    }

    /// GET /gateway/bot.
    func lookUpGateway() async -> DiscordLookupResult {
        let request = DiscordRequest(method: "GET", url: baseURL + "/gateway/bot", body: [])
        switch await exchange(request, deadline: Clock.monotonic() + settings.helloTimeout) {
        case .answered(let code, let body, _): return DiscordWire.parseGateway(status: code, body: body)
        case .failed(let why): return .transport(why)
        case .timedOut: return .transport("no answer within \(settings.helloTimeout.aiboxText)")
        case .cancelled: return .transport("cancelled")
        }
    }

    /// Sends `message`, from its part `fromPart` on (a long text goes as several messages of
    /// at most 2000 characters). A send that timed out may have arrived: its retry can repeat it.
    public func send(_ message: OutgoingMessage, fromPart: Int = 0) async -> SendOutcome {
        let parts = DiscordWire.createMessage(baseURL: baseURL, message)
        for (i, request) in parts.enumerated() where i >= fromPart {
            switch await exchange(request, deadline: Clock.monotonic() + sendTimeout) {
            case .answered(let code, let body, let resetAfter):
                switch DiscordWire.parseSend(status: code, body: body, resetAfter: resetAfter) {
                case .sent: continue
                case .rateLimited(let after, let text):
                    return .retry(after: after, reason: scrub("create message: 429 \(text)"), partsSent: i)
                case .unauthorized(let text):
                    let reason = scrub("create message: Discord refused the bot token (401 \(text))")
                    status.withLock { $0.state = .broken(reason: reason) }
                    return .failed(reason: reason)
                case .refused(let code, let text):
                    let reason = scrub("create message: \(code) \(text)")
                    if code >= 500 { return .retry(after: .seconds(5), reason: reason, partsSent: i) }
                    return .failed(reason: reason)
                }
            case .failed(let why): return .retry(after: .seconds(5), reason: "create message: \(why)", partsSent: i)
            case .timedOut: return .retry(after: .seconds(5), reason: "create message: no answer within \(sendTimeout.aiboxText)", partsSent: i)
            case .cancelled: return .retry(after: .zero, reason: "create message: cancelled", partsSent: i)
            }
        }
        return .sent
    }

    /// The direct channel with an owner (for the box's notices), opened through REST once and
    /// remembered; nil while Discord does not answer.
    public func directChat(with owner: String) async -> String? {
        if let known = directs.withLock({ $0[owner] }) { return known }
        guard case .answered(let code, let body, _) = await exchange(DiscordWire.openDirect(baseURL: baseURL, user: owner), deadline: Clock.monotonic() + sendTimeout),
            let id = DiscordWire.parseDirect(status: code, body: body)
        else { return nil }
        directs.withLock { $0[owner] = id }
        return id
    }

    enum Exchange {
        case answered(status: Int, body: [UInt8], resetAfter: String?)
        case failed(String)
        case timedOut
        case cancelled
    }

    /// One REST call with the bot's Authorization, given up at `deadline` (the monotonic
    /// clock).
    func exchange(_ request: DiscordRequest, deadline: Instant) async -> Exchange {
        var headers = [("authorization", "Bot " + token.reveal()), ("user-agent", "DiscordBot (https://github.com/aibox, 1)")]
        if !request.body.isEmpty { headers.append(("content-type", "application/json")) }
        switch await AgentHTTP.call(
            request.method == "GET" ? .GET : .POST, url: request.url, headers: headers, body: request.body, maxBody: DiscordWire.maxBody,
            deadline: deadline)
        {
        case .answered(let status, let headers, let body):
            return .answered(status: status, body: body, resetAfter: headers.first(name: "x-ratelimit-reset-after"))
        case .failed(let why): return .failed(scrub(why))
        case .timedOut: return .timedOut
        case .cancelled: return .cancelled
        }
    }

    /// `text` with the token masked.
    func scrub(_ text: String) -> String {
        let t = token.reveal()
        return t.isEmpty ? text : text.replacing(t, with: Secret.masked)
    }

    func scrub(_ s: ChannelState) -> ChannelState {
        switch s {
        case .retrying(let reason): .retrying(reason: scrub(reason))
        case .broken(let reason): .broken(reason: scrub(reason))
        default: s
        }
    }
}

import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem
import AsyncHTTPClient
import FoundationEssentials
import Logging
import NIOCore
import NIOWebSocket
import Synchronization
import WSClient

/// A Slack app's connection in Socket Mode: the session's sockets (`run`) and chat.postMessage
/// (`send`). (`SlackChannel` in AIBoxCore is its box.toml settings.)
///
/// The app-level token goes only into apps.connections.open's Authorization header, the bot
/// token only into chat.postMessage's; the socket URL (its ticket admits anyone) is never put
/// in a text. Every text this type gives out (state reasons, send outcomes) is made of method
/// names, statuses and Slack's error codes, with both tokens masked out besides.
public final class SlackConnection: Sendable {
    /// A bad base URL.
    public struct SettingsError: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    let baseURL: String
    let botToken: Secret
    let appToken: Secret
    public let settings: SlackSettings
    /// How long a Web API call may take before it is given up (and retried later).
    let callTimeout: Duration
    /// Where the connection's own tasks run (nil: the default executor; tests give threads of
    /// their own).
    let taskExecutor: (any TaskExecutor)?
    private let status: Mutex<(state: ChannelState, roundTrip: Duration?)> = Mutex((.starting, nil))

    /// `baseURL`: Slack's Web API (the default), or a fake's; https unless it is the box itself.
    /// The sockets' URLs come from apps.connections.open.
    public init(
        botToken: Secret, appToken: Secret, baseURL: String = SlackWire.defaultBaseURL, settings: SlackSettings = SlackSettings(),
        callTimeout: Duration = .seconds(30), taskExecutor: (any TaskExecutor)? = nil
    ) throws(SettingsError) {
        if let why = AgentHTTP.unsafe(baseURL, secure: "https") { throw SettingsError(description: "the Slack base URL: \(why)") }
        self.baseURL = baseURL
        self.botToken = botToken
        self.appToken = appToken
        self.settings = settings
        self.callTimeout = callTimeout
        self.taskExecutor = taskExecutor
    }

    /// Nothing to release: the HTTP client is the agent's one (`AgentHTTP`).
    public func shutdown() async {}

    /// How the channel is doing.
    public var state: ChannelState { status.withLock { $0.state } }
    /// The last new socket's time from opening to Slack's hello.
    public var lastRoundTrip: Duration? { status.withLock { $0.roundTrip } }

    enum Event: Sendable {
        case opened(SlackOpenResult)
        case frame(Int, [UInt8])
        /// A socket task ended (every socket's end is reported, also one the session closed).
        case closed(Int, why: String)
        case tick
    }

    enum Command: Sendable {
        case text(String)
        case close
    }

    /// Keeps a socket open (two during a refresh) until the channel is broken (a refused
    /// app-level token, Socket Mode turned off) or the task is cancelled; then every socket is
    /// closed. Each message goes to `deliver`, which answers whether it recorded it durably:
    /// only then is its envelope acknowledged.
    public func run(deliver: @escaping @Sendable (IncomingMessage) async -> Bool) async {
        var session = SlackSession(settings: settings)
        let (events, input) = AsyncStream<Event>.makeStream()
        var sockets: [Int: (commands: AsyncStream<Command>.Continuation, task: Task<Void, Never>)] = [:]
        var timer: Task<Void, Never>?
        var generator = SystemRandomNumberGenerator()
        let logger = Logger(label: "aibox.slack", factory: { _ in SwiftLogNoOpLogHandler() })
        let watch = LivenessBoard.channels.begin("Slack's socket loop", deadline: Clock.monotonic() + .seconds(60))
        defer { LivenessBoard.channels.end(watch) }

        func random() -> Double { Double.random(in: 0...1, using: &generator) }

        func perform(_ actions: [SlackAction]) async {
            var queue = actions
            while !queue.isEmpty {
                switch queue.removeFirst() {
                case .report(let s):
                    status.withLock { $0.state = scrub(s) }
                case .openConnection:
                    Task(executorPreference: taskExecutor) { input.yield(.opened(await self.openConnection())) }
                case .connect(let id, let url):
                    if let why = AgentHTTP.unsafe(url, secure: "wss") {
                        input.yield(.closed(id, why: "could not be opened: its URL \(why)"))
                        continue
                    }
                    let (commands, writer) = AsyncStream<Command>.makeStream()
                    let task = openSocket(url: url, id: id, commands: commands, events: input, logger: logger)
                    sockets[id] = (writer, task)
                case .ack(let id, let envelope):
                    sockets[id]?.commands.yield(.text(SlackWire.ack(envelope)))
                case .close(let id):
                    guard let s = sockets[id] else { continue }
                    s.commands.yield(.close)
                    s.commands.finish()
                    // A socket still connecting, or a peer that never answers the close, is cut.
                    Task(executorPreference: taskExecutor) {
                        try? await Task.sleep(for: .seconds(2))
                        s.task.cancel()
                    }
                case .deliver(let id, let envelope, let message):
                    let recorded = await deliver(message)
                    queue += session.delivered(socket: id, envelope: envelope, recorded: recorded)
                }
            }
            status.withLock { $0.roundTrip = session.lastRoundTrip }
            // Due again by the session's next deadline: a tick that never comes is stuck.
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

        await perform(session.start(now: Clock.monotonic()))
        for await event in events {
            if Task.isCancelled { break }
            let now = Clock.monotonic()
            switch event {
            case .opened(let result):
                await perform(session.opened(result, now: now, random: random()))
            case .frame(let id, let bytes):
                await perform(session.received(socket: id, SlackWire.parse(bytes), now: now, random: random()))
            case .closed(let id, let why):
                sockets[id] = nil
                await perform(session.closed(socket: id, why: scrub(why), now: now, random: random()))
            case .tick:
                await perform(session.tick(now: now, random: random()))
            }
            if case .broken = session.state { break }
        }
        timer?.cancel()
        await perform(session.shutdown())
        timer?.cancel()
        // Wait (bounded) for the close frames to be written.
        let open = sockets.values.map(\.task)
        let done = Task(executorPreference: taskExecutor) {
            for t in open { await t.value }
        }
        let watchdog = Task(executorPreference: taskExecutor) {
            try? await Task.sleep(for: .seconds(3))
            for t in open { t.cancel() }
        }
        await done.value
        watchdog.cancel()
        input.finish()
    }

    /// Opens a WebSocket and pumps it: frames and its end go to `events`, `commands` are
    /// written. Ends when either side closes; a ping unanswered by the next one ends it too.
    private func openSocket(
        url: String, id: Int, commands: AsyncStream<Command>, events: AsyncStream<Event>.Continuation, logger: Logger
    ) -> Task<Void, Never> {
        let configuration = WebSocketClientConfiguration(
            maxFrameSize: SlackWire.maxBody, closeTimeout: .seconds(1), autoPing: .enabled(timePeriod: settings.pingInterval))
        let silence = settings.pingInterval
        let opened = OpenedFlag()
        return Task(executorPreference: taskExecutor) {
            do {
                let frame = try await WebSocketClient.connect(url: url, configuration: configuration, logger: logger) {
                    inbound, outbound, _ in
                    opened.set()
                    await withTaskGroup(of: Void.self) { group in
                        group.addTask {
                            do {
                                for try await message in inbound.messages(maxSize: SlackWire.maxBody) {
                                    switch message {
                                    case .text(let s): events.yield(.frame(id, Array(s.utf8)))
                                    case .binary(let b): events.yield(.frame(id, Array(b.readableBytesView)))
                                    }
                                }
                            } catch {}
                        }
                        group.addTask {
                            for await command in commands {
                                switch command {
                                case .text(let s):
                                    do { try await outbound.write(.text(s)) } catch { return }
                                case .close:
                                    try? await outbound.close(.normalClosure, reason: "aibox")
                                    return
                                }
                            }
                        }
                        await group.next()
                        group.cancelAll()
                    }
                }
                if let frame {
                    let code = Int(UInt16(webSocketErrorCode: frame.closeCode))
                    events.yield(.closed(id, why: "closed with \(code)" + (frame.reason.map { " (\(String($0.prefix(120))))" } ?? "")))
                    return
                }
            } catch  where !opened.isSet {
                events.yield(.closed(id, why: "could not be opened: \(Self.describe(error))"))
                return
            } catch {}
            // Open once, and ended without Slack's close frame (the library's own ping timeout
            // closes it so, as does a connection that dropped).
            events.yield(
                .closed(id, why: "ended without a close frame (it dropped, or a ping was not answered within \(silence.aiboxText))"))
        }
    }

    /// Whether a socket got as far as its handler (opened), across its task's closures.
    final class OpenedFlag: Sendable {
        private let value = Mutex(false)
        func set() { value.withLock { $0 = true } }
        var isSet: Bool { value.withLock { $0 } }
    }

    static func describe(_ error: any Error) -> String {
        if let e = error as? WebSocketClientError { return "\(e)" }
        if let e = error as? IOError { return "\(e.description)" }
        return String("\(error)".prefix(200))
    }

    /// POST apps.connections.open with the app-level token.
    func openConnection() async -> SlackOpenResult {
        switch await call(SlackWire.openConnection(baseURL: baseURL), token: appToken) {
        case .answered(let code, let body, let retryAfter):
            return SlackWire.parseOpen(status: code, body: body, retryAfter: retryAfter, defaultRetryAfter: settings.defaultRetryAfter)
        case .failed(let why): return .transport(why)
        case .timedOut: return .transport("no answer within \(callTimeout.aiboxText)")
        case .cancelled: return .transport("cancelled")
        }
    }

    /// Sends `message`, from its part `fromPart` on (a long text goes as several messages of
    /// at most 4000 characters). A send that timed out may have arrived: its retry can repeat it.
    public func send(_ message: OutgoingMessage, fromPart: Int = 0) async -> SendOutcome {
        let parts = SlackWire.postMessage(baseURL: baseURL, message)
        for (i, request) in parts.enumerated() where i >= fromPart {
            switch await call(request, token: botToken) {
            case .answered(let code, let body, let retryAfter):
                switch SlackWire.parseSend(status: code, body: body, retryAfter: retryAfter, defaultRetryAfter: settings.defaultRetryAfter)
                {
                case .sent: continue
                case .retry(let after, let reason): return .retry(after: after, reason: scrub(reason), partsSent: i)
                case .failed(let reason): return .failed(reason: scrub(reason))
                case .broken(let reason):
                    status.withLock { $0.state = .broken(reason: scrub(reason)) }
                    return .failed(reason: scrub(reason))
                }
            case .failed(let why): return .retry(after: .seconds(5), reason: "chat.postMessage: \(why)", partsSent: i)
            case .timedOut:
                return .retry(after: .seconds(5), reason: "chat.postMessage: no answer within \(callTimeout.aiboxText)", partsSent: i)
            case .cancelled: return .retry(after: .zero, reason: "chat.postMessage: cancelled", partsSent: i)
            }
        }
        return .sent
    }

    enum Exchange {
        case answered(status: Int, body: [UInt8], retryAfter: String?)
        case failed(String)
        case timedOut
        case cancelled
    }

    /// One Web API call with `token` as its bearer, given up after `callTimeout` (the monotonic
    /// clock).
    func call(_ request: SlackRequest, token: Secret) async -> Exchange {
        let headers = [("authorization", "Bearer " + token.reveal()), ("content-type", request.contentType)]
        switch await AgentHTTP.call(
            url: request.url, headers: headers, body: request.body, maxBody: SlackWire.maxBody, deadline: Clock.monotonic() + callTimeout)
        {
        case .answered(let status, let headers, let body):
            return .answered(status: status, body: body, retryAfter: headers.first(name: "retry-after"))
        case .failed(let why): return .failed(scrub(why))
        case .timedOut: return .timedOut
        case .cancelled: return .cancelled
        }
    }

    /// `text` with both tokens masked.
    func scrub(_ text: String) -> String {
        var out = text
        for t in [botToken.reveal(), appToken.reveal()] where !t.isEmpty { out = out.replacing(t, with: Secret.masked) }
        return out
    }

    func scrub(_ s: ChannelState) -> ChannelState {
        switch s {
        case .retrying(let reason): .retrying(reason: scrub(reason))
        case .broken(let reason): .broken(reason: scrub(reason))
        default: s
        }
    }
}

extension SlackConnection: ChannelConnection {
    public var kind: ChannelKind { .slack }
}

import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem
import AsyncHTTPClient
import NIOCore
import NIOPosix
import Glibc
import Synchronization

/// Where the Telegram poller keeps its offset (the next update wanted) across restarts.
public protocol TelegramOffsetStore: Sendable {
    /// The stored offset, or nil before the first update ever.
    func load() throws -> Int64?
    /// Stores `offset` durably.
    func save(_ offset: Int64) throws
}

/// The offset in a file of its own, as decimal text, replaced atomically (write, fsync,
/// rename): a power cut leaves the old offset or the new, never half of one.
public struct FileOffsetStore: TelegramOffsetStore {
    public let path: String

    public init(path: String) { self.path = path }

    public func load() throws -> Int64? {
        guard let text = readTextFile(path) else { return nil }
        let trimmed = text.trimmingCharacters(in: " \n")
        guard let value = Int64(trimmed) else {
            throw SystemError("read", errno: 0, detail: "\(path): \"\(trimmed.prefix(40))\" is not an update offset (a whole number)")
        }
        return value
    }

    public func save(_ offset: Int64) throws { try writeFileAtomically(path, Array("\(offset)\n".utf8), mode: 0o600) }
}

/// The offset in memory only (tests; a box that loses it gets updates Telegram still holds
/// once more, which the receiver drops by id).
public final class MemoryOffsetStore: TelegramOffsetStore {
    private let value: Mutex<Int64?>

    public init(_ offset: Int64? = nil) { value = Mutex(offset) }

    public func load() -> Int64? { value.withLock { $0 } }
    public func save(_ offset: Int64) { value.withLock { $0 = offset } }
}

/// A Telegram bot's connection: the getUpdates long poll (`run`) and sendMessage (`send`).
/// (`TelegramChannel` in AIBoxCore is its box.toml settings.)
///
/// The token is part of every Telegram URL: URLs exist only inside `TelegramRequest`, which
/// prints as its method. Every text this type gives out (state reasons, send outcomes) is made
/// of method names, statuses and Telegram's descriptions, with the token masked out besides.
/// Duplicates: updates below the offset are dropped by the poller; after a power cut between
/// a delivery and the offset's save, the receiver drops them by `IncomingMessage.id`.
public final class TelegramConnection: Sendable {
    /// A bad base URL.
    public struct SettingsError: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    let baseURL: String
    let token: Secret
    public let settings: TelegramPollSettings
    let store: any TelegramOffsetStore
    /// How long a sendMessage may take before it is given up (and retried later).
    let sendTimeout: Duration
    private let status: Mutex<(state: ChannelState, roundTrip: Duration?)> = Mutex((.starting, nil))

    /// `baseURL`: Telegram's (the default), or a fake's; https unless it is the box itself.
    public init(
        token: Secret, baseURL: String = TelegramWire.defaultBaseURL, settings: TelegramPollSettings = TelegramPollSettings(),
        store: any TelegramOffsetStore, sendTimeout: Duration = .seconds(30)
    ) throws(SettingsError) {
        switch Validators.url(baseURL) {
        case .failure(let e): throw SettingsError(description: "the Telegram base URL: \(e.message)")
        case .success(let u):
            guard u.scheme == "https" || u.isLoopback else {
                throw SettingsError(description: "the Telegram base URL uses http to another machine; the bot token needs https (http only for 127.0.0.1 or localhost)")
            }
        }
        self.baseURL = baseURL
        self.token = token
        self.settings = settings
        self.store = store
        self.sendTimeout = sendTimeout
    }

    /// Nothing to release: the HTTP client is the agent's one (`AgentHTTP`).
    public func shutdown() async {}

    /// How the channel is doing.
    public var state: ChannelState { status.withLock { $0.state } }
    /// The last getUpdates that answered, from request to answer.
    public var lastRoundTrip: Duration? { status.withLock { $0.roundTrip } }

    /// Polls until the channel is broken (a refused token) or the task is cancelled. Each text
    /// message goes to `deliver`, which answers whether it recorded it durably; the offset
    /// that confirms a batch to Telegram is saved and sent only once every message of it was.
    public func run(deliver: @escaping @Sendable (IncomingMessage) async -> Bool) async {
        let stored: Int64?
        do { stored = try store.load() } catch {
            // An unreadable offset: Telegram still holds the unconfirmed updates; the
            // receiver drops those it already has.
            stored = nil
        }
        var poller = TelegramPoller(settings: settings, offset: stored)
        var queue = poller.start(now: Clock.monotonic())
        var generator = SystemRandomNumberGenerator()
        while !Task.isCancelled, !queue.isEmpty {
            let action = queue.removeFirst()
            switch action {
            case .report(let s):
                status.withLock { $0.state = scrub(s) }
            case .persistOffset(let offset):
                // A failed save costs a repeat after a restart, which the receiver drops.
                try? store.save(offset)
            case .deliver(let messages):
                var recorded = true
                for m in messages where recorded { recorded = await deliver(m) }
                queue += poller.delivered(recorded: recorded, now: Clock.monotonic(), random: Double.random(in: 0...1, using: &generator))
            case .wait(let until):
                let now = Clock.monotonic()
                if until > now {
                    do { try await Task.sleep(for: until.since(now)) } catch { return }
                }
                queue += poller.wake(now: Clock.monotonic())
            case .poll(let offset, let timeout, let deadline):
                let request = TelegramWire.getUpdates(baseURL: baseURL, token: token, offset: offset, timeout: timeout)
                let result: TelegramPollResult
                switch await exchange(request, deadline: deadline) {
                case .answered(let code, let body): result = TelegramWire.parseUpdates(status: code, body: body)
                case .failed(let why): result = .transport(why)
                case .timedOut: result = .timedOut
                case .cancelled: return
                }
                queue += poller.received(result, now: Clock.monotonic(), random: Double.random(in: 0...1, using: &generator))
                if case .updates = result { status.withLock { $0.roundTrip = poller.lastRoundTrip } }
            }
        }
    }

    /// Sends `message`, from its part `fromPart` on (a long text goes as several messages,
    /// `TelegramWire.split`). A send that timed out may have arrived: its retry can repeat it.
    public func send(_ message: OutgoingMessage, fromPart: Int = 0) async -> SendOutcome {
        let parts = TelegramWire.sendMessage(baseURL: baseURL, token: token, message)
        for (i, request) in parts.enumerated() where i >= fromPart {
            switch await exchange(request, deadline: Clock.monotonic() + sendTimeout) {
            case .answered(let code, let body):
                switch TelegramWire.parseSend(status: code, body: body) {
                case .sent: continue
                case .refused(let e):
                    let reason = scrub("sendMessage: \(e.code) \(e.description)")
                    switch e.code {
                    case 429: return .retry(after: e.retryAfter ?? settings.defaultRetryAfter, reason: reason, partsSent: i)
                    case 500...: return .retry(after: .seconds(5), reason: reason, partsSent: i)
                    default: return .failed(reason: reason)
                    }
                }
            case .failed(let why): return .retry(after: .seconds(5), reason: "sendMessage: \(why)", partsSent: i)
            case .timedOut: return .retry(after: .seconds(5), reason: "sendMessage: no answer within \(sendTimeout.aiboxText)", partsSent: i)
            case .cancelled: return .retry(after: .zero, reason: "sendMessage: cancelled", partsSent: i)
            }
        }
        return .sent
    }

    enum Exchange {
        case answered(status: Int, body: [UInt8])
        case failed(String)
        case timedOut
        case cancelled
    }

    /// One call, given up at `deadline` (the monotonic clock): the request's connection is
    /// closed then, so a server that never answers holds nothing.
    func exchange(_ request: TelegramRequest, deadline: Instant) async -> Exchange {
        switch await AgentHTTP.call(
            url: request.url, headers: [("content-type", "application/json")], body: request.body, maxBody: TelegramWire.maxBody, deadline: deadline)
        {
        case .answered(let status, _, let body): return .answered(status: status, body: body)
        case .failed(let why): return .failed(scrub(why))
        case .timedOut: return .timedOut
        case .cancelled: return .cancelled
        }
    }

    /// `text` with the token masked (a description Telegram or a proxy echoed it into).
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

import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem
import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import NIOPosix
import Glibc
import Synchronization

/// Where the webhook listens and how it defends itself.
public struct WhatsAppWebhookSettings: Equatable, Sendable {
    /// `HOST:PORT` (`[V6]:PORT`); port 0 picks a free one (tests).
    public var listen: String
    /// The most connections open at once; more are closed at accept.
    public var maxConnections: Int
    /// How long a client has to send its whole request (head and body) before its
    /// connection is cut: a client that opens a socket and sends nothing holds it this long.
    public var requestTimeout: Duration
    /// How long after a failed bind the webhook tries again (sending goes on meanwhile).
    public var rebindDelay: Duration

    public init(listen: String = WhatsAppConnection.defaultListen, maxConnections: Int = 32, requestTimeout: Duration = .seconds(10), rebindDelay: Duration = .seconds(30)) {
        self.listen = listen
        self.maxConnections = maxConnections
        self.requestTimeout = requestTimeout
        self.rebindDelay = rebindDelay
    }
}

/// A WhatsApp Business number's connection: the Cloud API's messages call (`send`) and the
/// webhook Meta delivers messages to (`run`), a small HTTP/1.1 server on NIO at
/// `WhatsAppWebhook.path`.
///
/// The box needs no inbound port for sending: without a reachable webhook it still sends, and
/// `receiving` says "sending only: no webhook delivery seen". The webhook speaks plain HTTP on
/// the box (127.0.0.1 by default): TLS is the reverse proxy's or the tunnel's that exposes it.
///
/// Secrets: the access token exists only in `WhatsAppRequest.authorization`; the app secret and
/// the verify token only inside `WhatsAppWebhook`. Every text this type gives out is made of
/// Graph's codes and messages and this file's words, with the three values masked besides.
/// Duplicates: Meta delivers at least once; repeats of a recent id are dropped here, and the
/// receiver drops them by `IncomingMessage.id` across restarts.
public final class WhatsAppConnection: Sendable, CustomStringConvertible, CustomReflectable {
    /// A bad base URL or listen address.
    public struct SettingsError: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// The webhook's address unless configured: the box itself, for a reverse proxy or a tunnel
    /// on the box to forward to.
    public static let defaultListen = "127.0.0.1:8790"

    let baseURL: String
    let apiVersion: String
    let phoneNumberID: String
    let token: Secret
    /// The three secrets, for masking.
    let secrets: [Secret]
    /// nil without an app secret: nothing can be verified, so nothing is received (sending works).
    let webhook: WhatsAppWebhook?
    public let webhookSettings: WhatsAppWebhookSettings
    let host: String
    let port: Int
    let retry: WhatsAppRetry
    /// How long a messages call may take before it is given up (and retried later).
    let sendTimeout: Duration

    struct Status {
        var state: ChannelState = .starting
        var roundTrip: Duration?
        var listening: Int?
        var bindFailure: String?
        var deliveries = 0
        var recent = RecentIDs(capacity: 4096)
        var inFlight: Set<String> = []
    }
    private let status: Mutex<Status> = Mutex(Status())

    /// `phoneNumberID`: the business number's id at Meta (not the number); `token`: a system
    /// user's access token; `appSecret`: the Meta app's secret (the webhook's HMAC key; nil:
    /// no webhook, the box sends only); `verifyToken`: the word the webhook handshake must carry. `baseURL`: Graph's (the
    /// default) or a fake's; https unless it is the box itself.
    public init(
        phoneNumberID: String, token: Secret, appSecret: Secret?, verifyToken: Secret?,
        baseURL: String = WhatsAppWire.defaultBaseURL, apiVersion: String = WhatsAppWire.defaultAPIVersion,
        webhook settings: WhatsAppWebhookSettings = WhatsAppWebhookSettings(), retry: WhatsAppRetry = WhatsAppRetry(),
        sendTimeout: Duration = .seconds(30)
    ) throws(SettingsError) {
        switch Validators.url(baseURL) {
        case .failure(let e): throw SettingsError(description: "the WhatsApp base URL: \(e.message)")
        case .success(let u):
            guard u.scheme == "https" || u.isLoopback else {
                throw SettingsError(description: "the WhatsApp base URL uses http to another machine; the access token needs https (http only for 127.0.0.1 or localhost)")
            }
        }
        guard !phoneNumberID.isEmpty, phoneNumberID.utf8.count <= 32, phoneNumberID.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            throw SettingsError(description: "the WhatsApp phone number id \"\(phoneNumberID.prefix(40))\" is not an id: give the digits Meta shows as \"Phone number ID\" under WhatsApp > API Setup (not the phone number)")
        }
        guard apiVersion.hasPrefix("v"), apiVersion.count <= 8, apiVersion.dropFirst().allSatisfy({ $0.isNumber || $0 == "." }) else {
            throw SettingsError(description: "the Graph API version \"\(apiVersion.prefix(20))\" is not one; give it as v21.0")
        }
        guard let (host, port) = Validators.hostPort(settings.listen) else {
            throw SettingsError(description: "the WhatsApp webhook address \"\(settings.listen.prefix(80))\" is not HOST:PORT; give an IP address and a port, such as 127.0.0.1:8790 or [::1]:8790")
        }
        guard settings.maxConnections >= 1 else { throw SettingsError(description: "the webhook's connection limit is \(settings.maxConnections); at least 1") }
        self.host = host
        self.port = port
        self.baseURL = baseURL
        self.apiVersion = apiVersion
        self.phoneNumberID = phoneNumberID
        self.token = token
        self.secrets = [token] + [appSecret, verifyToken].compactMap { $0 }
        self.webhook = appSecret.map { WhatsAppWebhook(verifyToken: verifyToken ?? Secret(""), appSecret: $0, phoneNumberID: phoneNumberID) }
        self.webhookSettings = settings
        self.retry = retry
        self.sendTimeout = sendTimeout
    }

    /// Nothing to release: the HTTP client is the agent's one (`AgentHTTP`); the webhook stops with `run`.
    public func shutdown() async {}

    /// The phone number id and the webhook's address: nothing secret.
    public var description: String { "WhatsApp \(phoneNumberID) (webhook \(webhookSettings.listen))" }
    public var customMirror: Mirror { Mirror(self, children: ["phoneNumberID": phoneNumberID, "listen": webhookSettings.listen]) }

    /// How the channel is doing: `up` once a send went through or Meta delivered, `retrying`
    /// while sends fail for a while, `broken` once Graph refused the token.
    public var state: ChannelState { status.withLock { $0.state } }
    /// The last messages call that answered, from request to answer.
    public var lastRoundTrip: Duration? { status.withLock { $0.roundTrip } }
    /// The port the webhook listens on (nil while it is not listening).
    public var listeningPort: Int? { status.withLock { $0.listening } }
    /// Whether messages come in: "sending only: …" until Meta's first signed delivery.
    public var receiving: String {
        status.withLock { s in
            if webhook == nil { return "sending only: no app secret, so no webhook (box.toml [channels.whatsapp] app-secret)" }
            if let why = s.bindFailure { return "sending only: the webhook cannot listen on \(webhookSettings.listen): \(why)" }
            if s.deliveries == 0 { return "sending only: no webhook delivery seen" }
            return "receiving: \(s.deliveries) webhook deliveries"
        }
    }

    // MARK: The webhook

    /// Serves the webhook until the task is cancelled. Each new text message goes to
    /// `deliver`, which answers whether it recorded it durably; Meta is answered 200 only once
    /// every message of a delivery was (else 503: Meta delivers it again). A failed bind (the
    /// port taken) is retried every `rebindDelay`; sending works meanwhile.
    public func run(deliver: @escaping @Sendable (IncomingMessage) async -> Bool) async {
        guard webhook != nil else {
            // Sending only: nothing to run until the agent stops.
            while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
            return
        }
        while !Task.isCancelled {
            do {
                try await serve(deliver: deliver)
            } catch {
                if Task.isCancelled { break }
                let why = scrub(String(describing: error).prefix(200).description)
                status.withLock {
                    $0.bindFailure = why
                    $0.listening = nil
                }
                do { try await Task.sleep(for: webhookSettings.rebindDelay) } catch { break }
            }
        }
        status.withLock { $0.listening = nil }
    }

    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    private func serve(deliver: @escaping @Sendable (IncomingMessage) async -> Bool) async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.backlog, value: 128)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    return try Connection(wrappingChannelSynchronously: channel)
                }
            }
        let bound = server.channel.localAddress?.port
        status.withLock {
            $0.listening = bound
            $0.bindFailure = nil
        }
        let active = ConnectionCount()
        let limit = webhookSettings.maxConnections
        try await withTaskCancellationHandler {
            try await withThrowingDiscardingTaskGroup { group in
                try await server.executeThenClose { inbound in
                    for try await connection in inbound {
                        let admitted = active.n.withLock { n in
                            if n >= limit { return false }
                            n += 1
                            return true
                        }
                        guard admitted else {
                            // Closed at once (through the async channel, which must finish its writer).
                            try? await connection.executeThenClose { _, _ in }
                            continue
                        }
                        group.addTask {
                            await self.handle(connection, deliver: deliver)
                            active.n.withLock { $0 -= 1 }
                        }
                    }
                }
            }
        } onCancel: {
            server.channel.close(promise: nil)
        }
    }

    /// One request per connection, read whole within `requestTimeout` and bounded by
    /// `WhatsAppWebhook.maxBody`, answered, then the connection closed.
    private func handle(_ connection: Connection, deliver: @Sendable (IncomingMessage) async -> Bool) async {
        let channel = connection.channel
        let limit = TimeAmount.nanoseconds(webhookSettings.requestTimeout.nanoseconds)
        let deadline = channel.eventLoop.scheduleTask(in: limit) { channel.close(promise: nil) }
        try? await withTaskCancellationHandler {
            try await connection.executeThenClose { inbound, outbound in
                var head: HTTPRequestHead?
                var body: [UInt8] = []
                var tooLarge = false
                var complete = false
                reading: for try await part in inbound {
                    switch part {
                    case .head(let h):
                        head = h
                        if let length = h.headers.first(name: "content-length").flatMap({ Int($0) }), length > WhatsAppWebhook.maxBody {
                            tooLarge = true
                            break reading
                        }
                    case .body(let chunk):
                        if body.count + chunk.readableBytes > WhatsAppWebhook.maxBody {
                            tooLarge = true
                            break reading
                        }
                        body += chunk.readableBytesView
                    case .end:
                        complete = true
                        break reading
                    }
                }
                deadline.cancel()
                guard let head, complete || tooLarge else { return }
                var reply = WebhookReply.tooLarge
                if !tooLarge { reply = await self.answer(head, body: body, deliver: deliver) }
                var headers = HTTPHeaders()
                headers.add(name: "content-type", value: "text/plain; charset=utf-8")
                headers.add(name: "content-length", value: String(reply.body.utf8.count))
                headers.add(name: "connection", value: "close")
                let status = HTTPResponseStatus(statusCode: reply.status)
                try await outbound.write(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers)))
                try await outbound.write(.body(.byteBuffer(ByteBuffer(string: reply.body))))
                try await outbound.write(.end(nil))
            }
        } onCancel: {
            channel.close(promise: nil)
        }
        deadline.cancel()
    }

    /// The reply to a whole request; deliveries handed on.
    private func answer(_ head: HTTPRequestHead, body: [UInt8], deliver: @Sendable (IncomingMessage) async -> Bool) async -> WebhookReply {
        let path = head.uri.prefix { $0 != "?" }
        guard path == WhatsAppWebhook.path, let webhook else { return .notFound }
        switch head.method {
        case .GET:
            let query = head.uri.firstIndex(of: "?").map { String(head.uri[head.uri.index(after: $0)...]) } ?? ""
            return webhook.verify(query: query)
        case .POST:
            switch webhook.receive(signature: head.headers.first(name: "x-hub-signature-256"), body: body) {
            case .rejected(let reply, _):
                return reply
            case .signed(let messages, _):
                status.withLock {
                    $0.deliveries += 1
                    if $0.state == .starting { $0.state = .up }
                }
                var recorded = true
                for m in messages {
                    // Taken once: a repeat of a recent id, or one being delivered right now.
                    let fresh = status.withLock { s in
                        if s.recent.contains(m.id) || s.inFlight.contains(m.id) { return false }
                        s.inFlight.insert(m.id)
                        return true
                    }
                    guard fresh else { continue }
                    let ok = await deliver(m)
                    status.withLock { s in
                        s.inFlight.remove(m.id)
                        if ok { s.recent.insert(m.id) }
                    }
                    if !ok {
                        recorded = false
                        break
                    }
                }
                return recorded ? .ok : WebhookReply(status: 503, body: "not recorded; deliver again\n")
            }
        default:
            return .notAllowed
        }
    }

    // MARK: Sending

    /// Sends `message` to the number `message.chat` (digits only), from its part `fromPart` on
    /// (a long text goes as several messages). A send that timed out may have arrived: its
    /// retry can repeat it. A refused token marks the channel broken; sends then fail at once.
    public func send(_ message: OutgoingMessage, fromPart: Int = 0) async -> SendOutcome {
        if case .broken(let reason) = state { return .failed(reason: reason) }
        let parts = WhatsAppWire.sendMessage(baseURL: baseURL, apiVersion: apiVersion, phoneNumberID: phoneNumberID, token: token, message)
        for (i, request) in parts.enumerated() where i >= fromPart {
            let started = Clock.monotonic()
            switch await exchange(request, deadline: started + sendTimeout) {
            case .answered(let code, let retryAfter, let body):
                status.withLock { $0.roundTrip = Clock.monotonic().since(started) }
                switch WhatsAppWire.parseSend(status: code, body: body) {
                case .sent:
                    report(.up)
                    continue
                case .refused(let e):
                    switch WhatsAppWire.classify(e, retryAfter: retryAfter, retry: retry) {
                    case .retry(let after, let reason):
                        let r = scrub(reason)
                        report(.retrying(reason: r))
                        return .retry(after: after, reason: r, partsSent: i)
                    case .failed(let reason):
                        return .failed(reason: scrub(reason))
                    case .broken(let reason):
                        let r = scrub(reason)
                        report(.broken(reason: r))
                        return .failed(reason: r)
                    }
                }
            case .failed(let why):
                let reason = "messages: \(why)"
                report(.retrying(reason: reason))
                return .retry(after: retry.transient, reason: reason, partsSent: i)
            case .timedOut:
                let reason = "messages: no answer within \(sendTimeout.aiboxText)"
                report(.retrying(reason: reason))
                return .retry(after: retry.transient, reason: reason, partsSent: i)
            case .cancelled:
                return .retry(after: .zero, reason: "messages: cancelled", partsSent: i)
            }
        }
        return .sent
    }

    private func report(_ s: ChannelState) {
        status.withLock { st in
            if case .broken = st.state { return }
            st.state = s
        }
    }

    enum Exchange {
        case answered(status: Int, retryAfter: Duration?, body: [UInt8])
        case failed(String)
        case timedOut
        case cancelled
    }

    /// One call, given up at `deadline` (the monotonic clock).
    func exchange(_ request: WhatsAppRequest, deadline: Instant) async -> Exchange {
        switch await AgentHTTP.call(
            url: request.url, headers: [("content-type", "application/json"), ("authorization", request.authorization)], body: request.body,
            maxBody: WhatsAppWire.maxAnswer, deadline: deadline)
        {
        case .answered(let status, let headers, let body):
            let retryAfter = headers.first(name: "retry-after").flatMap { Int64($0) }.map { Duration.seconds(max(0, min($0, 86_400))) }
            return .answered(status: status, retryAfter: retryAfter, body: body)
        case .failed(let why): return .failed(scrub(why))
        case .timedOut: return .timedOut
        case .cancelled: return .cancelled
        }
    }

    /// `text` with the token, the app secret and the verify token masked.
    func scrub(_ text: String) -> String {
        var t = text
        for s in secrets where !s.reveal().isEmpty { t = t.replacing(s.reveal(), with: Secret.masked) }
        return t
    }
}

/// The webhook's open connections.
final class ConnectionCount: Sendable {
    let n = Mutex(0)
}

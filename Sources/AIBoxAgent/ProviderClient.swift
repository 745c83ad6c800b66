import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem
import AsyncHTTPClient
import NIOCore
import NIOPosix
import Glibc
import Synchronization

/// How long a call may stay silent, on the monotonic clock.
public struct CallTimeouts: Sendable, Equatable {
    public var connect: Duration
    /// From the request to the first byte of the reply's body (a local model on a CPU reads
    /// the whole prompt before its first token).
    public var firstByte: Duration
    /// Between two reads of the body once it flows.
    public var idle: Duration

    public init(connect: Duration, firstByte: Duration, idle: Duration) {
        self.connect = connect
        self.firstByte = firstByte
        self.idle = idle
    }

    public static func forRoute(_ r: ResolvedRoute) -> CallTimeouts {
        r.isLocal
            ? CallTimeouts(connect: .seconds(5), firstByte: .seconds(120), idle: .seconds(60))
            : CallTimeouts(connect: .seconds(10), firstByte: .seconds(30), idle: .seconds(30))
    }
}

/// A whole reply.
public struct CallReply: Sendable, Equatable {
    public var text: String
    public var usage: Usage?
    public var stopReason: String?
    /// Milliseconds from the request to the first byte of the body, and to the end.
    public var firstByteMS: Double
    public var totalMS: Double
}

/// Calls one provider route, streaming, and gives back the whole reply or why not. The API
/// key goes into a header and nowhere else: errors describe status, provider error type and
/// message, never the request's headers.
public final class ProviderClient: Sendable {
    let http: HTTPClient
    /// The most of an error body read (its JSON names the error; the rest is noise).
    static let maxErrorBody = 64 << 10

    public init() { http = AgentHTTP.client }

    /// Nothing to release: the HTTP client is the agent's one (`AgentHTTP`).
    public func shutdown() async {}

    /// - Parameter liveness: where the call is on record as an operation with a deadline (the
    ///   watch's, moved on as the reply flows), so that a call its watch fails to end shows as stuck.
    public func call(
        _ route: ResolvedRoute, apiKey: Secret?, request: ModelRequest, timeouts: CallTimeouts, liveness: LivenessBoard? = nil
    ) async -> Result<CallReply, CallFailure> {
        let wire = ProviderWire.request(kind: route.kind, baseURL: route.baseURL, apiKey: apiKey, request)
        let kind = route.kind
        let start = Clock.monotonic()
        let watch = Watch(deadline: start + timeouts.connect + timeouts.firstByte, liveness: liveness, what: "a call to \(route.key)")
        defer { watch.ended() }
        return await withTaskGroup(of: Result<CallReply, CallFailure>?.self) { group in
            group.addTask {
                var req = HTTPClientRequest(url: wire.url)
                req.method = .POST
                for (name, value) in wire.headers { req.headers.add(name: name, value: value) }
                req.body = .bytes(ByteBuffer(bytes: wire.body))
                return await self.exchange(req, kind: kind, start: start, timeouts: timeouts, watch: watch)
            }
            group.addTask { await watch.expire() }
            var outcome: Result<CallReply, CallFailure> = .failure(.transport("cancelled"))
            if let first = await group.next(), let r = first { outcome = r }
            group.cancelAll()
            return outcome
        }
    }

    private func exchange(_ req: HTTPClientRequest, kind: ProviderKind, start: Instant, timeouts: CallTimeouts, watch: Watch) async -> Result<
        CallReply, CallFailure
    > {
        var answered = false
        do {
            // The watch, not this deadline, bounds the call; this one only frees the connection.
            let response = try await AgentHTTP.execute(req)
            answered = true
            watch.extend(to: Clock.monotonic() + timeouts.firstByte)
            guard (200..<300).contains(Int(response.status.code)) else {
                var body: [UInt8] = []
                for try await chunk in response.body {
                    body += chunk.readableBytesView.prefix(ProviderClient.maxErrorBody - body.count)
                    if body.count >= ProviderClient.maxErrorBody { break }
                }
                return .failure(
                    ProviderWire.failure(status: Int(response.status.code), body: body, retryAfter: response.headers.first(name: "retry-after")))
            }
            var decoder = ReplyDecoder(kind: kind)
            var firstByte: Instant?
            var reply: CallReply?
            var trailing = 0
            for try await chunk in response.body {
                let now = Clock.monotonic()
                if let reply {
                    // The reply is whole; the body's own end (the chunked terminator) follows at
                    // once. It is read, not abandoned: a response given up half-read closes its
                    // connection while the pool may already be handing it to the next call
                    // ("I/O on closed channel" on a keep-alive llama-server). A server that
                    // goes on sending is cut after 64 KiB; one that sends nothing more is cut
                    // by the watch, which then answers with the reply.
                    trailing += chunk.readableBytes
                    if trailing > 64 << 10 { return .success(reply) }
                    continue
                }
                if firstByte == nil, chunk.readableBytes > 0 { firstByte = now }
                watch.extend(to: now + timeouts.idle)
                if let f = decoder.feed(chunk.readableBytesView) { return .failure(f) }
                if decoder.complete {
                    reply = Self.reply(decoder, start: start, firstByte: firstByte, end: now)
                    watch.complete(reply!, grace: .seconds(2))
                }
            }
            if let reply { return .success(reply) }
            if let f = decoder.finish() { return .failure(f) }
            return .success(Self.reply(decoder, start: start, firstByte: firstByte, end: Clock.monotonic()))
        } catch is CancellationError {
            return .failure(.transport("cancelled"))
        } catch {
            // After the head, a connection lost is a reply cut short, not an unreachable host.
            let why = ProviderClient.describe(error)
            return .failure(answered ? .midStream(why) : .transport(why))
        }
    }

    static func reply(_ decoder: ReplyDecoder, start: Instant, firstByte: Instant?, end: Instant) -> CallReply {
        CallReply(
            text: decoder.text, usage: decoder.usage, stopReason: decoder.stopReason,
            firstByteMS: Double((firstByte ?? end).since(start).nanoseconds) / 1e6, totalMS: Double(end.since(start).nanoseconds) / 1e6)
    }

    /// What went wrong in words, without anything of the request (AHC's errors hold none).
    static func describe(_ error: any Error) -> String {
        if let e = error as? HTTPClientError {
            switch e {
            case .connectTimeout: return "connect timed out"
            case .remoteConnectionClosed: return "the server closed the connection"
            case .deadlineExceeded: return "the call took too long"
            default: return "\(e)"
            }
        }
        if let e = error as? IOError { return String(cString: strerror(e.errnoCode)).lowercased() }
        return String(describing: error)
    }

    /// The call's silence deadline, moved on by every read; `expire` returns a stall once it
    /// passes, or the reply when it was whole and only the body's end was awaited.
    final class Watch: Sendable {
        private let state: Mutex<(deadline: Instant, bodyStarted: Bool, reply: CallReply?)>
        private let liveness: LivenessBoard?
        private let token: UInt64

        init(deadline: Instant, liveness: LivenessBoard? = nil, what: String = "") {
            state = Mutex((deadline, false, nil))
            self.liveness = liveness
            token = liveness?.begin(what, deadline: deadline) ?? 0
        }

        func extend(to deadline: Instant) {
            state.withLock {
                $0.deadline = deadline
                $0.bodyStarted = true
            }
            liveness?.extend(token, to: deadline)
        }

        /// The reply is whole: at most `grace` more for the body's end.
        func complete(_ reply: CallReply, grace: Duration) {
            let deadline = Clock.monotonic() + grace
            state.withLock {
                $0.reply = reply
                $0.deadline = deadline
            }
            liveness?.extend(token, to: deadline)
        }

        /// The call is over, however it went.
        func ended() { liveness?.end(token) }

        func expire() async -> Result<CallReply, CallFailure>? {
            while true {
                let (deadline, started, reply) = state.withLock { ($0.deadline, $0.bodyStarted, $0.reply) }
                let now = Clock.monotonic()
                if now >= deadline { return reply.map { .success($0) } ?? .failure(.stalled(firstByte: !started)) }
                do { try await Task.sleep(for: deadline.since(now)) } catch { return nil }
            }
        }
    }
}

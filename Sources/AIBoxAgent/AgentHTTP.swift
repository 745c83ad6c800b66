import AIBoxCore
import AIBoxSystem
import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import NIOPosix

/// The agent's one HTTP client, shared by the model calls and the channels: no redirects (a
/// redirect would carry a key or a token-bearing path to another host), no decompression, a
/// refused connection fails at once (the next route, the channel's backoff, decides what
/// next) instead of being retried until the connect timeout, idle connections kept a minute.
/// A static: it lives as long as the process and is never shut down, so no path — an early
/// return, a test's failed expectation — can drop a client that was not (async-http-client
/// traps in the deinit of one that was not shut down).
enum AgentHTTP {
    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: .seconds(10), read: nil),
            decompression: .disabled)
        configuration.connectionPool = .init(idleTimeout: .seconds(60))
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: configuration)
    }()
}

extension AgentHTTP {
    /// Sends `req`; once more on a fresh connection when the pooled one turned out closed
    /// before a byte of the request went out (`ioOnClosedChannel`: the server — llama-server,
    /// say — closed a keep-alive connection just as the pool handed it over). The request
    /// reached nobody, so sending it again cannot run it twice; any other failure is the caller's.
    static func execute(_ req: HTTPClientRequest) async throws -> HTTPClientResponse {
        do { return try await client.execute(req, deadline: .now() + .minutes(30)) } catch let e as ChannelError where e == .ioOnClosedChannel {
            return try await client.execute(req, deadline: .now() + .minutes(30))
        }
    }
}

/// How one bounded call ended.
enum BoundedExchange: Sendable {
    case answered(status: Int, headers: HTTPHeaders, body: [UInt8])
    /// The transport failed (async-http-client's words: the caller masks its secrets in them).
    case failed(String)
    case timedOut
    case cancelled
}

extension AgentHTTP {
    /// One call (a POST with `body`, a GET without), given up at `deadline` (the monotonic
    /// clock) whatever the connection does — a race with a timer, whose loser is cancelled (a
    /// connection that never answers is closed). The answer's body is read to its end, or to
    /// `maxBody + 1` bytes (the caller refuses more).
    static func call(
        _ method: HTTPMethod = .POST, url: String, headers: [(String, String)], body: [UInt8], maxBody: Int, deadline: Instant
    ) async -> BoundedExchange {
        // On record while it runs: a call its own race fails to end is stuck (the watchdog's business).
        let watch = LivenessBoard.channels.begin("an HTTP call to \(host(url))", deadline: deadline)
        defer { LivenessBoard.channels.end(watch) }
        return await withTaskGroup(of: BoundedExchange?.self) { group in
            group.addTask {
                var req = HTTPClientRequest(url: url)
                req.method = method
                for (name, value) in headers { req.headers.add(name: name, value: value) }
                if method != .GET { req.body = .bytes(ByteBuffer(bytes: body)) }
                do {
                    // The race below, not this deadline, bounds the call; this one only frees the connection.
                    let response = try await execute(req)
                    var got: [UInt8] = []
                    for try await chunk in response.body {
                        got += chunk.readableBytesView.prefix(maxBody + 1 - got.count)
                        if got.count > maxBody { break }
                    }
                    return .answered(status: Int(response.status.code), headers: response.headers, body: got)
                } catch is CancellationError {
                    return .cancelled
                } catch {
                    return .failed(ProviderClient.describe(error))
                }
            }
            group.addTask {
                do { try await Task.sleep(for: deadline.since(AIBoxSystem.Clock.monotonic())) } catch { return nil }
                return .timedOut
            }
            var outcome: BoundedExchange = .cancelled
            if let first = await group.next(), let r = first { outcome = r }
            group.cancelAll()
            return outcome
        }
    }
}

extension AgentHTTP {
    /// A URL's host, for words: never its path or query (Telegram's carry the token) nor its user info.
    static func host(_ url: String) -> String {
        var rest = Substring(url)
        if let scheme = rest.firstRange(of: "://") { rest = rest[scheme.upperBound...] }
        rest = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        if let at = rest.lastIndex(of: "@") { rest = rest[rest.index(after: at)...] }
        return String(rest.prefix(100))
    }

    /// Why `url` must not carry a token (nil when it may): not a URL, or plain text to another
    /// machine. `secure` is the scheme that is always fine (https, wss).
    static func unsafe(_ url: String, secure: String) -> String? {
        var text = url
        if text.hasPrefix("wss://") { text = "https://" + text.dropFirst(6) }
        if text.hasPrefix("ws://") { text = "http://" + text.dropFirst(5) }
        if let q = text.firstIndex(of: "?") { text = String(text[..<q]) }
        switch Validators.url(text) {
        case .failure(let e): return e.message
        case .success(let u):
            if u.scheme == "https" || u.isLoopback { return nil }
            return "it uses \(secure == "https" ? "http" : "ws") to another machine; the token needs \(secure) (plain text only for 127.0.0.1 or localhost)"
        }
    }
}

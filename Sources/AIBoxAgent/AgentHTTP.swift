import AsyncHTTPClient
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

/// `ready-http = "http://127.0.0.1:8080/health"`: the worker is ready once a GET of this URL
/// answers 200 — readiness for programs that speak no sd_notify but serve a health endpoint
/// (llama.cpp's server answers 503 while it loads its model, 200 after).
///
/// Loopback only, plain HTTP, an IP address (or `localhost`): the daemon probes from its own
/// loop, without DNS (a blocking lookup) or TLS, and the URL is the worker's own server on
/// this box. Here: the URL's rules, the request, the status line, and when to probe; the
/// daemon does the I/O (`HTTPProbe`, `Supervisor+Readiness`).
public struct ReadyHTTP: Equatable, Sendable, CustomStringConvertible {
    /// As written in the worker file.
    public let url: String
    /// The address in network order: 4 bytes (IPv4) or 16 (IPv6).
    public let address: [UInt8]
    public let port: UInt16
    /// Path and query, as sent in the request line ("/health").
    public let target: String

    /// The policy: an attempt that has no status line after `attemptTimeout` failed; the
    /// next begins after `schedule.delay(attempt: n)` (50 ms after the start, then 100, 200
    /// … up to 1 s apart, on the monotonic clock) until the worker is ready or `ready-timeout`
    /// stops it.
    public static let attemptTimeout: Duration = .seconds(2)
    public static let schedule = Backoff(base: .milliseconds(50), max: .seconds(1), jitter: 0)
    /// At most this much of an answer is read: a status line is short, and nothing a worker
    /// sends can make the daemon hold more.
    public static let maximumStatusLine = 512

    public var description: String { url }

    /// A URL as a worker file gives it; the failure says what is wrong and what would be right.
    public static func parse(_ text: String) -> Result<ReadyHTTP, ReadyHTTPError> {
        let example = "such as \"http://127.0.0.1:8080/health\""
        let bytes = Array(text.utf8)
        guard bytes.count <= 1024 else { return .failure(.init("is longer than 1024 bytes")) }
        guard let schemeEnd = text.firstRange(of: "://") else {
            return .failure(.init("is not a URL; use http://ADDRESS:PORT/PATH on this box, \(example)"))
        }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "http" else {
            if scheme == "https" {
                return .failure(
                    .init("https is not supported: the check is made on loopback, where TLS adds nothing; use http://, \(example)"))
            }
            return .failure(.init("\(quoted(scheme)) is not supported; use http://, \(example)"))
        }
        let rest = text[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        var target = String(rest[authorityEnd...])
        if target.isEmpty { target = "/" } else if target.hasPrefix("?") { target = "/" + target }
        guard !target.contains("#") else {
            return .failure(.init("holds a fragment (#…), which is never sent to the server; remove it"))
        }
        guard target.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            return .failure(.init("the path must be printable ASCII without spaces (percent-encode the rest), \(example)"))
        }
        guard !authority.contains("@") else {
            return .failure(.init("holds a user name or password (…@); the check sends none, remove it"))
        }
        // host[:port]; an IPv6 address in brackets.
        var host = Substring(authority)
        var portText: Substring?
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return .failure(.init("an IPv6 address needs its closing ']'")) }
            let after = host[host.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() } else if !after.isEmpty { return .failure(.init("bad address")) }
            host = host[...close]
        } else if let colon = host.lastIndex(of: ":") {
            portText = host[host.index(after: colon)...]
            host = host[..<colon]
        }
        var port: UInt16 = 80
        if let p = portText {
            guard !p.isEmpty, p.count <= 5, p.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = Int(p), (1...65535).contains(n) else {
                return .failure(.init("\(quoted(String(p))) is not a port; use 1 to 65535"))
            }
            port = UInt16(n)
        }
        let loopback = "must be on this box: 127.0.0.1 (any 127.x.y.z), [::1] or localhost, \(example)"
        let address: [UInt8]
        switch host.lowercased() {
        case "localhost":
            address = [127, 0, 0, 1]
        case "[::1]":
            address = [UInt8](repeating: 0, count: 15) + [1]
        default:
            guard let v4 = ipv4(host) else {
                return .failure(.init(host.isEmpty ? "names no address; the address \(loopback)" : "\(quoted(String(host))) \(loopback)"))
            }
            guard v4[0] == 127 else { return .failure(.init("\(host) is not a loopback address; the address \(loopback)")) }
            address = v4
        }
        return .success(ReadyHTTP(url: text, address: address, port: port, target: target))
    }

    /// Dotted decimal, four parts of 0-255 (no shorthand forms such as "127.1").
    private static func ipv4(_ s: Substring) -> [UInt8]? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = UInt8(p) else { return nil }
            out.append(n)
        }
        return out
    }

    /// The request: one GET, then the server closes (HTTP/1.1 with `Connection: close`).
    public var request: [UInt8] {
        let host: String
        if address.count == 16 {
            host = "[::1]"
        } else {
            host = address.map { String($0) }.joined(separator: ".")
        }
        let hostHeader = port == 80 ? host : "\(host):\(port)"
        return Array(
            "GET \(target) HTTP/1.1\r\nHost: \(hostHeader)\r\nUser-Agent: aibox-ready-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
                .utf8)
    }

    /// What the first bytes of an answer say.
    public enum Answer: Equatable, Sendable {
        /// No whole status line yet.
        case incomplete
        /// The status code of `HTTP/1.x NNN …`.
        case status(Int)
        /// Not an HTTP/1 status line, or none within `maximumStatusLine` bytes.
        case malformed
    }

    /// The status line at the start of `bytes` (what has been received so far).
    public static func answer(_ bytes: some Collection<UInt8>) -> Answer {
        let head = bytes.prefix(maximumStatusLine)
        guard let nl = head.firstIndex(of: 0x0A) else { return head.count >= maximumStatusLine ? .malformed : .incomplete }
        var line = Array(head[..<nl])
        if line.last == 0x0D { line.removeLast() }
        // "HTTP/1.1 200 OK", "HTTP/1.0 503" — a reason phrase is optional.
        let prefix = Array("HTTP/1.".utf8)
        guard line.count >= 12, Array(line[0..<7]) == prefix, isDigit(line[7]), line[8] == 0x20,
            line[9...11].allSatisfy(isDigit), line.count == 12 || line[12] == 0x20
        else { return .malformed }
        return .status(line[9...11].reduce(0) { $0 * 10 + Int($1 - 0x30) })
    }

    private static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
}

/// Why a `ready-http` URL was refused (without the key: the caller adds file, line and key).
public struct ReadyHTTPError: Error, Equatable, Sendable {
    public var message: String
    init(_ message: String) { self.message = message }
}

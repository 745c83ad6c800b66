import AIBoxCore
import CAIBoxOS
import Glibc

/// One GET of a `ready-http` URL (loopback, plain HTTP), driven by the caller's event loop:
/// a non-blocking connect, the request, the status line, closed. Nothing in it waits, and
/// nothing the server does makes it hold more than `ReadyHTTP.maximumStatusLine` bytes;
/// the caller bounds it in time (`ReadyHTTP.attemptTimeout`).
public final class HTTPProbe {
    public let fd: Int32
    private let request: [UInt8]
    private var connected = false
    private var sent = 0
    private var received: [UInt8] = []

    /// What the loop should wait for next, or how the attempt ended.
    public enum Progress: Equatable {
        case wantWrite
        case wantRead
        /// The status code, or why there is none (connection refused, closed, not HTTP…).
        case finished(status: Int?, reason: String)
    }

    /// Starts connecting. A refusal the kernel knows at once (nothing listens on loopback)
    /// is thrown, as is any other failure to begin: the attempt failed.
    public init(_ check: ReadyHTTP) throws(SystemError) {
        let family = check.address.count == 16 ? AF_INET6 : AF_INET
        let fd = try syscall("socket", detail: check.url) {
            socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        do {
            try Self.connect(fd, check)
        } catch {
            closeDescriptor(fd)
            throw error
        }
        self.fd = fd
        self.request = check.request
    }

    deinit { closeDescriptor(fd) }

    private static func connect(_ fd: Int32, _ check: ReadyHTTP) throws(SystemError) {
        do {
            try syscall("connect", detail: check.url) { () -> Int32 in
                if check.address.count == 16 {
                    var a = sockaddr_in6()
                    a.sin6_family = sa_family_t(AF_INET6)
                    a.sin6_port = check.port.bigEndian
                    withUnsafeMutableBytes(of: &a.sin6_addr) { raw in for (i, b) in check.address.enumerated() { raw[i] = b } }
                    return withUnsafePointer(to: &a) { p in
                        p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                        }
                    }
                }
                var a = sockaddr_in()
                a.sin_family = sa_family_t(AF_INET)
                a.sin_port = check.port.bigEndian
                withUnsafeMutableBytes(of: &a.sin_addr) { raw in for (i, b) in check.address.enumerated() { raw[i] = b } }
                return withUnsafePointer(to: &a) { p in
                    p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
            }
        } catch {
            // Under way (EALREADY: the same, after a retry): the loop hears how it ends.
            if error.errno == EINPROGRESS || error.errno == EALREADY { return }
            throw error
        }
    }

    /// Call when the loop reports the descriptor ready (or failed); each call does what can
    /// be done without waiting.
    public func advance() -> Progress {
        if !connected {
            // The outcome of the connect: SO_ERROR, then whether it is done (a spurious wake-up
            // finds it still connecting: getpeername's ENOTCONN).
            var failure: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            do {
                try syscall("getsockopt(SO_ERROR)") { getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length) }
                var peer = sockaddr_storage()
                var peerLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
                if failure == 0 {
                    try syscall("getpeername") {
                        withUnsafeMutablePointer(to: &peer) { p in
                            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &peerLength) }
                        }
                    }
                }
            } catch {
                if error.errno == ENOTCONN { return .wantWrite }
                return .finished(status: nil, reason: "connect: \(error.reason)")
            }
            if failure != 0 { return .finished(status: nil, reason: "connect: " + String(cString: strerror(failure))) }
            connected = true
        }
        while sent < request.count {
            let n: Int?
            do {
                // MSG_NOSIGNAL: a server that closed is an error here, not a SIGPIPE for the daemon.
                n = try nonBlockingSyscall("send") {
                    request.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
                }
            } catch {
                return .finished(status: nil, reason: "send: \(error.reason)")
            }
            guard let n else { return .wantWrite }
            sent += n
        }
        var chunk = [UInt8](repeating: 0, count: ReadyHTTP.maximumStatusLine)
        while true {
            let room = ReadyHTTP.maximumStatusLine - received.count
            let n: Int?
            do {
                n = try nonBlockingSyscall("recv") { chunk.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, room, 0) } }
            } catch {
                return .finished(status: nil, reason: "recv: \(error.reason)")
            }
            guard let n else { return .wantRead }
            received += chunk[0..<n]
            switch ReadyHTTP.answer(received) {
            case .status(let code): return .finished(status: code, reason: "HTTP \(code)")
            case .malformed: return .finished(status: nil, reason: "the answer is not an HTTP/1 status line")
            case .incomplete:
                if n == 0 { return .finished(status: nil, reason: "closed before a status line") }
            }
        }
    }
}

import AIBoxCore
import CAIBoxOS
import Glibc

/// Who is on the other end of a control connection (SO_PEERCRED).
public struct PeerCredentials: Sendable {
    public var pid: Int32
    public var uid: uid_t
    public var gid: gid_t
}

/// The daemon's control socket (`run/aibox/control.sock`, mode 0660): one JSON request
/// line per connection, answered with JSON lines.
public final class ControlListener {
    public let path: String
    public let fd: Int32
    /// A descriptor held in reserve (/dev/null): at the descriptor limit it is closed for the
    /// moment it takes to accept a waiting connection and close it, so that the listener
    /// does not stay readable and spin the loop.
    private var reserve: Int32 = -1

    public init(path: String, group: gid_t? = nil) throws(SystemError) {
        self.path = path
        fd = try syscall("socket(AF_UNIX, SOCK_STREAM)") {
            socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        }
        do throws(SystemError) {
            _ = unlink(path)
            var addr = sockaddr_un()
            let len = aibox_sockaddr_un(&addr, path)
            guard len != socklen_t.max else { throw SystemError("bind", errno: ENAMETOOLONG, detail: path) }
            // Created with 0660 from the start: no window where others could connect.
            let old = umask(0o117)
            let r = withUnsafePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
            }
            umask(old)
            if r < 0 { throw SystemError("bind", errno: errno, detail: path) }
            if let group { _ = chown(path, uid_t.max, group) }
            _ = chmod(path, 0o660)
            // A deep queue: a burst of connections waits in it rather than blocking clients in connect.
            try syscall("listen") { listen(fd, SOMAXCONN) }
            reserve = try syscall("open", detail: "/dev/null") { open("/dev/null", O_RDONLY | O_CLOEXEC) }
        } catch {
            closeDescriptor(fd)
            throw error
        }
    }

    deinit {
        closeDescriptor(fd)
        closeDescriptor(reserve)
        _ = unlink(path)
    }

    /// What one `accept` gave.
    public enum Accepted {
        case connection(fd: Int32, peer: PeerCredentials)
        /// Nobody is waiting.
        case none
        /// The process (EMFILE) or the system (ENFILE) is out of descriptors.
        case outOfDescriptors
        /// That one connection failed (it went away before being accepted, or its
        /// credentials could not be read); others may wait.
        case failed(errno: Int32)
    }

    /// The next waiting connection, non-blocking, with its peer's credentials.
    public func accept() -> Accepted {
        let c = aibox_accept(fd)
        if c < 0 {
            switch errno {
            case EAGAIN: return .none
            case EMFILE, ENFILE, ENOBUFS, ENOMEM: return .outOfDescriptors
            default: return .failed(errno: errno)
            }
        }
        var pid: pid_t = 0, uid: uid_t = 0, gid: gid_t = 0
        if aibox_peer_credentials(c, &pid, &uid, &gid) < 0 {
            let e = errno
            closeDescriptor(c)
            return .failed(errno: e)
        }
        return .connection(fd: c, peer: PeerCredentials(pid: pid, uid: uid, gid: gid))
    }

    /// Out of descriptors: the reserve is given up for the moment it takes to accept the
    /// next waiting connection and close it. false when there is no reserve to give (it
    /// could not be taken again: the caller stops accepting for a while).
    public func shedOne() -> Bool {
        guard reserve >= 0 else {
            reserve = open("/dev/null", O_RDONLY | O_CLOEXEC)
            return false
        }
        closeDescriptor(reserve)
        let c = aibox_accept(fd)
        if c >= 0 { closeDescriptor(c) }
        reserve = open("/dev/null", O_RDONLY | O_CLOEXEC)
        return c >= 0
    }

    /// Whether a peer may change things: root, our own user, or a member of the socket's group.
    public func mayChange(_ peer: PeerCredentials) -> Bool {
        if peer.uid == 0 || peer.uid == geteuid() { return true }
        var st = stat()
        guard stat(path, &st) == 0 else { return false }
        if peer.gid == st.st_gid { return true }
        // Supplementary groups of the peer, from /proc/PID/status.
        guard let status = readTextFile("/proc/\(peer.pid)/status"),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Groups:") })
        else { return false }
        return line.dropFirst(7).split(separator: " ").compactMap { gid_t($0.trimmingCharacters(in: "\t ")) }.contains(st.st_gid)
    }
}

/// A client connection to the control socket, bounded in time: connecting, sending and
/// reading the answer all end by one deadline (a daemon that is stopped or hung still has
/// its socket, and the kernel queues a connection to it: without a bound the client would
/// wait for ever). Past it, calls throw `ETIMEDOUT`.
public final class ControlConnection {
    public let fd: Int32
    private let deadline: Instant
    private var buffer: [UInt8] = []

    /// Connects; `nil` when nobody listens (the daemon is not running). Throws when the
    /// socket is there but may not be used (EACCES), so that is never taken for "not running",
    /// and ETIMEDOUT when the daemon's queue of connections stays full until `timeout`.
    public init?(path: String, timeout: Duration) throws(SystemError) {
        deadline = Clock.monotonic() + timeout
        let s = try syscall("socket(AF_UNIX)") { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        var addr = sockaddr_un()
        let len = aibox_sockaddr_un(&addr, path)
        guard len != socklen_t.max else {
            closeDescriptor(s)
            throw SystemError("connect", errno: ENAMETOOLONG, detail: path)
        }
        // A Unix socket's connect waits while the listener's backlog is full, for at most
        // SO_SNDTIMEO (then EAGAIN).
        var tv = timeval(tv_sec: Int(timeout.milliseconds / 1000), tv_usec: Int(timeout.milliseconds % 1000) * 1000)
        _ = setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var r: Int32
        repeat {
            r = withUnsafePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(s, $0, len) }
            }
        } while r < 0 && errno == EINTR && Clock.monotonic() < deadline
        if r < 0 {
            let e = errno
            closeDescriptor(s)
            if e == ENOENT || e == ECONNREFUSED || e == ENOTDIR { return nil }
            throw SystemError("connect", errno: e == EAGAIN || e == EINTR ? ETIMEDOUT : e, detail: path)
        }
        _ = aibox_set_nonblocking(s)
        fd = s
    }

    deinit { closeDescriptor(fd) }

    /// Waits until `fd` is ready for `events` or the deadline passes (ETIMEDOUT).
    private func wait(_ events: Int16, _ call: String) throws(SystemError) {
        while true {
            let left = deadline.since(Clock.monotonic())
            guard left > .zero else { throw SystemError(call, errno: ETIMEDOUT) }
            var p = pollfd(fd: fd, events: events, revents: 0)
            let n = poll(&p, 1, Int32(min(max(1, (left.nanoseconds + 999_999) / 1_000_000), Int64(Int32.max))))
            if n > 0 { return }
            if n < 0 && errno != EINTR { throw SystemError("poll", errno: errno) }
        }
    }

    public func send(line: String) throws(SystemError) {
        let bytes = Array((line + "\n").utf8)
        var offset = 0
        while offset < bytes.count {
            // MSG_NOSIGNAL: a daemon that closed the connection is an error here, not SIGPIPE.
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n >= 0 {
                offset += n
            } else if errno == EAGAIN {
                try wait(Int16(POLLOUT), "send")
            } else if errno != EINTR {
                throw SystemError("send", errno: errno)
            }
        }
    }

    /// The next line; nil at end of stream.
    public func readLine() throws(SystemError) -> String? {
        while true {
            if let nl = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<nl], as: UTF8.self)
                buffer.removeSubrange(...nl)
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno == EAGAIN {
                try wait(Int16(POLLIN), "read")
                continue
            }
            if n <= 0 {
                if buffer.isEmpty { return nil }
                let line = String(decoding: buffer, as: UTF8.self)
                buffer = []
                return line
            }
            buffer += chunk[0..<n]
        }
    }
}

import AIBoxCore
import CAIBoxOS
import Glibc

/// Who is on the other end of a control connection (SO_PEERCRED).
public struct PeerCredentials: Sendable {
    public var pid: Int32
    public var uid: uid_t
    public var gid: gid_t
}

/// A control socket of the daemon (`run/aibox/control.sock`, mode 0660, and each granted
/// worker's `run/aibox/control.d/NAME.sock`, 0600): one JSON request line per connection,
/// answered with JSON lines.
public final class ControlListener {
    public let path: String
    public let fd: Int32
    /// A descriptor held in reserve (/dev/null): at the descriptor limit it is closed for the
    /// moment it takes to accept a waiting connection and close it, so that the listener
    /// does not stay readable and spin the loop.
    private var reserve: Int32 = -1

    /// `mode` 0660 with `group` for the daemon's socket; a worker's own socket is 0600 and
    /// owned by the worker's user (`owner`: a chown that fails fails the listener, as the
    /// worker could not connect).
    public init(path: String, mode: mode_t = 0o660, owner: uid_t? = nil, group: gid_t? = nil) throws(SystemError) {
        // Kept in locals until nothing can fail: a throw after every property is set would run
        // deinit, which would close them a second time.
        let fd = try syscall("socket(AF_UNIX, SOCK_STREAM)") {
            socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        }
        var bound = false
        do throws(SystemError) {
            // An earlier run's socket (the daemon's lock says it is nobody's now); one that
            // cannot be removed makes bind fail with EADDRINUSE.
            removeFileBestEffort(path)
            var addr = sockaddr_un()
            let len = aibox_sockaddr_un(&addr, path)
            guard len != socklen_t.max else { throw SystemError("bind", errno: ENAMETOOLONG, detail: path) }
            // Created with its mode from the start: no window where others could connect.
            let old = umask(0o777 & ~mode)
            do {
                try syscall("bind", detail: path) {
                    withUnsafePointer(to: &addr) { p in p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
                }
            } catch {
                umask(old)
                throw error
            }
            umask(old)
            bound = true
            // Not fatal: without the group, root and our own user still may use the socket,
            // and anyone else's CLI says it is not permitted.
            if let owner {
                try syscall("chown", detail: path) { chown(path, owner, group ?? gid_t.max) }
            } else if let group {
                _ = try? syscall("chown", detail: path) { chown(path, uid_t.max, group) }
            }
            try syscall("chmod", detail: path) { chmod(path, mode) }
            // A deep queue: a burst of connections waits in it rather than blocking clients in connect.
            try syscall("listen") { listen(fd, SOMAXCONN) }
            reserve = try syscall("open", detail: "/dev/null") { open("/dev/null", O_RDONLY | O_CLOEXEC) }
        } catch {
            closeDescriptor(fd)
            if bound { removeFileBestEffort(path) }
            throw error
        }
        self.path = path
        self.fd = fd
    }

    deinit {
        closeDescriptor(fd)
        closeDescriptor(reserve)
        removeFileBestEffort(path)
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
        let c: Int32
        do {
            guard let accepted = try nonBlockingSyscall("accept4", detail: path, { aibox_accept(fd) }) else { return .none }
            c = accepted
        } catch {
            switch error.errno {
            case EMFILE, ENFILE, ENOBUFS, ENOMEM: return .outOfDescriptors
            default: return .failed(errno: error.errno)
            }
        }
        var pid: pid_t = 0, uid: uid_t = 0, gid: gid_t = 0
        do {
            try syscall("getsockopt(SO_PEERCRED)") { aibox_peer_credentials(c, &pid, &uid, &gid) }
        } catch {
            closeDescriptor(c)
            return .failed(errno: error.errno)
        }
        return .connection(fd: c, peer: PeerCredentials(pid: pid, uid: uid, gid: gid))
    }

    /// Out of descriptors: the reserve is given up for the moment it takes to accept the
    /// next waiting connection and close it. false when there is no reserve to give (it
    /// could not be taken again: the caller stops accepting for a while).
    public func shedOne() -> Bool {
        guard reserve >= 0 else {
            reserve = ControlListener.openReserve()
            return false
        }
        closeDescriptor(reserve)
        let c = try? syscall("accept4", detail: path) { aibox_accept(fd) }
        if let c { closeDescriptor(c) }
        reserve = ControlListener.openReserve()
        return c != nil
    }

    /// The reserve descriptor; -1 when even that cannot be had now (out of descriptors).
    private static func openReserve() -> Int32 {
        (try? syscall("open", detail: "/dev/null") { open("/dev/null", O_RDONLY | O_CLOEXEC) }) ?? -1
    }

    /// Whether a peer may change things: root, our own user, or a member of the socket's group.
    public func mayChange(_ peer: PeerCredentials) -> Bool {
        if peer.uid == 0 || peer.uid == geteuid() { return true }
        guard let st = try? fileStatus(path) else { return false }
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
        let deadline = Clock.monotonic() + timeout
        self.deadline = deadline
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
        do throws(SystemError) {
            try syscall("setsockopt(SO_SNDTIMEO)") { setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size)) }
            var tried = false
            do {
                try syscall("connect", detail: path) { () -> Int32 in
                    // Retried after a signal only until the deadline; then as if the wait had timed out.
                    if tried && Clock.monotonic() >= deadline {
                        Glibc.errno = EAGAIN
                        return -1
                    }
                    tried = true
                    return withUnsafePointer(to: &addr) { p in
                        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(s, $0, len) }
                    }
                }
            } catch {
                throw SystemError("connect", errno: error.errno == EAGAIN ? ETIMEDOUT : error.errno, detail: path)
            }
            try setNonBlocking(s)
        } catch {
            closeDescriptor(s)
            let e = error.errno
            if error.function == "connect" && (e == ENOENT || e == ECONNREFUSED || e == ENOTDIR) { return nil }
            throw error
        }
        fd = s
    }

    deinit { closeDescriptor(fd) }

    /// Waits until `fd` is ready for `events` or the deadline passes (ETIMEDOUT).
    private func wait(_ events: Int16, _ call: String) throws(SystemError) {
        while true {
            let left = deadline.since(Clock.monotonic())
            guard left > .zero else { throw SystemError(call, errno: ETIMEDOUT) }
            var p = pollfd(fd: fd, events: events, revents: 0)
            // After a signal, the retry waits for what is left then.
            let n = try syscall("poll") { poll(&p, 1, millisecondsLeft()) }
            if n > 0 { return }
        }
    }

    /// Until the deadline, rounded up (at least 1).
    private func millisecondsLeft() -> Int32 {
        Int32(min(max(1, (deadline.since(Clock.monotonic()).nanoseconds + 999_999) / 1_000_000), Int64(Int32.max)))
    }

    public func send(line: String) throws(SystemError) {
        let bytes = Array((line + "\n").utf8)
        var offset = 0
        while offset < bytes.count {
            // MSG_NOSIGNAL: a daemon that closed the connection is an error here, not SIGPIPE.
            let sent = try nonBlockingSyscall("send") {
                bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            }
            if let n = sent {
                offset += n
            } else {
                try wait(Int16(POLLOUT), "send")
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
            let got: Int?
            do {
                got = try nonBlockingSyscall("read") { chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) } }
            } catch {
                got = 0  // a failed read (a connection reset) ends the stream as its end does
            }
            guard let n = got else {
                try wait(Int16(POLLIN), "read")
                continue
            }
            if n == 0 {
                if buffer.isEmpty { return nil }
                let line = String(decoding: buffer, as: UTF8.self)
                buffer = []
                return line
            }
            buffer += chunk[0..<n]
        }
    }
}

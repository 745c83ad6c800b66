import AIBoxCore
import CAIBoxOS
import Glibc

/// The datagram socket workers send sd_notify messages to ($NOTIFY_SOCKET). The kernel
/// stamps each datagram with the sender's pid (SO_PASSCRED), which is how a message is
/// tied to a worker.
public final class NotifySocket {
    public let path: String
    public let fd: Int32

    public init(path: String) throws(SystemError) {
        // Made in a local until the end: once every property is set, a throw runs deinit,
        // which would close it a second time (and unlink the path).
        let fd = try syscall("socket(AF_UNIX, SOCK_DGRAM)") {
            socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        }
        do throws(SystemError) {
            if !path.hasPrefix("@") { try removeFile(path) }  // a stale socket of a previous run
            var addr = sockaddr_un()
            let len = aibox_sockaddr_un(&addr, path)
            guard len != socklen_t.max else { throw SystemError("bind", errno: ENAMETOOLONG, detail: path) }
            try withUnsafePointer(to: &addr) { (p) throws(SystemError) in
                try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { (sa) throws(SystemError) in
                    _ = try syscall("bind", detail: path) { bind(fd, sa, len) }
                }
            }
            // Workers run as their own users and must be able to send (as to systemd's own
            // socket, 0666): a message counts only from a worker's pid, whoever sends it.
            if !path.hasPrefix("@") { try syscall("chmod", detail: path) { chmod(path, 0o666) } }
            var on: Int32 = 1
            try syscall("setsockopt(SO_PASSCRED)") { setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, socklen_t(MemoryLayout<Int32>.size)) }
            // Many workers ping at once: room for bursts.
            var size: Int32 = 1 << 20
            // Without it the default buffer serves: a burst beyond it is dropped, as any would be.
            _ = try? syscall("setsockopt(SO_RCVBUF)") { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size)) }
        } catch {
            closeDescriptor(fd)
            throw error
        }
        self.path = path
        self.fd = fd
    }

    deinit {
        closeDescriptor(fd)
        if !path.hasPrefix("@") { removeFileBestEffort(path) }
    }

    /// Every datagram waiting, with the sender's pid.
    private var buffer = [UInt8](repeating: 0, count: 4096)

    public func receiveAll(_ body: (Int32, NotifyMessage) -> Void) {
        while true {
            var pid: pid_t = 0, uid: uid_t = 0, gid: gid_t = 0
            // nil: no datagram left. An error (ENOMEM, none other is expected) ends this turn's
            // reading too; what is queued is read at the next readable event.
            let got = try? nonBlockingSyscall("recvmsg", detail: "notify socket") {
                buffer.withUnsafeMutableBytes { aibox_recv_with_creds(fd, $0.baseAddress, $0.count, &pid, &uid, &gid) }
            }
            guard let n = got else { return }
            guard pid > 0, n <= buffer.count else { continue }
            body(pid, buffer.withUnsafeBufferPointer { NotifyMessage(bytes: UnsafeBufferPointer(rebasing: $0[0..<n])) })
        }
    }
}

/// Talks to the service manager above us (systemd), when $NOTIFY_SOCKET is set.
public struct ServiceManagerNotifier {
    public let enabled: Bool
    /// Half of $WATCHDOG_USEC, when systemd watches us.
    public let watchdogInterval: Duration?

    public init(environment: [String: String]) {
        enabled = environment["NOTIFY_SOCKET"] != nil
        if let usec = environment["WATCHDOG_USEC"].flatMap(Int64.init), usec > 0,
            environment["WATCHDOG_PID"].flatMap(Int32.init).map({ $0 == getpid() }) ?? true
        {
            watchdogInterval = .microseconds(usec / 2)
        } else {
            watchdogInterval = nil
        }
    }

    public func send(_ text: String) {
        guard enabled else { return }
        _ = sdNotify(text)
    }
}

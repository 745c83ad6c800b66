import AIBoxCore
import CAIBoxOS
import Glibc

/// One thread, one epoll: descriptors, signals (signalfd) and one deadline on the
/// monotonic clock, waited for as epoll_wait's relative timeout (the kernel counts it on
/// CLOCK_MONOTONIC, so wall-clock jumps cannot touch it). The supervisor runs entirely on
/// it, so its state needs no locks and a wedged loop is visible: it stops pinging
/// systemd's watchdog.
public final class EventLoop {
    public typealias Handler = (UInt32) -> Void
    public static let readable: UInt32 = EPOLLIN.rawValue
    public static let writable: UInt32 = EPOLLOUT.rawValue
    /// Reported by epoll whether asked for or not: the descriptor failed or was closed.
    public static let failed: UInt32 = EPOLLERR.rawValue | EPOLLHUP.rawValue

    private let epollFD: Int32
    private var signalFD: Int32 = -1
    private var handlers: [Int32: Handler] = [:]
    private var signalHandler: ((Int32, Int32) -> Void)?
    private var timerHandler: (() -> Void)?
    private var armed: Instant?
    private var running = false

    public init() throws(SystemError) {
        epollFD = try syscall("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
    }

    deinit {
        closeDescriptor(epollFD)
        closeDescriptor(signalFD)
    }

    /// Blocks `signals` for the calling thread (call before any thread starts, so every
    /// thread inherits the mask) and delivers them through the loop.
    /// `handler` gets each signal with the pid that sent it (for SIGCHLD, the child whose
    /// state changed; signals of one kind pending together are delivered once).
    public func handleSignals(_ signals: [Int32], _ handler: @escaping (_ signal: Int32, _ sender: Int32) -> Void) throws(SystemError) {
        var mask = sigset_t()
        sigemptyset(&mask)
        for s in signals { sigaddset(&mask, s) }
        pthread_sigmask(SIG_BLOCK, &mask, nil)
        signalFD = try syscall("signalfd") { signalfd(-1, &mask, Int32(SFD_CLOEXEC | SFD_NONBLOCK)) }
        signalHandler = handler
        try add(signalFD, events: EPOLLIN.rawValue) { [unowned self] _ in
            var info = signalfd_siginfo()
            let size = MemoryLayout<signalfd_siginfo>.size
            // Until EAGAIN: every pending signal, each read whole.
            while (try? nonBlockingSyscall("read", detail: "signalfd") { Glibc.read(self.signalFD, &info, size) }) == size {
                self.signalHandler?(Int32(info.ssi_signo), Int32(bitPattern: info.ssi_pid))
            }
        }
    }

    public func onTimer(_ handler: @escaping () -> Void) { timerHandler = handler }

    /// Sets the one deadline (nil: none). The timer handler runs once it has passed.
    public func arm(at deadline: Instant?) { armed = deadline }

    /// epoll_wait's timeout: whole milliseconds, rounded up so that it never wakes early.
    private func timeoutMilliseconds() -> Int32 {
        guard let d = armed else { return -1 }
        let now = Clock.monotonic()
        if d <= now { return 0 }
        let ms = (d.nanoseconds - now.nanoseconds + 999_999) / 1_000_000
        return Int32(Swift.min(ms, UInt64(Int32.max)))
    }

    public func add(_ fd: Int32, events: UInt32, _ handler: @escaping Handler) throws(SystemError) {
        var ev = epoll_event()
        ev.events = events
        ev.data.fd = fd
        try syscall("epoll_ctl(ADD)") { epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &ev) }
        handlers[fd] = handler
    }

    public func modify(_ fd: Int32, events: UInt32) {
        var ev = epoll_event()
        ev.events = events
        ev.data.fd = fd
        // Fails only for a descriptor never added (ENOENT), a caller's bug that shows as a
        // connection that stalls until its deadline; EBADF stops the program.
        _ = try? syscall("epoll_ctl(MOD)") { epoll_ctl(epollFD, EPOLL_CTL_MOD, fd, &ev) }
    }

    /// Stops watching `fd` (the caller closes it).
    public func remove(_ fd: Int32) {
        // ENOENT: it was not watched, so there is nothing to stop. EBADF (closed before it was
        // removed: the loop could be watching another file by that number) stops the program.
        _ = try? syscall("epoll_ctl(DEL)") { epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, nil) }
        handlers[fd] = nil
    }

    /// Runs until `stop()`.
    public func run() {
        running = true
        var events = [epoll_event](repeating: epoll_event(), count: 64)
        while running {
            // The timeout is taken again on a retry after a signal: the deadline does not move.
            let n: Int32
            do {
                n = try syscall("epoll_wait") {
                    events.withUnsafeMutableBufferPointer { epoll_wait(epollFD, $0.baseAddress, 64, timeoutMilliseconds()) }
                }
            } catch {
                preconditionFailure("\(error)")  // EINVAL only: not an epoll descriptor, a bug
            }
            // Signals first: a worker's exit (SIGCHLD) comes with the hang-up of its output
            // pipe, and its restart should not wait behind the pipe's reading.
            for i in 0..<Int(n) where events[i].data.fd == signalFD { handlers[signalFD]?(events[i].events) }
            for i in 0..<Int(n) where events[i].data.fd != signalFD {
                let fd = events[i].data.fd
                handlers[fd]?(events[i].events)
            }
            if let d = armed, d <= Clock.monotonic() {
                armed = nil
                timerHandler?()
            }
        }
    }

    public func stop() { running = false }
}

extension EventLoop {
    /// Blocks signals in the calling thread. Call first thing in main, before any thread
    /// exists, so that no thread ever takes them with the default action.
    public static func blockSignals(_ signals: [Int32]) {
        var mask = sigset_t()
        sigemptyset(&mask)
        for s in signals { sigaddset(&mask, s) }
        pthread_sigmask(SIG_BLOCK, &mask, nil)
    }
}

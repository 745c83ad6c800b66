import AIBoxCore
import CAIBoxOS
import Glibc

/// One thread, one epoll: descriptors, signals (signalfd) and one monotonic deadline
/// (timerfd, CLOCK_MONOTONIC, absolute). The supervisor runs entirely on it, so its state
/// needs no locks and a wedged loop is visible: it stops pinging systemd's watchdog.
public final class EventLoop {
    public typealias Handler = (UInt32) -> Void
    public static let readable: UInt32 = EPOLLIN.rawValue

    private let epollFD: Int32
    private let timerFD: Int32
    private var signalFD: Int32 = -1
    private var handlers: [Int32: Handler] = [:]
    private var signalHandler: ((Int32) -> Void)?
    private var timerHandler: (() -> Void)?
    private var armed: Instant?
    private var running = false

    public init() throws(SystemError) {
        epollFD = try syscall("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
        timerFD = try syscall("timerfd_create") { timerfd_create(CLOCK_MONOTONIC, Int32(TFD_CLOEXEC | TFD_NONBLOCK)) }
        try add(timerFD, events: EPOLLIN.rawValue) { [unowned self] _ in
            var expirations: UInt64 = 0
            _ = Glibc.read(self.timerFD, &expirations, 8)
            self.armed = nil
            self.timerHandler?()
        }
    }

    deinit {
        closeDescriptor(epollFD)
        closeDescriptor(timerFD)
        closeDescriptor(signalFD)
    }

    /// Blocks `signals` for the calling thread (call before any thread starts, so every
    /// thread inherits the mask) and delivers them through the loop.
    public func handleSignals(_ signals: [Int32], _ handler: @escaping (Int32) -> Void) throws(SystemError) {
        var mask = sigset_t()
        sigemptyset(&mask)
        for s in signals { sigaddset(&mask, s) }
        pthread_sigmask(SIG_BLOCK, &mask, nil)
        signalFD = try syscall("signalfd") { signalfd(-1, &mask, Int32(SFD_CLOEXEC | SFD_NONBLOCK)) }
        signalHandler = handler
        try add(signalFD, events: EPOLLIN.rawValue) { [unowned self] _ in
            var info = signalfd_siginfo()
            while Glibc.read(self.signalFD, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
                self.signalHandler?(Int32(info.ssi_signo))
            }
        }
    }

    public func onTimer(_ handler: @escaping () -> Void) { timerHandler = handler }

    /// Arms the one timer at an absolute monotonic instant (nil disarms). Cheap when unchanged.
    public func arm(at deadline: Instant?) {
        if deadline == armed { return }
        armed = deadline
        var spec = itimerspec()
        if let d = deadline {
            let ns = Swift.max(d.nanoseconds, 1)
            spec.it_value.tv_sec = Int(ns / 1_000_000_000)
            spec.it_value.tv_nsec = Int(ns % 1_000_000_000)
        }
        timerfd_settime(timerFD, Int32(TFD_TIMER_ABSTIME), &spec, nil)
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
        _ = epoll_ctl(epollFD, EPOLL_CTL_MOD, fd, &ev)
    }

    /// Stops watching `fd` (the caller closes it).
    public func remove(_ fd: Int32) {
        _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, nil)
        handlers[fd] = nil
    }

    /// Runs until `stop()`.
    public func run() {
        running = true
        var events = [epoll_event](repeating: epoll_event(), count: 64)
        while running {
            let n = events.withUnsafeMutableBufferPointer { epoll_wait(epollFD, $0.baseAddress, 64, -1) }
            if n < 0 {
                if errno == EINTR { continue }
                preconditionFailure("epoll_wait: \(errno)")
            }
            for i in 0..<Int(n) {
                let fd = events[i].data.fd
                handlers[fd]?(events[i].events)
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

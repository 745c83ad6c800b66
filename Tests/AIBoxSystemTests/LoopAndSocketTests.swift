import CAIBoxOS
import Glibc
import Testing

@testable import AIBoxCore
@testable import AIBoxSystem

/// Sends one datagram to a Unix socket path from this process.
func sendDatagram(_ text: String, to path: String) throws {
    let fd = try syscall("socket") { socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
    defer { closeDescriptor(fd) }
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        for (i, b) in bytes.prefix(raw.count - 1).enumerated() { raw[i] = b }
    }
    let payload = Array(text.utf8)
    let sent = withUnsafePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            sendto(fd, payload, payload.count, 0, sa, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
    if sent != payload.count { throw SystemError("sendto", errno: errno, detail: path) }
}

@Suite("Notify socket")
struct NotifySocketTests {
    @Test("datagrams arrive with the sender's pid and parsed")
    func receive() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/notify"
            let socket = try NotifySocket(path: path)
            #expect(fileExists(path))
            try sendDatagram("READY=1\nSTATUS=Loading model", to: path)
            try sendDatagram("WATCHDOG=1", to: path)
            #expect(waitReadable(socket.fd, timeoutMilliseconds: 2000))
            var received: [(Int32, NotifyMessage)] = []
            socket.receiveAll { received.append(($0, $1)) }
            #expect(received.map(\.0) == [getpid(), getpid()])
            var first = NotifyMessage()
            first.ready = true
            first.status = "Loading model"
            var second = NotifyMessage()
            second.watchdog = true
            #expect(received.map(\.1) == [first, second])
            // Nothing more: receiveAll returns on an empty socket.
            var more = 0
            socket.receiveAll { _, _ in more += 1 }
            #expect(more == 0)
        }
    }

    @Test("the socket file goes away with the socket; a stale file is replaced")
    func lifecycle() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/notify"
            try writeFile(path, "stale")
            do {
                let socket = try NotifySocket(path: path)
                try sendDatagram("READY=1", to: path)
                #expect(waitReadable(socket.fd, timeoutMilliseconds: 2000))
            }
            #expect(!fileExists(path))
        }
    }

    /// The failure path closes the socket once: a second close, from deinit, used to follow,
    /// which `closeDescriptor` now stops the program on (EBADF).
    @Test("a path too long for sockaddr_un is an error naming it")
    func tooLong() {
        let path = "/tmp/" + String(repeating: "n", count: 200)
        let error = #expect(throws: SystemError.self) { _ = try NotifySocket(path: path) }
        #expect(error?.errno == ENAMETOOLONG)
        #expect(error?.description.contains(path) == true)
    }
}

@Suite("Control socket")
struct ControlListenerTests {
    /// The failure path closes the socket once (a second close, from deinit, used to follow).
    @Test("a path too long for sockaddr_un is an error naming it")
    func tooLong() {
        let path = "/tmp/" + String(repeating: "c", count: 200)
        let error = #expect(throws: SystemError.self) { _ = try ControlListener(path: path) }
        #expect(error?.function == "bind" && error?.errno == ENAMETOOLONG)
        #expect(error?.description.contains(path) == true)
    }
}

/// A second timer, outside the loop's own, that ends `loop.run()` after `milliseconds`
/// whatever happens: every wait in these tests is bounded.
final class Deadline {
    let fd: Int32
    private(set) var expired = false

    init(_ loop: EventLoop, milliseconds: Int) throws {
        fd = try syscall("timerfd_create") { timerfd_create(CLOCK_MONOTONIC, Int32(TFD_CLOEXEC | TFD_NONBLOCK)) }
        var spec = itimerspec()
        spec.it_value.tv_sec = milliseconds / 1000
        spec.it_value.tv_nsec = (milliseconds % 1000) * 1_000_000
        try syscall("timerfd_settime") { timerfd_settime(fd, 0, &spec, nil) }
        try loop.add(fd, events: EventLoop.readable) { [unowned self, unowned loop] _ in
            self.expired = true
            loop.stop()
        }
    }

    deinit { closeDescriptor(fd) }
}

@Suite("Event loop")
struct EventLoopTests {
    @Test("a timer armed 50 ms ahead fires no earlier, on the monotonic clock")
    func timer() throws {
        let loop = try EventLoop()
        let deadline = try Deadline(loop, milliseconds: 5000)
        var firedAt: Instant?
        loop.onTimer { [unowned loop] in
            firedAt = Clock.monotonic()
            loop.stop()
        }
        let start = Clock.monotonic()
        loop.arm(at: start + .milliseconds(50))
        loop.run()
        #expect(!deadline.expired)
        let fired = try #require(firedAt)
        #expect(fired.since(start) >= .milliseconds(50))
        #expect(fired.since(start) < .seconds(2))
    }

    @Test("a timer in the past fires at once")
    func pastTimer() throws {
        let loop = try EventLoop()
        let deadline = try Deadline(loop, milliseconds: 5000)
        var fired = 0
        loop.onTimer { [unowned loop] in
            fired += 1
            loop.stop()
        }
        loop.arm(at: Instant(nanoseconds: 1))
        loop.run()
        #expect(fired == 1)
        #expect(!deadline.expired)
    }

    @Test("a disarmed timer does not fire")
    func disarm() throws {
        let loop = try EventLoop()
        var fired = false
        loop.onTimer { fired = true }
        loop.arm(at: Clock.monotonic() + .milliseconds(20))
        loop.arm(at: nil)
        let deadline = try Deadline(loop, milliseconds: 150)
        loop.run()
        #expect(deadline.expired)
        #expect(!fired)
    }

    @Test("a registered pipe's handler runs when the pipe is written, not before")
    func pipeHandler() throws {
        let loop = try EventLoop()
        let deadline = try Deadline(loop, milliseconds: 5000)
        let (r, w) = try makePipe()
        defer {
            closeDescriptor(r)
            closeDescriptor(w)
        }
        var written = false
        var received: [UInt8] = []
        var sawWriteFirst = true
        try loop.add(r, events: EventLoop.readable) { [unowned loop] events in
            sawWriteFirst = sawWriteFirst && written
            #expect(events & EventLoop.readable != 0)
            var buffer = [UInt8](repeating: 0, count: 64)
            let n = buffer.withUnsafeMutableBytes { Glibc.read(r, $0.baseAddress, $0.count) }
            if n > 0 { received += buffer[0..<n] }
            loop.remove(r)
            loop.stop()
        }
        // The write comes from the loop itself, 20 ms in.
        loop.onTimer {
            written = true
            try? writeAll(w, Array("ping".utf8))
        }
        loop.arm(at: Clock.monotonic() + .milliseconds(20))
        loop.run()
        #expect(!deadline.expired)
        #expect(sawWriteFirst)
        #expect(received == Array("ping".utf8))
    }
}

import Glibc
import Synchronization
import Testing

@testable import AIBoxCore
@testable import AIBoxSystem

/// Signals taken by `onSignal` (a handler installed without SA_RESTART, so that a blocking
/// call it interrupts fails with EINTR instead of being restarted by the kernel).
nonisolated(unsafe) private var signalsTaken: Int32 = 0

/// `syscall(…)` and the helpers on it: EINTR retried, errors that name the call and its object.
@Suite(.serialized) struct SyscallTests {
    /// Runs `body` with SIGUSR2 handled (counted) and not restarted; the old action after.
    func withInterruptingSignal<R>(_ body: () throws -> R) rethrows -> R {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in signalsTaken += 1 }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        var old = sigaction()
        sigaction(SIGUSR2, &action, &old)
        defer { sigaction(SIGUSR2, &old, nil) }
        signalsTaken = 0
        return try body()
    }

    /// The state letter of thread `tid` of this process ("S": asleep in the kernel).
    func threadState(_ tid: String) -> Character? {
        guard let text = readTextFile("/proc/self/task/\(tid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
        return text[close...].dropFirst(2).first
    }

    /// Runs `call` on a thread of its own, which it enters asleep (blocked), interrupts it with
    /// SIGUSR2 there, then writes "hello" into `pipe`: `call`'s result.
    func interrupted<T: Sendable>(_ pipe: (read: Int32, write: Int32), _ call: @escaping @Sendable () -> T) throws -> T {
        let tid = Mutex<String?>(nil)
        let result = Mutex<T?>(nil)
        let thread = Thread {
            // Threads start with their creator's mask, and the test runner's threads block signals.
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGUSR2)
            pthread_sigmask(SIG_UNBLOCK, &set, nil)
            tid.withLock { $0 = readSmallFile("/proc/thread-self/stat").map { String(decoding: $0.prefix { $0 != 0x20 }, as: UTF8.self) } }
            let r = call()
            result.withLock { $0 = r }
        }
        defer { thread.join() }
        let asleep = waitUntil { tid.withLock { $0 }.map { threadState($0) == "S" } ?? false }
        #expect(asleep, "the thread blocks in the call")
        pthread_kill(thread.id, SIGUSR2)
        #expect(waitUntil { signalsTaken == 1 }, "the signal was taken while it was blocked")
        // Whatever the call did with the EINTR, it is given something to read now.
        _ = "hello".withCString { Glibc.write(pipe.write, $0, 5) }
        #expect(waitUntil { result.withLock { $0 != nil } })
        return try #require(result.withLock { $0 })
    }

    @Test("a read interrupted by a signal is retried: the caller gets the bytes, not EINTR")
    func readRetriedAfterASignal() throws {
        try withInterruptingSignal {
            // Without the wrapper the same read fails: the signal does interrupt it.
            let raw = try makePipe()
            defer { closeDescriptor(raw.read); closeDescriptor(raw.write) }
            let rawResult = try interrupted(raw) { () -> [Int32] in
                var buffer = [UInt8](repeating: 0, count: 16)
                let n = read(raw.read, &buffer, buffer.count)
                return [Int32(n), errno]
            }
            #expect(rawResult == [-1, EINTR])

            signalsTaken = 0
            let p = try makePipe()
            defer { closeDescriptor(p.read); closeDescriptor(p.write) }
            let text = try interrupted(p) { () -> String in
                var buffer = [UInt8](repeating: 0, count: 16)
                do {
                    let n = try syscall("read", detail: "the pipe") { read(p.read, &buffer, buffer.count) }
                    return String(decoding: buffer[..<n], as: UTF8.self)
                } catch {
                    return "\(error)"
                }
            }
            #expect(text == "hello")
        }
    }

    @Test("a sleep interrupted by a signal is not cut short")
    func sleepNotCutShort() throws {
        try withInterruptingSignal {
            let p = try makePipe()
            defer { closeDescriptor(p.read); closeDescriptor(p.write) }
            let elapsed = try interrupted(p) { () -> Duration in
                let start = Clock.monotonic()
                sleep(for: .milliseconds(300))
                return Clock.monotonic().since(start)
            }
            #expect(elapsed >= .milliseconds(300))
        }
    }

    @Test("errors name the call, what it acted on, and errno in words")
    func errorsNameTheCallAndItsObject() throws {
        try withTemporaryDirectory { dir in
            do throws(SystemError) {
                _ = try syscall("open", detail: dir + "/missing") { open(dir + "/missing", O_RDONLY | O_CLOEXEC) }
                Issue.record("a missing file opened")
            } catch {
                #expect(error.function == "open")
                #expect(error.errno == ENOENT)
                #expect("\(error)" == "open \(dir)/missing: No such file or directory")
            }
            #expect(try fileStatus(dir + "/missing") == nil, "nothing there is not an error")
            #expect(try removeFile(dir + "/missing") == false, "nor is removing what is not there")

            // A symlink loop is not absence: it is said, naming the path.
            #expect(symlink(dir + "/b", dir + "/a") == 0 && symlink(dir + "/a", dir + "/b") == 0)
            #expect(throws: SystemError.self) { try fileStatus(dir + "/a") }
            do {
                _ = try fileStatus(dir + "/a")
            } catch {
                #expect("\(error)" == "stat \(dir)/a: Too many levels of symbolic links")
            }
            #expect(try fileStatus(dir + "/a", followSymlinks: false).map { $0.st_mode & S_IFMT } == S_IFLNK)
            #expect(!fileExists(dir + "/a"))

            try makeDirectories(dir + "/d/e")
            do {
                try removeFile(dir + "/d")
                Issue.record("unlink removed a directory")
            } catch {
                #expect("\(error)" == "unlink \(dir)/d: Is a directory")
            }
            try writeFile(dir + "/f", "x")
            #expect(try removeFile(dir + "/f"))
            #expect(!fileExists(dir + "/f"))
        }
    }

    @Test("a non-blocking call that would block is nil, not an error")
    func wouldBlockIsNil() throws {
        let p = try makePipe()
        defer { closeDescriptor(p.read) }
        #expect(fcntl(p.read, F_SETFL, O_NONBLOCK) == 0)
        var buffer = [UInt8](repeating: 0, count: 8)
        #expect(try nonBlockingSyscall("read") { read(p.read, &buffer, buffer.count) } == nil)
        try writeAll(p.write, Array("ab".utf8))
        #expect(try nonBlockingSyscall("read") { read(p.read, &buffer, buffer.count) } == 2)
        closeDescriptor(p.write)
        #expect(try nonBlockingSyscall("read") { read(p.read, &buffer, buffer.count) } == 0, "end of file")
    }

    @Test("calls that return an error number fail like the others")
    func errorNumberCalls() throws {
        try withTemporaryDirectory { dir in
            let fd = try syscall("open") { open(dir + "/f", O_WRONLY | O_CREAT | O_CLOEXEC, 0o600) }
            defer { closeDescriptor(fd) }
            try syscallReturningError("posix_fallocate", detail: dir + "/f") { posix_fallocate(fd, 0, 4096) }
            #expect(try fileStatus(dir + "/f")?.st_size == 4096)
            #expect(throws: SystemError.self) {
                try syscallReturningError("posix_fallocate", detail: dir + "/f") { posix_fallocate(fd, 0, -1) }
            }
        }
    }
}

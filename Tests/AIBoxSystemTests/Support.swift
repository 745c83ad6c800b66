import Glibc
import Testing

@testable import AIBoxCore
@testable import AIBoxSystem

// Swift Testing has a type of the same name.
typealias ExitStatus = AIBoxCore.ExitStatus

/// Runs `body` with a fresh directory under /tmp, removed afterwards whatever happens.
func withTemporaryDirectory<R>(_ body: (String) throws -> R) throws -> R {
    var template = Array("/tmp/aibox-tests-XXXXXX".utf8CString)
    guard let p = mkdtemp(&template) else { throw SystemError("mkdtemp", errno: errno) }
    let path = String(cString: p)
    defer { removeTree(path) }
    return try body(path)
}

/// rm -rf, without following symlinks.
func removeTree(_ path: String) {
    var st = stat()
    guard lstat(path, &st) == 0 else { return }
    if st.st_mode & S_IFMT == S_IFDIR {
        _ = chmod(path, 0o700)
        for name in listDirectory(path) { removeTree(path + "/" + name) }
        _ = rmdir(path)
    } else {
        _ = unlink(path)
    }
}

func writeFile(_ path: String, _ text: String) throws {
    try writeFileAtomically(path, Array(text.utf8))
}

func readLink(_ path: String) -> String? {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink(path, &buffer, buffer.count - 1)
    guard n >= 0 else { return nil }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func realPath(_ path: String) -> String? {
    guard let p = realpath(path, nil) else { return nil }
    defer { free(p) }
    return String(cString: p)
}

/// Waits up to `timeoutMilliseconds` for `fd` to become readable.
func waitReadable(_ fd: Int32, timeoutMilliseconds: Int32) -> Bool {
    var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    while true {
        let n = poll(&p, 1, timeoutMilliseconds)
        if n < 0 && errno == EINTR { continue }
        return n > 0 && p.revents & Int16(POLLIN) != 0
    }
}

/// Waits for `condition` to hold, checking every millisecond, for at most `timeoutMilliseconds`.
/// Returns whether it held.
func waitUntil(timeoutMilliseconds: Int = 2000, _ condition: () -> Bool) -> Bool {
    for _ in 0..<timeoutMilliseconds {
        if condition() { return true }
        usleep(1000)
    }
    return condition()
}

/// /proc/PID/cmdline and environ are filled in by the kernel just after a vfork parent
/// resumes (the exec finishes setting up the new image): wait for the argv to show.
func waitForExec(_ pid: Int32) -> Bool {
    waitUntil { !(readSmallFile("/proc/\(pid)/cmdline") ?? []).isEmpty }
}

/// A thread of its own (pthread), for a call that may block: started at once, `join` waits.
final class Thread: @unchecked Sendable {
    private(set) var id = pthread_t()
    private let body: () -> Void

    init(_ body: @escaping @Sendable () -> Void) {
        self.body = body
        let context = Unmanaged.passRetained(self).toOpaque()
        let r = pthread_create(
            &id, nil,
            { context in
                let thread = Unmanaged<Thread>.fromOpaque(context!).takeRetainedValue()
                thread.body()
                return nil
            }, context)
        precondition(r == 0, "pthread_create: \(r)")
    }

    func join() { pthread_join(id, nil) }
}

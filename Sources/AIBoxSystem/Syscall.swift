import AIBoxCore
import CAIBoxOS
import Glibc

/// A failed system call: which function, on what, and errno.
public struct SystemError: Error, CustomStringConvertible, Sendable {
    public var function: String
    public var errno: Int32
    public var detail: String?

    public init(_ function: String, errno: Int32, detail: String? = nil) {
        self.function = function
        self.errno = errno
        self.detail = detail
    }

    public var description: String {
        var s = "\(function)"
        if let detail { s += " \(detail)" }
        return s + ": " + reason
    }

    /// errno in words ("No such file or directory").
    public var reason: String { String(cString: strerror(errno)) }
}

/// Every system call goes through here: EINTR is retried, the error names the function,
/// and EBADF/EFAULT (always our bug) stop the program. `detail` is only made for an error.
@discardableResult
@inline(__always)
public func syscall<T: BinaryInteger>(
    _ function: String, detail: @autoclosure () -> String? = nil, _ body: () -> T
) throws(SystemError) -> T {
    while true {
        let r = body()
        if r >= 0 { return r }
        let e = Glibc.errno
        if e == EINTR { continue }
        precondition(e != EBADF && e != EFAULT, "\(function) failed with \(e == EBADF ? "EBADF" : "EFAULT"): a bug")
        throw SystemError(function, errno: e, detail: detail())
    }
}

/// `syscall` on a non-blocking descriptor: nil when the call would block (EAGAIN).
@inline(__always)
public func nonBlockingSyscall<T: BinaryInteger>(
    _ function: String, detail: @autoclosure () -> String? = nil, _ body: () -> T
) throws(SystemError) -> T? {
    do {
        return try syscall(function, detail: detail(), body)
    } catch {
        if error.errno == EAGAIN || error.errno == EWOULDBLOCK { return nil }
        throw error
    }
}

/// `syscall` for the calls that return an error number instead of setting errno
/// (posix_fallocate, posix_fadvise): the same retry, the same errors.
public func syscallReturningError(
    _ function: String, detail: @autoclosure () -> String? = nil, _ body: () -> Int32
) throws(SystemError) {
    try syscall(function, detail: detail()) { () -> Int32 in
        let r = body()
        if r == 0 { return 0 }
        Glibc.errno = r
        return -1
    }
}

/// The clocks. Timeouts use `monotonic` only; `wallMilliseconds` only stamps events.
public enum Clock {
    public static func monotonic() -> Instant {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Instant(nanoseconds: UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec))
    }

    public static func wallMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// Nanoseconds since boot (CLOCK_BOOTTIME), comparable with /proc/PID/stat start times.
    public static func bootNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// How many descriptors this process may open (RLIMIT_NOFILE's soft limit; 1024 when unknown).
public func descriptorLimit() -> Int {
    var limit = rlimit()
    guard (try? syscall("getrlimit") { getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) }) != nil else { return 1024 }
    return Int(clamping: limit.rlim_cur)
}

/// Closes a descriptor: the one raw `close`, outside `syscall` because it must not be retried
/// (Linux has released the number even when close says EINTR, and it may be another's by
/// the retry). Its other errors are not reported: EIO of a last write back is for `fsync` to
/// say (whoever needs the bytes on the disk calls it first). EBADF stops the program, as in
/// `syscall`: a descriptor closed twice may have closed another's in between, a bug to stop
/// on, not to log. A negative descriptor (none) is left alone.
public func closeDescriptor(_ fd: Int32) {
    guard fd >= 0 else { return }
    if Glibc.close(fd) < 0 { precondition(Glibc.errno != EBADF, "close(\(fd)) failed with EBADF: closed twice, a bug") }
}

/// Sends `signal` to the process `pid`, or to the process group `-pgid`: true when it went;
/// false when nothing is there any more (ESRCH: it exited meanwhile) or it is not ours to
/// signal (EPERM), which every caller takes as "nothing to stop". 0 and -1 (our own group,
/// every process) are never meant: a bug.
@discardableResult
@inline(__always)
public func sendSignal(_ signal: Int32, to pid: pid_t) -> Bool {
    precondition(pid != 0 && pid != -1, "kill(\(pid)): not a process or a group of ours")
    do {
        try syscall("kill") { Glibc.kill(pid, signal) }
        return true
    } catch {
        precondition(error.errno != EINVAL, "kill(\(pid), \(signal)): no such signal, a bug")
        return false
    }
}

/// What a signal does: `SIG_DFL`, `SIG_IGN` or a handler (sigaction; no flags, so no
/// SA_RESTART: a blocking call it interrupts returns EINTR; nothing more blocked while it runs).
public func setSignalAction(_ sig: Int32, _ handler: __sighandler_t?) {
    var action = sigaction()
    action.__sigaction_handler.sa_handler = handler
    sigemptyset(&action.sa_mask)
    action.sa_flags = 0
    // Fails only with EINVAL (no such signal, or SIGKILL/SIGSTOP): a bug.
    do { try syscall("sigaction") { sigaction(sig, &action, nil) } } catch { preconditionFailure("\(error) (signal \(sig))") }
}

/// Whether `fd` is a terminal (isatty's own test, TCGETS, through `syscall`: ENOTTY is no).
public func isTerminal(_ fd: Int32) -> Bool {
    var t = termios()
    return (try? syscall("tcgetattr") { tcgetattr(fd, &t) }) != nil
}

/// O_NONBLOCK on an open descriptor (fcntl F_GETFL/F_SETFL).
public func setNonBlocking(_ fd: Int32, detail: @autoclosure () -> String? = nil) throws(SystemError) {
    try syscall("fcntl(O_NONBLOCK)", detail: detail()) { aibox_set_nonblocking(fd) }
}

/// Sleeps for `duration` (nanosleep: the monotonic clock); a signal handler that interrupts
/// it does not cut it short: the retry sleeps what was left.
public func sleep(for duration: Duration) {
    let ns = max(duration.nanoseconds, 0)
    var request = timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000))
    var left = timespec()
    // nanosleep fails only with EINTR (retried) and EINVAL/EFAULT, impossible here.
    _ = try? syscall("nanosleep") { () -> Int32 in
        let r = nanosleep(&request, &left)
        request = left
        return r
    }
}

/// Writes all of `bytes`, retrying short writes and EINTR.
public func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(SystemError) {
    var offset = 0
    while offset < bytes.count {
        let n = try syscall("write") { Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset) }
        offset += n
    }
}

public func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws(SystemError) {
    var offset = 0
    while offset < bytes.count {
        let n = try syscall("write") { bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) } }
        offset += n
    }
}

/// Reads all a non-blocking pipe holds now, chunk by chunk (`chunkSize` at most), into
/// `body`. True when the pipe has ended: every writer gone, or an error reading it (none is
/// expected on a pipe), which ends it the same way; false when it is only empty for now.
public func drainPipe(
    _ fd: Int32, chunkSize: Int, detail: @autoclosure () -> String?, _ body: (ArraySlice<UInt8>) -> Void
) -> Bool {
    var buffer = [UInt8](repeating: 0, count: chunkSize)
    while true {
        let got: Int?
        do {
            got = try nonBlockingSyscall("read", detail: detail()) {
                buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            }
        } catch {
            return true
        }
        guard let n = got else { return false }
        if n == 0 { return true }
        body(buffer[0..<n])
    }
}

/// Writes all of `bytes` to a pipe whose reader may be gone: that is the error EPIPE, never a
/// SIGPIPE that kills the process, whatever this process does with SIGPIPE (the CLI keeps
/// the default, so that `aibox events | head` ends quietly). SIGPIPE is blocked in this
/// thread while writing, and one this write raised is taken before the mask is restored.
public func writeAllToPipe(_ fd: Int32, _ bytes: [UInt8]) throws(SystemError) {
    var pipeSignal = sigset_t()
    sigemptyset(&pipeSignal)
    sigaddset(&pipeSignal, SIGPIPE)
    var pending = sigset_t()
    // sigpending and pthread_sigmask fail only for bad pointers: a bug, which the wrapper stops on.
    _ = try? syscall("sigpending") { sigpending(&pending) }
    let pendingBefore = sigismember(&pending, SIGPIPE) == 1
    var previous = sigset_t()
    _ = try? syscallReturningError("pthread_sigmask") { pthread_sigmask(SIG_BLOCK, &pipeSignal, &previous) }
    defer {
        if !pendingBefore {
            var now = timespec()
            // EAGAIN (nil): the write raised none.
            _ = try? nonBlockingSyscall("sigtimedwait") { sigtimedwait(&pipeSignal, nil, &now) }
        }
        _ = try? syscallReturningError("pthread_sigmask") { pthread_sigmask(SIG_SETMASK, &previous, nil) }
    }
    try writeAll(fd, bytes)
}

/// Why a file was not read: what it is, when it is not a regular file of a sensible size.
public enum FileReadError: Error, CustomStringConvertible, Sendable {
    case cannotOpen(path: String, errno: Int32)
    /// Not a regular file: "a FIFO (named pipe)", "a directory", "a character device" …
    case notRegular(path: String, kind: String)
    /// `size` is the file's size, nil when it grew past the limit while read.
    case tooLarge(path: String, size: Int?, limit: Int)
    case readFailed(path: String, errno: Int32)

    public var path: String {
        switch self {
        case .cannotOpen(let p, _), .notRegular(let p, _), .tooLarge(let p, _, _), .readFailed(let p, _): return p
        }
    }

    /// The reason alone, without the path ("is a FIFO (named pipe), not a regular file").
    public var reason: String {
        switch self {
        case .cannotOpen(_, let e): return "cannot be opened: " + String(cString: strerror(e))
        case .notRegular(_, let kind): return "is \(kind), not a regular file"
        case .tooLarge(_, let size?, let limit): return "is \(size) bytes, more than the \(limit) allowed"
        case .tooLarge(_, nil, let limit): return "grew past \(limit) bytes while read"
        case .readFailed(_, let e): return "cannot be read: " + String(cString: strerror(e))
        }
    }

    public var description: String { "\(path): \(reason)" }

    /// What a file of mode `mode` is, in words.
    public static func kind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFREG: return "a regular file"
        case S_IFDIR: return "a directory"
        case S_IFIFO: return "a FIFO (named pipe)"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        case S_IFLNK: return "a symbolic link"
        default: return "not a file"
        }
    }
}

/// Reads a whole small file — configuration, a secret, a seed, one under /proc — and nothing
/// else: only a regular file (checked before opening, so a device node is never opened, and
/// again on the descriptor), opened O_NONBLOCK (a FIFO swapped in meanwhile cannot block the
/// caller in open or read), at most `limit` bytes (a file that is larger, or grows past it
/// while read, is refused rather than cut). `followSymlinks: false` refuses a symlink too.
public func readRegularFile(_ path: String, limit: Int, followSymlinks: Bool = true) throws(FileReadError) -> [UInt8] {
    let found: stat?
    do {
        found = try fileStatus(path, followSymlinks: followSymlinks)
    } catch {
        throw .cannotOpen(path: path, errno: error.errno)
    }
    guard var st = found else { throw .cannotOpen(path: path, errno: ENOENT) }
    guard st.st_mode & S_IFMT == S_IFREG else { throw .notRegular(path: path, kind: FileReadError.kind(st.st_mode)) }
    // /proc files say 0: their size is only known by reading them.
    guard Int(st.st_size) <= limit else { throw .tooLarge(path: path, size: Int(st.st_size), limit: limit) }
    let fd: Int32
    do {
        fd = try syscall("open", detail: path) {
            open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY | (followSymlinks ? 0 : O_NOFOLLOW))
        }
    } catch {
        if error.errno == ELOOP && !followSymlinks { throw .notRegular(path: path, kind: "a symbolic link") }
        throw .cannotOpen(path: path, errno: error.errno)
    }
    defer { closeDescriptor(fd) }
    do {
        try syscall("fstat", detail: path) { fstat(fd, &st) }
    } catch {
        throw .readFailed(path: path, errno: error.errno)
    }
    guard st.st_mode & S_IFMT == S_IFREG else { throw .notRegular(path: path, kind: FileReadError.kind(st.st_mode)) }
    guard Int(st.st_size) <= limit else { throw .tooLarge(path: path, size: Int(st.st_size), limit: limit) }
    var out = [UInt8](repeating: 0, count: Swift.min(limit + 1, Swift.max(Int(st.st_size) + 1, 4096)))
    var total = 0
    while true {
        if total == out.count {
            guard out.count <= limit else { throw .tooLarge(path: path, size: nil, limit: limit) }
            out += [UInt8](repeating: 0, count: Swift.min(out.count, limit + 1 - out.count))
        }
        let n: Int
        do {
            n = try syscall("read", detail: path) {
                out.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + total, $0.count - total) }
            }
        } catch {
            throw .readFailed(path: path, errno: error.errno)
        }
        if n == 0 { break }
        total += n
    }
    guard total <= limit else { throw .tooLarge(path: path, size: nil, limit: limit) }
    out.removeSubrange(total...)
    return out
}

/// `readRegularFile`, nil when the file cannot be read (whatever the reason).
public func readSmallFile(_ path: String, limit: Int = 1 << 20, followSymlinks: Bool = true) -> [UInt8]? {
    try? readRegularFile(path, limit: limit, followSymlinks: followSymlinks)
}

public func readTextFile(_ path: String) -> String? {
    readSmallFile(path, limit: 16 << 20).map { String(decoding: $0, as: UTF8.self) }
}

public func parentDirectory(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}

/// mkdir -p with a mode for the directories it creates.
public func makeDirectories(_ path: String, mode: mode_t = 0o755) throws(SystemError) {
    var current = path.hasPrefix("/") ? "" : "."
    for part in path.split(separator: "/") {
        current += "/" + part
        do {
            try syscall("mkdir", detail: current) { mkdir(current, mode) }
        } catch {
            if error.errno != EEXIST { throw error }
        }
    }
}

/// What is at `path` (lstat when `followSymlinks` is false, so a link is itself): nil when
/// there is nothing (ENOENT). Any other failure (EACCES, ELOOP, ENOTDIR, EIO) is thrown, so
/// that it is never taken for absence unless the caller says so (`try?`).
public func fileStatus(_ path: String, followSymlinks: Bool = true) throws(SystemError) -> stat? {
    var st = stat()
    do {
        if followSymlinks {
            try syscall("stat", detail: path) { stat(path, &st) }
        } else {
            try syscall("lstat", detail: path) { lstat(path, &st) }
        }
    } catch {
        if error.errno == ENOENT { return nil }
        throw error
    }
    return st
}

/// Whether there is something at `path` (symlinks followed); false also when it cannot be looked at.
public func fileExists(_ path: String) -> Bool { (try? fileStatus(path)) != nil }

/// Removes a file (unlink); false when there was none (ENOENT: what should be gone is gone).
@discardableResult
public func removeFile(_ path: String) throws(SystemError) -> Bool {
    do {
        try syscall("unlink", detail: path) { unlink(path) }
        return true
    } catch {
        if error.errno == ENOENT { return false }
        throw error
    }
}

/// Removes a file whose removal is only tidying — a temporary file, an abandoned copy, a
/// stale socket — where nothing depends on it being gone and a failure could change nothing
/// the caller does: the one place where such a failure is dropped, on purpose.
public func removeFileBestEffort(_ path: String) { _ = try? removeFile(path) }

/// Names in a directory (no "." or ".."); empty when it cannot be read.
public func listDirectory(_ path: String) -> [String] { (try? directoryEntries(path)) ?? [] }

/// Names in a directory (no "." or ".."). One that cannot be opened (ENOENT included: the
/// caller says whether absence is fine) or read to its end is an error, not fewer names.
public func directoryEntries(_ path: String) throws(SystemError) -> [String] {
    // O_NONBLOCK as opendir does; O_DIRECTORY refuses anything else before it is opened.
    let fd = try syscall("open", detail: path) { open(path, O_RDONLY | O_DIRECTORY | O_NONBLOCK | O_CLOEXEC) }
    guard let dir = fdopendir(fd) else {
        let e = Glibc.errno
        closeDescriptor(fd)
        throw SystemError("fdopendir", errno: e, detail: path)
    }
    defer { closedir(dir) }
    var names: [String] = []
    while true {
        // readdir says the end and an error alike, by NULL: errno tells them apart.
        Glibc.errno = 0
        guard let entry = readdir(dir) else {
            if Glibc.errno != 0 { throw SystemError("readdir", errno: Glibc.errno, detail: path) }
            return names
        }
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if name != "." && name != ".." { names.append(name) }
    }
}

/// pipe2(O_CLOEXEC): (read end, write end).
public func makePipe() throws(SystemError) -> (read: Int32, write: Int32) {
    var fds: [Int32] = [0, 0]
    try syscall("pipe2") { aibox_pipe_cloexec(&fds) }
    return (fds[0], fds[1])
}

/// An exclusive lock held for the life of the process (flock): one daemon per root.
public final class ProcessLock {
    private let fd: Int32

    /// nil when another process holds it.
    public init?(path: String) throws(SystemError) {
        let fd = try syscall("open", detail: path) { open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644) }
        do {
            try syscall("flock", detail: path) { flock(fd, LOCK_EX | LOCK_NB) }
        } catch {
            closeDescriptor(fd)
            if error.errno == EWOULDBLOCK { return nil }
            throw error
        }
        self.fd = fd
    }

    deinit { closeDescriptor(fd) }

    /// Writes this process's PID into the lock file, for whoever finds the lock taken and
    /// must ask its holder to let go (aibox setup on another console).
    public func recordHolder() {
        let text = Array("\(getpid())\n".utf8)
        _ = try? syscall("ftruncate") { ftruncate(fd, 0) }
        _ = try? syscall("pwrite") { Int32(pwrite(fd, text, text.count, 0)) }
    }

    /// The PID a holder recorded in the lock file at `path`; nil when none (or not a PID).
    public static func recordedHolder(path: String) -> pid_t? {
        guard let bytes = readSmallFile(path, limit: 32) else { return nil }
        let digits = bytes.prefix { $0 != UInt8(ascii: "\n") }
        guard let pid = pid_t(String(decoding: digits, as: UTF8.self)), pid > 1 else { return nil }
        return pid
    }
}

/// Descriptors 0, 1 and 2 as every program expects them: one a parent left closed is opened
/// on /dev/null. Left closed, the next file opened would take its number and get what is
/// meant for standard output (a database, a log), and a write to it would be EBADF, which
/// `syscall` takes for a bug of ours. open gives the lowest free number: once it gives one
/// above 2, the three are open.
public func openStandardDescriptors() {
    while let fd = try? syscall("open", detail: "/dev/null", { open("/dev/null", O_RDWR) }) {
        if fd > 2 {
            closeDescriptor(fd)
            return
        }
    }
}

/// Writes to standard output / standard error, unbuffered (nothing else of ours buffers them).
public func writeStandardOutput(_ text: String) { try? writeAll(1, Array(text.utf8)) }
public func writeStandardError(_ text: String) { try? writeAll(2, Array(text.utf8)) }

/// This process's environment, from `environ`.
public func currentEnvironment() -> [String: String] {
    var out: [String: String] = [:]
    var p = environ
    while let entry = p.pointee {
        let s = String(cString: entry)
        if let eq = s.firstIndex(of: "=") { out[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
        p += 1
    }
    return out
}

/// This program's own path (/proc/self/exe), to run it again as a child.
public func currentExecutable() -> String? {
    var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    guard let n = try? syscall("readlink", detail: "/proc/self/exe", { readlink("/proc/self/exe", &buf, buf.count - 1) }) else {
        return nil
    }
    return n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil
}

public func currentDirectory() -> String {
    var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    guard getcwd(&buf, buf.count) != nil else { return "." }
    return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Local time as people read it: "2026-11-27 12:00:00" (localtime_r + strftime, honours $TZ).
public func formatLocalTime(milliseconds ms: Int64) -> String {
    var t = time_t(ms / 1000)
    var parts = tm()
    localtime_r(&t, &parts)
    var buf = [CChar](repeating: 0, count: 64)
    let n = strftime(&buf, buf.count, "%Y-%m-%d %H:%M:%S", &parts)
    return String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Parses "yyyy-MM-ddTHH:mm:ss" in local time into milliseconds since 1970 (strptime + mktime).
public func parseLocalTime(_ text: String) -> Int64? {
    var parts = tm()
    guard let end = aibox_strptime(text, "%Y-%m-%dT%H:%M:%S", &parts), end.pointee == 0 else { return nil }
    parts.tm_isdst = -1
    let t = mktime(&parts)
    return t == -1 ? nil : Int64(t) * 1000
}

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
        return s + ": " + String(cString: strerror(errno))
    }
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

/// Closes a descriptor, ignoring EINTR as Linux requires (the descriptor is gone either way).
public func closeDescriptor(_ fd: Int32) {
    if fd >= 0 { _ = Glibc.close(fd) }
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

/// Reads a whole (small) file, such as one under /proc. nil when it cannot be read.
public func readSmallFile(_ path: String, limit: Int = 1 << 20) -> [UInt8]? {
    let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 { return nil }
    defer { closeDescriptor(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while out.count < limit {
        let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return nil
        }
        if n == 0 { break }
        out += buf[0..<n]
    }
    return out
}

public func readTextFile(_ path: String) -> String? {
    readSmallFile(path, limit: 16 << 20).map { String(decoding: $0, as: UTF8.self) }
}

/// Write, fsync, rename, fsync the directory: a persisted file is either the old one or the
/// new one, whole, after a power cut at any instant.
public func writeFileAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws(SystemError) {
    let tmp = path + ".new"
    let fd = try syscall("open", detail: tmp) { Glibc.open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode) }
    do {
        try writeAll(fd, bytes)
        try syscall("fsync", detail: tmp) { fsync(fd) }
    } catch {
        closeDescriptor(fd)
        _ = unlink(tmp)
        throw error
    }
    closeDescriptor(fd)
    try syscall("rename", detail: path) { rename(tmp, path) }
    let dir = parentDirectory(path)
    let dfd = Glibc.open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if dfd >= 0 {
        _ = fsync(dfd)
        closeDescriptor(dfd)
    }
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
        if mkdir(current, mode) < 0 && errno != EEXIST {
            throw SystemError("mkdir", errno: errno, detail: current)
        }
    }
}

public func fileExists(_ path: String) -> Bool { access(path, F_OK) == 0 }

/// Names in a directory (no "." or ".."); empty when it cannot be read.
public func listDirectory(_ path: String) -> [String] {
    guard let dir = opendir(path) else { return [] }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
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
        if flock(fd, LOCK_EX | LOCK_NB) < 0 {
            let e = errno
            closeDescriptor(fd)
            if e == EWOULDBLOCK { return nil }
            throw SystemError("flock", errno: e, detail: path)
        }
        self.fd = fd
    }

    deinit { closeDescriptor(fd) }
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

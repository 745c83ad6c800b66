import AIBoxCore
import CAIBoxOS
import Glibc

/// Captured worker output where there is no journal: `logs/NAME.log`, rotated by size to
/// `NAME.log.1` … `NAME.log.<keep>`, so output never fills the disk. Each line starts with
/// the time it came in (`LogStamp`), as journald stamps what it receives.
public final class RotatingLog {
    public let path: String
    public let maxBytes: Int
    public let keep: Int
    /// The time to stamp lines with (injected by tests).
    public let clock: () -> LogStamp
    private var fd: Int32 = -1
    private var size = 0
    /// Bytes of an unfinished line, held so a rotation never splits one, and the time its
    /// first bytes came.
    private var partial: [UInt8] = []
    private var partialStamp: [UInt8] = []

    public init(
        directory: String, name: String, maxBytes: Int = 1 << 20, keep: Int = 2, clock: @escaping () -> LogStamp = RotatingLog.now
    ) {
        self.path = directory + "/" + name + ".log"
        self.maxBytes = maxBytes
        self.keep = keep
        self.clock = clock
    }

    /// The wall clock, and whether the kernel says it is synchronized (unknown counts as yes).
    public static func now() -> LogStamp {
        let unsynchronized = (try? syscall("adjtimex") { aibox_clock_unsynchronized() }) == 1
        return LogStamp(milliseconds: Clock.wallMilliseconds(), synchronized: !unsynchronized)
    }

    deinit { closeDescriptor(fd) }

    private func openIfNeeded() -> Bool {
        if fd >= 0 { return true }
        // O_NONBLOCK: a FIFO put in the log's place fails the open (ENXIO) instead of blocking the loop in it.
        guard let opened = try? syscall("open", detail: path, { open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK, 0o640) })
        else { return false }
        fd = opened
        var st = stat()
        size = (try? syscall("fstat", detail: path) { fstat(fd, &st) }) != nil ? Int(st.st_size) : 0
        return true
    }

    private func rotate() {
        closeDescriptor(fd)
        fd = -1
        // Like the output itself, best effort: a rotation that fails (the older files missing, a
        // full or read-only disk) leaves the file to grow or to take no more, never the worker blocked.
        for i in stride(from: keep, to: 1, by: -1) {
            _ = try? syscall("rename", detail: "\(path).\(i - 1)") { rename("\(path).\(i - 1)", "\(path).\(i)") }
        }
        if keep >= 1 { _ = try? syscall("rename", detail: path) { rename(path, "\(path).1") } } else { removeFileBestEffort(path) }
        size = 0
    }

    /// Appends whole lines, each stamped; a write error (disk full) drops output rather than
    /// blocking the worker.
    public func append(_ bytes: ArraySlice<UInt8>) {
        guard !bytes.isEmpty else { return }
        let stamp = Array((clock().text + " ").utf8)
        var out: [UInt8] = []
        var rest = bytes
        while let newline = rest.firstIndex(of: UInt8(ascii: "\n")) {
            out += partial.isEmpty ? stamp : partialStamp
            out += partial
            out += rest[...newline]
            partial = []
            rest = rest[(newline + 1)...]
        }
        if !rest.isEmpty {
            if partial.isEmpty { partialStamp = stamp }
            partial += rest
        }
        if !out.isEmpty { write(out) }
        if partial.count >= 64 * 1024 { flushPartial() }
    }

    public func flushPartial() {
        guard !partial.isEmpty else { return }
        let bytes = partialStamp + partial + [UInt8(ascii: "\n")]
        partial = []
        write(bytes)
    }

    private func write(_ bytes: [UInt8]) {
        // Open first: a file left by an earlier run has a size that counts.
        guard openIfNeeded() else { return }
        if size > 0 && size + bytes.count > maxBytes {
            rotate()
            guard openIfNeeded() else { return }
        }
        if (try? writeAll(fd, bytes)) != nil { size += bytes.count }
    }

    /// The last `count` lines (as stored: stamped) of the current file and, if needed, the
    /// rotated ones before it.
    public static func tail(directory: String, name: String, lines count: Int, keep: Int = 2) -> [String] {
        let base = directory + "/" + name + ".log"
        var collected: [String] = []
        for file in [base] + (1...max(keep, 1)).map({ "\(base).\($0)" }) {
            guard collected.count < count, let text = readTextFile(file) else { continue }
            var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            if lines.last == "" { lines.removeLast() }
            collected = lines.suffix(count - collected.count) + collected
        }
        return Array(collected.suffix(count))
    }
}

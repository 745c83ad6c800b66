import Glibc

/// Captured worker output where there is no journal: `logs/NAME.log`, rotated by size to
/// `NAME.log.1` … `NAME.log.<keep>`, so output never fills the disk.
public final class RotatingLog {
    public let path: String
    public let maxBytes: Int
    public let keep: Int
    private var fd: Int32 = -1
    private var size = 0
    /// Bytes of an unfinished line, held so a rotation never splits one.
    private var partial: [UInt8] = []

    public init(directory: String, name: String, maxBytes: Int = 1 << 20, keep: Int = 2) {
        self.path = directory + "/" + name + ".log"
        self.maxBytes = maxBytes
        self.keep = keep
    }

    deinit { closeDescriptor(fd) }

    private func openIfNeeded() -> Bool {
        if fd >= 0 { return true }
        // O_NONBLOCK: a FIFO put in the log's place fails the open (ENXIO) instead of blocking the loop in it.
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK, 0o640)
        if fd < 0 { return false }
        var st = stat()
        size = fstat(fd, &st) == 0 ? Int(st.st_size) : 0
        return true
    }

    private func rotate() {
        closeDescriptor(fd)
        fd = -1
        for i in stride(from: keep, to: 1, by: -1) { _ = rename("\(path).\(i - 1)", "\(path).\(i)") }
        if keep >= 1 { _ = rename(path, "\(path).1") } else { _ = unlink(path) }
        size = 0
    }

    /// Appends whole lines; a write error (disk full) drops output rather than blocking the worker.
    public func append(_ bytes: ArraySlice<UInt8>) {
        partial += bytes
        guard let lastNewline = partial.lastIndex(of: UInt8(ascii: "\n")) else {
            if partial.count >= 64 * 1024 { flushPartial() }
            return
        }
        let lines = Array(partial[...lastNewline])
        partial.removeSubrange(...lastNewline)
        write(lines)
    }

    public func flushPartial() {
        guard !partial.isEmpty else { return }
        let bytes = partial + [UInt8(ascii: "\n")]
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

    /// The last `count` lines of the current file and, if needed, the rotated ones before it.
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

import AIBoxCore
import CSystemd
import Glibc

/// A worker's last lines of output, read for the `logs` request on the daemon's loop: from
/// its log files (`RotatingLog`) or from the journal (SYSLOG_IDENTIFIER = its name). Bounded:
/// at most `windowBytes` from the end of each file, at most `count` entries of the journal
/// of at most 4 KiB each, and the journal read stops at a deadline.
public enum WorkerOutput {
    /// How much of the end of each log file is read.
    public static let windowBytes = 256 * 1024

    /// The last `count` lines of `logs/NAME.log` and its rotations (newest last); nil when
    /// there is no such file.
    public static func fromFiles(directory: String, name: String, count: Int, keep: Int = 2) -> [LogLines.Line]? {
        let base = directory + "/" + name + ".log"
        guard fileExists(base) else { return nil }
        var collected: [LogLines.Line] = []
        for file in [base] + (1...max(keep, 1)).map({ "\(base).\($0)" }) where collected.count < count {
            guard let bytes = tail(of: file, maxBytes: windowBytes) else { continue }
            var lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            if lines.last?.isEmpty == true { lines.removeLast() }
            let wanted = lines.suffix(count - collected.count).map { raw -> LogLines.Line in
                let text = Substring(String(decoding: raw, as: UTF8.self))
                guard let (stamp, rest) = LogStamp.split(text) else { return line(nil, text) }
                return line(stamp.milliseconds, rest)
            }
            collected = wanted + collected
        }
        return collected
    }

    /// Whole: secrets are taken out before a line is cut (`LogLines.clip`), or a cut one would show its start.
    static func line(_ at: Int64?, _ text: Substring) -> LogLines.Line { LogLines.Line(at: at, text: String(text)) }

    /// The last `maxBytes` of a regular file, from the start of a line; nil when it cannot be
    /// read (absent, not a regular file: a FIFO put there is not waited on).
    public static func tail(of path: String, maxBytes: Int) -> [UInt8]? {
        guard let fd = try? syscall("open", detail: path, { open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW) }) else { return nil }
        defer { closeDescriptor(fd) }
        var st = stat()
        guard (try? syscall("fstat", detail: path) { fstat(fd, &st) }) != nil, st.st_mode & S_IFMT == S_IFREG else { return nil }
        let size = Int(st.st_size)
        let start = max(0, size - maxBytes)
        var buf = [UInt8](repeating: 0, count: size - start)
        var got = 0
        while got < buf.count {
            let offset = got
            guard let n = try? syscall("pread", detail: path, { buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + offset, $0.count - offset, off_t(start + offset)) } }),
                n > 0
            else { break }
            got += n
        }
        var bytes = Array(buf[0..<got])
        // Begun in the middle of a line: that part of it is dropped.
        if start > 0, let nl = bytes.firstIndex(of: UInt8(ascii: "\n")) { bytes.removeSubrange(...nl) }
        return bytes
    }

    /// The last `count` entries the journal holds for `identifier` (newest last), read until
    /// `deadline`; nil when the journal cannot be opened.
    public static func fromJournal(identifier: String, count: Int, deadline: Instant) -> [LogLines.Line]? {
        var journal: OpaquePointer?
        guard sd_journal_open(&journal, Int32(SD_JOURNAL_LOCAL_ONLY)) >= 0, let j = journal else { return nil }
        defer { sd_journal_close(j) }
        // Longer messages come cut at this size: an answer is a few phone screens, not a dump.
        _ = sd_journal_set_data_threshold(j, 4096)
        let match = Array("SYSLOG_IDENTIFIER=\(identifier)".utf8)
        guard match.withUnsafeBytes({ sd_journal_add_match(j, $0.baseAddress, $0.count) }) >= 0, sd_journal_seek_tail(j) >= 0 else { return nil }
        var lines: [LogLines.Line] = []
        while lines.count < count, Clock.monotonic() < deadline, sd_journal_previous(j) > 0 {
            var data: UnsafeRawPointer?
            var length = 0
            guard sd_journal_get_data(j, "MESSAGE", &data, &length) >= 0, let data else { continue }
            let field = UnsafeRawBufferPointer(start: data, count: length)
            let text = String(decoding: field.dropFirst("MESSAGE=".utf8.count), as: UTF8.self)
            var usec: UInt64 = 0
            let at = sd_journal_get_realtime_usec(j, &usec) >= 0 ? Int64(usec / 1000) : nil
            lines.append(line(at, Substring(text)))
        }
        return lines.reversed()
    }
}

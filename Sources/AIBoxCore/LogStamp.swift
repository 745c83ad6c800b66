/// The time at the start of each line of captured worker output (`logs/NAME.log`), as the
/// daemon's wall clock read it when the line came in: UTC with milliseconds, like journald
/// keeps it, so the file never depends on the box's time zone:
///
///     2026-11-27T10:00:00.123Z heartbeat 42
///     1970-01-01T00:00:12.345Z? starting
///
/// A `?` right after the time: the kernel said the clock was not synchronized yet (no NTP
/// sync since boot). On a box without a real-time clock such times start near 1970 (or at
/// the OS's build date) and jump when the network comes; they still order the lines and
/// measure the time between them.
public struct LogStamp: Equatable, Sendable {
    public var milliseconds: Int64
    public var synchronized: Bool

    public init(milliseconds: Int64, synchronized: Bool) {
        self.milliseconds = milliseconds
        self.synchronized = synchronized
    }

    /// `2026-11-27T10:00:00.123Z`, then `?` when not synchronized.
    public var text: String {
        let (days, ms) = floorDivision(milliseconds, 86_400_000)
        let (y, m, d) = LogStamp.civil(days: days)
        let secs = ms / 1000
        return pad(y, 4) + "-" + pad(m, 2) + "-" + pad(d, 2) + "T" + pad(secs / 3600, 2) + ":" + pad(secs / 60 % 60, 2) + ":"
            + pad(secs % 60, 2) + "." + pad(ms % 1000, 3) + "Z" + (synchronized ? "" : "?")
    }

    /// Splits a line of a log file into its stamp and the worker's text; nil for a line
    /// without one (written before stamps, or a file from elsewhere).
    public static func split(_ line: Substring) -> (stamp: LogStamp, text: Substring)? {
        let b = Array(line.utf8.prefix(26))
        guard b.count >= 25 else { return nil }
        func number(_ range: Range<Int>) -> Int64? {
            var n: Int64 = 0
            for i in range {
                guard b[i] >= 0x30 && b[i] <= 0x39 else { return nil }
                n = n * 10 + Int64(b[i] - 0x30)
            }
            return n
        }
        let separators: [(Int, UInt8)] = [(4, 0x2D), (7, 0x2D), (10, 0x54), (13, 0x3A), (16, 0x3A), (19, 0x2E), (23, 0x5A)]
        guard separators.allSatisfy({ b[$0.0] == $0.1 }), let y = number(0..<4), let mo = number(5..<7), let d = number(8..<10),
            let h = number(11..<13), let mi = number(14..<16), let s = number(17..<19), let ms = number(20..<23),
            (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, s < 61
        else { return nil }
        let synchronized = b[24] != 0x3F  // "?"
        let length = synchronized ? 24 : 25
        guard b.count > length, b[length] == 0x20 else { return nil }
        let stamp = LogStamp(
            milliseconds: (civilDays(year: y, month: mo, day: d) * 86_400 + h * 3600 + mi * 60 + s) * 1000 + ms,
            synchronized: synchronized)
        return (stamp, line.dropFirst(length + 1))
    }

    /// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
    static func civil(days: Int64) -> (Int64, Int64, Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    static func civilDays(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        return era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
    }
}

private func floorDivision(_ a: Int64, _ b: Int64) -> (Int64, Int64) {
    let q = a / b, r = a % b
    return r < 0 ? (q - 1, r + b) : (q, r)
}

private func pad(_ n: Int64, _ width: Int) -> String {
    let s = String(n)
    return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
}

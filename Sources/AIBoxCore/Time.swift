/// A point on the monotonic clock (CLOCK_MONOTONIC), in nanoseconds since an arbitrary
/// origin. Every timeout and backoff in AIBox is computed on this clock, so a wall-clock
/// jump (a box without RTC booting in 1970, then NTP) changes nothing.
public struct Instant: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var nanoseconds: UInt64

    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    public static func < (a: Instant, b: Instant) -> Bool { a.nanoseconds < b.nanoseconds }

    public static func + (a: Instant, d: Duration) -> Instant {
        let ns = d.nanoseconds
        if ns <= 0 { return a }
        let (sum, overflow) = a.nanoseconds.addingReportingOverflow(UInt64(ns))
        return Instant(nanoseconds: overflow ? .max : sum)
    }

    /// The time from `earlier` to `self`; zero when `earlier` is later.
    public func since(_ earlier: Instant) -> Duration {
        nanoseconds > earlier.nanoseconds ? .nanoseconds(Int64(nanoseconds - earlier.nanoseconds)) : .zero
    }

    public var description: String { "\(Double(nanoseconds) / 1e9)s" }
}

/// The one backoff rule of AIBox (worker restarts, the hotplug monitor, downloads, the update
/// feed): `base · 2^(attempt-1)`, spread by ±`jitter` (a fraction: 0.2 is ±20 %), never above
/// `max`. Jitter keeps a fleet of boxes, or workers sharing a dependency, from retrying in
/// lockstep; `random` is a number in 0…1 the caller draws (clamped), so the rule stays pure.
public struct Backoff: Sendable, Equatable {
    public var base: Duration
    public var max: Duration
    public var jitter: Double

    public init(base: Duration, max: Duration, jitter: Double = 0.2) {
        self.base = base
        self.max = max
        self.jitter = jitter
    }

    /// The delay before retry number `attempt` (1 for the first; 0 counts as 1).
    public func delay(attempt: Int, random: Double) -> Duration {
        var factor = 1.0
        for _ in 0..<Swift.min(Swift.max(attempt - 1, 0), 62) { factor *= 2 }
        let spread = 1 - jitter + 2 * jitter * Swift.min(Swift.max(random, 0), 1)
        let d = base.scaled(by: factor).scaled(by: spread)
        return d > max ? max : d
    }
}

extension Duration {
    /// The whole duration in nanoseconds, saturating at Int64's range.
    public var nanoseconds: Int64 {
        let (s, a) = components
        let (ms, o1) = s.multipliedReportingOverflow(by: 1_000_000_000)
        if o1 { return s < 0 ? .min : .max }
        let (total, o2) = ms.addingReportingOverflow(a / 1_000_000_000)
        if o2 { return s < 0 ? .min : .max }
        return total
    }

    public var microseconds: Int64 { nanoseconds / 1000 }
    public var milliseconds: Int64 { nanoseconds / 1_000_000 }

    /// `d` scaled by a factor, saturating.
    public func scaled(by factor: Double) -> Duration {
        let v = Double(nanoseconds) * factor
        if v >= Double(Int64.max) { return .nanoseconds(Int64.max) }
        if v <= 0 { return .zero }
        return .nanoseconds(Int64(v))
    }

    /// Formats as the config files spell durations: "100ms", "30s", "5m", "1h30m", "1m1.5s".
    /// From a second up, seconds keep millisecond precision.
    public var aiboxText: String {
        var ns = nanoseconds
        if ns == 0 { return "0s" }
        var frac = ""
        if ns % 1_000_000_000 != 0 {
            if ns < 1_000_000 { return ns % 1000 == 0 ? "\(ns / 1000)us" : "\(ns)ns" }
            if ns < 1_000_000_000 { return "\(ns / 1_000_000)ms" }
            // Seconds with millisecond precision: "1.25s", "1m1.5s".
            frac = String(ns / 1_000_000 % 1000)
            while frac.count < 3 { frac = "0" + frac }
            while frac.hasSuffix("0") { frac.removeLast() }
            if !frac.isEmpty { frac = "." + frac }
            ns -= ns % 1_000_000_000
        }
        var out = ""
        for (unit, size) in [("d", Int64(86_400_000_000_000)), ("h", 3_600_000_000_000), ("m", 60_000_000_000), ("s", 1_000_000_000)] {
            if ns >= size || (unit == "s" && !frac.isEmpty) {
                out += "\(ns / size)" + (unit == "s" ? frac : "") + unit
                ns %= size
            }
        }
        return out
    }
}

/// Parses durations as config files write them: a sequence of number+unit parts,
/// units ns, us, ms, s, m, h, d ("100ms", "1.5s", "1h30m"). Returns nil when malformed.
public func parseDuration(_ text: String) -> Duration? {
    let units: [(String, Double)] = [
        ("ns", 1), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9), ("d", 86400e9),
    ]
    var rest = Substring(text.trimmingSpaces())
    if rest.isEmpty { return nil }
    var total = 0.0
    while !rest.isEmpty {
        let number = rest.prefix { $0.isNumber || $0 == "." }
        guard !number.isEmpty, let value = Double(number) else { return nil }
        rest = rest.dropFirst(number.count)
        let unitText = rest.prefix { $0.isLetter }
        // Longest unit first so that "ms" is not read as "m" followed by "s".
        guard let unit = units.first(where: { $0.0 == unitText }) else { return nil }
        rest = rest.dropFirst(unitText.count)
        total += value * unit.1
    }
    guard total.isFinite, total < Double(Int64.max) else { return nil }
    return .nanoseconds(Int64(total))
}

/// Parses byte sizes: "2G", "512M", "100K", "1048576" (binary units, an optional "B"/"iB").
public func parseByteSize(_ text: String) -> UInt64? {
    var t = Substring(text.trimmingSpaces())
    if t.hasSuffix("iB") { t = t.dropLast(2) } else if t.hasSuffix("B") { t = t.dropLast() }
    let multipliers: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
    var factor: UInt64 = 1
    if let last = t.last, let m = multipliers[Character(last.uppercased())] {
        factor = m
        t = t.dropLast()
    }
    guard !t.isEmpty, let value = Double(t), value.isFinite, value >= 0 else { return nil }
    let bytes = value * Double(factor)
    guard bytes < Double(UInt64.max) else { return nil }
    return UInt64(bytes)
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\n" || f == "\r" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\n" || l == "\r" { s = s.dropLast() }
        return String(s)
    }
}

/// SplitMix64: fast, seeded random numbers where no secret depends on them (the restart
/// jitter): no system call per number, as SystemRandomNumberGenerator makes.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A number in 0..<1 (53 random bits), as the backoff's `random` takes it.
    public mutating func nextFraction() -> Double { Double(next() >> 11) * 0x1p-53 }
}

import AIBoxCore

/// Money in billionths of a US dollar: exact sums (a float ledger drifts), and room for
/// prices of a fraction of a microdollar per token.
public struct NanoUSD: Comparable, Hashable, Sendable, CustomStringConvertible, AdditiveArithmetic {
    public var value: Int64

    public init(_ value: Int64) { self.value = value }

    /// From dollars as written in box.toml or prices.toml (rounded to the nano-dollar).
    public init?(dollars: Double) {
        guard dollars.isFinite, dollars >= 0, dollars < 9e9 else { return nil }
        value = Int64((dollars * 1e9).rounded())
    }

    public static var zero: NanoUSD { NanoUSD(0) }
    public static func + (a: NanoUSD, b: NanoUSD) -> NanoUSD { NanoUSD(a.value.addingReportingOverflow(b.value).overflow ? .max : a.value + b.value) }
    public static func - (a: NanoUSD, b: NanoUSD) -> NanoUSD { NanoUSD(a.value - b.value) }
    public static func < (a: NanoUSD, b: NanoUSD) -> Bool { a.value < b.value }

    public var dollars: Double { Double(value) / 1e9 }

    /// "$0.0123": cents and below, to four decimals.
    public var description: String {
        let tenThousandths = (value + 50_000) / 100_000  // rounded to $0.0001
        let whole = tenThousandths / 10_000, frac = tenThousandths % 10_000
        let f = String(frac)
        return "$\(whole).\(String(repeating: "0", count: 4 - f.count))\(f)"
    }
}

/// A model's price: dollars per million input and output tokens.
public struct Price: Equatable, Sendable {
    /// Pico-dollars per token (dollars per million tokens × 1e6): exact for any price written
    /// with up to six decimals.
    public var inputPerToken: Int64
    public var outputPerToken: Int64

    /// Nil for a price that is negative, not a number, or over $1,000,000 per million tokens.
    public init?(inputPerMillion: Double, outputPerMillion: Double) {
        func valid(_ d: Double) -> Bool { d.isFinite && d >= 0 && d <= 1e6 }
        guard valid(inputPerMillion), valid(outputPerMillion) else { return nil }
        inputPerToken = Int64((inputPerMillion * 1e6).rounded())
        outputPerToken = Int64((outputPerMillion * 1e6).rounded())
    }

    /// The cost of a call, rounded up to the nano-dollar (a charge is never rounded to less).
    public func cost(inputTokens: Int, outputTokens: Int) -> NanoUSD {
        let (a, o1) = Int64(max(0, inputTokens)).multipliedReportingOverflow(by: inputPerToken)
        let (b, o2) = Int64(max(0, outputTokens)).multipliedReportingOverflow(by: outputPerToken)
        let (pico, o3) = a.addingReportingOverflow(b)
        if o1 || o2 || o3 { return NanoUSD(.max) }
        return NanoUSD(pico / 1000 + (pico % 1000 == 0 ? 0 : 1))
    }
}

/// `[budget]` of box.toml.
public struct BudgetPolicy: Equatable, Sendable {
    public typealias WhenExhausted = BudgetExhaustion
    public var daily: NanoUSD?
    public var monthly: NanoUSD?
    /// The share of a cap at which the owner is warned (once per period).
    public var warnAt: Double = 0.8
    public var whenExhausted: WhenExhausted = .local

    public init(daily: NanoUSD? = nil, monthly: NanoUSD? = nil, warnAt: Double = 0.8, whenExhausted: WhenExhausted = .local) {
        self.daily = daily
        self.monthly = monthly
        self.warnAt = warnAt
        self.whenExhausted = whenExhausted
    }

    public var isLimited: Bool { daily != nil || monthly != nil }
}

/// The calendar periods a charge counts in: the box's local day and month ("2026-12-02",
/// "2026-12"), computed by the caller from the wall clock in the box's time zone.
public struct BudgetPeriod: Equatable, Hashable, Sendable {
    public var day: String
    public var month: String { String(day.prefix(7)) }

    public init(day: String) { self.day = day }

    /// The period to count in. A wall clock behind the latest period already charged (a box
    /// without a real-time clock boots in 1970 until NTP answers; a clock set back by hand)
    /// keeps counting in that latest period, so a jump back never opens a fresh allowance; a
    /// clock moving forward starts the new period as it should.
    public static func effective(clock: BudgetPeriod, latestCharged: BudgetPeriod?) -> BudgetPeriod {
        guard let latest = latestCharged, clock.day < latest.day else { return clock }
        return latest
    }
}

/// What a period has used: settled charges plus open reservations.
public struct BudgetUse: Equatable, Sendable {
    public var day: NanoUSD
    public var month: NanoUSD

    public init(day: NanoUSD = .zero, month: NanoUSD = .zero) {
        self.day = day
        self.month = month
    }
}

public enum BudgetDecision: Equatable, Sendable {
    case allowed
    /// Reserving this would pass a cap: the daily one or the monthly one.
    case exceeds(period: String, cap: NanoUSD, used: NanoUSD)
}

extension BudgetPolicy {
    /// Whether `estimate` may be reserved on top of `use`. Reaching a cap exactly is allowed;
    /// passing it is not.
    public func decide(use: BudgetUse, estimate: NanoUSD) -> BudgetDecision {
        if let cap = daily, use.day + estimate > cap { return .exceeds(period: "daily", cap: cap, used: use.day) }
        if let cap = monthly, use.month + estimate > cap { return .exceeds(period: "monthly", cap: cap, used: use.month) }
        return .allowed
    }

    /// The warnings crossed by going from `before` to `after`: "daily" and/or "monthly".
    public func warningsCrossed(before: BudgetUse, after: BudgetUse) -> [String] {
        var out: [String] = []
        func crossed(_ cap: NanoUSD?, _ a: NanoUSD, _ b: NanoUSD) -> Bool {
            guard let cap, cap.value > 0 else { return false }
            let line = Double(cap.value) * warnAt
            return Double(a.value) < line && Double(b.value) >= line
        }
        if crossed(daily, before.day, after.day) { out.append("daily") }
        if crossed(monthly, before.month, after.month) { out.append("monthly") }
        return out
    }
}

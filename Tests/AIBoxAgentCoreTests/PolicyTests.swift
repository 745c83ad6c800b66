import AIBoxCore
import Testing

@testable import AIBoxAgentCore

@Suite("failure classes")
struct FailureClassTests {
    @Test("provider errors as OpenAI, Anthropic and llama.cpp send them", arguments: [
        (CallFailure.http(status: 429, type: "requests", code: "rate_limit_exceeded", retryAfter: .seconds(7)), FailureClass.throttled(retryAfter: .seconds(7))),
        (.http(status: 429, type: "insufficient_quota", code: "insufficient_quota"), .quotaExhausted),
        (.http(status: 429, type: "rate_limit_error", code: "enforced_spend_limit_reached"), .quotaExhausted),
        (.http(status: 400, type: "invalid_request_error", code: "credit_balance_exhausted"), .quotaExhausted),
        (.http(status: 402), .quotaExhausted),
        (.http(status: 529, type: "overloaded_error"), .throttled(retryAfter: nil)),
        (.http(status: 500, type: "api_error"), .throttled(retryAfter: nil)),
        (.http(status: 503, code: "slow_down"), .throttled(retryAfter: nil)),
        (.http(status: 408), .throttled(retryAfter: nil)),
        (.http(status: 401, type: "authentication_error"), .misconfigured),
        (.http(status: 403, type: "permission_error"), .misconfigured),
        (.http(status: 404, type: "not_found_error", message: "model: claude-9"), .misconfigured),
        (.http(status: 400, type: "invalid_request_error", code: "model_not_found"), .misconfigured),
        (.http(status: 400, type: "invalid_request_error", code: "context_length_exceeded"), .contextOverflow),
        (.http(status: 400, type: "invalid_request_error", message: "prompt is too long: 210000 tokens > 200000 maximum"), .contextOverflow),
        (.http(status: 400, type: "exceed_context_size_error", message: "the request exceeds the available context size"), .contextOverflow),
        (.http(status: 413, type: "request_too_large"), .contextOverflow),
        (.http(status: 400, type: "invalid_request_error", message: "messages: text content blocks must be non-empty"), .rejected),
        (.http(status: 422), .rejected),
        (.transport("connection refused"), .unavailable),
        (.stalled(firstByte: true), .unavailable),
        (.stalled(firstByte: false), .unavailable),
        (.midStream("event: error overloaded_error"), .unavailable),
    ])
    func classes(failure: CallFailure, want: FailureClass) {
        #expect(FailureClassifier.classify(failure) == want)
    }

    @Test("only a request the provider refused as wrong stops the chain")
    func fallsBack() {
        #expect(!FailureClass.rejected.fallsBack)
        for c in [FailureClass.unavailable, .throttled(retryAfter: nil), .quotaExhausted, .misconfigured, .contextOverflow] {
            #expect(c.fallsBack)
        }
    }

    @Test("Retry-After in seconds (fractions too); a date, junk or a negative number is not read")
    func retryAfter() {
        #expect(FailureClassifier.retryAfter(header: "20") == .seconds(20))
        #expect(FailureClassifier.retryAfter(header: " 1.5 ") == .milliseconds(1500))
        #expect(FailureClassifier.retryAfter(header: "Wed, 21 Oct 2015 07:28:00 GMT") == nil)
        #expect(FailureClassifier.retryAfter(header: "-3") == nil)
        #expect(FailureClassifier.retryAfter(header: "nan") == nil)
        #expect(FailureClassifier.retryAfter(header: "99999999") == .seconds(86_400))
        #expect(FailureClassifier.retryAfter(header: nil) == nil)
    }
}

@Suite("circuit breakers")
struct CircuitBreakerTests {
    let t0 = Instant(nanoseconds: 1_000_000_000_000)

    @Test("open on the ladder (30 s, 1 min, 5 min, 5 min), one probe when the time is up, closed by its success")
    func ladder() {
        var b = CircuitBreaker()
        var now = t0
        for (i, wait) in [30, 60, 300, 300].enumerated() {
            do { let r = b.admit(now: now, configuration: 1); #expect(r) }
            do { let r = b.failed(.unavailable, now: now, configuration: 1, reason: "refused"); #expect(r, "closed or probing → open is a change worth an event") }
            do { let r = b.admit(now: Instant(nanoseconds: (now + .seconds(Int64(wait))).nanoseconds - 1_000_000), configuration: 1); #expect(!r, "step \(i)") }
            now = now + .seconds(Int64(wait))
        }
        do { let r = b.admit(now: now, configuration: 1); #expect(r) }  // the probe
        do { let r = b.admit(now: now, configuration: 1); #expect(!r) }  // no one else while it is out
        b.succeeded()
        #expect(b.state == .closed && b.failures == 0)
        do { let r = b.admit(now: now, configuration: 1); #expect(r) }
    }

    @Test("a probe that never reports back is given up after the probe timeout")
    func lostProbe() {
        var b = CircuitBreaker(state: .open(until: t0, reason: "x"), failures: 1)
        do { let r = b.admit(now: t0, configuration: 0); #expect(r) }
        do { let r = b.admit(now: t0 + .seconds(299), configuration: 0); #expect(!r) }
        do { let r = b.admit(now: t0 + .seconds(300), configuration: 0); #expect(r) }
    }

    @Test("a local server's breaker opens for 5 s, 15 s, 60 s: aibox restarts it within seconds")
    func localLadder() {
        var b = CircuitBreaker()
        for (i, want) in [5, 15, 60, 60].enumerated() {
            let now = t0 + .seconds(1000 * i)
            if i > 0 { _ = b.admit(now: now, configuration: 1) }
            b.failed(.unavailable, now: now, configuration: 1, reason: "refused", local: true)
            #expect(b.state == .open(until: now + .seconds(want), reason: "refused"))
        }
    }

    @Test("throttled: at least Retry-After; quota: 5 h then 24 h; misconfigured: until the configuration changes")
    func kinds() {
        var b = CircuitBreaker()
        b.failed(.throttled(retryAfter: .seconds(90)), now: t0, configuration: 1, reason: "429")
        #expect(b.state == .open(until: t0 + .seconds(90), reason: "429"))
        var q = CircuitBreaker()
        q.failed(.quotaExhausted, now: t0, configuration: 1, reason: "quota")
        #expect(q.state == .open(until: t0 + .seconds(5 * 3600), reason: "quota"))
        do { let r = q.admit(now: t0 + .seconds(5 * 3600), configuration: 1); #expect(r) }
        q.failed(.quotaExhausted, now: t0, configuration: 1, reason: "quota")
        #expect(q.state == .open(until: t0 + .seconds(24 * 3600), reason: "quota"))
        var m = CircuitBreaker()
        m.failed(.misconfigured, now: t0, configuration: 7, reason: "401")
        do { let r = m.admit(now: t0 + .seconds(365 * 86400), configuration: 7); #expect(!r) }
        do { let r = m.admit(now: t0, configuration: 8); #expect(r) }  // a new key: one probe
        m.failed(.misconfigured, now: t0, configuration: 8, reason: "401 again")
        do { let r = m.admit(now: t0, configuration: 8); #expect(!r) }
    }

    @Test("a request's own fault (bad request, too long) leaves the breaker closed, and closes it when it was the probe")
    func requestFaults() {
        var b = CircuitBreaker()
        do { let r = b.failed(.rejected, now: t0, configuration: 1, reason: "400"); #expect(!r) }
        #expect(b.state == .closed)
        var p = CircuitBreaker(state: .open(until: t0, reason: "x"), failures: 2)
        do { let r = p.admit(now: t0, configuration: 1); #expect(r) }
        p.failed(.contextOverflow, now: t0, configuration: 1, reason: "too long")
        #expect(p.state == .closed)
    }

    @Test("read back after a reboot: open means probe now; disabled stays disabled; the same boot keeps its instants")
    func restored() {
        let open = CircuitBreaker(state: .open(until: t0 + .seconds(300), reason: "x"), failures: 3)
        #expect(open.restored(sameBoot: true, now: t0) == open)
        let after = open.restored(sameBoot: false, now: Instant(nanoseconds: 5))
        #expect(after.state == .open(until: Instant(nanoseconds: 5), reason: "x") && after.failures == 3)
        let disabled = CircuitBreaker(state: .disabled(reason: "401", configuration: 4), failures: 1)
        #expect(disabled.restored(sameBoot: false, now: t0) == disabled)
    }

    @Test("the configuration hash is stable (FNV-1a) and separates its parts")
    func hash() {
        #expect(stableHash([]) == 0xcbf2_9ce4_8422_2325)
        #expect(stableHash(["ab", "c"]) != stableHash(["a", "bc"]))
        #expect(stableHash(["openai", "https://api.openai.com/v1"]) == stableHash(["openai", "https://api.openai.com/v1"]))
    }
}

@Suite("budget arithmetic")
struct BudgetTests {
    @Test("prices per million tokens become exact per-token costs, rounded up to the nano-dollar")
    func prices() throws {
        let p = try #require(Price(inputPerMillion: 0.15, outputPerMillion: 0.6))
        #expect(p.cost(inputTokens: 1_000_000, outputTokens: 0) == NanoUSD(dollars: 0.15))
        #expect(p.cost(inputTokens: 1000, outputTokens: 500) == NanoUSD(150_000 + 300_000))
        let tiny = try #require(Price(inputPerMillion: 0.0375, outputPerMillion: 0))
        #expect(tiny.cost(inputTokens: 1, outputTokens: 0) == NanoUSD(38))  // 37.5 nano-dollars, charged 38
        #expect(tiny.cost(inputTokens: 1_000_000, outputTokens: 0) == NanoUSD(37_500_000))
        #expect(Price(inputPerMillion: -1, outputPerMillion: 1) == nil)
        #expect(Price(inputPerMillion: .nan, outputPerMillion: 1) == nil)
        #expect(p.cost(inputTokens: .max, outputTokens: .max) == NanoUSD(.max))
        #expect(NanoUSD(dollars: 2)?.description == "$2.0000")
        #expect(NanoUSD(123_456_789).description == "$0.1235")
    }

    @Test("a reservation may reach a cap, never pass it; daily before monthly")
    func decide() throws {
        let policy = BudgetPolicy(daily: NanoUSD(dollars: 2), monthly: NanoUSD(dollars: 30))
        let one = try #require(NanoUSD(dollars: 1))
        #expect(policy.decide(use: BudgetUse(day: one, month: one), estimate: one) == .allowed)
        #expect(
            policy.decide(use: BudgetUse(day: one + NanoUSD(1), month: one), estimate: one)
                == .exceeds(period: "daily", cap: NanoUSD(dollars: 2)!, used: one + NanoUSD(1)))
        #expect(
            policy.decide(use: BudgetUse(day: .zero, month: NanoUSD(dollars: 29.5)!), estimate: one)
                == .exceeds(period: "monthly", cap: NanoUSD(dollars: 30)!, used: NanoUSD(dollars: 29.5)!))
        #expect(BudgetPolicy().decide(use: BudgetUse(day: NanoUSD(.max / 2)), estimate: one) == .allowed)
    }

    @Test("the warning is crossed once, by the charge that reaches warn-at")
    func warnings() throws {
        let policy = BudgetPolicy(daily: NanoUSD(dollars: 2), monthly: NanoUSD(dollars: 10), warnAt: 0.8)
        let a = BudgetUse(day: NanoUSD(dollars: 1.5)!, month: NanoUSD(dollars: 7.9)!)
        let b = BudgetUse(day: NanoUSD(dollars: 1.6)!, month: NanoUSD(dollars: 8.0)!)
        #expect(policy.warningsCrossed(before: a, after: b) == ["daily", "monthly"])
        #expect(policy.warningsCrossed(before: b, after: BudgetUse(day: NanoUSD(dollars: 1.9)!, month: NanoUSD(dollars: 9)!)).isEmpty)
    }

    @Test("periods: a new day and a new month start as the clock moves on; a clock set back (1970 before NTP) keeps counting in the latest period")
    func periods() {
        let dec31 = BudgetPeriod(day: "2026-12-31"), jan1 = BudgetPeriod(day: "2027-01-01")
        #expect(BudgetPeriod.effective(clock: jan1, latestCharged: dec31) == jan1)
        #expect(jan1.month == "2027-01" && dec31.month == "2026-12")
        #expect(BudgetPeriod.effective(clock: BudgetPeriod(day: "1970-01-01"), latestCharged: jan1) == jan1)
        #expect(BudgetPeriod.effective(clock: dec31, latestCharged: jan1) == jan1)
        #expect(BudgetPeriod.effective(clock: dec31, latestCharged: nil) == dec31)
    }
}

import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem

/// One route tried for a request, and how it went.
public struct Attempt: Sendable, Equatable, Codable {
    public var route: String
    /// `answered`, `failed` or `skipped`.
    public var outcome: String
    public var reason: String?
    public var milliseconds: Double?
}

/// A whole answer and how it was reached.
public struct Answer: Sendable, Equatable {
    public var text: String
    public var role: LLMRole
    public var route: RouteKey
    public var attempts: [Attempt]
    public var usage: Usage?
    public var cost: NanoUSD
    /// The cost is the reservation: the provider reported no usage.
    public var costEstimated: Bool
    public var firstByteMS: Double
    public var totalMS: Double
}

public enum AskFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// The role has no route at all (box.toml configures no provider).
    case noRoute(LLMRole)
    /// The cloud budget is spent, `when-exhausted = "refuse"`, and no local route is left.
    case budgetExhausted(String, attempts: [Attempt])
    /// The request itself was refused (a 4xx no other route would take either).
    case rejected(String, attempts: [Attempt])
    /// Every route was tried or skipped, none answered.
    case allFailed(attempts: [Attempt])

    public var description: String {
        switch self {
        case .noRoute(let r): return "no model is configured for \(r.rawValue): add a provider and [routing] to box.toml (`aibox setup`)"
        case .budgetExhausted(let m, _): return m
        case .rejected(let m, _): return "the model refused the request: \(m)"
        case .allFailed(let a):
            return "no model could answer: " + a.map { "\($0.route) \($0.outcome)\($0.reason.map { " (\($0))" } ?? "")" }.joined(separator: "; ")
        }
    }

    public var attempts: [Attempt] {
        switch self {
        case .noRoute: return []
        case .budgetExhausted(_, let a), .rejected(_, let a), .allFailed(let a): return a
        }
    }
}

/// The router at work: takes a role's chain in order, skips routes whose breakers are open or
/// that the budget does not allow, calls the first that may go, falls back on failure as the
/// classifier says, and records every decision (events, breakers, ledger) in agent.db.
public actor Assistant {
    public nonisolated let settings: AgentSettings
    let ledger: Ledger
    let client: ProviderClient?
    let bootID: String
    /// A bound on model calls per request, whatever the chain and the failures.
    public static let maxCallsPerRequest = 8
    /// The longest Retry-After a request waits out for its one more try, when nothing else answered.
    public static let maxRetryWait: Duration = .seconds(20)
    /// The reply allowance a call asks for (and the budget reserves).
    public nonisolated let maxTokens = 1024

    /// Why agent.db could not be opened (the ledger is then in memory): no cloud call under a budget.
    let ledgerProblem: String?

    public init(settings: AgentSettings, ledger: Ledger, client: ProviderClient?, ledgerProblem: String? = nil) {
        self.settings = settings
        self.ledger = ledger
        self.ledgerProblem = ledgerProblem
        self.client = client
        bootID = readTextFile("/proc/sys/kernel/random/boot_id")?.trimmingCharacters(in: " \n") ?? ""
    }

    /// Whether the cloud budget is spent: the reason ("daily budget of $2.0000 reached") or nil.
    public func budgetExhausted(wallMS: Int64) -> String? {
        let policy = settings.policy
        guard policy.isLimited, let (period, use) = try? ledger.currentUse(wallMS: wallMS) else { return nil }
        if let cap = policy.daily, use.day >= cap { return "the daily cloud budget of \(cap) is spent (\(period.day))" }
        if let cap = policy.monthly, use.month >= cap { return "the monthly cloud budget of \(cap) is spent (\(period.month))" }
        return nil
    }

    public func ask(role: LLMRole, system: String? = nil, history: [ChatMessage] = [], message: String) async -> Result<Answer, AskFailure> {
        var chain = settings.table.chains[role] ?? []
        guard !chain.isEmpty else { return .failure(.noRoute(role)) }
        var attempts: [Attempt] = []
        var exhausted = budgetExhausted(wallMS: Clock.wallMilliseconds())
        if let why = exhausted { chain = budgetShrunk(chain, why: why, attempts: &attempts) }
        var calls = 0
        var breakers = (try? ledger.breakers(bootID: bootID, now: Clock.monotonic())) ?? [:]
        // When every route has failed or been skipped and one of them only asked to wait
        // (throttled, Retry-After within `maxRetryWait`), it gets one more try after that
        // wait, its breaker aside: a busy provider is still better than no answer.
        var queue = chain[...]
        var retry: (route: ResolvedRoute, wait: Duration)?
        var retried = false
        var bypass: RouteKey?
        while true {
            guard let route = queue.popFirst() else {
                guard !retried, let r = retry, calls < Assistant.maxCallsPerRequest else { break }
                retried = true
                bypass = r.route.key
                queue = [r.route][...]
                try? await Task.sleep(for: r.wait)
                continue
            }
            if calls >= Assistant.maxCallsPerRequest {
                attempts.append(Attempt(route: route.key.description, outcome: "skipped", reason: "\(Assistant.maxCallsPerRequest) calls for one request"))
                break
            }
            let name = route.key.description
            if !route.isLocal, let why = exhausted {
                attempts.append(Attempt(route: name, outcome: "skipped", reason: why))
                continue
            }
            // The key is read once per attempt: for the breakers' "configuration changed", the call, the masking.
            let apiKey = route.apiKeySecret.flatMap(settings.secret)
            let generation = settings.configurationHash(provider: route.key.provider, key: apiKey)
            let now = Clock.monotonic()
            let providerKey = route.key.provider, modelKey = name
            if route.key != bypass, let b = breakers[providerKey], !b.isAvailable(now: now, configuration: generation) {
                attempts.append(Attempt(route: name, outcome: "skipped", reason: "provider off: \(Assistant.reason(b))"))
                continue
            }
            if route.key != bypass, let b = breakers[modelKey], !b.isAvailable(now: now, configuration: generation) {
                attempts.append(Attempt(route: name, outcome: "skipped", reason: "route off: \(Assistant.reason(b))"))
                continue
            }
            let prompt: [ChatMessage]
            switch PromptFit.fit(system: system, history: history, message: ChatMessage(.user, message), context: route.context, replyTokens: maxTokens) {
            case .tooLong(let needed, let context):
                attempts.append(Attempt(route: name, outcome: "skipped", reason: "the prompt needs about \(needed) tokens; its context is \(context)"))
                continue
            case .fits(let m, _): prompt = m
            }
            // Money: a cloud call under a budget is reserved first; one without a price is refused.
            var reservation: Ledger.Reservation?
            let price = settings.price(route)
            if !route.isLocal && settings.policy.isLimited {
                if let problem = ledgerProblem {
                    attempts.append(Attempt(route: name, outcome: "skipped", reason: "agent.db cannot be written (\(problem)); no cloud call without its ledger"))
                    continue
                }
                guard let price else {
                    attempts.append(Attempt(route: name, outcome: "skipped", reason: "no price for this model, and a budget is set (add it to prices.toml)"))
                    if ledger.firstNotice("unpriced:\(name)", wallMS: Clock.wallMilliseconds()) {
                        ledger.record(kind: "route.unpriced", route: route.key, message: "\(name) has no price; it is not used while a budget is set", wallMS: Clock.wallMilliseconds())
                    }
                    continue
                }
                let estimate = CallCost.estimate(price, promptTokens: TokenEstimate.tokens(prompt), maxTokens: maxTokens)
                var outcome: Ledger.ReserveOutcome?
                var ledgerError = ""
                do { outcome = try ledger.reserve(estimate, policy: settings.policy, route: route.key, role: role, wallMS: Clock.wallMilliseconds()) } catch {
                    ledgerError = error.description
                }
                switch outcome {
                case .reserved(let r, let warnings)?:
                    reservation = r
                    for w in warnings where ledger.firstNotice("budget.warn:\(w):\(w == "daily" ? r.period.day : r.period.month)", wallMS: Clock.wallMilliseconds()) {
                        ledger.record(
                            kind: "budget.warning", route: nil,
                            message: "\(Int(settings.policy.warnAt * 100)) % of the \(w) cloud budget is spent", wallMS: Clock.wallMilliseconds())
                    }
                case .refused(let decision)?:
                    let why: String
                    if case .exceeds(let period, let cap, _) = decision { why = "the \(period) cloud budget of \(cap) would be passed" } else { why = "over budget" }
                    // A cap that this call would pass is, for every cloud route after it, reached.
                    attempts.append(Attempt(route: name, outcome: "skipped", reason: why))
                    exhausted = why
                    noticeExhausted(why)
                    if settings.policy.whenExhausted == .refuse { return .failure(.budgetExhausted(why, attempts: attempts)) }
                    continue
                case nil:
                    // Money is not spent without its record: the local routes still answer.
                    attempts.append(Attempt(route: name, outcome: "skipped", reason: "agent.db cannot be written (\(ledgerError)); no cloud call without its ledger"))
                    continue
                }
            }
            // Take the probe if a breaker is due for one.
            var pb = breakers[providerKey] ?? CircuitBreaker(), mb = breakers[modelKey] ?? CircuitBreaker()
            let probing = pb.state != .closed || mb.state != .closed
            _ = pb.admit(now: now, configuration: generation)
            _ = mb.admit(now: now, configuration: generation)
            save(&breakers, providerKey, pb)
            save(&breakers, modelKey, mb)
            calls += 1
            guard let client else { return .failure(.allFailed(attempts: attempts)) }
            let callStart = Clock.monotonic()
            let result = await client.call(route, apiKey: apiKey, request: ModelRequest(model: route.key.model, messages: prompt, maxTokens: maxTokens, temperature: nil, context: route.context), timeouts: settings.silenceLimit.map { CallTimeouts(connect: $0, firstByte: $0, idle: $0) } ?? CallTimeouts.forRoute(route))
            let wall = Clock.wallMilliseconds()
            switch result {
            case .success(let reply):
                pb.succeeded()
                mb.succeeded()
                save(&breakers, providerKey, pb)
                save(&breakers, modelKey, mb)
                if probing { ledger.record(kind: "route.recovered", route: route.key, message: "\(name) answers again", wallMS: wall) }
                var cost = NanoUSD.zero, estimated = false
                if let r = reservation, let price {
                    (cost, estimated) = CallCost.charge(price, usage: reply.usage, reserved: r.amount)
                    try? ledger.settle(r, cost: cost, usage: reply.usage, estimated: estimated)
                } else {
                    if let price, let u = reply.usage { cost = price.cost(inputTokens: u.inputTokens, outputTokens: u.outputTokens) }
                    try? ledger.recordFree(route: route.key, role: role, usage: reply.usage, wallMS: wall)
                }
                attempts.append(Attempt(route: name, outcome: "answered", reason: nil, milliseconds: reply.totalMS))
                if attempts.count > 1 {
                    let before = attempts.dropLast().map { "\($0.route): \($0.reason ?? $0.outcome)" }.joined(separator: "; ")
                    ledger.record(kind: "route.fallback", route: route.key, message: "\(role.rawValue) answered by \(name) after \(before)", wallMS: wall)
                }
                return .success(
                    Answer(
                        text: reply.text, role: role, route: route.key, attempts: attempts, usage: reply.usage, cost: cost, costEstimated: estimated,
                        firstByteMS: reply.firstByteMS, totalMS: reply.totalMS))
            case .failure(let failure):
                let kind = FailureClassifier.classify(failure)
                var why = Assistant.describe(failure)
                // Providers quote the key they were sent (OpenAI: its first and last characters); never pass it on.
                if let key = apiKey?.reveal(), key.count >= 8 { why = why.replacing(key, with: Secret.masked) }
                // A call cut in the middle of its reply was billed by the provider: keep the reservation.
                if let r = reservation {
                    if case .midStream = failure { try? ledger.settle(r, cost: r.amount, usage: nil, estimated: true) } else { try? ledger.release(r) }
                }
                attempts.append(Attempt(route: name, outcome: "failed", reason: why, milliseconds: Double(Clock.monotonic().since(callStart).nanoseconds) / 1e6))
                let transport: Bool
                switch failure {
                case .transport, .stalled: transport = true
                default: transport = false
                }
                var opened = false
                if transport {
                    opened = pb.failed(kind, now: Clock.monotonic(), configuration: generation, reason: why, local: route.isLocal)
                    mb.succeeded()  // the model is not at fault; the provider's breaker holds it back
                } else {
                    pb.succeeded()
                    opened = mb.failed(kind, now: Clock.monotonic(), configuration: generation, reason: why, local: route.isLocal)
                }
                save(&breakers, providerKey, pb)
                save(&breakers, modelKey, mb)
                if opened {
                    ledger.record(kind: "route.breaker-open", route: route.key, message: "\(transport ? providerKey : modelKey) off: \(why)", wallMS: wall)
                }
                switch kind {
                case .quotaExhausted, .misconfigured:
                    if ledger.firstNotice("owner:\(kind):\(providerKey):\(generation)", wallMS: wall) {
                        ledger.record(kind: "owner.notice", route: route.key, message: Assistant.ownerNotice(kind, provider: providerKey, why: why), wallMS: wall)
                    }
                default: break
                }
                if !kind.fallsBack { return .failure(.rejected(why, attempts: attempts)) }
                if case .throttled(let after) = kind, retry == nil, !retried {
                    let wait = max(after ?? .seconds(1), .milliseconds(500))
                    if wait <= Assistant.maxRetryWait {
                        // Jittered up to a quarter more: boxes told the same Retry-After do not return together.
                        retry = (route, wait + .milliseconds(Int64(Double(wait.components.seconds * 1000) * Double.random(in: 0...0.25))))
                    }
                }
            }
        }
        if let why = exhausted, settings.policy.whenExhausted == .refuse { return .failure(.budgetExhausted(why, attempts: attempts)) }
        return .failure(.allFailed(attempts: attempts))
    }

    /// A conversation's kept turns (agent.db), oldest first.
    public func history(_ conversation: String) -> [ChatMessage] { (try? ledger.history(conversation)) ?? [] }

    public func remember(_ conversation: String, question: String, answer: String) {
        try? ledger.append(conversation, question: question, answer: answer, wallMS: Clock.wallMilliseconds())
    }

    public func forget(_ conversation: String) { ledger.forget(conversation) }

    /// Forgets every breaker: benchmarks measure a first failure each time.
    public func resetBreakers() { try? ledger.resetBreakers() }

    private func save(_ breakers: inout [String: CircuitBreaker], _ key: String, _ b: CircuitBreaker) {
        guard breakers[key] != b else { return }
        breakers[key] = b
        try? ledger.save(breaker: b, key: key, bootID: bootID)
    }

    /// The chain once the budget is spent: its local routes, or (refuse) nothing.
    private func budgetShrunk(_ chain: [ResolvedRoute], why: String, attempts: inout [Attempt]) -> [ResolvedRoute] {
        noticeExhausted(why)
        let kept = settings.policy.whenExhausted == .local ? chain.filter(\.isLocal) : []
        for r in chain where !kept.contains(r) { attempts.append(Attempt(route: r.key.description, outcome: "skipped", reason: why)) }
        return kept
    }

    private func noticeExhausted(_ why: String) {
        let wall = Clock.wallMilliseconds()
        // Once per period: a spent monthly cap is told once that month, not every day of it.
        guard let (period, _) = try? ledger.currentUse(wallMS: wall),
            ledger.firstNotice("budget.exhausted:" + (why.contains("monthly") ? period.month : period.day), wallMS: wall)
        else { return }
        let then = settings.policy.whenExhausted == .local ? "only the local model answers until it renews" : "cloud requests are refused until it renews"
        ledger.record(kind: "owner.notice", route: nil, message: "\(why); \(then)", wallMS: wall)
    }

    static func ownerNotice(_ kind: FailureClass, provider: String, why: String) -> String {
        switch kind {
        case .quotaExhausted: return "\(provider) says its credit or quota is used up (\(why)); it is left alone for hours, other routes answer"
        default: return "\(provider) refuses the configured key or model (\(why)); it stays off until box.toml or its secret changes"
        }
    }

    static func reason(_ b: CircuitBreaker) -> String {
        switch b.state {
        case .closed: return "closed"
        case .open(_, let r): return r
        case .disabled(let r, _): return r + " (until the configuration changes)"
        case .probing: return "a probe is out"
        }
    }

    /// A failure in words, for attempts and events (never with a key: failures hold none).
    public static func describe(_ f: CallFailure) -> String {
        switch f {
        case .transport(let s): return "unreachable: \(s)"
        case .stalled(let first): return first ? "no answer in time" : "the reply stalled"
        case .midStream(let s): return "the reply broke off: \(s)"
        case .http(let status, let type, let code, let message, let retryAfter):
            var s = "HTTP \(status)"
            if let t = type ?? code { s += " \(t)" }
            if let m = message, !m.isEmpty { s += ": \(String(m.prefix(160)))" }
            if let r = retryAfter { s += " (retry after \(r.components.seconds) s)" }
            return s
        }
    }
}

extension Ledger {
    /// A reservation for a call that never reached the provider's billing (refused before any reply).
    public func release(_ r: Reservation) throws(SQLiteError) {
        try db.query("DELETE FROM charge WHERE id = ? AND state = 'reserved'", [.integer(r.id)])
    }
}

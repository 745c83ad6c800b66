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

    /// Every operation with a deadline (model calls here; the channels' too): the worker's
    /// watchdog pings stop while one is stuck.
    public nonisolated let liveness = LivenessBoard()

    /// Why agent.db could not be opened (the ledger is then in memory): no cloud call under a budget.
    let ledgerProblem: String?

    /// Chains the owner put first for a while (`/model`), until the agent restarts.
    private var overrides: [LLMRole: [ResolvedRoute]] = [:]

    /// The chain a role runs now: the owner's override, else box.toml's.
    public func chain(_ role: LLMRole) -> [ResolvedRoute] { overrides[role] ?? settings.table.chains[role] ?? [] }

    /// `/model ROLE PROVIDER/MODEL`: that route first for the role until the agent restarts;
    /// nil: back to box.toml's chain. The chain in force is returned.
    public func override(_ role: LLMRole, with route: Route?) -> Result<[ResolvedRoute], RoutingTable.OverrideError> {
        guard let route else {
            overrides[role] = nil
            return .success(chain(role))
        }
        let result = settings.table.overriding(role, with: route, providers: settings.config.providers)
        if case .success(let c) = result { overrides[role] = c }
        return result
    }

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

    /// One request on its way down a chain: what it asks, and what has happened to it so far.
    struct Request {
        let role: LLMRole
        let system: String?
        let history: [ChatMessage]
        let message: String
        let maxTokens: Int
        var attempts: [Attempt] = []
        /// Why the cloud budget is spent, once it is (the cloud routes after it are skipped).
        var exhausted: String?
        var calls = 0
        var breakers: [String: CircuitBreaker]
        var queue: ArraySlice<ResolvedRoute>
        /// The one route that only asked to wait (throttled, Retry-After within `maxRetryWait`):
        /// when every route has failed or been skipped, it gets one more try after that wait,
        /// its breaker aside: a busy provider is still better than no answer.
        var retry: (route: ResolvedRoute, wait: Duration)?
        var retried = false
        var bypass: RouteKey?

        mutating func skip(_ route: ResolvedRoute, _ reason: String) {
            attempts.append(Attempt(route: route.key.description, outcome: "skipped", reason: reason))
        }
    }

    /// What one route did for a request.
    enum Step {
        case answered(Answer)
        /// On to the next route.
        case next
        /// The request ends here (refused by the model or by the budget).
        case stop(AskFailure)
        /// No more calls for this request.
        case giveUp
    }

    /// An answer through the role's chain: each route in order, skipped when its breakers are
    /// open, the budget does not allow it or the prompt cannot fit it; the first that answers wins.
    /// - Parameters:
    ///   - localOnly: only the chain's local routes (the agent's own work: summaries, warm-up).
    ///   - maxTokens: the reply allowance (default `maxTokens`).
    public func ask(
        role: LLMRole, system: String? = nil, history: [ChatMessage] = [], message: String, localOnly: Bool = false, maxTokens: Int? = nil
    ) async -> Result<Answer, AskFailure> {
        var chain = self.chain(role)
        if localOnly { chain = chain.filter(\.isLocal) }
        guard !chain.isEmpty else { return .failure(.noRoute(role)) }
        var r = Request(
            role: role, system: system, history: history, message: message, maxTokens: maxTokens ?? self.maxTokens,
            breakers: (try? ledger.breakers(bootID: bootID, now: Clock.monotonic())) ?? [:], queue: chain[...])
        r.exhausted = budgetExhausted(wallMS: Clock.wallMilliseconds())
        if let why = r.exhausted { r.queue = budgetShrunk(chain, why: why, attempts: &r.attempts)[...] }
        chain: while let route = await next(&r) {
            switch await attempt(route, &r) {
            case .answered(let a): return .success(a)
            case .next: continue
            case .stop(let f): return .failure(f)
            case .giveUp: break chain
            }
        }
        if let why = r.exhausted, settings.policy.whenExhausted == .refuse { return .failure(.budgetExhausted(why, attempts: r.attempts)) }
        return .failure(.allFailed(attempts: r.attempts))
    }

    /// The next route to try: the chain's next, else the throttled route's one more try once its wait is over.
    private func next(_ r: inout Request) async -> ResolvedRoute? {
        if let route = r.queue.popFirst() { return route }
        guard !r.retried, let retry = r.retry, r.calls < Assistant.maxCallsPerRequest else { return nil }
        r.retried = true
        r.bypass = retry.route.key
        try? await Task.sleep(for: retry.wait)
        return retry.route
    }

    /// One route for a request: checks, money, the call, and what its outcome means.
    private func attempt(_ route: ResolvedRoute, _ r: inout Request) async -> Step {
        if r.calls >= Assistant.maxCallsPerRequest {
            r.skip(route, "\(Assistant.maxCallsPerRequest) calls for one request")
            return .giveUp
        }
        if !route.isLocal, let why = r.exhausted {
            r.skip(route, why)
            return .next
        }
        // The key is read once per attempt: for the breakers' "configuration changed", the call, the masking.
        let apiKey = route.apiKeySecret.flatMap(settings.secret)
        let generation = settings.configurationHash(provider: route.key.provider, key: apiKey)
        if let why = closedBy(route, r, generation: generation) {
            r.skip(route, why)
            return .next
        }
        let prompt: [ChatMessage]
        switch PromptFit.fit(system: r.system, history: r.history, message: ChatMessage(.user, r.message), context: route.context, replyTokens: r.maxTokens) {
        case .tooLong(let needed, let context):
            r.skip(route, "the prompt needs about \(needed) tokens; its context is \(context)")
            return .next
        case .fits(let m, _): prompt = m
        }
        let reservation: Ledger.Reservation?
        switch reserve(route, prompt: prompt, &r) {
        case .free: reservation = nil
        case .reserved(let res): reservation = res
        case .skip(let why):
            r.skip(route, why)
            return .next
        case .stop(let f): return .stop(f)
        }
        // A local model serves one request at a time: the rest wait their turn (not the model's
        // first-byte timeout, which would trip its breaker), or go on when a later route can answer.
        if route.isLocal {
            let cloudLeft = r.exhausted == nil
            let others = r.queue.contains { $0.isLocal || cloudLeft }
            guard await enterLocal(route.key.provider, wait: others ? Assistant.localWaitWithFallback : Assistant.localWaitAlone) else {
                r.skip(route, "the local model is busy with other requests")
                return .next
            }
        }
        defer { if route.isLocal { leaveLocal(route.key.provider) } }
        // Take the probe if a breaker is due for one.
        let providerKey = route.key.provider, modelKey = route.key.description
        let now = Clock.monotonic()
        var pb = r.breakers[providerKey] ?? CircuitBreaker(), mb = r.breakers[modelKey] ?? CircuitBreaker()
        let probing = pb.state != .closed || mb.state != .closed
        _ = pb.admit(now: now, configuration: generation)
        _ = mb.admit(now: now, configuration: generation)
        save(&r.breakers, providerKey, pb)
        save(&r.breakers, modelKey, mb)
        r.calls += 1
        guard let client else { return .giveUp }
        let callStart = Clock.monotonic()
        let timeouts = settings.silenceLimit.map { CallTimeouts(connect: $0, firstByte: $0, idle: $0) } ?? CallTimeouts.forRoute(route)
        let request = ModelRequest(model: route.key.model, messages: prompt, maxTokens: r.maxTokens, temperature: nil, context: route.context)
        switch await client.call(route, apiKey: apiKey, request: request, timeouts: timeouts, liveness: liveness) {
        case .success(let reply):
            pb.succeeded()
            mb.succeeded()
            save(&r.breakers, providerKey, pb)
            save(&r.breakers, modelKey, mb)
            return .answered(answered(route, reply, reservation: reservation, probing: probing, &r))
        case .failure(let failure):
            let kind = FailureClassifier.classify(failure)
            var why = Assistant.describe(failure)
            // Providers quote the key they were sent (OpenAI: its first and last characters); never pass it on.
            if let key = apiKey?.reveal(), key.count >= 8 { why = why.replacing(key, with: Secret.masked) }
            // A call cut in the middle of its reply was billed by the provider: keep the reservation.
            if let res = reservation {
                if case .midStream = failure { try? ledger.settle(res, cost: res.amount, usage: nil, estimated: true) } else { try? ledger.release(res) }
            }
            r.attempts.append(Attempt(route: modelKey, outcome: "failed", reason: why, milliseconds: Double(Clock.monotonic().since(callStart).nanoseconds) / 1e6))
            var transport = false
            if case .transport = failure { transport = true }
            if case .stalled = failure { transport = true }
            let opened: Bool
            if transport {
                opened = pb.failed(kind, now: Clock.monotonic(), configuration: generation, reason: why, local: route.isLocal)
                mb.succeeded()  // the model is not at fault; the provider's breaker holds it back
            } else {
                pb.succeeded()
                opened = mb.failed(kind, now: Clock.monotonic(), configuration: generation, reason: why, local: route.isLocal)
            }
            save(&r.breakers, providerKey, pb)
            save(&r.breakers, modelKey, mb)
            let wall = Clock.wallMilliseconds()
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
            if !kind.fallsBack { return .stop(.rejected(why, attempts: r.attempts)) }
            if case .throttled(let after) = kind, r.retry == nil, !r.retried {
                let wait = max(after ?? .seconds(1), .milliseconds(500))
                if wait <= Assistant.maxRetryWait {
                    // Jittered up to a quarter more: boxes told the same Retry-After do not return together.
                    r.retry = (route, wait + .milliseconds(Int64(Double(wait.components.seconds * 1000) * Double.random(in: 0...0.25))))
                }
            }
            return .next
        }
    }

    /// Why the route's breakers keep it out (nil: it may go). The route retried after its wait goes regardless.
    private func closedBy(_ route: ResolvedRoute, _ r: Request, generation: UInt64) -> String? {
        guard route.key != r.bypass else { return nil }
        let now = Clock.monotonic()
        if let b = r.breakers[route.key.provider], !b.isAvailable(now: now, configuration: generation) { return "provider off: \(Assistant.reason(b))" }
        if let b = r.breakers[route.key.description], !b.isAvailable(now: now, configuration: generation) { return "route off: \(Assistant.reason(b))" }
        return nil
    }

    enum Money {
        case free
        case reserved(Ledger.Reservation)
        case skip(String)
        case stop(AskFailure)
    }

    /// Money first: a cloud call under a budget is reserved in agent.db before it goes (one
    /// transaction among every process of the agent); one without a price is refused.
    private func reserve(_ route: ResolvedRoute, prompt: [ChatMessage], _ r: inout Request) -> Money {
        guard !route.isLocal && settings.policy.isLimited else { return .free }
        let name = route.key.description
        if let problem = ledgerProblem { return .skip("agent.db cannot be written (\(problem)); no cloud call without its ledger") }
        guard let price = settings.price(route) else {
            if ledger.firstNotice("unpriced:\(name)", wallMS: Clock.wallMilliseconds()) {
                ledger.record(kind: "route.unpriced", route: route.key, message: "\(name) has no price; it is not used while a budget is set", wallMS: Clock.wallMilliseconds())
            }
            return .skip("no price for this model, and a budget is set (add it to prices.toml)")
        }
        let estimate = CallCost.estimate(price, promptTokens: TokenEstimate.tokens(prompt), maxTokens: r.maxTokens)
        let outcome: Ledger.ReserveOutcome
        do { outcome = try ledger.reserve(estimate, policy: settings.policy, route: route.key, role: r.role, wallMS: Clock.wallMilliseconds()) } catch {
            // Money is not spent without its record: the local routes still answer.
            return .skip("agent.db cannot be written (\(error)); no cloud call without its ledger")
        }
        switch outcome {
        case .reserved(let res, let warnings):
            for w in warnings where ledger.firstNotice("budget.warn:\(w):\(w == "daily" ? res.period.day : res.period.month)", wallMS: Clock.wallMilliseconds()) {
                ledger.record(
                    kind: "budget.warning", route: nil,
                    message: "\(Int(settings.policy.warnAt * 100)) % of the \(w) cloud budget is spent", wallMS: Clock.wallMilliseconds())
            }
            return .reserved(res)
        case .refused(let decision):
            let why: String
            if case .exceeds(let period, let cap, _) = decision { why = "the \(period) cloud budget of \(cap) would be passed" } else { why = "over budget" }
            // A cap that this call would pass is, for every cloud route after it, reached.
            r.exhausted = why
            noticeExhausted(why)
            if settings.policy.whenExhausted == .refuse {
                r.skip(route, why)
                return .stop(.budgetExhausted(why, attempts: r.attempts))
            }
            return .skip(why)
        }
    }

    /// The answer of a call that succeeded: its cost settled, its fallbacks recorded.
    private func answered(_ route: ResolvedRoute, _ reply: CallReply, reservation: Ledger.Reservation?, probing: Bool, _ r: inout Request) -> Answer {
        let wall = Clock.wallMilliseconds()
        let name = route.key.description
        if probing { ledger.record(kind: "route.recovered", route: route.key, message: "\(name) answers again", wallMS: wall) }
        var cost = NanoUSD.zero, estimated = false
        let price = settings.price(route)
        if let res = reservation, let price {
            (cost, estimated) = CallCost.charge(price, usage: reply.usage, reserved: res.amount)
            try? ledger.settle(res, cost: cost, usage: reply.usage, estimated: estimated)
        } else {
            if let price, let u = reply.usage { cost = price.cost(inputTokens: u.inputTokens, outputTokens: u.outputTokens) }
            try? ledger.recordFree(route: route.key, role: r.role, usage: reply.usage, wallMS: wall)
        }
        r.attempts.append(Attempt(route: name, outcome: "answered", reason: nil, milliseconds: reply.totalMS))
        if r.attempts.count > 1 {
            let before = r.attempts.dropLast().map { "\($0.route): \($0.reason ?? $0.outcome)" }.joined(separator: "; ")
            ledger.record(kind: "route.fallback", route: route.key, message: "\(r.role.rawValue) answered by \(name) after \(before)", wallMS: wall)
        }
        return Answer(
            text: reply.text, role: r.role, route: route.key, attempts: r.attempts, usage: reply.usage, cost: cost, costEstimated: estimated,
            firstByteMS: reply.firstByteMS, totalMS: reply.totalMS)
    }

    // MARK: The local model, one request at a time

    /// How long a request waits for a busy local model when a later route could answer it, and when none could.
    static let localWaitWithFallback: Duration = .seconds(30)
    static let localWaitAlone: Duration = .seconds(300)
    private var busyLocal: Set<String> = []
    private var localWaiters: [String: [(id: Int, turn: CheckedContinuation<Bool, Never>)]] = [:]
    private var nextWaiter = 0

    /// Takes the local provider's one turn, waiting at most `wait` for it (false: not in time).
    func enterLocal(_ provider: String, wait: Duration) async -> Bool {
        guard busyLocal.contains(provider) else {
            busyLocal.insert(provider)
            return true
        }
        let id = nextWaiter
        nextWaiter += 1
        let timer = Task { [weak self] in
            try? await Task.sleep(for: wait)
            await self?.giveUpWaiting(provider, id)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { localWaiters[provider, default: []].append((id, $0)) }
    }

    /// Hands the turn to the longest waiter, or frees it.
    func leaveLocal(_ provider: String) {
        if var waiting = localWaiters[provider], !waiting.isEmpty {
            let first = waiting.removeFirst()
            localWaiters[provider] = waiting
            first.turn.resume(returning: true)
        } else {
            busyLocal.remove(provider)
        }
    }

    private func giveUpWaiting(_ provider: String, _ id: Int) {
        guard let i = localWaiters[provider]?.firstIndex(where: { $0.id == id }) else { return }
        localWaiters[provider]!.remove(at: i).turn.resume(returning: false)
    }

    /// One token from each local model the chains use, so that its weights are read into memory
    /// before the owner's first question (a cold model on flash takes seconds more). The agent
    /// and its model start together, so a model still loading (503) or not yet listening is
    /// asked again after 1, 2, 4 … s (at most 15 s apart) for up to `warmUpFor`. Not a request:
    /// no breaker, no event. What happened, a line per model.
    public func warmUp(for limit: Duration = Assistant.warmUpFor) async -> [String] {
        guard let client else { return [] }
        var done: Set<String> = []
        var said: [String] = []
        for role in LLMRole.allCases {
            for route in settings.table.chains[role] ?? [] where route.isLocal && done.insert(route.key.description).inserted {
                let start = Clock.monotonic()
                var delay: Duration = .seconds(1)
                while true {
                    guard await enterLocal(route.key.provider, wait: Assistant.localWaitWithFallback) else { break }
                    let request = ModelRequest(model: route.key.model, messages: [ChatMessage(.user, "Hello")], maxTokens: 1, temperature: nil, context: route.context)
                    let result = await client.call(
                        route, apiKey: route.apiKeySecret.flatMap(settings.secret), request: request, timeouts: CallTimeouts.forRoute(route), liveness: liveness)
                    leaveLocal(route.key.provider)
                    let ms = Clock.monotonic().since(start).nanoseconds / 1_000_000
                    if case .failure(let f) = result {
                        if Clock.monotonic().since(start) + delay <= limit {
                            try? await Task.sleep(for: delay)
                            delay = min(delay * 2, .seconds(15))
                            continue
                        }
                        said.append("\(route.key) not warmed up in \(ms) ms: \(Assistant.describe(f))")
                    } else {
                        said.append("\(route.key) warmed up in \(ms) ms")
                    }
                    break
                }
            }
        }
        return said
    }

    public static let warmUpFor: Duration = .seconds(300)

    // MARK: Conversations

    /// A conversation as kept in agent.db (empty when it cannot be read), once its folding
    /// under way, if any, is done: the next question of a conversation carries the summary.
    public func conversation(_ id: String) async -> Conversation {
        await compactions[id]?.value
        return kept(id)
    }

    private func kept(_ id: String) -> Conversation { (try? ledger.conversation(id)) ?? Conversation() }

    /// Keeps a question and its answer, then — without holding up the answer — folds the oldest
    /// turns into a summary by the local model once the conversation outgrows its chain's
    /// smallest context. The summary is the local model's or none: no cloud money is spent on
    /// memory; without a local model the oldest turns are dropped, as the prompt fit drops them.
    public func remember(_ id: String, role: LLMRole = .chat, question: String, answer: String) {
        try? ledger.append(id, question: question, answer: answer, wallMS: Clock.wallMilliseconds())
        guard !compacting.contains(id) else { return }
        compacting.insert(id)
        compactions[id] = Task { await self.compact(id, role: role) }
    }

    private var compacting: Set<String> = []
    private var compactions: [String: Task<Void, Never>] = [:]

    private func compact(_ id: String, role: LLMRole) async {
        defer {
            compacting.remove(id)
            compactions[id] = nil
        }
        let chain = settings.table.chains[role] ?? []
        guard let smallest = chain.map(\.context).min(), let local = chain.first(where: \.isLocal) else { return }
        // Each folding takes what the local model's context can read; a long backlog takes a few.
        for _ in 0..<4 {
            let c = kept(id)
            guard let plan = Compaction.plan(c, context: smallest, replyTokens: maxTokens, summarizerContext: local.context),
                case .success(let a) = await ask(
                    role: role, system: plan.request[0].content, message: plan.request[1].content, localOnly: true, maxTokens: plan.maxTokens)
            else { return }
            let summary = a.text.trimmingCharacters(in: " \n\t")
            guard !summary.isEmpty, (try? ledger.compact(id, through: plan.through, summary: summary, wallMS: Clock.wallMilliseconds())) != nil else { return }
            ledger.record(
                kind: "conversation.compacted", route: a.route,
                message: "\(id): \(plan.folded) messages folded into a summary of \(TokenEstimate.tokens(summary)) tokens", wallMS: Clock.wallMilliseconds())
        }
    }

    public func forget(_ id: String) { ledger.forget(id) }

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

import AIBoxCore

/// A provider and one of its models: what a breaker, a price and a ledger row are kept for.
public struct RouteKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var provider: String
    public var model: String

    public init(provider: String, model: String) {
        self.provider = provider
        self.model = model
    }

    public init(_ route: Route) { self.init(provider: route.provider, model: route.model) }

    public var description: String { "\(provider)/\(model)" }
    public static func < (a: RouteKey, b: RouteKey) -> Bool { (a.provider, a.model) < (b.provider, b.model) }
}

/// One step of a chain, with everything a call needs to know about it.
public struct ResolvedRoute: Equatable, Sendable {
    public var key: RouteKey
    public var kind: ProviderKind
    public var baseURL: String
    public var apiKeySecret: String?
    /// The context window in tokens: the route's `context`, else a default for its kind.
    public var context: Int
    /// Whether it runs on the box or the local network (costs no money).
    public var isLocal: Bool

    /// When a route names no context: llama.cpp's and Ollama's defaults are small (what the
    /// box's llama-server is started with); the cloud models of today take far more.
    public static func defaultContext(_ kind: ProviderKind) -> Int { kind.isLocal ? 4096 : 128_000 }
}

/// The chains each role is served by, as the agent runs them.
public struct RoutingTable: Equatable, Sendable {
    public var chains: [LLMRole: [ResolvedRoute]]

    public init(chains: [LLMRole: [ResolvedRoute]]) { self.chains = chains }

    /// The chains for box.toml's `[routing]` on a box of `tier`, local first where the
    /// hardware allows:
    /// - a role that box.toml gives a chain of two or more routes runs that chain as written;
    /// - `chat` without a chain of its own starts on the local model (when the tier is not
    ///   `none` and a local provider is configured) and goes on to its configured route or,
    ///   without one, the first cloud provider's first model;
    /// - `code` and `reasoning` run their configured route (`chat`'s when they have none)
    ///   and end on the local model as the last resort.
    /// Routes naming a provider or model box.toml does not have are left out (validation
    /// refuses such a file; this keeps the table sound whatever it is given).
    public static func build(routing: [LLMRole: [Route]], providers: [ProviderConfig], tier: LocalLLMTier) -> RoutingTable {
        // A context given anywhere in [routing] is that model's: the routes added here (the
        // local model first, the last resort) carry it too.
        var contexts: [RouteKey: Int] = [:]
        for r in routing.values.joined() { if let c = r.context, contexts[RouteKey(r)] == nil { contexts[RouteKey(r)] = c } }
        func resolve(_ r: Route) -> ResolvedRoute? {
            guard let p = providers.first(where: { $0.name == r.provider }), p.models.contains(r.model) else { return nil }
            return ResolvedRoute(
                key: RouteKey(r), kind: p.kind, baseURL: p.baseURL, apiKeySecret: p.apiKeySecret,
                context: r.context ?? contexts[RouteKey(r)] ?? ResolvedRoute.defaultContext(p.kind), isLocal: p.kind.isLocal)
        }
        func first(_ p: ProviderConfig) -> Route? { p.models.first.map { Route(provider: p.name, model: $0) } }
        let localProvider = providers.first { $0.kind.isLocal }
        let local = tier != .none ? localProvider.flatMap(first) : nil
        // Where nothing else is left, any local server (one on the network, say) still answers.
        let lastResort = local ?? localProvider.flatMap(first)
        let cloud = providers.first { !$0.kind.isLocal }.flatMap(first)

        var chains: [LLMRole: [Route]] = [:]
        let chat = routing[.chat] ?? []
        if chat.count >= 2 {
            chains[.chat] = chat
        } else {
            var c: [Route] = []
            if let local { c.append(local) }
            if let configured = chat.first { c.append(configured) } else if let cloud { c.append(cloud) }
            if local == nil, let lastResort { c.append(lastResort) }
            chains[.chat] = c
        }
        for role in [LLMRole.code, .reasoning] {
            let own = routing[role] ?? []
            if own.count >= 2 {
                chains[role] = own
                continue
            }
            var c = own.isEmpty ? Array(chat.prefix(1)) : own
            if c.isEmpty, let cloud { c.append(cloud) }
            if let lastResort { c.append(lastResort) }
            chains[role] = c
        }
        var out: [LLMRole: [ResolvedRoute]] = [:]
        for (role, routes) in chains {
            var seen = Set<RouteKey>()
            out[role] = routes.compactMap(resolve).filter { seen.insert($0.key).inserted }
        }
        return RoutingTable(chains: out)
    }

    /// The chain with only its local routes: what a role runs once the cloud budget is spent.
    public func localOnly(_ role: LLMRole) -> [ResolvedRoute] { (chains[role] ?? []).filter(\.isLocal) }
}

/// Rough token counts for sizing prompts and reserving budget before the provider says the
/// real figure: a token is about four bytes of English text, and each message carries a few
/// tokens of framing. Deliberately on the high side.
public enum TokenEstimate {
    public static func tokens(_ text: String) -> Int { (text.utf8.count + 3) / 4 }
    public static func tokens(_ messages: [ChatMessage]) -> Int { messages.reduce(0) { $0 + tokens($1.content) + 4 } + 3 }
}

/// The budget's view of a call: what to reserve before it, what to charge after it.
public enum CallCost {
    /// The reservation: the prompt's estimate with a fifth more for safety, and the whole
    /// reply allowance, at the route's price.
    public static func estimate(_ price: Price, promptTokens: Int, maxTokens: Int) -> NanoUSD {
        price.cost(inputTokens: promptTokens + promptTokens / 5, outputTokens: maxTokens)
    }

    /// The charge: the usage the provider reported, or (a stream without usage, a reply
    /// cut short) the reservation itself, never nothing.
    public static func charge(_ price: Price, usage: Usage?, reserved: NanoUSD) -> (NanoUSD, estimated: Bool) {
        guard let u = usage, u.inputTokens > 0 || u.outputTokens > 0 else { return (reserved, true) }
        return (price.cost(inputTokens: u.inputTokens, outputTokens: u.outputTokens), false)
    }
}

/// Sizes a conversation to a route: the system prompt, as much recent history as fits, and
/// the new message, leaving room for the reply.
public enum PromptFit {
    public enum Outcome: Equatable, Sendable {
        case fits([ChatMessage], droppedTurns: Int)
        /// The system prompt and the new message alone do not fit.
        case tooLong(needed: Int, context: Int)
    }

    public static func fit(system: String?, history: [ChatMessage], message: ChatMessage, context: Int, replyTokens: Int) -> Outcome {
        let head = system.map { [ChatMessage(.system, $0)] } ?? []
        let room = context - replyTokens
        let fixed = TokenEstimate.tokens(head + [message])
        guard fixed <= room else { return .tooLong(needed: fixed + replyTokens, context: context) }
        var kept: [ChatMessage] = []
        var used = fixed
        for m in history.reversed() {
            let t = TokenEstimate.tokens(m.content) + 4
            if used + t > room { break }
            used += t
            kept.append(m)
        }
        // Never start the kept history on an assistant turn: its question went with the cut.
        while kept.last?.role == .assistant { kept.removeLast() }
        return .fits(head + kept.reversed() + [message], droppedTurns: history.count - kept.count)
    }
}

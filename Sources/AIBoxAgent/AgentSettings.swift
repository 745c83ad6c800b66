import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem
import Crypto
import Glibc

extension Paths {
    public var agentPrices: String { under("usr/lib/aibox/agent/prices.toml") }
    public var agentPricesOverride: String { under("etc/aibox/agent/prices.toml") }
    public var agentDirectory: String { under("var/lib/aibox/work/agent") }
    public var agentDatabase: String { under("var/lib/aibox/work/agent/agent.db") }
    public var models: String { under("var/lib/aibox/models") }
}

/// A configuration the agent cannot run with: box.toml or prices.toml invalid or missing.
/// The worker exits 78 (EX_CONFIG) with it, and aibox parks it.
public struct AgentConfigError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// Everything the agent runs with, read once at start: box.toml, the price table, the
/// hardware tier, and where the secrets are.
public struct AgentSettings: Sendable {
    public var paths: Paths
    public var config: BoxConfig
    public var tier: LocalLLMTier
    public var table: RoutingTable
    public var prices: PriceTable
    public var policy: BudgetPolicy
    /// `$CREDENTIALS_DIRECTORY` when aibox started the agent, else the box's secrets.
    public var secretsDirectory: String
    /// For tests: one silence limit (connect, first byte, idle) for every route instead of
    /// the per-kind ones (`AGENT_SILENCE_SECONDS`).
    public var silenceLimit: Duration?
    /// aibox's control socket for this worker (`AIBOX_CONTROL_SOCKET`, from its definition's
    /// `control`); nil: the box's commands are not available over chat.
    public var controlSocket: String?

    public static func load(paths: Paths, environment: [String: String]) -> Result<AgentSettings, AgentConfigError> {
        // The copy aibox hands over (`box-config = true`: box.toml itself is root's), else box.toml.
        let credentials = environment["CREDENTIALS_DIRECTORY"].flatMap { $0.isEmpty ? nil : $0 }
        let path = credentials.map { $0 + "/box.toml" }.flatMap { fileExists($0) ? $0 : nil } ?? paths.boxConfig
        let bytes: [UInt8]
        do { bytes = try readRegularFile(path, limit: Seed.maxBytes) } catch {
            return .failure(AgentConfigError(description: "\(error) (the box is not set up yet? run `aibox setup`)"))
        }
        let config: BoxConfig
        switch BoxConfig.parse(text: String(decoding: bytes, as: UTF8.self), path: path) {
        case .success(let c): config = c
        case .failure(let e): return .failure(AgentConfigError(description: e.description))
        }
        var problems: [String] = []
        var prices = PriceTable()
        for file in [paths.agentPrices, paths.agentPricesOverride] {
            guard fileExists(file) else { continue }
            do {
                let text = String(decoding: try readRegularFile(file, limit: 1 << 20), as: UTF8.self)
                switch PriceTable.parse(text: text, path: file) {
                case .success(let t): prices = prices.overridden(by: t)
                case .failure(let e): problems.append(e.description)
                }
            } catch { problems.append("\(error)") }
        }
        guard problems.isEmpty else { return .failure(AgentConfigError(description: problems.joined(separator: "\n"))) }
        let tier = localTier(environment: environment)
        let table = RoutingTable.build(routing: config.routing, providers: config.providers, tier: tier)
        let secrets = credentials ?? paths.secrets
        return .success(
            AgentSettings(
                paths: paths, config: config, tier: tier, table: table, prices: prices, policy: BudgetPolicy(config.budget),
                secretsDirectory: secrets,
                silenceLimit: environment["AGENT_SILENCE_SECONDS"].flatMap(Double.init).map { .milliseconds(Int64($0 * 1000)) },
                controlSocket: environment["AIBOX_CONTROL_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }))
    }

    /// The local-LLM tier: `AGENT_LOCAL_LLM_TIER` when set (tests), else the hardware probe's.
    public static func localTier(environment: [String: String]) -> LocalLLMTier {
        environment["AGENT_LOCAL_LLM_TIER"].flatMap(LocalLLMTier.init(rawValue:)) ?? HardwareProbe.scan().profile.localLlmTier
    }

    /// A secret's value, or nil when its file is absent or unreadable (the route then fails
    /// as unauthorised, which the breaker remembers until the configuration changes).
    public func secret(_ name: String) -> Secret? {
        guard let bytes = try? readRegularFile(secretsDirectory + "/" + name, limit: 64 << 10, followSymlinks: false) else { return nil }
        var s = String(decoding: bytes, as: UTF8.self)
        while s.hasSuffix("\n") || s.hasSuffix("\r") { s.removeLast() }
        return s.isEmpty ? nil : Secret(s)
    }

    /// What a provider's breakers remember it by: when any of it changes (its URL, its key),
    /// a provider that was switched off for bad configuration is tried again. The key enters
    /// only as a SHA-256 digest.
    public func configurationHash(provider name: String) -> UInt64 {
        configurationHash(provider: name, key: config.provider(named: name)?.apiKeySecret.flatMap(secret))
    }

    /// The same, with the provider's key already read.
    public func configurationHash(provider name: String, key: Secret?) -> UInt64 {
        guard let p = config.provider(named: name) else { return 0 }
        let key = key.map { SHA256.hash(data: Array($0.reveal().utf8)).map { String($0, radix: 16) }.joined() } ?? ""
        return stableHash([p.kind.rawValue, p.baseURL, p.models.joined(separator: ","), key])
    }

    public func price(_ route: ResolvedRoute) -> Price? {
        route.isLocal ? Price(inputPerMillion: 0, outputPerMillion: 0) : prices.price(provider: route.key.provider, kind: route.kind, model: route.key.model)
    }
}

extension BudgetPolicy {
    /// box.toml's `[budget]` (none: no cap).
    public init(_ b: BudgetConfig?) {
        guard let b else {
            self.init()
            return
        }
        self.init(
            daily: b.dailyUSD.flatMap(NanoUSD.init(dollars:)), monthly: b.monthlyUSD.flatMap(NanoUSD.init(dollars:)), warnAt: b.warnAt,
            whenExhausted: b.whenExhausted)
    }
}

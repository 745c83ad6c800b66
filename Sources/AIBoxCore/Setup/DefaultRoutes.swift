// Where chat goes when setup is given no chain: local first (a local model sized by the
// hardware tier, or a local server configured), ending in the cloud when a cloud provider is
// configured. Code and reasoning are left to the agent, which derives them at run time.

/// The model the box runs itself when the hardware can: llama.cpp's `llama-server` (the
/// image's `llm-local` worker) on the box, with GGUF weights sized by the local-LLM tier
/// (4-bit K-quants; docs/HARDWARE.md has the tiers).
public enum LocalModel {
    public static let providerName = "local"
    public static let kind = ProviderKind.llamacpp
    public static let baseURL = ProviderKind.llamacpp.defaultBaseURL

    /// small: `qwen2.5-3b-instruct-q4_k_m` (≈ 2 GiB), medium: `llama-3.1-8b-instruct-q4_k_m`
    /// (≈ 5 GiB), large: `qwen2.5-32b-instruct-q4_k_m` (≈ 20 GiB); none: no local model.
    public static func model(for tier: LocalLLMTier) -> String? {
        switch tier {
        case .none: return nil
        case .small: return "qwen2.5-3b-instruct-q4_k_m"
        case .medium: return "llama-3.1-8b-instruct-q4_k_m"
        case .large: return "qwen2.5-32b-instruct-q4_k_m"
        }
    }
}

extension BoxConfig {
    /// The chain `chat` gets when none is given:
    /// - its local route, first rule that applies: a provider of a local kind (ollama,
    ///   llamacpp) is configured: its first model; else the tier is not `none`: a new provider
    ///   `local` (llama.cpp at 127.0.0.1:8080, `LocalModel`) with the tier's model, named
    ///   `local-2`, `local-3`, … if `local` is taken;
    /// - its cloud route: the first provider of another kind, its first model;
    /// - the chain: the local route first, then the cloud route (either alone when the other
    ///   is missing); nil when both are.
    public static func defaultChatChain(
        providers: [ProviderConfig], tier: LocalLLMTier
    ) -> (chain: [Route], adding: ProviderConfig?)? {
        var local: Route?
        var adding: ProviderConfig?
        if let p = providers.first(where: { $0.kind.isLocal }), let m = p.models.first {
            local = Route(provider: p.name, model: m)
        } else if let model = LocalModel.model(for: tier) {
            var name = LocalModel.providerName
            var n = 2
            while providers.contains(where: { $0.name == name }) {
                name = "\(LocalModel.providerName)-\(n)"
                n += 1
            }
            adding = ProviderConfig(name: name, kind: LocalModel.kind, baseURL: LocalModel.baseURL, models: [model])
            local = Route(provider: name, model: model)
        }
        let cloud = providers.first { !$0.kind.isLocal }.flatMap { p in p.models.first.map { Route(provider: p.name, model: $0) } }
        let chain = [local, cloud].compactMap { $0 }
        return chain.isEmpty ? nil : (chain, adding)
    }

    /// Gives `chat` its default chain (`defaultChatChain`) when it has none.
    public mutating func applyDefaultRoutes(tier: LocalLLMTier) {
        guard routing[.chat] == nil, let d = BoxConfig.defaultChatChain(providers: providers, tier: tier) else { return }
        if let p = d.adding { providers.append(p) }
        routing[.chat] = d.chain
    }
}

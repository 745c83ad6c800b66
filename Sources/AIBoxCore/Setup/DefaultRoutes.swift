// Where chat goes when setup is given no route: a local model sized by the hardware tier, or
// the first provider configured.

/// The local model setup routes `chat` to when no route is given and the hardware can run
/// one: Ollama on the box itself, with a model sized by the local-LLM tier (4-bit quantised
/// as Ollama ships them; docs/HARDWARE.md has the tiers).
public enum LocalModel {
    public static let providerName = "local"
    public static let baseURL = ProviderKind.ollama.defaultBaseURL

    /// small: `qwen2.5:3b` (≈ 2 GiB), medium: `llama3.1:8b` (≈ 5 GiB), large: `qwen2.5:32b`
    /// (≈ 20 GiB); none: no local model.
    public static func model(for tier: LocalLLMTier) -> String? {
        switch tier {
        case .none: return nil
        case .small: return "qwen2.5:3b"
        case .medium: return "llama3.1:8b"
        case .large: return "qwen2.5:32b"
        }
    }
}

extension BoxConfig {
    /// Where `chat` goes when no route is given, first rule that applies:
    /// 1. a provider of a local kind (ollama, llamacpp) is configured: its first model;
    /// 2. the tier is not `none`: a new provider `local` (Ollama at 127.0.0.1:11434) with the
    ///    tier's model (`LocalModel`), named `local-2`, `local-3`, … if `local` is taken;
    /// 3. any provider is configured: the first one's first model;
    /// 4. otherwise no route.
    public static func defaultChatRoute(
        providers: [ProviderConfig], tier: LocalLLMTier
    ) -> (route: Route, adding: ProviderConfig?)? {
        if let p = providers.first(where: { $0.kind.isLocal }), let m = p.models.first {
            return (Route(provider: p.name, model: m), nil)
        }
        if let model = LocalModel.model(for: tier) {
            var name = LocalModel.providerName
            var n = 2
            while providers.contains(where: { $0.name == name }) {
                name = "\(LocalModel.providerName)-\(n)"
                n += 1
            }
            let p = ProviderConfig(name: name, kind: .ollama, baseURL: LocalModel.baseURL, models: [model])
            return (Route(provider: name, model: model), p)
        }
        if let p = providers.first, let m = p.models.first { return (Route(provider: p.name, model: m), nil) }
        return nil
    }

    /// Gives `chat` its default route (`defaultChatRoute`) when it has none.
    public mutating func applyDefaultRoutes(tier: LocalLLMTier) {
        guard routing[.chat] == nil, let d = BoxConfig.defaultChatRoute(providers: providers, tier: tier) else { return }
        if let p = d.adding { providers.append(p) }
        routing[.chat] = d.route
    }
}

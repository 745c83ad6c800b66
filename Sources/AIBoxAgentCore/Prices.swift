import AIBoxCore

/// What cloud models cost: `prices.toml`, one table per provider kind (`openai`,
/// `anthropic`) or per provider name from box.toml (which wins), each model's price in US
/// dollars per million input and output tokens:
///
///     [openai]
///     "gpt-4o-mini" = { input = 0.15, output = 0.60 }
///
/// The agent's file ships with it (`usr/lib/aibox/agent/prices.toml`); a file in
/// `etc/aibox/agent/prices.toml` overrides it model by model.
public struct PriceTable: Equatable, Sendable {
    public private(set) var prices: [String: [String: Price]] = [:]

    public init() {}

    public struct Problem: Error, Equatable, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// Reads one file; every problem is reported with the file, line and key.
    public static func parse(text: String, path: String) -> Result<PriceTable, Problem> {
        let doc: TOMLTable
        do { doc = try TOMLTable(string: text) } catch { return .failure(Problem(description: "\(path):\(error.position.line): \(error.description)")) }
        var table = PriceTable()
        var problems: [String] = []
        for provider in doc.keys {
            guard let models = doc[provider]?.table else {
                problems.append("\(path):\(doc.line(of: provider) ?? 0): \(provider): expected a table of models, like [\(provider)]")
                continue
            }
            for model in models.keys {
                let at = "\(path):\(doc.line(of: [provider, model]) ?? 0): \(provider).\(model)"
                guard let entry = models[model]?.table else {
                    problems.append("\(at): expected { input = USD per million input tokens, output = USD per million output tokens }")
                    continue
                }
                func dollars(_ key: String) -> Double? {
                    switch entry[key] {
                    case .int(let i)?: return Double(i)
                    case .double(let d)?: return d
                    default: return nil
                    }
                }
                let unknown = entry.keys.filter { $0 != "input" && $0 != "output" }
                if !unknown.isEmpty { problems.append("\(at): unknown key \(unknown[0]) (the keys are input and output)") }
                guard let i = dollars("input"), let o = dollars("output"),
                    let price = Price(inputPerMillion: i, outputPerMillion: o)
                else {
                    problems.append("\(at): input and output must be numbers of US dollars per million tokens, 0 or more, like { input = 0.15, output = 0.60 }")
                    continue
                }
                table.prices[provider, default: [:]][model] = price
            }
        }
        return problems.isEmpty ? .success(table) : .failure(Problem(description: problems.joined(separator: "\n")))
    }

    /// `other`'s prices over these, model by model.
    public func overridden(by other: PriceTable) -> PriceTable {
        var out = self
        for (provider, models) in other.prices {
            for (model, price) in models { out.prices[provider, default: [:]][model] = price }
        }
        return out
    }

    /// The price of a model: by the provider's name first, then by its kind.
    public func price(provider: String, kind: ProviderKind, model: String) -> Price? {
        prices[provider]?[model] ?? prices[kind.rawValue]?[model]
    }
}

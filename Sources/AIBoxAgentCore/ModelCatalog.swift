import AIBoxCore

/// One model the box can pull: where its GGUF weights are, what they hash to, how large
/// they are, and which hardware tiers take it as their default.
public struct ModelEntry: Equatable, Sendable {
    public var name: String
    public var url: String
    /// Lower-case hex, 64 digits.
    public var sha256: String
    /// Bytes of the file; nil when not known (a model named on the command line).
    public var size: UInt64?
    /// Tokens of context the model is run with (information for the owner; the worker's
    /// `-c` sets it).
    public var context: Int?
    /// Local-LLM tiers whose default model this is.
    public var defaultFor: [LocalLLMTier]
    /// "FILE:LINE" of its table, for messages.
    public var source: String

    public init(
        name: String, url: String, sha256: String, size: UInt64?, context: Int? = nil, defaultFor: [LocalLLMTier] = [], source: String = ""
    ) {
        self.name = name
        self.url = url
        self.sha256 = sha256
        self.size = size
        self.context = context
        self.defaultFor = defaultFor
        self.source = source
    }
}

/// The model catalog: `models.toml`, one table per model.
///
///     [models."qwen2.5-3b-instruct-q4_k_m"]
///     url = "https://…/qwen2.5-3b-instruct-q4_k_m.gguf"
///     sha256 = "…64 hex digits…"
///     size = 2104932768
///     context = 32768
///     default-for = ["small"]
///
/// The agent's file ships with it (`usr/lib/aibox/agent/models.toml`); one in
/// `etc/aibox/agent/models.toml` adds models or replaces them by name, and its
/// `default-for` wins over the shipped one's.
public struct ModelCatalog: Equatable, Sendable {
    public private(set) var entries: [String: ModelEntry] = [:]

    public init(_ entries: [ModelEntry] = []) {
        for e in entries { self.entries[e.name] = e }
    }

    public struct Problem: Error, Equatable, Sendable, CustomStringConvertible {
        public var description: String
    }

    static let keys = ["url", "sha256", "size", "context", "default-for"]

    /// Reads one file; every problem is reported with the file, line and key.
    public static func parse(text: String, path: String) -> Result<ModelCatalog, Problem> {
        let doc: TOMLTable
        do { doc = try TOMLTable(string: text) } catch {
            return .failure(Problem(description: "\(path):\(error.position.line): not valid TOML: \(error.description)"))
        }
        var problems: [String] = []
        var catalog = ModelCatalog()
        for key in doc.keys where key != "models" {
            problems.append("\(path):\(doc.line(of: key) ?? 0): \(key): unknown key; models are tables [models.\"NAME\"]")
        }
        guard let value = doc["models"] else {
            return problems.isEmpty ? .success(catalog) : .failure(Problem(description: problems.joined(separator: "\n")))
        }
        guard let models = value.table else {
            problems.append("\(path):\(doc.line(of: "models") ?? 0): models: expected tables such as [models.\"NAME\"]")
            return .failure(Problem(description: problems.joined(separator: "\n")))
        }
        var tierOwner: [LocalLLMTier: String] = [:]
        for name in models.keys {
            let line = doc.line(of: ["models", name]) ?? doc.line(of: "models") ?? 0
            let at = "\(path):\(line): models.\(name)"
            func keyAt(_ key: String) -> String { "\(path):\(doc.line(of: ["models", name, key]) ?? line): models.\(name).\(key)" }
            if let p = ModelName.problem(name) { problems.append("\(at): \(p)") }
            guard let t = models[name]?.table else {
                problems.append("\(at): expected a table with url, sha256 and size")
                continue
            }
            for k in t.keys where !keys.contains(k) {
                problems.append("\(keyAt(k)): unknown key (the keys are \(keys.joined(separator: ", ")))")
            }
            var entry = ModelEntry(name: name, url: "", sha256: "", size: nil, source: "\(path):\(line)")
            var complete = true
            if let url = t["url"]?.string {
                if let p = ModelURL.problem(url) { problems.append("\(keyAt("url")): \(p)"); complete = false } else { entry.url = url }
            } else {
                problems.append("\(keyAt("url")): \(t["url"] == nil ? "missing" : "must be a string"); the http(s) URL of the GGUF file")
                complete = false
            }
            if let sha = t["sha256"]?.string, let hex = ModelHash.normalized(sha) {
                entry.sha256 = hex
            } else {
                problems.append("\(keyAt("sha256")): \(t["sha256"] == nil ? "missing" : "not a SHA-256"); 64 hex digits, as sha256sum prints")
                complete = false
            }
            if let size = t["size"]?.int, size > 0 {
                entry.size = UInt64(size)
            } else {
                problems.append("\(keyAt("size")): \(t["size"] == nil ? "missing" : "must be a whole number above 0"); the file's size in bytes")
                complete = false
            }
            if let c = t["context"] {
                if let n = c.int, n > 0 { entry.context = n } else { problems.append("\(keyAt("context")): must be a number of tokens above 0, like 4096") }
            }
            if let d = t["default-for"] {
                let tiers = d.array?.map { $0.string.flatMap(LocalLLMTier.init(rawValue:)) }
                if let tiers, tiers.allSatisfy({ $0 != nil && $0 != LocalLLMTier.none }) {
                    entry.defaultFor = tiers.compactMap { $0 }
                } else {
                    problems.append("\(keyAt("default-for")): must be an array of tiers among \"small\", \"medium\", \"large\", like [\"small\"]")
                }
            }
            for tier in entry.defaultFor {
                if let other = tierOwner[tier] {
                    problems.append("\(keyAt("default-for")): \(other) is already the default for \(tier.rawValue); one model per tier")
                } else {
                    tierOwner[tier] = name
                }
            }
            if complete { catalog.entries[name] = entry }
        }
        return problems.isEmpty ? .success(catalog) : .failure(Problem(description: problems.joined(separator: "\n")))
    }

    /// `other`'s models over these, by name; a tier `other` names a default for leaves this
    /// catalog's default for it.
    public func overridden(by other: ModelCatalog) -> ModelCatalog {
        var out = self
        let claimed = Set(other.entries.values.flatMap(\.defaultFor))
        for name in out.entries.keys { out.entries[name]!.defaultFor.removeAll { claimed.contains($0) } }
        for (name, e) in other.entries { out.entries[name] = e }
        return out
    }

    public func entry(_ name: String) -> ModelEntry? { entries[name] }

    /// The model a tier pulls when `pull` is given no name.
    public func defaultModel(for tier: LocalLLMTier) -> ModelEntry? {
        entries.values.sorted { $0.name < $1.name }.first { $0.defaultFor.contains(tier) }
    }

    public var sorted: [ModelEntry] { entries.values.sorted { $0.name < $1.name } }
}

/// What a model may be called: its file is `NAME.gguf` in the models directory.
public enum ModelName {
    /// Why `name` cannot name a model, or nil when it can: 1–128 of letters, digits, `.`,
    /// `_`, `-`, `:`, not starting with `.` or `-`, not `default` (the link to the default).
    public static func problem(_ name: String) -> String? {
        if name.isEmpty { return "a model needs a name" }
        if name.utf8.count > 128 { return "\(name.utf8.count) characters; a model's name has at most 128" }
        if name == "default" { return "\"default\" is the link to the default model, not a model's name" }
        if name.hasPrefix(".") || name.hasPrefix("-") { return "\"\(name)\" may not start with \(name.first!)" }
        let allowed = name.unicodeScalars.allSatisfy { c in
            (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || c == "." || c == "_" || c == "-" || c == ":"
        }
        if !allowed { return "\"\(name)\" is not a model name: letters, digits, '.', '_', '-' and ':' only" }
        if name.hasSuffix(".gguf") { return "\"\(name)\": name it without .gguf (the file is NAME.gguf)" }
        return nil
    }
}

/// A model's download URL: http or https (the SHA-256 is what is trusted, not the transport).
public enum ModelURL {
    public static func problem(_ url: String) -> String? {
        let lower = url.lowercased()
        guard lower.hasPrefix("https://") || lower.hasPrefix("http://") else {
            return "\"\(url)\" is not an http(s) URL; like \"https://example.com/model.gguf\""
        }
        let rest = url.drop { $0 != "/" }.dropFirst(2)
        if rest.isEmpty || rest.hasPrefix("/") { return "\"\(url)\" names no host" }
        if url.contains(where: { $0 == " " || $0 == "\n" || $0 == "\t" }) { return "\"\(url)\" contains white space" }
        return nil
    }
}

/// SHA-256 digests as text.
public enum ModelHash {
    /// 64 hex digits, lower-cased; nil for anything else.
    public static func normalized(_ text: String) -> String? {
        let t = text.lowercased()
        guard t.utf8.count == 64, t.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) else { return nil }
        return t
    }

    /// The first 12 digits, for lists.
    public static func short(_ hex: String) -> String { String(hex.prefix(12)) }
}

/// Whether a download fits on its file system.
public enum DiskSpace {
    /// What must stay free after a download: 5 % of the file system, at most 256 MiB (a
    /// full data partition stops the databases and the logs, not just the download).
    public static func margin(total: UInt64) -> UInt64 { min(total / 20, 256 << 20) }

    /// nil when `needed` more bytes leave the margin free; else the refusal, naming the sizes.
    public static func refusal(needed: UInt64, free: UInt64, total: UInt64, directory: String) -> String? {
        let keep = margin(total: total)
        guard needed > free || free - needed < keep else { return nil }
        return "not enough space in \(directory): the download needs \(ByteSize.text(needed)) (\(needed) bytes), "
            + "\(ByteSize.text(free)) are free, and \(ByteSize.text(keep)) must stay free; nothing was downloaded"
    }
}

/// Byte counts as people read them.
public enum ByteSize {
    /// "812 B", "1.5 KiB", "98.0 MiB", "4.37 GiB".
    public static func text(_ bytes: UInt64) -> String {
        let units = ["KiB", "MiB", "GiB", "TiB"]
        if bytes < 1024 { return "\(bytes) B" }
        var value = Double(bytes) / 1024
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        let digits = unit >= 2 ? 2 : 1
        return fixed(value, digits: digits) + " " + units[unit]
    }

    /// A number with `digits` decimals, without Foundation's formatting.
    static func fixed(_ v: Double, digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let n = UInt64((v * scale).rounded())
        let whole = n / UInt64(scale)
        var fraction = String(n % UInt64(scale))
        while fraction.count < digits { fraction = "0" + fraction }
        return digits == 0 ? "\(whole)" : "\(whole).\(fraction)"
    }
}

/// The one line a pull updates on a terminal.
public enum PullProgress {
    /// "NAME  45%  1.20 GiB of 2.00 GiB  12.3 MiB/s", cut to `width` columns; without a total,
    /// the bytes so far.
    public static func line(name: String, done: UInt64, total: UInt64?, bytesPerSecond: Double?, width: Int = TextLayout.width) -> String {
        var parts: [String] = []
        if let total, total > 0 {
            let percent = min(100, Int(Double(done) * 100 / Double(total)))
            parts.append("\(percent)%")
            parts.append("\(ByteSize.text(done)) of \(ByteSize.text(total))")
        } else {
            parts.append(ByteSize.text(done))
        }
        if let r = bytesPerSecond, r > 0 { parts.append(ByteSize.text(UInt64(r)) + "/s") }
        let tail = parts.joined(separator: "  ")
        let room = max(0, width - 1 - tail.count - 2)
        let head = name.count > room ? String(name.prefix(max(0, room - 1))) + "…" : name
        return fitColumns(head + "  " + tail, width: width - 1)
    }
}

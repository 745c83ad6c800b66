import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem
import FoundationEssentials
import Glibc

/// One model in `models list --json`.
public struct ModelView: Encodable {
    var name: String
    /// Its file is in the models directory.
    var pulled: Bool
    var size: UInt64?
    var sha256: String?
    /// A verified hash is recorded beside the file.
    var verified: Bool
    /// `default.gguf` points to it.
    var isDefault: Bool
    var inCatalog: Bool
    var defaultFor: [String]
    var context: Int?
    /// Bytes of an unfinished download (resumed by the next pull).
    var partialBytes: UInt64?
}

/// `models list --json`.
public struct ModelListReport: Encodable {
    var directory: String
    /// What `default.gguf` points to (nil: no link), and whether a model file is there.
    var defaultTarget: String?
    var defaultUsable: Bool
    var tier: String
    var models: [ModelView]
}

/// `models pull --json` and `models remove --json`.
public struct ModelActionReport: Encodable {
    var ok: Bool
    var error: String?
    var name: String?
    var path: String?
    var size: UInt64?
    var sha256: String?
    var resumedFrom: UInt64?
    var alreadyPresent: Bool?
    var isDefault: Bool?
    var removed: Bool?
}

extension AgentConsole {
    static func modelStore(_ paths: Paths) -> ModelStore { ModelStore(directory: paths.models) }

    static func fail(_ e: ModelError, json: Bool) -> Int32 {
        if json { printJSON(ModelActionReport(ok: false, error: e.description)) } else { writeStandardError("aibox-agent: \(e)\n") }
        return e.code
    }

    /// `aibox-agent models list`: the models on the box, then the catalog's not pulled yet.
    public static func modelsList(root: String, json: Bool) -> Int32 {
        let paths = Paths(root: root)
        let catalog: ModelCatalog
        switch ModelCatalog.load(paths) {
        case .success(let c): catalog = c
        case .failure(let e): return fail(e, json: json)
        }
        let store = modelStore(paths)
        let tier = AgentSettings.localTier(environment: currentEnvironment())
        let target = store.defaultTarget()
        var views: [ModelView] = store.installed().map { m in
            let e = catalog.entry(m.name)
            return ModelView(
                name: m.name, pulled: true, size: m.size, sha256: m.sha256, verified: m.sha256 != nil, isDefault: target?.model == m.name,
                inCatalog: e != nil, defaultFor: e?.defaultFor.map(\.rawValue) ?? [], context: e?.context, partialBytes: store.partialBytes(m.name))
        }
        for e in catalog.sorted where !views.contains(where: { $0.name == e.name }) {
            views.append(
                ModelView(
                    name: e.name, pulled: false, size: e.size, sha256: e.sha256, verified: false, isDefault: false, inCatalog: true,
                    defaultFor: e.defaultFor.map(\.rawValue), context: e.context, partialBytes: store.partialBytes(e.name)))
        }
        if json {
            printJSON(
                ModelListReport(
                    directory: store.directory, defaultTarget: target?.target, defaultUsable: target?.usable ?? false, tier: tier.rawValue,
                    models: views))
            return 0
        }
        var out = ["  " + pad("MODEL", 30) + " " + pad("SIZE", 9) + " " + pad("SHA256", 12) + " STATE [DEFAULT FOR]"]
        for v in views {
            var state = v.pulled ? (v.verified ? "pulled" : "pulled, unverified") : "not pulled"
            if let p = v.partialBytes, let s = v.size, s > 0 {
                state = "partial \(min(99, Int(Double(p) * 100 / Double(s))))%"
            } else if let p = v.partialBytes {
                state = "partial \(ByteSize.text(p))"
            }
            if !v.defaultFor.isEmpty { state += " [\(v.defaultFor.joined(separator: ", "))]" }
            let line =
                (v.isDefault ? "* " : "  ") + pad(fitColumns(v.name, width: 30), 30) + " " + pad(v.size.map(ByteSize.text) ?? "?", 9) + " "
                + pad(v.sha256.map(ModelHash.short) ?? "-", 12) + " " + state
            out.append(fitColumns(line, width: TextLayout.width))
        }
        if views.isEmpty { out.append("  (no models here, none in the catalog)") }
        if let t = target {
            out.append(fitColumns("default.gguf → \(t.target)\(t.usable ? "" : " (missing: the local model waits for it)")", width: TextLayout.width))
        } else {
            out.append("no default.gguf: the local model waits for one (`aibox-agent models pull`)")
        }
        writeStandardOutput(out.joined(separator: "\n") + "\n")
        return 0
    }

    static func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }

    /// `aibox-agent models pull [NAME]`: no name pulls the hardware tier's default model.
    public static func modelsPull(
        root: String, name: String?, url: String?, sha256: String?, size: UInt64?, makeDefault: Bool, json: Bool
    ) -> Int32 {
        let paths = Paths(root: root)
        let catalog: ModelCatalog
        switch ModelCatalog.load(paths) {
        case .success(let c): catalog = c
        case .failure(let e): return fail(e, json: json)
        }
        let catalogFiles = "\(paths.agentModelCatalog) or \(paths.agentModelCatalogOverride)"
        var entry: ModelEntry
        if let name {
            if let p = ModelName.problem(name) { return fail(ModelError(p, code: AgentExit.usage), json: json) }
            if let e = catalog.entry(name) {
                if url != nil || sha256 != nil || size != nil {
                    return fail(
                        ModelError(
                            "\(name) is in the catalog (\(e.source)): --url, --sha256 and --size are for models that are not",
                            code: AgentExit.usage), json: json)
                }
                entry = e
            } else {
                guard let url, let sha256 else {
                    return fail(
                        ModelError(
                            "\(name) is not in the catalog (\(catalogFiles)); name its file with --url URL --sha256 HEX "
                                + "(and --size BYTES for the disk space check)", code: AgentExit.usage), json: json)
                }
                if let p = ModelURL.problem(url) { return fail(ModelError("--url: \(p)", code: AgentExit.usage), json: json) }
                guard let hex = ModelHash.normalized(sha256) else {
                    return fail(
                        ModelError("--sha256: \"\(sha256)\" is not a SHA-256 (64 hex digits, as sha256sum prints)", code: AgentExit.usage),
                        json: json)
                }
                entry = ModelEntry(name: name, url: url, sha256: hex, size: size)
            }
        } else {
            if url != nil || sha256 != nil || size != nil {
                return fail(ModelError("--url, --sha256 and --size need the model's NAME", code: AgentExit.usage), json: json)
            }
            let tier = AgentSettings.localTier(environment: currentEnvironment())
            guard tier != .none else {
                return fail(
                    ModelError("this box's hardware has no local-LLM tier (none): it runs no local model; name a model to pull one anyway"),
                    json: json)
            }
            guard let e = catalog.defaultModel(for: tier) else {
                return fail(ModelError("the catalog names no default model for the \(tier.rawValue) tier (\(catalogFiles))"), json: json)
            }
            entry = e
        }
        let store = modelStore(paths)
        let setDefault = name == nil || makeDefault || !(store.defaultTarget()?.usable ?? false)
        let progress = PullTerminal(name: entry.name, tty: !json && isTerminal(2))
        if !json {
            writeStandardError("pulling \(entry.name) from \(entry.url)\(entry.size.map { " (\(ByteSize.text($0)))" } ?? "")\n")
        }
        let result: ModelStore.Pulled
        do {
            result = try store.pull(entry, makeDefault: setDefault, downloader: Downloader(url: entry.url, userAgent: "aibox-agent/\(AIBoxVersion.current)")) {
                progress.report($0)
            }
        } catch {
            progress.end()
            return fail(error, json: json)
        }
        progress.end()
        if json {
            printJSON(
                ModelActionReport(
                    ok: true, name: result.name, path: result.path, size: result.size, sha256: result.sha256, resumedFrom: result.resumedFrom,
                    alreadyPresent: result.alreadyPresent, isDefault: result.madeDefault || store.defaultTarget()?.model == result.name))
        } else {
            var text = result.alreadyPresent ? "\(result.name) is already here" : "pulled \(result.name)"
            text += ": \(result.path), \(ByteSize.text(result.size)), sha256 \(result.sha256)"
            if result.resumedFrom > 0 { text += " (resumed at byte \(result.resumedFrom))" }
            if result.madeDefault {
                text += "; default.gguf → \(result.name).gguf (the local model serves it from its next start: `aibox restart llm-local`)"
            }
            writeStandardOutput(TextLayout.wrap(text).joined(separator: "\n") + "\n")
        }
        return 0
    }

    /// `aibox-agent models remove NAME [--force]`.
    public static func modelsRemove(root: String, name: String, force: Bool, json: Bool) -> Int32 {
        let store = modelStore(Paths(root: root))
        do {
            let r = try store.remove(name, force: force)
            if json {
                printJSON(ModelActionReport(ok: true, name: name, path: store.file(name), isDefault: r.removedDefault, removed: r.removedFile))
            } else {
                var text = r.removedFile ? "removed \(name) (\(store.file(name)))" : "removed the partial download of \(name)"
                if r.removedDefault { text += "; default.gguf removed with it: the local model waits for a new default" }
                writeStandardOutput(TextLayout.wrap(text).joined(separator: "\n") + "\n")
            }
            return 0
        } catch {
            return fail(error, json: json)
        }
    }
}

/// A pull's progress on standard error: on a terminal one line rewritten in place at most
/// four times a second (80 columns, carriage return only: serial consoles too); elsewhere
/// only the retries and resumptions, one line each.
final class PullTerminal: @unchecked Sendable {
    let name: String
    let tty: Bool
    let started = Clock.monotonic()
    var lastDraw: Instant?
    var drawn = false
    var resumedFrom: UInt64 = 0

    init(name: String, tty: Bool) {
        self.name = name
        self.tty = tty
    }

    func report(_ r: ModelStore.PullReport) {
        switch r {
        case .progress(let done, let total):
            guard tty else { return }
            let now = Clock.monotonic()
            if let last = lastDraw, now.since(last) < .milliseconds(250), done != total { return }
            lastDraw = now
            let seconds = Double(now.since(started).milliseconds) / 1000
            let rate = seconds > 0.5 ? Double(done - min(done, resumedFrom)) / seconds : nil
            let line = PullProgress.line(name: name, done: done, total: total, bytesPerSecond: rate)
            writeStandardError("\r" + AgentConsole.pad(line, TextLayout.width - 1))
            drawn = true
        case .retry(let retry):
            end()
            writeStandardError("aibox-agent: \(retry)\n")
        case .resuming(let from):
            resumedFrom = from
            end()
            writeStandardError("resuming the download at byte \(from)\n")
        }
    }

    /// Ends the progress line, if one is drawn.
    func end() {
        if drawn { writeStandardError("\n") }
        drawn = false
    }
}

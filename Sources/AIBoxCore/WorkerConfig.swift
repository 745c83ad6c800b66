/// One problem in a worker definition file: where (file, line, key), what is wrong, and
/// what would be right.
public struct ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    public var location: SourceLocation
    public var key: String?
    public var message: String

    public init(file: String, line: Int?, key: String?, message: String) {
        self.location = SourceLocation(file: file, line: line)
        self.key = key
        self.message = message
    }

    public var description: String {
        var s = location.description + ": "
        if let key { s += "\(key): " }
        return s + message
    }
}

/// All the problems found, reported at once.
public struct ConfigErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [ConfigError]
    public init(_ errors: [ConfigError]) { self.errors = errors }
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}

/// A file's text, as read by the caller (the parser does no I/O).
public struct ConfigFile: Sendable {
    public var path: String
    public var text: String
    public init(path: String, text: String) {
        self.path = path
        self.text = text
    }
}

/// Parses and validates worker definition files (the TOML format of docs/WORKERS.md).
public enum WorkerConfig {
    static let allowedKeys: [String] = [
        "exec", "workdir", "user", "env", "secrets", "restart", "restart-delay", "restart-max-delay", "stable-after",
        "crash-loop", "notify", "ready-http", "ready-timeout", "watchdog", "stop-signal", "stop-timeout", "after",
        "requires-hardware", "requires-files", "memory-max", "critical", "control", "box-config",
    ]

    /// Parses one file. Every problem is collected; the result has either workers or errors.
    public static func parse(_ file: ConfigFile) -> Result<[WorkerDefinition], ConfigErrors> {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: file.text)
        } catch {
            return .failure(
                ConfigErrors([
                    ConfigError(
                        file: file.path, line: error.position.line, key: nil,
                        message: "not valid TOML: \(error.description) (column \(error.position.column))")
                ]))
        }
        var errors: [ConfigError] = []
        func fail(_ path: [String], _ message: String) {
            errors.append(ConfigError(file: file.path, line: table.line(of: path), key: keyPath(path), message: message))
        }
        var workers: [WorkerDefinition] = []
        for key in table.keys where key != "worker" {
            fail([key], "unknown top-level key; a worker file holds only [worker.NAME] tables")
        }
        guard let workerValue = table["worker"] else {
            if errors.isEmpty { return .success([]) }
            return .failure(ConfigErrors(errors))
        }
        guard let workerTable = workerValue.table else {
            fail(["worker"], "must be a table of workers, such as [worker.chat-agent]")
            return .failure(ConfigErrors(errors))
        }
        for name in workerTable.keys.sorted(by: { workerTable.line(of: $0) ?? 0 < workerTable.line(of: $1) ?? 0 }) {
            let base = ["worker", name]
            guard WorkerDefinition.isValidName(name) else {
                fail(base, "\(quoted(name)) is not a valid worker name; use 1-63 of a-z, 0-9 and '-', starting with a letter or digit")
                continue
            }
            guard let w = workerTable[name]?.table else {
                fail(base, "must be a table, such as [worker.\(name)]")
                continue
            }
            var def = WorkerDefinition(name: name, exec: [])
            def.source = SourceLocation(file: file.path, line: table.line(of: base))
            var reader = FieldReader(table: w, base: base, fail: fail)
            for key in w.keys where !allowedKeys.contains(key) {
                let nearest = allowedKeys.min { editDistance($0, key) < editDistance($1, key) }
                let hint = nearest.flatMap { editDistance($0, key) <= 3 ? " (did you mean \"\($0)\"?)" : nil } ?? ""
                fail(base + [key], "unknown key\(hint); allowed keys are \(allowedKeys.joined(separator: ", "))")
            }
            if let exec = reader.stringArray("exec", entry: "argument") {
                if exec.isEmpty {
                    fail(base + ["exec"], "must name a program: exec = [\"/path/to/program\", \"arg\", …]")
                } else if !exec[0].hasPrefix("/") {
                    fail(base + ["exec"], "\(quoted(exec[0])) is not an absolute path; exec is argv, run without a shell or $PATH search")
                } else {
                    def.exec = exec
                }
            } else if w["exec"] == nil {
                fail(base + ["exec"], "missing; every worker needs exec = [\"/path/to/program\", …]")
            }
            if let workdir = reader.string("workdir") {
                if workdir.hasPrefix("/") {
                    def.workdir = workdir
                } else {
                    fail(base + ["workdir"], "\(quoted(workdir)) must be an absolute path")
                }
            }
            if let user = reader.string("user") {
                if user.isEmpty || user.contains(":") || user.contains("/") {
                    fail(base + ["user"], "\(quoted(user)) is not a user name")
                } else {
                    def.user = user
                }
            }
            if let envTable = reader.table("env") {
                for k in envTable.keys {
                    guard isValidEnvName(k) else {
                        fail(
                            base + ["env", k],
                            "not a valid environment variable name; use letters, digits and '_', not starting with a digit")
                        continue
                    }
                    if let why = reservedEnvironment(k) {
                        fail(base + ["env", k], "is set by the supervisor and may not be overridden: \(why)")
                        continue
                    }
                    guard let v = envTable[k]?.string else {
                        fail(base + ["env", k], "must be a string")
                        continue
                    }
                    guard !v.contains("\0") else {
                        fail(base + ["env", k], FieldReader.nulMessage("the value"))
                        continue
                    }
                    def.env[k] = v
                }
            }
            if let secrets = reader.stringArray("secrets") {
                for s in secrets {
                    if s.contains("*") {
                        guard !SecretSelection.isValidFamily(s) else { continue }
                        fail(
                            base + ["secrets"],
                            "\(quoted(s)) is not a secret family; a family is a name prefix ending in \".*\", such as \"provider.*\" or \"channel.telegram.*\" (parts of a-z, 0-9 and '-' joined by '.'), and '*' may stand nowhere else"
                        )
                    } else if !isValidSecretName(s) {
                        fail(
                            base + ["secrets"],
                            "\(quoted(s)) is not a secret name; use a-z, 0-9, '.', '_' and '-', not starting with '.' nor holding \"..\" (or a family such as \"provider.*\")"
                        )
                    }
                }
                def.secrets = secrets
            }
            if let r = reader.string("restart") {
                if let mode = RestartMode(rawValue: r) {
                    def.restart = mode
                } else {
                    fail(base + ["restart"], "\(quoted(r)) is not allowed; use always, on-failure or never")
                }
            }
            def.restartDelay = reader.duration("restart-delay") ?? def.restartDelay
            def.restartMaxDelay = reader.duration("restart-max-delay") ?? def.restartMaxDelay
            def.stableAfter = reader.duration("stable-after") ?? def.stableAfter
            if def.restartDelay > def.restartMaxDelay {
                fail(
                    base + ["restart-delay"],
                    "\(def.restartDelay.aiboxText) is longer than restart-max-delay (\(def.restartMaxDelay.aiboxText))")
            }
            if let loop = reader.table("crash-loop") {
                var sub = FieldReader(table: loop, base: base + ["crash-loop"], fail: fail)
                for key in loop.keys where !["burst", "window", "quarantine"].contains(key) {
                    fail(base + ["crash-loop", key], "unknown key; allowed keys are burst, window, quarantine")
                }
                if let burst = sub.int("burst") {
                    if burst >= 1 && burst <= 10_000 {
                        def.crashLoop.burst = burst
                    } else {
                        fail(base + ["crash-loop", "burst"], "\(burst) is out of range; use 1 to 10000")
                    }
                }
                def.crashLoop.window = sub.duration("window", allowZero: false) ?? def.crashLoop.window
                def.crashLoop.quarantine = sub.duration("quarantine") ?? def.crashLoop.quarantine
            }
            def.notify = reader.bool("notify") ?? def.notify
            if let url = reader.string("ready-http") {
                switch ReadyHTTP.parse(url) {
                case .success(let check):
                    if def.notify {
                        fail(
                            base + ["ready-http"],
                            "ready-http and notify = true are two ways to say ready; keep one (READY=1 on $NOTIFY_SOCKET, or a URL that answers 200)"
                        )
                    } else {
                        def.readyHTTP = check
                    }
                case .failure(let e):
                    fail(base + ["ready-http"], "\(quoted(url)) \(e.message)")
                }
            }
            def.readyTimeout = reader.duration("ready-timeout", allowZero: false) ?? def.readyTimeout
            if let wd = reader.duration("watchdog") { def.watchdog = wd == .zero ? nil : wd }
            if let sig = reader.string("stop-signal") {
                if let n = Signals.number(named: sig) {
                    def.stopSignal = n
                } else {
                    fail(
                        base + ["stop-signal"],
                        "\(quoted(sig)) is not a signal name; use one of \(Signals.byName.keys.sorted().joined(separator: ", "))")
                }
            }
            def.stopTimeout = reader.duration("stop-timeout", allowZero: false) ?? def.stopTimeout
            if let after = reader.stringArray("after") {
                for a in after where !WorkerDefinition.isValidName(a) { fail(base + ["after"], "\(quoted(a)) is not a worker name") }
                def.after = after
            }
            if let hw = reader.stringArray("requires-hardware") { def.requiresHardware = hw }
            if let files = reader.stringArray("requires-files", entry: "path") {
                for f in files where !f.hasPrefix("/") || f.hasSuffix("/") {
                    fail(base + ["requires-files"], "\(quoted(f)) must be the absolute path of a file, like \"/var/lib/aibox/models/default.gguf\"")
                }
                def.requiresFiles = files
            }
            if let m = reader.value("memory-max") {
                if let s = m.string, let bytes = parseByteSize(s), bytes > 0 {
                    def.memoryMax = bytes
                } else if let i = m.int, i > 0 {
                    def.memoryMax = UInt64(i)
                } else {
                    fail(base + ["memory-max"], "must be a size such as \"512M\" or \"2G\" (binary units), or a byte count")
                }
            }
            def.critical = reader.bool("critical") ?? def.critical
            def.boxConfig = reader.bool("box-config") ?? def.boxConfig
            if let control = reader.stringArray("control") {
                var grants: [ControlGrant] = []
                for c in control {
                    guard let g = ControlGrant(rawValue: c) else {
                        fail(
                            base + ["control"],
                            "\(quoted(c)) is not a control request a worker may be granted; allowed: \(ControlGrant.allCases.map(\.rawValue).joined(separator: ", "))")
                        continue
                    }
                    if !grants.contains(g) { grants.append(g) }
                }
                def.control = grants.sorted()
            }
            workers.append(def)
        }
        return errors.isEmpty ? .success(workers) : .failure(ConfigErrors(errors))
    }

    /// Builds the effective set from files in precedence order: vendor files first, then
    /// local ones (a local file with the same file name replaces the vendor one — the caller
    /// has already dropped the shadowed file). Checks names across files and `after`.
    public static func load(_ files: [ConfigFile]) -> Result<[WorkerDefinition], ConfigErrors> {
        var errors: [ConfigError] = []
        var workers: [WorkerDefinition] = []
        var byName: [String: WorkerDefinition] = [:]
        for file in files {
            switch parse(file) {
            case .failure(let e): errors += e.errors
            case .success(let defs):
                for d in defs {
                    if let other = byName[d.name] {
                        errors.append(
                            ConfigError(
                                file: d.source.file, line: d.source.line, key: "worker.\(d.name)",
                                message: "defined again; it is already defined at \(other.source); rename one of them"))
                        continue
                    }
                    byName[d.name] = d
                    workers.append(d)
                }
            }
        }
        for d in workers where d.after.contains(where: { byName[$0] == nil }) {
            // Read again for the line: only when there is something to report.
            let text = files.first { $0.path == d.source.file }?.text ?? ""
            let line = (try? TOMLTable(string: text))?.line(of: ["worker", d.name, "after"]) ?? d.source.line
            for dep in d.after where byName[dep] == nil && WorkerDefinition.isValidName(dep) {
                errors.append(
                    ConfigError(
                        file: d.source.file, line: line,
                        key: "worker.\(d.name).after",
                        message: "\"\(dep)\" is not a defined worker; defined workers are \(byName.keys.sorted().joined(separator: ", "))"))
            }
        }
        if errors.isEmpty, let cycle = DependencyOrder.findCycle(workers) {
            let first = byName[cycle[0]]!
            errors.append(
                ConfigError(
                    file: first.source.file, line: first.source.line, key: "worker.\(first.name).after",
                    message: "\"after\" forms a cycle: \(cycle.joined(separator: " -> ")); remove one of these dependencies"))
        }
        return errors.isEmpty ? .success(workers) : .failure(ConfigErrors(errors))
    }

    /// Why the supervisor keeps `name` for itself (see `Supervisor.spawn`), or nil when a
    /// worker may set it. PATH, HOME, USER, LOGNAME, LANG and TZ are defaults a worker may change.
    public static func reservedEnvironment(_ name: String) -> String? {
        switch name {
        case "NOTIFY_SOCKET":
            return "it is the supervisor's notification socket, where READY=1 and WATCHDOG=1 go"
        case "WATCHDOG_USEC":
            return "it is set from watchdog = \"…\" (absent when the worker has no watchdog)"
        case "WATCHDOG_PID":
            return "with another process's pid, sd_notify's library ignores its watchdog"
        case "CREDENTIALS_DIRECTORY":
            return "it is where the supervisor puts the worker's secrets = [\"…\"]"
        default:
            if name.hasPrefix("LISTEN_") {
                return "LISTEN_* belong to systemd's socket activation; the supervisor passes no sockets and a library would take them"
            }
            if name.hasPrefix("AIBOX_") {
                return "AIBOX_* are the supervisor's own (AIBOX_WORKER, AIBOX_ROOT, AIBOX_CONTROL_SOCKET: what the worker is, where, and its control socket)"
            }
            return nil
        }
    }

    static func isValidEnvName(_ s: String) -> Bool {
        guard let f = s.unicodeScalars.first, !("0"..."9").contains(f) else { return false }
        return s.unicodeScalars.allSatisfy { $0 == "_" || ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) }
    }

    /// A secret's name is a file name of `var/lib/aibox/secrets/`: a-z, 0-9, `.`, `-`, `_`, at
    /// most 128 bytes; no leading `.` (hidden, `.`, `..`) and no `..` anywhere. The one rule
    /// for worker files, box.toml and the secrets store.
    public static func isValidSecretName(_ s: String) -> Bool {
        guard !s.isEmpty, s.utf8.count <= 128, !s.hasPrefix("."), !s.contains("..") else { return false }
        return s.utf8.allSatisfy { c in
            (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2E || c == 0x2D || c == 0x5F
        }
    }
}

/// The entries of `secrets = [...]`: a secret's name (it must exist: a start failure
/// otherwise), or a family, `PREFIX.*`, which hands over every secret whose name starts with
/// `PREFIX.` that exists when the worker starts — none is fine.
public enum SecretSelection {
    public static func isFamily(_ entry: String) -> Bool { entry.hasSuffix(".*") }

    /// `[a-z0-9][a-z0-9-]*(\.[a-z0-9][a-z0-9-]*)*\.\*`: "provider.*", "channel.telegram.*".
    public static func isValidFamily(_ entry: String) -> Bool {
        guard isFamily(entry), entry.utf8.count <= 128 else { return false }
        let parts = entry.utf8.dropLast(2).split(separator: 0x2E, omittingEmptySubsequences: false)
        return parts.allSatisfy { part in
            guard let first = part.first, first != 0x2D else { return false }
            return part.allSatisfy { c in (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2D }
        }
    }

    /// Whether the secret `name` belongs to `family` ("provider.openai.api-key" to "provider.*").
    public static func matches(_ name: String, family: String) -> Bool {
        let prefix = family.dropLast()  // "provider."
        return name.utf8.count > prefix.utf8.count && name.hasPrefix(prefix) && WorkerConfig.isValidSecretName(name)
    }

    /// What a worker gets, given the names of the secrets there are (`available`; only needed
    /// when `entries` hold a family): `required`, the names it lists itself, in its order;
    /// `optional`, the other members of its families, sorted. Each name once.
    public static func expand(_ entries: [String], available: [String]) -> (required: [String], optional: [String]) {
        var seen: Set<String> = []
        var required: [String] = []
        for e in entries where !isFamily(e) && seen.insert(e).inserted { required.append(e) }
        let families = entries.filter(isFamily)
        var optional: [String] = []
        for name in available.sorted() where !seen.contains(name) && families.contains(where: { matches(name, family: $0) }) {
            seen.insert(name)
            optional.append(name)
        }
        return (required, optional)
    }
}

/// Reads typed fields of one table, reporting wrong types through `fail`.
struct FieldReader {
    let table: TOMLTable
    let base: [String]
    let fail: ([String], String) -> Void

    func value(_ key: String) -> TOMLValue? { table[key] }

    /// A NUL byte would end the C string a program, path or name becomes, cutting it silently.
    static func nulMessage(_ what: String) -> String {
        "\(what) holds a NUL byte (\\u0000), which cannot be passed to a program, a path or a name; remove it"
    }

    mutating func string(_ key: String) -> String? {
        guard let v = table[key] else { return nil }
        guard let s = v.string else {
            fail(base + [key], "must be a string, not \(describe(v))")
            return nil
        }
        guard !s.contains("\0") else {
            fail(base + [key], FieldReader.nulMessage("the string"))
            return nil
        }
        return s
    }

    mutating func bool(_ key: String) -> Bool? {
        guard let v = table[key] else { return nil }
        guard let b = v.bool else {
            fail(base + [key], "must be true or false, not \(describe(v))")
            return nil
        }
        return b
    }

    mutating func int(_ key: String) -> Int? {
        guard let v = table[key] else { return nil }
        guard let i = v.int else {
            fail(base + [key], "must be an integer, not \(describe(v))")
            return nil
        }
        return i
    }

    mutating func table(_ key: String) -> TOMLTable? {
        guard let v = table[key] else { return nil }
        guard let t = v.table else {
            fail(base + [key], "must be a table such as { KEY = \"value\" }, not \(describe(v))")
            return nil
        }
        return t
    }

    mutating func stringArray(_ key: String, entry: String = "entry") -> [String]? {
        guard let v = table[key] else { return nil }
        guard let a = v.array else {
            fail(base + [key], "must be an array of strings such as [\"a\", \"b\"], not \(describe(v))")
            return nil
        }
        var out: [String] = []
        for (n, item) in a.enumerated() {
            guard let s = item.string else {
                fail(base + [key], "must hold only strings; found \(describe(item))")
                return nil
            }
            guard !s.contains("\0") else {
                fail(base + [key], FieldReader.nulMessage("\(entry) \(n + 1)"))
                return nil
            }
            out.append(s)
        }
        return out
    }

    mutating func duration(_ key: String, allowZero: Bool = true) -> Duration? {
        guard let v = table[key] else { return nil }
        guard let s = v.string, let d = parseDuration(s), allowZero || d > .zero else {
            fail(
                base + [key],
                "must be a duration such as \"100ms\", \"30s\", \"5m\" or \"1h30m\"\(allowZero ? "" : ", above zero"), not \(describe(v))")
            return nil
        }
        return d
    }

    private func describe(_ v: TOMLValue) -> String {
        switch v.type {
        case .string: return "the string \(quoted(v.string ?? ""))"
        case .int: return "the integer \(v.int ?? 0)"
        case .bool: return "\(v.bool ?? false)"
        case .double: return "the number \(v.double ?? 0)"
        case .array: return "an array"
        case .table: return "a table"
        default: return "a \(v.type)"
        }
    }
}

extension StringProtocol {
    /// Drops the characters of `set` from both ends (without Foundation's CharacterSet).
    public func trimmingCharacters(in set: String) -> String {
        var s = self[...]
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}

/// A string from a file for a message: quoted and escaped as TOML writes it (no control
/// character reaches a terminal), at most 60 characters of it. One for every message of the module.
func quoted(_ s: String) -> String { tomlBasicString(s.count <= 60 ? s : String(s.prefix(57)) + "…") }

/// A key path as TOML writes it: parts that are not bare keys quoted and escaped (a NUL or a
/// dot in a key shows as such).
private func keyPath(_ path: [String]) -> String { path.map(TOMLLines.key).joined(separator: ".") }

/// Levenshtein distance, for "did you mean" hints.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    var prev = Array(0...b.count)
    for i in 1...a.count {
        var cur = [i] + Array(repeating: 0, count: b.count)
        for j in stride(from: 1, through: b.count, by: 1) {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        prev = cur
    }
    return prev[b.count]
}

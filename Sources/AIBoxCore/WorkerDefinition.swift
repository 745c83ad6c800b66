/// What the restart policy does when a worker's process exits.
public enum RestartMode: String, Sendable, Codable, CaseIterable {
    case always
    case onFailure = "on-failure"
    case never
}

/// `crash-loop = { burst, window, quarantine }`: `burst` exits within `window` put the
/// worker in quarantine for `quarantine`, after which it is tried again.
public struct CrashLoopPolicy: Equatable, Sendable {
    public var burst: Int
    public var window: Duration
    public var quarantine: Duration

    public init(burst: Int = 5, window: Duration = .seconds(60), quarantine: Duration = .seconds(600)) {
        self.burst = burst
        self.window = window
        self.quarantine = quarantine
    }
}

/// One worker as the TOML files define it (see docs/WORKERS.md for every key).
///
/// Equality decides whether a reload restarts the worker, so it is synthesized: every stored
/// field takes part, a new one too, without a line to forget. Only `source` stays out, by its
/// wrapper (WorkerConfigTests checks every field through a reload plan).
public struct WorkerDefinition: Equatable, Sendable {
    public var name: String
    public var exec: [String]
    public var workdir: String?
    public var user: String?
    public var env: [String: String] = [:]
    public var secrets: [String] = []
    public var restart: RestartMode = .always
    public var restartDelay: Duration = .milliseconds(100)
    public var restartMaxDelay: Duration = .seconds(300)
    public var stableAfter: Duration = .seconds(30)
    public var crashLoop = CrashLoopPolicy()
    public var notify = false
    /// Ready when this URL answers 200 (instead of READY=1).
    public var readyHTTP: ReadyHTTP?
    public var readyTimeout: Duration = .seconds(90)
    public var watchdog: Duration?
    public var stopSignal: Int32 = Signals.term
    public var stopTimeout: Duration = .seconds(10)
    public var after: [String] = []
    public var requiresHardware: [String] = []
    /// Files that must be there (non-empty regular files, links followed) before it starts,
    /// such as a model's weights; absolute paths, as written.
    public var requiresFiles: [String] = []
    public var memoryMax: UInt64?
    public var critical = false
    /// Requests it may make on a control socket of its own (`run/aibox/control.d/NAME.sock`,
    /// handed over as AIBOX_CONTROL_SOCKET); none: no socket.
    public var control: [ControlGrant] = []
    /// A copy of box.toml without the admin's password hash in its $CREDENTIALS_DIRECTORY
    /// (`box.toml`), readable by its user alone: box.toml itself is root's (0640).
    public var boxConfig = false

    /// Where it was defined; not part of equality, so moving a worker between files is no change.
    @NotCompared public var source = SourceLocation(file: "", line: nil)

    public init(name: String, exec: [String]) {
        self.name = name
        self.exec = exec
    }

    /// It says when it is ready (READY=1, or its `ready-http` URL): until then it is starting.
    public var awaitsReadiness: Bool { notify || readyHTTP != nil }

    /// What readiness is awaited, for messages: "READY=1", "200 from http://…".
    public var readinessSignal: String { readyHTTP.map { "200 from \($0.url)" } ?? "READY=1" }

    /// Worker names: `[a-z0-9][a-z0-9-]{0,62}`.
    public static func isValidName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...63).contains(bytes.count) else { return false }
        func ok(_ b: UInt8, dash: Bool) -> Bool {
            (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || (dash && b == 0x2D)
        }
        return ok(bytes[0], dash: false) && bytes.dropFirst().allSatisfy { ok($0, dash: true) }
    }
}

/// A stored property that synthesized equality passes over (any two are equal).
@propertyWrapper
public struct NotCompared<Value: Sendable>: Equatable, Sendable {
    public var wrappedValue: Value
    public init(wrappedValue: Value) { self.wrappedValue = wrappedValue }
    public static func == (_: NotCompared, _: NotCompared) -> Bool { true }
}

public struct SourceLocation: Equatable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int?

    public init(file: String, line: Int?) {
        self.file = file
        self.line = line
    }

    public var description: String { line.map { "\(file):\($0)" } ?? file }
}

/// Signal numbers on Linux, and their names as `stop-signal` accepts them.
public enum Signals {
    public static let hup: Int32 = 1, int: Int32 = 2, quit: Int32 = 3, abrt: Int32 = 6, kill: Int32 = 9
    public static let usr1: Int32 = 10, usr2: Int32 = 12, term: Int32 = 15, cont: Int32 = 18, winch: Int32 = 28

    public static let byName: [String: Int32] = [
        "HUP": hup, "INT": int, "QUIT": quit, "ABRT": abrt, "KILL": kill, "USR1": usr1, "USR2": usr2,
        "TERM": term, "CONT": cont, "WINCH": winch,
    ]

    public static func number(named text: String) -> Int32? {
        var n = text.uppercased()
        if n.hasPrefix("SIG") { n.removeFirst(3) }
        return byName[n]
    }

    public static func name(of number: Int32) -> String {
        byName.first { $0.value == number }.map { "SIG" + $0.key } ?? "signal \(number)"
    }
}

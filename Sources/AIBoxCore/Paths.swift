/// Where things live, under `--root` (the table of paths in docs/OPERATIONS.md).
public struct Paths: Sendable, Equatable {
    public let root: String

    public init(root: String) {
        var r = root
        while r.count > 1 && r.hasSuffix("/") { r.removeLast() }
        self.root = r
    }

    public func under(_ relative: String) -> String { root == "/" ? "/" + relative : root + "/" + relative }

    public var vendorWorkers: String { under("usr/lib/aibox/workers.d") }
    public var localWorkers: String { under("etc/aibox/workers.d") }
    public var stateDirectory: String { under("var/lib/aibox") }
    public var database: String { under("var/lib/aibox/aibox.db") }
    public var secrets: String { under("var/lib/aibox/secrets") }
    public var logs: String { under("var/lib/aibox/logs") }
    public var runDirectory: String { under("run/aibox") }
    public var controlSocket: String { under("run/aibox/control.sock") }
    /// Workers' own control sockets (`control = [...]`): `control.d/NAME.sock`, in a directory 0755 root.
    public var workerControlDirectory: String { under("run/aibox/control.d") }
    public func workerControlSocket(_ worker: String) -> String { workerControlDirectory + "/" + worker + ".sock" }
    public var notifySocket: String { under("run/aibox/notify.sock") }
    public var credentials: String { under("run/aibox/credentials") }
    public var pidFile: String { under("run/aibox/aibox.pid") }
    public var lockFile: String { under("run/aibox/daemon.lock") }
    /// The box configuration setup writes; its presence is what "provisioned" means.
    public var boxConfig: String { under("etc/aibox/box.toml") }
    /// Secrets answered in an unfinished setup, moved into `secrets` when it completes.
    public var setupStaging: String { under("var/lib/aibox/setup") }
    /// Public keys (Ed25519, base64) trusted to sign seeds for an already provisioned box.
    public var provisioningKeys: String { under("usr/lib/aibox/keys/provisioning") }
    /// Held (flock) while an update is installed; factory-reset refuses while it is.
    public var updateLock: String { under("run/aibox/update.lock") }
    /// Where a provisioning volume is mounted while its seed is read.
    public var volumeMount: String { under("run/aibox/volume") }
}

/// What `aibox workers --json` prints for one worker (stable, camelCase).
public struct WorkerView: Codable, Sendable, Equatable {
    public struct LastExit: Codable, Sendable, Equatable {
        public var code: Int32?
        public var signal: Int32?
        /// Milliseconds since 1970 (wall clock at the time).
        public var at: Int64?

        public init(code: Int32?, signal: Int32?, at: Int64?) {
            self.code = code
            self.signal = signal
            self.at = at
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encodeIfPresent(code, forKey: .code)
            try c.encodeIfPresent(signal, forKey: .signal)
            try c.encode(at, forKey: .at)
        }
    }

    public var name: String
    public var state: String
    public var pid: Int32?
    public var restarts: Int
    public var lastExit: LastExit?
    public var status: String?
    public var reason: String?
    public var waitingFor: [String]
    public var critical: Bool
    /// What the worker's cgroup says (processes, memory, pressure); nil under the
    /// process-group rule or before its first start.
    public var resources: ResourceView?

    public init(
        name: String, state: String, pid: Int32?, restarts: Int, lastExit: LastExit?, status: String?, reason: String?,
        waitingFor: [String], critical: Bool, resources: ResourceView? = nil
    ) {
        self.name = name
        self.state = state
        self.pid = pid
        self.restarts = restarts
        self.lastExit = lastExit
        self.status = status
        self.reason = reason
        self.waitingFor = waitingFor
        self.critical = critical
        self.resources = resources
    }

    // Explicit nulls: a script can rely on every field being present.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(state, forKey: .state)
        try c.encode(pid, forKey: .pid)
        try c.encode(restarts, forKey: .restarts)
        try c.encode(lastExit, forKey: .lastExit)
        try c.encode(status, forKey: .status)
        try c.encode(reason, forKey: .reason)
        try c.encode(waitingFor, forKey: .waitingFor)
        try c.encode(critical, forKey: .critical)
        try c.encode(resources, forKey: .resources)
    }
}

/// `aibox status --json`.
public struct StatusView: Codable, Sendable, Equatable {
    public var daemonRunning: Bool
    public var daemonPid: Int32?
    public var version: String
    public var workers: [String: Int]
    public var workerCount: Int
    public var databaseProblem: String?
    public var configProblem: String?
    public var logTarget: String?
    /// The capability profile in one line.
    public var hardware: String?
    /// Where hotplug events come from: "udev", "kernel" (no udev: containers), or
    /// "unavailable: …" while the monitor cannot be opened (retried).
    public var hotplug: String?
    /// Whether setup has run (etc/aibox/box.toml exists); nil when not known (daemon down).
    public var provisioned: Bool?
    /// The booted slot and the update state ("slot A; update committed"), when the image
    /// describes its slots (usr/lib/aibox/system.toml).
    public var update: String?
    /// Entries of the worker directories that are no worker file (a FIFO, a directory, a
    /// device node, a file over 1 MiB), skipped: "PATH: is a FIFO (named pipe), not a regular file".
    public var configSkipped: [String]?
    /// false when a daemon holds the socket but did not answer within the CLI's timeout (the
    /// rest is then the database's view); nil otherwise.
    public var daemonResponding: Bool?
    /// How workers are contained: "cgroup v2 (/sys/fs/cgroup/...)" or "process groups (...: why)".
    public var containment: String?

    public init(
        daemonRunning: Bool, daemonPid: Int32?, version: String, workers: [String: Int], workerCount: Int,
        databaseProblem: String?, configProblem: String?, logTarget: String?, hardware: String? = nil, hotplug: String? = nil,
        provisioned: Bool? = nil, update: String? = nil, configSkipped: [String]? = nil, daemonResponding: Bool? = nil, containment: String? = nil
    ) {
        self.daemonRunning = daemonRunning
        self.daemonPid = daemonPid
        self.version = version
        self.workers = workers
        self.workerCount = workerCount
        self.databaseProblem = databaseProblem
        self.configProblem = configProblem
        self.logTarget = logTarget
        self.hardware = hardware
        self.hotplug = hotplug
        self.provisioned = provisioned
        self.update = update
        self.configSkipped = configSkipped
        self.daemonResponding = daemonResponding
        self.containment = containment
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(daemonRunning, forKey: .daemonRunning)
        try c.encode(daemonPid, forKey: .daemonPid)
        try c.encode(version, forKey: .version)
        try c.encode(workers, forKey: .workers)
        try c.encode(workerCount, forKey: .workerCount)
        try c.encode(databaseProblem, forKey: .databaseProblem)
        try c.encode(configProblem, forKey: .configProblem)
        try c.encode(logTarget, forKey: .logTarget)
        try c.encode(hardware, forKey: .hardware)
        try c.encode(hotplug, forKey: .hotplug)
        try c.encode(provisioned, forKey: .provisioned)
        try c.encode(update, forKey: .update)
        try c.encode(configSkipped, forKey: .configSkipped)
        try c.encode(daemonResponding, forKey: .daemonResponding)
        try c.encode(containment, forKey: .containment)
    }
}

/// A request on the control socket (one JSON line).
public struct ControlRequest: Codable, Sendable, Equatable {
    public var command: String
    public var worker: String?
    /// `logs`: how many of the last lines (1 to `LogLines.maxLines`).
    public var lines: Int?
    public init(command: String, worker: String? = nil, lines: Int? = nil) {
        self.command = command
        self.worker = worker
        self.lines = lines
    }
}

public enum AIBoxVersion {
    public static let current = "0.1.0"
}

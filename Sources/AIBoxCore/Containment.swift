/// How the workers are contained: the decisions behind cgroup v2 (or the process-group rule
/// where cgroup v2 cannot be written). The adapter is `CgroupTree` in AIBoxSystem; every
/// input here is text the OS gave (mountinfo, /proc/self/cgroup, cgroup files) or a fact
/// the adapter found, so each rule is tested without a cgroup.

/// The facts read from /proc.
public enum CgroupFacts {
    /// Where the cgroup v2 hierarchy is mounted: the first `cgroup2` line of
    /// /proc/self/mountinfo. `root` is the hierarchy path seen at the mount point ("/" unless
    /// a subtree is bind-mounted), `readOnly` whether the mount (per-mount options) is `ro`.
    public struct Mount: Equatable, Sendable {
        public var point: String
        public var root: String
        public var readOnly: Bool

        public init(point: String, root: String, readOnly: Bool) {
            self.point = point
            self.root = root
            self.readOnly = readOnly
        }
    }

    /// Every cgroup2 mount, in mountinfo's order (a bind mount of the hierarchy can come
    /// after the main one).
    public static func v2Mounts(mountinfo: String) -> [Mount] {
        var out: [Mount] = []
        for line in mountinfo.split(separator: "\n") {
            // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard let dash = fields.firstIndex(of: "-"), dash >= 6, dash + 1 < fields.count, fields[dash + 1] == "cgroup2" else {
                continue
            }
            let options = fields[5].split(separator: ",")
            out.append(Mount(point: unescape(fields[4]), root: unescape(fields[3]), readOnly: options.contains("ro")))
        }
        return out
    }

    /// The process's cgroup v2 path (the `0::` line of /proc/PID/cgroup); nil when there is
    /// none or the cgroup was removed (" (deleted)").
    public static func v2Path(procCgroup: String) -> String? {
        for line in procCgroup.split(separator: "\n") where line.hasPrefix("0::") {
            let path = String(line.dropFirst(3))
            guard path.hasPrefix("/"), !path.hasSuffix(" (deleted)") else { return nil }
            return path
        }
        return nil
    }

    /// mountinfo escapes space, tab, newline and backslash as three octal digits.
    static func unescape(_ field: Substring) -> String {
        guard field.contains("\\") else { return String(field) }
        var bytes: [UInt8] = []
        let u = Array(field.utf8)
        var i = 0
        while i < u.count {
            if u[i] == UInt8(ascii: "\\"), i + 3 < u.count {
                let digits = u[(i + 1)...(i + 3)]
                if digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "7") }) {
                    let v = digits.reduce(0) { $0 * 8 + Int($1 - UInt8(ascii: "0")) }
                    if v < 256 {
                        bytes.append(UInt8(v))
                        i += 4
                        continue
                    }
                }
            }
            bytes.append(u[i])
            i += 1
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A hierarchy path as a file-system path under `mount`.
    public static func filesystemPath(_ hierarchyPath: String, mount: Mount) -> String {
        var rest = Substring(hierarchyPath)
        if mount.root != "/" { rest = rest.dropFirst(mount.root.count) }
        return rest == "/" || rest.isEmpty ? mount.point : mount.point + rest
    }

    /// `populated 1` in cgroup.events: some process is in the cgroup or below it.
    public static func populated(events: String) -> Bool? {
        for line in events.split(separator: "\n") where line.hasPrefix("populated ") {
            return line.dropFirst(10) == "1"
        }
        return nil
    }

    /// One `key value` line of a flat-keyed file (memory.stat, cgroup.stat).
    public static func value(_ key: String, in text: String) -> UInt64? {
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, parts[0] == key { return UInt64(parts[1]) }
        }
        return nil
    }
}

/// Where the daemon and its workers live in the cgroup v2 hierarchy. Paths are hierarchy
/// paths (as /proc/PID/cgroup shows them); `filesystemPath` puts the mount point in front.
public struct CgroupLayout: Equatable, Sendable {
    /// The mount point of the hierarchy's root as seen here (mount point minus the mount's root).
    public var mountPoint: String
    public var mountRoot: String
    /// The subtree aibox owns.
    public var base: String
    /// The leaf the daemon moves itself into (a delegated cgroup may hold no process once it
    /// has children with controllers); nil when the daemon stays where it was started.
    public var supervisor: String?
    /// The parent of the workers' cgroups.
    public var workers: String
    /// Whether `base` was made by aibox (by hand): then aibox removes it when it stops.
    public var ownsBase: Bool

    public func worker(_ name: String) -> String { workers + "/" + name }

    /// Hierarchy path → file-system path.
    public func filesystemPath(_ hierarchyPath: String) -> String {
        CgroupFacts.filesystemPath(hierarchyPath, mount: CgroupFacts.Mount(point: mountPoint, root: mountRoot, readOnly: false))
    }

    /// Whether a process in cgroup `path` belongs to a worker: it is in a worker's cgroup or below.
    public func isWorkerCgroup(_ path: String) -> Bool { path.hasPrefix(workers + "/") }

    /// The worker a cgroup path belongs to, if any.
    public func workerName(ofCgroup path: String) -> String? {
        guard isWorkerCgroup(path) else { return nil }
        return path.dropFirst(workers.count + 1).split(separator: "/").first.map(String.init)
    }
}

/// Which containment is in force, and why.
public enum Containment: Equatable, Sendable {
    case cgroup(CgroupLayout)
    /// The process-group rule (kill(-pgid)): a child that calls setsid escapes it.
    case processGroups(reason: String)

    /// One line for `aibox status`.
    public var summary: String {
        switch self {
        case .cgroup(let l): return "cgroup v2 (\(l.filesystemPath(l.base)))"
        case .processGroups(let reason): return "process groups (cgroup v2 not used: \(reason))"
        }
    }

    /// The layout to set up, from what /proc says and what the adapter found:
    /// - a delegated cgroup (systemd's `Delegate=yes` marks it with the xattr
    ///   `trusted.delegate` or `user.delegate`): aibox takes it whole, moves itself into
    ///   `supervisor/` (the "no internal processes" rule) and puts workers in `workers/NAME`;
    /// - not delegated, and systemd is not the cgroup manager (started by hand, a test, a
    ///   container's init): a subtree of its own below the cgroup it was started in, named
    ///   after `--root`, so that daemons on different roots never share one;
    /// - not delegated under systemd: nothing (systemd owns that cgroup; CGROUP_DELEGATION).
    public static func plan(
        mounts: [CgroupFacts.Mount], ownPath: String?, delegated: Bool, systemdManages: Bool, root: String
    ) -> Containment {
        guard !mounts.isEmpty else { return .processGroups(reason: "no cgroup v2 hierarchy is mounted (/proc/self/mountinfo)") }
        guard let own = ownPath else {
            return .processGroups(reason: "this process is in no cgroup v2 (/proc/self/cgroup has no \"0::\" line)")
        }
        guard let mount = mounts.first(where: { $0.root == "/" || own == $0.root || own.hasPrefix($0.root + "/") }) else {
            return .processGroups(reason: "the cgroup \(own) is not below any cgroup2 mount here")
        }
        if mount.readOnly { return .processGroups(reason: "the cgroup2 mount \(mount.point) is read-only") }
        func join(_ a: String, _ b: String) -> String { a == "/" ? "/" + b : a + "/" + b }
        if delegated {
            return .cgroup(
                CgroupLayout(
                    mountPoint: mount.point, mountRoot: mount.root, base: own, supervisor: join(own, "supervisor"),
                    workers: join(own, "workers"), ownsBase: false))
        }
        if systemdManages {
            return .processGroups(
                reason: "systemd manages the cgroup tree and did not delegate \(own) (run aibox under a unit with Delegate=yes)")
        }
        let base = join(own, subtreeName(root: root))
        return .cgroup(
            CgroupLayout(
                mountPoint: mount.point, mountRoot: mount.root, base: base, supervisor: nil, workers: join(base, "workers"),
                ownsBase: true))
    }

    /// `aibox` for the root "/", else `aibox-` + the root's path made a file name + a hash of
    /// it (the mapping is lossy, the hash is not): "/tmp/box" → "aibox-tmp-box-1b2c3d4e".
    public static func subtreeName(root: String) -> String {
        if root == "/" { return "aibox" }
        var hash: UInt32 = 2_166_136_261
        for b in root.utf8 {
            hash ^= UInt32(b)
            hash = hash &* 16_777_619
        }
        var name = ""
        for scalar in root.unicodeScalars.drop(while: { $0 == "/" }) {
            switch scalar {
            case "a"..."z", "A"..."Z", "0"..."9", "-", "_": name.unicodeScalars.append(scalar)
            case "/": name += "-"
            default: name += "_"
            }
            if name.utf8.count >= 64 { break }
        }
        var hex = String(hash, radix: 16)
        while hex.count < 8 { hex = "0" + hex }
        return "aibox-" + name + "-" + hex
    }
}

/// The resource limits a worker's cgroup gets, written only where the controller is
/// enabled for it (`cgroup.controllers` of the worker's cgroup).
public enum CgroupLimits {
    /// The files to write and their values, from the definition and the controllers there.
    /// `memory-max` is the graceful-restart line (checked by aibox); the kernel gets it as
    /// `memory.high` (reclaim and throttling above it) and a hard `memory.max` a quarter
    /// above it, so that a worker leaking faster than the check still cannot take the box.
    /// Without `memory-max` both are "max", so that a limit removed by a reload goes too.
    public static func writes(memoryMax: UInt64?, tasksMax: Int, controllers: Set<String>) -> [(file: String, value: String)] {
        var out: [(String, String)] = []
        if controllers.contains("memory") {
            if let m = memoryMax {
                out.append(("memory.high", String(m)))
                out.append(("memory.max", String(hardMemoryLimit(m))))
            } else {
                out.append(("memory.high", "max"))
                out.append(("memory.max", "max"))
            }
            // An OOM kill inside the worker takes the whole worker, not one of its processes.
            out.append(("memory.oom.group", "1"))
        }
        if controllers.contains("pids") { out.append(("pids.max", String(tasksMax))) }
        return out
    }

    /// memory-max + 25 %, saturating.
    public static func hardMemoryLimit(_ memoryMax: UInt64) -> UInt64 {
        let (sum, overflow) = memoryMax.addingReportingOverflow(memoryMax / 4)
        return overflow ? .max : sum
    }

    /// The number of tasks (processes and threads) the box can have: the smallest of
    /// kernel.pid_max, kernel.threads-max and the supervisor's own pids.max (a number, or
    /// nil for "max"), as systemd counts for its TasksMax percentages.
    public static func available(pidMax: Int?, threadsMax: Int?, ownPidsMax: Int?) -> Int {
        [pidMax, threadsMax, ownPidsMax].compactMap { $0 }.filter { $0 > 0 }.min() ?? 32768
    }

    /// Each worker: 15 % of what is available (systemd's DefaultTasksMax), at least 64 —
    /// a fork bomb stops there, and the others can still start processes.
    public static func tasksPerWorker(available: Int) -> Int { max(available * 15 / 100, 64) }

    /// All workers together: 90 % of what is available, so that the supervisor can always
    /// fork to restart one even when the workers have used up theirs.
    public static func tasksForAllWorkers(available: Int) -> Int { max(available * 90 / 100, 64) }
}

/// A `*.pressure` file's "some" line (PSI): the share of time in which at least one task
/// of the cgroup waited for the resource.
public struct PressureStall: Codable, Equatable, Sendable {
    /// Percent over the last 10 s.
    public var avg10: Double
    /// Microseconds stalled in total since the cgroup was made.
    public var total: UInt64

    public init(avg10: Double, total: UInt64) {
        self.avg10 = avg10
        self.total = total
    }

    /// "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull ..." → the "some" line.
    public static func parse(_ text: String) -> PressureStall? {
        for line in text.split(separator: "\n") where line.hasPrefix("some ") {
            var avg10: Double?, total: UInt64?
            for field in line.split(separator: " ").dropFirst() {
                if field.hasPrefix("avg10=") { avg10 = Double(field.dropFirst(6)) }
                if field.hasPrefix("total=") { total = UInt64(field.dropFirst(6)) }
            }
            guard let avg10, let total else { return nil }
            return PressureStall(avg10: avg10, total: total)
        }
        return nil
    }
}

/// What a worker's cgroup says about it now (`aibox workers --json`, field `resources`).
public struct ResourceView: Codable, Equatable, Sendable {
    /// Processes in the worker's cgroup (its main process, children, anything that called setsid).
    public var processes: Int
    /// The working set: memory.current minus inactive page cache where the memory controller
    /// is there; else the resident memory of the cgroup's processes.
    public var memoryBytes: UInt64?
    public var cpuPressure: PressureStall?
    public var memoryPressure: PressureStall?
    public var ioPressure: PressureStall?

    public init(
        processes: Int, memoryBytes: UInt64?, cpuPressure: PressureStall?, memoryPressure: PressureStall?, ioPressure: PressureStall?
    ) {
        self.processes = processes
        self.memoryBytes = memoryBytes
        self.cpuPressure = cpuPressure
        self.memoryPressure = memoryPressure
        self.ioPressure = ioPressure
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(processes, forKey: .processes)
        try c.encode(memoryBytes, forKey: .memoryBytes)
        try c.encode(cpuPressure, forKey: .cpuPressure)
        try c.encode(memoryPressure, forKey: .memoryPressure)
        try c.encode(ioPressure, forKey: .ioPressure)
    }

    /// memory.current minus inactive_file of memory.stat (page cache the kernel can drop
    /// at once), as container runtimes count a working set: reading big files is no leak.
    public static func workingSet(current: UInt64, inactiveFile: UInt64?) -> UInt64 {
        current - min(inactiveFile ?? 0, current)
    }
}

/// Pressure episodes worth an event: a resource's "some avg10" reaching `high` percent
/// starts one, falling under `low` ends it (the gap keeps a value near one line from
/// flapping). Checked every `interval`; avg10 is already a 10 s average.
public struct PressureWatch: Sendable {
    public enum Resource: String, Sendable, CaseIterable { case cpu, memory, io }

    public static let high = 40.0
    public static let low = 10.0
    public static let interval: Duration = .seconds(10)

    public private(set) var raised: Set<Resource> = []

    public init() {}

    /// (kind, message) of the events this reading causes.
    public mutating func observe(_ readings: [Resource: PressureStall]) -> [(kind: String, message: String)] {
        var out: [(String, String)] = []
        for r in Resource.allCases {
            guard let v = readings[r]?.avg10 else { continue }
            let shown = String(Int(v.rounded()))
            if !raised.contains(r) && v >= PressureWatch.high {
                raised.insert(r)
                let text = "\(r.rawValue) pressure \(shown)% (some avg10 ≥ \(Int(PressureWatch.high))%): its tasks wait for \(r.rawValue)"
                out.append(("worker.pressure", text))
            } else if raised.contains(r) && v < PressureWatch.low {
                raised.remove(r)
                out.append(("worker.pressure-over", "\(r.rawValue) pressure down to \(shown)% (below \(Int(PressureWatch.low))%)"))
            }
        }
        return out
    }
}

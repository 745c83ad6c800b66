import AIBoxCore
import CAIBoxOS
import Glibc

/// The daemon's cgroup v2 subtree (`CgroupLayout`), set up once at start: a cgroup per
/// worker under `workers/`, made at its first start and kept across respawns (a respawn
/// only passes its directory to clone3). Every operation on a worker's cgroup goes through
/// one descriptor of `workers/` (openat), so no path is walked from the mount point again.
public final class CgroupTree {
    public let layout: CgroupLayout
    /// Controllers enabled for each worker's cgroup ("memory", "pids" where delegated).
    public let controllers: Set<String>
    /// pids.max of each worker's cgroup (where the pids controller is enabled).
    public let tasksPerWorker: Int
    private let workersFD: Int32
    /// inotify on the cgroup.events of workers whose main process has exited while others remain.
    public let eventsFD: Int32
    private var watches: [Int32: String] = [:]
    private var watchByName: [String: Int32] = [:]
    /// Open descriptors of the cgroups of workers that have exited once (a worker that
    /// restarts checks its cgroup.events and enters its directory at each restart; kernfs
    /// makes an open cost more than the read). At most `keptOpenLimit` of each, so that a box
    /// of many crashing workers stays well inside its descriptor budget.
    private var keptEvents: [String: Int32] = [:]
    private var keptDirectories: [String: Int32] = [:]
    public static let keptOpenLimit = 32

    private init(layout: CgroupLayout, controllers: Set<String>, tasksPerWorker: Int, workersFD: Int32, eventsFD: Int32) {
        self.layout = layout
        self.controllers = controllers
        self.tasksPerWorker = tasksPerWorker
        self.workersFD = workersFD
        self.eventsFD = eventsFD
    }

    deinit {
        closeDescriptor(workersFD)
        closeDescriptor(eventsFD)
        for fd in keptEvents.values { closeDescriptor(fd) }
        for fd in keptDirectories.values { closeDescriptor(fd) }
    }

    // MARK: Setting up

    /// Which containment a daemon on `root` gets, and its tree when that is cgroup v2.
    /// Nothing here throws: whatever cannot be done leaves the process-group rule, with why.
    public static func establish(root: String) -> (Containment, CgroupTree?) {
        let mounts = CgroupFacts.v2Mounts(mountinfo: readTextFile("/proc/self/mountinfo") ?? "")
        let own = CgroupFacts.v2Path(procCgroup: readTextFile("/proc/self/cgroup") ?? "")
        var delegated = false
        if let own, let mount = mounts.first(where: { $0.root == "/" || own == $0.root || own.hasPrefix($0.root + "/") }) {
            let path = CgroupFacts.filesystemPath(own, mount: mount)
            delegated = xattrIsOne(path, "trusted.delegate") || xattrIsOne(path, "user.delegate")
        }
        // sd_booted(3)'s own test, without loading libsystemd's pages for it.
        let systemdManages = fileExists("/run/systemd/system")
        let plan = Containment.plan(mounts: mounts, ownPath: own, delegated: delegated, systemdManages: systemdManages, root: root)
        guard case .cgroup(let layout) = plan else { return (plan, nil) }
        do {
            let tree = try setUp(layout)
            return (.cgroup(layout), tree)
        } catch {
            return (.processGroups(reason: error.description), nil)
        }
    }

    private static func setUp(_ layout: CgroupLayout) throws(SystemError) -> CgroupTree {
        let base = layout.filesystemPath(layout.base)
        let workers = layout.filesystemPath(layout.workers)
        var made: [String] = []
        do throws(SystemError) {
            if layout.ownsBase {
                if try makeCgroup(base) { made.append(base) }
            }
            if let supervisor = layout.supervisor {
                let path = layout.filesystemPath(supervisor)
                _ = try makeCgroup(path)
                // The "no internal processes" rule: a cgroup whose children get controllers
                // may hold no process itself, so the daemon moves into a leaf of its own.
                try writeText(path + "/cgroup.procs", "0")
            }
            if try makeCgroup(workers) { made.append(workers) }
            guard fileExists(workers + "/cgroup.kill") else {
                throw SystemError("open", errno: ENOENT, detail: workers + "/cgroup.kill (cgroup.kill needs Linux 5.14 or later)")
            }
        } catch {
            // Undoing: the error above is the one to report; an empty cgroup left behind is harmless.
            for path in made.reversed() { _ = try? syscall("rmdir", detail: path) { rmdir(path) } }
            throw error
        }
        // Memory and pids for the workers, where they are delegated to us; nothing else.
        for dir in [base, workers] {
            let available = Set(words(readTextFile(dir + "/cgroup.controllers")))
            for c in ["memory", "pids"] where available.contains(c) { _ = try? writeText(dir + "/cgroup.subtree_control", "+" + c) }
        }
        let enabled = Set(words(readTextFile(workers + "/cgroup.subtree_control")))
        let available = CgroupLimits.available(
            pidMax: number(readTextFile("/proc/sys/kernel/pid_max")), threadsMax: number(readTextFile("/proc/sys/kernel/threads-max")),
            ownPidsMax: number(readTextFile(base + "/pids.max")))
        if fileExists(workers + "/pids.max") {
            _ = try? writeText(workers + "/pids.max", String(CgroupLimits.tasksForAllWorkers(available: available)))
        }
        let fd = try syscall("open", detail: workers) { Glibc.open(workers, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        let events: Int32
        do throws(SystemError) {
            events = try syscall("inotify_init1") { inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC)) }
        } catch {
            closeDescriptor(fd)
            throw error
        }
        return CgroupTree(
            layout: layout, controllers: enabled, tasksPerWorker: CgroupLimits.tasksPerWorker(available: available), workersFD: fd,
            eventsFD: events)
    }

    /// mkdir; true when it made the directory, false when it was there (a previous run's).
    private static func makeCgroup(_ path: String) throws(SystemError) -> Bool {
        do {
            try syscall("mkdir", detail: path) { mkdir(path, 0o755) }
            return true
        } catch {
            if error.errno == EEXIST { return false }
            throw error
        }
    }

    private static func xattrIsOne(_ path: String, _ name: String) -> Bool {
        var value = [UInt8](repeating: 0, count: 8)
        // ENODATA (not set) and any other failure: not marked.
        guard let n = try? syscall("getxattr", detail: path, { getxattr(path, name, &value, value.count) }) else { return false }
        return n == 1 && value[0] == UInt8(ascii: "1")
    }

    /// Removes what `establish` made, when the daemon stops: the workers' cgroups (a worker
    /// with processes left keeps its own), `workers/`, and the base when aibox made it. The
    /// supervisor's leaf stays: the daemon is in it until it exits (systemd removes it).
    public func tearDown() {
        for name in listDirectory(layout.filesystemPath(layout.workers)) where !name.contains(".") { _ = remove(name) }
        // EBUSY: a worker's cgroup still holds a process; it stays, and the next start takes it over.
        for dir in [layout.workers] + (layout.ownsBase ? [layout.base] : []) {
            let path = layout.filesystemPath(dir)
            _ = try? syscall("rmdir", detail: path) { rmdir(path) }
        }
    }

    // MARK: Workers

    /// Makes the worker's cgroup (there already after a previous run: kept).
    public func prepare(_ name: String) throws(SystemError) {
        do {
            try syscall("mkdir", detail: layout.filesystemPath(layout.worker(name))) { mkdirat(workersFD, name, 0o755) }
        } catch {
            if error.errno != EEXIST { throw error }
        }
    }

    /// The worker's cgroup directory, for clone3's CLONE_INTO_CGROUP. `owned`: the caller
    /// closes it; otherwise the tree keeps it open (a worker that has exited before) until the
    /// cgroup is removed.
    public func directory(_ name: String) throws(SystemError) -> (fd: Int32, owned: Bool) {
        if let fd = keptDirectories[name] { return (fd, false) }
        let fd = try syscall("open", detail: layout.filesystemPath(layout.worker(name))) {
            openat(workersFD, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        }
        guard keptEvents[name] != nil, keptDirectories.count < CgroupTree.keptOpenLimit else { return (fd, true) }
        keptDirectories[name] = fd
        return (fd, false)
    }

    /// cgroup.kill: SIGKILL to every process in the worker's cgroup and below, including those
    /// forked while it runs, whatever session or process group they made for themselves.
    @discardableResult
    public func kill(_ name: String) -> Bool { writeAt(name + "/cgroup.kill", "1") }

    /// Whether any process is left in the worker's cgroup (cgroup.events). A cgroup that
    /// cannot be read has none.
    public func isPopulated(_ name: String) -> Bool {
        if let fd = keptEvents[name] { return aibox_cgroup_populated_fd(fd) == 1 }
        let fd = aibox_cgroup_events_open(workersFD, name)
        guard fd >= 0 else { return false }
        let populated = aibox_cgroup_populated_fd(fd) == 1
        if keptEvents.count < CgroupTree.keptOpenLimit { keptEvents[name] = fd } else { closeDescriptor(fd) }
        return populated
    }

    /// Descriptors kept open (for tests: bounded by `keptOpenLimit`).
    public var keptOpen: (events: Int, directories: Int) { (keptEvents.count, keptDirectories.count) }

    private func forget(_ name: String) {
        if let fd = keptEvents.removeValue(forKey: name) { closeDescriptor(fd) }
        if let fd = keptDirectories.removeValue(forKey: name) { closeDescriptor(fd) }
    }

    /// The processes in the worker's cgroup and the cgroups a worker may have made below it.
    public func processes(_ name: String) -> [Int32] {
        var out: [Int32] = []
        var pending = [name]
        var visited = 0
        while let dir = pending.popLast(), visited < 256 {
            visited += 1
            out += (readAt(dir + "/cgroup.procs") ?? "").split(separator: "\n").compactMap { Int32($0) }
            let full = layout.filesystemPath(layout.workers) + "/" + dir
            for child in listDirectory(full) where !child.contains(".") { pending.append(dir + "/" + child) }
        }
        return out
    }

    /// Removes the worker's cgroup (and any a worker made below it); false while processes remain.
    @discardableResult
    public func remove(_ name: String) -> Bool {
        unwatch(name)
        forget(name)
        let full = layout.filesystemPath(layout.workers) + "/" + name
        for child in listDirectory(full) where !child.contains(".") { _ = remove(name + "/" + child) }
        do {
            try syscall("rmdir", detail: layout.filesystemPath(layout.worker(name))) { unlinkat(workersFD, name, AT_REMOVEDIR) }
            return true
        } catch {
            return error.errno == ENOENT  // EBUSY: processes remain
        }
    }

    /// Names of the workers' cgroups that hold processes (a previous run killed by SIGKILL).
    public func populatedWorkers() -> [String] {
        listDirectory(layout.filesystemPath(layout.workers)).filter { !$0.contains(".") && isPopulated($0) }.sorted()
    }

    /// Writes the limits that differ from `applied` (what was written before); returns the new
    /// `applied` and a line for each write that failed.
    public func applyLimits(_ writes: [(file: String, value: String)], to name: String, applied: [String: String]) -> (
        applied: [String: String], failures: [String]
    ) {
        var now = applied
        var failures: [String] = []
        for (file, value) in writes where applied[file] != value {
            if writeAt(name + "/" + file, value) {
                now[file] = value
            } else {
                failures.append("\(file) = \(value): \(String(cString: strerror(errno)))")
            }
        }
        return (now, failures)
    }

    /// The working set (memory.current minus inactive page cache) where the memory
    /// controller is there; else the resident memory of the cgroup's processes.
    public func memoryBytes(_ name: String) -> UInt64 {
        if let current = readAt(name + "/memory.current").flatMap(number) {
            let inactive = readAt(name + "/memory.stat").flatMap { CgroupFacts.value("inactive_file", in: $0) }
            return ResourceView.workingSet(current: UInt64(current), inactiveFile: inactive)
        }
        return processes(name).reduce(0) { sum, pid in
            sum + UInt64(max(ProcFS.info(pid)?.rssPages ?? 0, 0) * ProcFS.pageSize)
        }
    }

    /// The "some" line of cpu.pressure, memory.pressure and io.pressure of a worker's cgroup,
    /// or of `workers/` itself for nil (its "some" is at least any worker's: a stalled task of
    /// a worker is a stalled task of its parent).
    public func pressure(_ name: String?) -> [PressureWatch.Resource: PressureStall] {
        var out: [PressureWatch.Resource: PressureStall] = [:]
        for r in PressureWatch.Resource.allCases {
            let file = (name.map { $0 + "/" } ?? "") + r.rawValue + ".pressure"
            if let p = readAt(file).flatMap(PressureStall.parse) { out[r] = p }
        }
        return out
    }

    public func resources(_ name: String) -> ResourceView {
        let p = pressure(name)
        return ResourceView(
            processes: processes(name).count, memoryBytes: memoryBytes(name), cpuPressure: p[.cpu], memoryPressure: p[.memory],
            ioPressure: p[.io])
    }

    // MARK: Waiting for a cgroup to empty

    /// Watches the worker's cgroup.events; `changedWorkers` names it when it changes.
    /// Check `isPopulated` after this: it may have emptied before the watch was there.
    public func watch(_ name: String) throws(SystemError) {
        guard watchByName[name] == nil else { return }
        let path = layout.filesystemPath(layout.worker(name)) + "/cgroup.events"
        let wd = try syscall("inotify_add_watch", detail: path) { inotify_add_watch(eventsFD, path, UInt32(IN_MODIFY)) }
        watches[wd] = name
        watchByName[name] = wd
    }

    public func unwatch(_ name: String) {
        guard let wd = watchByName.removeValue(forKey: name) else { return }
        watches[wd] = nil
        // EINVAL: the kernel dropped the watch already (its cgroup was removed).
        _ = try? syscall("inotify_rm_watch") { inotify_rm_watch(eventsFD, wd) }
    }

    /// Reads every pending inotify event: the workers whose cgroup.events changed.
    public func changedWorkers() -> Set<String> {
        var out: Set<String> = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            // nil: none left. An error (none is expected of inotify) ends this turn's reading too.
            let got = try? nonBlockingSyscall("read", detail: "cgroup.events watches") {
                buf.withUnsafeMutableBytes { Glibc.read(eventsFD, $0.baseAddress, $0.count) }
            }
            guard let n = got, n > 0 else { break }
            var offset = 0
            while offset + 16 <= n {
                let wd = buf.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: Int32.self) }
                let len = buf.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self) }
                if let name = watches[wd] { out.insert(name) }
                offset += 16 + Int(len)
            }
        }
        return out
    }

    // MARK: Files

    private func readAt(_ relative: String) -> String? {
        // A file that cannot be opened or read is none: the callers take nil for "nothing there".
        guard let fd = try? syscall("open", detail: relative, { openat(workersFD, relative, O_RDONLY | O_CLOEXEC) }) else { return nil }
        defer { closeDescriptor(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while out.count < 1 << 20 {
            let got = try? syscall("read", detail: relative) { buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) } }
            guard let n = got, n > 0 else { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    private func writeAt(_ relative: String, _ text: String) -> Bool {
        // Its callers take false for "not done" (a limit not set, a cgroup gone).
        guard let fd = try? syscall("open", detail: relative, { openat(workersFD, relative, O_WRONLY | O_CLOEXEC) }) else { return false }
        defer { closeDescriptor(fd) }
        return (try? writeAll(fd, Array(text.utf8))) != nil
    }
}

/// A one-write file such as cgroup.procs or cgroup.subtree_control (never atomically: it is
/// no file but a command to the kernel).
private func writeText(_ path: String, _ text: String) throws(SystemError) {
    let fd = try syscall("open", detail: path) { Glibc.open(path, O_WRONLY | O_CLOEXEC) }
    defer { closeDescriptor(fd) }
    do { try writeAll(fd, Array(text.utf8)) } catch { throw SystemError("write", errno: error.errno, detail: path) }
}

private func words(_ text: String?) -> [String] {
    (text ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
}

private func number(_ text: String?) -> Int? {
    text.flatMap { Int($0.trimmingCharacters(in: " \n")) }
}

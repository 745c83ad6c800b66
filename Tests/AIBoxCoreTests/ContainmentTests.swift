import Testing

@testable import AIBoxCore

/// /proc/self/mountinfo of a hybrid machine (cgroup v1 controllers beside a cgroup2 at
/// /sys/fs/cgroup/unified), as on the machine these tests were written on.
let hybridMountinfo = """
    22 1 0:21 / / rw,relatime - ext4 /dev/vda rw
    31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
    35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
    39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
    """

/// A systemd machine: cgroup2 alone at /sys/fs/cgroup, with optional fields before "-".
let unifiedMountinfo = """
    25 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
    30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
    """

func layout(_ c: Containment) -> CgroupLayout? {
    if case .cgroup(let l) = c { return l }
    return nil
}

func reason(_ c: Containment) -> String? {
    if case .processGroups(let r) = c { return r }
    return nil
}

@Suite("Containment: cgroup v2 decisions")
struct ContainmentTests {
    // MARK: Facts from /proc

    @Test("the cgroup2 mount is found in mountinfo, beside v1 hierarchies or alone, with its ro flag and escapes")
    func mounts() {
        #expect(CgroupFacts.v2Mounts(mountinfo: hybridMountinfo) == [.init(point: "/sys/fs/cgroup/unified", root: "/", readOnly: false)])
        #expect(CgroupFacts.v2Mounts(mountinfo: unifiedMountinfo) == [.init(point: "/sys/fs/cgroup", root: "/", readOnly: false)])
        // A container: read-only, a subtree bind-mounted, a space in the mount point (\040).
        let container = "99 98 0:26 /machine.slice/box /sys/fs/cgroup\\040x ro,nosuid - cgroup2 cgroup2 rw\n"
        #expect(
            CgroupFacts.v2Mounts(mountinfo: container) == [.init(point: "/sys/fs/cgroup x", root: "/machine.slice/box", readOnly: true)])
        // cgroup v1 only, and garbage: none.
        #expect(CgroupFacts.v2Mounts(mountinfo: "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n").isEmpty)
        #expect(CgroupFacts.v2Mounts(mountinfo: "- cgroup2\n\n1 2 3\n").isEmpty)
    }

    @Test("the own cgroup is the 0:: line; none without one, none once removed")
    func ownPath() {
        #expect(CgroupFacts.v2Path(procCgroup: "9:name=systemd:/\n4:memory:/a\n0::/\n") == "/")
        #expect(CgroupFacts.v2Path(procCgroup: "0::/system.slice/aibox.service\n") == "/system.slice/aibox.service")
        #expect(CgroupFacts.v2Path(procCgroup: "4:memory:/a\n1:cpu:/\n") == nil)
        #expect(CgroupFacts.v2Path(procCgroup: "0::/gone (deleted)\n") == nil)
        #expect(CgroupFacts.v2Path(procCgroup: "") == nil)
    }

    @Test("cgroup.events, flat-keyed files")
    func files() {
        #expect(CgroupFacts.populated(events: "populated 1\nfrozen 0\n") == true)
        #expect(CgroupFacts.populated(events: "populated 0\nfrozen 0\n") == false)
        #expect(CgroupFacts.populated(events: "frozen 0\n") == nil)
        #expect(CgroupFacts.value("inactive_file", in: "anon 10\ninactive_file 4096\nactive_file 1\n") == 4096)
        #expect(CgroupFacts.value("inactive_file", in: "inactive_file_x 3\n") == nil)
    }

    // MARK: Which containment

    @Test("started by hand where systemd does not manage cgroups: a subtree of its own named after --root")
    func byHand() throws {
        let mounts = CgroupFacts.v2Mounts(mountinfo: hybridMountinfo)
        let c = Containment.plan(mounts: mounts, ownPath: "/", delegated: false, systemdManages: false, root: "/tmp/box")
        let l = try #require(layout(c))
        let name = Containment.subtreeName(root: "/tmp/box")
        #expect(l.base == "/" + name)
        #expect(l.supervisor == nil)
        #expect(l.workers == "/" + name + "/workers")
        #expect(l.ownsBase)
        #expect(l.filesystemPath(l.worker("chat")) == "/sys/fs/cgroup/unified/\(name)/workers/chat")
        #expect(c.summary == "cgroup v2 (/sys/fs/cgroup/unified/\(name))")
        // Below a non-root cgroup, as a child of it.
        let nested = try #require(
            layout(Containment.plan(mounts: mounts, ownPath: "/ci/job", delegated: false, systemdManages: false, root: "/")))
        #expect(nested.base == "/ci/job/aibox")
    }

    @Test("a delegated cgroup (Delegate=yes): aibox takes it whole, the daemon in supervisor/, workers in workers/")
    func delegated() throws {
        let mounts = CgroupFacts.v2Mounts(mountinfo: unifiedMountinfo)
        let l = try #require(
            layout(
                Containment.plan(
                    mounts: mounts, ownPath: "/system.slice/aibox.service", delegated: true, systemdManages: true, root: "/")))
        #expect(l.base == "/system.slice/aibox.service")
        #expect(l.supervisor == "/system.slice/aibox.service/supervisor")
        #expect(l.workers == "/system.slice/aibox.service/workers")
        #expect(!l.ownsBase)
        #expect(l.filesystemPath(l.worker("chat")) == "/sys/fs/cgroup/system.slice/aibox.service/workers/chat")
    }

    @Test("where cgroup v2 cannot be used, the process-group rule, and the reason says why")
    func processGroups() throws {
        let mounts = CgroupFacts.v2Mounts(mountinfo: unifiedMountinfo)
        let undelegated = try #require(
            reason(Containment.plan(mounts: mounts, ownPath: "/user.slice/s.scope", delegated: false, systemdManages: true, root: "/")))
        #expect(undelegated.contains("did not delegate /user.slice/s.scope"))
        #expect(undelegated.contains("Delegate=yes"))
        #expect(
            reason(Containment.plan(mounts: [], ownPath: "/", delegated: false, systemdManages: false, root: "/"))?.contains(
                "no cgroup v2 hierarchy") == true)
        #expect(
            reason(Containment.plan(mounts: mounts, ownPath: nil, delegated: false, systemdManages: false, root: "/"))?.contains(
                "no \"0::\" line") == true)
        let ro = [CgroupFacts.Mount(point: "/sys/fs/cgroup", root: "/", readOnly: true)]
        let readOnly = Containment.plan(mounts: ro, ownPath: "/", delegated: false, systemdManages: false, root: "/")
        #expect(readOnly == .processGroups(reason: "the cgroup2 mount /sys/fs/cgroup is read-only"))
        #expect(readOnly.summary == "process groups (cgroup v2 not used: the cgroup2 mount /sys/fs/cgroup is read-only)")
        // A container that sees only a bind-mounted subtree and is outside it.
        let bound = [CgroupFacts.Mount(point: "/sys/fs/cgroup", root: "/machine.slice/box", readOnly: false)]
        #expect(
            reason(Containment.plan(mounts: bound, ownPath: "/elsewhere", delegated: false, systemdManages: false, root: "/"))?
                .contains("not below any cgroup2 mount") == true)
    }

    @Test("a bind-mounted subtree maps hierarchy paths under its mount point")
    func boundSubtree() throws {
        let bound = [CgroupFacts.Mount(point: "/sys/fs/cgroup", root: "/machine.slice/box", readOnly: false)]
        let l = try #require(
            layout(
                Containment.plan(mounts: bound, ownPath: "/machine.slice/box/init", delegated: true, systemdManages: false, root: "/")))
        #expect(l.filesystemPath(l.worker("w")) == "/sys/fs/cgroup/init/workers/w")
        #expect(l.filesystemPath("/machine.slice/box") == "/sys/fs/cgroup")
    }

    @Test("subtree names: one per root, file-name safe, bounded, never shared by two roots")
    func subtreeNames() {
        #expect(Containment.subtreeName(root: "/") == "aibox")
        let a = Containment.subtreeName(root: "/tmp/a-b"), b = Containment.subtreeName(root: "/tmp/a/b")
        #expect(a.hasPrefix("aibox-tmp-a-b-") && b.hasPrefix("aibox-tmp-a-b-"))
        #expect(a != b)
        #expect(Containment.subtreeName(root: "/tmp/a b") != Containment.subtreeName(root: "/tmp/a_b"))
        let long = Containment.subtreeName(root: "/" + String(repeating: "x/", count: 300))
        #expect(long.utf8.count <= 6 + 64 + 1 + 8 + 1)
        #expect(!long.contains("/") && !long.contains("."))
        #expect(Containment.subtreeName(root: "/tmp/box") == Containment.subtreeName(root: "/tmp/box"))
    }

    @Test("worker cgroups are told from others by their path, not by a prefix of a name")
    func workerPaths() {
        let l = CgroupLayout(
            mountPoint: "/sys/fs/cgroup", mountRoot: "/", base: "/a", supervisor: nil, workers: "/a/workers", ownsBase: true)
        #expect(l.isWorkerCgroup("/a/workers/chat"))
        #expect(l.workerName(ofCgroup: "/a/workers/chat") == "chat")
        #expect(l.workerName(ofCgroup: "/a/workers/chat/inner") == "chat")
        #expect(!l.isWorkerCgroup("/a/workers"))
        #expect(!l.isWorkerCgroup("/a/workers2/chat"))
        #expect(l.workerName(ofCgroup: "/a") == nil)
    }

    // MARK: Limits

    @Test("limits are written exactly for the controllers there")
    func limits() {
        func files(_ w: [(file: String, value: String)]) -> [String: String] {
            Dictionary(w.map { ($0.file, $0.value) }, uniquingKeysWith: { a, _ in a })
        }
        #expect(CgroupLimits.writes(memoryMax: 1 << 30, tasksMax: 700, controllers: []).isEmpty)
        #expect(CgroupLimits.writes(memoryMax: 1 << 30, tasksMax: 700, controllers: ["cpu", "io"]).isEmpty)
        #expect(files(CgroupLimits.writes(memoryMax: nil, tasksMax: 700, controllers: ["pids"])) == ["pids.max": "700"])
        #expect(
            files(CgroupLimits.writes(memoryMax: 1 << 30, tasksMax: 700, controllers: ["memory"])) == [
                "memory.high": "1073741824", "memory.max": "1342177280", "memory.oom.group": "1",
            ])
        // Without memory-max (a reload removed it), the limits are lifted, not left.
        #expect(
            files(CgroupLimits.writes(memoryMax: nil, tasksMax: 9, controllers: ["memory", "pids"])) == [
                "memory.high": "max", "memory.max": "max", "memory.oom.group": "1", "pids.max": "9",
            ])
        #expect(CgroupLimits.hardMemoryLimit(.max) == .max)
        #expect(CgroupLimits.hardMemoryLimit(400) == 500)
    }

    @Test("tasks: 15 % per worker and 90 % for all workers of the smallest limit there is")
    func tasks() {
        // A 4 GiB board: pid_max raised by systemd, threads-max from memory, the unit's TasksMax.
        let available = CgroupLimits.available(pidMax: 4_194_304, threadsMax: 31_000, ownPidsMax: 4915)
        #expect(available == 4915)
        #expect(CgroupLimits.tasksPerWorker(available: available) == 737)
        #expect(CgroupLimits.tasksForAllWorkers(available: available) == 4423)
        #expect(CgroupLimits.available(pidMax: 32768, threadsMax: 192_730, ownPidsMax: nil) == 32768)
        #expect(CgroupLimits.available(pidMax: nil, threadsMax: nil, ownPidsMax: nil) == 32768)
        #expect(CgroupLimits.tasksPerWorker(available: 100) == 64)
    }

    // MARK: Pressure

    @Test("a pressure file's some line")
    func pressureParse() {
        let text = "some avg10=12.50 avg60=3.00 avg300=0.10 total=123456\nfull avg10=1.00 avg60=0.00 avg300=0.00 total=99\n"
        #expect(PressureStall.parse(text) == PressureStall(avg10: 12.5, total: 123_456))
        #expect(PressureStall.parse("full avg10=1.00 avg60=0.00 avg300=0.00 total=99\n") == nil)
        #expect(PressureStall.parse("some avg10=x total=1\n") == nil)
        #expect(PressureStall.parse("") == nil)
    }

    @Test("an episode of high pressure is one event when it starts and one when it ends")
    func pressureEpisodes() {
        var w = PressureWatch()
        func reading(_ cpu: Double, memory: Double = 0) -> [PressureWatch.Resource: PressureStall] {
            [.cpu: PressureStall(avg10: cpu, total: 1), .memory: PressureStall(avg10: memory, total: 1)]
        }
        #expect(w.observe(reading(39.9)).isEmpty)
        let up = w.observe(reading(40))
        #expect(up.map(\.kind) == ["worker.pressure"])
        #expect(up.first?.message.hasPrefix("cpu pressure 40%") == true)
        // Between the lines: nothing, whichever way it moves.
        #expect(w.observe(reading(80)).isEmpty)
        #expect(w.observe(reading(10)).isEmpty)
        let down = w.observe(reading(9.9, memory: 55))
        #expect(down.map(\.kind) == ["worker.pressure-over", "worker.pressure"])
        #expect(down.map(\.message).contains { $0.hasPrefix("memory pressure 55%") })
        #expect(w.raised == [.memory])
        // A resource with no reading changes nothing.
        #expect(w.observe([:]).isEmpty)
    }

    @Test("the working set leaves out inactive page cache and never goes below zero")
    func workingSet() {
        #expect(ResourceView.workingSet(current: 100, inactiveFile: 30) == 70)
        #expect(ResourceView.workingSet(current: 100, inactiveFile: nil) == 100)
        #expect(ResourceView.workingSet(current: 10, inactiveFile: 30) == 0)
    }
}

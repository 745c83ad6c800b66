import AIBoxCore
import CAIBoxOS
import Glibc

/// What to start: argv (never a shell line), environment, directory, output, user.
public struct SpawnRequest {
    public var argv: [String]
    public var environment: [String: String]
    public var workdir: String?
    public var user: String?
    public var stdoutFD: Int32
    public var stderrFD: Int32
    /// A cgroup v2 directory (open, O_DIRECTORY) to start the process in; nil: ours.
    public var cgroupFD: Int32?
    /// Enter that cgroup by writing cgroup.procs in the child, not with CLONE_INTO_CGROUP:
    /// Linux 6.x kernels kill every child cloned into a cgroup that was ever cgroup.kill'ed
    /// (cgroup_css_set_fork reads the kill sequence of our cgroup, not the target's), so a
    /// killed worker's cgroup is made anew, and this is for when the old one cannot go yet.
    public var cgroupByWrite = false

    public init(
        argv: [String], environment: [String: String], workdir: String?, user: String?, stdoutFD: Int32, stderrFD: Int32,
        cgroupFD: Int32? = nil
    ) {
        self.argv = argv
        self.environment = environment
        self.workdir = workdir
        self.user = user
        self.stdoutFD = stdoutFD
        self.stderrFD = stderrFD
        self.cgroupFD = cgroupFD
    }
}

/// A user to run as.
public struct UserIdentity: Equatable, Sendable {
    public var uid: uid_t
    public var gid: gid_t
    public var groups: [gid_t]
    public var home: String

    /// getpwnam_r + getgrouplist.
    public static func lookup(_ name: String) -> UserIdentity? {
        var pwd = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getpwnam_r(name, &pwd, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        var count: Int32 = 64
        var groups = [gid_t](repeating: 0, count: 64)
        if getgrouplist(name, pwd.pw_gid, &groups, &count) < 0 {
            groups = [gid_t](repeating: 0, count: Int(count))
            _ = getgrouplist(name, pwd.pw_gid, &groups, &count)
        }
        return UserIdentity(
            uid: pwd.pw_uid, gid: pwd.pw_gid, groups: Array(groups.prefix(Int(max(count, 0)))),
            home: String(cString: pwd.pw_dir))
    }
}

public enum Spawner {
    /// Children started through `spawn` and not reaped yet: what this process started
    /// itself, as opposed to orphans reparented to it as a subreaper.
    private static let started = PIDSet()

    public static func isOwnChild(_ pid: Int32) -> Bool { started.contains(pid) }

    /// Every child's stdin, opened once (close-on-exec: a child gets it only as its fd 0).
    private static let devNull: Int32 = open("/dev/null", O_RDONLY | O_CLOEXEC)

    /// The unit gives the supervisor OOMScoreAdjust=-900; workers go back to 0 so that a
    /// leaking agent, not the supervisor, is what the kernel kills.
    static let supervisorIsShieldedFromOOM: Bool = {
        guard let text = readTextFile("/proc/self/oom_score_adj"), let v = Int(text.trimmingCharacters(in: " \n")) else { return false }
        return v < 0
    }()

    /// Starts a process in its own session and process group (pgid == pid) — and in the cgroup
    /// `cgroupFD` when one is given — with no descriptor but 0 (/dev/null), 1 and 2, default
    /// signal handling, and the user dropped when we are root and one is named. Errors say
    /// which step failed.
    public static func spawn(_ request: SpawnRequest) throws(SystemError) -> Int32 {
        try spawn(
            PreparedSpawn(request), stdoutFD: request.stdoutFD, stderrFD: request.stderrFD, cgroupFD: request.cgroupFD,
            cgroupByWrite: request.cgroupByWrite)
    }

    /// `spawn` of a request prepared before (argv, environment, user resolved once).
    public static func spawn(
        _ p: PreparedSpawn, stdoutFD: Int32, stderrFD: Int32, cgroupFD: Int32? = nil, cgroupByWrite: Bool = false
    ) throws(SystemError) -> Int32 {
        var devNull = Spawner.devNull
        if devNull < 0 { devNull = try syscall("open", detail: "/dev/null") { open("/dev/null", O_RDONLY | O_CLOEXEC) } }
        defer { if devNull != Spawner.devNull { closeDescriptor(devNull) } }
        var step: Int32 = 0
        var err: Int32 = 0
        let pid: pid_t = p.groups.withUnsafeBufferPointer { groupsBuffer in
            var attr = aibox_spawn_attr()
            attr.path = UnsafePointer(p.path)
            attr.argv = p.argv.pointer
            attr.envp = p.envp.pointer
            attr.workdir = p.workdir.map { UnsafePointer($0) }
            attr.stdin_fd = devNull
            attr.stdout_fd = stdoutFD
            attr.stderr_fd = stderrFD
            attr.reset_oom_score_adj = Spawner.supervisorIsShieldedFromOOM ? 1 : 0
            if let cg = cgroupFD {
                attr.use_cgroup = 1
                attr.cgroup_fd = cg
                attr.cgroup_by_write = cgroupByWrite ? 1 : 0
            }
            if let identity = p.identity {
                attr.drop_privileges = 1
                attr.uid = identity.uid
                attr.gid = identity.gid
                attr.groups = groupsBuffer.baseAddress
                attr.ngroups = groupsBuffer.count
            }
            return aibox_spawn(&attr, &step, &err)
        }
        // Only raw pointers into it reached aibox_spawn: keep it alive until it returned.
        withExtendedLifetime(p) {}
        if pid < 0 {
            let what: String
            switch Int(step) {
            case Int(AIBOX_SPAWN_STEP_SETSID): what = "setsid"
            case Int(AIBOX_SPAWN_STEP_DUP): what = "dup2"
            case Int(AIBOX_SPAWN_STEP_GROUPS): what = "setgroups"
            case Int(AIBOX_SPAWN_STEP_GID): what = "setresgid"
            case Int(AIBOX_SPAWN_STEP_UID): what = "setresuid"
            case Int(AIBOX_SPAWN_STEP_CHDIR): what = "chdir"
            case Int(AIBOX_SPAWN_STEP_EXEC): what = "execve"
            case Int(AIBOX_SPAWN_STEP_CGROUP): what = "write cgroup.procs"
            default: what = cgroupFD == nil ? "vfork" : "clone3 into the worker's cgroup"
            }
            let detail: String? =
                switch what {
                case "execve": p.program
                case "chdir": p.directory
                default: nil
                }
            throw SystemError(what, errno: err, detail: detail)
        }
        started.insert(pid)
        return pid
    }

    /// Called for every child reaped.
    static func reaped(_ pid: Int32) { started.remove(pid) }
}

/// A set of pids shared by threads (tests spawn from several; the daemon from one).
private final class PIDSet: @unchecked Sendable {
    private var pids: Set<Int32> = []
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    init() { pthread_mutex_init(lock, nil) }

    private func locked<R>(_ body: () -> R) -> R {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return body()
    }

    func insert(_ pid: Int32) { locked { _ = pids.insert(pid) } }
    func remove(_ pid: Int32) { locked { _ = pids.remove(pid) } }
    func contains(_ pid: Int32) -> Bool { locked { pids.contains(pid) } }
}

/// A request in the form aibox_spawn takes it: argv and environment as C arrays, the user
/// looked up. A supervisor keeps one per worker definition, so that a respawn does no string
/// work and no lookup.
public final class PreparedSpawn {
    let path: UnsafeMutablePointer<CChar>
    let argv: CStringArray
    let envp: CStringArray
    let workdir: UnsafeMutablePointer<CChar>?
    let identity: UserIdentity?
    let groups: [gid_t]
    let program: String
    let directory: String?

    /// Looks the user up (when we are root and one is named): an unknown one is an error here.
    public init(_ request: SpawnRequest) throws(SystemError) {
        precondition(!request.argv.isEmpty)
        var identity: UserIdentity?
        if let user = request.user, geteuid() == 0 {
            guard let id = UserIdentity.lookup(user) else {
                throw SystemError("getpwnam", errno: ENOENT, detail: "user \"\(user)\" does not exist")
            }
            identity = id
        }
        self.identity = identity
        groups = identity?.groups ?? []
        program = request.argv[0]
        directory = request.workdir
        path = strdup(request.argv[0])
        workdir = request.workdir.map { strdup($0) }
        argv = CStringArray(request.argv)
        envp = CStringArray(request.environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" })
    }

    deinit {
        free(path)
        free(workdir)
    }
}

/// A NULL-terminated char* array that lives as long as this value.
final class CStringArray {
    private var storage: [UnsafeMutablePointer<CChar>?]
    init(_ strings: [String]) {
        storage = strings.map { strdup($0) } + [nil]
    }
    var pointer: UnsafePointer<UnsafeMutablePointer<CChar>?> {
        storage.withUnsafeBufferPointer { $0.baseAddress! }
    }
    deinit { for p in storage { free(p) } }
}

/// Process exits as `waitpid` reports them.
public enum Reaper {
    /// Reaps every child that has exited (WNOHANG), returning pid and status. Being a
    /// child subreaper, this includes orphaned grandchildren.
    /// `noneLeft` is true when no child at all remains (ECHILD).
    public static func reapAll() -> (reaped: [(pid: Int32, status: ExitStatus)], noneLeft: Bool) {
        var out: [(pid: Int32, status: ExitStatus)] = []
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid < 0 && errno == EINTR { continue }
            if pid < 0 { return (out, errno == ECHILD) }
            if pid == 0 { return (out, false) }
            Spawner.reaped(pid)
            out.append((pid, decode(status)))
        }
    }

    public static func decode(_ status: Int32) -> ExitStatus {
        if aibox_wifsignaled(status) != 0 { return .signal(aibox_wtermsig(status)) }
        return .code(aibox_wexitstatus(status))
    }

    /// Marks this process a child subreaper.
    public static func becomeSubreaper() throws(SystemError) {
        try syscall("prctl(PR_SET_CHILD_SUBREAPER)") { aibox_set_child_subreaper() }
    }
}

import AIBoxCore
import CAIBoxOS
import Glibc

/// What to start: argv (never a shell line), environment, directory, input, output, user.
public struct SpawnRequest {
    public var argv: [String]
    public var environment: [String: String]
    /// The child gets this process's environment, `environment` set over it.
    public var inheritsEnvironment = false
    /// The child's standard input; nil: /dev/null.
    public var stdinFD: Int32?
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
        // Not a system call (errno is not set): -1 says the list was too small, and `count`
        // how large it must be. A user added to groups between two calls asks once more; a
        // list that cannot be had is no user to run as (never a user with fewer groups).
        var tries = 0
        while getgrouplist(name, pwd.pw_gid, &groups, &count) < 0 {
            tries += 1
            guard tries < 4, Int(count) > groups.count else { return nil }
            groups = [gid_t](repeating: 0, count: Int(count))
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
    /// -1 when it cannot be: each spawn then opens it, and says why it cannot.
    private static let devNull: Int32 =
        (try? syscall("open", detail: "/dev/null") { open("/dev/null", O_RDONLY | O_CLOEXEC) }) ?? -1

    /// The unit gives the supervisor OOMScoreAdjust=-900; workers go back to 0 so that a
    /// leaking agent, not the supervisor, is what the kernel kills.
    static let supervisorIsShieldedFromOOM: Bool = {
        guard let text = readTextFile("/proc/self/oom_score_adj"), let v = Int(text.trimmingCharacters(in: " \n")) else { return false }
        return v < 0
    }()

    /// Starts a process in its own session and process group (pgid == pid) — and in the cgroup
    /// `cgroupFD` when one is given — with no descriptor but 0 (/dev/null unless `stdinFD`),
    /// 1 and 2, default signal handling, and the user dropped when we are root and one is
    /// named. Errors say which step failed. The caller reaps it: `Reaper.reapAll` (the
    /// daemon) or `wait(for:)`, which forget it.
    public static func spawn(_ request: SpawnRequest) throws(SystemError) -> Int32 {
        try spawn(
            PreparedSpawn(request), stdinFD: request.stdinFD, stdoutFD: request.stdoutFD, stderrFD: request.stderrFD,
            cgroupFD: request.cgroupFD, cgroupByWrite: request.cgroupByWrite)
    }

    /// `spawn` of a request prepared before (argv, environment, user resolved once).
    public static func spawn(
        _ p: PreparedSpawn, stdinFD: Int32? = nil, stdoutFD: Int32, stderrFD: Int32, cgroupFD: Int32? = nil,
        cgroupByWrite: Bool = false
    ) throws(SystemError) -> Int32 {
        var devNull = stdinFD ?? Spawner.devNull
        if devNull < 0 { devNull = try syscall("open", detail: "/dev/null") { open("/dev/null", O_RDONLY | O_CLOEXEC) } }
        defer { if devNull != Spawner.devNull && devNull != stdinFD { closeDescriptor(devNull) } }
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
            // Not through `syscall`: its failure is a step and that step's errno, read below.
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

    /// Waits for the child `pid` started by `spawn` — that one only: any other child is left
    /// to its own waiter — and forgets it. nil when its status cannot be known: another
    /// waiter took it first, or SIGCHLD is ignored (the kernel then reaps it itself).
    public static func wait(for pid: Int32) -> ExitStatus? {
        precondition(pid > 0, "waitpid(\(pid)): not one child")
        var status: Int32 = 0
        defer { reaped(pid) }  // waited for or not, it is not ours to wait for any more
        guard (try? syscall("waitpid") { waitpid(pid, &status, 0) }) != nil else { return nil }
        return Reaper.decode(status)
    }
}

/// A set of pids shared by threads (tests spawn from several; the daemon from one). A pthread
/// mutex, not Synchronization.Mutex: that module is one more shared library in the daemon.
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
        let environment =
            request.inheritsEnvironment ? currentEnvironment().merging(request.environment) { $1 } : request.environment
        envp = CStringArray(environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" })
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
            let pid: Int32
            do {
                pid = try syscall("waitpid") { waitpid(-1, &status, WNOHANG) }
            } catch {
                return (out, error.errno == ECHILD)  // the only other failure, EINVAL, is a bug
            }
            if pid == 0 { return (out, false) }
            Spawner.reaped(pid)
            out.append((pid, decode(status)))
        }
    }

    /// Whether child `pid` has exited, without reaping it: while it is a zombie its pid cannot
    /// be reused, and (cgroup v2) its cgroup's css_set stays alive, so a restart cloned into
    /// the same cgroup before `reapAll` does not pay for making one anew.
    public static func peekExited(_ pid: Int32) -> ExitStatus? {
        var code: Int32 = 0, signal: Int32 = 0
        guard aibox_peek_exited(pid, &code, &signal) == 1 else { return nil }
        return signal != 0 ? .signal(signal) : .code(code)
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

/// Runs a program to its end — argv[0] a path, never a shell line — with `input` on its
/// standard input and this process's environment, through `Spawner` like every child (its
/// own session, no descriptor but 0-2, default signals; its standard error is ours). Returns
/// its exit status (-1 when a signal killed it; nil when it could not be started or its
/// status cannot be known) and the first MiB of its standard output. It waits for this
/// child only, so it may be called where other children run.
public func captureProgram(_ argv: [String], input: String? = nil) -> (status: Int32?, output: String) {
    guard let outPipe = try? makePipe() else { return (nil, "") }
    var inPipe: (read: Int32, write: Int32)?
    if input != nil {
        guard let p = try? makePipe() else {
            closeDescriptor(outPipe.read)
            closeDescriptor(outPipe.write)
            return (nil, "")
        }
        inPipe = p
    }
    var request = SpawnRequest(argv: argv, environment: [:], workdir: nil, user: nil, stdoutFD: outPipe.write, stderrFD: 2)
    request.inheritsEnvironment = true
    request.stdinFD = inPipe?.read
    // Not started (no such program, …): that is the nil status; the reason is not asked for.
    let pid = try? Spawner.spawn(request)
    closeDescriptor(outPipe.write)
    if let inPipe {
        closeDescriptor(inPipe.read)
        // EPIPE: the program did not read it all; its status says how it took that.
        if pid != nil, let input { try? writeAllToPipe(inPipe.write, Array(input.utf8)) }
        closeDescriptor(inPipe.write)
    }
    var output: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while pid != nil, output.count <= 1 << 20 {
        // An error reading the pipe (none is expected) ends the output as its end would.
        guard let n = try? syscall("read", detail: argv[0], { read(outPipe.read, &buffer, buffer.count) }), n > 0 else { break }
        output += buffer[0..<n]
    }
    closeDescriptor(outPipe.read)
    guard let pid else { return (nil, "") }
    let text = String(decoding: output, as: UTF8.self)
    switch Spawner.wait(for: pid) {
    case .code(let code)?: return (code, text)
    case .signal?: return (-1, text)
    case nil: return (nil, text)
    }
}

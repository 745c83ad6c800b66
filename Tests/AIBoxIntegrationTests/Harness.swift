import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// The directory of the built products (`aibox`, `aibox-example-worker`), beside this test binary.
let productsDirectory: String = {
    LeftoverCheck.watching  // every test that runs aibox or the worker comes through here first
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    let exe = String(decoding: buf[0..<max(n, 0)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    var dir = parentDirectory(exe)
    // swift-testing may run from inside the .xctest bundle directory.
    while !fileExists(dir + "/aibox") && dir != "/" { dir = parentDirectory(dir) }
    return dir
}()

let aiboxBinary = productsDirectory + "/aibox"
let workerBinary = productsDirectory + "/aibox-example-worker"

struct CommandResult {
    var code: Int32
    var stdout: String
    var stderr: String
}

/// Runs a program to completion, capturing its output.
@discardableResult
func run(_ path: String, _ args: [String], environment: [String: String]? = nil) throws -> CommandResult {
    LeftoverCheck.watching
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    if let environment { p.environment = environment }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return CommandResult(code: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}

/// Waits for `condition` on the monotonic clock, up to `timeout`; checks every 20 ms.
/// Returns whether it became true (the caller asserts it with a message).
@discardableResult
func waitUntil(_ timeout: Duration = .seconds(15), _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Clock.monotonic() + timeout
    while Clock.monotonic() < deadline {
        if try condition() { return true }
        usleep(20_000)
    }
    return try condition()
}

/// A box on a temporary `--root`, with the daemon as a real child process.
final class TestBox {
    let root: String
    var daemon: Process?
    var paths: Paths { Paths(root: root) }

    /// `provisioned`: as after setup (a box.toml), so that workers run; false: setup mode.
    init(_ workers: String = "", file: String = "test.toml", provisioned: Bool = true) throws {
        var template = Array("/tmp/aibox-test-XXXXXX".utf8CString)
        guard let dir = mkdtemp(&template) else { throw SystemError("mkdtemp", errno: errno) }
        root = String(cString: dir)
        try makeDirectories(paths.vendorWorkers)
        try makeDirectories(paths.localWorkers)
        if provisioned { try writeFileAtomically(paths.boxConfig, Array("name = \"test-box\"\n".utf8)) }
        if !workers.isEmpty { try write(workers, file: file) }
    }

    deinit {
        if let d = daemon, d.isRunning {
            // The daemon itself too when a launcher runs it: killing only the launcher would orphan it.
            kill(daemonPID, SIGKILL)
            kill(d.processIdentifier, SIGKILL)
            d.waitUntilExit()
        }
        killLeftovers()
        removeCgroupSubtree()
        if stateOnTmpfs { _ = try? run("/bin/umount", ["-l", paths.stateDirectory]) }
        _ = try? run("/bin/rm", ["-rf", root])
    }

    /// Writes a worker file; `@WORKER@` becomes the example worker's path.
    func write(_ text: String, file: String = "test.toml", local: Bool = false) throws {
        let dir = local ? paths.localWorkers : paths.vendorWorkers
        try writeFileAtomically(dir + "/" + file, Array(text.replacingOccurrences(of: "@WORKER@", with: workerBinary).utf8))
    }

    /// `launcher` runs the daemon through another program and its arguments (e.g. /usr/bin/env).
    func startDaemon(
        environment extra: [String: String] = [:], launcher: [String]? = nil, logTarget: String = "files", input: Pipe? = nil,
        stdout: Pipe? = nil
    ) throws {
        let p = Process()
        if let input { p.standardInput = input }
        let args = ["daemon", "--root", root, "--log-target", logTarget, "--log-level", "debug"]
        if let launcher, let program = launcher.first {
            p.executableURL = URL(fileURLWithPath: program)
            p.arguments = Array(launcher.dropFirst()) + [aiboxBinary] + args
        } else {
            p.executableURL = URL(fileURLWithPath: aiboxBinary)
            p.arguments = args
        }
        var env = ProcessInfo.processInfo.environment
        env["NOTIFY_SOCKET"] = nil
        env["WATCHDOG_USEC"] = nil
        for (k, v) in extra { env[k] = v }
        p.environment = env
        // A file, not a pipe: a pipe nobody reads would fill and block the daemon.
        _ = creat(root + "/daemon.log", 0o644)
        let log = FileHandle(forWritingAtPath: root + "/daemon.log")
        p.standardError = log
        p.standardOutput = stdout ?? log
        try p.run()
        daemon = p
        let up = waitUntil(.seconds(20)) { (try? aibox(["status", "--json"]).code) == 0 || !p.isRunning }
        #expect(
            up && p.isRunning,
            "the daemon did not come up (\(p.isRunning ? "running" : "exited with \(p.terminationStatus)")); it said:\n\(daemonLog())")
    }

    /// SIGTERM, then waits for the exit; returns the exit status.
    @discardableResult
    func stopDaemon(signal: Int32 = SIGTERM, timeout: Duration = .seconds(30)) -> Int32? {
        guard let d = daemon else { return nil }
        kill(daemonPID, signal)
        let exited = waitUntil(timeout) { !d.isRunning }
        #expect(exited, "the daemon did not exit within \(timeout)")
        guard exited else { return nil }
        d.waitUntilExit()
        daemon = nil
        return d.terminationStatus
    }

    /// The daemon's own pid: the child's, or — behind a launcher that does not exec it
    /// (umockdev-run) — the one in its pid file.
    var daemonPID: Int32 {
        guard let d = daemon else { return 0 }
        if let text = readTextFile(paths.pidFile), let pid = Int32(text.trimmingCharacters(in: " \n")), pid > 0,
            ProcFS.info(pid)?.ppid == d.processIdentifier
        {
            return pid
        }
        return d.processIdentifier
    }

    @discardableResult
    func aibox(_ args: [String]) throws -> CommandResult {
        try run(aiboxBinary, args + ["--root", root])
    }

    /// The workers as `aibox workers --json` lists them; empty while there is no answer yet
    /// (a daemon still starting), so that polling callers simply wait.
    func workers() throws -> [WorkerView] {
        let r = try aibox(["workers", "--json"])
        return (try? JSONDecoder().decode([WorkerView].self, from: Data(r.stdout.utf8))) ?? []
    }

    func worker(_ name: String) throws -> WorkerView? { try workers().first { $0.name == name } }

    func events(worker: String? = nil) throws -> [EventRecord] {
        var args = ["events", "--json", "-n", "100000"]
        if let worker { args += ["--worker", worker] }
        let r = try aibox(args)
        guard r.code == 0 else { return [] }
        return (try? JSONDecoder().decode([EventRecord].self, from: Data(r.stdout.utf8))) ?? []
    }

    /// Waits until `name` is in one of `states`.
    @discardableResult
    func waitFor(_ name: String, _ states: Set<String>, timeout: Duration = .seconds(15)) throws -> WorkerView? {
        var last: WorkerView?
        let ok = try waitUntil(timeout) {
            last = try worker(name)
            return last.map { states.contains($0.state) } ?? false
        }
        #expect(ok, "\(name) did not reach \(states.sorted()) within \(timeout); last seen \(String(describing: last))")
        return last
    }

    /// Waits until an event of `kind` for `worker` has been recorded (the daemon flushes each turn).
    @discardableResult
    func waitForEvent(_ kind: String, worker: String? = nil, count: Int = 1, timeout: Duration = .seconds(15)) throws -> [EventRecord] {
        var found: [EventRecord] = []
        let ok = try waitUntil(timeout) {
            found = try events(worker: worker).filter { $0.kind == kind }
            return found.count >= count
        }
        #expect(ok, "no \(count)× \(kind) event for \(worker ?? "the daemon") within \(timeout); got \(found.count)")
        return found
    }

    /// Every live process that belongs to this box: its environment names this root.
    func processesOfThisBox() -> [ProcessStat] {
        let marker = Array("AIBOX_ROOT=\(root)".utf8)
        return ProcFS.allPIDs().compactMap { pid -> ProcessStat? in
            guard let env = readSmallFile("/proc/\(pid)/environ"), let info = ProcFS.info(pid) else { return nil }
            let vars = env.split(separator: 0)
            return vars.contains { Array($0) == marker } ? info : nil
        }
    }

    func killLeftovers() {
        for p in processesOfThisBox() { kill(p.pid, SIGKILL) }
    }

    /// The cgroup v2 subtree a daemon started by hand makes for this root (below the cgroup
    /// the tests run in), as a file-system path; nil without a cgroup2 mount.
    var cgroupSubtree: String? {
        guard let mount = CgroupFacts.v2Mounts(mountinfo: readTextFile("/proc/self/mountinfo") ?? "").first,
            let own = ProcFS.cgroupPath(getpid())
        else { return nil }
        return CgroupFacts.filesystemPath(own, mount: mount) + "/" + Containment.subtreeName(root: root)
    }

    /// What a daemon killed by SIGKILL leaves of its subtree (the daemon removes it when it stops).
    func removeCgroupSubtree() {
        guard let base = cgroupSubtree, fileExists(base) else { return }
        for name in listDirectory(base + "/workers") where !name.contains(".") {
            _ = try? writeKernelFile(base + "/workers/" + name + "/cgroup.kill", "1")
            _ = waitUntil(.seconds(2)) { rmdir(base + "/workers/" + name) == 0 || errno == ENOENT }
        }
        _ = rmdir(base + "/workers")
        _ = rmdir(base)
    }

    private var stateOnTmpfs = false

    /// Puts `var/lib/aibox` on a tmpfs of `size` (root only), unmounted with the box.
    func mountStateOnTmpfs(size: String) throws {
        try makeDirectories(paths.stateDirectory)
        let mounted = try run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size)", "tmpfs", paths.stateDirectory])
        try #require(mounted.code == 0, "mount failed: \(mounted.stderr)")
        stateOnTmpfs = true
    }

    /// `databaseProblem` of `aibox status --json`.
    func databaseProblem() throws -> String? {
        try JSONDecoder().decode(StatusView.self, from: Data(try aibox(["status", "--json"]).stdout.utf8)).databaseProblem
    }

    /// What the daemon wrote on stderr.
    func daemonLog() -> String { readTextFile(root + "/daemon.log") ?? "" }
}

/// One write to a kernel file (cgroupfs, /proc): no atomic rename there.
func writeKernelFile(_ path: String, _ text: String) throws {
    let fd = try syscall("open", detail: path) { open(path, O_WRONLY | O_CLOEXEC) }
    defer { closeDescriptor(fd) }
    try writeAll(fd, Array(text.utf8))
}

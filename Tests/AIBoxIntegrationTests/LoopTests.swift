import AIBoxCore
import AIBoxSystem
import CAIBoxOS
import Foundation
import Glibc
import Testing

/// A loop nothing can block (issue 9): what a file in a worker directory is cannot wedge the
/// daemon.
@Suite struct WorkerDirectoryTests {
    @Test func aFIFOADirectoryAndAHugeFileInAWorkerDirectoryAreReportedAndSkippedTheOtherWorkersRun() throws {
        let box = try TestBox(
            """
            [worker.agent]
            exec = ["@WORKER@", "--no-notify"]
            """)
        let fifo = box.paths.localWorkers + "/fifo.toml"
        #expect(mkfifo(fifo, 0o644) == 0)
        try makeDirectories(box.paths.vendorWorkers + "/dir.toml")
        try box.startDaemon()
        defer {
            // A daemon blocked in open(fifo) is freed by a writer, so that it can be stopped.
            closeDescriptor(open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC))
            box.stopDaemon()
        }
        try box.waitFor("agent", ["running"])
        let skipped = try box.waitForEvent("daemon.config-skipped", count: 2)
        #expect(
            skipped.contains { $0.message.hasPrefix("\(fifo) is a FIFO (named pipe), not a regular file; skipped") }, "\(skipped)")
        #expect(skipped.contains { $0.message.hasPrefix("\(box.paths.vendorWorkers)/dir.toml is a directory") }, "\(skipped)")
        let status = try box.aibox(["status"])
        // Long lines wrap at 80 columns under their label; read the text as one line.
        let unwrapped = status.stdout.split(separator: "\n").map { $0.drop { $0 == " " } }.joined(separator: " ")
        #expect(unwrapped.contains("config:    skipped \(fifo): is a FIFO (named pipe), not a regular file"), "\(status.stdout)")

        // A reload meets the FIFO and a file over 1 MiB: both skipped, the new worker starts.
        try writeFileAtomically(box.paths.localWorkers + "/huge.toml", [UInt8](repeating: 0x23, count: (1 << 20) + 1))
        try box.write("[worker.second]\nexec = [\"\(workerBinary)\", \"--no-notify\"]\n", file: "second.toml")
        let started = Clock.monotonic()
        let reload = try box.aibox(["reload"])
        #expect(reload.code == 0, "\(reload.stderr)")
        #expect(Clock.monotonic().since(started) < .seconds(3), "reload took \(Clock.monotonic().since(started))")
        try box.waitFor("second", ["running"])
        let json = try JSONDecoder().decode(StatusView.self, from: Data(try box.aibox(["status", "--json"]).stdout.utf8))
        #expect(json.configSkipped?.count == 3, "\(json.configSkipped ?? [])")
        #expect(json.configSkipped?.contains { $0.hasPrefix(box.paths.localWorkers + "/huge.toml: is 1048577 bytes") } == true)
        // And SIGTERM is still heard.
        #expect(box.stopDaemon() == 0)
    }
}

/// A launcher that execs its arguments with SIGTERM, SIGINT and SIGHUP blocked and ignored,
/// as a careless parent may leave them (both survive exec).
let launcherWithSignalsBlockedAndIgnored = [
    "/usr/bin/python3", "-c",
    """
    import os, signal, sys
    s = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]
    signal.pthread_sigmask(signal.SIG_BLOCK, s)
    for x in s: signal.signal(x, signal.SIG_IGN)
    os.execv(sys.argv[1], sys.argv[1:])
    """,
]

/// The signal fields of /proc/PID/status, as bit masks ("SigBlk", "SigIgn").
func signalMask(_ pid: Int32, _ field: String) -> UInt64? {
    guard let status = readTextFile("/proc/\(pid)/status"),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") })
    else { return nil }
    return UInt64(line.dropFirst(field.count + 1).trimmingCharacters(in: .whitespaces), radix: 16)
}

@Suite struct InheritedSignalTests {
    @Test func hardwareWatchStartedWithSIGTERMBlockedAndIgnoredStillEndsOnSIGTERM() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: launcherWithSignalsBlockedAndIgnored[0])
        p.arguments = Array(launcherWithSignalsBlockedAndIgnored.dropFirst()) + [aiboxBinary, "hardware", "--watch"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        defer {
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            p.waitUntilExit()
        }
        let said = LineReader(err).next { $0.hasPrefix("watching hotplug") }
        try #require(said != nil, "aibox hardware --watch did not start")
        let term: UInt64 = 1 << (UInt64(SIGTERM) - 1)
        #expect(signalMask(p.processIdentifier, "SigBlk").map { $0 & term } == 0, "SIGTERM is still blocked")
        #expect(signalMask(p.processIdentifier, "SigIgn").map { $0 & term } == 0, "SIGTERM is still ignored")
        kill(p.processIdentifier, SIGTERM)
        let ended = waitUntil(.seconds(5)) { !p.isRunning }
        #expect(ended, "SIGTERM did not end aibox hardware --watch")
        guard ended else { return }
        p.waitUntilExit()
        #expect(p.terminationReason == .uncaughtSignal && p.terminationStatus == SIGTERM)
    }

    /// The daemon blocks its signals and takes them through signalfd, which a blocked signal
    /// reaches whatever disposition a parent left: this holds it to that.
    @Test func aDaemonStartedWithItsSignalsIgnoredReloadsOnSIGHUPAndStopsOnSIGTERM() throws {
        let box = try TestBox("[worker.first]\nexec = [\"@WORKER@\", \"--no-notify\"]\n")
        try box.startDaemon(launcher: launcherWithSignalsBlockedAndIgnored)
        defer { box.stopDaemon(signal: SIGKILL) }
        try box.waitFor("first", ["running"])
        try box.write("[worker.second]\nexec = [\"@WORKER@\", \"--no-notify\"]\n", file: "second.toml")
        kill(box.daemonPID, SIGHUP)
        try box.waitFor("second", ["running"])
        #expect(box.stopDaemon() == 0, "SIGTERM did not stop the daemon")
    }
}

/// A daemon that holds its socket but does not answer (stopped, hung): every command gives
/// up after its timeout; status and workers show the database's view, marked.
@Suite struct UnansweredDaemonTests {
    @Test func commandsGiveUpOnAStoppedDaemonWithinTheirTimeoutAndSaySo() throws {
        let box = try TestBox("[worker.agent]\nexec = [\"@WORKER@\", \"--no-notify\"]\n")
        try box.startDaemon()
        defer { box.stopDaemon() }
        try box.waitFor("agent", ["running"])
        let pid = box.daemonPID
        kill(pid, SIGSTOP)
        defer { kill(pid, SIGCONT) }

        func timed(_ args: [String], environment: [String: String] = [:]) throws -> (CommandResult, Duration) {
            var env = ProcessInfo.processInfo.environment
            for (k, v) in environment { env[k] = v }
            let started = Clock.monotonic()
            let r = try run(aiboxBinary, args + ["--root", box.root], environment: env)
            return (r, Clock.monotonic().since(started))
        }

        let (status, statusTook) = try timed(["status"])
        #expect(status.code == 4, "\(status.stderr)")
        #expect(statusTook < .seconds(5), "aibox status took \(statusTook)")
        #expect(status.stdout.contains("daemon:    NOT RESPONDING (pid \(pid))"), "\(status.stdout)")
        #expect(status.stdout.contains("agent"), "the database's workers are shown: \(status.stdout)")
        #expect(status.stderr.contains("the daemon (pid \(pid)) did not answer within 3s"), "\(status.stderr)")

        let (json, _) = try timed(["status", "--json"])
        #expect(json.code == 4)
        let view = try JSONDecoder().decode(StatusView.self, from: Data(json.stdout.utf8))
        #expect(view.daemonResponding == false && view.daemonPid == pid)

        let (workers, workersTook) = try timed(["workers"])
        #expect(workers.code == 4)
        #expect(workersTook < .seconds(5), "aibox workers took \(workersTook)")
        #expect(workers.stdout.hasPrefix("daemon NOT RESPONDING — the last state recorded in the database:"), "\(workers.stdout)")
        #expect(workers.stdout.contains("agent"))

        // Every command that asks the daemon gives up the same way.
        for args in [["start", "agent"], ["stop", "agent"], ["restart", "agent"], ["reload"]] {
            let (r, took) = try timed(args, environment: ["AIBOX_TIMEOUT": "500ms"])
            #expect(r.code == 4, "\(args): \(r.stderr)")
            #expect(took < .seconds(2), "\(args) took \(took) with AIBOX_TIMEOUT=500ms")
            #expect(r.stderr.contains("did not answer within 500ms: it is stopped or hung"), "\(args): \(r.stderr)")
        }
        let (bad, _) = try timed(["workers"], environment: ["AIBOX_TIMEOUT": "soon"])
        #expect(bad.code == 1 && bad.stderr.contains("AIBOX_TIMEOUT=\"soon\" is not a duration"), "\(bad.stderr)")

        // Going on again, it answers.
        kill(pid, SIGCONT)
        #expect(waitUntil(.seconds(5)) { (try? box.aibox(["status"]).code) == 0 })
        #expect(try box.worker("agent")?.state == "running")

        // A command that only tells the daemon (factory-reset, setup) does its own work, names
        // the daemon that did not answer, and succeeds; the daemon sees box.toml go by itself.
        kill(pid, SIGSTOP)
        let (reset, resetTook) = try timed(["factory-reset", "--yes"], environment: ["AIBOX_TIMEOUT": "500ms"])
        kill(pid, SIGCONT)
        #expect(reset.code == 0, "\(reset.stderr)")
        #expect(resetTook < .seconds(2), "factory-reset took \(resetTook) with AIBOX_TIMEOUT=500ms")
        #expect(reset.stderr.contains("did not answer within 500ms"), "\(reset.stderr)")
        #expect(!fileExists(box.paths.boxConfig))
        try box.waitFor("agent", ["waiting"])
    }
}

/// Connections to a Unix socket that send nothing and read nothing. The test process's
/// descriptor limit is raised for them (root may raise the hard limit too).
final class IdleHolders {
    private(set) var fds: [Int32] = []

    init(_ path: String, count: Int, within timeout: Duration = .seconds(60)) throws {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        // The soft limit only: raising the hard one takes CAP_SYS_RESOURCE, which a container may lack.
        let wanted = rlim_t(count + 1024)
        if limit.rlim_cur < wanted {
            try #require(limit.rlim_max >= wanted, "this test needs \(wanted) descriptors; the hard limit is \(limit.rlim_max)")
            limit.rlim_cur = wanted
            try #require(setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, "setrlimit: \(String(cString: strerror(errno)))")
        }
        var addr = sockaddr_un()
        let len = aibox_sockaddr_un(&addr, path)
        let deadline = Clock.monotonic() + timeout
        while fds.count < count {
            try #require(Clock.monotonic() < deadline, "only \(fds.count) of \(count) connections within \(timeout)")
            let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            try #require(s >= 0, "socket: \(String(cString: strerror(errno)))")
            let r = withUnsafePointer(to: &addr) { p in p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, len) } }
            if r == 0 {
                fds.append(s)
                continue
            }
            let e = errno
            close(s)
            // The listener's queue is full for a moment: the daemon is taking them.
            try #require(e == EAGAIN, "connect: \(String(cString: strerror(e)))")
            usleep(1000)
        }
    }

    /// How many the other side has closed.
    var closedByPeer: Int {
        fds.filter { fd in
            // A closed Unix stream socket reports POLLHUP on the other end, whatever it left unread.
            var p = pollfd(fd: fd, events: 0, revents: 0)
            return poll(&p, 1, 0) > 0 && p.revents & Int16(POLLHUP) != 0
        }.count
    }

    func sendToAll(_ text: String) {
        for fd in fds { _ = text.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) } }
    }

    deinit { for fd in fds { close(fd) } }
}

/// CPU time (user + system) a process has used, from /proc/PID/stat.
func cpuTime(_ pid: Int32) -> Duration? {
    guard let stat = readTextFile("/proc/\(pid)/stat"), let paren = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(after: paren)...].split(separator: " ")
    guard fields.count > 12, let user = Int64(fields[11]), let system = Int64(fields[12]) else { return nil }
    return .milliseconds((user + system) * 1000 / Int64(sysconf(Int32(_SC_CLK_TCK))))
}

/// The descriptors a process holds.
func openDescriptors(_ pid: Int32) -> Int { listDirectory("/proc/\(pid)/fd").count }

/// The control socket under load: idle connections, clients that never read, the
/// descriptor limit. `aibox workers` runs under /usr/bin/timeout so that a daemon that
/// does not answer fails the test instead of hanging it.
@Suite struct ControlSocketTests {
    /// `aibox workers --json` with a bound: its exit code and how long it took.
    static func timedWorkers(_ box: TestBox) throws -> (code: Int32, took: Duration, output: String) {
        let started = Clock.monotonic()
        let r = try run("/usr/bin/timeout", ["20", aiboxBinary, "workers", "--json", "--root", box.root])
        return (r.code, Clock.monotonic().since(started), r.stdout + r.stderr)
    }

    /// Kills the worker's process and waits until it runs again under a new pid.
    static func killAndSeeRestart(_ box: TestBox, _ name: String) throws {
        let before = try #require(try box.worker(name)?.pid)
        kill(before, SIGKILL)
        let ok = try waitUntil(.seconds(10)) {
            guard let w = try box.worker(name) else { return false }
            return w.state == "running" && w.pid != nil && w.pid != before
        }
        let now = try box.worker(name)
        #expect(ok, "\(name) was not restarted after SIGKILL; now \(String(describing: now))")
    }

    @Test func fiveThousandIdleConnectionsLeaveWorkersAnsweringAndAKilledWorkerRestarting() throws {
        let box = try TestBox("[worker.agent]\nexec = [\"@WORKER@\", \"--no-notify\"]\n")
        // The soft limit of the unit's LimitNOFILE (image/systemd/aibox.service).
        try box.startDaemon(launcher: ["/usr/bin/prlimit", "--nofile=1024:", "--"])
        defer { box.stopDaemon() }
        try box.waitFor("agent", ["running"])
        let pid = box.daemonPID
        let base = openDescriptors(pid)

        var holders: IdleHolders? = try IdleHolders(box.paths.controlSocket, count: 5000)
        #expect(openDescriptors(pid) <= base + 128 + 2, "the daemon holds \(openDescriptors(pid) - base) connections")
        for _ in 0..<5 {
            let r = try Self.timedWorkers(box)
            #expect(r.code == 0, "\(r.output)")
            #expect(r.took < .seconds(1), "aibox workers took \(r.took) under 5,000 idle connections")
        }
        try Self.killAndSeeRestart(box, "agent")
        // Idle ones are let go: evicted for newer ones, or after the idle timeout (5 s).
        let released = waitUntil(.seconds(15)) { holders?.closedByPeer == 5000 }
        #expect(released, "\(holders?.closedByPeer ?? 0) of 5000 idle connections closed by the daemon")
        holders = nil
        #expect(box.daemonPID == pid)
    }

    @Test func clientsThatNeverReadTheirAnswerDoNotHoldTheLoop() throws {
        // 1,500 workers waiting for hardware nobody has: `workers` answers ~350 KB, more than a
        // socket buffer holds, and no process is started for them.
        var workers = "[worker.agent]\nexec = [\"@WORKER@\", \"--no-notify\"]\n"
        for i in 0..<1500 {
            workers += "[worker.waiting-\(i)]\nexec = [\"@WORKER@\"]\nrequires-hardware = [\"tpu.absent-from-this-machine\"]\n"
        }
        let box = try TestBox(workers)
        try box.startDaemon()
        defer { box.stopDaemon() }
        try box.waitFor("agent", ["running"], timeout: .seconds(30))
        let readers = try IdleHolders(box.paths.controlSocket, count: 10)
        readers.sendToAll("{\"command\":\"workers\"}\n")
        for _ in 0..<3 {
            // 2 s: the CLI (a debug build) spends ~0.2 s on 1,500 workers; a loop held by each
            // client in turn (1 s apiece before) made it wait over 10 s.
            let r = try Self.timedWorkers(box)
            #expect(r.code == 0, "\(r.output.prefix(500))")
            #expect(r.took < .seconds(2), "aibox workers took \(r.took) beside 10 clients that do not read")
        }
        try Self.killAndSeeRestart(box, "agent")
        // Those that never read are dropped after the timeout.
        #expect(waitUntil(.seconds(15)) { readers.closedByPeer == 10 }, "\(readers.closedByPeer) of 10 slow readers dropped")
    }

    @Test func atItsDescriptorLimitTheDaemonDoesNotSpinAndRecovers() throws {
        let box = try TestBox("[worker.agent]\nexec = [\"@WORKER@\", \"--no-notify\"]\n")
        try box.startDaemon()
        defer { box.stopDaemon() }
        try box.waitFor("agent", ["running"])
        let pid = box.daemonPID
        func limit(_ n: Int) throws {
            // The soft limit: the hard one could not be raised again without CAP_SYS_RESOURCE.
            let r = try run("/usr/bin/prlimit", ["--pid", "\(pid)", "--nofile=\(n):"])
            try #require(r.code == 0, "prlimit: \(r.stderr)")
        }
        /// CPU the daemon uses over two seconds while `holders` wait on it.
        func cpuOverTwoSeconds() throws -> Duration {
            let before = try #require(cpuTime(pid))
            usleep(2_000_000)
            return try #require(cpuTime(pid)) - before
        }
        let base = openDescriptors(pid)

        // Room for 8 connections: idle ones beyond are let go, a real client still served.
        try limit(base + 8)
        var holders: IdleHolders? = try IdleHolders(box.paths.controlSocket, count: 500)
        var cpu = try cpuOverTwoSeconds()
        #expect(cpu < .milliseconds(400), "the daemon used \(cpu) of CPU in 2 s at its descriptor limit")
        let served = try Self.timedWorkers(box)
        #expect(served.code == 0 && served.took < .seconds(1), "\(served)")

        // Not one descriptor to spare: waiting connections are accepted and closed at once.
        holders = nil
        #expect(waitUntil(.seconds(10)) { openDescriptors(pid) <= base + 2 }, "\(openDescriptors(pid)) descriptors, \(base) at start")
        try limit(openDescriptors(pid))
        holders = try IdleHolders(box.paths.controlSocket, count: 500)
        cpu = try cpuOverTwoSeconds()
        #expect(cpu < .milliseconds(400), "the daemon used \(cpu) of CPU in 2 s with no descriptor left")
        #expect(waitUntil(.seconds(10)) { holders?.closedByPeer == 500 }, "\(holders?.closedByPeer ?? 0) of 500 closed")

        // The holders gone and the limit back: answering and restarting as before.
        holders = nil
        try limit(1024)
        let r = try Self.timedWorkers(box)
        #expect(r.code == 0 && r.took < .seconds(1), "\(r)")
        try Self.killAndSeeRestart(box, "agent")
        #expect(box.daemonPID == pid)
    }
}

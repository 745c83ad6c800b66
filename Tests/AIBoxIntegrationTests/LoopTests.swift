import AIBoxCore
import AIBoxSystem
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
        #expect(status.stdout.contains("config:    skipped \(fifo): is a FIFO (named pipe), not a regular file"), "\(status.stdout)")

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
        #expect(waitUntil(.seconds(5)) { !p.isRunning }, "SIGTERM did not end aibox hardware --watch")
        p.waitUntilExit()
        #expect(p.terminationReason == .uncaughtSignal && p.terminationStatus == SIGTERM)
    }

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
    }
}

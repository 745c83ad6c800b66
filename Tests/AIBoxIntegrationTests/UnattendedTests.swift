import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// What an unattended box meets: a broken database, a full disk, systemd above, clock
/// jumps, a worker that must drop privileges and gets its secrets.
@Suite(.serialized) struct UnattendedTests {
    @Test func corruptDatabaseIsMovedAsideAndRebuilt() throws {
        let box = try TestBox(
            """
            [worker.w]
            exec = ["@WORKER@", "--no-notify"]
            """)
        try makeDirectories(box.paths.stateDirectory)
        try writeFileAtomically(box.paths.database, Array(repeating: 0x5A, count: 8192))
        try box.startDaemon()
        defer { box.stopDaemon() }
        try box.waitFor("w", ["running"])
        let aside = listDirectory(box.paths.stateDirectory).filter { $0.hasPrefix("aibox.db.corrupt-") }
        #expect(!aside.isEmpty, "the corrupt file was not kept aside")
        try box.waitForEvent("daemon.database-rebuilt")
    }

    @Test func lockedDatabaseIsReportedAndWorkersKeepRunning() throws {
        let box = try TestBox(
            """
            [worker.crashy]
            exec = ["@WORKER@", "--no-notify", "--exit-after", "50"]
            restart-delay = "20ms"
            crash-loop = { burst = 1000, window = "60s", quarantine = "1m" }
            """)
        try box.startDaemon()
        defer { box.stopDaemon() }
        try box.waitForEvent("worker.started", worker: "crashy")
        // Another process holds an exclusive lock on the database.
        let locker = Process()
        locker.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        locker.arguments = [
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1], isolation_level=None); c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.read()",
            box.paths.database,
        ]
        let input = Pipe(), output = Pipe()
        locker.standardInput = input
        locker.standardOutput = output
        try locker.run()
        #expect(String(decoding: output.fileHandleForReading.availableData, as: UTF8.self).contains("locked"))
        let before = try #require(try box.worker("crashy")?.restarts)
        var problem: String?
        let reported = try waitUntil {
            problem = try box.databaseProblem()
            return problem != nil
        }
        #expect(reported, "a locked database was not reported in status")
        #expect(problem?.contains("lock") == true || problem?.contains("busy") == true, "\(problem ?? "")")
        // Supervision goes on without the database.
        #expect(try waitUntil { (try box.worker("crashy")?.restarts ?? 0) >= before + 3 })
        try input.fileHandleForWriting.close()
        locker.waitUntilExit()
        #expect(
            try waitUntil {
                try box.databaseProblem()
                    == nil
            }, "the database problem did not clear")
        // What happened meanwhile was kept and written afterwards.
        let exits = try box.events(worker: "crashy").filter { $0.kind == "worker.exited" }
        #expect(exits.count >= before + 3)
    }

    @Test func fullDiskIsReportedAndWorkersKeepRunning() throws {
        try #require(geteuid() == 0, "this test mounts a small tmpfs and must run as root (CI does)")
        let box = try TestBox(
            """
            [worker.crashy]
            exec = ["@WORKER@", "--no-notify", "--exit-after", "30"]
            restart-delay = "10ms"
            crash-loop = { burst = 10000, window = "60s", quarantine = "1m" }
            """)
        try box.mountStateOnTmpfs(size: "512k")
        try box.startDaemon()
        defer { box.stopDaemon() }
        try box.waitForEvent("worker.started", worker: "crashy")
        // Fill the disk.
        _ = try run("/bin/dd", ["if=/dev/zero", "of=\(box.paths.stateDirectory)/filler", "bs=4k", "count=1000"])
        let reported = try waitUntil(.seconds(30)) {
            try box.databaseProblem() != nil
        }
        #expect(reported, "a full disk was not reported")
        let restarts = try #require(try box.worker("crashy")?.restarts)
        #expect(try waitUntil { (try box.worker("crashy")?.restarts ?? 0) >= restarts + 5 }, "supervision stopped on a full disk")
        unlink("\(box.paths.stateDirectory)/filler")
        #expect(
            try waitUntil(.seconds(30)) {
                try box.databaseProblem()
                    == nil
            }, "the problem did not clear once there was room again")
    }

    @Test func readOnlyDatabaseIsReportedAndWorkersKeepRunning() throws {
        try #require(geteuid() == 0, "this test mounts and remounts a tmpfs and must run as root (CI does)")
        let box = try TestBox(
            """
            [worker.crashy]
            exec = ["@WORKER@", "--no-notify", "--exit-after", "30"]
            restart-delay = "10ms"
            crash-loop = { burst = 10000, window = "60s", quarantine = "1m" }
            """)
        try box.mountStateOnTmpfs(size: "4m")
        // A first run creates the database; then the box boots with its data file system
        // read-only (fsck found errors, a failing SD card).
        try box.startDaemon()
        try box.waitForEvent("worker.started", worker: "crashy")
        box.stopDaemon()
        let ro = try run("/bin/mount", ["-o", "remount,ro", box.paths.stateDirectory])
        try #require(ro.code == 0, "remount failed: \(ro.stderr)")
        try box.startDaemon()
        defer { box.stopDaemon() }
        var problem: String?
        let reported = try waitUntil {
            problem = try box.databaseProblem()
            return problem != nil
        }
        #expect(reported, "a read-only database was not reported")
        let restarts = try #require(try box.worker("crashy")?.restarts)
        #expect(
            try waitUntil { (try box.worker("crashy")?.restarts ?? 0) >= restarts + 5 }, "supervision stopped with a read-only database")
        _ = try run("/bin/mount", ["-o", "remount,rw", box.paths.stateDirectory])
        #expect(
            try waitUntil(.seconds(30)) {
                try box.databaseProblem()
                    == nil
            }, "the problem did not clear once the file system was writable again (it was: \(problem ?? ""))")
        // The exits of the read-only time were kept and written.
        #expect(try box.events(worker: "crashy").filter { $0.kind == "worker.exited" }.count >= restarts + 5)
    }

    @Test func underSystemdItNotifiesReadyStatusAndPingsTheWatchdog() throws {
        let box = try TestBox(
            """
            [worker.w]
            exec = ["@WORKER@", "--ready-after", "0"]
            notify = true
            """)
        let socketPath = box.root + "/systemd-notify.sock"
        let systemd = try NotifySocket(path: socketPath)
        try box.startDaemon(environment: ["NOTIFY_SOCKET": socketPath, "WATCHDOG_USEC": "300000"])
        defer { box.stopDaemon() }
        var messages: [(Int32, NotifyMessage)] = []
        let start = Clock.monotonic()
        let got = waitUntil(.seconds(10)) {
            var pfd = pollfd(fd: systemd.fd, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 50) > 0 { systemd.receiveAll { messages.append(($0, $1)) } }
            return messages.filter { $0.1.watchdog }.count >= 4
        }
        #expect(got, "fewer than 4 WATCHDOG=1 pings")
        let elapsed = Clock.monotonic().since(start)
        #expect(messages.contains { $0.1.ready }, "no READY=1")
        #expect(messages.allSatisfy { $0.0 == box.daemonPID })
        #expect(messages.contains { $0.1.status?.contains("1 workers") == true })
        // At half of WATCHDOG_USEC (150 ms): 4 pings take well under the full 300 ms each.
        #expect(elapsed < .seconds(3))
    }

    @Test func wallClockJumpsDoNotDisturbTimeouts() throws {
        let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
        try #require(fileExists(lib), "libfaketime is missing: apt-get install libfaketime (.ci/run does)")
        let box = try TestBox(
            """
            [worker.crashy]
            exec = ["@WORKER@", "--no-notify", "--exit-after", "100"]
            restart-delay = "100ms"
            stable-after = "50ms"
            crash-loop = { burst = 1000, window = "60s", quarantine = "1m" }
            """)
        // The box boots without RTC in 1970; later "NTP" moves the clock 56 years ahead.
        let clockFile = box.root + "/faketime"
        try writeFileAtomically(clockFile, Array("@1970-01-01 00:00:00\n".utf8))
        // Through /usr/bin/env: a Swift program exec'd directly by a process without
        // libfaketime loses its argv under LD_PRELOAD=libfaketime (seen with 0.9.10).
        try box.startDaemon(
            environment: [
                "LD_PRELOAD": lib, "FAKETIME_TIMESTAMP_FILE": clockFile, "FAKETIME_NO_CACHE": "1", "DONT_FAKE_MONOTONIC": "1",
            ], launcher: ["/usr/bin/env"])
        defer { box.stopDaemon() }
        #expect(try waitUntil { (try box.worker("crashy")?.restarts ?? 0) >= 3 })
        let early = try box.events(worker: "crashy")
        #expect(early.first.map { $0.at < 86_400_000 } == true, "events are stamped with the (1970) wall clock")
        try writeFileAtomically(clockFile, Array("@2026-11-27 12:00:00\n".utf8))
        let before = try #require(try box.worker("crashy")?.restarts)
        let t0 = Clock.monotonic()
        #expect(try waitUntil { (try box.worker("crashy")?.restarts ?? 0) >= before + 3 })
        // Three ~200 ms cycles, not a stall: timers run on the monotonic clock.
        #expect(Clock.monotonic().since(t0) < .seconds(5))
        // And back again (NTP correcting a wrong RTC backwards).
        try writeFileAtomically(clockFile, Array("@2001-01-01 00:00:00\n".utf8))
        let again = try #require(try box.worker("crashy")?.restarts)
        #expect(try waitUntil { (try box.worker("crashy")?.restarts ?? 0) >= again + 3 })
    }

    @Test func workerRunsAsItsUserWithItsSecretsOnly() throws {
        try #require(geteuid() == 0, "dropping to another user needs root (CI runs as root)")
        let box = try TestBox(
            """
            [worker.agent]
            exec = ["@WORKER@", "--no-notify"]
            user = "nobody"
            secrets = ["openai-api-key"]
            workdir = "/tmp"
            """)
        try makeDirectories(box.paths.secrets, mode: 0o700)
        try writeFileAtomically(box.paths.secrets + "/openai-api-key", Array("sk-test-SECRET-1234".utf8), mode: 0o600)
        try writeFileAtomically(box.paths.secrets + "/telegram-token", Array("tg-OTHER-SECRET".utf8), mode: 0o600)
        try box.startDaemon()
        defer { box.stopDaemon() }
        let pid = try #require(try box.waitFor("agent", ["running"])?.pid)
        let status = try #require(readTextFile("/proc/\(pid)/status"))
        #expect(status.contains("Uid:\t65534\t65534\t65534\t65534"), "not running as nobody")
        let env = String(decoding: readSmallFile("/proc/\(pid)/environ") ?? [], as: UTF8.self).split(separator: "\0")
        let credDir = try #require(env.first { $0.hasPrefix("CREDENTIALS_DIRECTORY=") }?.dropFirst("CREDENTIALS_DIRECTORY=".count))
        #expect(listDirectory(String(credDir)) == ["openai-api-key"], "only the listed secret is handed over")
        #expect(readTextFile(credDir + "/openai-api-key") == "sk-test-SECRET-1234")
        #expect(env.contains("USER=nobody"))
        #expect(!env.contains { $0.hasPrefix("LD_PRELOAD") })
        // Secrets never appear in events, status or workers output.
        let outputs = try [box.aibox(["events", "--json"]), box.aibox(["status", "--json"]), box.aibox(["workers", "--json"])]
        for o in outputs { #expect(!o.stdout.contains("SECRET")) }
    }

    /// A worker's credentials directory is made anew at each start: what the last start left
    /// there goes first. Something that cannot go (here a directory, which unlink refuses)
    /// fails the start, as a failed spawn does, naming it: the worker never runs with a
    /// secret it no longer lists, or with a directory not made as it should be.
    @Test func credentialsThatCannotBeMadeAsTheyShouldFailTheStart() throws {
        let box = try TestBox(
            """
            [worker.agent]
            exec = ["@WORKER@", "--no-notify"]
            secrets = ["openai-api-key"]
            """)
        try makeDirectories(box.paths.secrets, mode: 0o700)
        try writeFileAtomically(box.paths.secrets + "/openai-api-key", Array("sk-test-SECRET-1234".utf8), mode: 0o600)
        let stale = box.paths.credentials + "/agent/leftover"
        try makeDirectories(stale + "/inside", mode: 0o700)
        try box.startDaemon()
        defer { box.stopDaemon() }
        let failed = try box.waitForEvent("worker.spawn-failed", worker: "agent")
        #expect(failed.first?.message.contains(stale) == true, "the reason names what could not be removed: \(failed)")
        #expect(failed.first?.message.contains("Is a directory") == true, "\(failed)")
        #expect(try box.events(worker: "agent").allSatisfy { $0.kind != "worker.started" }, "the worker started all the same")
        #expect(try box.worker("agent")?.pid == nil)
    }
}

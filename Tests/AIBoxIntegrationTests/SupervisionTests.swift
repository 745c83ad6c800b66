import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// The daemon on a temporary root with real worker processes.
@Suite(.serialized) struct SupervisionTests {
    @Test func crashedWorkerIsRestarted() throws {
        let box = try TestBox(
            """
            [worker.crasher]
            exec = ["@WORKER@", "--no-notify", "--exit-after", "200", "--exit-code", "3"]
            restart-delay = "50ms"
            crash-loop = { burst = 100, window = "60s", quarantine = "1m" }
            """)
        try box.startDaemon()
        defer { box.stopDaemon() }
        let first = try box.waitFor("crasher", ["running"])
        #expect(try waitUntil { (try box.worker("crasher")?.restarts ?? 0) >= 2 }, "crasher was not restarted twice")
        let w = try #require(try box.worker("crasher"))
        #expect(w.lastExit?.code == 3)
        #expect(w.lastExit?.at != nil)
        let exits = try box.waitForEvent("worker.exited", worker: "crasher", count: 2)
        #expect(exits[0].message.contains("exit code 3"))
        if let p0 = first?.pid, let p1 = try box.waitFor("crasher", ["running"])?.pid { #expect(p0 != p1) }
    }

    @Test func backoffGrowsAndResetsAfterStableRun() throws {
        let box = try TestBox(
            """
            [worker.fast-crash]
            exec = ["@WORKER@", "--no-notify", "--exit-after", "20"]
            restart-delay = "100ms"
            restart-max-delay = "10s"
            stable-after = "30s"
            crash-loop = { burst = 100, window = "60s", quarantine = "1m" }

            [worker.stable-crash]
            exec = ["@WORKER@", "--no-notify", "--exit-after", "400"]
            restart-delay = "100ms"
            restart-max-delay = "10s"
            stable-after = "300ms"
            crash-loop = { burst = 100, window = "60s", quarantine = "1m" }
            """)
        try box.startDaemon()
        defer { box.stopDaemon() }
        let fast = try box.waitForEvent("worker.backoff", worker: "fast-crash", count: 4)
        // "restarting in 160ms (failure 2 in a row)": the delay doubles (±20 % jitter).
        let delays = fast.prefix(4).map { parseDuration(String($0.message.split(separator: " ")[2]))! }
        for i in 1..<delays.count {
            #expect(delays[i] > delays[i - 1], "backoff did not grow: \(fast.map(\.message))")
        }
        #expect(fast[3].message.contains("failure 4 in a row"))
        // A worker that ran past stable-after starts again from restart-delay each time.
        let stable = try box.waitForEvent("worker.backoff", worker: "stable-crash", count: 3)
        for e in stable {
            #expect(e.message.contains("failure 1 in a row"), "\(e.message)")
            let d = parseDuration(String(e.message.split(separator: " ")[2]))!
            #expect(d <= .milliseconds(120))
        }
    }

    @Test func crashLoopQuarantinesThenRetries() throws {
        let box = try TestBox(
            """
            [worker.looper]
            exec = ["@WORKER@", "--no-notify", "--exit-after", "10"]
            restart-delay = "10ms"
            crash-loop = { burst = 3, window = "30s", quarantine = "1s" }
            """)
        try box.startDaemon()
        defer { box.stopDaemon() }
        let q = try box.waitFor("looper", ["quarantined"])
        #expect(q?.reason?.contains("crash loop: 3 exits") == true, "\(String(describing: q))")
        let quarantined = try box.waitForEvent("worker.quarantined", worker: "looper")
        #expect(quarantined.first?.message.contains("retried in 1s") == true)
        // Never dead forever: after the quarantine period it is started again.
        try box.waitForEvent("worker.released", worker: "looper")
        let starts = try box.waitForEvent("worker.started", worker: "looper", count: 4)
        #expect(starts.count >= 4)
    }

    @Test func exitStatus78Parks() throws {
        let box = try TestBox(
            """
            [worker.bad-config]
            exec = ["@WORKER@", "--no-notify", "--exit-after", "50", "--exit-code", "78"]
            restart-delay = "10ms"
            """)
        try box.startDaemon()
        defer { box.stopDaemon() }
        let w = try box.waitFor("bad-config", ["parked"])
        #expect(w?.restarts == 0)
        #expect(w?.pid == nil)
        #expect(w?.reason?.contains("EX_CONFIG") == true)
        let parked = try box.waitForEvent("worker.parked", worker: "bad-config")
        #expect(parked.first?.message.contains("configuration is wrong") == true)
        // `aibox start` is the way out of parking.
        let r = try box.aibox(["start", "bad-config"])
        #expect(r.code == 0, "\(r.stderr)")
        try box.waitForEvent("worker.started", worker: "bad-config", count: 2)
    }

    /// A worker that runs as a user of its own (the assistant as aibox-agent) reaches the
    /// notify socket: READY=1 counts (on the booted image it did not, the socket was 0755).
    @Test func aWorkerOfAnotherUserReportsReady() throws {
        let box = try TestBox(
            """
            [worker.other-user]
            exec = ["@WORKER@"]
            user = "nobody"
            notify = true
            ready-timeout = "20s"
            """)
        #expect(chmod(box.root, 0o755) == 0, "the worker's user must reach the root's run/ (mkdtemp made it 0700)")
        try box.startDaemon()
        defer { box.stopDaemon() }
        #expect(try box.waitFor("other-user", ["ready"])?.state == "ready", "\(box.daemonLog())")
        var st = stat()
        #expect(stat(box.paths.notifySocket, &st) == 0 && st.st_mode & 0o777 == 0o666)
    }

    @Test func readinessTimeoutStopsAndRestarts() throws {
        let box = try TestBox(
            """
            [worker.never-ready]
            exec = ["@WORKER@", "--ready-after", "-1"]
            notify = true
            ready-timeout = "1s"
            stop-timeout = "1s"
            restart-delay = "50ms"
            """)
        try box.startDaemon()
        defer { box.stopDaemon() }
        #expect(try box.waitFor("never-ready", ["starting"])?.state == "starting")
        let t = try box.waitForEvent("worker.ready-timeout", worker: "never-ready")
        #expect(t.first?.message.contains("no READY=1 within 1s") == true)
        try box.waitForEvent("worker.backoff", worker: "never-ready")
        #expect(try waitUntil { (try box.worker("never-ready")?.restarts ?? 0) >= 1 })
    }

    @Test func watchdogFiresOnAWedgedWorker() throws {
        let box = try TestBox(
            """
            [worker.wedge]
            exec = ["@WORKER@", "--watchdog-stop", "800"]
            notify = true
            watchdog = "400ms"
            stop-timeout = "2s"
            restart-delay = "50ms"
            """)
        try box.startDaemon()
        defer { box.stopDaemon() }
        try box.waitFor("wedge", ["ready"])
        let fired = try box.waitForEvent("worker.watchdog", worker: "wedge")
        #expect(fired.first?.message.contains("no WATCHDOG=1 for 400ms") == true)
        // SIGABRT ends it (default action); then the restart policy runs.
        #expect(try waitUntil { try box.worker("wedge")?.lastExit?.signal == SIGABRT }, "the watchdog did not end the worker with SIGABRT")
        #expect(try waitUntil { (try box.worker("wedge")?.restarts ?? 0) >= 1 })
    }

    @Test func workerIgnoringTermIsKilledAfterStopTimeout() throws {
        let box = try TestBox(
            """
            [worker.stubborn]
            exec = ["@WORKER@", "--no-notify", "--ignore-term"]
            stop-timeout = "500ms"
            """)
        try box.startDaemon()
        defer { box.stopDaemon() }
        let pid = try #require(try box.waitFor("stubborn", ["running"])?.pid)
        let start = Clock.monotonic()
        let r = try box.aibox(["stop", "stubborn"])
        #expect(r.code == 0, "\(r.stderr)")
        let w = try box.waitFor("stubborn", ["stopped"])
        #expect(Clock.monotonic().since(start) >= .milliseconds(500))
        #expect(w?.lastExit?.signal == SIGKILL)
        try box.waitForEvent("worker.stop-timeout", worker: "stubborn")
        #expect(ProcFS.info(pid) == nil || ProcFS.info(pid)?.state == "Z")
    }

    @Test func grandchildOutlivingItsParentLeavesNoZombieNorOrphan() throws {
        let box = try TestBox(
            """
            [worker.forker]
            exec = ["@WORKER@", "--no-notify", "--grandchild", "--exit-after", "300"]
            restart = "never"
            """)
        try box.startDaemon()
        defer { box.stopDaemon() }
        let pid = try #require(try box.waitFor("forker", ["running"])?.pid)
        #expect(waitUntil(.seconds(5)) { ProcFS.members(ofGroup: pid).count >= 2 }, "the grandchild did not appear")
        try box.waitFor("forker", ["stopped"])
        // Neither a live orphan nor a zombie is left in its process group.
        let gone = waitUntil(.seconds(5)) { ProcFS.members(ofGroup: pid).isEmpty }
        #expect(gone, "left in group \(pid): \(ProcFS.members(ofGroup: pid))")
        let zombies = ProcFS.allPIDs().compactMap(ProcFS.info).filter { $0.ppid == box.daemonPID && $0.state == "Z" }
        #expect(zombies.isEmpty, "zombies of the daemon: \(zombies)")
    }

    @Test func sigtermStopsEverythingInReverseOrderAndLeavesNoProcess() throws {
        let box = try TestBox(
            """
            [worker.base]
            exec = ["@WORKER@", "--ready-after", "0", "--grandchild"]
            notify = true

            [worker.middle]
            exec = ["@WORKER@", "--ready-after", "0"]
            notify = true
            after = ["base"]

            [worker.top]
            exec = ["@WORKER@", "--no-notify", "--ignore-term"]
            after = ["middle"]
            stop-timeout = "300ms"
            """)
        try box.startDaemon()
        try box.waitFor("top", ["running"])
        #expect(box.processesOfThisBox().count >= 4)
        let code = box.stopDaemon()
        #expect(code == 0)
        #expect(box.processesOfThisBox().isEmpty, "left behind: \(box.processesOfThisBox())")
        // Stops ran top, then middle, then base.
        let stopped = try box.events().filter { $0.kind == "worker.stopped" }.compactMap(\.worker)
        #expect(stopped == ["top", "middle", "base"], "stop order was \(stopped)")
        let starts = try box.events().filter { $0.kind == "worker.started" }.compactMap(\.worker)
        #expect(starts == ["base", "middle", "top"], "start order was \(starts)")
    }

    @Test func startWaitsForDependenciesToBeReady() throws {
        let box = try TestBox(
            """
            [worker.slow-base]
            exec = ["@WORKER@", "--ready-after", "700"]
            notify = true

            [worker.dependent]
            exec = ["@WORKER@", "--no-notify"]
            after = ["slow-base"]
            """)
        try box.startDaemon()
        defer { box.stopDaemon() }
        let w = try box.worker("dependent")
        #expect(w?.state == "waiting" || w?.state == "running")
        try box.waitFor("dependent", ["running"])
        let events = try box.events()
        let ready = try #require(events.first { $0.kind == "worker.ready" && $0.worker == "slow-base" })
        let started = try #require(events.first { $0.kind == "worker.started" && $0.worker == "dependent" })
        #expect(started.id! > ready.id!, "dependent started before slow-base was ready")
    }

    @Test func memoryAboveLimitRestartsGracefully() throws {
        let box = try TestBox(
            """
            [worker.leaker]
            exec = ["@WORKER@", "--no-notify", "--leak-mb", "40"]
            memory-max = "60M"
            restart-delay = "50ms"
            """)
        try box.startDaemon()
        defer { box.stopDaemon() }
        let e = try box.waitForEvent("worker.memory", worker: "leaker", timeout: .seconds(20))
        #expect(e.first?.message.contains("above memory-max 62914560") == true, "\(e)")
        try box.waitForEvent("worker.restarting", worker: "leaker")
        #expect(try waitUntil { (try box.worker("leaker")?.restarts ?? 0) >= 1 })
    }

    @Test func daemonKilledThenRestartedCleansUpAndContinuesCounts() throws {
        let box = try TestBox(
            """
            [worker.steady]
            exec = ["@WORKER@", "--no-notify", "--grandchild"]

            [worker.crashy]
            exec = ["@WORKER@", "--no-notify", "--exit-after", "100"]
            restart-delay = "20ms"
            crash-loop = { burst = 1000, window = "60s", quarantine = "1m" }
            """)
        try box.startDaemon()
        let oldSteady = try #require(try box.waitFor("steady", ["running"])?.pid)
        #expect(try waitUntil { (try box.worker("crashy")?.restarts ?? 0) >= 3 })
        #expect(waitUntil { ProcFS.members(ofGroup: oldSteady).count >= 2 })
        // The daemon dies hard; its workers are left running, unsupervised.
        _ = box.stopDaemon(signal: SIGKILL)
        #expect(ProcFS.members(ofGroup: oldSteady).filter { $0.state != "Z" }.count >= 2)
        let countBefore = try #require(try box.workers().first { $0.name == "crashy" }?.restarts)

        try box.startDaemon()
        defer { box.stopDaemon() }
        // The previous run's processes are gone (a zombie of another parent is dead too).
        #expect(waitUntil(.seconds(5)) { ProcFS.members(ofGroup: oldSteady).allSatisfy { $0.state == "Z" } })
        try box.waitForEvent("worker.recovered", worker: "steady")
        let newSteady = try #require(try box.waitFor("steady", ["running"])?.pid)
        #expect(newSteady != oldSteady)
        // Counters continue from the database.
        #expect(try waitUntil { (try box.worker("crashy")?.restarts ?? 0) > countBefore })
    }

    @Test func daemonRefusesInvalidDefinitionNamingFileLineAndKey() throws {
        let box = try TestBox(
            """
            [worker.ok]
            exec = ["/bin/true"]

            [worker.bad]
            exec = ["/bin/true"]
            restart = "sometimes"
            """, file: "broken.toml")
        let r = try box.aibox(["daemon", "--log-target", "files"])
        #expect(r.code == 1)
        let file = box.paths.vendorWorkers + "/broken.toml"
        #expect(
            r.stderr.contains("\(file):6: worker.bad.restart: \"sometimes\" is not allowed; use always, on-failure or never"), "\(r.stderr)"
        )
        #expect(box.processesOfThisBox().isEmpty)
    }

    @Test func reloadRestartsOnlyTheChangedWorkerAndRefusesInvalidSets() throws {
        let two = """
            [worker.alpha]
            exec = ["@WORKER@", "--no-notify"]

            [worker.beta]
            exec = ["@WORKER@", "--no-notify"]
            env = { MODE = "one" }
            """
        let box = try TestBox(two)
        try box.startDaemon()
        defer { box.stopDaemon() }
        let alpha = try #require(try box.waitFor("alpha", ["running"])?.pid)
        let beta = try #require(try box.waitFor("beta", ["running"])?.pid)

        try box.write(two.replacingOccurrences(of: "\"one\"", with: "\"two\""))
        let r = try box.aibox(["reload"])
        #expect(r.code == 0, "\(r.stderr)")
        #expect(r.stdout.contains("changed [\"beta\"]"), "\(r.stdout)")
        let newBeta = try #require(
            try waitUntil { (try box.worker("beta")?.pid).map { $0 != beta } ?? false } ? try box.worker("beta")?.pid : nil)
        #expect(newBeta != beta)
        #expect(try box.worker("alpha")?.pid == alpha, "alpha was restarted by a reload that did not change it")
        let env = String(decoding: readSmallFile("/proc/\(newBeta)/environ") ?? [], as: UTF8.self)
        #expect(env.contains("MODE=two"))

        // An invalid set changes nothing and says what is wrong, where.
        try box.write("[worker.alpha]\nexec = \"not-an-array\"\n", file: "zz-broken.toml")
        let bad = try box.aibox(["reload"])
        #expect(bad.code == 1)
        #expect(bad.stderr.contains("zz-broken.toml:2: worker.alpha.exec: must be an array of strings"), "\(bad.stderr)")
        #expect(try box.worker("alpha")?.pid == alpha)
        #expect(try box.worker("beta")?.pid == newBeta)
        let status = try box.aibox(["status", "--json"])
        #expect(status.stdout.contains("zz-broken.toml:2"))

        // SIGHUP reloads too: removing the broken file and a worker.
        unlink(box.paths.vendorWorkers + "/zz-broken.toml")
        try box.write("[worker.alpha]\nexec = [\"@WORKER@\", \"--no-notify\"]\n")
        kill(box.daemonPID, SIGHUP)
        #expect(try waitUntil { try box.workers().map(\.name) == ["alpha"] }, "beta was not removed by SIGHUP reload")
        #expect(try box.worker("alpha")?.pid == alpha)
        #expect(ProcFS.info(newBeta) == nil || ProcFS.info(newBeta)?.state == "Z")
    }
}

import AIBoxCore
import AIBoxSystem
import Glibc
import Logging

/// Unattended updates: `aibox update check --install --reboot` run as a child of the daemon
/// (downloads never block the supervisor's loop), every `feed-interval` ± 10 %, backing off
/// after failures (UpdatePlanner.nextPoll).
struct FeedSchedule {
    var next: Instant?
    var pid: Int32?
    var failures = 0
    var interval: Duration = .seconds(6 * 3600)
}

/// A slot booted on trial, watched until it is good or bad; a reboot owed after a failed one.
struct UpdateTrial {
    var agent: UpdateAgent?
    var gate: TrialGate?
    /// Monotonic: the gate's next look, or the next try of a deferred reboot.
    var next: Instant?
    /// A reboot deferred by the inhibit file, tried again every `rebootRetry` (a flock: costs nothing).
    var pendingReboot: String?
    static let rebootRetry = Duration.seconds(5)
}

extension Supervisor {
    /// The instant of this boot on the boot clock (CLOCK_BOOTTIME), which the trial's deadline
    /// counts from: 0 on a box. Under a `--root` other than `/` the boot is simulated, and the
    /// test kit says when it happened (AIBOX_SIMULATED_BOOT_NS, CLOCK_BOOTTIME nanoseconds).
    var bootInstant: Instant {
        guard paths.root != "/", let text = getenv("AIBOX_SIMULATED_BOOT_NS").map({ String(cString: $0) }),
            let ns = UInt64(text)
        else { return Instant(nanoseconds: 0) }
        return Instant(nanoseconds: ns)
    }

    /// At start: what the boot means for an update in flight (on trial, rolled back, a reboot owed).
    func beginUpdateWatch() {
        guard fileExists(paths.under("usr/lib/aibox/system.toml")) else { return }
        let agent: UpdateAgent
        let seen: UpdateObservation
        do {
            let context = try UpdateContext.load(paths)
            let journal = try UpdateJournal(path: paths.database)
            context.recordStampedVersion(in: journal)
            agent = UpdateAgent(context: context, journal: journal, rebooter: Rebooter(paths: paths))
            trial.agent = agent
            try agent.reconcile()
            seen = try agent.observe()
        } catch {
            logger.error("updates: \(error)")
            store.record(event(kind: "update.unavailable", worker: nil, message: "\(error)"))
            return
        }
        reportUpdateProblems(agent)
        if case .failure(let why) = seen.floor.effective {
            logger.error("updates: the version floor cannot be read (\(why)); only bundles signed as a rollback are installed")
        }
        if let owed = agent.flow.owedReboot(seen) {
            logger.critical("\(owed)")
            requestReboot(owed, now: Clock.monotonic())
            return
        }
        guard case .trying(let slot) = agent.flow.state, slot.name == seen.booted else { return }
        let system = agent.context.system
        trial.gate = TrialGate(started: bootInstant, commitAfter: system.commitAfter, deadline: system.commitDeadline)
        logger.notice(
            "\(slot) is on trial: it is marked good once every critical worker has been ready for \(system.commitAfter.aiboxText), within \(system.commitDeadline.aiboxText) of the boot"
        )
    }

    private func reportUpdateProblems(_ agent: UpdateAgent) {
        for p in agent.takeProblems() { logger.error("updates: \(p)") }
    }

    /// Through the Rebooter; deferred by the inhibit file, tried again every 5 s.
    private func requestReboot(_ reason: String, now: Instant) {
        guard let agent = trial.agent else { return }
        store.flush(now: now)
        rebooted(agent.rebooter.reboot(reason, journal: agent.journal), reason, now: now)
    }

    private func rebooted(_ outcome: Rebooter.Outcome, _ reason: String, now: Instant) {
        trial.pendingReboot = nil
        trial.next = nil
        switch outcome {
        case .deferred:
            logger.warning("update: \(outcome)")
            trial.pendingReboot = reason
            trial.next = now + UpdateTrial.rebootRetry
        case .failed(let why):
            logger.error("update: \(why)")
        case .rebooting, .requested:
            break
        }
    }

    /// A deferred reboot, once the inhibit is released (looked at every 5 s).
    func retryDeferredReboot(now: Instant) {
        guard let reason = trial.pendingReboot, let due = trial.next, due <= now, !shuttingDown, let agent = trial.agent else { return }
        if agent.rebooter.isInhibited {
            trial.next = now + UpdateTrial.rebootRetry
        } else {
            requestReboot(reason, now: now)
        }
    }

    /// Schedules the feed when box.toml asks for automatic updates from a feed.
    func beginFeedWatch() {
        guard setup.provisioned, trial.agent != nil, let text = readTextFile(paths.boxConfig),
            case .success(let config) = BoxConfig.parse(text: text, path: paths.boxConfig),
            config.updates.automatic, config.updates.feedURL != nil
        else {
            feed.next = nil
            return
        }
        feed.interval = trial.agent?.context.system.feedInterval ?? feed.interval
        // The first look comes after a random part of the interval: a fleet powered on
        // together does not ask the server all at once.
        feed.next = Clock.monotonic() + feed.interval.scaled(by: Double.random(in: 0.05...0.2))
    }

    /// The update's timers, at every timer turn: a deferred reboot, the feed.
    func feedTimer(now: Instant) {
        retryDeferredReboot(now: now)
        guard let due = feed.next, due <= now, feed.pid == nil, !shuttingDown else { return }
        if requestedUpdate != nil {
            // One check at a time: the unattended one comes after the one asked for.
            feed.next = now + .seconds(60)
            return
        }
        feed.next = nil
        let request = SpawnRequest(
            argv: [currentExecutable() ?? "/usr/bin/aibox", "update", "check", "--install", "--reboot", "--root", paths.root],
            environment: currentEnvironment(),
            workdir: nil, user: nil, stdoutFD: 2, stderrFD: 2)  // its words go where the daemon's go
        do {
            feed.pid = try Spawner.spawn(request)
            logger.info("update: looking at the feed (pid \(feed.pid ?? 0))")
        } catch {
            logger.error("update: cannot run the feed check: \(error)")
            feedCheckEnded(.code(127), now: now)
        }
    }

    /// The check's exit: the next look, sooner after a failure.
    func feedCheckEnded(_ status: ExitStatus, now: Instant) {
        feed.pid = nil
        feed.failures = status == .code(0) ? 0 : feed.failures + 1
        let delay = UpdatePlanner.nextPoll(after: feed.failures, interval: feed.interval, random: Double.random(in: 0...1))
        feed.next = now + delay
        if feed.failures > 0 { logger.warning("update: the feed check failed (\(status)); next look in \(delay.aiboxText)") }
    }

    /// "slot B on trial; update trying" for `aibox status`.
    var updateSummary: String? {
        guard let agent = trial.agent else { return nil }
        let slot = (try? agent.context.bootedSlot()) ?? "?"
        let state = (try? agent.journal.load(slots: agent.context.slotNames))?.state.name ?? "unknown"
        return "slot \(slot)\(trial.gate != nil ? " on trial" : ""); update \(state)"
    }

    /// After each turn while a trial runs: commit, reject and reboot, or wait. The gate runs on
    /// the boot clock; its next look is turned into the loop's monotonic deadline.
    func updateTrialCheck(now: Instant) {
        guard var gate = trial.gate, let agent = trial.agent else { return }
        let critical = order.compactMap { name -> TrialGate.Worker? in
            guard let m = slots[name]?.machine, m.definition.critical else { return nil }
            let quarantined: Bool
            if case .quarantined = m.state { quarantined = true } else { quarantined = false }
            return TrialGate.Worker(name: name, ready: m.isReady, quarantined: quarantined, restarts: m.restarts)
        }
        let bootNow = Instant(nanoseconds: Clock.bootNanoseconds())
        let verdict = gate.evaluate(now: bootNow, critical: critical)
        trial.gate = gate
        switch verdict {
        case .wait(let until):
            trial.next = now + until.since(bootNow)
        case .commit(let why):
            trial.gate = nil
            trial.next = nil
            do {
                try agent.handle(.trialPassed(why))
                logger.notice("update committed: \(why)")
            } catch {
                logger.error("cannot mark the slot good: \(error)")
            }
            reportUpdateProblems(agent)
        case .reject(let why):
            trial.gate = nil
            trial.next = nil
            store.flush(now: now)
            do {
                let actions = try agent.handle(.trialFailed(why))
                for case .reboot(let reason) in actions {
                    logger.critical("\(reason)")
                    if let outcome = agent.lastReboot { rebooted(outcome, reason, now: now) }
                }
            } catch {
                logger.error("cannot mark the slot bad: \(error)")
            }
            reportUpdateProblems(agent)
        }
    }
}

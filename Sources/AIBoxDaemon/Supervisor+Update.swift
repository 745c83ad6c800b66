import AIBoxCore
import AIBoxSystem
import Glibc
import Logging

/// Reboots the box: what the daemon does when a slot on trial fails (issue 5).
public protocol Rebooter: AnyObject {
    func reboot(reason: String)
}

/// The box itself: systemd's orderly reboot (every service stopped, file systems synced).
final class SystemRebooter: Rebooter {
    func reboot(reason: String) { _ = runProgram(["/usr/bin/systemctl", "reboot"], input: nil) }
}

/// Under a `--root` other than `/` there is no machine to reboot: the request is an event,
/// and the test kit's boot simulator does what the boot loader would.
final class RecordingRebooter: Rebooter {
    func reboot(reason: String) {}
}

/// Unattended updates: `aibox update check --install --reboot` run as a child of the daemon
/// (downloads never block the supervisor's loop), every `feed-interval` ± 10 %, backing off
/// after failures (UpdatePlanner.nextPoll).
struct FeedSchedule {
    var next: Instant?
    var pid: Int32?
    var failures = 0
    var interval: Duration = .seconds(6 * 3600)
}

/// A slot booted on trial, watched until it is good or bad.
struct UpdateTrial {
    var context: UpdateContext?
    var journal: UpdateJournal?
    var gate: TrialGate?
    var next: Instant?
    var rebooter: Rebooter?
}

extension Supervisor {
    /// At start: what the boot means for an update in flight (on trial, rolled back).
    func beginUpdateWatch() {
        guard fileExists(paths.under("usr/lib/aibox/system.toml")) else { return }
        let context: UpdateContext
        let journal: UpdateJournal
        do {
            context = try UpdateContext.load(paths)
            journal = try UpdateJournal(path: paths.database)
        } catch {
            logger.error("updates: \(error)")
            store.record(event(kind: "update.unavailable", worker: nil, message: "\(error)"))
            return
        }
        trial.context = context
        trial.journal = journal
        trial.rebooter = paths.root == "/" ? SystemRebooter() : RecordingRebooter()
        let state = journal.reconcile(context)
        guard state == .trying else { return }
        let slot = (try? context.bootedSlot()) ?? "?"
        trial.gate = TrialGate(
            started: Clock.monotonic(), commitAfter: context.system.commitAfter, deadline: context.system.commitDeadline)
        logger.notice(
            "slot \(slot) is on trial: it is marked good once every critical worker has been ready for \(context.system.commitAfter.aiboxText)"
        )
    }

    /// Schedules the feed when box.toml asks for automatic updates from a feed.
    func beginFeedWatch() {
        guard setup.provisioned, trial.context != nil, let text = readTextFile(paths.boxConfig),
            case .success(let config) = BoxConfig.parse(text: text, path: paths.boxConfig),
            config.updates.automatic, config.updates.feedURL != nil
        else {
            feed.next = nil
            return
        }
        feed.interval = trial.context?.system.feedInterval ?? feed.interval
        // The first look comes after a random part of the interval: a fleet powered on
        // together does not ask the server all at once.
        feed.next = Clock.monotonic() + feed.interval.scaled(by: Double.random(in: 0.05...0.2))
    }

    func feedTimer(now: Instant) {
        guard let due = feed.next, due <= now, feed.pid == nil, !shuttingDown else { return }
        feed.next = nil
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let exe = n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "/usr/bin/aibox"
        let request = SpawnRequest(
            argv: [exe, "update", "check", "--install", "--reboot", "--root", paths.root], environment: currentEnvironment(),
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
        guard let context = trial.context, let journal = trial.journal else { return nil }
        let slot = (try? context.bootedSlot()) ?? "?"
        return "slot \(slot)\(trial.gate != nil ? " on trial" : ""); update \(journal.state.rawValue)"
    }

    /// After each turn while a trial runs: commit, reject and reboot, or wait.
    func updateTrialCheck(now: Instant) {
        guard var gate = trial.gate, let context = trial.context, let journal = trial.journal else { return }
        let critical = order.compactMap { name -> TrialGate.Worker? in
            guard let m = slots[name]?.machine, m.definition.critical else { return nil }
            let quarantined: Bool
            if case .quarantined = m.state { quarantined = true } else { quarantined = false }
            return TrialGate.Worker(name: name, ready: m.isReady, quarantined: quarantined, restarts: m.restarts)
        }
        let verdict = gate.evaluate(now: now, critical: critical)
        trial.gate = gate
        switch verdict {
        case .wait(let until):
            trial.next = until
        case .commit(let why):
            trial.gate = nil
            trial.next = nil
            do {
                try journal.commit(context, reason: why)
                logger.notice("update committed: \(why)")
            } catch {
                logger.error("cannot mark the slot good: \(error)")
            }
        case .reject(let why):
            trial.gate = nil
            trial.next = nil
            do {
                try journal.reject(context, reason: why)
            } catch {
                logger.error("cannot mark the slot bad: \(error)")
            }
            let slot = (try? context.bootedSlot()) ?? "?"
            let message = "slot \(slot) failed its trial (\(why)): rebooting into the other slot"
            logger.critical("\(message)")
            store.record(event(kind: "update.reboot-requested", worker: nil, message: message))
            store.flush(now: now)
            trial.rebooter?.reboot(reason: message)
        }
    }
}

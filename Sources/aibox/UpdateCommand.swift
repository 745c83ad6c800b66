import AIBoxCore
import AIBoxSystem
import ArgumentParser
import FoundationEssentials
import Glibc

/// `aibox update …`: install, status, mark-good, mark-bad, rollback.
struct Update: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Install signed update bundles into the other slot; see and steer the A/B state.",
        subcommands: [
            UpdateInstall.self, UpdateStatus.self, UpdateCheck.self, UpdateMarkGood.self, UpdateMarkBad.self, UpdateRollback.self,
        ])
}

/// What the update commands share.
struct UpdateTools {
    let paths: Paths
    let context: UpdateContext
    let journal: UpdateJournal
    let agent: UpdateAgent

    init(_ options: RootOptions) throws {
        try options.requireWritableRoot()
        paths = options.paths
        do {
            context = try UpdateContext.load(paths)
        } catch {
            throw CLIError(error.description)
        }
        try makeDirectories(paths.stateDirectory)
        do {
            journal = try UpdateJournal(path: paths.database)
        } catch {
            throw CLIError("cannot open \(paths.database): \(error)")
        }
        context.recordStampedVersion(in: journal)
        agent = UpdateAgent(context: context, journal: journal, rebooter: Rebooter(paths: paths))
    }

    /// What the agent could not do but went on without (a floor not written, a journal entry
    /// lost): on stderr, and the command fails (exit 1) after its own output.
    func reportProblems() {
        let problems = agent.takeProblems()
        for p in problems { writeStandardError("aibox: \(p)\n") }
        if !problems.isEmpty { exit(ExitCodes.failure) }
    }
}

extension UpdateTools {
    /// Runs a command's body with the tools; any error is the command's failure (exit 1).
    static func run(_ options: RootOptions, _ body: (UpdateTools) throws -> Void) {
        do {
            try body(try UpdateTools(options))
        } catch let e as CLIError {
            fail(e)
        } catch {
            fail(CLIError("\(error)"))
        }
    }
}

struct UpdateInstall: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install", abstract: "Install a bundle into the slot not running; it boots on trial at the next reboot.")
    @OptionGroup var options: RootOptions
    @Argument(help: ArgumentHelp("The bundle (.aibox): a file, or an http or https URL.", valueName: "BUNDLE")) var bundle: String
    @Flag(help: "Reboot into the new slot when installed, unless a worker holds run/aibox/reboot.inhibit.") var reboot = false

    func run() throws {
        do {
            let source: BundleSource
            switch BundleSource.parse(bundle) {
            case .success(let s): source = s
            case .failure(let e): throw CLIError(e.description)
            }
            let tools = try UpdateTools(options)
            try makeDirectories(tools.paths.runDirectory)
            guard let lock = try ProcessLock(path: tools.paths.updateLock) else {
                throw CLIError("another update is being installed (run/aibox/update.lock is held)")
            }
            defer { withExtendedLifetime(lock) {} }
            let meter = ProgressMeter(terminal: isTerminal(1))
            let result: (slot: SlotName, version: SemanticVersion)
            do {
                result = try Installer.install(source, agent: tools.agent) { meter.show($0) }
            } catch {
                meter.end()
                throw CLIError("update failed; the running slot is untouched: \(error)")
            }
            meter.end()
            print(
                "installed version \(result.version) in slot \(result.slot); it boots on trial (\(tools.context.system.bootTries) tries).")
            if reboot {
                let outcome = tools.agent.rebooter.reboot(
                    "rebooting into slot \(result.slot) (version \(result.version))", journal: tools.journal)
                print(outcome.description)
                if case .failed = outcome { Glibc.exit(ExitCodes.failure) }
            } else {
                print("Reboot to start it: systemctl reboot (or aibox update install --reboot).")
            }
            tools.reportProblems()
        } catch let e as CLIError {
            fail(e)
        }
    }
}

/// Bytes, rate and time left: a bar redrawn in place on a terminal, a line per tenth otherwise.
/// A retry of a cut download: a line above the bar on a terminal, a plain line on stderr otherwise.
final class ProgressMeter {
    let terminal: Bool
    let started = Clock.monotonic()
    var lastTenth = -1
    var shown = false

    init(terminal: Bool) { self.terminal = terminal }

    func show(_ report: InstallReport) {
        switch report {
        case .progress(let p): show(p)
        case .retry(let r): retry(r)
        }
    }

    func retry(_ r: DownloadRetry) {
        if terminal {
            // Over the bar (cleared), then the bar again from the next progress.
            writeStandardOutput((shown ? "\r\u{1B}[K" : "") + r.description + "\n")
            shown = false
        } else {
            writeStandardError("aibox: \(r.description)\n")
        }
    }

    func show(_ p: InstallProgress) {
        guard p.total > 0 else { return }
        let fraction = Double(p.bytes) / Double(p.total)
        let seconds = max(Double(Clock.monotonic().since(started).nanoseconds) / 1e9, 0.001)
        let rate = Double(p.bytes) / seconds
        let left = rate > 0 ? Double(p.total - p.bytes) / rate : 0
        let mib = 1_048_576.0
        let text =
            "\(Int(fraction * 100))% \(format(Double(p.bytes) / mib)) of \(format(Double(p.total) / mib)) MiB, "
            + "\(format(rate / mib)) MiB/s, \(Int(left.rounded(.up))) s left"
        if terminal {
            let width = 30
            let filled = Int(fraction * Double(width))
            writeStandardOutput(
                "\r[" + String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled) + "] " + text + "   ")
            shown = true
        } else {
            let tenth = Int(fraction * 10)
            if tenth != lastTenth {
                lastTenth = tenth
                writeStandardOutput("progress: " + text + "\n")
            }
        }
    }

    func end() { if shown { writeStandardOutput("\n") } }

    private func format(_ v: Double) -> String {
        let tenths = Int((v * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }
}

/// `aibox update status --json`.
struct UpdateStatusView: Encodable {
    struct Slot: Encodable {
        var name: String
        var state: String
        var version: String?
        enum CodingKeys: String, CodingKey { case name, state, version }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            try c.encode(state, forKey: .state)
            try c.encode(version, forKey: .version)
        }
    }
    var bootedSlot: String
    var primarySlot: String?
    var slots: [Slot]
    var state: String
    var lastError: String?
    /// The lowest version this box installs without a signed rollback (nil: none yet).
    var floor: String?
    /// What is wrong beside the update's state: a floor that cannot be read or written.
    var problems: [String]
    enum CodingKeys: String, CodingKey { case bootedSlot, primarySlot, slots, state, lastError, floor, problems }
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(bootedSlot, forKey: .bootedSlot)
        try c.encode(primarySlot, forKey: .primarySlot)
        try c.encode(slots, forKey: .slots)
        try c.encode(state, forKey: .state)
        try c.encode(lastError, forKey: .lastError)
        try c.encode(floor, forKey: .floor)
        try c.encode(problems, forKey: .problems)
    }
}

struct UpdateStatus: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "The slots, the boot order and the update state.")
    @OptionGroup var options: RootOptions
    @Flag(help: "One JSON document on stdout.") var json = false

    func run() throws {
        UpdateTools.run(options) { tools in
            let state = try tools.agent.reconcile()
            let booted = try tools.context.bootedSlot()
            let env = try tools.context.loadEnvironment()
            var problems = tools.agent.takeProblems()
            var floor: String?
            switch tools.agent.readFloor().effective {
            case .success(let v): floor = v?.description
            case .failure(let why):
                problems.append("the version floor cannot be read (\(why)): only bundles signed as a rollback are installed")
            }
            let view = UpdateStatusView(
                bootedSlot: booted, primarySlot: env.primary,
                slots: tools.context.system.slots.map { s in
                    UpdateStatusView.Slot(
                        name: s.name, state: env.state(of: s.name).rawValue,
                        version: tools.journal.slotVersion(s.name) ?? (s.name == booted ? AIBoxVersion.current : nil))
                },
                state: state.name, lastError: state.reason, floor: floor, problems: problems)
            if json {
                printJSON(view)
                return
            }
            print("booted:  slot \(view.bootedSlot)    primary: slot \(view.primarySlot ?? "-")")
            for s in view.slots { print("slot \(s.name):  \(s.state.padded(to: 7)) \(s.version ?? "-")") }
            print("update:  \(view.state)\(view.lastError.map { " — " + $0 } ?? "")")
            print("floor:   \(view.floor ?? "-")")
            for p in problems { print("problem: \(p)") }
        }
    }
}

struct UpdateMarkGood: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mark-good", abstract: "The running slot is healthy: keep it (its version becomes the floor).")
    @OptionGroup var options: RootOptions

    func run() throws {
        UpdateTools.run(options) { tools in
            let actions = try tools.agent.handle(.markGood)
            let booted = try tools.context.bootedSlot()
            let marked = actions.contains { if case .boot = $0 { true } else { false } }
            print(marked ? "slot \(booted) marked good." : "slot \(booted) is good already.")
            tools.reportProblems()
        }
    }
}

struct UpdateMarkBad: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mark-bad", abstract: "The running slot is not fit: never boot it again; the other one boots next.")
    @OptionGroup var options: RootOptions

    func run() throws {
        UpdateTools.run(options) { tools in
            try tools.agent.handle(.markBad)
            print("slot \(try tools.context.bootedSlot()) marked bad; reboot to start the other slot.")
            tools.reportProblems()
        }
    }
}

struct UpdateRollback: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback", abstract: "Boot the other slot next (it must be good); this one stays as it is.")
    @OptionGroup var options: RootOptions

    func run() throws {
        UpdateTools.run(options) { tools in
            try tools.agent.handle(.rollback)
            let env = try tools.context.loadEnvironment()
            print("slot \(env.primary ?? "?") boots next; reboot to roll back.")
            tools.reportProblems()
        }
    }
}

/// `aibox update check [--install [--now] [--reboot]] [--json]`: the feed of box.toml's
/// [updates], its channel's newest version against what runs.
struct UpdateCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Look at the update feed; with --install, install what it offers (inside the maintenance window).",
        discussion: """
            The feed is box.toml's [updates] feed-url (signed JSON, FEED.sig beside it; docs/UPDATES.md). \
            --install installs only inside the window, with the clock set and the space there, unless --now. \
            --reboot then reboots, unless a worker holds run/aibox/reboot.inhibit (the reboot waits for the next check).
            """)
    @OptionGroup var options: RootOptions
    @Flag(help: "Install what the feed offers.") var install = false
    @Flag(help: "With --install: ignore the maintenance window.") var now = false
    @Flag(help: "With --install: reboot into the new slot unless inhibited.") var reboot = false
    @Flag(help: "One JSON document on stdout.") var json = false

    struct Report: Encodable {
        var result: String
        var version: String?
        var url: String?
        var reason: String?
        enum CodingKeys: String, CodingKey { case result, version, url, reason }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(result, forKey: .result)
            try c.encode(version, forKey: .version)
            try c.encode(url, forKey: .url)
            try c.encode(reason, forKey: .reason)
        }
    }

    func run() throws {
        do {
            let tools = try UpdateTools(options)
            let paths = tools.paths
            guard let text = readTextFile(paths.boxConfig) else {
                throw CLIError("the box is not set up (no \(paths.boxConfig)): no feed to look at")
            }
            let updates: UpdatesConfig
            switch BoxConfig.parse(text: text, path: paths.boxConfig) {
            case .success(let c): updates = c.updates
            case .failure(let e): throw CLIError("\(paths.boxConfig) is not valid:\n\(e)")
            }
            guard let feedURL = updates.feedURL else {
                throw CLIError("no feed: box.toml's [updates] has no feed-url (aibox update install BUNDLE|URL works without one)")
            }
            let keyring: Keyring
            do { keyring = try Keyring.load(directory: paths.under("usr/lib/aibox/keys")) } catch { throw CLIError("\(error)") }
            let feed: UpdateFeed
            do {
                let ca = tools.context.system.updateCA.map { paths.under(String($0.dropFirst())) }
                feed = try UpdateFeed.fetch(feedURL, keyring: keyring, ca: ca)
            } catch {
                tools.journal.record("update.check-failed", "\(error)")
                throw CLIError("\(error)")
            }
            try tools.agent.reconcile()
            let booted = try tools.context.bootedSlot()
            let running = tools.journal.slotVersion(booted).flatMap(SemanticVersion.init) ?? SemanticVersion(AIBoxVersion.current)
            var t = time(nil)
            var tm = tm()
            localtime_r(&t, &tm)
            let slotDir = parentDirectory(tools.context.device(tools.context.system.slots[0]))
            let decision: FeedDecision
            switch tools.agent.readFloor().effective {
            case .failure(let why):
                decision = .refused("the version floor cannot be read (\(why)): only bundles signed as a rollback are installed")
            case .success(let floor):
                decision = UpdatePlanner.decide(
                    entry: feed.channels[updates.channel.rawValue], channel: updates.channel.rawValue,
                    compatible: tools.context.system.compatible,
                    feedCompatible: feed.compatible, running: running, floor: floor, localYear: Int(tm.tm_year) + 1900,
                    minuteOfDay: Int(tm.tm_hour) * 60 + Int(tm.tm_min), window: install && !now ? updates.window : nil,
                    freeBytes: freeBytes(at: slotDir))
            }
            var report: Report
            switch decision {
            case .upToDate(let why): report = Report(result: "up-to-date", reason: why)
            case .refused(let why): report = Report(result: "refused", reason: why)
            case .deferred(let e, let why): report = Report(result: "deferred", version: e.version.description, url: e.url, reason: why)
            case .available(let e): report = Report(result: "available", version: e.version.description, url: e.url)
            }
            tools.journal.record(
                "update.checked",
                "\(updates.channel.rawValue): \(report.result)\(report.version.map { " " + $0 } ?? "")\(report.reason.map { " (" + $0 + ")" } ?? "")"
            )
            if install, case .available(let entry) = decision {
                try makeDirectories(paths.runDirectory)
                guard let lock = try ProcessLock(path: paths.updateLock) else {
                    throw CLIError("another update is being installed (run/aibox/update.lock is held)")
                }
                defer { withExtendedLifetime(lock) {} }
                guard case .success(let source) = BundleSource.parse(entry.url), source.isDownload else {
                    throw CLIError("the feed offers \(entry.version) at \(entry.url), which is not an http or https URL: not installed")
                }
                let installed: (slot: SlotName, version: SemanticVersion)
                do {
                    // Its stdout is the report; a retry is a line on stderr (the daemon's log when it runs the check).
                    installed = try Installer.install(source, agent: tools.agent) { r in
                        if case .retry(let retry) = r { writeStandardError("aibox: \(retry.description)\n") }
                    }
                } catch {
                    throw CLIError("update failed; the running slot is untouched: \(error)")
                }
                report.result = "installed"
                if reboot {
                    let outcome = tools.agent.rebooter.reboot(
                        "rebooting into slot \(installed.slot) (version \(installed.version))", journal: tools.journal)
                    report.reason = outcome.description
                }
            }
            if json {
                printJSON(report)
            } else {
                print(
                    "\(report.result)\(report.version.map { ": " + $0 } ?? "")\(report.reason.map { " — " + $0 } ?? "")")
            }
            tools.reportProblems()
        } catch let e as CLIError {
            fail(e)
        }
    }
}

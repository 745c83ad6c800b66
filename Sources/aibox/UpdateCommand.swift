import AIBoxCore
import AIBoxSystem
import ArgumentParser
import FoundationEssentials
import Glibc

/// `aibox update …`: install, status, mark-good, mark-bad, rollback.
struct Update: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Install signed update bundles into the other slot; see and steer the A/B state.",
        subcommands: [UpdateInstall.self, UpdateStatus.self, UpdateMarkGood.self, UpdateMarkBad.self, UpdateRollback.self])
}

/// What the update commands share.
struct UpdateTools {
    let paths: Paths
    let context: UpdateContext
    let journal: UpdateJournal

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
    }
}

struct UpdateInstall: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install", abstract: "Install a bundle into the slot not running; it boots on trial at the next reboot.")
    @OptionGroup var options: RootOptions
    @Argument(help: ArgumentHelp("The bundle (.aibox).", valueName: "BUNDLE")) var bundle: String
    @Flag(help: "Reboot into the new slot when installed.") var reboot = false

    func run() throws {
        do {
            let tools = try UpdateTools(options)
            try makeDirectories(tools.paths.runDirectory)
            guard let lock = try ProcessLock(path: tools.paths.updateLock) else {
                throw CLIError("another update is being installed (run/aibox/update.lock is held)")
            }
            defer { withExtendedLifetime(lock) {} }
            let meter = ProgressMeter(terminal: isatty(1) != 0)
            let result: (slot: SlotName, version: SemanticVersion)
            do {
                result = try Installer.install(bundle: bundle, context: tools.context, journal: tools.journal) { meter.show($0) }
            } catch {
                meter.end()
                throw CLIError("update failed; the running slot is untouched: \(error)")
            }
            meter.end()
            print(
                "installed version \(result.version) in slot \(result.slot); it boots on trial (\(tools.context.system.bootTries) tries).")
            if reboot {
                if tools.paths.root != "/" { throw CLIError("--reboot under --root: nothing to reboot (run the boot simulator)") }
                _ = runProgram(["/usr/bin/systemctl", "reboot"], input: nil)
            } else {
                print("Reboot to start it: systemctl reboot (or aibox update install --reboot).")
            }
        } catch let e as CLIError {
            fail(e)
        }
    }
}

/// Bytes, rate and time left: a bar redrawn in place on a terminal, a line per tenth otherwise.
final class ProgressMeter {
    let terminal: Bool
    let started = Clock.monotonic()
    var lastTenth = -1
    var shown = false

    init(terminal: Bool) { self.terminal = terminal }

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
    enum CodingKeys: String, CodingKey { case bootedSlot, primarySlot, slots, state, lastError }
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(bootedSlot, forKey: .bootedSlot)
        try c.encode(primarySlot, forKey: .primarySlot)
        try c.encode(slots, forKey: .slots)
        try c.encode(state, forKey: .state)
        try c.encode(lastError, forKey: .lastError)
    }
}

struct UpdateStatus: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "The slots, the boot order and the update state.")
    @OptionGroup var options: RootOptions
    @Flag(help: "One JSON document on stdout.") var json = false

    func run() throws {
        do {
            let tools = try UpdateTools(options)
            let state = tools.journal.reconcile(tools.context)
            let booted = try tools.context.bootedSlot()
            let env = try tools.context.control.load()
            let view = UpdateStatusView(
                bootedSlot: booted, primarySlot: env.primary,
                slots: tools.context.system.slots.map { s in
                    UpdateStatusView.Slot(
                        name: s.name, state: env.state(of: s.name).rawValue,
                        version: tools.journal.slotVersion(s.name) ?? (s.name == booted ? AIBoxVersion.current : nil))
                },
                state: state.rawValue, lastError: tools.journal.lastError)
            if json {
                printJSON(view)
                return
            }
            print("booted:  slot \(view.bootedSlot)    primary: slot \(view.primarySlot ?? "-")")
            for s in view.slots { print("slot \(s.name):  \(s.state.padded(to: 7)) \(s.version ?? "-")") }
            print("update:  \(view.state)\(view.lastError.map { " — " + $0 } ?? "")")
        } catch let e as CLIError {
            fail(e)
        } catch {
            fail(CLIError("\(error)"))
        }
    }
}

struct UpdateMarkGood: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mark-good", abstract: "The running slot is healthy: keep it (its version becomes the floor).")
    @OptionGroup var options: RootOptions

    func run() throws {
        do {
            let tools = try UpdateTools(options)
            try tools.journal.commit(tools.context, reason: "marked good by hand")
            print("slot \(try tools.context.bootedSlot()) marked good.")
        } catch let e as CLIError {
            fail(e)
        } catch {
            fail(CLIError("\(error)"))
        }
    }
}

struct UpdateMarkBad: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mark-bad", abstract: "The running slot is not fit: never boot it again; the other one boots next.")
    @OptionGroup var options: RootOptions

    func run() throws {
        do {
            let tools = try UpdateTools(options)
            try tools.journal.reject(tools.context, reason: "marked bad by hand")
            print("slot \(try tools.context.bootedSlot()) marked bad; reboot to start the other slot.")
        } catch let e as CLIError {
            fail(e)
        } catch {
            fail(CLIError("\(error)"))
        }
    }
}

struct UpdateRollback: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback", abstract: "Boot the other slot next (it must be good); this one stays as it is.")
    @OptionGroup var options: RootOptions

    func run() throws {
        do {
            let tools = try UpdateTools(options)
            let booted = try tools.context.bootedSlot()
            guard let other = tools.context.system.slots.first(where: { $0.name != booted })?.name else {
                throw CLIError("no other slot")
            }
            let env = try tools.context.control.load()
            guard env.state(of: other) == .good else {
                throw CLIError("slot \(other) is \(env.state(of: other).rawValue), not good: there is nothing safe to roll back to")
            }
            try tools.context.control.update { $0.order = [other] + $0.order.filter { $0 != other } }
            tools.journal.transition(.rolledBack, "rollback requested: slot \(other) boots next")
            print("slot \(other) boots next; reboot to roll back.")
        } catch let e as CLIError {
            fail(e)
        } catch {
            fail(CLIError("\(error)"))
        }
    }
}

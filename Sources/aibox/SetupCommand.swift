import AIBoxCore
import AIBoxSystem
import ArgumentParser
import CAIBoxOS
import Glibc

/// `aibox setup [--seed FILE]`: the first-boot wizard on a terminal or serial line, or a seed.
struct Setup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Set the box up: questions on this terminal, or a seed file (--seed).",
        discussion: """
            Interactive: plain line prompts that work on a serial console. Enter takes the \
            [default]; type back to go back a question. Each finished step is journaled: after \
            Ctrl-C or a power cut, setup resumes where it stopped; box.toml is written only when \
            the summary is confirmed.
            With --seed FILE: no questions; every error in the file is reported at once and \
            nothing changes unless the whole seed is valid (format: provisioning/README.md).
            """)
    @OptionGroup var options: RootOptions
    @Option(help: ArgumentHelp("Provision from this TOML seed without questions.", valueName: "FILE")) var seed: String?
    @Flag(help: "With --seed: replace the configuration of a box that is already set up.") var force = false

    func run() throws {
        do {
            try options.requireWritableRoot()
            let paths = options.paths
            try makeDirectories(paths.runDirectory)
            let lockPath = paths.under("run/aibox/setup.lock")
            var taken = try ProcessLock(path: lockPath)
            if taken == nil {
                // A box with a screen and a serial line asks on both (one aibox-setup@ unit
                // each): the other console holds the wizard. Here the person may take it over.
                guard seed == nil, isatty(0) == 1 else {
                    throw CLIError("another aibox setup is running on this box; finish or stop it first")
                }
                taken = try SetupTakeover(lockPath: lockPath, boxConfig: paths.boxConfig).waitForTurn()
            }
            guard let lock = taken else { return }  // set up on the other console meanwhile
            lock.recordHolder()
            defer { withExtendedLifetime(lock) {} }
            try makeDirectories(paths.stateDirectory, mode: 0o755)
            let provisioner = Provisioner(paths: paths, wifiInterface: Setup.wifiInterface())
            if let seed {
                try runSeed(seed, provisioner)
            } else {
                try SetupSession(paths: paths, provisioner: provisioner).run()
            }
            Setup.tellDaemon(paths)
        } catch let e as CLIError {
            fail(e)
        }
    }

    private func runSeed(_ path: String, _ provisioner: Provisioner) throws {
        if provisioner.isProvisioned && !force {
            throw CLIError(
                "this box is already set up (\(provisioner.paths.boxConfig)); pass --force to replace its configuration "
                    + "with the seed, or run aibox factory-reset first")
        }
        let result = Provisioner.readSeed(path).flatMap { bytes in
            provisioner.provision(seed: bytes, path: path, tier: Setup.tier(), source: "seed \(path)")
        }
        switch result {
        case .success(let config):
            print("provisioned \"\(config.name)\" from \(path)")
        case .failure(.invalid(let errors)):
            writeStandardError("aibox: the seed was not applied; nothing changed. \(errors.errors.count) problem(s):\n\(errors)\n")
            throw ExitCode(ExitCodes.failure)
        case .failure(.system(let e)) where e.function == "rename":
            throw CLIError("the seed was only partly applied: \(e)")
        case .failure(let other):
            throw CLIError("the seed was not applied; nothing changed: \(other)")
        }
    }

    /// The local-LLM tier decides the default chat model.
    static func tier() -> LocalLLMTier { HardwareProbe.scan().profile.localLlmTier }

    /// The first Wi-Fi interface udev knows (wpa_supplicant runs on it), else wlan0.
    static func wifiInterface() -> String {
        let wlan = UdevInventory.enumerate(subsystems: ["net"]).first { $0.devtype == "wlan" || $0.properties["DEVTYPE"] == "wlan" }
        return wlan.flatMap { $0.syspath.split(separator: "/").last.map(String.init) } ?? "wlan0"
    }

    /// Tells a running daemon to look at the box configuration again (leave or enter setup
    /// mode); without a daemon it learns at its next start. One that does not answer in time
    /// is named; it looks at box.toml by itself every 2 s once it goes on again.
    static func tellDaemon(_ paths: Paths) {
        struct Ack: Decodable { var provisioned: Bool }
        do {
            _ = try DaemonCLI.request(paths, ControlRequest(command: "setup-changed"), as: Ack.self)
        } catch let e as CLIError where e.code == ExitCodes.daemonNotResponding {
            writeStandardError("aibox: note: \(e.description); it sees the change by itself once it goes on\n")
        } catch {}
    }
}

// MARK: Two consoles

/// The wizard runs on one console at a time. Another console says so and waits: Enter there
/// asks the running wizard (its PID is in the lock file) to stop with SIGUSR1 and takes the
/// lock; the wizard resumes from the journal at the first unfinished step. The console that
/// lost it restarts (its unit's Restart=always) and waits in turn.
struct SetupTakeover {
    let lockPath: String
    let boxConfig: String

    /// The lock once this console has it; nil when the box got set up elsewhere meanwhile.
    func waitForTurn() throws -> ProcessLock? {
        writeStandardOutput("Setup is running on another console. Press Enter here to take it over.\n")
        var buffer = [UInt8](repeating: 0, count: 256)
        while true {
            // The lock first: box.toml is written before the other wizard lets go of it.
            let lock = try ProcessLock(path: lockPath)
            if fileExists(boxConfig) {
                writeStandardOutput("The box has been set up on the other console.\n")
                return nil
            }
            if let lock { return lock }
            var p = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 1000) > 0 else { continue }
            let n = read(0, &buffer, buffer.count)
            guard n > 0 else { throw ExitCode(ExitCodes.failure) }  // the line went away
            guard buffer[..<n].contains(where: { $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\n") }) else { continue }
            if let pid = ProcessLock.recordedHolder(path: lockPath), isSetup(pid) { kill(pid, SIGUSR1) }
            for _ in 0..<50 {
                if let lock = try ProcessLock(path: lockPath) {
                    writeStandardOutput("Taken over: setup continues here.\n")
                    return lock
                }
                usleep(100_000)
            }
            writeStandardOutput("The other console's setup did not let go; press Enter to try again.\n")
        }
    }

    /// Only an `aibox setup` is signalled: the PID in the file may be stale and reused.
    private func isSetup(_ pid: pid_t) -> Bool {
        guard let cmdline = readSmallFile("/proc/\(pid)/cmdline", limit: 4096) else { return false }
        let argv = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return argv.count >= 2 && argv[0].hasSuffix("aibox") && argv[1] == "setup"
    }
}

// MARK: The interactive session

/// Set by SIGINT (Ctrl-C), SIGTERM/SIGHUP (the line went away) and SIGUSR1 (another console
/// took setup over): the read returns EINTR.
nonisolated(unsafe) private var interrupted: Int32 = 0

private func onInterrupt(_ sig: Int32) { interrupted = sig }

/// One run of the wizard on standard input and output.
struct SetupSession {
    let paths: Paths
    let provisioner: Provisioner

    func run() throws {
        if provisioner.isProvisioned {
            throw CLIError(
                "this box is already set up (\(paths.boxConfig)). To start again: aibox factory-reset; "
                    + "to replace the configuration from a file: aibox setup --seed FILE --force")
        }
        let journal: SetupJournal
        do {
            journal = try SetupJournal(path: paths.database)
        } catch {
            throw CLIError("cannot open the setup journal in \(paths.database): \(error)")
        }
        let staged = SecretStore(directory: paths.setupStaging)
        let records = journal.load()
        var wizard = SetupWizard(
            tier: Setup.tier(), hashPassword: SetupSession.hash, zoneExists: Provisioner.zoneCheck, resuming: records,
            secrets: staged.readAll())
        let terminal = Terminal()
        defer { terminal.restore() }
        installInterruptHandlers()
        var saved = Dictionary(uniqueKeysWithValues: records.map { ($0.step, $0) })

        writeStandardOutput("AI Box setup — \(SetupStep.allCases.count) steps.\n")
        if let step = wizard.step, !records.isEmpty {
            writeStandardOutput("Resuming at step \(step.number) (\(step.title)); your earlier answers are the defaults.\n")
        }
        var lastIntro: [String] = []
        while let q = wizard.question {
            if q.intro != lastIntro && !q.intro.isEmpty {
                writeStandardOutput("\n" + q.intro.joined(separator: "\n") + "\n")
            }
            lastIntro = q.intro
            guard let line = terminal.readLine(prompt: q.prompt, secret: q.isSecret) else {
                if interrupted == SIGUSR1 {
                    writeStandardOutput("\nSetup was taken over on another console; finished steps are kept there.\n")
                    return
                }
                if interrupted == SIGINT {
                    // As after a power cut: the finished steps stay journaled, box.toml unwritten.
                    writeStandardOutput(
                        "\nSetup interrupted; the box is not set up yet. Finished steps are kept:\n"
                            + "run aibox setup again to continue.\n")
                    throw ExitCode(130)
                }
                writeStandardOutput("\nSetup stopped (end of input). Finished steps are kept:\nrun aibox setup again to continue.\n")
                throw ExitCode(ExitCodes.failure)
            }
            let reply = wizard.answer(line)
            if case .invalid(let message) = reply {
                writeStandardOutput(Terminal.wrap(message, first: "  ! ", then: "    "))
                continue
            }
            // Secrets first (their names are what the journal holds), then the journal. Only a
            // finished step's: the staged values always match the journaled steps.
            let finished = wizard.finishedSteps
            let journaledNames = Set(finished.flatMap(\.secretNames))
            for (name, value) in wizard.secrets where journaledNames.contains(name) && staged.read(name) != value {
                do { try staged.write(name, value) } catch { throw CLIError("cannot keep the answer: \(error)") }
            }
            let now = Dictionary(uniqueKeysWithValues: finished.map { ($0.step, $0) })
            for r in finished where saved[r.step] != r {
                do { try journal.save(r) } catch { throw CLIError("cannot journal step \(r.step.title): \(error)") }
                journal.record("setup.step-done", "step \(r.step.number) (\(r.step.title)) done")
            }
            // Going back into a finished step keeps the later steps journaled: after a power cut
            // their answers are still there (replayed if they still fit, else asked again).
            saved.merge(now) { _, new in new }
        }
        guard let (config, secrets) = wizard.result else { return }
        do {
            try provisioner.commit(config, secrets: secrets)
        } catch {
            throw CLIError("setup could not be saved; the box is not provisioned yet (run aibox setup again): \(error)")
        }
        try? journal.clear()
        journal.record("setup.provisioned", "provisioned interactively as \(config.name)")
        writeStandardOutput("\nSetup complete: \(paths.boxConfig) written.\nThe agents start now.\n")
    }

    static let hash: SetupWizard.PasswordHasher = { password in
        var out = [CChar](repeating: 0, count: 256)
        guard aibox_hash_password(password.reveal(), &out, out.count) == 0 else { return nil }
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private func installInterruptHandlers() {
        for sig in [SIGINT, SIGTERM, SIGHUP, SIGUSR1] {
            setSignalAction(sig, onInterrupt)  // no SA_RESTART: the read returns EINTR
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, sig)
            _ = try? syscall("sigprocmask") { sigprocmask(SIG_UNBLOCK, &set, nil) }
        }
    }
}

/// Standard input as lines, with echo off for secrets when it is a terminal. Works the same
/// on a pty, a serial line or a pipe; no cursor addressing, nothing wider than the prompts.
final class Terminal {
    private var saved: termios?
    /// A line ended by CR: a LF right after it belongs to the same end (CR LF from a serial terminal).
    private var afterCR = false

    init() {
        var t = termios()
        // Not a terminal (ENOTTY): a piped answer file, nothing to restore.
        if (try? syscall("tcgetattr") { tcgetattr(0, &t) }) != nil { saved = t }
    }

    /// The terminal as it was (echo back on).
    func restore() {
        if var t = saved { _ = try? syscall("tcsetattr") { tcsetattr(0, TCSANOW, &t) } }
    }

    /// Shows `prompt`, then reads one line without its end; nil at end of input or when
    /// interrupted. For a secret the echo goes off before the prompt shows: whoever types as
    /// soon as it appears (a person, or a program driving the terminal) is not echoed.
    func readLine(prompt: String, secret: Bool) -> String? {
        if secret, var t = saved {
            t.c_lflag &= ~tcflag_t(ECHO)
            _ = try? syscall("tcsetattr") { tcsetattr(0, TCSANOW, &t) }
        }
        writeStandardOutput(prompt)
        defer {
            if secret, saved != nil {
                restore()
                writeStandardOutput("\n")  // the newline the terminal did not echo
            }
        }
        var bytes: [UInt8] = []
        var c: UInt8 = 0
        while true {
            // A read that Ctrl-C interrupts is retried only after the flag is looked at: the
            // handler set it, so the retry reads nothing.
            let n = (try? syscall("read", detail: "standard input") { interrupted != 0 ? 0 : read(0, &c, 1) }) ?? 0
            if interrupted != 0 { return nil }
            if n == 0 { return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self) }
            defer { afterCR = c == UInt8(ascii: "\r") }
            if c == UInt8(ascii: "\n") && afterCR && bytes.isEmpty { continue }
            if c == UInt8(ascii: "\n") || c == UInt8(ascii: "\r") { break }
            if bytes.count < 64 << 10 { bytes.append(c) }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `text` as lines of at most `width` columns for a dumb terminal (`TextLayout.wrap`).
    static func wrap(_ text: String, first: String, then: String, width: Int = 80) -> String {
        TextLayout.wrap(text, width: width, first: first, then: then).joined(separator: "\n") + "\n"
    }
}

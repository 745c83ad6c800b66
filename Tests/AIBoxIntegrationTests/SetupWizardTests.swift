import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// `aibox setup` as its owner meets it (issue 4): on a terminal — a real pty, 80 columns,
/// TERM=dumb, the pty its controlling terminal so that ^C is SIGINT — and through a pipe.
/// The driver waits for each exact prompt before it types, as a person or an expect script would.

// MARK: What the owner types

/// Values of the right shape, copied from SetupModelTests' `SetupFixtures`; none opens anything.
private enum Typed {
    static let sshKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEZm0+rRGtin0vv1zAlc4StYpmbRQSlA5RhVaTBA4As8 owner@laptop"
    static let password = "correct horse battery"
    static let wifiPassphrase = "correct horse battery staple"
    static let openAIKey = "sk-proj-FAKE0example0key0000000000000000"
    static let telegram = "123456789:AAFakeTokenForExamplesOnly_00000000"
    /// Another key of the same shape, typed over the first one.
    static let otherOpenAIKey = "sk-proj-FAKE0example0key1111111111111111"
    static let secrets = [password, wifiPassphrase, openAIKey, telegram, otherOpenAIKey]
}

/// One question as the terminal shows it, and the line typed there ("" is Enter).
private struct Exchange: Sendable {
    var prompt: String
    var answer: String
    var secret = false
}

private func ask(_ prompt: String, _ answer: String) -> Exchange { Exchange(prompt: prompt, answer: answer) }
private func askSecret(_ prompt: String, _ answer: String) -> Exchange { Exchange(prompt: prompt, answer: answer, secret: true) }

/// The whole wizard with a provider, a channel, static network and Wi-Fi, by step.
private enum Script {
    /// `aibox setup` reads the same hardware: its tier decides two defaults.
    static let tier = HardwareProbe.scan().profile.localLlmTier
    static let addProviderDefault = tier == .none ? "yes" : "no"
    /// Chat's default chain: the box's own model first when it can run one, then the cloud.
    static let chatDefault = (LocalModel.model(for: tier).map { "\(LocalModel.providerName)/\($0) " } ?? "") + "openai/gpt-4o-mini"
    /// What the routing step says Enter gives chat.
    static let chatDefaultSaid =
        "Enter gives chat "
        + (LocalModel.model(for: tier).map { "\($0) on this box (provider \(LocalModel.providerName), llama.cpp), then " } ?? "")
        + "openai/gpt-4o-mini."

    static let titles = [
        "Name", "Admin access", "Time zone", "Network", "LLM providers", "Routing", "Cloud budget", "Chat channels", "Updates", "Summary",
    ]

    /// steps[n - 1]: the questions of step n, up to (not with) the summary.
    static let steps: [[Exchange]] = [
        [ask("Name of this box [aibox]: ", "kitchen-box")],
        [
            ask("SSH public key for admin login [skip]: ", Typed.sshKey),
            ask("Another SSH public key [done]: ", ""),
            askSecret("Admin password (not shown) [skip]: ", Typed.password),
            askSecret("The same password again: ", Typed.password),
        ],
        [ask("Time zone, Area/City such as Europe/Berlin [UTC]: ", "Europe/Berlin")],
        [
            ask("Wired network: dhcp or static [dhcp]: ", "static"),
            ask("IP address of this box, such as 192.168.1.50: ", "192.168.1.50"),
            ask("Prefix length [24]: ", ""),
            ask("Gateway (router) address [none]: ", "192.168.1.1"),
            ask("DNS servers, separated by spaces [192.168.1.1]: ", ""),
            ask("Set up Wi-Fi? [no]: ", "yes"),
            ask("Wi-Fi network name (SSID): ", "Kitchen"),
            askSecret("Wi-Fi passphrase (not shown) [open network]: ", Typed.wifiPassphrase),
            ask("Wi-Fi country, two letters such as DE or US: ", "de"),
        ],
        [
            ask("Add an LLM provider (a cloud API or a server on your network)? [\(addProviderDefault)]: ", "yes"),
            ask("Kind: openai, anthropic, ollama or llamacpp [openai]: ", ""),
            ask("Name for this provider [openai]: ", ""),
            ask("Base URL [https://api.openai.com/v1]: ", ""),
            askSecret("API key (not shown): ", Typed.openAIKey),
            ask("Models, separated by spaces [gpt-4o-mini]: ", "gpt-4o-mini gpt-4o"),
            ask("Add another LLM provider? [no]: ", ""),
        ],
        [
            ask("Models for chat [\(chatDefault)]: ", ""),
            ask("Models for code [as chat]: ", "openai/gpt-4o"),
            ask("Models for reasoning [as chat]: ", "openai/gpt-4o-mini"),
        ],
        [
            ask("Daily cap in US dollars [none]: ", "$2"),
            ask("Monthly cap in US dollars [none]: ", ""),
            ask("When a cap is reached: local or refuse [local]: ", "refuse"),
        ],
        [
            ask("Add a chat channel: telegram, slack, discord, whatsapp or no [no]: ", "telegram"),
            askSecret("Telegram bot token from @BotFather (not shown): ", Typed.telegram),
            ask("Telegram owners: user ids, separated by spaces [none]: ", "123456789"),
            ask("Add another channel: slack, discord, whatsapp or no [no]: ", ""),
        ],
        [
            ask("Update channel: stable or beta [stable]: ", ""),
            ask("Update feed URL [built-in]: ", ""),
            ask("Install updates automatically? [yes]: ", ""),
            ask("Install window, HH:MM-HH:MM local time [03:00-05:00]: ", "22:00-02:00"),
        ],
    ]

    static let confirm = ask("Write this configuration? [yes]: ", "yes")

    /// The last questions of step n as `back` shows them after a resume: each with the answer
    /// given before the kill in brackets (a secret's as ••••), taken again by Enter.
    static let remembered: [[Exchange]] = [
        [ask("Name of this box [kitchen-box]: ", "")],
        [askSecret("Admin password (not shown) [••••]: ", "")],
        [ask("Time zone, Area/City such as Europe/Berlin [Europe/Berlin]: ", "")],
        [
            askSecret("Wi-Fi passphrase (not shown) [••••]: ", ""),
            ask("Wi-Fi country, two letters such as DE or US [DE]: ", ""),
        ],
        [
            askSecret("API key (not shown) [••••]: ", ""),
            ask("Models, separated by spaces [gpt-4o-mini gpt-4o]: ", ""),
            ask("Add another LLM provider? [no]: ", ""),
        ],
        [
            ask("Models for code [openai/gpt-4o]: ", ""),
            ask("Models for reasoning [openai/gpt-4o-mini]: ", ""),
        ],
        [
            ask("Daily cap in US dollars [2]: ", ""),
            ask("Monthly cap in US dollars [none]: ", ""),
            ask("When a cap is reached: local or refuse [refuse]: ", ""),
        ],
        [
            askSecret("Telegram bot token from @BotFather (not shown) [••••]: ", ""),
            ask("Telegram owners: user ids, separated by spaces [123456789]: ", ""),
            ask("Add another channel: slack, discord, whatsapp or no [no]: ", ""),
        ],
        [ask("Install window, HH:MM-HH:MM local time [22:00-02:00]: ", "")],
    ]

    static func resumeLine(_ step: Int) -> String {
        "Resuming at step \(step) (\(titles[step - 1])); your earlier answers are the defaults."
    }
}

// MARK: The pty driver

private struct DriverFailure: Error, CustomStringConvertible {
    var description: String
}

/// `aibox setup --root ROOT` on a fresh pty (80×24) that is its controlling terminal, by
/// util-linux `setsid --ctty`. Everything the master gives is kept; the terminal's echo of
/// what was typed is told apart from what the program wrote (it comes right after each line
/// typed, before the program's next output: n_tty writes pending echoes before any output).
private final class PtySession {
    let root: String
    let master: Int32
    let process: Process
    /// Every byte read from the master.
    private(set) var raw: [UInt8] = []
    /// What the program wrote: `raw` without the echo of the lines typed at non-secret prompts.
    private(set) var shown: [UInt8] = []
    /// `shown[..<taken]` has been matched by `expectPrompt`.
    private var taken = 0
    private var echo: [UInt8] = []
    private var echoMatched = 0
    /// Echo that was not what was typed.
    private(set) var problems: [String] = []
    /// The program's characters on the screen line being written (the echo takes none of them).
    private var line: [UInt8] = []
    /// Screen lines on which the program wrote more than 80 columns.
    private(set) var wideLines: [String] = []
    /// The prompt shown and not answered yet.
    private var waitingAt: String?
    /// After a SIGKILL: what comes is setsid's word on it, not the program's.
    private var killed = false
    private var aiboxPID: Int32?
    private(set) var ended = false

    init(root: String) throws {
        var m: Int32 = -1, slave: Int32 = -1
        var size = winsize(ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0)
        guard openpty(&m, &slave, nil, nil, &size) == 0 else {
            throw DriverFailure(description: "openpty: \(String(cString: strerror(errno)))")
        }
        // Not into other tests' children (the child gets its own copies on 0, 1 and 2).
        _ = fcntl(m, F_SETFD, FD_CLOEXEC)
        _ = fcntl(slave, F_SETFD, FD_CLOEXEC)
        defer { close(slave) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
        p.arguments = ["--ctty", "--wait", aiboxBinary, "setup", "--root", root]
        var env = ProcessInfo.processInfo.environment
        env["TERM"] = "dumb"
        env["COLUMNS"] = nil
        env["LINES"] = nil
        env["AIBOX_ROOT"] = root  // TestBox.killLeftovers finds it by this
        p.environment = env
        let handle = FileHandle(fileDescriptor: slave, closeOnDealloc: false)
        p.standardInput = handle
        p.standardOutput = handle
        p.standardError = handle
        do {
            try p.run()
        } catch {
            close(m)
            throw error
        }
        self.root = root
        master = m
        process = p
    }

    deinit {
        if process.isRunning {
            if let pid = findAibox() { kill(pid, SIGKILL) }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        close(master)
    }

    /// The program's output so far as text.
    var transcript: String { String(decoding: shown, as: UTF8.self) }
    var rawText: String { String(decoding: raw, as: UTF8.self) }

    /// Reads what is there, waiting up to `wait` for it.
    private func pump(_ wait: Duration) {
        guard !ended else {
            usleep(UInt32(max(1, min(wait.microseconds, 20_000))))
            return
        }
        var p = pollfd(fd: master, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(max(0, wait.milliseconds))) > 0 else { return }
        var chunk = [UInt8](repeating: 0, count: 4096)
        let n = read(master, &chunk, chunk.count)
        if n < 0 && errno == EINTR { return }
        guard n > 0 else {
            ended = true  // EIO: nobody has the slave open any more
            return
        }
        raw += chunk[0..<n]
        if killed { return }
        for b in chunk[0..<n] {
            if echoMatched < echo.count {
                if b == echo[echoMatched] {
                    echoMatched += 1
                    if b == 10 { endLine() }
                    continue
                }
                problems.append(
                    "the terminal echoed something else than \(String(decoding: echo, as: UTF8.self).debugDescription): "
                        + "byte \(b) after \(echoMatched) bytes")
                shown += echo[..<echoMatched]
                echoMatched = echo.count
            }
            shown.append(b)
            if b == 10 { endLine() } else if b != 13 { line.append(b) }
        }
    }

    private func endLine() {
        let text = String(decoding: line, as: UTF8.self)
        if text.count > 80 { wideLines.append(text) }
        line = []
    }

    private func context() -> String {
        let tail = String(decoding: shown.suffix(1200), as: UTF8.self)
        return "\(process.isRunning ? "still running" : "exited with \(process.terminationStatus)"); the terminal shows:\n\(tail)"
    }

    /// Waits until the program has written `prompt` and waits for a line (nothing after it);
    /// returns everything it wrote since the last prompt, the prompt included.
    @discardableResult
    func expectPrompt(_ prompt: String, timeout: Duration = .seconds(10)) throws -> String {
        let want = Array(prompt.utf8)
        let deadline = Clock.monotonic() + timeout
        while true {
            if shown.count - taken >= want.count && Array(shown.suffix(want.count)) == want && echoMatched == echo.count {
                let text = String(decoding: shown[taken...], as: UTF8.self)
                taken = shown.count
                waitingAt = prompt
                return text
            }
            let left = deadline.since(Clock.monotonic())
            if left == .zero || (ended && !process.isRunning) {
                throw DriverFailure(description: "no prompt \(prompt.debugDescription) within \(timeout): \(context())")
            }
            pump(min(left, .milliseconds(200)))
        }
    }

    /// Waits until the program has written `text` (anywhere after the last prompt).
    @discardableResult
    func expectText(_ text: String, timeout: Duration = .seconds(10)) throws -> String {
        let deadline = Clock.monotonic() + timeout
        while true {
            let since = String(decoding: shown[taken...], as: UTF8.self)
            if since.contains(text) { return since }
            let left = deadline.since(Clock.monotonic())
            if left == .zero || (ended && !process.isRunning) {
                throw DriverFailure(description: "no \(text.debugDescription) within \(timeout): \(context())")
            }
            pump(min(left, .milliseconds(200)))
        }
    }

    /// Types `line` and Enter (CR, as a terminal sends it). At a non-secret prompt the
    /// terminal echoes the line; at a secret one it must echo nothing.
    func type(_ line: String, secret: Bool) throws {
        waitingAt = nil
        if !secret {
            echo = Array(line.utf8) + [13, 10]
            echoMatched = 0
        }
        try writeAll(master, Array(line.utf8) + [13])
    }

    /// Waits for the prompt (unless it is the one shown last and not answered yet), then answers it.
    @discardableResult
    func answer(_ e: Exchange) throws -> String {
        let before = waitingAt == e.prompt ? "" : try expectPrompt(e.prompt)
        if e.secret {
            // A secret's prompt is shown with the terminal's echo already off.
            #expect(!echoIsOn, "echo is on at the secret prompt \(e.prompt.debugDescription)")
        }
        try type(e.answer, secret: e.secret)
        return before
    }

    func answer(_ list: [Exchange]) throws {
        for e in list { try answer(e) }
    }

    /// The ECHO flag of the pty (the master reads the slave's termios).
    var echoIsOn: Bool {
        var t = termios()
        guard tcgetattr(master, &t) == 0 else { return false }
        return t.c_lflag & tcflag_t(ECHO) != 0
    }

    /// Writes raw bytes (^C is 0x03).
    func send(_ bytes: [UInt8]) throws { try writeAll(master, bytes) }

    /// The `aibox setup` process itself (setsid may have forked it).
    func findAibox() -> Int32? {
        if let aiboxPID { return aiboxPID }
        let want = [aiboxBinary, "setup", "--root", root]
        for pid in ProcFS.allPIDs() {
            guard let bytes = readSmallFile("/proc/\(pid)/cmdline", limit: 8192) else { continue }
            let args = bytes.split(separator: 0, omittingEmptySubsequences: false).dropLast().map { String(decoding: $0, as: UTF8.self) }
            if args == want {
                aiboxPID = pid
                return pid
            }
        }
        return nil
    }

    /// SIGKILL to `aibox setup` — a power cut as far as the program can tell — then waits.
    func killHard() throws {
        let pid = try #require(findAibox(), "no aibox setup process for \(root)")
        // What the program wrote before is all read: it waits at a prompt.
        pump(.zero)
        killed = true
        kill(pid, SIGKILL)
        try waitForExit()
    }

    /// Waits for the exit (reading the output meanwhile) and returns the exit status.
    @discardableResult
    func waitForExit(timeout: Duration = .seconds(20)) throws -> Int32 {
        let deadline = Clock.monotonic() + timeout
        while process.isRunning {
            let left = deadline.since(Clock.monotonic())
            if left == .zero { throw DriverFailure(description: "aibox setup did not exit within \(timeout): \(context())") }
            pump(min(left, .milliseconds(50)))
        }
        process.waitUntilExit()
        // What is still in the pty's buffer.
        let drain = Clock.monotonic() + .seconds(2)
        while !ended && Clock.monotonic() < drain { pump(.milliseconds(50)) }
        return process.terminationStatus
    }

    /// Checks the output as a dumb 80-column terminal shows it: no line wider than 80, no
    /// escape sequence (ESC) or other control byte but CR, LF and BS; no secret typed ever shown.
    func expectPlainTerminalOutput(sourceLocation: Testing.SourceLocation = #_sourceLocation) {
        #expect(problems.isEmpty, "\(problems)", sourceLocation: sourceLocation)
        #expect(!raw.contains(0x1B), "an escape sequence reached the terminal", sourceLocation: sourceLocation)
        let controls = Set(raw.filter { $0 < 0x20 && $0 != 10 && $0 != 13 && $0 != 8 })
        #expect(controls.isEmpty, "control bytes \(controls.sorted()) reached the terminal", sourceLocation: sourceLocation)
        let wide = wideLines + [String(decoding: line, as: UTF8.self)].filter { $0.count > 80 }
        #expect(wide.isEmpty, "lines wider than 80 columns: \(wide.map { "\($0.count): \($0)" })", sourceLocation: sourceLocation)
        for s in Typed.secrets {
            #expect(!rawText.contains(s), "a secret typed (\(s.prefix(6))…) was shown on the terminal", sourceLocation: sourceLocation)
        }
    }
}

// MARK: The tests

@Suite struct SetupWizardTests {
    /// The answers of `Script`, as box.toml must hold them.
    private func expectScriptedConfig(_ box: TestBox, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws {
        let text = try #require(readTextFile(box.paths.boxConfig), "no box.toml", sourceLocation: sourceLocation)
        let c = try BoxConfig.parse(text: text, path: box.paths.boxConfig).get()
        #expect(c.name == "kitchen-box", sourceLocation: sourceLocation)
        #expect(c.timezone == "Europe/Berlin", sourceLocation: sourceLocation)
        #expect(c.admin.sshKeys == [Typed.sshKey], sourceLocation: sourceLocation)
        #expect(c.admin.passwordHash?.hasPrefix("$") == true, "no password hash", sourceLocation: sourceLocation)
        #expect(
            c.network.wired
                == .static(StaticAddress(address: "192.168.1.50", prefix: 24, gateway: "192.168.1.1", dns: ["192.168.1.1"])),
            sourceLocation: sourceLocation)
        #expect(
            c.network.wifi == WifiConfig(ssid: "Kitchen", passphraseSecret: "wifi.passphrase", country: "DE"),
            sourceLocation: sourceLocation)
        #expect(
            c.providers.first
                == ProviderConfig(
                    name: "openai", kind: .openai, baseURL: "https://api.openai.com/v1", apiKeySecret: "provider.openai.api-key",
                    models: ["gpt-4o-mini", "gpt-4o"]), sourceLocation: sourceLocation)
        #expect(c.routing[.chat]?.map(\.description).joined(separator: " ") == Script.chatDefault, sourceLocation: sourceLocation)
        #expect(c.routing[.code] == [Route(provider: "openai", model: "gpt-4o")], sourceLocation: sourceLocation)
        #expect(c.routing[.reasoning] == [Route(provider: "openai", model: "gpt-4o-mini")], sourceLocation: sourceLocation)
        #expect(c.budget == BudgetConfig(dailyUSD: 2, whenExhausted: .refuse), sourceLocation: sourceLocation)
        #expect(c.channels.telegram == TelegramChannel(owners: ["123456789"]), sourceLocation: sourceLocation)
        #expect(c.updates.window.description == "22:00-02:00", sourceLocation: sourceLocation)
        // The secrets, as typed, where the agents read them.
        let store = SecretStore(directory: box.paths.secrets)
        #expect(store.read("wifi.passphrase")?.reveal() == Typed.wifiPassphrase, sourceLocation: sourceLocation)
        #expect(store.read("provider.openai.api-key")?.reveal() == Typed.openAIKey, sourceLocation: sourceLocation)
        #expect(store.read("channel.telegram.token")?.reveal() == Typed.telegram, sourceLocation: sourceLocation)
        #expect(
            !text.contains(Typed.openAIKey) && !text.contains(Typed.telegram), "box.toml holds a secret", sourceLocation: sourceLocation)
        // Nothing left to resume, nothing staged.
        #expect(try SetupJournal(path: box.paths.database).load().isEmpty, "the setup journal is not empty", sourceLocation: sourceLocation)
        #expect(SecretStore(directory: box.paths.setupStaging).names().isEmpty, sourceLocation: sourceLocation)
    }

    private func journaledSteps(_ box: TestBox) throws -> [Int] {
        try SetupJournal(path: box.paths.database).load().map(\.step.number)
    }

    private func mode(_ path: String) -> mode_t? {
        var st = stat()
        return lstat(path, &st) == 0 ? st.st_mode & 0o7777 : nil
    }

    @Test func happyPathOnA80ColumnDumbTerminal() throws {
        let box = try TestBox(provisioned: false)
        let s = try PtySession(root: box.root)
        let first = try s.answer(Script.steps[0][0])
        #expect(first.contains("AI Box setup — 10 steps."))
        #expect(first.contains("Step 1 of 10: Name"))
        #expect(!first.contains("Resuming"))
        #expect(s.echoIsOn, "echo is off at a plain question")
        for (i, step) in Script.steps.enumerated().dropFirst() {
            let intro = try s.expectPrompt(step[0].prompt)
            #expect(intro.contains("Step \(i + 1) of 10: \(Script.titles[i])"), "\(intro)")
            if Script.titles[i] == "Routing" {
                // What Enter writes, said before it is asked (the claim matches the route written).
                let words = intro.split(whereSeparator: { $0 == " " || $0 == "\r\n" || $0 == "\n" }).joined(separator: " ")
                #expect(words.contains(Script.chatDefaultSaid), "\(intro)")
            }
            try s.type(step[0].answer, secret: step[0].secret)
            try s.answer(Array(step.dropFirst()))
        }
        let summary = try s.answer(Script.confirm)
        #expect(summary.contains("Step 10 of 10: Summary"))
        #expect(summary.contains("kitchen-box") && summary.contains("Europe/Berlin"), "\(summary)")
        try s.expectText("Setup complete")
        #expect(try s.waitForExit() == 0, "\(s.transcript)")
        #expect(s.echoIsOn, "the terminal's echo was left off")
        s.expectPlainTerminalOutput()

        try expectScriptedConfig(box)
        #expect(mode(box.paths.secrets) == 0o700)
        for name in ["wifi.passphrase", "provider.openai.api-key", "channel.telegram.token"] {
            #expect(mode(box.paths.secrets + "/" + name) == 0o600, "\(name)")
        }
        let kinds = try box.events().map(\.kind)
        #expect(kinds.filter { $0 == "setup.step-done" }.count >= 8, "\(kinds)")
        #expect(kinds.contains("setup.provisioned"), "\(kinds)")
    }

    @Test func badAnswersAreRefusedWithTheReasonAndAskedAgain() throws {
        let box = try TestBox(provisioned: false)
        let s = try PtySession(root: box.root)
        /// Types a bad answer: a message with the reason, then the same prompt again.
        func refused(
            _ e: Exchange, _ reason: String, again: String? = nil, sourceLocation: Testing.SourceLocation = #_sourceLocation
        ) throws {
            try s.answer(e)
            let prompt = again ?? e.prompt
            let said = try s.expectPrompt(prompt).replacingOccurrences(of: "\r\n", with: "\n")
            // Only this between the two prompts: the line a secret's Enter did not echo, "  ! "
            // and the reason (on continuation lines indented by 4 when long), the prompt.
            let lines = said.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            let first = lines.firstIndex { $0.hasPrefix("  ! ") }
            try #require(first != nil, "no '  ! ' line: \(said.debugDescription)", sourceLocation: sourceLocation)
            var message = String(lines[first!].dropFirst(4))
            var next = first! + 1
            while next < lines.count - 1 && lines[next].hasPrefix("    ") {
                message += " " + lines[next].dropFirst(4)
                next += 1
            }
            #expect(message.contains(reason), "for \(e.answer.debugDescription): \(message)", sourceLocation: sourceLocation)
            let before = lines[..<first!].filter { !$0.isEmpty }
            #expect(before.isEmpty, "\(said.debugDescription)", sourceLocation: sourceLocation)
            #expect(
                Array(lines[next...]) == [prompt], "not the same question again: \(said.debugDescription)", sourceLocation: sourceLocation)
        }
        let name = "Name of this box [aibox]: "
        try refused(ask(name, "back"), "this is the first question; there is nothing to go back to")
        try refused(ask(name, "kitchen_box"), "is not a host name")
        try refused(ask(name, "kitchen.example.com"), "holds a '.'")
        try s.answer(ask(name, "kitchen-box"))
        try refused(ask("SSH public key for admin login [skip]: ", "ssh-ed25519 AAAA!!!!"), "not valid base64")
        try s.answer(ask("SSH public key for admin login [skip]: ", Typed.sshKey))
        try s.answer(ask("Another SSH public key [done]: ", ""))
        try s.answer(askSecret("Admin password (not shown) [skip]: ", Typed.password))
        // A different confirmation asks for the password again, from its first question.
        try refused(
            askSecret("The same password again: ", Typed.password + "!"), "the two passwords differ",
            again: "Admin password (not shown) [skip]: ")
        try s.type(Typed.password, secret: true)
        try s.answer(askSecret("The same password again: ", Typed.password))
        let zone = "Time zone, Area/City such as Europe/Berlin [UTC]: "
        try refused(ask(zone, "Mars/Olympus_Mons"), "\"Mars\" is not an area of the tz database")
        try refused(ask(zone, "berlin"), "is not a time zone name")
        try s.answer(ask(zone, "Europe/Berlin"))
        try refused(ask("Wired network: dhcp or static [dhcp]: ", "wifi"), "answer dhcp or static")
        try s.answer(Script.steps[3])
        let add = Script.steps[4][0]
        try refused(ask(add.prompt, "maybe"), "yes")
        try s.answer(add)
        try refused(ask("Kind: openai, anthropic, ollama or llamacpp [openai]: ", "gemini"), "answer openai")
        try s.answer(Array(Script.steps[4][1...3]))
        try refused(askSecret("API key (not shown): ", ""), "this API needs a key")
        try s.answer(Array(Script.steps[4][4...]))
        try refused(ask(Script.steps[5][0].prompt, "openai/gpt-5-nonexistent"), "is not a model of openai")
        try refused(ask(Script.steps[5][0].prompt, "openai/gpt-4o openai/gpt-4o"), "route 2 is openai/gpt-4o again (route 1)")
        try s.answer(Script.steps[5])
        let budget = Script.steps[6]
        try refused(ask(budget[0].prompt, "two dollars"), "\"two dollars\" is not an amount; give US dollars such as 2 or 2.50")
        try refused(ask(budget[0].prompt, "-5"), "is not an amount")
        try s.answer(Array(budget[0...1]))
        try refused(ask(budget[2].prompt, "cloud"), "answer local or refuse")
        try s.answer(budget[2])
        let channel = "Add a chat channel: telegram, slack, discord, whatsapp or no [no]: "
        try refused(ask(channel, "irc"), "answer telegram, slack, discord, whatsapp or no")
        try s.answer(ask(channel, "telegram"))
        let token = "Telegram bot token from @BotFather (not shown): "
        try refused(askSecret(token, "123456789:too-short-secret-part"), "has 21 characters, not 35")
        try refused(askSecret(token, "no-colon-here"), "it has no single ':'")
        try s.answer(askSecret(token, Typed.telegram))
        try s.answer(Array(Script.steps[7].dropFirst(2)))
        try s.answer(Script.steps[8])
        try refused(ask("Write this configuration? [yes]: ", "maybe"), "answer yes to write this configuration")
        try s.answer(Script.confirm)
        #expect(try s.waitForExit() == 0, "\(s.transcript)")
        #expect(!s.rawText.contains("too-short-secret-part"), "a refused secret was shown")
        s.expectPlainTerminalOutput()
        try expectScriptedConfig(box)
    }

    @Test func backReturnsToThePreviousQuestionWithItsAnswerAsDefault() throws {
        let box = try TestBox(provisioned: false)
        let s = try PtySession(root: box.root)
        try s.answer(ask("Name of this box [aibox]: ", "office-box"))
        // Back from the first question of step 2 into step 1: the name given is the default.
        try s.answer(ask("SSH public key for admin login [skip]: ", "back"))
        let again = try s.answer(ask("Name of this box [office-box]: ", "kitchen-box"))
        #expect(again.contains("Step 1 of 10: Name"), "step 1's title is shown again: \(again.debugDescription)")
        try s.answer(Script.steps[1])
        try s.answer(Script.steps[2])
        // Back inside a step, twice.
        try s.answer(Array(Script.steps[3][0...1]))
        try s.answer(ask("Prefix length [24]: ", "back"))
        try s.answer(ask("IP address of this box, such as 192.168.1.50 [192.168.1.50]: ", "back"))
        try s.answer(ask("Wired network: dhcp or static [static]: ", ""))
        try s.answer(ask("IP address of this box, such as 192.168.1.50 [192.168.1.50]: ", ""))
        try s.answer(Array(Script.steps[3][2...]))
        // Back across a step boundary, onto a secret: its default is shown masked and kept by Enter.
        try s.answer(ask(Script.steps[4][0].prompt, "back"))
        try s.answer(ask("Wi-Fi country, two letters such as DE or US [DE]: ", "back"))
        try s.answer(askSecret("Wi-Fi passphrase (not shown) [••••]: ", ""))
        try s.answer(ask("Wi-Fi country, two letters such as DE or US [DE]: ", ""))
        for step in Script.steps[4...] { try s.answer(step) }
        try s.answer(Script.confirm)
        #expect(try s.waitForExit() == 0, "\(s.transcript)")
        s.expectPlainTerminalOutput()
        try expectScriptedConfig(box)
    }

    /// A kill at the prompt of step `step + 1`, once steps 1…`step` are done; then setup again.
    @Test(arguments: 1...9)
    func sigkillAfterAStepResumesAtTheNextWithTheEarlierAnswers(step: Int) throws {
        let box = try TestBox(provisioned: false)
        let start = Script.steps[safe: step]?.first ?? Script.confirm
        do {
            let s = try PtySession(root: box.root)
            for n in 0..<step { try s.answer(Script.steps[n]) }
            try s.expectPrompt(start.prompt)
            try s.killHard()
            s.expectPlainTerminalOutput()
        }
        #expect(!fileExists(box.paths.boxConfig), "box.toml exists after a kill before the summary was confirmed")
        #expect(try journaledSteps(box) == Array(1...step))

        let s = try PtySession(root: box.root)
        let greeting = try s.expectPrompt(start.prompt)
        #expect(greeting.contains(Script.resumeLine(step + 1)), "\(greeting.debugDescription)")
        // The earlier answers are the defaults: back into step `step`, question by question…
        let tail = Script.remembered[step - 1]
        try s.type("back", secret: start.secret)
        for j in stride(from: tail.count - 1, to: 0, by: -1) {
            try s.expectPrompt(tail[j].prompt)
            try s.type("back", secret: tail[j].secret)
        }
        // …and Enter takes each again.
        try s.answer(tail)
        try s.answer(start)
        if step < Script.steps.count {
            try s.answer(Array(Script.steps[step].dropFirst()))
            for n in (step + 1)..<Script.steps.count { try s.answer(Script.steps[n]) }
            try s.answer(Script.confirm)
        }
        #expect(try s.waitForExit() == 0, "\(s.transcript)")
        s.expectPlainTerminalOutput()
        try expectScriptedConfig(box)
    }

    /// A kill after some but not all answers of a step (a secret among them): setup resumes
    /// at that step's first question.
    @Test func sigkillInTheMiddleOfAStepResumesAtItsStart() throws {
        let box = try TestBox(provisioned: false)
        do {
            let s = try PtySession(root: box.root)
            for n in 0..<4 { try s.answer(Script.steps[n]) }
            try s.answer(Array(Script.steps[4][0...4]))  // up to the API key
            try s.expectPrompt(Script.steps[4][5].prompt)
            try s.killHard()
            s.expectPlainTerminalOutput()
        }
        #expect(!fileExists(box.paths.boxConfig))
        #expect(try journaledSteps(box) == [1, 2, 3, 4])
        let s = try PtySession(root: box.root)
        let greeting = try s.expectPrompt(Script.steps[4][0].prompt)
        #expect(greeting.contains(Script.resumeLine(5)), "\(greeting.debugDescription)")
        try s.type(Script.steps[4][0].answer, secret: false)
        try s.answer(Array(Script.steps[4].dropFirst()))
        for n in 5..<Script.steps.count { try s.answer(Script.steps[n]) }
        try s.answer(Script.confirm)
        #expect(try s.waitForExit() == 0, "\(s.transcript)")
        s.expectPlainTerminalOutput()
        try expectScriptedConfig(box)
    }

    /// Two consoles (a screen and a serial line, one aibox-setup@ unit each): the second says
    /// the wizard runs on the other; Enter there takes it over, the first says so and ends
    /// (exit 0: its unit starts it again, waiting in turn), and the wizard resumes on the
    /// second at the first unfinished step.
    @Test func aSecondConsoleTakesTheWizardOverAndItResumesThere() throws {
        let box = try TestBox(provisioned: false)
        let first = try PtySession(root: box.root)
        for n in 0..<2 { try first.answer(Script.steps[n]) }
        try first.expectPrompt(Script.steps[2][0].prompt)
        let second = try PtySession(root: box.root)
        try second.expectText("Setup is running on another console. Press Enter here to take it over.")
        #expect(first.process.isRunning, "a second console stopped the wizard before anyone pressed Enter there")
        try second.type("", secret: false)
        try first.expectText("Setup was taken over on another console; finished steps are kept there.")
        #expect(try first.waitForExit() == 0, "\(first.transcript)")
        #expect(first.echoIsOn, "the first console's echo was left off")
        let greeting = try second.expectPrompt(Script.steps[2][0].prompt)
        #expect(greeting.contains("Taken over: setup continues here."), "\(greeting.debugDescription)")
        #expect(greeting.contains(Script.resumeLine(3)), "\(greeting.debugDescription)")
        try second.type(Script.steps[2][0].answer, secret: false)
        for n in 3..<Script.steps.count { try second.answer(Script.steps[n]) }
        try second.answer(Script.confirm)
        #expect(try second.waitForExit() == 0, "\(second.transcript)")
        try expectScriptedConfig(box)
    }

    /// The console that waits ends by itself (exit 0, so its unit hands the line to the getty)
    /// once the box is set up on the other one.
    @Test func aWaitingConsoleEndsWhenTheOtherOneSetsTheBoxUp() throws {
        let box = try TestBox(provisioned: false)
        let first = try PtySession(root: box.root)
        for n in 0..<Script.steps.count - 1 { try first.answer(Script.steps[n]) }
        try first.expectPrompt(Script.steps.last![0].prompt)
        let second = try PtySession(root: box.root)
        try second.expectText("Setup is running on another console. Press Enter here to take it over.")
        try first.answer(Script.steps.last!)
        try first.answer(Script.confirm)
        #expect(try first.waitForExit() == 0, "\(first.transcript)")
        try second.expectText("The box has been set up on the other console.")
        #expect(try second.waitForExit() == 0, "\(second.transcript)")
        try expectScriptedConfig(box)
    }

    /// ^C keeps what a power cut keeps: the finished steps and their secrets, no box.toml;
    /// the echo is restored, exit 130; the next run resumes at the first unfinished step.
    @Test func ctrlCKeepsTheFinishedSteps() throws {
        let box = try TestBox(provisioned: false)
        do {  // Steps 1 to 4 (a secret among them), then ^C at a secret prompt of step 5.
            let s = try PtySession(root: box.root)
            for n in 0..<4 { try s.answer(Script.steps[n]) }
            try s.answer(Array(Script.steps[4][0...3]))
            try s.expectPrompt("API key (not shown): ")
            #expect(!s.echoIsOn, "echo is on at the API key prompt")
            try s.send([0x03])
            try s.expectText("Setup interrupted; the box is not set up yet. Finished steps are kept:")
            #expect(try s.waitForExit() == 130, "\(s.transcript)")
            #expect(s.echoIsOn, "the terminal's echo was left off after ^C")
            s.expectPlainTerminalOutput()
        }
        #expect(try journaledSteps(box) == [1, 2, 3, 4])
        #expect(SecretStore(directory: box.paths.setupStaging).read("wifi.passphrase")?.reveal() == Typed.wifiPassphrase)
        #expect(mode(box.paths.setupStaging) == 0o700)
        #expect(mode(box.paths.setupStaging + "/wifi.passphrase") == 0o600)
        #expect(!fileExists(box.paths.boxConfig), "box.toml was written before the summary was confirmed")
        // The next run: step 5, with the answers of steps 1 to 4 kept (the passphrase among them).
        let s = try PtySession(root: box.root)
        let greeting = try s.expectPrompt(Script.steps[4][0].prompt)
        #expect(greeting.contains(Script.resumeLine(5)), "\(greeting.debugDescription)")
        try s.type(Script.steps[4][0].answer, secret: false)
        try s.answer(Array(Script.steps[4].dropFirst()))
        for n in 5..<Script.steps.count { try s.answer(Script.steps[n]) }
        try s.answer(Script.confirm)
        #expect(try s.waitForExit() == 0, "\(s.transcript)")
        s.expectPlainTerminalOutput()
        try expectScriptedConfig(box)
    }

    /// ^C after going back into a finished step and typing a new secret there: that step keeps
    /// the answers it was journaled with (the secret too), the later steps stay journaled.
    @Test func ctrlCInAStepGoneBackIntoKeepsItsJournaledAnswers() throws {
        let box = try TestBox(provisioned: false)
        do {
            let s = try PtySession(root: box.root)
            for n in 0..<5 { try s.answer(Script.steps[n]) }
            try s.answer(Script.steps[5])
            try s.expectPrompt(Script.steps[6][0].prompt)
            try s.send([0x03])
            #expect(try s.waitForExit() == 130, "\(s.transcript)")
        }
        #expect(try journaledSteps(box) == [1, 2, 3, 4, 5, 6])
        do {
            let s = try PtySession(root: box.root)
            let greeting = try s.expectPrompt(Script.steps[6][0].prompt)
            #expect(greeting.contains(Script.resumeLine(7)), "\(greeting.debugDescription)")
            try s.type("back", secret: false)
            try s.answer(ask("Models for reasoning [openai/gpt-4o-mini]: ", "back"))
            try s.answer(ask("Models for code [openai/gpt-4o]: ", "back"))
            try s.answer(ask("Models for chat [\(Script.chatDefault)]: ", "back"))
            try s.answer(ask("Add another LLM provider? [no]: ", "back"))
            try s.answer(ask("Models, separated by spaces [gpt-4o-mini gpt-4o]: ", "back"))
            try s.answer(askSecret("API key (not shown) [••••]: ", Typed.otherOpenAIKey))
            try s.expectPrompt("Models, separated by spaces [gpt-4o-mini gpt-4o]: ")
            try s.send([0x03])
            #expect(try s.waitForExit() == 130, "\(s.transcript)")
            s.expectPlainTerminalOutput()
        }
        #expect(try journaledSteps(box) == [1, 2, 3, 4, 5, 6])
        #expect(SecretStore(directory: box.paths.setupStaging).read("provider.openai.api-key")?.reveal() == Typed.openAIKey)
        let s = try PtySession(root: box.root)
        let greeting = try s.expectPrompt(Script.steps[6][0].prompt)
        #expect(greeting.contains(Script.resumeLine(7)), "\(greeting.debugDescription)")
        try s.type(Script.steps[6][0].answer, secret: false)
        try s.answer(Array(Script.steps[6].dropFirst()))
        for n in 7..<Script.steps.count { try s.answer(Script.steps[n]) }
        try s.answer(Script.confirm)
        #expect(try s.waitForExit() == 0, "\(s.transcript)")
        try expectScriptedConfig(box)
    }

    /// A step named at the summary is asked again, alone; then the summary is back. A later
    /// answer the change made wrong is asked again with the reason; the others are kept.
    @Test func aStepChangedFromTheSummaryIsAskedAloneThenTheSummaryAgain() throws {
        let box = try TestBox(provisioned: false)
        let s = try PtySession(root: box.root)
        for step in Script.steps { try s.answer(step) }
        try s.answer(ask(Script.confirm.prompt, "timezone"))
        let zone = try s.answer(ask("Time zone, Area/City such as Europe/Berlin [Europe/Berlin]: ", "Europe/Paris"))
        #expect(zone.contains("Step 3 of 10: Time zone"), "\(zone.debugDescription)")
        let summary = try s.expectPrompt(Script.confirm.prompt)
        #expect(summary.contains("Step 10 of 10: Summary") && summary.contains("Europe/Paris"), "\(summary)")
        // The provider renamed: the routes naming it no longer fit.
        try s.type("providers", secret: false)
        try s.answer(ask("Add an LLM provider (a cloud API or a server on your network)? [yes]: ", ""))
        try s.answer(ask("Kind: openai, anthropic, ollama or llamacpp [openai]: ", ""))
        try s.answer(ask("Name for this provider [openai]: ", "cloud"))
        try s.answer(ask("Base URL [https://api.openai.com/v1]: ", ""))
        try s.answer(askSecret("API key (not shown): ", Typed.openAIKey))
        try s.answer(ask("Models, separated by spaces [gpt-4o-mini gpt-4o]: ", ""))
        try s.answer(ask("Add another LLM provider? [no]: ", ""))
        // Chat's chain ended at openai/gpt-4o-mini: asked again, its default now ending at cloud.
        let routes: [Exchange] = [
            ask("Models for chat [\(Script.chatDefault.replacingOccurrences(of: "openai/", with: "cloud/"))]: ", ""),
            ask("Models for code [as chat]: ", "cloud/gpt-4o"), ask("Models for reasoning [as chat]: ", "cloud/gpt-4o-mini"),
        ]
        for r in routes {
            let said = try s.answer(r).split(whereSeparator: { $0 == " " || $0 == "\r\n" || $0 == "\n" }).joined(separator: " ")
            #expect(said.contains("no longer fits after the change to LLM providers"), "\(said)")
            #expect(said.contains("\"openai\" is not a provider"), "\(said)")
        }
        let again = try s.answer(Script.confirm)
        #expect(
            !again.contains("chat channel") && !again.contains("Update channel") && !again.contains("Daily cap"),
            "later steps were asked again: \(again)")
        #expect(again.contains("cloud"), "\(again)")
        #expect(try s.waitForExit() == 0, "\(s.transcript)")
        s.expectPlainTerminalOutput()
        let c = try BoxConfig.parse(text: try #require(readTextFile(box.paths.boxConfig)), path: box.paths.boxConfig).get()
        #expect(c.timezone == "Europe/Paris")
        #expect(c.providers.map(\.name).filter { $0 != LocalModel.providerName } == ["cloud"])
        #expect(c.routing[.code] == [Route(provider: "cloud", model: "gpt-4o")])
        #expect(c.routing[.reasoning] == [Route(provider: "cloud", model: "gpt-4o-mini")])
        #expect(c.routing[.chat]?.last == Route(provider: "cloud", model: "gpt-4o-mini"))
        #expect(c.budget == BudgetConfig(dailyUSD: 2, whenExhausted: .refuse), "the budget's answers still fit and were kept")
        #expect(c.channels.telegram != nil && c.updates.window.description == "22:00-02:00")
        #expect(SecretStore(directory: box.paths.secrets).read("provider.cloud.api-key")?.reveal() == Typed.openAIKey)
    }

    /// ^D on an empty line is the end of input: the finished steps are kept, exit 1.
    @Test func endOfInputKeepsTheFinishedSteps() throws {
        let box = try TestBox(provisioned: false)
        let s = try PtySession(root: box.root)
        try s.answer(Script.steps[0])
        try s.answer(Array(Script.steps[1][0...1]))
        try s.expectPrompt(Script.steps[1][2].prompt)
        try s.send([0x04])
        try s.expectText("Setup stopped (end of input).")
        #expect(try s.waitForExit() == 1, "\(s.transcript)")
        #expect(s.echoIsOn, "the terminal's echo was left off")
        s.expectPlainTerminalOutput()
        #expect(try journaledSteps(box) == [1])
        #expect(!fileExists(box.paths.boxConfig))
    }

    /// Another program feeding every answer on stdin, without a terminal: secrets are plain lines.
    @Test(arguments: ["\n", "\r\n"])
    func drivenThroughAPipe(lineEnd: String) throws {
        let box = try TestBox(provisioned: false)
        let lines = Script.steps.flatMap { $0 }.map(\.answer) + [Script.confirm.answer]
        let p = Process()
        p.executableURL = URL(fileURLWithPath: aiboxBinary)
        p.arguments = ["setup", "--root", box.root]
        var env = ProcessInfo.processInfo.environment
        env["AIBOX_ROOT"] = box.root
        p.environment = env
        let input = Pipe(), output = Pipe(), errors = Pipe()
        p.standardInput = input
        p.standardOutput = output
        p.standardError = errors
        try p.run()
        // Less than a pipe's buffer: written at once, then end of input.
        try input.fileHandleForWriting.write(contentsOf: Data(lines.map { $0 + lineEnd }.joined().utf8))
        try input.fileHandleForWriting.close()
        let out = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let err = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "stdout:\n\(out)\nstderr:\n\(err)")
        for e in Script.steps.flatMap({ $0 }) { #expect(out.contains(e.prompt), "\(e.prompt) was not asked") }
        #expect(!out.contains("  ! "), "an answer was refused: \(out)")
        #expect(out.contains("Setup complete"))
        #expect(!out.utf8.contains(0x1B))
        for secret in Typed.secrets { #expect(!out.contains(secret) && !err.contains(secret)) }
        try expectScriptedConfig(box)
    }
}

extension Array {
    fileprivate subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}

import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

// Setup from seeds (issue 4): `aibox setup --seed FILE [--force]`, setup mode in the daemon,
// `aibox factory-reset`, and where secrets go. Every check runs the built `aibox` as a real
// process against a temporary --root.

// MARK: - Support

/// Helpers of this file, in a namespace of their own (other files of the target have theirs).
enum SetupSeedSupport {
    /// The package's top directory, from this file's path.
    static let packageDirectory: String = {
        var dir = parentDirectory(#filePath)  // Tests/AIBoxIntegrationTests
        dir = parentDirectory(dir)  // Tests
        return parentDirectory(dir)
    }()

    static let fullSeed = packageDirectory + "/provisioning/examples/full.toml"
    static let minimalSeed = packageDirectory + "/provisioning/examples/minimal.toml"

    /// A valid admin key line (the placeholder of the examples).
    static let sshKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGh owner@example"

    /// The secrets of full.toml, as the files under var/lib/aibox/secrets must hold them.
    static let fullSecrets: [String: String] = [
        "wifi.passphrase": "correct horse battery staple",
        "provider.openai.api-key": "sk-proj-FAKE0example0key0000000000000000",
        "provider.anthropic.api-key": "sk-ant-api03-FAKE0example0key00000000000000",
        "channel.telegram.token": "123456789:AAFakeTokenForExamplesOnly_00000000",
        "channel.slack.bot-token": "xoxb-0000000000-0000000000000-FakeTokenForExamples00",
        "channel.slack.app-token": "xapp-1-A0000000000-0000000000000-fakeexampletoken0000000000000000",
        "channel.discord.token": "MTAwMDAwMDAwMDAwMDAwMDAwMA.GFake0.FakeTokenForExamplesOnly_000000",
        "channel.whatsapp.access-token": "EAAFakeWhatsAppAccessTokenForExamplesOnly000000000",
    ]

    /// A fresh temporary directory outside any box root.
    static func temporaryDirectory() throws -> String {
        var template = Array("/tmp/aibox-seed-XXXXXX".utf8CString)
        guard let dir = mkdtemp(&template) else { throw SystemError("mkdtemp", errno: errno) }
        return String(cString: dir)
    }

    static func remove(_ path: String) { _ = try? run("/bin/rm", ["-rf", path]) }

    /// Runs a program with `input` on stdin (nil: /dev/null), its output going to files (no pipe
    /// to fill); killed after `timeout`, which fails the test.
    static func execute(
        _ path: String, _ args: [String], input: String? = nil, timeout: Duration = .seconds(60)
    ) throws -> CommandResult {
        let dir = try temporaryDirectory()
        defer { remove(dir) }
        _ = creat(dir + "/out", 0o600)
        _ = creat(dir + "/err", 0o600)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        p.standardOutput = FileHandle(forWritingAtPath: dir + "/out")
        p.standardError = FileHandle(forWritingAtPath: dir + "/err")
        let stdin = Pipe()
        p.standardInput = input == nil ? FileHandle(forReadingAtPath: "/dev/null") : stdin
        try p.run()
        if let input {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try? stdin.fileHandleForWriting.close()
        }
        let finished = waitUntil(timeout) { !p.isRunning }
        if !finished { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        #expect(finished, "\(path) \(args) did not finish within \(timeout)")
        return CommandResult(
            code: finished ? p.terminationStatus : -1, stdout: readTextFile(dir + "/out") ?? "", stderr: readTextFile(dir + "/err") ?? "")
    }

    /// `aibox ARGS --root ROOT` with stdin.
    static func aibox(_ root: String, _ args: [String], input: String? = nil) throws -> CommandResult {
        try execute(aiboxBinary, args + ["--root", root], input: input)
    }

    /// Every path under `root` (the root itself as "."), with its mode, size (not for
    /// directories) and SHA-256 (regular files) or target (symlinks), computed by Python:
    /// independently of the code under test. The database's -wal/-shm files and the lock
    /// files in run/aibox (setup.lock, update.lock: an flock needs a file) are left out.
    static func snapshot(_ root: String) throws -> [String: String] {
        let script = """
            import hashlib, json, os, stat, sys
            root = sys.argv[1]
            skip = {"run/aibox/setup.lock", "run/aibox/update.lock"}
            out = {}
            def add(p):
                rel = os.path.relpath(p, root)
                if rel in skip or rel.endswith("aibox.db-wal") or rel.endswith("aibox.db-shm"):
                    return
                st = os.lstat(p)
                if stat.S_ISLNK(st.st_mode):
                    what = "link " + os.readlink(p)
                elif stat.S_ISREG(st.st_mode):
                    with open(p, "rb") as f:
                        what = "%d %s" % (st.st_size, hashlib.sha256(f.read()).hexdigest())
                else:
                    what = ""
                out[rel] = "%o %s" % (st.st_mode, what)
            add(root)
            for d, dirs, files in os.walk(root):
                for n in dirs + files:
                    add(os.path.join(d, n))
            print(json.dumps(out))
            """
        let r = try run("/usr/bin/python3", ["-c", script, root])
        try #require(r.code == 0, "the snapshot failed: \(r.stderr)")
        return try JSONDecoder().decode([String: String].self, from: Data(r.stdout.utf8))
    }

    /// What differs between two snapshots, one line per path; empty when nothing does.
    static func difference(_ a: [String: String], _ b: [String: String]) -> String {
        var lines: [String] = []
        for k in Set(a.keys).union(b.keys).sorted() where a[k] != b[k] {
            lines.append("\(k): \(a[k] ?? "(absent)") → \(b[k] ?? "(absent)")")
        }
        return lines.joined(separator: "\n")
    }

    /// A box as setup mode leaves it before anyone set it up: worker directories, and the
    /// run and state directories the daemon makes at its start.
    static func unprovisionedBox(_ workers: String = "") throws -> TestBox {
        let box = try TestBox(workers, provisioned: false)
        try makeDirectories(box.paths.runDirectory, mode: 0o755)
        try makeDirectories(box.paths.stateDirectory, mode: 0o755)
        return box
    }

    /// A box provisioned from full.toml by the CLI.
    static func provisionedBox(_ workers: String = "") throws -> TestBox {
        let box = try unprovisionedBox(workers)
        let r = try box.aibox(["setup", "--seed", fullSeed])
        try #require(r.code == 0, "provisioning from full.toml failed: \(r.stderr)")
        try #require(fileExists(box.paths.boxConfig))
        return box
    }

    static func mode(_ path: String) -> mode_t? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        return st.st_mode & 0o7777
    }

    static func isSymlink(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFLNK
    }

    static func linkTarget(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buf, buf.count - 1)
        guard n >= 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The WPA2 PSK as wpa_passphrase computes it, by Python's hashlib.
    static func pythonPSK(passphrase: String, ssid: String) throws -> String {
        let r = try run(
            "/usr/bin/python3",
            [
                "-c", "import hashlib,sys; print(hashlib.pbkdf2_hmac('sha1', sys.argv[1].encode(), sys.argv[2].encode(), 4096, 32).hex())",
                passphrase, ssid,
            ])
        try #require(r.code == 0, "python3 failed: \(r.stderr)")
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Every regular file under `root`, relative to it (binary-safe search material).
    static func regularFiles(under root: String) -> [String] {
        var out: [String] = []
        func walk(_ rel: String) {
            let full = rel.isEmpty ? root : root + "/" + rel
            for name in listDirectory(full) {
                let childRel = rel.isEmpty ? name : rel + "/" + name
                var st = stat()
                guard lstat(root + "/" + childRel, &st) == 0 else { continue }
                switch st.st_mode & S_IFMT {
                case S_IFDIR: walk(childRel)
                case S_IFREG: out.append(childRel)
                default: break
                }
            }
        }
        walk("")
        return out.sorted()
    }

    /// The files under `root` (relative paths) whose bytes contain `needle`.
    static func filesContaining(_ needle: String, under root: String) -> [String] {
        let n = Data(needle.utf8)
        return regularFiles(under: root).filter { rel in
            guard let data = FileManager.default.contents(atPath: root + "/" + rel) else { return false }
            return data.range(of: n) != nil
        }
    }

    /// The processes whose parent is `pid`.
    static func children(of pid: Int32) -> [ProcessStat] {
        ProcFS.allPIDs().compactMap(ProcFS.info).filter { $0.ppid == pid && $0.state != "Z" }
    }

    /// Live processes running the example worker binary with this box's root in their environment.
    static func workerProcesses(of box: TestBox) -> [ProcessStat] {
        let marker = Array("AIBOX_ROOT=\(box.root)".utf8)
        return ProcFS.allPIDs().compactMap { pid -> ProcessStat? in
            guard let info = ProcFS.info(pid), info.state != "Z", linkTarget("/proc/\(pid)/exe") == workerBinary,
                let env = readSmallFile("/proc/\(pid)/environ")
            else { return nil }
            return env.split(separator: 0).contains { Array($0) == marker } ? info : nil
        }
    }

    static func status(_ box: TestBox) throws -> StatusView? {
        try? JSONDecoder().decode(StatusView.self, from: Data(box.aibox(["status", "--json"]).stdout.utf8))
    }
}

/// One seed `aibox setup --seed` must refuse.
struct BadSeed: Sendable, CustomTestStringConvertible {
    enum Form: Sendable {
        case text(String)
        case bytes([UInt8])
        /// More than 1 MiB whose first bytes are not UTF-8: a parser would say so.
        case huge
        /// A symlink to a copy of full.toml (valid).
        case symlinkToValid
        case directory
        case missing
        case fifo
    }

    var label: String
    var form: Form
    /// The key path of the problem (`providers.openai.base-url`), nil for a file problem.
    var key: String?
    /// The line the message must name, when the problem has one.
    var line: Int?
    /// Text the message must hold: what is wrong (and what would be right).
    var says: [String]
    /// Text that must never be printed (secret values).
    var hidden: [String] = []

    var testDescription: String { label }

    /// Puts the seed into `dir`; its path.
    func materialize(in dir: String) throws -> String {
        let path = dir + "/seed.toml"
        switch form {
        case .text(let t): try writeFileAtomically(path, Array(t.utf8))
        case .bytes(let b): try writeFileAtomically(path, b)
        case .huge:
            var b: [UInt8] = [0xFF, 0xFE, 0x00, 0x5B, 0x5B]
            b += Array(repeating: UInt8(ascii: "#"), count: Seed.maxBytes + 1 - b.count)
            try writeFileAtomically(path, b)
        case .symlinkToValid:
            let target = dir + "/valid.toml"
            try writeFileAtomically(target, try #require(readSmallFile(SetupSeedSupport.fullSeed, limit: 1 << 20)))
            guard symlink(target, path) == 0 else { throw SystemError("symlink", errno: errno) }
        case .directory:
            guard mkdir(path, 0o755) == 0 else { throw SystemError("mkdir", errno: errno) }
            try writeFileAtomically(path + "/aibox-seed.toml", try #require(readSmallFile(SetupSeedSupport.fullSeed, limit: 1 << 20)))
        case .missing:
            break
        case .fifo:
            guard mkfifo(path, 0o644) == 0 else { throw SystemError("mkfifo", errno: errno) }
        }
        return path
    }

    static let key = SetupSeedSupport.sshKey
    /// A valid seed's first lines, for cases that add one problem below.
    static let head = "name = \"seed-box\"\n\n[admin]\nssh-keys = [\"\(key)\"]\n"

    static let all: [BadSeed] = [
        // Wrong types.
        BadSeed(
            label: "name is an integer", form: .text("name = 42\n\n[admin]\nssh-keys = [\"\(key)\"]\n"), key: "name", line: 1,
            says: ["must be a string in quotes, not an integer"]),
        BadSeed(
            label: "prefix is a string",
            form: .text(head + "\n[network.wired]\nmode = \"static\"\naddress = \"192.168.1.50\"\nprefix = \"24\"\n"),
            key: "network.wired.prefix", line: 9, says: ["must be a whole number (without quotes), not a string"]),
        BadSeed(
            label: "updates.automatic is a string", form: .text(head + "\n[updates]\nautomatic = \"yes\"\n"), key: "updates.automatic",
            line: 7, says: ["must be true or false (without quotes), not a string"]),
        BadSeed(
            label: "ssh-keys is a string", form: .text("name = \"seed-box\"\n[admin]\nssh-keys = \"\(key)\"\n"), key: "admin.ssh-keys",
            line: 3, says: ["must be an array of strings"]),
        // Unknown keys, with the near miss.
        BadSeed(
            label: "unknown key base_url",
            form: .text(
                head + "\n[providers.home]\nkind = \"openai\"\nbase_url = \"http://192.168.1.20:8000/v1\"\nmodels = [\"m1\"]\n"),
            key: "providers.home.base_url", line: 8, says: ["unknown key (did you mean \"base-url\"?)", "allowed keys here are"]),
        BadSeed(
            label: "unknown top-level key timezon", form: .text("timezon = \"UTC\"\n" + head), key: "timezon", line: 1,
            says: ["unknown key (did you mean \"timezone\"?)"]),
        BadSeed(
            label: "a *-secret key in a seed",
            form: .text(
                head + "\n[providers.openai]\nkind = \"openai\"\napi-key-secret = \"provider.openai.api-key\"\nmodels = [\"gpt-4o\"]\n"),
            key: "providers.openai.api-key-secret", line: 8, says: ["a seed holds the secret itself: write api-key = \"…\""]),
        BadSeed(
            label: "a clear-text password", form: .text("name = \"seed-box\"\n[admin]\npassword = \"Hunter2-planted-pw\"\n"),
            key: "admin.password", line: 3, says: ["never holds the password itself", "password-hash"], hidden: ["Hunter2-planted-pw"]),
        // Missing required keys.
        BadSeed(
            label: "name missing", form: .text("[admin]\nssh-keys = [\"\(key)\"]\n"), key: "name", line: nil,
            says: ["missing; every box needs a name"]),
        BadSeed(
            label: "admin missing", form: .text("name = \"seed-box\"\n"), key: "admin", line: nil,
            says: ["missing; the box needs admin access"]),
        BadSeed(
            label: "models missing", form: .text(head + "\n[providers.local]\nkind = \"ollama\"\n"), key: "providers.local.models", line: 6,
            says: ["missing; name the models to use"]),
        BadSeed(
            label: "Wi-Fi country missing", form: .text(head + "\n[network.wifi]\nssid = \"Home\"\n"), key: "network.wifi.country",
            line: 6, says: ["missing; Wi-Fi needs the country"]),
        // URLs.
        BadSeed(
            label: "base-url with ftp scheme",
            form: .text(head + "\n[providers.home]\nkind = \"openai\"\nbase-url = \"ftp://192.168.1.20/v1\"\nmodels = [\"m1\"]\n"),
            key: "providers.home.base-url", line: 8, says: ["the URL's scheme is \"ftp\"; only http and https are allowed"]),
        BadSeed(
            label: "base-url with a password in it",
            form: .text(
                head
                    + "\n[providers.home]\nkind = \"openai\"\nbase-url = \"https://me:PlantedUrlPw9@llm.example.com/v1\"\nmodels = [\"m1\"]\n"
            ),
            key: "providers.home.base-url", line: 8, says: ["user name or password"], hidden: ["PlantedUrlPw9"]),
        BadSeed(
            label: "feed-url over http", form: .text(head + "\n[updates]\nfeed-url = \"http://updates.example.com/feed\"\n"),
            key: "updates.feed-url", line: 7, says: ["update feeds need https"]),
        // Tokens of the wrong shape; the value is never repeated.
        BadSeed(
            label: "Telegram token cut short", form: .text(head + "\n[channels.telegram]\ntoken = \"123456789:AAPlantedShortTok\"\n"),
            key: "channels.telegram.token", line: 7,
            says: ["this is not a Telegram bot token: the part after ':' has 17 characters, not 35"],
            hidden: ["AAPlantedShortTok"]),
        BadSeed(
            label: "Slack app token given as bot token",
            form: .text(
                head
                    + "\n[channels.slack]\nbot-token = \"xapp-1-PlantedSlackTokenValue0000000000\"\n"
                    + "app-token = \"xapp-1-A0000000000-0000000000000-fakeexampletoken0000000000000000\"\n"),
            key: "channels.slack.bot-token", line: 7, says: ["this is an app-level token (xapp-…); the bot token starts with xoxb-"],
            hidden: ["PlantedSlackTokenValue"]),
        BadSeed(
            label: "Discord token with two parts",
            form: .text(head + "\n[channels.discord]\ntoken = \"PlantedDiscordPartOne0000.abcdef\"\n"),
            key: "channels.discord.token", line: 7, says: ["this is not a Discord bot token: it has 2 parts, not 3"],
            hidden: ["PlantedDiscordPartOne"]),
        BadSeed(
            label: "Wi-Fi passphrase too short",
            form: .text(head + "\n[network.wifi]\nssid = \"Home\"\npassphrase = \"Zq7pw\"\ncountry = \"DE\"\n"),
            key: "network.wifi.passphrase", line: 8, says: ["the passphrase is 5 characters long; a WPA passphrase has 8 to 63"],
            hidden: ["Zq7pw"]),
        // Oversized values.
        BadSeed(
            label: "API key of 600 characters",
            form: .text(
                head
                    + "\n[providers.openai]\nkind = \"openai\"\napi-key = \"\(String(repeating: "K", count: 600))\"\nmodels = [\"gpt-4o\"]\n"
            ),
            key: "providers.openai.api-key", line: 8, says: ["the API key is 600 characters long; at most 512"],
            hidden: [String(repeating: "K", count: 40)]),
        BadSeed(
            label: "name of 64 characters",
            form: .text("name = \"\(String(repeating: "a", count: 64))\"\n[admin]\nssh-keys = [\"\(key)\"]\n"), key: "name", line: 1,
            says: ["the name is 64 characters long; a host name has at most 63"]),
        // The file as a whole.
        BadSeed(
            label: "invalid UTF-8",
            form: .bytes(Array("name = \"seed-box\"\ntimezone = \"Europe/".utf8) + [0xC3, 0x28] + Array("\"\n".utf8)), key: nil, line: 2,
            says: ["not valid UTF-8: the byte 0xC3 at offset 37", "save the file as UTF-8"]),
        BadSeed(
            label: "larger than 1 MiB", form: .huge, key: nil, line: nil,
            says: ["the file is \(Seed.maxBytes + 1) bytes; a seed has at most \(Seed.maxBytes) bytes"]),
        BadSeed(
            label: "a symlink to a valid seed", form: .symlinkToValid, key: nil, line: nil,
            says: ["is a symbolic link; a seed must be a regular file"]),
        BadSeed(label: "a directory", form: .directory, key: nil, line: nil, says: ["not a regular file"]),
        BadSeed(label: "a missing file", form: .missing, key: nil, line: nil, says: ["No such file or directory"]),
        BadSeed(label: "a FIFO (nothing writes it)", form: .fifo, key: nil, line: nil, says: ["not a regular file"]),
        BadSeed(
            label: "a key defined twice", form: .text("name = \"seed-box\"\nname = \"other-box\"\n"), key: nil, line: 2,
            says: ["not valid TOML: the key \"name\" is defined twice"]),
        BadSeed(
            label: "a string not closed", form: .text("timezone = \"Europe/Berlin\n" + head), key: nil, line: 1,
            says: ["not valid TOML: the string is not closed on its line"]),
        BadSeed(
            label: "nesting deeper than 32",
            form: .text(head + "x = " + String(repeating: "[", count: 40) + String(repeating: "]", count: 40) + "\n"), key: nil, line: 5,
            says: ["nested more than 32 deep"]),
        // References.
        BadSeed(
            label: "routing to an unknown provider",
            form: .text(
                head + "\n[providers.local]\nkind = \"ollama\"\nmodels = [\"qwen2.5:3b\"]\n\n"
                    + "[routing]\nchat = { provider = \"ghost\", model = \"qwen2.5:3b\" }\n"),
            key: "routing.chat.provider", line: 11, says: ["\"ghost\" is not a provider of this file; providers are local"]),
        BadSeed(
            label: "routing to a model the provider lacks",
            form: .text(
                head + "\n[providers.local]\nkind = \"ollama\"\nmodels = [\"qwen2.5:3b\"]\n\n"
                    + "[routing]\ncode = { provider = \"local\", model = \"gpt-4o\" }\n"),
            key: "routing.code.model", line: 11, says: ["\"gpt-4o\" is not a model of provider \"local\""]),
        BadSeed(
            label: "gateway outside the network",
            form: .text(
                head + "\n[network.wired]\nmode = \"static\"\naddress = \"192.168.1.50\"\nprefix = 24\ngateway = \"10.0.0.1\"\n"),
            key: "network.wired.gateway", line: 10, says: ["is outside the box's network 192.168.1.50/24"]),
        BadSeed(
            label: "time zone area misspelt", form: .text("timezone = \"Erope/Berlin\"\n" + head), key: "timezone", line: 1,
            says: ["\"Erope\" is not an area of the tz database; did you mean Europe?"]),
    ]
}

// MARK: - aibox setup --seed

@Suite struct SetupSeedTests {
    typealias S = SetupSeedSupport

    @Test func fullSeedProvisionsEverything() throws {
        let box = try S.unprovisionedBox()
        let r = try box.aibox(["setup", "--seed", S.fullSeed])
        #expect(r.code == 0, "setup failed: \(r.stderr)")
        #expect(r.stdout.contains("provisioned \"kitchen-box\""), "\(r.stdout)")
        let p = box.paths

        // box.toml: the configuration, secrets by name only.
        let toml = try #require(readTextFile(p.boxConfig), "no box.toml")
        #expect(S.mode(p.boxConfig) == 0o640)
        let config = try BoxConfig.parse(text: toml, path: p.boxConfig).get()
        #expect(config.name == "kitchen-box")
        #expect(config.timezone == "Europe/Berlin")
        #expect(config.providers.map(\.name) == ["local", "openai", "anthropic", "workstation"])
        #expect(config.routing[.code] == [Route(provider: "workstation", model: "qwen2.5-coder-32b", context: 32768)])
        #expect(
            config.routing[.chat] == [
                Route(provider: "local", model: "qwen2.5-3b-instruct-q4_k_m", context: 8192),
                Route(provider: "openai", model: "gpt-4o-mini"),
            ])
        #expect(config.budget == BudgetConfig(dailyUSD: 2, monthlyUSD: 30, warnAt: 0.8, whenExhausted: .local))
        #expect(toml.contains("[budget]\ndaily-usd = 2.0\nmonthly-usd = 30.0\nwarn-at = 0.8\nwhen-exhausted = \"local\"\n"), "\(toml)")
        #expect(config.channels.whatsapp?.phoneNumberId == "106540352242922")
        #expect(Set(config.secretNames) == Set(S.fullSecrets.keys))
        for (name, value) in S.fullSecrets { #expect(!toml.contains(value), "box.toml holds the value of \(name)") }

        // The OS files.
        #expect(readTextFile(p.under("etc/hostname")) == "kitchen-box\n")
        #expect(readTextFile(p.under("etc/timezone")) == "Europe/Berlin\n")
        #expect(S.isSymlink(p.under("etc/localtime")))
        #expect(S.linkTarget(p.under("etc/localtime")) == "/usr/share/zoneinfo/Europe/Berlin")
        let wired = try #require(readTextFile(p.under("etc/systemd/network/20-aibox-wired.network")))
        let wiredLines = wired.split(separator: "\n").map(String.init)
        for line in ["Type=ether", "Address=192.168.1.50/24", "Gateway=192.168.1.1", "DNS=192.168.1.1", "DNS=9.9.9.9"] {
            #expect(wiredLines.contains(line), "the wired .network lacks \(line):\n\(wired)")
        }
        #expect(!wired.contains("DHCP=yes"), "a static address with DHCP too:\n\(wired)")
        let wireless = try #require(readTextFile(p.under("etc/systemd/network/25-aibox-wireless.network")))
        #expect(wireless.contains("Type=wlan") && wireless.contains("DHCP=yes"), "\(wireless)")

        // wpa_supplicant: SSID in hex, the PSK (computed here by Python), never the passphrase.
        let wpaDir = p.under("etc/wpa_supplicant")
        let wpaFiles = listDirectory(wpaDir).filter { $0.hasPrefix("wpa_supplicant-") && $0.hasSuffix(".conf") }
        #expect(wpaFiles.count == 1, "wpa_supplicant files: \(wpaFiles)")
        let wpaPath = wpaDir + "/" + (wpaFiles.first ?? "wpa_supplicant-wlan0.conf")
        let wpa = try #require(readTextFile(wpaPath))
        let psk = try S.pythonPSK(passphrase: "correct horse battery staple", ssid: "Kitchen")
        #expect(psk.count == 64)
        let wpaLines = wpa.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(wpaLines.contains("psk=\(psk)"), "no psk=\(psk) in:\n\(wpa)")
        #expect(wpaLines.contains("ssid=4b69746368656e"), "\(wpa)")
        #expect(wpaLines.contains("country=DE"), "\(wpa)")
        #expect(!wpa.contains("correct horse battery staple"), "the passphrase is in the wpa_supplicant file")
        #expect(S.mode(wpaPath) == 0o600)

        // SSH.
        let dropIn = try #require(readTextFile(p.under("etc/ssh/sshd_config.d/50-aibox.conf")))
        #expect(dropIn.contains("Match User admin") && dropIn.contains("/etc/aibox/ssh/admin.keys"), "\(dropIn)")
        let keys = try #require(readTextFile(p.under("etc/aibox/ssh/admin.keys")))
        #expect(
            keys.split(separator: "\n").map(String.init) == [
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGh owner@example",
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGRlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn+AgYKD backup@example",
            ], "\(keys)")

        // Secrets: exactly these files, exact values, 0600 in a 0700 directory.
        #expect(S.mode(p.secrets) == 0o700)
        #expect(Set(listDirectory(p.secrets)) == Set(S.fullSecrets.keys), "\(listDirectory(p.secrets))")
        for (name, value) in S.fullSecrets {
            let file = p.secrets + "/" + name
            #expect(readSmallFile(file).map { String(decoding: $0, as: UTF8.self) } == value, "secret \(name)")
            #expect(S.mode(file) == 0o600, "secret \(name) has mode \(String(S.mode(file) ?? 0, radix: 8))")
        }

        // The event, and no secret in any output.
        let provisioned = try box.events().filter { $0.kind == "setup.provisioned" }
        #expect(provisioned.count == 1)
        #expect(provisioned.first?.message.contains("kitchen-box") == true, "\(provisioned)")
        let events = try box.aibox(["events", "--json"]).stdout
        for (name, value) in S.fullSecrets {
            #expect(!r.stdout.contains(value) && !r.stderr.contains(value) && !events.contains(value), "\(name) was printed")
        }
    }

    @Test(arguments: BadSeed.all)
    func badSeedIsRefusedAndNothingChanges(_ bad: BadSeed) throws {
        let dir = try S.temporaryDirectory()
        defer { S.remove(dir) }
        let seed = try bad.materialize(in: dir)

        func check(_ r: CommandResult, _ what: String) {
            #expect(r.code == 1, "\(what): exit \(r.code), stderr:\n\(r.stderr)")
            #expect(r.stderr.contains("the seed was not applied; nothing changed"), "\(what):\n\(r.stderr)")
            #expect(r.stderr.contains(seed), "\(what): the file is not named:\n\(r.stderr)")
            if let key = bad.key { #expect(r.stderr.contains(": \(key): "), "\(what): no key path \(key):\n\(r.stderr)") }
            if let line = bad.line {
                #expect(r.stderr.contains("\(seed):\(line):"), "\(what): line \(line) is not named:\n\(r.stderr)")
            }
            for text in bad.says { #expect(r.stderr.contains(text), "\(what): does not say \"\(text)\":\n\(r.stderr)") }
            for secret in bad.hidden {
                #expect(!r.stderr.contains(secret) && !r.stdout.contains(secret), "\(what): a secret value was printed")
            }
            #expect(!r.stdout.contains("provisioned"), "\(what): \(r.stdout)")
        }

        // Unprovisioned: it stays so, every byte as it was.
        let fresh = try S.unprovisionedBox()
        let before = try S.snapshot(fresh.root)
        let r1 = try S.aibox(fresh.root, ["setup", "--seed", seed])
        check(r1, "unprovisioned box")
        #expect(!fileExists(fresh.paths.boxConfig))
        let after = try S.snapshot(fresh.root)
        #expect(S.difference(before, after) == "", "the unprovisioned box changed")

        // Provisioned, replaced with --force: byte-identical.
        let done = try S.provisionedBox()
        let before2 = try S.snapshot(done.root)
        let r2 = try S.aibox(done.root, ["setup", "--seed", seed, "--force"])
        check(r2, "provisioned box with --force")
        let after2 = try S.snapshot(done.root)
        #expect(S.difference(before2, after2) == "", "the provisioned box changed")
    }

    @Test func everyProblemOfASeedIsReportedAtOnce() throws {
        let dir = try S.temporaryDirectory()
        defer { S.remove(dir) }
        let seed = dir + "/many.toml"
        try writeFileAtomically(
            seed,
            Array(
                """
                name = 42
                timezone = "Erope/Berlin"
                [admin]
                ssh-keys = ["\(S.sshKey)"]
                [providers.openai]
                kind = "openai"
                base_url = "https://api.openai.com/v1"
                models = ["gpt-4o"]
                api-key = "Bearer sk-planted"
                [channels.discord]
                token = "abc.def"

                """.utf8))
        let box = try S.unprovisionedBox()
        let before = try S.snapshot(box.root)
        let r = try box.aibox(["setup", "--seed", seed])
        #expect(r.code == 1)
        let problems = r.stderr.split(separator: "\n").filter { $0.hasPrefix(seed + ":") }
        #expect(r.stderr.contains("5 problem(s)"), "\(r.stderr)")
        #expect(problems.count == 5, "expected 5 problems, one per line:\n\(r.stderr)")
        let expected = [
            "\(seed):1: name: ", "\(seed):2: timezone: ", "\(seed):7: providers.openai.base_url: ", "\(seed):9: providers.openai.api-key: ",
            "\(seed):11: channels.discord.token: ",
        ]
        for (i, prefix) in expected.enumerated() where i < problems.count {
            #expect(problems[i].hasPrefix(prefix), "problem \(i + 1) is \(problems[i]), expected \(prefix)…")
        }
        #expect(!r.stderr.contains("sk-planted"))
        #expect(!fileExists(box.paths.boxConfig))
        let after = try S.snapshot(box.root)
        #expect(S.difference(before, after) == "", "the box changed")
    }

    @Test func aProvisionedBoxRefusesASeedWithoutForce() throws {
        let box = try S.provisionedBox()
        let before = try S.snapshot(box.root)
        let r = try box.aibox(["setup", "--seed", S.minimalSeed])
        #expect(r.code == 1)
        #expect(r.stderr.contains("already set up"), "\(r.stderr)")
        #expect(r.stderr.contains("--force"), "\(r.stderr)")
        #expect(r.stderr.contains("factory-reset"), "\(r.stderr)")
        let after = try S.snapshot(box.root)
        #expect(S.difference(before, after) == "", "the box changed")
        #expect(try BoxConfig.parse(text: readTextFile(box.paths.boxConfig) ?? "", path: "box.toml").get().name == "kitchen-box")
        // The snapshot does see a change: with --force the same seed is applied.
        let forced = try box.aibox(["setup", "--seed", S.minimalSeed, "--force"])
        #expect(forced.code == 0, "\(forced.stderr)")
        let replaced = try S.snapshot(box.root)
        #expect(replaced != before)
        #expect(replaced["etc/hostname"] != before["etc/hostname"])
    }

    /// A valid seed whose writing fails half-way (here: etc/ssh/sshd_config.d is a file, as a
    /// full or read-only /etc would make any write fail) must leave the box as it was: the
    /// command says "nothing changed".
    @Test func aSeedThatCannotBeWrittenLeavesTheBoxAsItWas() throws {
        let box = try S.provisionedBox()
        let dropInDir = box.paths.under("etc/ssh/sshd_config.d")
        _ = unlink(dropInDir + "/50-aibox.conf")
        _ = rmdir(dropInDir)
        try writeFileAtomically(dropInDir, Array("an obstacle\n".utf8))
        let dir = try S.temporaryDirectory()
        defer { S.remove(dir) }
        let seed = dir + "/replace.toml"
        try writeFileAtomically(
            seed,
            Array(
                """
                name = "half-box"
                [admin]
                ssh-keys = ["\(S.sshKey)"]
                [providers.openai]
                kind = "openai"
                api-key = "sk-proj-HALFWAY0key000000000000000000000"
                models = ["gpt-4o-mini"]

                """.utf8))
        let before = try S.snapshot(box.root)
        let r = try box.aibox(["setup", "--seed", seed, "--force"])
        #expect(r.code == 1, "\(r.stdout)")
        #expect(r.stderr.contains("the seed was not applied; nothing changed"), "\(r.stderr)")
        #expect(try BoxConfig.parse(text: readTextFile(box.paths.boxConfig) ?? "", path: "box.toml").get().name == "kitchen-box")
        // BUG (Provisioner.commit, Sources/AIBoxSystem/Provisioning.swift): secrets and OS files
        // are written in place before box.toml and not restored when a later write fails, so
        // this box now has the new API key, host name, network and SSH key files under the old
        // box.toml, while the command said "nothing changed". Expected to fail until fixed.
        let after = try S.snapshot(box.root)
        #expect(S.difference(before, after) == "", "a failed commit changed the box")
    }

    @Test func forceReplacesTheConfigurationAndDropsSecretsNoLongerNamed() throws {
        let box = try S.provisionedBox()
        let p = box.paths
        // A secret the image placed, not setup's: it stays.
        try writeFileAtomically(p.secrets + "/image.token", Array("image-owned".utf8), mode: 0o600)
        let dir = try S.temporaryDirectory()
        defer { S.remove(dir) }
        let seed = dir + "/replace.toml"
        let newKey = "sk-proj-REPLACED0key00000000000000000000"
        let newToken = "555555555:AAReplacedTelegramToken000000000000"
        try writeFileAtomically(
            seed,
            Array(
                """
                name = "replaced-box"
                [admin]
                ssh-keys = ["\(S.sshKey)"]
                [providers.openai]
                kind = "openai"
                api-key = "\(newKey)"
                models = ["gpt-4o-mini"]
                [channels.telegram]
                token = "\(newToken)"

                """.utf8))
        let r = try box.aibox(["setup", "--seed", seed, "--force"])
        #expect(r.code == 0, "\(r.stderr)")
        let config = try BoxConfig.parse(text: readTextFile(p.boxConfig) ?? "", path: "box.toml").get()
        #expect(config.name == "replaced-box")
        #expect(config.network.wifi == nil)
        // Besides openai, only the local model setup adds when the hardware can run one (README, rule 2).
        #expect(config.providers.map(\.name).filter { $0 != LocalModel.providerName } == ["openai"], "\(config.providers.map(\.name))")
        #expect(
            Set(listDirectory(p.secrets)) == ["provider.openai.api-key", "channel.telegram.token", "image.token"],
            "secrets left: \(listDirectory(p.secrets).sorted())")
        #expect(readTextFile(p.secrets + "/provider.openai.api-key") == newKey)
        #expect(readTextFile(p.secrets + "/channel.telegram.token") == newToken)
        #expect(readTextFile(p.secrets + "/image.token") == "image-owned")
        // The OS files follow.
        #expect(readTextFile(p.under("etc/hostname")) == "replaced-box\n")
        #expect(readTextFile(p.under("etc/timezone")) == "UTC\n")
        #expect(S.linkTarget(p.under("etc/localtime")) == "/usr/share/zoneinfo/UTC")
        let wired = readTextFile(p.under("etc/systemd/network/20-aibox-wired.network")) ?? ""
        #expect(wired.contains("DHCP=yes") && !wired.contains("Address="), "\(wired)")
        #expect(!fileExists(p.under("etc/systemd/network/25-aibox-wireless.network")))
        #expect(listDirectory(p.under("etc/wpa_supplicant")).isEmpty, "\(listDirectory(p.under("etc/wpa_supplicant")))")
        #expect(try box.events().filter { $0.kind == "setup.provisioned" }.count == 2)
    }
}

// MARK: - Setup mode in the daemon

@Suite(.serialized) struct SetupModeTests {
    typealias S = SetupSeedSupport

    static let twoWorkers = """
        [worker.base]
        exec = ["@WORKER@", "--ready-after", "0"]
        notify = true
        stop-timeout = "5s"

        [worker.dependent]
        exec = ["@WORKER@", "--no-notify"]
        after = ["base"]
        stop-timeout = "5s"
        """

    /// The STATUS= lines the daemon sent to a service manager's socket, so far.
    final class ManagerSocket {
        let socket: NotifySocket
        var statuses: [String] = []
        init(path: String) throws { socket = try NotifySocket(path: path) }
        func drain() -> [String] {
            var pfd = pollfd(fd: socket.fd, events: Int16(POLLIN), revents: 0)
            while poll(&pfd, 1, 0) > 0 && pfd.revents & Int16(POLLIN) != 0 {
                socket.receiveAll { _, m in if let s = m.status { self.statuses.append(s) } }
            }
            return statuses
        }
    }

    @Test func unprovisionedRunsNothingSetupStartsFactoryResetStops() throws {
        let box = try TestBox(Self.twoWorkers, provisioned: false)
        let manager = try ManagerSocket(path: box.root + "/systemd-notify.sock")
        try box.startDaemon(environment: ["NOTIFY_SOCKET": manager.socket.path])
        defer { box.stopDaemon() }
        let daemonPID = box.daemonPID

        // Setup mode: both wait for "setup", no process.
        for name in ["base", "dependent"] {
            let w = try box.waitFor(name, ["waiting"])
            #expect(w?.waitingFor.contains("setup") == true, "\(String(describing: w))")
            #expect(w?.pid == nil)
        }
        #expect(S.workerProcesses(of: box).isEmpty, "worker processes run: \(S.workerProcesses(of: box))")
        #expect(S.children(of: daemonPID).isEmpty, "the daemon has children: \(S.children(of: daemonPID))")
        #expect(box.processesOfThisBox().isEmpty)
        let status = try #require(try S.status(box))
        #expect(status.provisioned == false)
        let human = try box.aibox(["status"])
        #expect(human.stdout.contains("WAITING FOR SETUP"), "\(human.stdout)")
        try box.waitForEvent("setup.waiting")
        #expect(waitUntil(.seconds(10)) { manager.drain().contains { $0.hasPrefix("waiting for setup") } }, "\(manager.statuses)")
        #expect(manager.drain().first?.hasPrefix("waiting for setup") == true, "first STATUS= was \(manager.statuses.first ?? "none")")
        // Still nothing after more than one 2 s look at box.toml.
        let startedAnyway = waitUntil(.milliseconds(2500)) { !S.workerProcesses(of: box).isEmpty }
        #expect(!startedAnyway, "a worker started without box.toml")
        #expect(try box.worker("base")?.state == "waiting")

        // Setup: the workers start, the daemon stays the same process.
        let setup = try box.aibox(["setup", "--seed", S.minimalSeed])
        #expect(setup.code == 0, "\(setup.stderr)")
        let base = try #require(try box.waitFor("base", ["ready"])?.pid)
        let dependent = try #require(try box.waitFor("dependent", ["running"])?.pid)
        try box.waitForEvent("setup.complete")
        #expect(box.daemonPID == daemonPID)
        #expect(box.daemon?.isRunning == true)
        #expect(try S.status(box)?.daemonPid == daemonPID)
        #expect(try S.status(box)?.provisioned == true)
        #expect(try box.aibox(["status"]).stdout.contains("setup:     done"))
        #expect(try box.events().filter { $0.kind == "daemon.started" }.count == 1, "the daemon started again")
        #expect(
            waitUntil(.seconds(10)) { manager.drain().last.map { !$0.hasPrefix("waiting for setup") } ?? false },
            "STATUS= still says waiting: \(manager.statuses.last ?? "")")

        // A hand-placed secret too, so that "secrets empty" says something.
        try makeDirectories(box.paths.secrets, mode: 0o700)
        try writeFileAtomically(box.paths.secrets + "/image.token", Array("image-owned".utf8), mode: 0o600)
        let eventsBefore = try box.events()

        // Factory reset: gracefully back to waiting, the daemon goes on.
        let reset = try box.aibox(["factory-reset", "--yes"])
        #expect(reset.code == 0, "\(reset.stderr)")
        for name in ["base", "dependent"] {
            let w = try box.waitFor(name, ["waiting"])
            #expect(w?.waitingFor.contains("setup") == true, "\(String(describing: w))")
            #expect(w?.pid == nil)
            #expect(w?.lastExit?.code == 0, "\(name) did not stop on SIGTERM: \(String(describing: w?.lastExit))")
        }
        #expect(waitUntil(.seconds(10)) { ProcFS.info(base) == nil && ProcFS.info(dependent) == nil }, "worker processes remain")
        #expect(S.workerProcesses(of: box).isEmpty)
        #expect(try box.events().filter { $0.kind == "worker.stop-timeout" }.isEmpty, "a worker had to be killed")
        let stopping = try box.events().filter { $0.kind == "worker.stopping" }
        #expect(stopping.count >= 2 && stopping.allSatisfy { $0.message.contains("setup") }, "\(stopping.map(\.message))")
        #expect(!fileExists(box.paths.boxConfig))
        #expect(listDirectory(box.paths.secrets).isEmpty, "secrets left: \(listDirectory(box.paths.secrets))")
        let eventsAfter = try box.events()
        let keptIDs = Set(eventsAfter.compactMap(\.id))
        #expect(eventsBefore.allSatisfy { $0.id.map(keptIDs.contains) ?? false }, "events were lost by the factory reset")
        #expect(eventsAfter.contains { $0.kind == "setup.factory-reset" })
        try box.waitForEvent("setup.waiting", count: 2)
        #expect(box.daemon?.isRunning == true)
        #expect(box.daemonPID == daemonPID)
        #expect(try S.status(box)?.provisioned == false)
        #expect(
            waitUntil(.seconds(10)) { manager.drain().last?.hasPrefix("waiting for setup") == true },
            "STATUS= after the reset: \(manager.statuses.last ?? "")")
    }

    @Test func factoryResetAnsweredNoChangesNothing() throws {
        let box = try S.provisionedBox()
        let before = try S.snapshot(box.root)
        for answer in ["no\n", "y\n", ""] {
            let r = try S.aibox(box.root, ["factory-reset"], input: answer)
            #expect(r.code == 1, "answer \(answer.debugDescription): exit \(r.code)")
            #expect(r.stdout.contains("Type yes to reset"), "\(r.stdout)")
            #expect(r.stdout.contains("Nothing changed."), "answer \(answer.debugDescription): \(r.stdout)")
            let after = try S.snapshot(box.root)
            #expect(S.difference(before, after) == "", "answer \(answer.debugDescription)")
        }
        #expect(fileExists(box.paths.boxConfig))
        // And "yes" does reset: the refusals above were the answer's doing.
        let yes = try S.aibox(box.root, ["factory-reset"], input: "yes\n")
        #expect(yes.code == 0, "\(yes.stderr)")
        #expect(!fileExists(box.paths.boxConfig))
    }

    /// A secret that cannot be removed (here a directory in its place) is reported, never
    /// passed over as reset; everything else goes all the same.
    @Test func factoryResetSaysWhatItCouldNotRemove() throws {
        let box = try S.provisionedBox()
        let secrets = listDirectory(box.paths.secrets)
        #expect(!secrets.isEmpty, "the full seed leaves secrets to remove")
        try makeDirectories(box.paths.secrets + "/wifi.stuck/inside")
        let r = try box.aibox(["factory-reset", "--yes"])
        #expect(r.code == 1)
        #expect(r.stderr.contains("unlink \(box.paths.secrets)/wifi.stuck: Is a directory"), "\(r.stderr)")
        #expect(r.stderr.contains("run factory-reset again"), "\(r.stderr)")
        #expect(!fileExists(box.paths.boxConfig))
        #expect(listDirectory(box.paths.secrets) == ["wifi.stuck"], "the others are removed all the same")
        // Once it is out of the way, the reset completes.
        _ = try run("/bin/rm", ["-r", box.paths.secrets + "/wifi.stuck"])
        let again = try box.aibox(["factory-reset", "--yes"])
        #expect(again.code == 0, "\(again.stderr)")
        #expect(listDirectory(box.paths.secrets).isEmpty)
    }

    @Test func factoryResetIsRefusedWhileAnUpdateHoldsItsLock() throws {
        let box = try S.provisionedBox()
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        holder.arguments = [
            "-c",
            "import fcntl,sys; f=open(sys.argv[1],'a'); fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()",
            box.paths.updateLock,
        ]
        let input = Pipe(), output = Pipe()
        holder.standardInput = input
        holder.standardOutput = output
        try holder.run()
        defer {
            try? input.fileHandleForWriting.close()
            holder.waitUntilExit()
        }
        #expect(String(decoding: output.fileHandleForReading.availableData, as: UTF8.self).contains("locked"))
        let before = try S.snapshot(box.root)
        let r = try box.aibox(["factory-reset", "--yes"])
        #expect(r.code == 1)
        #expect(r.stderr.contains("an update is being installed; factory-reset is refused"), "\(r.stderr)")
        let after = try S.snapshot(box.root)
        #expect(S.difference(before, after) == "", "the box changed")
        #expect(fileExists(box.paths.boxConfig))
        // Once the installer is done, the reset goes through.
        try input.fileHandleForWriting.close()
        holder.waitUntilExit()
        let again = try box.aibox(["factory-reset", "--yes"])
        #expect(again.code == 0, "\(again.stderr)")
        #expect(!fileExists(box.paths.boxConfig))
    }

    @Test func boxTomlWrittenBehindTheDaemonsBackIsNoticedByThePoll() throws {
        let box = try TestBox(Self.twoWorkers, provisioned: false)
        try box.startDaemon()
        defer { box.stopDaemon() }
        try box.waitFor("base", ["waiting"])
        // No aibox setup, no control command: the file simply appears.
        let config = BoxConfig(name: "polled-box", admin: AdminAccess(sshKeys: [S.sshKey]))
        try writeFileAtomically(box.paths.boxConfig, Array(config.tomlText().utf8), mode: 0o640)
        let t0 = Clock.monotonic()
        try box.waitFor("base", ["ready"], timeout: .seconds(10))
        try box.waitFor("dependent", ["running"], timeout: .seconds(10))
        #expect(Clock.monotonic().since(t0) < .seconds(10))
        try box.waitForEvent("setup.complete", timeout: .seconds(10))
        // And gone behind its back: the workers stop and wait again.
        _ = unlink(box.paths.boxConfig)
        let w = try box.waitFor("base", ["waiting"], timeout: .seconds(10))
        #expect(w?.waitingFor.contains("setup") == true)
        try box.waitFor("dependent", ["waiting"], timeout: .seconds(10))
    }
}

// MARK: - Where secrets go

@Suite(.serialized) struct SecretsTests {
    typealias S = SetupSeedSupport

    static let apiKey = "sk-proj-PLANTED0openai0key000000000000"
    static let telegram = "987654321:AAPlantedTelegram0Unique0Suffix7Q9X"
    static let wifi = "planted wifi passphrase 7"
    /// Secret name → planted value.
    static let planted: [String: String] = [
        "provider.openai.api-key": apiKey, "channel.telegram.token": telegram, "wifi.passphrase": wifi,
    ]

    static let crasher = """
        [worker.leaky]
        exec = ["@WORKER@", "--no-notify", "--exit-after", "400", "--exit-code", "3"]
        user = "nobody"
        workdir = "/tmp"
        secrets = ["provider.openai.api-key"]
        restart-delay = "50ms"
        crash-loop = { burst = 1000, window = "60s", quarantine = "1m" }
        """

    /// Writes the seed outside the root, provisions, and deletes the seed; the CLI's output.
    static func provision(_ box: TestBox) throws -> CommandResult {
        let dir = try S.temporaryDirectory()
        defer { S.remove(dir) }
        let seed = dir + "/aibox-seed.toml"
        try writeFileAtomically(
            seed,
            Array(
                """
                name = "secret-box"
                [admin]
                ssh-keys = ["\(S.sshKey)"]
                [network.wifi]
                ssid = "PlantedNet"
                passphrase = "\(wifi)"
                country = "DE"
                [providers.openai]
                kind = "openai"
                api-key = "\(apiKey)"
                models = ["gpt-4o-mini"]
                [channels.telegram]
                token = "\(telegram)"

                """.utf8), mode: 0o600)
        let r = try box.aibox(["setup", "--seed", seed])
        try #require(r.code == 0, "setup failed: \(r.stderr)")
        return r
    }

    /// The listed secret as the running worker sees it: the file names in its
    /// $CREDENTIALS_DIRECTORY, and that directory.
    static func credentials(of box: TestBox, worker: String) throws -> (dir: String, files: [String], value: String?)? {
        var found: (String, [String], String?)?
        let ok = try waitUntil(.seconds(15)) {
            guard let w = try box.worker(worker), w.state == "running", let pid = w.pid,
                let environ = readSmallFile("/proc/\(pid)/environ")
            else { return false }
            let vars = environ.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard let dir = vars.first(where: { $0.hasPrefix("CREDENTIALS_DIRECTORY=") })?.dropFirst("CREDENTIALS_DIRECTORY=".count)
            else { return false }
            let files = listDirectory(String(dir)).sorted()
            // Between two runs the directory is rewritten: look again until it is whole.
            guard ProcFS.info(pid) != nil, files == ["provider.openai.api-key"] else { return false }
            found = (String(dir), files, readTextFile(dir + "/provider.openai.api-key"))
            return true
        }
        return ok ? found : nil
    }

    @Test func plantedSecretsAreOnlyInTheirFiles() throws {
        try #require(geteuid() == 0, "dropping to nobody needs root")
        let box = try TestBox(Self.crasher, provisioned: false)
        try box.startDaemon()
        defer { box.stopDaemon() }
        try box.waitFor("leaky", ["waiting"])
        var outputs: [(String, CommandResult)] = []
        outputs.append(("setup --seed", try Self.provision(box)))

        let creds = try #require(try Self.credentials(of: box, worker: "leaky"), "never saw the worker with its credentials")
        #expect(creds.dir == box.paths.credentials + "/leaky")
        #expect(creds.files == ["provider.openai.api-key"], "only the listed secret is handed over: \(creds.files)")
        #expect(creds.value == Self.apiKey)
        #expect(
            try waitUntil(.seconds(20)) { (try box.worker("leaky")?.restarts ?? 0) >= 3 }, "the worker did not crash and restart 3 times")
        try box.waitForEvent("worker.exited", worker: "leaky", count: 3)

        for args in [
            ["status", "--json"], ["status"], ["events", "--json", "-n", "100000"], ["events", "-n", "100000"], ["workers", "--json"],
            ["workers"], ["logs", "leaky", "-n", "1000"], ["hardware", "--json"],
        ] {
            outputs.append((args.joined(separator: " "), try box.aibox(args)))
        }
        #expect(outputs.allSatisfy { $0.1.code == 0 }, "\(outputs.filter { $0.1.code != 0 }.map { "\($0.0): \($0.1.stderr)" })")
        #expect(outputs.contains { $0.0 == "logs leaky -n 1000" && $0.1.stdout.contains("exiting with 3") }, "no log captured")

        // Every file under the root, the database and its WAL included.
        let files = S.regularFiles(under: box.root)
        #expect(files.contains("var/lib/aibox/aibox.db"), "\(files)")
        #expect(files.contains { $0.hasPrefix("var/lib/aibox/logs/") }, "\(files)")
        for (name, value) in Self.planted {
            // The whole value, and a distinctive piece of it (a cut or wrapped copy).
            let piece = String(value.dropFirst(8).prefix(16))
            for needle in [value, piece] {
                let found = S.filesContaining(needle, under: box.root)
                #expect(found.contains("var/lib/aibox/secrets/\(name)"), "\(name) is not in its own file (found in \(found))")
                let elsewhere = found.filter { path in
                    path != "var/lib/aibox/secrets/\(name)"
                        && !(name == "provider.openai.api-key" && path.hasPrefix("run/aibox/credentials/leaky/"))
                }
                #expect(elsewhere.isEmpty, "\(name) (\(needle == value ? "whole" : "piece")) found in \(elsewhere)")
                for (what, r) in outputs {
                    #expect(!r.stdout.contains(needle) && !r.stderr.contains(needle), "\(name) printed by aibox \(what)")
                }
            }
        }
        #expect(!(readTextFile(box.paths.under("etc/wpa_supplicant/wpa_supplicant-wlan0.conf")) ?? "").contains(Self.wifi))
        #expect(S.filesContaining("PlantedNet", under: box.root).contains("etc/aibox/box.toml"), "the search finds plain text")

        // Modes.
        #expect(S.mode(box.paths.secrets) == 0o700)
        for name in listDirectory(box.paths.secrets) {
            #expect(
                S.mode(box.paths.secrets + "/" + name) == 0o600, "\(name): \(String(S.mode(box.paths.secrets + "/" + name) ?? 0, radix: 8))"
            )
        }
        #expect(Set(listDirectory(box.paths.secrets)) == Set(Self.planted.keys))
    }

    @Test func factoryResetLeavesNoCopyOfASecretOnTheBox() throws {
        try #require(geteuid() == 0, "dropping to nobody needs root")
        let box = try TestBox(Self.crasher, provisioned: false)
        try box.startDaemon()
        defer { box.stopDaemon() }
        _ = try Self.provision(box)
        _ = try #require(try Self.credentials(of: box, worker: "leaky"), "never saw the worker with its credentials")
        let reset = try box.aibox(["factory-reset", "--yes"])
        #expect(reset.code == 0, "\(reset.stderr)")
        try box.waitFor("leaky", ["waiting"])
        #expect(waitUntil(.seconds(10)) { S.workerProcesses(of: box).isEmpty })
        // "Forget the box's secrets": no copy may survive anywhere under the root.
        for (name, value) in Self.planted {
            let found = S.filesContaining(value, under: box.root)
            #expect(found.isEmpty, "after factory-reset, \(name) is still in \(found)")
        }
    }
}

import Testing

@testable import AIBoxCore

// Swift Testing has types of the same names.
typealias SourceLocation = AIBoxCore.SourceLocation
typealias ExitStatus = AIBoxCore.ExitStatus

/// The example worker of docs/WORKERS.md, verbatim.
let designExample = """
    [worker.chat-agent]
    exec = ["/usr/lib/aibox/agents/chat", "--listen", "127.0.0.1:8081"]  # argv, never a shell line
    workdir = "/var/lib/aibox/work/chat-agent"
    user = "aibox-agent"            # drop to this user/group before exec (when run as root)
    env = { LOG_LEVEL = "info" }
    secrets = ["openai-api-key"]    # copied read-only into $CREDENTIALS_DIRECTORY for this worker
    restart = "always"              # always | on-failure | never
    restart-delay = "100ms"         # first delay after a crash
    restart-max-delay = "5m"        # exponential backoff cap (with jitter)
    stable-after = "30s"            # running this long resets the backoff
    crash-loop = { burst = 5, window = "60s", quarantine = "10m" }  # then quarantined, retried after
    notify = true                   # expects READY=1 on $NOTIFY_SOCKET
    ready-timeout = "90s"
    watchdog = "30s"                # expects WATCHDOG=1 at least this often; $WATCHDOG_USEC is set
    stop-signal = "TERM"
    stop-timeout = "10s"            # then SIGKILL to the whole process group
    after = ["llm-local"]           # start after these are ready
    requires-hardware = ["gpu"]     # capabilities from the hardware profile; started and stopped with them
    memory-max = "2G"               # recycled (restarted between tasks) above this RSS
    critical = true                 # must be healthy for an update to be committed
    """

let vendorPath = "/usr/lib/aibox/workers.d/agents.toml"

func parse(_ text: String, path: String = vendorPath) -> Result<[WorkerDefinition], ConfigErrors> {
    WorkerConfig.parse(ConfigFile(path: path, text: text))
}

func parseErrors(_ text: String, path: String = vendorPath, sourceLocation: Testing.SourceLocation = #_sourceLocation) -> [ConfigError] {
    switch parse(text, path: path) {
    case .success(let workers):
        Issue.record("expected errors, parsed \(workers.map(\.name))", sourceLocation: sourceLocation)
        return []
    case .failure(let e): return e.errors
    }
}

@Suite("Worker definition files")
struct WorkerConfigTests {
    @Test("the example worker of docs/WORKERS.md parses to every value it spells")
    func designExampleParses() throws {
        let workers = try parse(designExample).get()
        #expect(workers.count == 1)
        let w = try #require(workers.first)
        #expect(w.name == "chat-agent")
        #expect(w.exec == ["/usr/lib/aibox/agents/chat", "--listen", "127.0.0.1:8081"])
        #expect(w.workdir == "/var/lib/aibox/work/chat-agent")
        #expect(w.user == "aibox-agent")
        #expect(w.env == ["LOG_LEVEL": "info"])
        #expect(w.secrets == ["openai-api-key"])
        #expect(w.restart == .always)
        #expect(w.restartDelay == .milliseconds(100))
        #expect(w.restartMaxDelay == .seconds(300))
        #expect(w.stableAfter == .seconds(30))
        #expect(w.crashLoop == CrashLoopPolicy(burst: 5, window: .seconds(60), quarantine: .seconds(600)))
        #expect(w.notify == true)
        #expect(w.readyTimeout == .seconds(90))
        #expect(w.watchdog == .seconds(30))
        #expect(w.stopSignal == 15)
        #expect(w.stopTimeout == .seconds(10))
        #expect(w.after == ["llm-local"])
        #expect(w.requiresHardware == ["gpu"])
        #expect(w.memoryMax == 2 * 1024 * 1024 * 1024)
        #expect(w.critical == true)
        #expect(w.source == SourceLocation(file: vendorPath, line: 1))
    }

    @Test("requires-files: absolute paths of files; anything else is an error with its line and key")
    func requiresFiles() throws {
        let w = try #require(
            try parse("[worker.llm]\nexec = [\"/usr/bin/llm\"]\nrequires-files = [\"/var/lib/aibox/models/default.gguf\"]\n").get().first)
        #expect(w.requiresFiles == ["/var/lib/aibox/models/default.gguf"])
        let relative = parseErrors("[worker.llm]\nexec = [\"/usr/bin/llm\"]\nrequires-files = [\"models/default.gguf\", \"/var/lib/\"]\n")
        #expect(relative.count == 2)
        #expect(relative.allSatisfy { $0.location.line == 3 && $0.key == "worker.llm.requires-files" }, "\(relative)")
        #expect(relative.first?.message.contains("must be the absolute path of a file") == true, "\(relative)")
        let notStrings = parseErrors("[worker.llm]\nexec = [\"/usr/bin/llm\"]\nrequires-files = \"/a\"\n")
        #expect(notStrings.first?.message.contains("must be an array of strings") == true, "\(notStrings)")
    }

    @Test("absent keys take the documented defaults")
    func defaults() throws {
        let w = try #require(try parse("\n\n[worker.minimal]\nexec = [\"/usr/bin/minimal\"]\n").get().first)
        #expect(w.name == "minimal")
        #expect(w.exec == ["/usr/bin/minimal"])
        #expect(w.workdir == nil)
        #expect(w.user == nil)
        #expect(w.env.isEmpty)
        #expect(w.secrets.isEmpty)
        #expect(w.restart == .always)
        #expect(w.restartDelay == .milliseconds(100))
        #expect(w.restartMaxDelay == .seconds(300))
        #expect(w.stableAfter == .seconds(30))
        #expect(w.crashLoop == CrashLoopPolicy(burst: 5, window: .seconds(60), quarantine: .seconds(600)))
        #expect(w.notify == false)
        #expect(w.readyTimeout == .seconds(90))
        #expect(w.watchdog == nil)
        #expect(w.stopSignal == Signals.term)
        #expect(w.stopTimeout == .seconds(10))
        #expect(w.after.isEmpty)
        #expect(w.requiresHardware.isEmpty)
        #expect(w.memoryMax == nil)
        #expect(w.critical == false)
        #expect(w.source.line == 3)
    }

    @Test("a partial crash-loop table keeps the defaults of the keys it omits")
    func partialCrashLoop() throws {
        let w = try #require(try parse("[worker.a]\nexec = [\"/a\"]\ncrash-loop = { burst = 3 }\n").get().first)
        #expect(w.crashLoop == CrashLoopPolicy(burst: 3, window: .seconds(60), quarantine: .seconds(600)))
    }

    @Test("other spellings: integer memory-max, watchdog 0s disables, SIG prefix, on-failure")
    func otherSpellings() throws {
        let text = """
            [worker.a]
            exec = ["/a"]
            memory-max = 1048576
            watchdog = "0s"
            stop-signal = "SIGINT"
            restart = "on-failure"
            """
        let w = try #require(try parse(text).get().first)
        #expect(w.memoryMax == 1_048_576)
        #expect(w.watchdog == nil)
        #expect(w.stopSignal == Signals.int)
        #expect(w.restart == .onFailure)
    }

    @Test("a file may define several workers, in file order, each with its own line")
    func severalWorkers() throws {
        let text = """
            [worker.b]
            exec = ["/b"]

            [worker.a]
            exec = ["/a"]
            after = ["b"]
            """
        let workers = try parse(text).get()
        #expect(workers.map(\.name) == ["b", "a"])
        #expect(workers.map(\.source.line) == [1, 4])
    }

    @Test("secrets may name families: PREFIX.* beside exact names, kept as written")
    func secretFamiliesParse() throws {
        let text = """
            [worker.agent]
            exec = ["/usr/bin/aibox-agent", "run"]
            secrets = ["provider.*", "channel.telegram.*", "some.exact-name", "a1-b.c2.*", "x.*"]
            """
        let w = try #require(try parse(text).get().first)
        #expect(w.secrets == ["provider.*", "channel.telegram.*", "some.exact-name", "a1-b.c2.*", "x.*"])
    }

    @Test("the family rule: [a-z0-9][a-z0-9-]*(.[a-z0-9][a-z0-9-]*)*.*")
    func familyRule() {
        for good in ["provider.*", "channel.*", "channel.telegram.*", "a.*", "0.*", "a-b.c-d-.*", "p1.p2.p3.*"] {
            #expect(SecretSelection.isValidFamily(good), "\(good)")
        }
        for bad in [
            "*", ".*", "provider", "provider*", "provider.", "-p.*", "p.-q.*", "p..*", "P.*", "p_q.*", "p.**", "p.*.*", "p .*", "é.*",
        ] {
            #expect(!SecretSelection.isValidFamily(bad), "\(bad)")
        }
        #expect(!SecretSelection.isValidFamily(String(repeating: "a", count: 127) + ".*"), "past 128 bytes")
    }

    @Test("a family hands over its members only: the prefix and a dot, then a valid name")
    func familyMembers() {
        #expect(SecretSelection.matches("provider.openai.api-key", family: "provider.*"))
        #expect(SecretSelection.matches("provider.x", family: "provider.*"))
        #expect(!SecretSelection.matches("provider.", family: "provider.*"), "the prefix alone is no member")
        #expect(!SecretSelection.matches("providers.openai.api-key", family: "provider.*"))
        #expect(!SecretSelection.matches("provider", family: "provider.*"))
        #expect(!SecretSelection.matches("channel.telegram.token", family: "provider.*"))
        #expect(!SecretSelection.matches("provider..x", family: "provider.*"), "not a valid secret name")
        #expect(SecretSelection.matches("channel.telegram.token", family: "channel.telegram.*"))
        #expect(!SecretSelection.matches("channel.slack.bot-token", family: "channel.telegram.*"))
    }

    @Test("expanding: listed names required in their order, family members optional and sorted, each once")
    func expandSecrets() {
        let available = [
            "provider.openai.api-key", "channel.telegram.token", "provider.anthropic.api-key", "other", "provider.", "providers.x",
            "some.exact-name",
        ]
        let e = SecretSelection.expand(["provider.*", "some.exact-name", "missing.one"], available: available)
        #expect(e.required == ["some.exact-name", "missing.one"], "listed names stay required whether they exist or not")
        #expect(e.optional == ["provider.anthropic.api-key", "provider.openai.api-key"])
        // A name both listed and in a family is listed (required), once.
        let both = SecretSelection.expand(["provider.*", "provider.openai.api-key", "provider.*"], available: available)
        #expect(both.required == ["provider.openai.api-key"])
        #expect(both.optional == ["provider.anthropic.api-key"])
        // No member: nothing, and no failure.
        let none = SecretSelection.expand(["channel.*"], available: ["provider.openai.api-key"])
        #expect(none.required.isEmpty && none.optional.isEmpty)
        #expect(SecretSelection.expand(["channel.*", "provider.*"], available: []).optional.isEmpty)
    }

    @Test("one secret-name rule: no leading dot, no '..', a-z 0-9 . - _, at most 128 bytes")
    func secretNameRule() {
        for good in ["provider.openai.api-key", "openai_api_key", "a", "channel.telegram.token", String(repeating: "a", count: 128)] {
            #expect(WorkerConfig.isValidSecretName(good), "\(good)")
        }
        for bad in ["", ".", "..", ".hidden", "a..b", "A", "a/b", "a b", "a*", String(repeating: "a", count: 129)] {
            #expect(!WorkerConfig.isValidSecretName(bad), "\(bad)")
        }
    }

    @Test("an empty file defines no worker")
    func emptyFile() throws {
        #expect(try parse("").get().isEmpty)
        #expect(try parse("# nothing here\n").get().isEmpty)
    }

    struct Bad: CustomTestStringConvertible, Sendable {
        var what: String
        var toml: String
        var line: Int
        var key: String?
        var says: [String]
        var testDescription: String { what }
    }

    static let header = "[worker.chat-agent]\nexec = [\"/usr/lib/aibox/agents/chat\"]\n"

    static let badDefinitions: [Bad] = [
        Bad(
            what: "notify is a string", toml: header + "notify = \"yes\"\n", line: 3, key: "worker.chat-agent.notify",
            says: ["must be true or false", "not the string \"yes\""]),
        Bad(
            what: "exec is a shell line", toml: "[worker.chat-agent]\n\nexec = \"/bin/chat --fast\"\n", line: 3,
            key: "worker.chat-agent.exec", says: ["must be an array of strings", "not the string"]),
        Bad(
            what: "exec holds a number", toml: "[worker.chat-agent]\nexec = [\"/bin/chat\", 5]\n", line: 2,
            key: "worker.chat-agent.exec", says: ["must hold only strings", "the integer 5"]),
        Bad(
            what: "stop-timeout is an integer", toml: header + "stop-timeout = 10\n", line: 3, key: "worker.chat-agent.stop-timeout",
            says: ["must be a duration such as \"100ms\", \"30s\"", "not the integer 10"]),
        Bad(
            what: "env is an array", toml: header + "env = [\"A=1\"]\n", line: 3, key: "worker.chat-agent.env",
            says: ["must be a table such as { KEY = \"value\" }", "not an array"]),
        Bad(
            what: "critical is a number", toml: header + "critical = 1\n", line: 3, key: "worker.chat-agent.critical",
            says: ["must be true or false"]),
        Bad(
            what: "misspelt key", toml: header + "\nrestart-dealy = \"1s\"\n", line: 4, key: "worker.chat-agent.restart-dealy",
            says: ["unknown key", "did you mean \"restart-delay\"?", "allowed keys are exec, workdir"]),
        Bad(
            what: "unknown key far from any", toml: header + "colour = \"blue\"\n", line: 3, key: "worker.chat-agent.colour",
            says: ["unknown key; allowed keys are exec"]),
        Bad(
            what: "upper case name", toml: "\n[worker.Chat_Agent]\nexec = [\"/bin/chat\"]\n", line: 2, key: "worker.Chat_Agent",
            says: ["\"Chat_Agent\" is not a valid worker name", "1-63 of a-z, 0-9 and '-'"]),
        Bad(
            what: "name starting with a dash", toml: "[worker.-chat]\nexec = [\"/bin/chat\"]\n", line: 1, key: "worker.-chat",
            says: ["is not a valid worker name"]),
        Bad(
            what: "missing exec", toml: "# chat\n[worker.chat-agent]\nrestart = \"always\"\n", line: 2, key: "worker.chat-agent.exec",
            says: ["missing; every worker needs exec = [\"/path/to/program\""]),
        Bad(
            what: "empty exec", toml: "[worker.chat-agent]\nexec = []\n", line: 2, key: "worker.chat-agent.exec",
            says: ["must name a program"]),
        Bad(
            what: "relative exec path", toml: "[worker.chat-agent]\nexec = [\"chat\", \"--fast\"]\n", line: 2,
            key: "worker.chat-agent.exec", says: ["\"chat\" is not an absolute path", "without a shell or $PATH search"]),
        Bad(
            what: "relative workdir", toml: header + "workdir = \"work\"\n", line: 3, key: "worker.chat-agent.workdir",
            says: ["\"work\" must be an absolute path"]),
        Bad(
            what: "user with a colon", toml: header + "user = \"a:b\"\n", line: 3, key: "worker.chat-agent.user",
            says: ["\"a:b\" is not a user name"]),
        Bad(
            what: "bad duration", toml: header + "restart-delay = \"soon\"\n", line: 3, key: "worker.chat-agent.restart-delay",
            says: ["must be a duration such as \"100ms\", \"30s\", \"5m\" or \"1h30m\"", "not the string \"soon\""]),
        Bad(
            what: "zero ready-timeout", toml: header + "ready-timeout = \"0s\"\n", line: 3, key: "worker.chat-agent.ready-timeout",
            says: ["must be a duration", "above zero"]),
        Bad(
            what: "restart-delay above restart-max-delay",
            toml: header + "restart-max-delay = \"1m\"\nrestart-delay = \"10m\"\n", line: 4, key: "worker.chat-agent.restart-delay",
            says: ["10m is longer than restart-max-delay (1m)"]),
        Bad(
            what: "restart-delay above restart-max-delay by less than a second",
            toml: header + "restart-delay = \"61.5s\"\nrestart-max-delay = \"61.2s\"\n", line: 3,
            key: "worker.chat-agent.restart-delay", says: ["1m1.5s is longer than restart-max-delay (1m1.2s)"]),
        Bad(
            what: "bad restart mode", toml: header + "restart = \"sometimes\"\n", line: 3, key: "worker.chat-agent.restart",
            says: ["\"sometimes\" is not allowed", "use always, on-failure or never"]),
        Bad(
            what: "bad signal", toml: header + "stop-signal = \"SIGFOO\"\n", line: 3, key: "worker.chat-agent.stop-signal",
            says: ["\"SIGFOO\" is not a signal name", "use one of ABRT, CONT, HUP, INT, KILL, QUIT, TERM, USR1, USR2, WINCH"]),
        Bad(
            what: "bad env name", toml: header + "env = { GOOD = \"1\", 1BAD = \"x\" }\n", line: 3, key: "worker.chat-agent.env.1BAD",
            says: ["not a valid environment variable name", "letters, digits and '_'"]),
        Bad(
            what: "env value not a string", toml: header + "env = { LEVEL = 3 }\n", line: 3, key: "worker.chat-agent.env.LEVEL",
            says: ["must be a string"]),
        Bad(
            what: "bad secret name", toml: header + "secrets = [\"../etc/shadow\"]\n", line: 3, key: "worker.chat-agent.secrets",
            says: ["\"../etc/shadow\" is not a secret name", "a-z, 0-9, '.', '_' and '-'"]),
        Bad(
            what: "secret name starting with a dot", toml: header + "secrets = [\".hidden\"]\n", line: 3,
            key: "worker.chat-agent.secrets", says: ["\".hidden\" is not a secret name", "not starting with '.'"]),
        Bad(
            what: "secret name holding ..", toml: header + "secrets = [\"provider..key\"]\n", line: 3,
            key: "worker.chat-agent.secrets", says: ["\"provider..key\" is not a secret name"]),
        // Families: `PREFIX.*` only; '*' anywhere else is refused.
        Bad(
            what: "every secret at once", toml: header + "secrets = [\"*\"]\n", line: 3, key: "worker.chat-agent.secrets",
            says: ["\"*\" is not a secret family", "such as \"provider.*\"", "'*' may stand nowhere else"]),
        Bad(
            what: "a family without its dot", toml: header + "secrets = [\"provider*\"]\n", line: 3, key: "worker.chat-agent.secrets",
            says: ["\"provider*\" is not a secret family", "ending in \".*\""]),
        Bad(
            what: "a star inside a name", toml: header + "\nsecrets = [\"provider.*.api-key\"]\n", line: 4,
            key: "worker.chat-agent.secrets", says: ["\"provider.*.api-key\" is not a secret family"]),
        Bad(
            what: "a star as a suffix", toml: header + "secrets = [\"channel.telegram.token*\"]\n", line: 3,
            key: "worker.chat-agent.secrets", says: ["is not a secret family"]),
        Bad(
            what: "a family of everything", toml: header + "secrets = [\".*\"]\n", line: 3, key: "worker.chat-agent.secrets",
            says: ["\".*\" is not a secret family"]),
        Bad(
            what: "a family with an empty part", toml: header + "secrets = [\"provider..*\"]\n", line: 3,
            key: "worker.chat-agent.secrets", says: ["is not a secret family"]),
        Bad(
            what: "a family in upper case", toml: header + "secrets = [\"Provider.*\"]\n", line: 3, key: "worker.chat-agent.secrets",
            says: ["\"Provider.*\" is not a secret family", "parts of a-z, 0-9 and '-'"]),
        Bad(
            what: "a family part starting with a dash", toml: header + "secrets = [\"provider.-x.*\"]\n", line: 3,
            key: "worker.chat-agent.secrets", says: ["is not a secret family"]),
        Bad(
            what: "a family with an underscore", toml: header + "secrets = [\"my_provider.*\"]\n", line: 3,
            key: "worker.chat-agent.secrets", says: ["is not a secret family"]),
        Bad(
            what: "two stars", toml: header + "secrets = [\"provider.**\"]\n", line: 3, key: "worker.chat-agent.secrets",
            says: ["is not a secret family"]),
        Bad(
            what: "bad memory-max", toml: header + "memory-max = \"lots\"\n", line: 3, key: "worker.chat-agent.memory-max",
            says: ["must be a size such as \"512M\" or \"2G\""]),
        Bad(
            what: "zero memory-max", toml: header + "memory-max = 0\n", line: 3, key: "worker.chat-agent.memory-max",
            says: ["must be a size"]),
        Bad(
            what: "crash-loop burst zero", toml: header + "crash-loop = { burst = 0, window = \"60s\" }\n", line: 3,
            key: "worker.chat-agent.crash-loop.burst", says: ["0 is out of range; use 1 to 10000"]),
        Bad(
            what: "crash-loop burst too large", toml: header + "\n[worker.chat-agent.crash-loop]\nburst = 20000\n", line: 5,
            key: "worker.chat-agent.crash-loop.burst", says: ["20000 is out of range; use 1 to 10000"]),
        Bad(
            what: "crash-loop window zero", toml: header + "crash-loop = { window = \"0s\" }\n", line: 3,
            key: "worker.chat-agent.crash-loop.window", says: ["above zero"]),
        Bad(
            what: "crash-loop unknown key", toml: header + "crash-loop = { bursts = 3 }\n", line: 3,
            key: "worker.chat-agent.crash-loop.bursts", says: ["unknown key; allowed keys are burst, window, quarantine"]),
        Bad(
            what: "after names an invalid worker", toml: header + "after = [\"LLM\"]\n", line: 3, key: "worker.chat-agent.after",
            says: ["\"LLM\" is not a worker name"]),
        Bad(
            what: "a top-level key", toml: "version = 2\n" + header, line: 1, key: "version",
            says: ["unknown top-level key; a worker file holds only [worker.NAME] tables"]),
        Bad(
            what: "worker is not a table", toml: "worker = \"chat\"\n", line: 1, key: "worker",
            says: ["must be a table of workers, such as [worker.chat-agent]"]),
        Bad(
            what: "a worker that is not a table", toml: "[worker]\nchat = 1\n", line: 2, key: "worker.chat",
            says: ["must be a table, such as [worker.chat]"]),
        // A NUL byte would cut the C string the program receives: refused, never cut.
        Bad(
            what: "NUL in an exec argument", toml: "[worker.chat-agent]\nexec = [\"/bin/chat\", \"--name=a\\u0000b\"]\n", line: 2,
            key: "worker.chat-agent.exec", says: ["argument 2 holds a NUL byte (\\u0000)", "cannot be passed to a program"]),
        Bad(
            what: "NUL in the program path", toml: "[worker.chat-agent]\nexec = [\"/bin/chat\\u0000x\"]\n", line: 2,
            key: "worker.chat-agent.exec", says: ["argument 1 holds a NUL byte"]),
        Bad(
            what: "NUL in workdir", toml: header + "workdir = \"/var/lib/chat\\u0000/x\"\n", line: 3, key: "worker.chat-agent.workdir",
            says: ["holds a NUL byte"]),
        Bad(
            what: "NUL in user", toml: header + "user = \"aibox\\u0000root\"\n", line: 3, key: "worker.chat-agent.user",
            says: ["holds a NUL byte"]),
        Bad(
            what: "NUL in an env value", toml: header + "\n[worker.chat-agent.env]\nMODE = \"fast\\u0000slow\"\n", line: 5,
            key: "worker.chat-agent.env.MODE", says: ["holds a NUL byte"]),
        Bad(
            what: "NUL in an env name", toml: header + "env = { \"A\\u0000B\" = \"x\" }\n", line: 3,
            key: "worker.chat-agent.env.\"A\\u0000B\"", says: ["not a valid environment variable name"]),
        Bad(
            what: "NUL in a secret name", toml: header + "secrets = [\"api\\u0000key\"]\n", line: 3, key: "worker.chat-agent.secrets",
            says: ["entry 1 holds a NUL byte"]),
        // What the supervisor sets itself may not be overridden.
        Bad(
            what: "env overrides NOTIFY_SOCKET", toml: header + "env = { NOTIFY_SOCKET = \"/tmp/x\" }\n", line: 3,
            key: "worker.chat-agent.env.NOTIFY_SOCKET", says: ["set by the supervisor", "READY=1"]),
        Bad(
            what: "env overrides WATCHDOG_USEC", toml: header + "env.WATCHDOG_USEC = \"1\"\n", line: 3,
            key: "worker.chat-agent.env.WATCHDOG_USEC", says: ["set by the supervisor", "watchdog = "]),
        Bad(
            what: "env sets WATCHDOG_PID", toml: header + "env = { WATCHDOG_PID = \"1\" }\n", line: 3,
            key: "worker.chat-agent.env.WATCHDOG_PID", says: ["set by the supervisor", "ignores its watchdog"]),
        Bad(
            what: "env overrides CREDENTIALS_DIRECTORY", toml: header + "env = { CREDENTIALS_DIRECTORY = \"/etc\" }\n", line: 3,
            key: "worker.chat-agent.env.CREDENTIALS_DIRECTORY", says: ["set by the supervisor", "secrets = ["]),
        Bad(
            what: "env sets LISTEN_FDS", toml: header + "env = { LISTEN_FDS = \"3\" }\n", line: 3,
            key: "worker.chat-agent.env.LISTEN_FDS", says: ["set by the supervisor", "socket activation"]),
        Bad(
            what: "env sets AIBOX_ROOT", toml: header + "env = { AIBOX_ROOT = \"/\" }\n", line: 3,
            key: "worker.chat-agent.env.AIBOX_ROOT", says: ["set by the supervisor", "AIBOX_"]),
        // Lines are the file's lines whatever its line ends.
        Bad(
            what: "CRLF line ends", toml: "# chat\r\n[worker.chat-agent]\r\nexec = [\"/bin/chat\"]\r\n\r\nrestart = \"sometimes\" # no\r\n",
            line: 5, key: "worker.chat-agent.restart", says: ["\"sometimes\" is not allowed"]),
    ]

    @Test("a bad definition is reported with file, line, key and what is allowed", arguments: badDefinitions)
    func badDefinition(_ bad: Bad) throws {
        let errors = parseErrors(bad.toml)
        #expect(errors.count == 1, "\(errors)")
        let e = try #require(errors.first)
        #expect(e.location.file == vendorPath)
        #expect(e.location.line == bad.line)
        #expect(e.key == bad.key)
        for fragment in bad.says {
            #expect(e.message.contains(fragment), "message: \(e.message)")
        }
        // What a person reads: "file:line: key: message".
        #expect(e.description.hasPrefix("\(vendorPath):\(bad.line): \(bad.key.map { $0 + ": " } ?? "")"))
    }

    @Test("a TOML syntax error carries the parser's line")
    func syntaxError() throws {
        let text = """
            [worker.chat-agent]
            exec = ["/bin/chat"]
            restart = "always
            notify = true
            """
        let errors = parseErrors(text)
        #expect(errors.count == 1)
        let e = try #require(errors.first)
        #expect(e.location.file == vendorPath)
        #expect(e.location.line == 3)
        #expect(e.key == nil)
        #expect(e.message.hasPrefix("not valid TOML: "))
        #expect(e.message.contains("column"))
    }

    @Test("a key defined twice is a TOML error on the second line")
    func duplicateKey() throws {
        let errors = parseErrors("[worker.a]\nexec = [\"/a\"]\nexec = [\"/b\"]\n")
        #expect(errors.count == 1)
        #expect(errors.first?.location.line == 3)
        #expect(errors.first?.message.hasPrefix("not valid TOML") == true)
    }

    @Test("every error of a file is reported at once")
    func severalErrors() throws {
        let text = """
            [worker.one]
            exec = "/bin/one"
            restart = "sometimes"
            notfy = true

            [worker.Two]
            exec = ["/bin/two"]

            [worker.three]
            exec = ["/bin/three"]
            memory-max = "huge"
            stop-signal = "STOP"
            """
        let errors = parseErrors(text)
        let found = Set(errors.map { "\($0.location.line ?? 0) \($0.key ?? "")" })
        #expect(
            found == [
                "2 worker.one.exec", "3 worker.one.restart", "4 worker.one.notfy", "6 worker.Two",
                "11 worker.three.memory-max", "12 worker.three.stop-signal",
            ])
        #expect(errors.count == 6)
        #expect(errors.allSatisfy { $0.location.file == vendorPath })
        let hint = errors.first { $0.key == "worker.one.notfy" }
        #expect(hint?.message.contains("did you mean \"notify\"?") == true)
        // ConfigErrors prints one line per problem.
        #expect(ConfigErrors(errors).description.split(separator: "\n").count == 6)
    }

    // MARK: What a reload compares

    /// A key of a worker file changed, and the field of WorkerDefinition it sets.
    struct Change: Sendable, CustomTestStringConvertible {
        var key: String
        var field: String
        var line: String
        var testDescription: String { key }
    }

    static let changes: [Change] = [
        Change(key: "[worker.NAME]", field: "name", line: "[worker.w2]"),
        Change(key: "exec", field: "exec", line: "exec = [\"/usr/bin/w\", \"--flag\"]"),
        Change(key: "workdir", field: "workdir", line: "workdir = \"/var/lib/w\""),
        Change(key: "user", field: "user", line: "user = \"nobody\""),
        Change(key: "env", field: "env", line: "env = { A = \"1\" }"),
        Change(key: "secrets", field: "secrets", line: "secrets = [\"api-key\"]"),
        Change(key: "restart", field: "restart", line: "restart = \"never\""),
        Change(key: "restart-delay", field: "restartDelay", line: "restart-delay = \"1s\""),
        Change(key: "restart-max-delay", field: "restartMaxDelay", line: "restart-max-delay = \"10m\""),
        Change(key: "stable-after", field: "stableAfter", line: "stable-after = \"1m\""),
        Change(key: "crash-loop.burst", field: "crashLoop", line: "crash-loop = { burst = 9 }"),
        Change(key: "crash-loop.window", field: "crashLoop", line: "crash-loop = { window = \"5m\" }"),
        Change(key: "crash-loop.quarantine", field: "crashLoop", line: "crash-loop = { quarantine = \"1h\" }"),
        Change(key: "notify", field: "notify", line: "notify = true"),
        Change(key: "ready-http", field: "readyHTTP", line: "ready-http = \"http://127.0.0.1:8080/health\""),
        Change(key: "ready-timeout", field: "readyTimeout", line: "ready-timeout = \"5s\""),
        Change(key: "watchdog", field: "watchdog", line: "watchdog = \"5s\""),
        Change(key: "stop-signal", field: "stopSignal", line: "stop-signal = \"INT\""),
        Change(key: "stop-timeout", field: "stopTimeout", line: "stop-timeout = \"3s\""),
        Change(key: "after", field: "after", line: "after = [\"x\"]"),
        Change(key: "requires-hardware", field: "requiresHardware", line: "requires-hardware = [\"gpu\"]"),
        Change(key: "requires-files", field: "requiresFiles", line: "requires-files = [\"/var/lib/w/model.gguf\"]"),
        Change(key: "memory-max", field: "memoryMax", line: "memory-max = \"1G\""),
        Change(key: "critical", field: "critical", line: "critical = true"),
        Change(key: "control", field: "control", line: "control = [\"workers\"]"),
        Change(key: "box-config", field: "boxConfig", line: "box-config = true"),
    ]

    static func file(_ change: Change?) -> String {
        guard let change else { return "[worker.w]\nexec = [\"/usr/bin/w\"]\n" }
        switch change.field {
        case "name": return change.line + "\nexec = [\"/usr/bin/w\"]\n"
        case "exec": return "[worker.w]\n" + change.line + "\n"
        default: return "[worker.w]\nexec = [\"/usr/bin/w\"]\n" + change.line + "\n"
        }
    }

    /// Every stored field of a definition but its source, by name, as text.
    static func fields(_ d: WorkerDefinition) -> [String: String] {
        var out: [String: String] = [:]
        for child in Mirror(reflecting: d).children {
            if let label = child.label, label != "_source" { out[label] = String(describing: child.value) }
        }
        return out
    }

    @Test("a reload restarts a worker whose definition changed in any field", arguments: changes)
    func everyFieldChangesTheReloadPlan(_ change: Change) throws {
        let base = try #require(try parse(Self.file(nil)).get().first)
        let changed = try #require(try parse(Self.file(change)).get().first)
        // The line changes the field it is meant to, and only that one.
        let before = Self.fields(base), after = Self.fields(changed)
        #expect(before.keys.filter { before[$0] != after[$0] } == [change.field], "\(before) -> \(after)")
        #expect(base != changed)
        let plan = ReloadPlan(old: [base], new: [changed])
        if change.field == "name" {
            #expect(plan.removed == ["w"] && plan.added == ["w2"] && plan.changed.isEmpty)
        } else {
            #expect(plan.changed == ["w"] && plan.unchanged.isEmpty)
        }
    }

    @Test("the changes cover every field of a definition and every key of a file; only the source is no change")
    func changesCoverEveryField() throws {
        let base = try #require(try parse(Self.file(nil)).get().first)
        // A field added to WorkerDefinition without a change above fails here.
        #expect(Set(Self.fields(base).keys) == Set(Self.changes.map(\.field)))
        for key in WorkerConfig.allowedKeys {
            #expect(Self.changes.contains { $0.key == key || $0.key.hasPrefix(key + ".") }, "no change of \(key)")
        }
        var moved = base
        moved.source = SourceLocation(file: "/etc/aibox/workers.d/other.toml", line: 40)
        #expect(moved == base)
        #expect(ReloadPlan(old: [base], new: [moved]).unchanged == ["w"])
    }

    // MARK: Across files (WorkerConfig.load)

    @Test("load joins files and checks after across them")
    func loadJoinsFiles() throws {
        let a = ConfigFile(path: "/usr/lib/aibox/workers.d/a.toml", text: "[worker.llm-local]\nexec = [\"/llm\"]\n")
        let b = ConfigFile(path: "/etc/aibox/workers.d/b.toml", text: "[worker.chat]\nexec = [\"/chat\"]\nafter = [\"llm-local\"]\n")
        let workers = try WorkerConfig.load([a, b]).get()
        #expect(workers.map(\.name) == ["llm-local", "chat"])
        #expect(workers.map(\.source.file) == [a.path, b.path])
    }

    @Test("after naming no defined worker")
    func unknownAfter() throws {
        let text = """
            [worker.db]
            exec = ["/db"]

            [worker.chat]
            exec = ["/chat"]
            after = ["db", "ghost"]
            """
        let result = WorkerConfig.load([ConfigFile(path: "/etc/aibox/workers.d/chat.toml", text: text)])
        guard case .failure(let e) = result else {
            Issue.record("expected an error")
            return
        }
        #expect(e.errors.count == 1)
        let error = try #require(e.errors.first)
        #expect(error.location == SourceLocation(file: "/etc/aibox/workers.d/chat.toml", line: 6))
        #expect(error.key == "worker.chat.after")
        #expect(error.message.contains("\"ghost\" is not a defined worker; defined workers are chat, db"))
    }

    @Test("a dependency cycle is reported with the path that forms it")
    func cycle() throws {
        let a = ConfigFile(path: "/usr/lib/aibox/workers.d/a.toml", text: "\n[worker.a]\nexec = [\"/a\"]\nafter = [\"b\"]\n")
        let b = ConfigFile(
            path: "/usr/lib/aibox/workers.d/b.toml",
            text: "[worker.b]\nexec = [\"/b\"]\nafter = [\"c\"]\n[worker.c]\nexec = [\"/c\"]\nafter = [\"a\"]\n")
        guard case .failure(let e) = WorkerConfig.load([a, b]) else {
            Issue.record("a cycle was accepted")
            return
        }
        #expect(e.errors.count == 1)
        let error = try #require(e.errors.first)
        #expect(error.location == SourceLocation(file: a.path, line: 2))
        #expect(error.key == "worker.a.after")
        #expect(error.message.contains("a -> b -> c -> a"))
        #expect(error.message.contains("remove one of these dependencies"))
    }

    @Test("a worker depending on itself is a cycle")
    func selfCycle() throws {
        let f = ConfigFile(path: "/x.toml", text: "[worker.a]\nexec = [\"/a\"]\nafter = [\"a\"]\n")
        guard case .failure(let e) = WorkerConfig.load([f]) else {
            Issue.record("a self-dependency was accepted")
            return
        }
        #expect(e.errors.map(\.key) == ["worker.a.after"])
        #expect(e.errors.first?.message.contains("a -> a") == true)
    }

    @Test("the same worker in two files names both places")
    func duplicateAcrossFiles() throws {
        let first = ConfigFile(path: "/usr/lib/aibox/workers.d/chat.toml", text: "[worker.chat]\nexec = [\"/chat\"]\n")
        let second = ConfigFile(
            path: "/etc/aibox/workers.d/extra.toml", text: "[worker.other]\nexec = [\"/other\"]\n\n[worker.chat]\nexec = [\"/chat2\"]\n")
        guard case .failure(let e) = WorkerConfig.load([first, second]) else {
            Issue.record("a duplicate was accepted")
            return
        }
        #expect(e.errors.count == 1)
        let error = try #require(e.errors.first)
        #expect(error.location == SourceLocation(file: second.path, line: 4))
        #expect(error.key == "worker.chat")
        #expect(error.message.contains("defined again; it is already defined at /usr/lib/aibox/workers.d/chat.toml:1"))
    }

    @Test("load reports the errors of every file")
    func loadCollectsAllFiles() {
        let a = ConfigFile(path: "/a.toml", text: "[worker.a]\nexec = [\"a\"]\n")
        let b = ConfigFile(path: "/b.toml", text: "[worker.b]\n\nexec = [\"/b\"]\nrestart = \"maybe\"\n")
        guard case .failure(let e) = WorkerConfig.load([a, b]) else {
            Issue.record("bad files were accepted")
            return
        }
        #expect(e.errors.map { "\($0.location)" } == ["/a.toml:2", "/b.toml:4"])
    }
}

import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// The built products (`aibox-agent`, `aibox`), beside this test binary.
let agentProducts: String = {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    var dir = parentDirectory(String(decoding: buf[0..<max(n, 0)].map { UInt8(bitPattern: $0) }, as: UTF8.self))
    while !fileExists(dir + "/aibox-agent") && dir != "/" { dir = parentDirectory(dir) }
    return dir
}()
let agentBinary = agentProducts + "/aibox-agent"
let fixtures = parentDirectory(#filePath) + "/Fixtures"
/// The repository's root (scripts/, image/).
let repository = parentDirectory(parentDirectory(parentDirectory(#filePath)))

struct Output {
    var code: Int32
    var stdout: String
    var stderr: String
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(stdout.utf8))) as? [String: Any] ?? [:] }
}

/// Runs a program to completion, capturing its output; `input` (when given) is its standard input, then closed.
func runProgram(_ path: String, _ args: [String], environment: [String: String] = [:], input: String? = nil) throws -> Output {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    var env = ProcessInfo.processInfo.environment
    for (k, v) in environment { env[k] = v }
    p.environment = env
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    let stdin = input.map { _ in Pipe() }
    if let stdin { p.standardInput = stdin }
    try p.run()
    if let stdin, let input {
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
    }
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return Output(code: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}

/// A new directory under /tmp for one test (`aibox-PREFIX-` and six random characters; the
/// caller removes it).
func temporaryDirectory(_ prefix: String) throws -> String {
    var template = Array("/tmp/aibox-\(prefix)-XXXXXX".utf8CString)
    guard let d = mkdtemp(&template) else { throw SystemError("mkdtemp", errno: errno) }
    return String(cString: d)
}

/// llama-server (scripts/local-model) on its own on a free loopback port, with the test model,
/// ready (its /health answers) when this returns; SIGKILLed when dropped.
final class LlamaServer {
    let process = Process()
    let port: Int

    init(context: Int, extra: [String] = []) throws {
        let (server, gguf) = try LocalModelTests.localModel()
        port = try closedPort()
        process.executableURL = URL(fileURLWithPath: server)
        process.arguments = ["--host", "127.0.0.1", "--port", "\(port)", "--alias", "smollm2", "-m", gguf, "-c", "\(context)", "-t", "2"] + extra
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let port = port
        guard waitFor(.seconds(30), { (try? runProgram("/usr/bin/curl", ["-sf", "http://127.0.0.1:\(port)/health"]).code) == 0 }) else {
            throw SystemError("llama-server did not become healthy within 30 s", errno: 0)
        }
    }

    deinit {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

/// A python3 fixture server (Fixtures/NAME.py) as a real process on an ephemeral port of
/// 127.0.0.1: started with `--port 0 --port-file`, waited for, SIGKILLed with its directory
/// removed when dropped.
final class FixtureServer {
    let process = Process()
    let port: Int
    /// A directory of its own (the port file; whatever the fixture keeps).
    let dir: String
    var base: String { "http://127.0.0.1:\(port)" }

    /// `launcher`: a command it runs under (`ip netns exec NS`: on a test host of its own).
    init(_ script: String, launcher: [String] = [], _ arguments: (_ dir: String) throws -> [String] = { _ in [] }) throws {
        dir = try temporaryDirectory("fixture")
        let argv = launcher + ["/usr/bin/python3", fixtures + "/" + script, "--port", "0", "--port-file", dir + "/port"] + (try arguments(dir))
        process.executableURL = URL(fileURLWithPath: argv[0])
        process.arguments = Array(argv.dropFirst())
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        let deadline = Clock.monotonic() + .seconds(15)
        var found: Int?
        while found == nil && Clock.monotonic() < deadline && process.isRunning {
            found = readTextFile(dir + "/port").flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            if found == nil { usleep(20_000) }
        }
        guard let found else { throw SystemError("\(script) did not start", errno: 0) }
        port = found
    }

    deinit {
        // SIGKILL: a test runner may hand its children a blocked SIGTERM.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        _ = try? runProgram("/bin/rm", ["-rf", dir])
    }
}

/// The loopback fake of the cloud APIs (Fixtures/llm_fake.py) with its fault script and its
/// record of requests.
final class FakeProvider {
    let server: FixtureServer
    var port: Int { server.port }
    var base: String { server.base }

    init(apiKey: String? = nil) throws {
        server = try FixtureServer("llm_fake.py") { _ in apiKey.map { ["--api-key", $0] } ?? [] }
    }

    private func http(_ method: String, _ path: String, _ body: String? = nil) throws -> Data {
        let args = ["-s", "-X", method, base + path] + (body.map { ["-H", "content-type: application/json", "-d", $0] } ?? [])
        return Data(try runProgram("/usr/bin/curl", args).stdout.utf8)
    }

    /// Queues faults: `[{"fault": "status", "code": 429, ...}]` as JSON text.
    func script(_ faults: String) throws { _ = try http("POST", "/_fake/script", "{\"faults\": \(faults)}") }

    /// The requests received so far on `path`.
    func requests(path: String) throws -> [[String: Any]] {
        let all = (try JSONSerialization.jsonObject(with: try http("GET", "/_fake/requests")) as? [String: Any])?["requests"] as? [[String: Any]] ?? []
        return all.filter { $0["path"] as? String == path }
    }
}

/// A box root for the agent: box.toml with the providers given, their secrets, and
/// `aibox-agent` run against it.
final class AgentBox {
    let root: String
    var paths: Paths { Paths(root: root) }
    var environment: [String: String] = ["AGENT_LOCAL_LLM_TIER": "small", "CREDENTIALS_DIRECTORY": ""]

    init() throws {
        root = try temporaryDirectory("agent-test")
        try makeDirectories(paths.secrets, mode: 0o700)
        try makeDirectories(root + "/etc/aibox")
    }

    deinit { _ = try? runProgram("/bin/rm", ["-rf", root]) }

    /// box.toml: `body` after the fixed head (name, time zone, an admin key).
    func configure(_ body: String) throws {
        let head = """
            name = "agent-test"
            timezone = "UTC"
            [admin]
            ssh-keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@box"]

            """
        try writeFileAtomically(paths.boxConfig, Array((head + body).utf8))
    }

    /// box.toml with a cloud route (Anthropic's API at `cloud`, its key `key` stored as
    /// `provider.anthropic.api-key`) and a local one (a keyless Ollama at `local`), then `rest`
    /// ([routing], [budget]).
    func configureCloudAndLocal(cloud: String, key: String, local: String, _ rest: String) throws {
        try configure(
            """
            [providers.anthropic]
            kind = "anthropic"
            base-url = "\(cloud)"
            api-key-secret = "provider.anthropic.api-key"
            models = ["claude-3-5-haiku-latest"]

            [providers.local]
            kind = "ollama"
            base-url = "\(local)"
            models = ["llama3.2:3b"]

            \(rest)
            """)
        try secret("provider.anthropic.api-key", key)
    }

    /// box.toml with the provider fake as the local model (`llama3.2:3b` over Ollama's API), then `rest`.
    func configure(local llm: FakeProvider, _ rest: String) throws {
        try configure(
            """
            [providers.local]
            kind = "ollama"
            base-url = "\(llm.base)"
            models = ["llama3.2:3b"]

            \(rest)
            """)
    }

    func secret(_ name: String, _ value: String) throws {
        try writeFileAtomically(paths.secrets + "/" + name, Array(value.utf8), mode: 0o600)
    }

    func agent(_ args: [String]) throws -> Output {
        try runProgram(agentBinary, args + ["--root", root], environment: environment)
    }

    /// `aibox-agent run` on its own (no daemon, no notify socket), its output in `agent.log`;
    /// stopped with `killAndReap`.
    func startWorker() throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: agentBinary)
        p.arguments = ["run", "--root", root]
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        env["NOTIFY_SOCKET"] = nil
        p.environment = env
        p.standardOutput = FileHandle.nullDevice
        _ = creat(root + "/agent.log", 0o644)
        p.standardError = FileHandle(forWritingAtPath: root + "/agent.log")
        try p.run()
        return p
    }

    /// The channels' rows of `aibox-agent status --json` by channel: state ("up", "retrying", …).
    func channelStates() -> [String: String] {
        let rows = ((try? agent(["status", "--json"]).json["channels"]) as? [[String: Any]]) ?? []
        var out: [String: String] = [:]
        for r in rows { if let c = r["channel"] as? String { out[c] = r["state"] as? String ?? "" } }
        return out
    }

    func ask(_ text: String, role: String = "chat") throws -> Output { try agent(["ask", "--json", "--role", role, text]) }

    func events() throws -> [[String: Any]] { (try agent(["status", "--json"]).json["events"] as? [[String: Any]]) ?? [] }

    func routeStates(_ role: String) throws -> [[String: Any]] {
        ((try agent(["status", "--json"]).json["routes"] as? [String: Any])?[role] as? [[String: Any]]) ?? []
    }
}

/// SIGKILL, then waits for the process to be gone.
func killAndReap(_ p: Process) {
    kill(p.processIdentifier, SIGKILL)
    p.waitUntilExit()
}

/// A process's CPU time so far (user and system), in seconds, from /proc/PID/stat.
func cpuSeconds(_ pid: pid_t) -> Double {
    guard let stat = readTextFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return .nan }
    // After "pid (comm)": state is field 3; utime and stime are fields 14 and 15.
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return .nan }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// box.toml's table of a channel at its fake, with one owner and the default secret names.
enum ChannelTable {
    static func telegram(owner: String, at base: String) -> String {
        "[channels.telegram]\ntoken-secret = \"channel.telegram.token\"\nowners = [\"\(owner)\"]\nbase-url = \"\(base)\"\n"
    }

    static func discord(owner: String, at base: String) -> String {
        "[channels.discord]\ntoken-secret = \"channel.discord.token\"\nowners = [\"\(owner)\"]\nbase-url = \"\(base)\"\n"
    }

    static func slack(owner: String, at base: String) -> String {
        "[channels.slack]\nbot-token-secret = \"channel.slack.bot-token\"\napp-token-secret = \"channel.slack.app-token\"\n"
            + "owners = [\"\(owner)\"]\nbase-url = \"\(base)\"\n"
    }
}

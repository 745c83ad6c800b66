import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem
import CSystemd
import FoundationEssentials
import Glibc

/// Exit codes of aibox-agent: 0 answered, 1 no answer, 2 usage, 78 configuration (EX_CONFIG:
/// aibox parks the worker rather than restarting it into the same error).
public enum AgentExit {
    public static let failure: Int32 = 1
    public static let usage: Int32 = 2
    public static let configuration: Int32 = 78
}

/// What `ask --json` prints: one document, stable camelCase names.
public struct AskReport: Encodable {
    public struct Tokens: Encodable {
        var input: Int
        var output: Int
    }
    var ok: Bool
    var answer: String?
    var error: String?
    var role: String
    var route: String?
    var fallbacks: Int
    var attempts: [Attempt]
    var tokens: Tokens?
    var costUSD: Double?
    var costEstimated: Bool?
    var firstByteMs: Double?
    var totalMs: Double?
}

/// The console commands' work, apart from argument parsing (the executable's `main` is thin).
public enum AgentConsole {
    /// Loads the settings, or prints why not and exits 78.
    public static func settings(root: String) -> AgentSettings {
        // Days and months of the budget are the box's: its time zone, whatever TZ we inherited.
        let paths = Paths(root: root)
        switch AgentSettings.load(paths: paths, environment: currentEnvironment()) {
        case .success(let s):
            setTimeZone(s.config.timezone)
            return s
        case .failure(let e):
            writeStandardError("aibox-agent: configuration: \(e)\n")
            exit(AgentExit.configuration)
        }
    }

    public static func setTimeZone(_ zone: String) {
        setenv("TZ", zone == "UTC" ? "UTC0" : ":" + zone, 1)
        tzset()
    }

    /// agent.db, or — when it cannot be opened (the disk is full, the file system read-only) —
    /// a ledger in memory and the reason: the agent then answers from its local routes and
    /// makes no cloud call under a budget, whose spending it could not record.
    public static func openLedger(_ s: AgentSettings) -> (Ledger, problem: String?) {
        do {
            try makeDirectories(s.paths.agentDirectory, mode: 0o750)
            return (try Ledger(path: s.paths.agentDatabase), nil)
        } catch {
            let problem = "\(s.paths.agentDatabase): \(error)"
            writeStandardError("aibox-agent: cannot open \(problem); answering from local models only until it can\n")
            // An in-memory database opens whatever the disk does (SQLite needs no file for it).
            do { return (try Ledger(path: ":memory:"), problem) } catch {
                writeStandardError("aibox-agent: not even a database in memory opens: \(error)\n")
                exit(AgentExit.failure)
            }
        }
    }

    public static func assistant(_ s: AgentSettings, client: ProviderClient?) -> Assistant {
        let (ledger, problem) = openLedger(s)
        return Assistant(settings: s, ledger: ledger, client: client, ledgerProblem: problem)
    }

    /// `aibox-agent ask`: one answer; 0 when one came, 1 when none did.
    public static func ask(root: String, role: LLMRole, text: String, json: Bool) async -> Int32 {
        let s = settings(root: root)
        let client = ProviderClient()
        let assistant = assistant(s, client: client)
        let result = await assistant.ask(role: role, message: text)
        await client.shutdown()
        switch result {
        case .success(let a):
            if json {
                printJSON(
                    AskReport(
                        ok: true, answer: a.text, error: nil, role: role.rawValue, route: a.route.description,
                        fallbacks: a.attempts.count - 1, attempts: a.attempts,
                        tokens: a.usage.map { .init(input: $0.inputTokens, output: $0.outputTokens) }, costUSD: a.cost.dollars,
                        costEstimated: a.costEstimated, firstByteMs: a.firstByteMS, totalMs: a.totalMS))
            } else {
                writeStandardOutput(a.text + (a.text.hasSuffix("\n") ? "" : "\n"))
            }
            return 0
        case .failure(let f):
            if json {
                printJSON(
                    AskReport(
                        ok: false, answer: nil, error: f.description, role: role.rawValue, route: nil, fallbacks: max(0, f.attempts.count - 1),
                        attempts: f.attempts))
            } else {
                writeStandardError("aibox-agent: \(f)\n")
            }
            return AgentExit.failure
        }
    }

    public static func printJSON<T: Encodable>(_ v: T) {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? e.encode(v) else { return }
        writeStandardOutput(String(decoding: data, as: UTF8.self) + "\n")
    }

    /// `STATUS=` and readiness for the supervisor (nothing when not started by one).
    public static func notify(_ text: String) {
        _ = text.withCString { sd_notify(0, $0) }
    }
}

extension AgentConsole {
    /// `aibox-agent chat`: a conversation at a terminal or a serial line. Plain lines of at
    /// most 80 columns, no colour, no cursor movement: it works on a dumb serial console.
    /// The conversation is kept in agent.db (per terminal), so it goes on after a restart.
    public static func chat(root: String, role: LLMRole) async -> Int32 {
        let s = settings(root: root)
        let client = ProviderClient()
        let assistant = assistant(s, client: client)
        let terminal = ttyname(0).map { String(cString: $0) } ?? "stdin"
        let conversation = "console:" + terminal
        writeStandardOutput("Chat with the box (\(role.rawValue)). /new forgets the conversation; Ctrl-D or /quit ends.\n")
        while true {
            writeStandardOutput("> ")
            guard let line = readLine(strippingNewline: true) else { break }
            let text = line.trimmingCharacters(in: " \t\r")
            if text.isEmpty { continue }
            if text == "/quit" { break }
            if text == "/new" {
                await assistant.forget(conversation)
                writeStandardOutput("(a new conversation)\n")
                continue
            }
            let kept = await assistant.conversation(conversation)
            switch await assistant.ask(role: role, system: kept.system(nil), history: kept.messages, message: text) {
            case .success(let a):
                for paragraph in a.text.split(separator: "\n", omittingEmptySubsequences: false) {
                    writeStandardOutput(TextLayout.wrap(String(paragraph)).joined(separator: "\n") + "\n")
                }
                var note = "[\(a.route)"
                if let u = a.usage { note += ", \(u.inputTokens)+\(u.outputTokens) tokens" }
                if a.cost > .zero { note += ", \(a.cost)" }
                if a.attempts.count > 1 { note += ", after \(a.attempts.count - 1) fallback\(a.attempts.count == 2 ? "" : "s")" }
                writeStandardOutput(TextLayout.wrap(note + "]").joined(separator: "\n") + "\n")
                await assistant.remember(conversation, role: role, question: text, answer: a.text)
            case .failure(let f):
                writeStandardOutput(TextLayout.wrap("(no answer: \(f))").joined(separator: "\n") + "\n")
            }
        }
        writeStandardOutput("\n")
        _ = await assistant.conversation(conversation)  // a folding under way ends before the process does
        await client.shutdown()
        return 0
    }
}

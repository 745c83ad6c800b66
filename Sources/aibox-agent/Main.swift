import AIBoxAgent
import AIBoxCore
import AIBoxSystem
import ArgumentParser
import Glibc

@main
struct AIBoxAgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "aibox-agent",
        abstract: "The AI Box's assistant: answers from a local model and cloud models, within a budget.",
        subcommands: [Ask.self, Chat.self, Status.self, Run.self])

    /// argument-parser exits 64 on a usage error; AIBox's commands exit 2.
    static func main() async {
        openStandardDescriptors()
        // A parent may hand down blocked or ignored signals; the worker must stop on SIGTERM.
        for sig in [SIGTERM, SIGINT] { setSignalAction(sig, SIG_DFL) }
        var none = sigset_t()
        sigemptyset(&none)
        pthread_sigmask(SIG_SETMASK, &none, nil)
        do {
            var command = try parseAsRoot()
            if var c = command as? AsyncParsableCommand {
                try await c.run()
            } else {
                try command.run()
            }
        } catch {
            if exitCode(for: error) == .validationFailure {
                writeStandardError(fullMessage(for: error) + "\n")
                Glibc.exit(2)
            }
            exit(withError: error)
        }
    }
}

struct RootOption: ParsableArguments {
    @Option(help: "The box's root directory (default: $AIBOX_ROOT, else /).")
    var root: String?

    var path: String { root ?? currentEnvironment()["AIBOX_ROOT"] ?? "/" }
}

struct Ask: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "One answer through the router.")
    @OptionGroup var root: RootOption
    @Option(help: "chat, code or reasoning.") var role: String = "chat"
    @Flag(help: "One JSON document: the answer, the route taken, fallbacks, tokens, cost.") var json = false
    @Argument(help: "What to ask.") var text: [String]

    func validate() throws {
        guard LLMRole(rawValue: role) != nil else { throw ValidationError("--role is chat, code or reasoning, not \"\(role)\"") }
        guard !text.joined().isEmpty else { throw ValidationError("say what to ask") }
    }

    func run() async throws {
        let code = await AgentConsole.ask(root: root.path, role: LLMRole(rawValue: role)!, text: text.joined(separator: " "), json: json)
        if code != 0 { throw ExitCode(code) }
    }
}

struct Chat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "A conversation at the console (80 columns, a dumb terminal is fine).")
    @OptionGroup var root: RootOption
    @Option(help: "chat, code or reasoning.") var role: String = "chat"

    func validate() throws {
        guard LLMRole(rawValue: role) != nil else { throw ValidationError("--role is chat, code or reasoning, not \"\(role)\"") }
    }

    func run() async throws {
        let code = await AgentConsole.chat(root: root.path, role: LLMRole(rawValue: role)!)
        if code != 0 { throw ExitCode(code) }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Routes and breakers, budget spent and left.")
    @OptionGroup var root: RootOption
    @Flag(help: "One JSON document.") var json = false

    func run() async throws {
        await AgentConsole.status(root: root.path, json: json)
    }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The worker itself, as aibox starts it.")
    @OptionGroup var root: RootOption

    func run() async throws {
        await AgentConsole.runWorker(root: root.path)
    }
}

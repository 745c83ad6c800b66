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
        subcommands: [Ask.self, Chat.self, Status.self, Models.self, Pair.self, Owners.self, Run.self])

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

struct Models: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The local model's weights (GGUF) on the box: list, pull, remove.",
        subcommands: [ModelsList.self, ModelsPull.self, ModelsRemove.self], defaultSubcommand: ModelsList.self)
}

struct ModelsList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "Models on the box and in the catalog; * marks the default.")
    @OptionGroup var root: RootOption
    @Flag(help: "One JSON document.") var json = false

    func run() throws {
        let code = AgentConsole.modelsList(root: root.path, json: json)
        if code != 0 { throw ExitCode(code) }
    }
}

struct ModelsPull: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull",
        abstract: "Downloads a model (resumed after a cut, checked against its SHA-256); no NAME: the hardware tier's default.")
    @OptionGroup var root: RootOption
    @Argument(help: "A model of the catalog, or any name with --url and --sha256.") var name: String?
    @Option(help: "Where its GGUF file is (http or https), for a model not in the catalog.") var url: String?
    @Option(help: "The file's SHA-256 (64 hex digits), with --url.") var sha256: String?
    @Option(help: "The file's size in bytes, with --url (checked against the free space first).") var size: UInt64?
    @Flag(name: .customLong("default"), help: "Make it the default model (default.gguf) the local model worker serves.")
    var makeDefault = false
    @Flag(help: "One JSON document.") var json = false

    func run() throws {
        let code = AgentConsole.modelsPull(
            root: root.path, name: name, url: url, sha256: sha256, size: size, makeDefault: makeDefault, json: json)
        if code != 0 { throw ExitCode(code) }
    }
}

struct ModelsRemove: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "remove", abstract: "Removes a model from the box.")
    @OptionGroup var root: RootOption
    @Argument(help: "The model.") var name: String
    @Flag(help: "Remove it even when it is the default (default.gguf goes with it).") var force = false
    @Flag(help: "One JSON document.") var json = false

    func run() throws {
        let code = AgentConsole.modelsRemove(root: root.path, name: name, force: force, json: json)
        if code != 0 { throw ExitCode(code) }
    }
}

struct Pair: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A one-time code (valid 10 minutes): whoever sends it to the bot in a direct message becomes an owner.")
    @OptionGroup var root: RootOption
    @Argument(help: "telegram, slack, discord or whatsapp.") var channel: String
    @Flag(help: "One JSON document.") var json = false

    func run() throws {
        let code = AgentConsole.pair(root: root.path, channel: channel, json: json)
        if code != 0 { throw ExitCode(code) }
    }
}

struct Owners: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Who may use the box over each channel: box.toml's owners and those who paired.",
        subcommands: [OwnersList.self, OwnersRevoke.self], defaultSubcommand: OwnersList.self)
}

struct OwnersList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Every owner of every channel.")
    @OptionGroup var root: RootOption
    @Flag(help: "One JSON document.") var json = false

    func run() throws {
        let code = AgentConsole.ownersList(root: root.path, json: json)
        if code != 0 { throw ExitCode(code) }
    }
}

struct OwnersRevoke: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke", abstract: "Removes an owner who paired (box.toml's owners are changed with aibox setup).")
    @OptionGroup var root: RootOption
    @Argument(help: "telegram, slack, discord or whatsapp.") var channel: String
    @Argument(help: "The owner's id, as `owners` lists it.") var id: String
    @Flag(help: "One JSON document.") var json = false

    func run() throws {
        let code = AgentConsole.ownersRevoke(root: root.path, channel: channel, id: id, json: json)
        if code != 0 { throw ExitCode(code) }
    }
}

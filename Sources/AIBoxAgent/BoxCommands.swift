import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem
import NIOPosix

/// aibox's control socket as the worker uses it: its own (`AIBOX_CONTROL_SOCKET`, granted by
/// its definition's `control`). The client blocks until the answer or its timeout, so each
/// request runs on NIO's thread pool: a hung daemon holds a pool thread for a few seconds,
/// never one of Swift's cooperative threads that the channels run on.
public struct BoxControl: Sendable {
    public let socket: String?
    public let timeout: Duration

    public init(socket: String?, timeout: Duration = .seconds(5)) {
        self.socket = socket
        self.timeout = timeout
    }

    public func request<T: Decodable & Sendable>(_ r: ControlRequest, as: T.Type) async -> Result<T, BoxReplies.Unreachable> {
        guard let socket else { return .failure(.noSocket) }
        let client = DaemonClient(socket: socket, timeout: timeout)
        let answer: Result<T?, DaemonClientError>
        do {
            answer = try await NIOThreadPool.singleton.runIfActive {
                do throws(DaemonClientError) { return .success(try client.request(r, as: T.self)) } catch { return .failure(error) }
            }
        } catch {
            return .failure(.failed("no thread to ask it on (\(error))"))
        }
        switch answer {
        case .success(let value?): return .success(value)
        case .success(nil): return .failure(.notRunning)
        case .failure(.notResponding(let t)): return .failure(.notResponding(seconds: Int(t.components.seconds)))
        case .failure(.permissionDenied): return .failure(.permissionDenied)
        case .failure(.refused(let why)): return .failure(.refused(why))
        case .failure(.failed(let why)): return .failure(.failed(why))
        }
    }
}

/// The owner's commands that act on the box (/workers, /restart, /logs, /update) through
/// aibox's control socket, and /model on the assistant's routes. Confirmation codes for
/// `/update install` are kept per chat, in memory (a restart forgets them: asked again).
public actor BoxCommands {
    let settings: AgentSettings
    let assistant: Assistant
    let control: BoxControl
    /// This worker's own name (`AIBOX_WORKER`): it does not restart itself from a chat.
    let ownName: String?
    private var confirmations = Confirmations()
    private var random = SystemRandomNumberGenerator()

    public init(settings: AgentSettings, assistant: Assistant, control: BoxControl? = nil, ownName: String? = currentEnvironment()["AIBOX_WORKER"]) {
        self.settings = settings
        self.assistant = assistant
        self.control = control ?? BoxControl(socket: settings.controlSocket)
        self.ownName = ownName
    }

    /// The reply to a box command from the owner in `chat` (a conversation key).
    public func reply(_ c: ChatCommand, chat: String) async -> String {
        switch c {
        case .workers:
            return await ask(ControlRequest(command: "workers"), as: [WorkerView].self) { BoxReplies.workers($0) }
        case .restart(let worker):
            if worker == ownName {
                // The message would be handled again after the restart, and restart it again.
                return "I cannot restart myself from a chat (I would stop before answering, and again after). At the console: aibox restart \(worker)."
            }
            return await ask(ControlRequest(command: "restart", worker: worker), as: WorkerView.self) { BoxReplies.restarted($0, previousPID: nil) }
        case .logs(let worker, let lines):
            let redactor = ownSecrets()
            return await ask(ControlRequest(command: "logs", worker: worker, lines: lines), as: LogLines.self) {
                BoxReplies.logs($0, redactor: redactor, timeOfDay: BoxCommands.timeOfDay)
            }
        case .updateCheck:
            return await startUpdate("update-check")
        case .updateInstall(nil):
            let code = confirmations.issue(chat, now: Clock.monotonic(), using: &random)
            return BoxReplies.confirmInstall(code: code.code, minutes: Int(Confirmations.validity.components.seconds / 60))
        case .updateInstall(let typed?):
            guard confirmations.confirm(chat, typed: typed, now: Clock.monotonic()) else {
                let code = confirmations.issue(chat, now: Clock.monotonic(), using: &random)
                return BoxReplies.wrongCode + " " + BoxReplies.confirmInstall(code: code.code, minutes: Int(Confirmations.validity.components.seconds / 60))
            }
            return await startUpdate("update-install")
        case .model(let role, let route):
            switch await assistant.override(role, with: route) {
            case .failure(let e): return e.description + "."
            case .success(let chain):
                let routes = chain.map(\.key.description).joined(separator: " > ")
                if route == nil { return "\(role.rawValue) is back to box.toml's routes: \(routes)." }
                return "\(role.rawValue) now goes to \(routes) until I restart (/model \(role.rawValue) default goes back)."
            }
        case .status, .budget, .help:
            return ChatCommand.helpText  // answered by the hub itself; never sent here
        }
    }

    private func startUpdate(_ command: String) async -> String {
        struct Started: Decodable, Sendable { var started: Bool }
        return await ask(ControlRequest(command: command), as: Started.self) { _ in BoxReplies.updateStarted }
    }

    private func ask<T: Decodable & Sendable>(_ r: ControlRequest, as: T.Type, _ reply: (T) -> String) async -> String {
        switch await control.request(r, as: T.self) {
        case .success(let value): return reply(value)
        case .failure(let u): return BoxReplies.unreachable(u)
        }
    }

    /// The agent's own secrets (its credentials' copies), taken out of what it passes on.
    private func ownSecrets() -> SecretRedactor {
        SecretRedactor(listDirectory(settings.secretsDirectory).compactMap { settings.secret($0)?.reveal() })
    }

    /// "HH:MM:SS" today, else "yyyy-mm-dd HH:MM:SS".
    static func timeOfDay(_ ms: Int64) -> String {
        let stamp = formatLocalTime(milliseconds: ms), today = formatLocalTime(milliseconds: Clock.wallMilliseconds())
        return stamp.prefix(10) == today.prefix(10) ? String(stamp.suffix(8)) : stamp
    }
}

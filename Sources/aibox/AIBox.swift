import AIBoxCore
import AIBoxDaemon
import AIBoxSystem
import ArgumentParser
import FoundationEssentials
import Glibc
import Logging

/// Exit codes: 0 success, 1 failure, 2 usage (argument-parser), 3 the daemon is not running.
enum ExitCodes {
    static let failure: Int32 = 1
    static let daemonNotRunning: Int32 = 3
}

@main
struct AIBox: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "aibox",
        abstract: "The AI Box supervisor: runs, watches and restarts the box's agent workers.",
        version: AIBoxVersion.current,
        subcommands: [
            Daemon.self, Status.self, Workers.self, Start.self, Stop.self, Restart.self, Logs.self, Events.self, Reload.self,
            Hardware.self, Setup.self, FactoryReset.self, BundleCommand.self, Update.self,
        ])
}

/// `--root DIR` (or $AIBOX_ROOT): every path is taken under DIR.
struct RootOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Take every path under DIR (also $AIBOX_ROOT); default /.", valueName: "DIR"))
    var root: String?

    var paths: Paths {
        let r = root ?? currentEnvironment()["AIBOX_ROOT"] ?? "/"
        if r.hasPrefix("/") { return Paths(root: r) }
        return Paths(root: currentDirectory() + "/" + r)
    }

    /// Without root rights, `/` is not ours: say what to pass instead of failing on EACCES.
    func requireWritableRoot() throws {
        let p = paths
        if p.root == "/" && geteuid() != 0 {
            throw CLIError(
                "aibox needs root rights to use the system paths under /. Run it as root, or pass --root DIR "
                    + "(or set AIBOX_ROOT) to use a directory of your own, e.g. --root ~/.aibox-root")
        }
    }
}

struct CLIError: Error, CustomStringConvertible {
    var description: String
    var code: Int32 = ExitCodes.failure
    init(_ d: String, code: Int32 = ExitCodes.failure) {
        description = d
        self.code = code
    }
}

/// Prints an error to stderr and exits with its code.
func fail(_ error: CLIError) -> Never {
    writeStandardError("aibox: \(error.description)\n")
    exit(error.code)
}

func printJSON<T: Encodable>(_ value: T) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
    let data = (try? encoder.encode(value)) ?? Data("null".utf8)
    writeStandardOutput(String(decoding: data, as: UTF8.self) + "\n")
}

/// The daemon's answer: `{"ok": true, "data": …}` or `{"ok": false, "error": "…"}`.
struct Envelope<T: Decodable>: Decodable {
    var ok: Bool
    var data: T?
    var error: String?
}

enum DaemonClient {
    /// Sends one request; nil when the daemon is not running.
    static func request<T: Decodable>(_ paths: Paths, _ req: ControlRequest, as: T.Type) throws -> T? {
        let connection: ControlConnection?
        do {
            connection = try ControlConnection(path: paths.controlSocket)
        } catch let e where e.errno == EACCES || e.errno == EPERM {
            throw CLIError(
                "permission denied on \(paths.controlSocket): run as root or as a member of the socket's group (aibox)")
        } catch {
            throw CLIError("cannot reach the daemon: \(error)")
        }
        guard let conn = connection else { return nil }
        let line = String(decoding: try JSONEncoder().encode(req), as: UTF8.self)
        try conn.send(line: line)
        guard let answer = conn.readLine() else { throw CLIError("the daemon closed the connection without answering") }
        let env = try JSONDecoder().decode(Envelope<T>.self, from: Data(answer.utf8))
        guard env.ok, let data = env.data else { throw CLIError(env.error ?? "the daemon refused the request") }
        return data
    }
}

func formatTime(_ ms: Int64?) -> String {
    ms.map { formatLocalTime(milliseconds: $0) } ?? "-"
}

import AIBoxCore
import AIBoxDaemon
import AIBoxSystem
import ArgumentParser
import FoundationEssentials
import Glibc
import Logging

/// Exit codes: 0 success, 1 failure, 2 usage (argument-parser), 3 the daemon is not running,
/// 4 the daemon is there but did not answer in time (stopped or hung).
enum ExitCodes {
    static let failure: Int32 = 1
    static let daemonNotRunning: Int32 = 3
    static let daemonNotResponding: Int32 = 4
}

@main
struct AIBox: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "aibox",
        abstract: "The AI Box supervisor: runs, watches and restarts the box's agent workers.",
        version: AIBoxVersion.current,
        subcommands: [
            Daemon.self, Status.self, Workers.self, Start.self, Stop.self, Restart.self, Logs.self, Events.self, Reload.self,
            Hardware.self, Setup.self, FactoryReset.self, BundleCommand.self, Update.self, StickSeedCommand.self,
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

/// The CLI's side of the control socket: AIBoxSystem's `DaemonClient` with the CLI's
/// timeout (`AIBOX_TIMEOUT`), messages and exit codes.
enum DaemonCLI {
    /// `AIBOX_TIMEOUT` ("10s", "500ms", or seconds) or the default.
    static func timeout() throws(CLIError) -> Duration {
        guard let text = currentEnvironment()["AIBOX_TIMEOUT"] else { return DaemonClient.defaultTimeout }
        if let d = parseDuration(text) ?? Double(text).flatMap({ $0 >= 0 ? Duration.nanoseconds(Int64($0 * 1e9)) : nil }), d > .zero {
            return d
        }
        throw CLIError("AIBOX_TIMEOUT=\"\(text)\" is not a duration; use seconds or a duration such as 10s or 500ms")
    }

    /// Sends one request; nil when the daemon is not running. A daemon that does not answer
    /// within the timeout is `notResponding` (exit 4), whatever the command.
    static func request<T: Decodable>(_ paths: Paths, _ req: ControlRequest, as: T.Type) throws -> T? {
        let timeout = try timeout()
        do {
            return try DaemonClient(socket: paths.controlSocket, timeout: timeout).request(req, as: T.self)
        } catch {
            switch error {
            case .permissionDenied:
                throw CLIError(
                    "permission denied on \(paths.controlSocket): run as root or as a member of the socket's group (aibox)")
            case .notResponding: throw notResponding(paths, timeout)
            case .refused(let why), .failed(let why): throw CLIError(why)
            }
        }
    }

    static func notResponding(_ paths: Paths, _ timeout: Duration) -> CLIError {
        let who = DaemonClient.pid(paths).map { "the daemon (pid \($0))" } ?? "the daemon"
        return CLIError(
            "\(who) did not answer within \(timeout.aiboxText): it is stopped or hung (systemctl status aibox; "
                + "its watchdog restarts a hung daemon). AIBOX_TIMEOUT=DURATION waits longer",
            code: ExitCodes.daemonNotResponding)
    }
}

func formatTime(_ ms: Int64?) -> String {
    ms.map { formatLocalTime(milliseconds: $0) } ?? "-"
}

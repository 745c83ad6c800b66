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

/// The daemon's answer: `{"ok": true, "data": …}` or `{"ok": false, "error": "…"}`.
struct Envelope<T: Decodable>: Decodable {
    var ok: Bool
    var data: T?
    var error: String?
}

enum DaemonClient {
    /// How long a command waits for the daemon's answer; `AIBOX_TIMEOUT` changes it.
    static let defaultTimeout: Duration = .seconds(3)

    /// `AIBOX_TIMEOUT` ("10s", "500ms", or seconds) or the default.
    static func timeout() throws(CLIError) -> Duration {
        guard let text = currentEnvironment()["AIBOX_TIMEOUT"] else { return defaultTimeout }
        if let d = parseDuration(text) ?? Double(text).flatMap({ $0 >= 0 ? Duration.nanoseconds(Int64($0 * 1e9)) : nil }), d > .zero {
            return d
        }
        throw CLIError("AIBOX_TIMEOUT=\"\(text)\" is not a duration; use seconds or a duration such as 10s or 500ms")
    }

    /// Sends one request; nil when the daemon is not running. A daemon that does not answer
    /// within the timeout is `notResponding` (exit 4), whatever the command.
    static func request<T: Decodable>(_ paths: Paths, _ req: ControlRequest, as: T.Type) throws -> T? {
        let timeout = try timeout()
        let connection: ControlConnection?
        do {
            connection = try ControlConnection(path: paths.controlSocket, timeout: timeout)
        } catch let e where e.errno == EACCES || e.errno == EPERM {
            throw CLIError(
                "permission denied on \(paths.controlSocket): run as root or as a member of the socket's group (aibox)")
        } catch let e where e.errno == ETIMEDOUT {
            throw notResponding(paths, timeout)
        } catch {
            throw CLIError("cannot reach the daemon: \(error)")
        }
        guard let conn = connection else { return nil }
        let line = String(decoding: try JSONEncoder().encode(req), as: UTF8.self)
        let answer: String?
        do {
            try conn.send(line: line)
            answer = try conn.readLine()
        } catch let e where e.errno == ETIMEDOUT {
            throw notResponding(paths, timeout)
        } catch {
            throw CLIError("the daemon closed the connection without answering (\(error))")
        }
        guard let answer else { throw CLIError("the daemon closed the connection without answering") }
        let env = try JSONDecoder().decode(Envelope<T>.self, from: Data(answer.utf8))
        guard env.ok, let data = env.data else { throw CLIError(env.error ?? "the daemon refused the request") }
        return data
    }

    /// The daemon's pid, from its pid file.
    static func pid(_ paths: Paths) -> Int32? {
        readTextFile(paths.pidFile).flatMap { Int32($0.trimmingCharacters(in: " \n")) }
    }

    static func notResponding(_ paths: Paths, _ timeout: Duration) -> CLIError {
        let who = pid(paths).map { "the daemon (pid \($0))" } ?? "the daemon"
        return CLIError(
            "\(who) did not answer within \(timeout.aiboxText): it is stopped or hung (systemctl status aibox; "
                + "its watchdog restarts a hung daemon). AIBOX_TIMEOUT=DURATION waits longer",
            code: ExitCodes.daemonNotResponding)
    }
}

func formatTime(_ ms: Int64?) -> String {
    ms.map { formatLocalTime(milliseconds: $0) } ?? "-"
}

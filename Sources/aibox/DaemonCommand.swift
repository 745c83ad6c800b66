import AIBoxCore
import AIBoxDaemon
import AIBoxSystem
import ArgumentParser
import FoundationEssentials
import Glibc
import Logging

struct Daemon: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the supervisor in the foreground (systemd Type=notify).")

    @OptionGroup var options: RootOptions

    @Option(help: "Where worker output goes: auto (the journal when there is one and --root is /), journal, files.")
    var logTarget: String = "auto"

    @Option(help: "Log level of the daemon's own messages: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    func run() throws {
        // Before anything can start a thread: signals are taken through the event loop only.
        // (Blocked, a signal reaches the signalfd even when a parent left it ignored.)
        EventLoop.blockSignals([SIGCHLD, SIGTERM, SIGINT, SIGHUP])
        setSignalAction(SIGPIPE, SIG_IGN)
        try options.requireWritableRoot()
        let paths = options.paths
        let target: LogTarget
        switch logTarget {
        case "auto": target = (Journal.isAvailable && paths.root == "/") ? .journal : .files
        case "journal": target = .journal
        case "files": target = .files
        default: throw ValidationError("--log-target must be auto, journal or files, not \"\(logTarget)\"")
        }
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "aibox")
        let code: Int32
        do {
            let supervisor = try Supervisor(
                options: DaemonOptions(paths: paths, logTarget: target, environment: currentEnvironment()),
                logger: logger)
            code = try supervisor.run()
        } catch let e as SystemError {
            fail(CLIError("cannot run the daemon: \(e)"))
        }
        if code != 0 { throw ExitCode(code) }
    }
}

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Reload worker definitions; only changed workers restart, an invalid set changes nothing.")
    @OptionGroup var options: RootOptions

    func run() throws {
        struct Plan: Decodable { var added, changed, removed, unchanged: [String] }
        do {
            guard let plan = try DaemonCLI.request(options.paths, ControlRequest(command: "reload"), as: Plan.self) else {
                fail(CLIError("the daemon is not running (no \(options.paths.controlSocket))", code: ExitCodes.daemonNotRunning))
            }
            print("reloaded: added \(plan.added), changed \(plan.changed), removed \(plan.removed); \(plan.unchanged.count) unchanged")
        } catch let e as CLIError {
            fail(e)
        }
    }
}

/// `start|stop|restart WORKER`.
protocol WorkerAction: ParsableCommand {
    var options: RootOptions { get }
    var worker: String { get }
    static var verb: String { get }
}

extension WorkerAction {
    func run() throws {
        do {
            guard
                let view = try DaemonCLI.request(options.paths, ControlRequest(command: Self.verb, worker: worker), as: WorkerView.self)
            else {
                fail(
                    CLIError(
                        "the daemon is not running (no \(options.paths.controlSocket)); start it with `aibox daemon`",
                        code: ExitCodes.daemonNotRunning))
            }
            print("\(view.name): \(view.state)\(view.pid.map { " (pid \($0))" } ?? "")")
        } catch let e as CLIError {
            fail(e)
        }
    }
}

struct Start: WorkerAction {
    static let configuration = CommandConfiguration(abstract: "Ask the daemon to start a worker (also out of quarantine or parking).")
    static let verb = "start"
    @OptionGroup var options: RootOptions
    @Argument(help: "The worker's name.") var worker: String
}

struct Stop: WorkerAction {
    static let configuration = CommandConfiguration(abstract: "Ask the daemon to stop a worker until started again.")
    static let verb = "stop"
    @OptionGroup var options: RootOptions
    @Argument(help: "The worker's name.") var worker: String
}

struct Restart: WorkerAction {
    static let configuration = CommandConfiguration(abstract: "Ask the daemon to restart a worker gracefully.")
    static let verb = "restart"
    @OptionGroup var options: RootOptions
    @Argument(help: "The worker's name.") var worker: String
}

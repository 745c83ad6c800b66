import AIBoxCore
import AIBoxSystem
import ArgumentParser
import FoundationEssentials
import Glibc

/// Worker views from the daemon, or from the database when it is down.
func loadWorkers(_ paths: Paths) throws -> (views: [WorkerView], running: Bool) {
    if let views = try DaemonClient.request(paths, ControlRequest(command: "workers"), as: [WorkerView].self) {
        return (views, true)
    }
    guard let reader = try? StoreReader(path: paths.database) else { return ([], false) }
    let records: [WorkerRecord]
    do {
        records = try reader.workers()
    } catch {
        throw CLIError("the daemon is not running, and its database \(paths.database) cannot be read: \(error)")
    }
    let views = records.map { r in
        WorkerView(
            name: r.name, state: r.state, pid: nil, restarts: r.restarts,
            lastExit: (r.lastExitCode != nil || r.lastExitSignal != nil)
                ? .init(code: r.lastExitCode, signal: r.lastExitSignal, at: r.lastExitAt) : nil,
            status: r.status, reason: r.reason, waitingFor: [], critical: false)
    }
    return (views, false)
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "One screen: the daemon, the workers, the database.")
    @OptionGroup var options: RootOptions
    @Flag(help: "One JSON document on stdout.") var json = false

    func run() throws {
        let paths = options.paths
        do {
            if let status = try DaemonClient.request(paths, ControlRequest(command: "status"), as: StatusView.self) {
                let workers = try loadWorkers(paths).views
                if json { printJSON(status) } else { printHuman(status, workers) }
                return
            }
        } catch let e as CLIError { fail(e) }
        // The daemon is down: answer from the database, and say so.
        let (workers, _) = (try? loadWorkers(paths)) ?? ([], false)
        var counts: [String: Int] = [:]
        for w in workers { counts[w.state, default: 0] += 1 }
        let status = StatusView(
            daemonRunning: false, daemonPid: nil, version: AIBoxVersion.current, workers: counts, workerCount: workers.count,
            databaseProblem: fileExists(paths.database) ? nil : "no database at \(paths.database)", configProblem: nil, logTarget: nil,
            provisioned: fileExists(paths.boxConfig))
        if json { printJSON(status) } else { printHuman(status, workers) }
        throw ExitCode(ExitCodes.daemonNotRunning)
    }

    func printHuman(_ s: StatusView, _ workers: [WorkerView]) {
        print("aibox \(s.version)")
        if let p = s.provisioned {
            print("setup:     " + (p ? "done" : "WAITING FOR SETUP — run aibox setup, or insert a stick labelled AIBOX"))
        }
        print(
            "daemon:    "
                + (s.daemonRunning ? "running (pid \(s.daemonPid ?? 0))" : "NOT RUNNING — showing the last state recorded in the database"))
        let counts = s.workers.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        print("workers:   \(s.workerCount)\(counts.isEmpty ? "" : " (\(counts))")")
        print("database:  \(s.databaseProblem ?? "ok")")
        if let c = s.configProblem { print("config:    reload refused: \(c)") }
        if let l = s.logTarget { print("logs:      \(l)") }
        if let c = s.containment { print("contained: \(c)") }
        if let h = s.hardware { print("hardware:  \(h)") }
        if let h = s.hotplug { print("hotplug:   \(h)") }
        if let u = s.update { print("system:    \(u)") }
        if !workers.isEmpty {
            print("")
            printWorkerTable(workers)
        }
    }
}

func printWorkerTable(_ workers: [WorkerView]) {
    let rows = workers.map { w -> [String] in
        var last = "-"
        if let e = w.lastExit {
            last = e.code.map { "code \($0)" } ?? e.signal.map { Signals.name(of: $0) } ?? "-"
        }
        return [w.name, w.state, w.pid.map(String.init) ?? "-", String(w.restarts), last, w.reason ?? w.status ?? ""]
    }
    let header = ["NAME", "STATE", "PID", "RESTARTS", "LAST EXIT", "DETAIL"]
    var widths = header.map(\.count)
    for r in rows { for (i, c) in r.enumerated() where i < 5 { widths[i] = max(widths[i], c.count) } }
    func line(_ r: [String]) -> String {
        r.enumerated().map { i, c in i < 5 ? c.padded(to: widths[i]) : c }.joined(separator: "  ")
    }
    print(line(header))
    for r in rows { print(line(r)) }
}

struct Workers: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The workers and their state.")
    @OptionGroup var options: RootOptions
    @Flag(help: "A JSON array on stdout.") var json = false

    func run() throws {
        let result: (views: [WorkerView], running: Bool)
        do { result = try loadWorkers(options.paths) } catch let e as CLIError { fail(e) }
        if json {
            printJSON(result.views)
        } else {
            if !result.running { print("daemon NOT RUNNING — the last state recorded in the database:") }
            printWorkerTable(result.views)
        }
        if !result.running { throw ExitCode(ExitCodes.daemonNotRunning) }
    }
}

struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The persisted event history.")
    @OptionGroup var options: RootOptions
    @Flag(help: "A JSON array on stdout.") var json = false
    @Option(help: "Only events since T: a duration ago (\"10m\", \"2h\"), unix seconds, or yyyy-MM-ddTHH:mm:ss.") var since: String?
    @Option(help: "Only this worker's events.") var worker: String?
    @Option(name: [.customShort("n"), .long], help: "At most N events (the newest).") var lines: Int = 100

    func validate() throws {
        if let since, Events.parseSince(since) == nil {
            throw ValidationError(
                "--since \"\(since)\" is not a time; use a duration ago such as 10m or 2h, unix seconds, or 2026-11-27T10:00:00")
        }
        if lines < 1 { throw ValidationError("-n must be at least 1") }
    }

    static func parseSince(_ s: String) -> Int64? {
        if let d = parseDuration(s) { return Clock.wallMilliseconds() - d.milliseconds }
        if let secs = Int64(s) { return secs * 1000 }
        return parseLocalTime(s)
    }

    func run() throws {
        let paths = options.paths
        guard fileExists(paths.database) else {
            fail(CLIError("no event history: there is no database at \(paths.database) (has the daemon ever run with this --root?)"))
        }
        let events: [EventRecord]
        do {
            events = try StoreReader(path: paths.database).events(
                sinceMilliseconds: since.flatMap(Events.parseSince), worker: worker, limit: lines)
        } catch {
            fail(CLIError("cannot read \(paths.database): \(error)"))
        }
        if json {
            printJSON(events)
            return
        }
        for e in events {
            print("\(formatTime(e.at))  \(e.kind.padded(to: 22))  \(e.worker ?? "-")  \(e.message)")
        }
    }
}

struct Logs: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "A worker's captured output.")
    @OptionGroup var options: RootOptions
    @Argument(help: "The worker's name.") var worker: String
    @Option(name: .short, help: "The last N lines.") var n: Int = 50
    @Flag(help: "Keep printing new output.") var follow = false

    func validate() throws {
        guard WorkerDefinition.isValidName(worker) else { throw ValidationError("\"\(worker)\" is not a worker name") }
        if n < 0 { throw ValidationError("-n must be 0 or more") }
    }

    func run() throws {
        let paths = options.paths
        let file = paths.logs + "/" + worker + ".log"
        if !fileExists(file) {
            if paths.root == "/" && Journal.isAvailable {
                // Output went to the journal, tagged with the worker's name.
                var args = ["journalctl", "--no-pager", "-t", worker, "-n", String(n)]
                if follow { args.append("-f") }
                let argv = args.map { strdup($0) } + [nil]
                execvp("journalctl", argv)
                fail(CLIError("cannot run journalctl: \(String(cString: strerror(errno)))"))
            }
            fail(CLIError("no output captured for \"\(worker)\" (no \(file))"))
        }
        let text = RotatingLog.tail(directory: paths.logs, name: worker, lines: n).map { $0 + "\n" }.joined()
        writeStandardOutput(text)
        guard follow else { return }
        var offset = fileSize(file)
        var inode = fileInode(file)
        while true {
            // Follows across rotation: a new inode or a shorter file starts from its beginning.
            if fileInode(file) != inode || fileSize(file) < offset {
                inode = fileInode(file)
                offset = 0
            }
            let size = fileSize(file)
            if size > offset {
                let fd = open(file, O_RDONLY | O_CLOEXEC)
                if fd >= 0 {
                    var buf = [UInt8](repeating: 0, count: 65536)
                    while true {
                        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
                        if n <= 0 { break }
                        try? writeAll(1, Array(buf[0..<n]))
                        offset += n
                    }
                    close(fd)
                }
            }
            usleep(200_000)
        }
    }

    func fileSize(_ path: String) -> Int {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : 0
    }

    func fileInode(_ path: String) -> UInt {
        var st = stat()
        return stat(path, &st) == 0 ? UInt(st.st_ino) : 0
    }
}

extension String {
    /// Left-aligned in a column of `width` characters.
    func padded(to width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}

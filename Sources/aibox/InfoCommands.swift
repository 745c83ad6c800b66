import AIBoxCore
import AIBoxSystem
import ArgumentParser
import FoundationEssentials
import Glibc

/// Whether the daemon answered, is not running, or holds its socket without answering.
enum DaemonReach {
    case answered
    case notRunning
    case notResponding(CLIError)
}

/// Worker views from the daemon, or from the database when it is down or does not answer.
func loadWorkers(_ paths: Paths) throws -> (views: [WorkerView], reach: DaemonReach) {
    do {
        if let views = try DaemonCLI.request(paths, ControlRequest(command: "workers"), as: [WorkerView].self) {
            return (views, .answered)
        }
        return (try databaseWorkers(paths), .notRunning)
    } catch let e as CLIError where e.code == ExitCodes.daemonNotResponding {
        return ((try? databaseWorkers(paths)) ?? [], .notResponding(e))
    }
}

/// The workers as the database last recorded them.
func databaseWorkers(_ paths: Paths) throws -> [WorkerView] {
    guard let reader = try? StoreReader(path: paths.database) else { return [] }
    let records: [WorkerRecord]
    do {
        records = try reader.workers()
    } catch {
        throw CLIError("the daemon is not running, and its database \(paths.database) cannot be read: \(error)")
    }
    return records.map { r in
        WorkerView(
            name: r.name, state: r.state, pid: nil, restarts: r.restarts,
            lastExit: (r.lastExitCode != nil || r.lastExitSignal != nil)
                ? .init(code: r.lastExitCode, signal: r.lastExitSignal, at: r.lastExitAt) : nil,
            status: r.status, reason: r.reason, waitingFor: [], critical: false)
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "One screen: the daemon, the workers, the database.")
    @OptionGroup var options: RootOptions
    @Flag(help: "One JSON document on stdout.") var json = false

    func run() throws {
        let paths = options.paths
        var hung: CLIError?
        do {
            if let status = try DaemonCLI.request(paths, ControlRequest(command: "status"), as: StatusView.self) {
                let (workers, reach) = try loadWorkers(paths)
                if case .notResponding(let e) = reach {
                    hung = e
                } else {
                    if json { printJSON(status) } else { printHuman(status, workers) }
                    return
                }
            }
        } catch let e as CLIError where e.code == ExitCodes.daemonNotResponding {
            hung = e
        } catch let e as CLIError { fail(e) }
        // The daemon is down or does not answer: the database's view, and say so.
        let workers = (try? databaseWorkers(paths)) ?? []
        var counts: [String: Int] = [:]
        for w in workers { counts[w.state, default: 0] += 1 }
        let status = StatusView(
            daemonRunning: hung != nil, daemonPid: hung != nil ? DaemonClient.pid(paths) : nil, version: AIBoxVersion.current,
            workers: counts, workerCount: workers.count,
            databaseProblem: fileExists(paths.database) ? nil : "no database at \(paths.database)", configProblem: nil, logTarget: nil,
            provisioned: fileExists(paths.boxConfig), daemonResponding: hung != nil ? false : nil)
        if json { printJSON(status) } else { printHuman(status, workers) }
        if let hung {
            writeStandardError("aibox: \(hung.description)\n")
            throw ExitCode(ExitCodes.daemonNotResponding)
        }
        throw ExitCode(ExitCodes.daemonNotRunning)
    }

    func printHuman(_ s: StatusView, _ workers: [WorkerView]) {
        var lines = ["aibox \(s.version)"]
        func row(_ label: String, _ value: String) { lines += TextLayout.labelled(label + ":", value) }
        if let p = s.provisioned {
            row("setup", p ? "done" : "WAITING FOR SETUP — run aibox setup, or insert a stick labelled AIBOX")
        }
        let pid = s.daemonPid.map { " (pid \($0))" } ?? ""
        if s.daemonResponding == false {
            row("daemon", "NOT RESPONDING\(pid) — showing the last state recorded in the database")
        } else if s.daemonRunning {
            row("daemon", "running\(pid)")
        } else {
            row("daemon", "NOT RUNNING — showing the last state recorded in the database")
        }
        let counts = s.workers.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        row("workers", "\(s.workerCount)\(counts.isEmpty ? "" : " (\(counts))")")
        row("database", s.databaseProblem ?? "ok")
        if let c = s.configProblem { row("config", "reload refused: \(c)") }
        for skipped in s.configSkipped ?? [] { row("config", "skipped \(skipped)") }
        if let l = s.logTarget { row("logs", l) }
        if let c = s.containment { row("contained", c) }
        if let h = s.hardware { row("hardware", h) }
        if let h = s.hotplug { row("hotplug", h) }
        if let u = s.update { row("system", u) }
        if !workers.isEmpty { lines += [""] + TextLayout.workerTable(workers) }
        writeStandardOutput(lines.map { $0 + "\n" }.joined())
    }
}

func printWorkerTable(_ workers: [WorkerView]) {
    writeStandardOutput(TextLayout.workerTable(workers).map { $0 + "\n" }.joined())
}

struct Workers: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The workers and their state.")
    @OptionGroup var options: RootOptions
    @Flag(help: "A JSON array on stdout.") var json = false

    func run() throws {
        let result: (views: [WorkerView], reach: DaemonReach)
        do { result = try loadWorkers(options.paths) } catch let e as CLIError { fail(e) }
        if json {
            printJSON(result.views)
        } else {
            switch result.reach {
            case .answered: break
            case .notRunning: writeStandardOutput("daemon NOT RUNNING — the last state recorded in the database:\n")
            case .notResponding: writeStandardOutput("daemon NOT RESPONDING — the last state recorded in the database:\n")
            }
            printWorkerTable(result.views)
        }
        switch result.reach {
        case .answered: break
        case .notRunning: throw ExitCode(ExitCodes.daemonNotRunning)
        case .notResponding(let e):
            writeStandardError("aibox: \(e.description)\n")
            throw ExitCode(ExitCodes.daemonNotResponding)
        }
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
        let rows = events.map { e in
            TextLayout.EventRow(time: formatTime(e.at), kind: e.kind, worker: e.worker ?? "-", message: e.message)
        }
        writeStandardOutput(TextLayout.events(rows).map { $0 + "\n" }.joined())
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
            let known = Logs.knownWorkers(paths)
            if !known.contains(worker) {
                let list = known.isEmpty ? "none" : known.joined(separator: ", ")
                writeStandardError(
                    Terminal.wrap("no worker named \"\(worker)\"; known workers: \(list)", first: "aibox: ", then: "  ", width: 80))
                throw ExitCode(ExitCodes.failure)
            }
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
        let text = RotatingLog.tail(directory: paths.logs, name: worker, lines: n).map { Logs.display(Substring($0)) + "\n" }.joined()
        writeStandardOutput(text)
        guard follow else { return }
        var offset = fileSize(file)
        var inode = fileInode(file)
        var pending: [UInt8] = []
        while true {
            // Follows across rotation: a new inode or a shorter file starts from its beginning.
            if fileInode(file) != inode || fileSize(file) < offset {
                inode = fileInode(file)
                offset = 0
            }
            let size = fileSize(file)
            if size > offset {
                // Gone or failing meanwhile (rotated): the next turn looks again.
                if let fd = try? syscall("open", detail: file, { open(file, O_RDONLY | O_CLOEXEC) }) {
                    var buf = [UInt8](repeating: 0, count: 65536)
                    while true {
                        let got = try? syscall("pread", detail: file) {
                            buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
                        }
                        guard let n = got, n > 0 else { break }
                        pending += buf[0..<n]
                        offset += n
                    }
                    closeDescriptor(fd)
                }
                // Whole lines only: their stamps are shown in local time.
                if let last = pending.lastIndex(of: UInt8(ascii: "\n")) {
                    let lines = String(decoding: pending[..<last], as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
                    try? writeAll(1, Array(lines.map { Logs.display($0) + "\n" }.joined().utf8))
                    pending.removeSubrange(...last)
                } else if pending.count >= 1 << 20 {  // not a line file: as it is
                    try? writeAll(1, pending)
                    pending = []
                }
            }
            sleep(for: .milliseconds(200))
        }
    }

    /// A stored line as shown: its stamp in local time ("2026-11-27 11:00:00.123", then "?"
    /// when the clock was not synchronized yet, else a space), the worker's text after it.
    static func display(_ line: Substring) -> String {
        guard let (stamp, text) = LogStamp.split(line) else { return String(line) }
        var ms = String((stamp.milliseconds % 1000 + 1000) % 1000)
        while ms.count < 3 { ms = "0" + ms }
        return formatLocalTime(milliseconds: stamp.milliseconds) + "." + ms + (stamp.synchronized ? " " : "?") + " " + text
    }

    /// The workers the daemon supervises; without a daemon, those defined and those in the database.
    static func knownWorkers(_ paths: Paths) -> [String] {
        var names = Set<String>()
        let loaded = try? loadWorkers(paths)
        for w in loaded?.views ?? [] { names.insert(w.name) }
        var answered = false
        if case .answered? = loaded?.reach { answered = true }
        if !answered, case .success(let definitions) = ConfigFiles.load(paths).result {
            for d in definitions { names.insert(d.name) }
        }
        return names.sorted()
    }

    /// 0 when there is no file (not yet, or between a rotation's rename and the new file).
    func fileSize(_ path: String) -> Int { (try? fileStatus(path)).map { Int($0.st_size) } ?? 0 }

    func fileInode(_ path: String) -> UInt { (try? fileStatus(path)).map { UInt($0.st_ino) } ?? 0 }
}

extension String {
    /// Left-aligned in a column of `width` characters.
    func padded(to width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}

import AIBoxCore
import AIBoxSystem
import FoundationEssentials
import Glibc

/// A worker's own control socket (`control = [...]`): `run/aibox/control.d/NAME.sock`, 0600,
/// owned by the worker's user when the daemon runs as root, in a directory 0755 root: only
/// that user and root can connect, and a request there may use only the grant.
struct WorkerControl {
    let listener: ControlListener
    var grants: [ControlGrant]
    /// The user the socket was made for (a reload that changes it makes the socket anew).
    let user: String?
}

/// An update check someone asked for (`update-check`, `update-install`), running as a child.
struct RequestedUpdate {
    var pid: Int32
    var install: Bool
    /// Where its stdout (the JSON report) and stderr go: files of run/aibox, read when it ends.
    var output: String
    var errors: String
}

struct ControlRefusal: Error, CustomStringConvertible {
    var description: String
}

extension Supervisor {
    // MARK: Workers' sockets

    /// Makes the sockets the definitions grant and removes those no longer granted (a worker
    /// removed, its `control` emptied, its user changed); at start and at each reload, before
    /// any worker starts (its environment names its socket).
    func syncWorkerControls() {
        let wanted = Dictionary(definitions.filter { !$0.control.isEmpty }.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for (name, wc) in workerControls where wanted[name] == nil || wanted[name]?.user != wc.user { closeWorkerControl(name) }
        for name in wanted.keys.sorted() {
            guard let d = wanted[name] else { continue }
            if workerControls[name] != nil {
                // Connections already accepted keep the grant they were accepted with (at most 5 s).
                workerControls[name]?.grants = d.control
            } else {
                openWorkerControl(d)
            }
        }
        // Sockets of an earlier run for workers no longer granted.
        let dir = paths.workerControlDirectory
        for entry in listDirectory(dir) where entry.hasSuffix(".sock") && workerControls[String(entry.dropLast(5))] == nil {
            removeFileBestEffort(dir + "/" + entry)
        }
    }

    private func openWorkerControl(_ d: WorkerDefinition) {
        let path = paths.workerControlSocket(d.name)
        var owner: UserIdentity?
        if let user = d.user, geteuid() == 0 {
            owner = UserIdentity.lookup(user)
            if owner == nil {
                noteControlProblem(d.name, "user \"\(user)\" does not exist")
                return
            }
        }
        do {
            let dir = paths.workerControlDirectory
            try makeDirectories(dir, mode: 0o755)
            // The directory, whatever made it first: only the socket's mode decides who connects.
            try syscall("chmod", detail: dir) { chmod(dir, 0o755) }
            if geteuid() == 0 { try syscall("chown", detail: dir) { chown(dir, 0, 0) } }
            let listener = try ControlListener(path: path, mode: 0o600, owner: owner?.uid, group: owner?.gid)
            let name = d.name
            try loop.add(listener.fd, events: connections.acceptPausedUntil == nil ? EventLoop.readable : 0) { [unowned self] _ in
                self.onAccept(worker: name)
            }
            workerControls[d.name] = WorkerControl(listener: listener, grants: d.control, user: d.user)
        } catch {
            noteControlProblem(d.name, "\(error)")
        }
    }

    private func noteControlProblem(_ name: String, _ why: String) {
        let text = "its control socket cannot be made (\(why)); it runs without AIBOX_CONTROL_SOCKET"
        pendingLog.append((.error, "worker \(name): \(text)"))
        store.record(event(kind: "daemon.control-socket-failed", worker: name, message: text))
    }

    /// The socket goes, and the connections accepted on it.
    func closeWorkerControl(_ name: String) {
        guard let wc = workerControls.removeValue(forKey: name) else { return }
        loop.remove(wc.listener.fd)
        for (fd, client) in connections.clients where client.grant?.worker == name { closeConnection(fd) }
        // The listener's deinit closes it and removes the file.
    }

    // MARK: logs

    /// A worker's last lines, every secret the daemon holds replaced by `[secret]`.
    func logs(_ request: ControlRequest) -> [UInt8] {
        guard let name = request.worker, slots[name] != nil else {
            return error("no worker named \"\(String((request.worker ?? "").prefix(64)))\"; known workers: \(order.joined(separator: ", "))")
        }
        let count = request.lines ?? 20
        guard (1...LogLines.maxLines).contains(count) else {
            return error("lines must be from 1 to \(LogLines.maxLines), not \(count)")
        }
        var lines: [LogLines.Line] = []
        var source = options.logTarget.rawValue
        if let fromFiles = WorkerOutput.fromFiles(directory: paths.logs, name: name, count: count) {
            // Also under the journal target when a worker's output fell back to a pipe.
            lines = fromFiles
            source = LogTarget.files.rawValue
        } else if options.logTarget == .journal {
            // sd_journal reads files: bounded by a deadline, never long on the loop.
            guard let fromJournal = WorkerOutput.fromJournal(identifier: name, count: count, deadline: Clock.monotonic() + .milliseconds(300)) else {
                return error("the journal cannot be opened to read \(name)'s output")
            }
            lines = fromJournal
        }
        let redactor = SecretRedactor(SecretStore(directory: paths.secrets).readAll().values.map { $0.reveal() })
        lines = lines.map { LogLines.Line(at: $0.at, text: LogLines.clip(redactor.redact($0.text))) }
        return ok(LogLines(worker: name, source: source, lines: lines))
    }

    // MARK: Requested update checks

    /// Runs `aibox update check --json` (with `--install --now --reboot` for an install: the
    /// owner confirmed it, so the maintenance window does not hold it back) as a child, at
    /// once; its outcome becomes an event when it ends (`requestedUpdateEnded`).
    func startRequestedUpdate(install: Bool, requester: String) -> Result<Void, ControlRefusal> {
        var feedConfigured = false
        if let text = readTextFile(paths.boxConfig), case .success(let config) = BoxConfig.parse(text: text, path: paths.boxConfig) {
            feedConfigured = config.updates.feedURL != nil
        }
        if let why = UpdateRequest.refusal(
            abBox: trial.agent != nil, feedConfigured: feedConfigured, running: feed.pid != nil || requestedUpdate != nil,
            shuttingDown: shuttingDown)
        {
            return .failure(ControlRefusal(description: why))
        }
        let output = paths.runDirectory + "/update-request.json", errors = paths.runDirectory + "/update-request.err"
        var outFD: Int32 = -1, errFD: Int32 = -1
        defer {
            closeDescriptor(outFD)
            closeDescriptor(errFD)
        }
        let argv =
            [currentExecutable() ?? "/usr/bin/aibox", "update", "check", "--json"] + (install ? ["--install", "--now", "--reboot"] : [])
            + ["--root", paths.root]
        let pid: Int32
        do {
            outFD = try syscall("open", detail: output) { open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600) }
            errFD = try syscall("open", detail: errors) { open(errors, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600) }
            pid = try Spawner.spawn(
                SpawnRequest(argv: argv, environment: currentEnvironment(), workdir: nil, user: nil, stdoutFD: outFD, stderrFD: errFD))
        } catch {
            return .failure(ControlRefusal(description: "the update check cannot be started: \(error)"))
        }
        requestedUpdate = RequestedUpdate(pid: pid, install: install, output: output, errors: errors)
        let what = install ? "update-install" : "update-check"
        store.record(event(kind: "control.\(what)", worker: nil, message: "\(what) requested by \(requester); running as pid \(pid)"))
        pendingLog.append((.info, "update: \(what) requested by \(requester) (pid \(pid))"))
        return .success(())
    }

    /// The child's end: one event that says the outcome (what the agent tells the owner).
    func requestedUpdateEnded(_ status: ExitStatus) {
        guard let run = requestedUpdate else { return }
        requestedUpdate = nil
        let stdout = readSmallFile(run.output, limit: 64 << 10, followSymlinks: false) ?? []
        let stderr = WorkerOutput.tail(of: run.errors, maxBytes: 4096).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let report = try? decodeJSONInput(UpdateRequest.Report.self, from: stdout, maxNesting: 4)
        let (kind, message) = UpdateRequest.outcome(
            install: run.install, exitedZero: status.isSuccess, exit: status.description, report: report, stderr: stderr)
        store.record(event(kind: kind, worker: nil, message: message))
        pendingLog.append((status.isSuccess ? .notice : .warning, "update: \(message)"))
        removeFileBestEffort(run.output)
        removeFileBestEffort(run.errors)
    }
}

import AIBoxCore
import AIBoxSystem
import FoundationEssentials
import Glibc

/// One control connection: its request as it comes in, then its answer as it goes out.
struct ControlClient {
    var peer: PeerCredentials
    /// Accepted on a worker's own socket: what that worker may ask (nil: the daemon's socket).
    var grant: WorkerGrant?
    /// Accept order: the oldest idle connection is the one evicted.
    var serial: UInt64
    var request: [UInt8] = []
    /// The answer (a JSON line) once the request is complete; `written` bytes of it sent.
    var answer: [UInt8]?
    var written = 0
    /// The request must be complete, or the answer taken, by then.
    var deadline: Instant
}

/// The worker a socket of `control.d` belongs to, and its `control` at the time of the accept.
struct WorkerGrant {
    var worker: String
    var grants: [ControlGrant]
}

/// What the control sockets hold together: at most `capacity` connections, each for at most
/// `idleTimeout`; accepting paused while there is no descriptor to accept with.
struct ControlConnections {
    var clients: [Int32: ControlClient] = [:]
    var capacity = 128
    var nextSerial: UInt64 = 0
    var acceptPausedUntil: Instant?

    /// A request is one line sent at once; a client has this long to send it, and again this
    /// long to take its answer.
    static let idleTimeout: Duration = .seconds(5)
    static let maxRequestBytes = 64 * 1024
    /// Accepts per turn of the loop: a flood of connections cannot starve the other events.
    static let acceptsPerTurn = 64

    /// At most one eighth of the descriptors the daemon may open, and never more than 128:
    /// connections alone can never take the descriptors a worker's spawn needs.
    static func capacity(descriptorLimit: Int) -> Int { min(128, max(4, descriptorLimit / 8)) }

    /// The earliest moment something here is due.
    var nextDeadline: Instant? {
        let d = clients.values.lazy.map(\.deadline).min()
        guard let p = acceptPausedUntil else { return d }
        return d.map { min($0, p) } ?? p
    }

    /// The connection to give up for a new one: the oldest still sending its request, else the
    /// oldest not taking its answer.
    var evictable: Int32? {
        let reading = clients.filter { $0.value.answer == nil }
        let pool = reading.isEmpty ? clients : reading
        return pool.min { $0.value.serial < $1.value.serial }?.key
    }
}

/// The control sockets' requests (the daemon's, and each granted worker's), served on the
/// supervisor's loop without ever blocking it:
/// reads and writes are non-blocking, each connection has a deadline on the monotonic clock,
/// their number is capped (a new one evicts the oldest idle), and at the descriptor limit
/// waiting connections are accepted and closed rather than left to spin the loop.
extension Supervisor {
    /// Sets the cap from the descriptor limit (RLIMIT_NOFILE's soft value).
    func configureControlConnections() {
        connections.capacity = ControlConnections.capacity(descriptorLimit: descriptorLimit())
    }

    /// A connection waits on the daemon's socket (`worker` nil) or on a worker's own.
    func onAccept(worker: String? = nil) {
        let listener: ControlListener
        var grant: WorkerGrant?
        if let worker {
            guard let wc = workerControls[worker] else { return }
            listener = wc.listener
            grant = WorkerGrant(worker: worker, grants: wc.grants)
        } else {
            guard let c = control else { return }
            listener = c
        }
        let now = Clock.monotonic()
        for _ in 0..<ControlConnections.acceptsPerTurn {
            switch listener.accept() {
            case .none:
                return
            case .failed:
                continue
            case .outOfDescriptors:
                // An idle connection gives way to the new one (a real client sends its
                // request at once); with none to give, the newcomer is accepted and closed.
                if let victim = connections.evictable {
                    closeConnection(victim)
                    continue
                }
                if listener.shedOne() { continue }
                pauseAccepting(now: now)
                return
            case .connection(let fd, let peer):
                if connections.clients.count >= connections.capacity, let victim = connections.evictable {
                    closeConnection(victim)
                }
                connections.nextSerial += 1
                connections.clients[fd] = ControlClient(
                    peer: peer, grant: grant, serial: connections.nextSerial, deadline: now + ControlConnections.idleTimeout)
                do {
                    try loop.add(fd, events: EventLoop.readable) { [unowned self] events in self.onConnectionEvent(fd, events) }
                } catch {
                    connections.clients[fd] = nil
                    closeDescriptor(fd)
                    continue
                }
                // Its request is often there already.
                onConnectionEvent(fd, EventLoop.readable)
            }
        }
    }

    /// Every listener, the daemon's first.
    var controlListeners: [ControlListener] {
        (control.map { [$0] } ?? []) + workerControls.keys.sorted().compactMap { workerControls[$0]?.listener }
    }

    /// No descriptor even for accept-and-close: the listeners are left alone for a moment
    /// (the limit is the process's: another listener would meet it too).
    private func pauseAccepting(now: Instant) {
        guard connections.acceptPausedUntil == nil else { return }
        for listener in controlListeners { loop.modify(listener.fd, events: 0) }
        connections.acceptPausedUntil = now + .milliseconds(250)
        pendingLog.append((.warning, "control socket: out of file descriptors; not accepting for 250 ms"))
    }

    /// From the timer: connections past their deadline are closed; accepting resumes.
    func controlTimer(now: Instant) {
        if let p = connections.acceptPausedUntil, p <= now {
            connections.acceptPausedUntil = nil
            for listener in controlListeners { loop.modify(listener.fd, events: EventLoop.readable) }
        }
        for (fd, client) in connections.clients where client.deadline <= now { closeConnection(fd) }
    }

    private func onConnectionEvent(_ fd: Int32, _ events: UInt32) {
        guard let client = connections.clients[fd] else { return }
        if client.answer != nil {
            flush(fd)
        } else {
            readRequest(fd)
        }
    }

    private func readRequest(_ fd: Int32) {
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let read: Int?
            do {
                read = try nonBlockingSyscall("read", detail: "a control connection") {
                    buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
                }
            } catch {
                read = 0  // ECONNRESET and the like: the client went away, as at its end of file
            }
            guard let n = read else { return }  // all there was; the rest comes with the next readable event
            if n > 0 {
                connections.clients[fd]?.request += buf[0..<n]
                guard let client = connections.clients[fd] else { return }
                if let line = client.request.firstIndex(of: UInt8(ascii: "\n")) {
                    respond(fd, handle(Array(client.request[..<line]), client))
                    return
                }
                if client.request.count > ControlConnections.maxRequestBytes {
                    respond(fd, error("request too large"))
                    return
                }
                continue
            }
            closeConnection(fd)
            return
        }
    }

    func closeConnection(_ fd: Int32) {
        loop.remove(fd)
        connections.clients[fd] = nil
        closeDescriptor(fd)
    }

    /// Queues the answer and sends what the socket takes now; the rest goes as it becomes
    /// writable. A client that does not take it within the timeout is dropped.
    private func respond(_ fd: Int32, _ body: [UInt8]) {
        connections.clients[fd]?.answer = body + [UInt8(ascii: "\n")]
        connections.clients[fd]?.request = []
        connections.clients[fd]?.deadline = Clock.monotonic() + ControlConnections.idleTimeout
        flush(fd)
        afterTurnFromControl()
    }

    private func flush(_ fd: Int32) {
        guard let client = connections.clients[fd], let answer = client.answer else { return }
        var written = client.written
        while written < answer.count {
            let sent: Int?
            do {
                sent = try nonBlockingSyscall("send", detail: "a control connection") {
                    answer.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + written, $0.count - written, Int32(MSG_NOSIGNAL)) }
                }
            } catch {
                break  // EPIPE, ECONNRESET: the client went away, and its answer with it
            }
            guard let n = sent else {
                connections.clients[fd]?.written = written
                loop.modify(fd, events: EventLoop.writable)
                return
            }
            if n == 0 { break }  // nothing taken of a non-empty answer: no progress to wait for
            written += n
        }
        closeConnection(fd)
    }

    private struct Refusal: Encodable {
        var ok = false
        var error: String
    }

    func error(_ message: String) -> [UInt8] {
        (try? JSONEncoder().encode(Refusal(error: message))).map { Array($0) } ?? Array("{\"ok\":false}".utf8)
    }

    func ok<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(value) else { return error("could not encode the answer") }
        return Array("{\"ok\":true,\"data\":".utf8) + Array(data) + Array("}".utf8)
    }

    private func handle(_ bytes: [UInt8], _ client: ControlClient) -> [UInt8] {
        let peer = client.peer
        guard let request = ControlRequest.parse(line: bytes) else {
            return error("not a valid request; expected one JSON line such as {\"command\":\"status\"}")
        }
        // Who asked, for the events: a worker's socket says whose it is.
        var requester = "uid \(peer.uid)"
        if let grant = client.grant {
            // A worker's socket: its grant alone decides (root connecting there gets no more).
            if let why = ControlGrant.refusal(request.command, worker: grant.worker, grants: grant.grants) { return error(why) }
            requester += " through worker \(grant.worker)'s control socket"
        } else {
            let changing = ["start", "stop", "restart", "reload", "setup-changed", "update-check", "update-install"].contains(request.command)
            if changing && !(control?.mayChange(peer) ?? false) {
                return error("permission denied: only root or members of the control socket's group may \(request.command)")
            }
        }
        let now = Clock.monotonic()
        switch request.command {
        case "ping":
            return ok(["pid": Int(getpid())])
        case "status":
            return ok(statusView())
        case "workers":
            return ok(views())
        case "start", "stop", "restart":
            guard let name = request.worker, let slot = slots[name] else {
                return error("no worker named \"\(request.worker ?? "")\"; known workers: \(order.joined(separator: ", "))")
            }
            if shuttingDown { return error("the daemon is shutting down") }
            let actions: [WorkerAction]
            switch request.command {
            case "start": actions = slot.machine.start(now: now, dependenciesReady: missing(for: name))
            case "stop": actions = slot.machine.stop(now: now)
            default: actions = slot.machine.restart(now: now, reason: "requested", dependenciesReady: missing(for: name))
            }
            store.record(
                event(kind: "control.\(request.command)", worker: name, message: "\(request.command) requested by \(requester)"))
            apply(name, actions)
            return ok(views().first { $0.name == name })
        case "reload":
            switch reload() {
            case .success(let plan):
                return ok(["added": plan.added, "changed": plan.changed, "removed": plan.removed, "unchanged": plan.unchanged])
            case .failure(let errors):
                return error("reload refused; the running workers are unchanged:\n\(errors)")
            }
        case "logs":
            return logs(request)
        case "update-check", "update-install":
            switch startRequestedUpdate(install: request.command == "update-install", requester: requester) {
            case .success: return ok(["started": true])
            case .failure(let why): return error(why.description)
            }
        case "setup-changed":
            // aibox setup / factory-reset: look at etc/aibox/box.toml now.
            return ok(["provisioned": checkProvisioning()])
        default:
            return error("unknown command \"\(request.command)\"")
        }
    }
}

import AIBoxCore
import AIBoxSystem
import FoundationEssentials
import Glibc

/// The control socket's requests, served on the supervisor's loop.
extension Supervisor {
    static let maxRequestBytes = 64 * 1024

    func onAccept() {
        while let (fd, peer) = control?.accept() {
            connections[fd] = (peer, [])
            do {
                try loop.add(fd, events: EventLoop.readable) { [unowned self] _ in self.onConnectionReadable(fd) }
            } catch {
                connections[fd] = nil
                closeDescriptor(fd)
            }
        }
    }

    private func onConnectionReadable(_ fd: Int32) {
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                connections[fd]?.buffer += buf[0..<n]
                if let line = connections[fd]?.buffer.firstIndex(of: UInt8(ascii: "\n")) {
                    let request = Array(connections[fd]!.buffer[..<line])
                    let peer = connections[fd]!.peer
                    respond(fd, handle(request, peer: peer))
                    return
                }
                if (connections[fd]?.buffer.count ?? 0) > Supervisor.maxRequestBytes {
                    respond(fd, error("request too large"))
                    return
                }
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            close(connection: fd)
            return
        }
    }

    private func close(connection fd: Int32) {
        loop.remove(fd)
        connections[fd] = nil
        closeDescriptor(fd)
    }

    /// Writes the answer (bounded: a client that does not read is dropped) and closes.
    private func respond(_ fd: Int32, _ body: [UInt8]) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        var tv = timeval(tv_sec: 1, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = try? writeAll(fd, body + [UInt8(ascii: "\n")])
        close(connection: fd)
        afterTurnFromControl()
    }

    private struct Refusal: Encodable {
        var ok = false
        var error: String
    }

    private func error(_ message: String) -> [UInt8] {
        (try? JSONEncoder().encode(Refusal(error: message))).map { Array($0) } ?? Array("{\"ok\":false}".utf8)
    }

    private func ok<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(value) else { return error("could not encode the answer") }
        return Array("{\"ok\":true,\"data\":".utf8) + Array(data) + Array("}".utf8)
    }

    private func handle(_ bytes: [UInt8], peer: PeerCredentials) -> [UInt8] {
        guard let request = ControlRequest.parse(line: bytes) else {
            return error("not a valid request; expected one JSON line such as {\"command\":\"status\"}")
        }
        let changing = ["start", "stop", "restart", "reload", "setup-changed"].contains(request.command)
        if changing && !(control?.mayChange(peer) ?? false) {
            return error("permission denied: only root or members of the control socket's group may \(request.command)")
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
                event(kind: "control.\(request.command)", worker: name, message: "\(request.command) requested by uid \(peer.uid)"))
            apply(name, actions)
            return ok(views().first { $0.name == name })
        case "reload":
            switch reload() {
            case .success(let plan):
                return ok(["added": plan.added, "changed": plan.changed, "removed": plan.removed, "unchanged": plan.unchanged])
            case .failure(let errors):
                return error("reload refused; the running workers are unchanged:\n\(errors)")
            }
        case "setup-changed":
            // aibox setup / factory-reset: look at etc/aibox/box.toml now.
            return ok(["provisioned": checkProvisioning()])
        default:
            return error("unknown command \"\(request.command)\"")
        }
    }
}

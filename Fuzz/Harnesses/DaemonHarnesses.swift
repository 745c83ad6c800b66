import AIBoxCore
import AIBoxSystem
import FoundationEssentials

// What the daemon reads from its sockets: control request lines and workers' notify datagrams.

/// One control request line, as the server cuts it from the connection (without the newline).
func fuzzControl(_ bytes: [UInt8]) -> Verdict {
    let line = Array(bytes.prefix { $0 != UInt8(ascii: "\n") })
    guard let request = ControlRequest.parse(line: line) else { return Verdict(accepted: false) }
    // What the CLI would send for it reads back the same.
    guard let encoded = try? JSONEncoder().encode(request) else {
        return Verdict(accepted: true, problems: ["control: \(request) cannot be encoded"])
    }
    return Verdict(
        accepted: true, problems: ControlRequest.parse(line: Array(encoded)) == request ? [] : ["control: \(request) does not read back"])
}

/// A worker's datagrams (NUL-separated here, one `recv` each) into its machine, a second
/// apart, the supervisor's part played around it: timers fire when due, a spawn succeeds, a
/// SIGKILL ends the process. Whatever a worker says, a live process keeps a deadline (ready
/// timeout, watchdog or stop timeout): nothing it sends can make the supervisor stop watching.
func fuzzNotify(_ bytes: [UInt8]) -> Verdict {
    var d = WorkerDefinition(name: "fuzz", exec: ["/bin/true"])
    d.notify = true
    d.watchdog = .seconds(10)
    var machine = WorkerMachine(definition: d)
    var now = Instant(nanoseconds: 1_000_000_000_000)
    var pid: Int32 = 100
    func play(_ actions: [WorkerAction]) {
        var pending = actions
        var steps = 0
        while !pending.isEmpty && steps < 64 {
            steps += 1
            switch pending.removeFirst() {
            case .spawn:
                pid += 1
                pending += machine.spawned(pid: pid, now: now)
            case .signalGroup(Signals.kill):
                pending += machine.exited(.signal(Signals.kill), now: now, random: 0.5)
            default:
                break
            }
        }
    }
    play(machine.start(now: now, dependenciesReady: []))
    var problems: [String] = []
    var readied = false
    for datagram in bytes.split(separator: 0, omittingEmptySubsequences: false) {
        now = now + .seconds(1)
        for _ in 0..<4 where machine.deadline.map({ $0 <= now }) ?? false {
            play(machine.timerFired(now: now, missing: []))
        }
        let message = NotifyMessage(datagram: datagram)
        if let status = message.status, status.count > 256 { problems.append("notify: a status of \(status.count) characters") }
        play(machine.notified(message, now: now))
        readied = readied || machine.state == .ready
        if machine.state.hasProcess && machine.deadline == nil {
            problems.append(
                "notify: \(machine.state) without a deadline after \(String(decoding: datagram.prefix(200), as: UTF8.self).debugDescription)"
            )
        }
    }
    // Accepted: the worker got as far as ready.
    return Verdict(accepted: readied, problems: problems)
}

import AIBoxCore
import AIBoxSystem
import FoundationEssentials

// What the daemon reads from its sockets: control request lines, workers' notify datagrams
// and the status lines of their ready-http servers.

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

/// What a worker's server answers a `ready-http` probe, as the probe sees it: the bytes
/// received so far, read again after each piece. An answer once decided (a status, or not
/// HTTP) stays the same however many more bytes come or however they were cut; no answer
/// stays undecided past the bound; a status is three digits.
func fuzzHTTPStatus(_ bytes: [UInt8]) -> Verdict {
    let whole = ReadyHTTP.answer(bytes)
    var problems: [String] = []
    var decided: (at: Int, answer: ReadyHTTP.Answer)?
    for n in 0...min(bytes.count, ReadyHTTP.maximumStatusLine + 1) {
        let a = ReadyHTTP.answer(bytes[..<n])
        if let d = decided, a != d.answer {
            problems.append("http-status: \(d.answer) after \(d.at) bytes, \(a) after \(n)")
            break
        }
        if decided == nil && a != .incomplete { decided = (n, a) }
    }
    if let d = decided, d.answer != whole { problems.append("http-status: \(d.answer) for a prefix, \(whole) for the whole") }
    if bytes.count >= ReadyHTTP.maximumStatusLine && whole == .incomplete {
        problems.append("http-status: undecided after \(bytes.count) bytes")
    }
    if case .status(let code) = whole, !(0...999).contains(code) { problems.append("http-status: status \(code)") }
    if case .status = whole { return Verdict(accepted: true, problems: problems) }
    return Verdict(accepted: false, problems: problems)
}

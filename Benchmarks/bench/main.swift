// aibox-bench: the benchmarks of docs/BENCHMARKS.md, side by side with runit, supervisord
// and s6. Not a test: it asserts nothing, it prints figures (Markdown tables on stdout,
// progress on stderr).
//
//   aibox-bench [--only crash,footprint,scale] [--crash-mode sequential|parallel|both]
//               [--crash-workers example,lean] [--restarts N] [--blocks N]
//               [--footprint-workers N] [--footprint-seconds S] [--scale-workers N] [--keep]
//
// The binaries it drives (aibox, aibox-example-worker, aibox-bench-spawnloop, and the static
// aibox-bench-leanworker that Benchmarks/run compiles with cc -static) are taken
// from the directory this executable is in: the release bin path of
// `swift build -c release --scratch-path .build-bench`. Benchmarks/run builds and runs it.
//
// Everything it starts runs in a process group of its own and under a scratch directory
// of its own; every benchmark stops what it started, and the end of the run checks that no
// process is left (killing and reporting any that is).
//
// Deliberately self-contained (Foundation and Glibc only): the daemon's modules change
// under it, the benchmark should not break with them.
import Foundation
import Glibc

// MARK: - Small helpers

nonisolated(unsafe) var interrupted: sig_atomic_t = 0

struct Interrupted: Error {}
struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

func monoNS() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func wallMS() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

func sleepMS(_ ms: Int) throws {
    var ts = timespec(tv_sec: ms / 1000, tv_nsec: (ms % 1000) * 1_000_000)
    var rest = timespec()
    while nanosleep(&ts, &rest) < 0 && errno == EINTR {
        if interrupted != 0 { throw Interrupted() }
        ts = rest
    }
    if interrupted != 0 { throw Interrupted() }
}

func say(_ s: String) {
    FileHandle.standardError.write(Data("[bench] \(s)\n".utf8))
}

/// Reads a whole file, /proc files included (their size is 0 to stat).
func readFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 { return nil }
    defer { close(fd) }
    var out = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

func writeFile(_ path: String, _ text: String, mode: mode_t = 0o644) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
    if fd < 0 { throw BenchError("cannot write \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    let bytes = Array(text.utf8)
    var off = 0
    while off < bytes.count {
        let n = bytes[off...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0 { if errno == EINTR { continue }; throw BenchError("write \(path): \(String(cString: strerror(errno)))") }
        off += n
    }
    _ = fchmod(fd, mode)
}

func mkdirs(_ path: String) throws {
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
}

func lineCount(_ path: String) -> Int {
    guard let t = readFile(path) else { return 0 }
    return t.utf8.reduce(0) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
}

/// TOML basic string.
/// A root set up as after first boot (etc/aibox/box.toml): otherwise the daemon is in setup
/// mode and starts no worker.
func provision(_ root: String) throws {
    try mkdirs(root + "/etc/aibox")
    try writeFile(root + "/etc/aibox/box.toml", "name = \"bench\"\n")
}

func tomlString(_ s: String) -> String {
    "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
}

func tomlArray(_ a: [String]) -> String { "[" + a.map(tomlString).joined(separator: ", ") + "]" }

/// Shell single quotes.
func shQuote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

func fmt(_ v: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", v) }

// MARK: - Processes

/// A process we started, in a process group of its own (pgid == pid).
final class Child {
    let pid: pid_t
    let name: String
    private(set) var status: Int32?

    init(pid: pid_t, name: String) {
        self.pid = pid
        self.name = name
    }

    /// Reaps it if it has exited; true when it has.
    @discardableResult
    func poll() -> Bool {
        if status != nil { return true }
        var st: Int32 = 0
        let r = waitpid(pid, &st, WNOHANG)
        if r == pid { status = st; return true }
        if r < 0 && errno == ECHILD { status = -1; return true }
        return false
    }

    /// Waits up to `timeoutMS` for it to exit.
    func wait(timeoutMS: Int) -> Bool {
        let end = monoNS() + UInt64(timeoutMS) * 1_000_000
        while !poll() {
            if monoNS() >= end { return false }
            var ts = timespec(tv_sec: 0, tv_nsec: 10_000_000)
            nanosleep(&ts, nil)
        }
        return true
    }

    func signal(_ sig: Int32) { if status == nil { _ = kill(pid, sig) } }
    func signalGroup(_ sig: Int32) { _ = kill(-pid, sig) }

    var exitDescription: String {
        guard let s = status else { return "running" }
        if s == -1 { return "reaped elsewhere" }
        if s & 0x7f == 0 { return "exit \((s >> 8) & 0xff)" }
        return "signal \(s & 0x7f)"
    }
}

/// Starts `argv` (argv[0] an absolute path) in a new process group, stdin from /dev/null,
/// stdout and stderr appended to `log` (or /dev/null), signals at their defaults.
func start(_ argv: [String], name: String, log: String? = nil, env: [String: String]? = nil) throws -> Child {
    var fa = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&fa)
    defer { posix_spawn_file_actions_destroy(&fa) }
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&fa, 1, log ?? "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_adddup2(&fa, 1, 2)
    return try spawnWith(argv, name: name, env: env, actions: &fa)
}

private func spawnWith(_ argv: [String], name: String, env: [String: String]?, actions fa: inout posix_spawn_file_actions_t) throws -> Child {
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    var none = sigset_t()
    sigemptyset(&none)
    var dflt = sigset_t()
    sigemptyset(&dflt)
    for s in [SIGINT, SIGTERM, SIGPIPE, SIGCHLD, SIGHUP] { sigaddset(&dflt, s) }
    posix_spawnattr_setsigmask(&attr, &none)
    posix_spawnattr_setsigdefault(&attr, &dflt)
    posix_spawnattr_setpgroup(&attr, 0)
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    let environment = env ?? ProcessInfo.processInfo.environment
    let cargv: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    let cenv: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
        for p in cargv { free(p) }
        for p in cenv { free(p) }
    }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, argv[0], &fa, &attr, cargv, cenv)
    if rc != 0 { throw BenchError("cannot start \(argv[0]): \(String(cString: strerror(rc)))") }
    return Child(pid: pid, name: name)
}

/// Runs `argv` to completion (bounded) and returns its exit code and stdout.
func capture(_ argv: [String], timeoutMS: Int = 20_000) throws -> (code: Int32, out: String) {
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { throw BenchError("pipe: \(String(cString: strerror(errno)))") }
    for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    var fa = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&fa)
    defer { posix_spawn_file_actions_destroy(&fa) }
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1)
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0)
    let child: Child
    do {
        child = try spawnWith(argv, name: argv[0], env: nil, actions: &fa)
    } catch {
        close(fds[0]); close(fds[1])
        throw error
    }
    close(fds[1])
    let fd = fds[0]
    defer { close(fd) }
    var out = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 65536)
    let end = monoNS() + UInt64(timeoutMS) * 1_000_000
    while true {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let left = Int64(end) - Int64(monoNS())
        if left <= 0 {
            child.signalGroup(SIGKILL)
            _ = child.wait(timeoutMS: 2000)
            throw BenchError("\(argv.joined(separator: " ")) did not finish within \(timeoutMS) ms")
        }
        let r = Glibc.poll(&p, 1, Int32(min(left / 1_000_000 + 1, 1000)))
        if r < 0 { if errno == EINTR { continue }; break }
        if r == 0 { continue }
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        out += buf[0..<n]
    }
    _ = child.wait(timeoutMS: max(1, Int((Int64(end) - Int64(monoNS())) / 1_000_000)))
    if child.status == nil {
        child.signalGroup(SIGKILL)
        _ = child.wait(timeoutMS: 2000)
    }
    let st = child.status ?? -1
    let code: Int32 = st & 0x7f == 0 ? (st >> 8) & 0xff : 128 + (st & 0x7f)
    return (code, String(decoding: out, as: UTF8.self))
}

// MARK: - /proc

struct ProcStat {
    var pid: Int32
    var comm: String
    var state: Character
    var ppid: Int32
    var pgrp: Int32
    var ticks: UInt64  // utime + stime
}

enum Proc {
    static let clockTicks = Double(sysconf(Int32(_SC_CLK_TCK)))

    static func stat(_ pid: Int32) -> ProcStat? {
        guard let t = readFile("/proc/\(pid)/stat"), let open = t.firstIndex(of: "("), let close = t.lastIndex(of: ")") else { return nil }
        let comm = String(t[t.index(after: open)..<close])
        let f = t[t.index(after: close)...].split(separator: " ")
        // f[0] is field 3 (state); utime is field 14, stime 15.
        guard f.count > 13, let ppid = Int32(f[1]), let pgrp = Int32(f[2]), let ut = UInt64(f[11]), let st = UInt64(f[12]) else { return nil }
        return ProcStat(pid: pid, comm: comm, state: f[0].first ?? "?", ppid: ppid, pgrp: pgrp, ticks: ut + st)
    }

    /// Time on a CPU so far (the first field of /proc/PID/schedstat), in ns.
    static func cpuNanoseconds(_ pid: Int32) -> UInt64? {
        readFile("/proc/\(pid)/schedstat")?.split(separator: " ").first.flatMap { UInt64($0) }
    }

    static func allPIDs() -> [Int32] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }
    }

    static func all() -> [ProcStat] { allPIDs().compactMap(stat) }

    static func exe(_ pid: Int32) -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/\(pid)/exe", &buf, buf.count - 1)
        if n <= 0 { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func cmdline(_ pid: Int32) -> String {
        (readFile("/proc/\(pid)/cmdline") ?? "").replacingOccurrences(of: "\0", with: " ").trimmingCharacters(in: .whitespaces)
    }

    /// kB values of smaps_rollup (Pss, Rss, Private_Dirty, …).
    static func rollup(_ pid: Int32) -> [String: Int] {
        var out: [String: Int] = [:]
        for line in (readFile("/proc/\(pid)/smaps_rollup") ?? "").split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 3, parts[0].hasSuffix(":"), let v = Int(parts[1]) { out[String(parts[0].dropLast())] = v }
        }
        return out
    }

    static func threads(_ pid: Int32) -> Int {
        for line in (readFile("/proc/\(pid)/status") ?? "").split(separator: "\n") where line.hasPrefix("Threads:") {
            return Int(line.dropFirst(8).trimmingCharacters(in: .whitespaces)) ?? 0
        }
        return 0
    }

    /// Every descendant of `root` (not `root` itself).
    static func descendants(of root: Int32, in table: [ProcStat]? = nil) -> [ProcStat] {
        let t = table ?? all()
        var children: [Int32: [ProcStat]] = [:]
        for p in t { children[p.ppid, default: []].append(p) }
        var out: [ProcStat] = []
        var stack = [root]
        while let p = stack.popLast() {
            for c in children[p] ?? [] {
                out.append(c)
                stack.append(c.pid)
            }
        }
        return out
    }

    /// Memory by mapping (path, or [heap], [anon], [stack]…), from /proc/PID/smaps, in kB.
    static func smapsByMapping(_ pid: Int32) -> [(name: String, pss: Int, rss: Int, privateDirty: Int)] {
        var acc: [String: (Int, Int, Int)] = [:]
        var current = "[anon]"
        for line in (readFile("/proc/\(pid)/smaps") ?? "").split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard let first = parts.first else { continue }
            if first.contains("-") && !first.hasSuffix(":") {
                // "start-end perms offset dev inode [path]"
                current = parts.count >= 6 ? String(parts[5]).trimmingCharacters(in: .whitespaces) : "[anon]"
                if current.isEmpty { current = "[anon]" }
                continue
            }
            guard parts.count >= 2, let v = Int(parts[1]) else { continue }
            var e = acc[current] ?? (0, 0, 0)
            switch first {
            case "Pss:": e.0 += v
            case "Rss:": e.1 += v
            case "Private_Dirty:": e.2 += v
            default: continue
            }
            acc[current] = e
        }
        return acc.map { (name: $0.key, pss: $0.value.0, rss: $0.value.1, privateDirty: $0.value.2) }.sorted { $0.pss > $1.pss }
    }
}

// MARK: - Statistics

struct Summary {
    var n: Int
    var median: Double
    var p90: Double
    var p99: Double
    var min: Double
    var max: Double
    var mean: Double

    /// Nearest-rank percentiles.
    init?(_ values: [Double]) {
        guard !values.isEmpty else { return nil }
        let s = values.sorted()
        func pct(_ p: Double) -> Double { s[Swift.max(0, Swift.min(s.count - 1, Int((p * Double(s.count)).rounded(.up)) - 1))] }
        n = s.count
        median = s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        p90 = pct(0.90)
        p99 = pct(0.99)
        min = s.first!
        max = s.last!
        mean = s.reduce(0, +) / Double(s.count)
    }
}

// MARK: - The run

struct Options {
    var only: Set<String> = ["crash", "footprint", "scale"]
    var crashMode = "sequential"
    /// The crash benchmark's workers: the example worker (C, but dynamically linked with
    /// libsystemd and the Swift runtime: ~4 ms of its own start) and the lean static one.
    var crashWorkers = ["example", "lean"]
    var blocks = 4
    var restarts = 200
    var footprintWorkers = 100
    var footprintSeconds = 60
    var scaleWorkers = 500
    var keep = false
    var runMS = 1100
    /// Another build's aibox, measured in the footprint run beside this one (same machine,
    /// same minute): whether the footprint grew is read from one run, not two.
    var footprintBaseline: String?
}

final class Bench {
    let options: Options
    let bin: String
    let worker: String
    let leanWorker: String
    let aibox: String
    let spawnloop: String
    /// The worker of the crash benchmark being run ("example" or "lean").
    var crashWorker = "example"
    let work: String
    /// Everything started, so that an interruption can stop it.
    var started: [Child] = []

    init(options: Options) throws {
        self.options = options
        let exe = Proc.exe(getpid()) ?? CommandLine.arguments[0]
        bin = (exe as NSString).deletingLastPathComponent
        worker = bin + "/aibox-example-worker"
        leanWorker = bin + "/aibox-bench-leanworker"
        aibox = bin + "/aibox"
        spawnloop = bin + "/aibox-bench-spawnloop"
        for p in [worker, aibox, spawnloop] + (options.only.contains("crash") && options.crashWorkers.contains("lean") ? [leanWorker] : [])
        where access(p, X_OK) != 0 {
            throw BenchError("\(p) is missing: build first with `swift build -c release --scratch-path .build-bench` (Benchmarks/run does, and compiles the lean worker)")
        }
        var template = Array("/tmp/aibox-bench.XXXXXX".utf8CString)
        guard let dir = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw BenchError("mkdtemp: \(String(cString: strerror(errno)))")
        }
        work = String(cString: dir)
    }

    func launch(_ argv: [String], name: String, log: String? = nil, env: [String: String]? = nil) throws -> Child {
        let c = try start(argv, name: name, log: log, env: env)
        started.append(c)
        return c
    }

    func which(_ tool: String) -> String? {
        for dir in ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"] where access(dir + "/" + tool, X_OK) == 0 { return dir + "/" + tool }
        return nil
    }

    // MARK: Machine

    func machine() -> String {
        let cpu = (readFile("/proc/cpuinfo") ?? "").split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { String($0.split(separator: ":", maxSplits: 1)[1]).trimmingCharacters(in: .whitespaces) } ?? "?"
        var u = utsname()
        uname(&u)
        let kernel = withUnsafeBytes(of: &u.release) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        let mem = (readFile("/proc/meminfo") ?? "").split(separator: "\n").first { $0.hasPrefix("MemTotal") }.map { String($0.dropFirst(9)).trimmingCharacters(in: .whitespaces) } ?? "?"
        let load = (readFile("/proc/loadavg") ?? "?").trimmingCharacters(in: .whitespacesAndNewlines)
        let qlen = (readFile("/proc/sys/net/unix/max_dgram_qlen") ?? "?").trimmingCharacters(in: .whitespacesAndNewlines)
        let fmtDate = ISO8601DateFormatter()
        var versions: [String] = []
        for pkg in ["runit", "supervisor", "s6"] {
            if let r = try? capture(["/usr/bin/dpkg-query", "-W", "-f", "${Version}", pkg], timeoutMS: 5000), r.code == 0 {
                versions.append("\(pkg) \(r.out)")
            }
        }
        return """
            | | |
            |---|---|
            | date | \(fmtDate.string(from: Date())) |
            | nproc | \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) |
            | kernel | \(kernel) |
            | CPU | \(cpu) |
            | memory | \(mem) |
            | load average at start | \(load) |
            | net.unix.max_dgram_qlen | \(qlen) |
            | contenders | \(versions.joined(separator: ", ")) |
            | binaries | \(bin) |
            """
    }

    /// Processes using a lot of CPU that are not ours (other work on the machine skews timings).
    func busyOthers() -> String {
        let a = Proc.all()
        let mine = Set(Proc.descendants(of: getpid(), in: a).map(\.pid) + [getpid()])
        let t0 = Dictionary(a.map { ($0.pid, $0.ticks) }, uniquingKeysWith: { x, _ in x })
        try? sleepMS(1000)
        var busy: [(String, Double)] = []
        for p in Proc.all() where !mine.contains(p.pid) {
            if let before = t0[p.pid] {
                let pct = Double(p.ticks - min(before, p.ticks)) / Proc.clockTicks * 100
                if pct >= 5 { busy.append(("\(p.comm) (pid \(p.pid))", pct)) }
            }
        }
        return busy.isEmpty ? "none" : busy.sorted { $0.1 > $1.1 }.map { "\($0.0) \(fmt($0.1, 0)) %" }.joined(separator: ", ")
    }

    // MARK: Cleanup

    /// Stops anything of ours still running: children we started (their groups), and any
    /// process left running our worker binary or a contender under our scratch directory.
    func sweep(_ label: String) -> [String] {
        var strays: [String] = []
        for c in started where !c.poll() {
            strays.append("\(c.name) (pid \(c.pid)) still running")
            c.signalGroup(SIGKILL)
            c.signal(SIGKILL)
            _ = c.wait(timeoutMS: 2000)
        }
        started.removeAll { $0.poll() }
        for p in Proc.all() where p.pid != getpid() {
            let exe = Proc.exe(p.pid) ?? ""
            let cmd = Proc.cmdline(p.pid)
            if exe == worker || exe == leanWorker || exe == aibox || exe == spawnloop || cmd.contains(work) {
                if p.state == "Z" { continue }
                strays.append("\(p.comm) (pid \(p.pid)): \(cmd.prefix(120))")
                _ = kill(p.pid, SIGKILL)
            }
        }
        if !strays.isEmpty { say("\(label): killed stray processes: \(strays.joined(separator: "; "))") }
        return strays
    }

    // MARK: - 1. Crash to respawn

    struct Stamp {
        var ns: UInt64
        var pid: Int32
    }

    func stamps(_ path: String) -> [Stamp] {
        (readFile(path) ?? "").split(separator: "\n").compactMap { l in
            let p = l.split(separator: " ")
            guard p.count == 2, let ns = UInt64(p[0]), let pid = Int32(p[1]) else { return nil }
            return Stamp(ns: ns, pid: pid)
        }
    }

    /// One contender of the crash benchmark: started, runs until its worker has started
    /// `restarts + 1` times, stopped.
    final class CrashContender {
        let key: String
        let label: String
        let dir: String
        var starts: String { dir + "/starts" }
        var exits: String { dir + "/exits" }
        var child: Child?
        var stop: (() -> Void)?
        var note = ""
        /// Exits to measure: the worker is started runs + 1 times.
        var runs = 0
        init(key: String, label: String, dir: String) {
            self.key = key
            self.label = label
            self.dir = dir
        }
    }

    func workerArgs(_ c: CrashContender) -> [String] {
        if crashWorker == "lean" { return [leanWorker, "--stamp", c.starts, "--exit-stamp", c.exits, "--exit-after", String(options.runMS)] }
        return [worker, "--stamp", c.starts, "--exit-stamp", c.exits, "--exit-after", String(options.runMS), "--no-notify", "--quiet"]
    }

    func makeCrashContenders(_ phase: String, runs: Int) throws -> [CrashContender] {
        var out: [CrashContender] = []
        let base = work + "/crash-" + crashWorker + "-" + phase
        func contender(_ key: String, _ label: String) throws -> CrashContender {
            let c = CrashContender(key: key, label: label, dir: base + "/" + key)
            c.runs = runs
            try mkdirs(c.dir)
            return c
        }
        // (a) the limit.
        out.append(try contender("limit", "limit: posix_spawn + waitpid loop"))
        // (a') the limit through the same /bin/sh `run` script runsv uses, to show what the
        // shell costs runsv.
        let viaSh = try contender("limit-sh", "limit through the /bin/sh run script")
        try writeFile(viaSh.dir + "/run", "#!/bin/sh\nexec " + workerArgs(viaSh).map(shQuote).joined(separator: " ") + "\n", mode: 0o755)
        out.append(viaSh)
        if which("runsv") != nil {
            let r = try contender("runsv", "runit runsv")
            try mkdirs(r.dir + "/service")
            try writeFile(r.dir + "/service/run", "#!/bin/sh\nexec " + workerArgs(r).map(shQuote).joined(separator: " ") + "\n", mode: 0o755)
            out.append(r)
        } else {
            say("runsv not found (apt-get install runit): skipping it")
        }
        let a = try contender("aibox", "aibox daemon")
        try mkdirs(a.dir + "/root/usr/lib/aibox/workers.d")
        try provision(a.dir + "/root")
        try writeFile(
            a.dir + "/root/usr/lib/aibox/workers.d/bench.toml",
            """
            # Crash-to-respawn: exits with 1 after \(options.runMS) ms, i.e. after stable-after, so the
            # backoff is reset and the restart uses restart-delay (0) at once. crash-loop is
            # widened: by default 5 exits within 60 s quarantine a worker, even stable ones.
            [worker.crasher]
            exec = \(tomlArray(workerArgs(a)))
            restart = "always"
            restart-delay = "0ms"
            restart-max-delay = "1s"
            stable-after = "1s"
            crash-loop = { burst = 10000, window = "1s", quarantine = "1s" }

            """)
        out.append(a)
        return out
    }

    func startCrash(_ c: CrashContender) throws {
        let n = c.runs + 1
        switch c.key {
        case "limit":
            c.child = try launch([spawnloop, String(n)] + workerArgs(c), name: "spawnloop", log: c.dir + "/out.log")
        case "limit-sh":
            c.child = try launch([spawnloop, String(n), c.dir + "/run"], name: "spawnloop-sh", log: c.dir + "/out.log")
        case "runsv":
            c.child = try launch([which("runsv")!, c.dir + "/service"], name: "runsv", log: c.dir + "/out.log")
            let dir = c.dir
            let sv = which("sv")
            c.stop = {
                // Down and exit: runsv sends the worker SIGTERM and exits once it is gone.
                if let sv { _ = try? capture([sv, "exit", dir + "/service"], timeoutMS: 10_000) } else if let p = c.child?.pid, p > 0 { _ = kill(p, SIGTERM) }
            }
        case "aibox":
            c.child = try launch([aibox, "daemon", "--root", c.dir + "/root", "--log-target", "files"], name: "aibox daemon", log: c.dir + "/daemon.log")
        default:
            break
        }
    }

    func stopCrash(_ c: CrashContender) {
        guard let child = c.child else { return }
        if !child.poll() {
            if let stop = c.stop { stop() } else { child.signal(SIGTERM) }
            if !child.wait(timeoutMS: 15_000) {
                c.note += " did not stop within 15 s of being asked; killed."
                child.signalGroup(SIGKILL)
                child.signal(SIGKILL)
                _ = child.wait(timeoutMS: 5000)
            }
        }
    }

    /// Exit of run i → start of run i+1, in µs.
    func crashSamples(_ c: CrashContender) -> (samples: [Double], skipped: Int) {
        let s = stamps(c.starts), e = stamps(c.exits)
        var out: [Double] = []
        var skipped = 0
        for i in 0..<min(c.runs, e.count, max(0, s.count - 1)) {
            // Run i's exit must belong to run i's process, and be before run i+1's start.
            guard e[i].pid == s[i].pid, s[i + 1].ns > e[i].ns else { skipped += 1; continue }
            out.append(Double(s[i + 1].ns - e[i].ns) / 1000)
        }
        return (out, skipped)
    }

    /// Runs the contenders, all at once (staggered so their restarts do not coincide) or one
    /// after the other; returns each one's samples.
    func runCrash(_ contenders: [CrashContender], parallel: Bool) throws -> [(CrashContender, [Double], Int)] {
        var results: [(CrashContender, [Double], Int)] = []
        func waitDone(_ group: [CrashContender]) throws {
            let n = group.map(\.runs).max()! + 1
            let budgetMS = n * (options.runMS + 200) + 60_000
            let end = monoNS() + UInt64(budgetMS) * 1_000_000
            var lastReport = monoNS()
            while true {
                var pending = false
                for c in group {
                    let have = lineCount(c.starts)
                    if have >= n { if c.key.hasPrefix("limit") { _ = c.child?.wait(timeoutMS: 10) }; continue }
                    if let ch = c.child, ch.poll() {
                        if !c.note.contains("exited early") { c.note += " exited early (\(ch.exitDescription)) after \(have) starts." }
                        continue
                    }
                    pending = true
                }
                if !pending { return }
                if monoNS() > end {
                    for c in group where lineCount(c.starts) < n { c.note += " stopped at the time limit with \(lineCount(c.starts)) starts." }
                    return
                }
                if monoNS() - lastReport > 30_000_000_000 {
                    lastReport = monoNS()
                    say("crash: " + group.map { "\($0.key) \(lineCount($0.starts))/\(n)" }.joined(separator: ", "))
                }
                try sleepMS(200)
            }
        }
        if parallel {
            let stagger = options.runMS / max(1, contenders.count)
            for (i, c) in contenders.enumerated() {
                if i > 0 { try sleepMS(stagger) }
                try startCrash(c)
            }
            try waitDone(contenders)
            for c in contenders { stopCrash(c) }
        } else {
            for c in contenders {
                say("crash (sequential): \(c.label), \(c.runs + 1) runs of \(options.runMS) ms")
                try startCrash(c)
                try waitDone([c])
                stopCrash(c)
            }
        }
        for c in contenders {
            let (s, skipped) = crashSamples(c)
            results.append((c, s, skipped))
        }
        return results
    }

    func crashTable(_ title: String, _ results: [(CrashContender, [Double], Int)]) -> String {
        var out = "##### \(title)\n\n"
        out += "| contender | n | median µs | p90 µs | p99 µs | min µs | max µs | median − limit µs | median / limit |\n"
        out += "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        let limit = results.first { $0.0.key == "limit" }.flatMap { Summary($0.1) }
        for (c, samples, skipped) in results {
            guard let s = Summary(samples) else {
                out += "| \(c.label) | 0 | – | – | – | – | – | – | – |\n"
                continue
            }
            let diff = limit.map { fmt(s.median - $0.median, 0) } ?? "–"
            let ratio = limit.map { fmt(s.median / $0.median, 2) + "×" } ?? "–"
            out += "| \(c.label)\(skipped > 0 ? " (\(skipped) unpaired)" : "") | \(s.n) | \(fmt(s.median, 0)) | \(fmt(s.p90, 0)) | \(fmt(s.p99, 0)) | \(fmt(s.min, 0)) | \(fmt(s.max, 0)) | \(diff) | \(ratio) |\n"
        }
        let notes = results.compactMap { $0.0.note.isEmpty ? nil : "\($0.0.label):\($0.0.note)" }
        if !notes.isEmpty { out += "\nNotes: " + notes.joined(separator: " ") + "\n" }
        if let l = limit, let a = results.first(where: { $0.0.key == "aibox" }).flatMap({ Summary($0.1) }) {
            let r = results.first { $0.0.key == "runsv" }.flatMap { Summary($0.1) }
            out += "\nTarget (aibox median ≤ 1.2 × limit and below runsv): aibox/limit = \(fmt(a.median / l.median, 2))×"
            if let r { out += ", aibox − runsv = \(fmt(a.median - r.median, 0)) µs" }
            out += " → \(a.median <= 1.2 * l.median && (r.map { a.median < $0.median } ?? true) ? "met" : "NOT met")\n"
        }
        return out + "\n"
    }

    func crash() throws -> String {
        var out = "### 1. Crash to respawn\n\n"
        print(out, terminator: "")
        for w in options.crashWorkers {
            crashWorker = w
            out += try crashWith()
        }
        return out
    }

    func crashWith() throws -> String {
        var out = crashWorker == "lean"
            ? "#### Worker: `aibox-bench-leanworker --stamp S --exit-stamp E --exit-after \(options.runMS)` (static C)\n\n"
            : "#### Worker: `aibox-example-worker --stamp S --exit-stamp E --exit-after \(options.runMS) --no-notify --quiet`\n\n"
        out += "\(options.restarts) exits per contender; time from the exit stamp (last thing before `return` from main) "
        out += "to the successor's start stamp (first thing in main).\n\n"
        print(out, terminator: "")
        if options.crashMode == "parallel" || options.crashMode == "both" {
            say("crash (parallel): \(options.restarts + 1) runs of \(options.runMS) ms per contender, all at once, staggered")
            let cs = try makeCrashContenders("parallel", runs: options.restarts)
            let r = try runCrash(cs, parallel: true)
            for c in cs { say("crash: \(c.key): \(lineCount(c.starts)) starts") }
            var part = crashTable("All contenders at once (starts staggered by \(options.runMS / max(1, cs.count)) ms)", r)
            if let s = quarantineNote(cs) { part += s }
            print(part, terminator: "")
            fflush(nil)
            out += part
            _ = sweep("crash parallel")
        }
        if options.crashMode == "sequential" || options.crashMode == "both" {
            // One contender at a time, in blocks that take turns (the order rotates each
            // block), so that a slow drift of the machine's load reaches every contender alike.
            let blocks = min(options.blocks, options.restarts)
            var pooled: [String: (CrashContender, [Double], Int)] = [:]
            var order: [String] = []
            for b in 0..<blocks {
                let runs = options.restarts / blocks + (b < options.restarts % blocks ? 1 : 0)
                var cs = try makeCrashContenders("sequential-\(b + 1)", runs: runs)
                if order.isEmpty { order = cs.map(\.key) }
                cs = Array(cs[(b % cs.count)...] + cs[..<(b % cs.count)])
                say("crash (sequential): block \(b + 1) of \(blocks): \(cs.map(\.key).joined(separator: ", "))")
                for (c, samples, skipped) in try runCrash(cs, parallel: false) {
                    var e = pooled[c.key] ?? (c, [], 0)
                    e.1 += samples
                    e.2 += skipped
                    if !c.note.isEmpty && e.0 !== c { e.0.note += " block \(b + 1):" + c.note }
                    pooled[c.key] = e
                }
                _ = sweep("crash sequential block \(b + 1)")
            }
            let part = crashTable("One contender after the other (\(blocks) blocks of \(options.restarts / blocks) exits, taking turns)", order.compactMap { pooled[$0] })
            print(part, terminator: "")
            fflush(nil)
            out += part
        }
        return out
    }

    func quarantineNote(_ cs: [CrashContender]) -> String? {
        guard let a = cs.first(where: { $0.key == "aibox" }) else { return nil }
        let log = readFile(a.dir + "/daemon.log") ?? ""
        let quarantined = log.components(separatedBy: "quarantine").count - 1
        return quarantined > 0 ? "aibox's log mentions quarantine \(quarantined) times.\n\n" : nil
    }

    // MARK: - 2. Footprint

    struct Sample {
        var t: Double
        var pssKB = 0
        var rssKB = 0
        /// Private_Clean + Private_Dirty: pages no other process maps.
        var ussKB = 0
        /// Anonymous memory (heap, stacks): what a leak would grow.
        var anonKB = 0
        /// CPU time in ns from /proc/PID/schedstat (exact; utime/stime ticks are sampled at 100 Hz).
        var cpuNS: UInt64 = 0
        var procs = 0
    }

    /// The supervisor's own processes (not the workers).
    func supervisorPIDs(_ key: String, _ root: Child) -> [Int32] {
        switch key {
        case "s6":
            let table = Proc.all()
            return [root.pid] + Proc.descendants(of: root.pid, in: table).filter { $0.comm == "s6-supervise" }.map(\.pid)
        default:
            return [root.pid]
        }
    }

    func workerCount(under root: Int32) -> Int {
        Proc.descendants(of: root).filter { Proc.exe($0.pid) == worker }.count
    }

    func sample(_ pids: [Int32], t: Double) -> Sample {
        var s = Sample(t: t)
        for p in pids {
            let r = Proc.rollup(p)
            guard let st = Proc.stat(p), let pss = r["Pss"] else { continue }
            s.pssKB += pss
            s.rssKB += r["Rss"] ?? 0
            s.ussKB += (r["Private_Clean"] ?? 0) + (r["Private_Dirty"] ?? 0)
            s.anonKB += r["Anonymous"] ?? 0
            s.cpuNS += Proc.cpuNanoseconds(p) ?? 0
            s.procs += 1
        }
        return s
    }

    struct FootprintResult {
        var label: String
        var samples: [Sample]
        var note: String
        var breakdown: String
    }

    func footprintOne(_ key: String) throws -> FootprintResult? {
        let n = options.footprintWorkers
        let dir = work + "/footprint-" + key
        try mkdirs(dir)
        let args = [worker, "--ready-after", "0", "--quiet"]
        var child: Child
        var label: String
        var stop: () -> Void
        var note = ""
        var binary = aibox
        switch key {
        case "aibox", "aibox-baseline":
            binary = key == "aibox" ? aibox : options.footprintBaseline!
            label = key == "aibox" ? "aibox daemon" : "aibox daemon, baseline `\(binary)`"
            try mkdirs(dir + "/root/usr/lib/aibox/workers.d")
            try provision(dir + "/root")
            var toml = "# \(n) idle workers: READY=1 at once, WATCHDOG=1 every 1 s (half of watchdog).\n"
            for i in 0..<n {
                toml += "[worker.idle-\(String(format: "%03d", i))]\nexec = \(tomlArray(args))\nnotify = true\nwatchdog = \"2s\"\n\n"
            }
            try writeFile(dir + "/root/usr/lib/aibox/workers.d/idle.toml", toml)
            child = try launch([binary, "daemon", "--root", dir + "/root", "--log-target", "files"], name: "aibox daemon", log: dir + "/daemon.log")
            stop = { child.signal(SIGTERM) }
        case "supervisord":
            guard let sd = which("supervisord") else { say("supervisord not found (apt-get install supervisor): skipping it"); return nil }
            label = "supervisord"
            try mkdirs(dir + "/logs")
            var conf = """
                [supervisord]
                nodaemon=true
                \(geteuid() == 0 ? "user=root" : "")
                logfile=\(dir)/supervisord.log
                pidfile=\(dir)/supervisord.pid
                childlogdir=\(dir)/logs

                """
            for i in 0..<n {
                conf += "\n[program:idle-\(String(format: "%03d", i))]\ncommand=\(args.joined(separator: " "))\nautorestart=true\nstopwaitsecs=5\n"
            }
            try writeFile(dir + "/supervisord.conf", conf)
            child = try launch([sd, "-c", dir + "/supervisord.conf"], name: "supervisord", log: dir + "/out.log")
            stop = { child.signal(SIGTERM) }
        case "s6":
            guard let scan = which("s6-svscan") else { say("s6-svscan not found (apt-get install s6): skipping it"); return nil }
            label = "s6 (s6-svscan + s6-supervise ×\(n))"
            let scandir = dir + "/scan"
            for i in 0..<n {
                let svc = scandir + "/idle-" + String(format: "%03d", i)
                try mkdirs(svc)
                try writeFile(svc + "/run", "#!/bin/sh\nexec " + args.map(shQuote).joined(separator: " ") + "\n", mode: 0o755)
            }
            child = try launch([scan, scandir], name: "s6-svscan", log: dir + "/out.log")
            let ctl = which("s6-svscanctl")
            stop = {
                if let ctl { _ = try? capture([ctl, "-t", scandir], timeoutMS: 10_000) } else { child.signal(SIGTERM) }
            }
        default:
            return nil
        }
        defer {
            if !child.poll() {
                stop()
                if !child.wait(timeoutMS: 20_000) {
                    say("footprint \(key): did not stop within 20 s; killing")
                    child.signalGroup(SIGKILL)
                    child.signal(SIGKILL)
                    _ = child.wait(timeoutMS: 5000)
                }
            }
            // s6-supervise and the workers: whatever is left of the group.
            child.signalGroup(SIGKILL)
        }
        // Up: every worker running (and for aibox, ready).
        let upBy = monoNS() + 60_000_000_000
        while true {
            if child.poll() { throw BenchError("footprint \(key): \(child.name) exited (\(child.exitDescription)); see \(dir)") }
            var up = workerCount(under: child.pid)
            if key.hasPrefix("aibox") && up == n {
                up = (try? aiboxWorkers(dir + "/root", binary: binary))?.filter { $0.state == "ready" }.count ?? 0
            }
            if up == n { break }
            if monoNS() > upBy { throw BenchError("footprint \(key): only \(up) of \(n) workers up after 60 s") }
            try sleepMS(250)
        }
        say("footprint \(key): \(n) workers up; settling 5 s, then sampling every 5 s for \(options.footprintSeconds) s")
        try sleepMS(5000)
        var samples: [Sample] = []
        let t0 = monoNS()
        var k = 0
        while true {
            let due = t0 + UInt64(k) * 5_000_000_000
            let now = monoNS()
            if due > now { try sleepMS(Int((due - now) / 1_000_000)) }
            let pids = supervisorPIDs(key, child)
            samples.append(sample(pids, t: Double(monoNS() - t0) / 1e9))
            if k * 5 >= options.footprintSeconds { break }
            k += 1
        }
        let workersAtEnd = workerCount(under: child.pid)
        if workersAtEnd != n { note += "\(workersAtEnd) of \(n) workers running at the end. " }
        var breakdown = ""
        if key.hasPrefix("aibox") {
            let alone = standAlone(child.pid, binary: binary)
            note += "Stand-alone PSS estimate (Swift runtime + Foundation + the aibox binary + anonymous at RSS, system libraries at PSS): \(fmt(Double(alone.kB) / 1024)) MiB, of which Swift runtime and Foundation libraries \(fmt(Double(alone.swiftKB) / 1024)) MiB. "
            if let ws = try? aiboxWorkers(dir + "/root", binary: binary) {
                let ready = ws.filter { $0.state == "ready" }.count
                let restarts = ws.reduce(0) { $0 + $1.restarts }
                note += "At the end: \(ready)/\(n) ready, \(restarts) restarts (a missed watchdog would restart one). "
            }
            note += "Daemon threads: \(Proc.threads(child.pid)). "
            breakdown = smapsBreakdown(child.pid, label: label)
        } else if key == "s6" {
            note += "PSS and CPU are summed over \(samples.last?.procs ?? 0) processes. "
        }
        return FootprintResult(label: label, samples: samples, note: note, breakdown: breakdown)
    }

    /// PSS the daemon would have on a box where no other process maps the Swift runtime,
    /// Foundation or the aibox binary (transient `aibox` CLI runs aside): those mappings and
    /// anonymous memory counted at their RSS, the system's shared libraries at their PSS.
    func standAlone(_ pid: Int32, binary: String) -> (kB: Int, swiftKB: Int) {
        let maps = Proc.smapsByMapping(pid)
        let toolchain = maps.first { $0.name.hasSuffix("/libswiftCore.so") }.map { ($0.name as NSString).deletingLastPathComponent }
        var total = 0, swift = 0
        for m in maps {
            let own = m.name == binary || m.name.hasPrefix("[") || (toolchain.map { m.name.hasPrefix($0 + "/") } ?? false)
            total += own ? m.rss : m.pss
            if m.name != binary && !m.name.hasPrefix("[") && own { swift += m.rss }
        }
        return (total, swift)
    }

    func smapsBreakdown(_ pid: Int32, label: String) -> String {
        let maps = Proc.smapsByMapping(pid)
        let total = maps.reduce(0) { $0 + $1.pss }
        let rss = maps.reduce(0) { $0 + $1.rss }
        var out = "\(label) memory by mapping (/proc/PID/smaps at the end, kB; total PSS \(total) kB, RSS \(rss) kB). "
        out += "PSS of a shared library depends on which other processes map it at that moment (this harness is a Swift program too); RSS does not.\n\n"
        out += "| mapping | PSS kB | RSS kB | private dirty kB |\n|---|---:|---:|---:|\n"
        for m in maps.prefix(16) {
            out += "| \((m.name as NSString).lastPathComponent.isEmpty ? m.name : (m.name as NSString).lastPathComponent) | \(m.pss) | \(m.rss) | \(m.privateDirty) |\n"
        }
        let rest = maps.dropFirst(16)
        if !rest.isEmpty {
            out += "| (\(rest.count) more) | \(rest.reduce(0) { $0 + $1.pss }) | \(rest.reduce(0) { $0 + $1.rss }) | \(rest.reduce(0) { $0 + $1.privateDirty }) |\n"
        }
        return out + "\n"
    }

    func footprint() throws -> String {
        var results: [FootprintResult] = []
        for key in (options.footprintBaseline == nil ? [] : ["aibox-baseline"]) + ["aibox", "supervisord", "s6"] {
            if let r = try footprintOne(key) { results.append(r) }
            _ = sweep("footprint \(key)")
            try sleepMS(2000)
        }
        let n = options.footprintWorkers
        var out = "### 2. Footprint: \(n) idle workers, \(options.footprintSeconds) s\n\n"
        out += "Workers: `aibox-example-worker --ready-after 0 --quiet` (aibox: `notify = true`, `watchdog = \"2s\"`, so each sends WATCHDOG=1 every 1 s; "
        out += "the others give no $NOTIFY_SOCKET, so the workers only sleep). PSS from /proc/PID/smaps_rollup, CPU = Δ(time on a CPU, /proc/PID/schedstat) over the window.\n\n"
        out += "| contender | PSS MiB start → end (min–max) | RSS MiB | USS MiB | anonymous MiB start → end | CPU % of one core | PSS ≤ 20 MiB, not growing | CPU ≤ 1 % |\n"
        out += "|---|---|---:|---:|---|---:|---|---|\n"
        func mib(_ kb: Int) -> String { fmt(Double(kb) / 1024) }
        for r in results {
            guard let a = r.samples.first, let b = r.samples.last else { continue }
            let cpu = Double(b.cpuNS - min(a.cpuNS, b.cpuNS)) / 1e9 / max(0.001, b.t - a.t) * 100
            let pssMin = r.samples.map(\.pssKB).min() ?? 0, pssMax = r.samples.map(\.pssKB).max() ?? 0
            let isAibox = r.label.hasPrefix("aibox")
            // Growth is judged on anonymous memory: PSS moves with other processes' sharing.
            let memOK = Double(pssMax) / 1024 <= 20 && b.anonKB - a.anonKB <= 256
            out += "| \(r.label) | \(mib(a.pssKB)) → \(mib(b.pssKB)) (\(mib(pssMin))–\(mib(pssMax))) | \(mib(b.rssKB)) | \(mib(b.ussKB)) | \(mib(a.anonKB)) → \(mib(b.anonKB)) | \(fmt(cpu, 3)) | "
            out += (isAibox ? (memOK ? "met" : "**NOT met**") : (memOK ? "(would be met)" : "(would not be met)")) + " | "
            out += (isAibox ? (cpu <= 1 ? "met" : "**NOT met**") : (cpu <= 1 ? "(would be met)" : "(would not be met)")) + " |\n"
        }
        out += "\nRSS and USS of s6 are sums over its processes (RSS counts shared pages once per process).\n"
        out += "\nPSS every 5 s, MiB (anonymous in parentheses):\n\n| t s | " + results.map(\.label).joined(separator: " | ") + " |\n|---:|" + results.map { _ in "---:" }.joined(separator: "|") + "|\n"
        let rows = results.map(\.samples.count).max() ?? 0
        for i in 0..<rows {
            let t = results.compactMap { i < $0.samples.count ? $0.samples[i].t : nil }.first ?? 0
            out += "| \(fmt(t, 0)) | " + results.map { i < $0.samples.count ? fmt(Double($0.samples[i].pssKB) / 1024, 3) + " (" + fmt(Double($0.samples[i].anonKB) / 1024, 3) + ")" : "" }.joined(separator: " | ") + " |\n"
        }
        out += "\n"
        for r in results where !r.note.isEmpty { out += "\(r.label): \(r.note)\n\n" }
        for r in results where !r.breakdown.isEmpty { out += r.breakdown }
        print(out)
        fflush(nil)
        return out
    }

    // MARK: - 3. Scale

    struct WorkerRow: Decodable {
        var name: String
        var state: String
        var pid: Int32?
        var restarts: Int
    }

    struct EventRow: Decodable {
        var at: Int64
        var kind: String
        var worker: String?
    }

    func aiboxWorkers(_ root: String, binary: String? = nil) throws -> [WorkerRow] {
        let r = try capture([binary ?? aibox, "workers", "--json", "--root", root])
        guard r.code == 0 else { throw BenchError("aibox workers --json exited \(r.code)") }
        return try JSONDecoder().decode([WorkerRow].self, from: Data(r.out.utf8))
    }

    func aiboxEvents(_ root: String, sinceMS: Int64, limit: Int) throws -> [EventRow] {
        let r = try capture([aibox, "events", "--json", "--root", root, "--since", String(sinceMS / 1000), "-n", String(limit)])
        guard r.code == 0 else { throw BenchError("aibox events --json exited \(r.code)") }
        return try JSONDecoder().decode([EventRow].self, from: Data(r.out.utf8)).filter { $0.at >= sinceMS }
    }

    /// Polls until every worker is ready (and, when `notPIDs` is given, has a new pid).
    func waitAllReady(_ root: String, _ n: Int, notPIDs: Set<Int32> = [], timeoutMS: Int, daemon: Child) throws -> (ms: Double, polls: Int, last: [WorkerRow]) {
        let t0 = monoNS()
        var polls = 0
        while true {
            if daemon.poll() { throw BenchError("the daemon exited (\(daemon.exitDescription))") }
            let ws = (try? aiboxWorkers(root)) ?? []
            polls += 1
            let ready = ws.filter { $0.state == "ready" && !notPIDs.contains($0.pid ?? -1) }.count
            if ws.count == n && ready == n { return (Double(monoNS() - t0) / 1e6, polls, ws) }
            if Double(monoNS() - t0) / 1e6 > Double(timeoutMS) {
                let states = Dictionary(grouping: ws, by: \.state).mapValues(\.count)
                throw BenchError("not all \(n) ready after \(timeoutMS) ms: \(states)")
            }
            try sleepMS(50)
        }
    }

    func scale() throws -> String {
        let n = options.scaleWorkers
        let dir = work + "/scale"
        let root = dir + "/root"
        try mkdirs(root + "/usr/lib/aibox/workers.d")
        try provision(root)
        var toml = "# \(n) workers, ready at once; restart after SIGKILL with the default restart-delay (100 ms ± 20 %).\n"
        for i in 0..<n {
            toml += "[worker.w-\(String(format: "%03d", i))]\nexec = \(tomlArray([worker, "--ready-after", "0", "--quiet"]))\nnotify = true\n\n"
        }
        try writeFile(root + "/usr/lib/aibox/workers.d/scale.toml", toml)
        say("scale: starting the daemon with \(n) workers")
        let w0 = wallMS()
        let daemon = try launch([aibox, "daemon", "--root", root, "--log-target", "files"], name: "aibox daemon", log: dir + "/daemon.log")
        defer {
            if !daemon.poll() {
                daemon.signal(SIGTERM)
                if !daemon.wait(timeoutMS: 30_000) {
                    say("scale: the daemon did not stop within 30 s; killing")
                    daemon.signal(SIGKILL)
                    _ = daemon.wait(timeoutMS: 5000)
                }
            }
        }
        var out = "### 3. Scale: \(n) workers (aibox only)\n\n"
        let up = try waitAllReady(root, n, timeoutMS: 120_000, daemon: daemon)
        let upEvents = try aiboxEvents(root, sinceMS: w0, limit: 10 * n + 100)
        let readyEvents = upEvents.filter { $0.kind == "worker.ready" }
        let lastReady = readyEvents.map(\.at).max().map { Double($0 - w0) }
        let firstStart = upEvents.first { $0.kind == "worker.started" }.map { Double($0.at - w0) }
        say("scale: all \(n) ready after \(fmt(up.ms, 0)) ms (polled)")
        try sleepMS(2000)

        let pids = up.last.compactMap(\.pid)
        let w1 = wallMS()
        let k0 = monoNS()
        for p in pids where p > 1 { _ = kill(p, SIGKILL) }
        let killMS = Double(monoNS() - k0) / 1e6
        let again = try waitAllReady(root, n, notPIDs: Set(pids), timeoutMS: 120_000, daemon: daemon)
        let againEvents = try aiboxEvents(root, sinceMS: w1, limit: 10 * n + 100)
        let againReady = againEvents.filter { $0.kind == "worker.ready" }
        let lastAgain = againReady.map(\.at).max().map { Double($0 - w1) }
        let exited = againEvents.filter { $0.kind == "worker.exited" }.count
        let lastSpawn = againEvents.filter { $0.kind == "worker.started" }.map(\.at).max().map { Double($0 - w1) }
        say("scale: all \(n) ready again after \(fmt(again.ms, 0)) ms (polled)")
        let pss = Proc.rollup(daemon.pid)["Pss"] ?? 0
        let cpuTicks = Proc.stat(daemon.pid)?.ticks ?? 0

        out += "Workers: `aibox-example-worker --ready-after 0 --quiet`, `notify = true`, other keys at their defaults. "
        out += "\"Polled\" is the time until `aibox workers --json` (polled every 50 ms, \(up.polls + again.polls) calls of ~40 ms) first showed every worker ready; "
        out += "\"by events\" is the `at` of the last `worker.ready` event in the database (wall-clock ms).\n\n"
        out += "| phase | polled ms | by events ms | detail |\n|---|---:|---:|---|\n"
        out += "| daemon start → all \(n) ready | \(fmt(up.ms, 0)) | \(lastReady.map { fmt($0, 0) } ?? "–") | \(readyEvents.count) ready events; first worker started at \(firstStart.map { fmt($0, 0) } ?? "–") ms (daemon start-up) |\n"
        out += "| SIGKILL to all \(n) → all ready again | \(fmt(again.ms, 0)) | \(lastAgain.map { fmt($0, 0) } ?? "–") | \(exited) exits recorded; last respawn at \(lastSpawn.map { fmt($0, 0) } ?? "–") ms; the kill loop took \(fmt(killMS, 1)) ms |\n"
        out += "\nDaemon after both phases: PSS \(fmt(Double(pss) / 1024)) MiB, CPU time \(fmt(Double(cpuTicks) / Proc.clockTicks)) s since start.\n\n"
        print(out)
        fflush(nil)
        return out
    }
}

// MARK: - main

func parseOptions() throws -> Options {
    var o = Options()
    var args = CommandLine.arguments.dropFirst()
    func value(_ flag: String) throws -> String {
        guard let v = args.popFirst() else { throw BenchError("\(flag) needs a value") }
        return v
    }
    func int(_ flag: String) throws -> Int {
        guard let i = Int(try value(flag)), i > 0 else { throw BenchError("\(flag) needs a positive integer") }
        return i
    }
    while let a = args.popFirst() {
        switch a {
        case "--only": o.only = Set(try value(a).split(separator: ",").map(String.init))
        case "--crash-mode":
            o.crashMode = try value(a)
            guard ["parallel", "sequential", "both"].contains(o.crashMode) else { throw BenchError("--crash-mode is parallel, sequential or both") }
        case "--crash-workers":
            o.crashWorkers = try value(a).split(separator: ",").map(String.init)
            guard !o.crashWorkers.isEmpty, o.crashWorkers.allSatisfy({ ["example", "lean"].contains($0) }) else {
                throw BenchError("--crash-workers takes example, lean or both (example,lean)")
            }
        case "--restarts": o.restarts = try int(a)
        case "--blocks": o.blocks = try int(a)
        case "--footprint-workers": o.footprintWorkers = try int(a)
        case "--footprint-seconds": o.footprintSeconds = try int(a)
        case "--footprint-baseline":
            let path = try value(a)
            guard access(path, X_OK) == 0 else { throw BenchError("--footprint-baseline \(path): not an executable file") }
            o.footprintBaseline = path
        case "--scale-workers": o.scaleWorkers = try int(a)
        case "--keep": o.keep = true
        case "-h", "--help":
            print(
                """
                usage: aibox-bench [--only crash,footprint,scale] [--crash-mode sequential|parallel|both]
                                   [--crash-workers example,lean] [--restarts N] [--blocks N]
                                   [--footprint-workers N] [--footprint-seconds S] [--footprint-baseline AIBOX]
                                   [--scale-workers N] [--keep]
                """)
            exit(0)
        default: throw BenchError("unknown argument \(a); see --help")
        }
    }
    for k in o.only where !["crash", "footprint", "scale"].contains(k) { throw BenchError("--only takes crash, footprint, scale") }
    return o
}

signal(SIGINT) { _ in interrupted = 1 }
signal(SIGTERM) { _ in interrupted = 1 }
signal(SIGPIPE, SIG_IGN)

do {
    let options = try parseOptions()
    let bench = try Bench(options: options)
    say("scratch directory \(bench.work)")
    print("## aibox benchmarks\n")
    print(bench.machine())
    print("| other processes busy at start | \(bench.busyOthers()) |\n")
    fflush(nil)
    var failed = false
    for part in ["crash", "footprint", "scale"] where options.only.contains(part) {
        do {
            switch part {
            case "crash": _ = try bench.crash()
            case "footprint": _ = try bench.footprint()
            default: _ = try bench.scale()
            }
        } catch is Interrupted {
            say("interrupted; stopping everything")
            _ = bench.sweep("interrupted")
            exit(130)
        } catch {
            failed = true
            print("### \(part): FAILED\n\n\(error)\n")
            say("\(part) failed: \(error)")
        }
        let strays = bench.sweep(part)
        if !strays.isEmpty { print("Stray processes after \(part) (killed): \(strays.joined(separator: "; "))\n") }
        fflush(nil)
    }
    let left = bench.sweep("end")
    print("Processes left at the end: \(left.isEmpty ? "none" : left.joined(separator: "; "))")
    if options.keep { say("kept \(bench.work)") } else { try? FileManager.default.removeItem(atPath: bench.work) }
    exit(failed ? 1 : 0)
} catch {
    FileHandle.standardError.write(Data("aibox-bench: \(error)\n".utf8))
    exit(1)
}

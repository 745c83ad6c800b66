import AIBoxCore
import AIBoxSystem
import CAIBoxOS
import Glibc

/// No test leaves a process behind. The test process becomes a child subreaper on its first
/// use of the harness, so everything a test starts stays its descendant even when orphaned
/// (a launcher killed before its child, a daemon killed before its workers); when the test
/// run ends (swift-testing and XCTest leave through exit(), which runs atexit handlers,
/// after every test) the live descendants are named on stderr, killed, and the run fails
/// with exit status 1. Swift Testing has no hook that runs after the last test; exit is
/// the one moment that comes after all of them, whatever ran in parallel.
enum LeftoverCheck {
    /// Starts the watch (once; every harness entry point calls it).
    static let watching: Void = {
        _ = aibox_set_child_subreaper()
        atexit { LeftoverCheck.atExit() }
    }()

    /// Live descendants of this process (zombies excluded: nothing left to stop).
    static func descendants() -> [ProcessStat] {
        let me = getpid()
        let all = Dictionary(ProcFS.allPIDs().compactMap(ProcFS.info).map { ($0.pid, $0) }, uniquingKeysWith: { a, _ in a })
        return all.values.filter { p in
            guard p.state != "Z", p.pid != me else { return false }
            var parent = p.ppid
            for _ in 0..<64 {
                if parent == me { return true }
                guard let next = all[parent], parent > 1 else { return false }
                parent = next.ppid
            }
            return false
        }.sorted { $0.pid < $1.pid }
    }

    static func commandLine(_ pid: Int32) -> String {
        let bytes = readSmallFile("/proc/\(pid)/cmdline", limit: 4096) ?? []
        return bytes.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ")
    }

    private static func atExit() {
        // A process a test has just signalled may need a moment to go.
        var left = descendants()
        let deadline = Clock.monotonic() + .seconds(2)
        while !left.isEmpty && Clock.monotonic() < deadline {
            usleep(20_000)
            left = descendants()
        }
        guard !left.isEmpty else { return }
        var report = "\nLEFTOVER PROCESSES: \(left.count) process(es) started by the tests were still running when the run ended:\n"
        for p in left { report += "  pid \(p.pid) (parent \(p.ppid)): \(commandLine(p.pid))\n" }
        report += "They are killed now; the run fails. Each test must stop what it starts.\n"
        for p in left { kill(p.pid, SIGKILL) }
        writeStandardError(report)
        _exit(1)
    }
}

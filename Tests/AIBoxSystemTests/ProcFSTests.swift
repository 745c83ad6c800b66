import Glibc
import Testing

@testable import AIBoxSystem

@Suite("/proc")
struct ProcFSTests {
    /// Fields 3 … 44 of a real stat line, after the command name.
    static let rest =
        "S 1 4240 4239 34816 4240 4194560 1203 0 2 0 31 7 0 0 20 0 3 0 987654 12345678 321 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 17 3 0 0 0 0 0\n"

    @Test("a command name holding spaces and ')' does not shift the fields")
    func parseTrickyName() throws {
        let line = "4242 (evil) name (S 1 2 3) " + Self.rest
        let info = try #require(ProcFS.parseStat(Array(line.utf8)))
        #expect(info.pid == 4242)
        #expect(info.state == "S")
        #expect(info.ppid == 1)
        #expect(info.pgrp == 4240)
        #expect(info.session == 4239)
        #expect(info.startTime == 987_654)
        #expect(info.rssPages == 321)
    }

    @Test("a plain stat line")
    func parsePlain() throws {
        let info = try #require(ProcFS.parseStat(Array("17 (sleep) ".utf8) + Array(Self.rest.utf8)))
        #expect(info.pid == 17)
        #expect(info.pgrp == 4240)
    }

    @Test(
        "malformed stat lines give nil",
        arguments: [
            "", "4242 evil S 1 2 3", "(x) " + ProcFSTests.rest, "abc (x) " + ProcFSTests.rest,
            "4242 (x) S 1 4240 4239 34816 4240 4194560 1203 0 2 0 31 7 0 0 20 0 3 0 987654",
            "4242 (x) SS 1 4240 4239 34816 4240 4194560 1203 0 2 0 31 7 0 0 20 0 3 0 987654 12345678 321",
            "4242 (x) S one 4240 4239 34816 4240 4194560 1203 0 2 0 31 7 0 0 20 0 3 0 987654 12345678 321",
        ])
    func parseMalformed(line: String) {
        #expect(ProcFS.parseStat(Array(line.utf8)) == nil)
    }

    @Test("info about this very process")
    func infoSelf() throws {
        let info = try #require(ProcFS.info(getpid()))
        #expect(info.pid == getpid())
        #expect(info.ppid == getppid())
        #expect(info.pgrp == getpgrp())
        #expect(info.session == getsid(0))
        // The process is the main thread, which may be asleep while this test's thread runs.
        #expect(["R", "S"].contains(info.state))
        let thread = try #require(readSmallFile("/proc/thread-self/stat").flatMap(ProcFS.parseStat))
        #expect(thread.state == "R")
        #expect(info.rssPages > 0)
        // Started after boot and before now (clock ticks since boot).
        let ticks = UInt64(sysconf(Int32(_SC_CLK_TCK)))
        #expect(info.startTime > 0)
        #expect(info.startTime / ticks <= Clock.bootNanoseconds() / 1_000_000_000)
    }

    @Test("no info for a pid that does not exist")
    func infoMissing() {
        #expect(ProcFS.info(Int32.max) == nil)
    }

    @Test("this process is found in its group and its memory is counted")
    func groups() {
        #expect(ProcFS.allPIDs().contains(getpid()))
        #expect(ProcFS.members(ofGroup: getpgrp()).contains { $0.pid == getpid() })
        let resident = ProcFS.residentBytes(ofGroups: [getpgrp()])
        #expect((resident[getpgrp()] ?? 0) >= UInt64(ProcFS.pageSize))
    }
}

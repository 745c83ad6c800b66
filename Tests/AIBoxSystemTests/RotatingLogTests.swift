import AIBoxCore
import Glibc
import Testing

@testable import AIBoxSystem

@Suite("Rotating worker logs")
struct RotatingLogTests {
    /// 30 characters, 31 bytes with its newline: "line 007 xxxxxxxxxxxxxxxxxxxxx".
    static func line(_ i: Int) -> String {
        var n = String(i)
        while n.count < 3 { n = "0" + n }
        return "line \(n) " + String(repeating: "x", count: 21)
    }

    /// A clock that moves on by one second each time it is read, from 2026-11-27T10:00:00Z.
    final class SteppingClock: @unchecked Sendable {
        var next: Int64 = 1_795_773_600_000
        var synchronized = true
        func read() -> LogStamp {
            defer { next += 1000 }
            return LogStamp(milliseconds: next, synchronized: synchronized)
        }
    }

    /// `line` as the file holds it: after its stamp (25 bytes with the space; 56 with the newline).
    static func stored(_ text: String) -> String? { LogStamp.split(Substring(text)).map { String($0.text) } }

    @Test("appending past maxBytes rotates to .1 and .2, keeps at most `keep` files, never splits a line")
    func rotation() throws {
        try withTemporaryDirectory { dir in
            let log = RotatingLog(directory: dir, name: "chat", maxBytes: 170, keep: 2, clock: SteppingClock().read)
            #expect(log.path == dir + "/chat.log")
            for i in 1...20 {
                // Each line arrives in two pieces, as pipe reads cut output anywhere.
                let bytes = Array((Self.line(i) + "\n").utf8)
                log.append(bytes[0..<13])
                log.append(bytes[13...])
            }
            #expect(listDirectory(dir).sorted() == ["chat.log", "chat.log.1", "chat.log.2"])
            var all: [String] = []
            for file in ["chat.log.2", "chat.log.1", "chat.log"] {
                let text = try #require(readTextFile(dir + "/" + file))
                #expect(text.utf8.count <= 170, "\(file) holds \(text.utf8.count) bytes")
                #expect(text.hasSuffix("\n"))
                let lines = text.split(separator: "\n").compactMap { Self.stored(String($0)) }
                #expect(lines.allSatisfy { $0.utf8.count == 30 && $0.hasPrefix("line ") }, "\(file): \(text)")
                all += lines
            }
            // Three files of 3 lines at most hold the newest lines, in order: 13 … 20.
            #expect(all == (13...20).map(Self.line))
        }
    }

    @Test("tail returns the last N lines across the current and rotated files")
    func tail() throws {
        try withTemporaryDirectory { dir in
            let log = RotatingLog(directory: dir, name: "w", maxBytes: 170, keep: 2, clock: SteppingClock().read)
            for i in 1...20 { log.append(ArraySlice((Self.line(i) + "\n").utf8)) }
            func tail(_ n: Int) -> [String?] { RotatingLog.tail(directory: dir, name: "w", lines: n).map(Self.stored) }
            #expect(tail(1) == [Self.line(20)])
            #expect(tail(5) == (16...20).map(Self.line))
            #expect(tail(7) == (14...20).map(Self.line))
            #expect(tail(100) == (13...20).map(Self.line))
            #expect(tail(0) == [])
            #expect(RotatingLog.tail(directory: dir, name: "nothing", lines: 5) == [])
        }
    }

    @Test("an unfinished line waits for its end; flushPartial ends it")
    func partialLines() throws {
        try withTemporaryDirectory { dir in
            let clock = SteppingClock()
            let log = RotatingLog(directory: dir, name: "p", maxBytes: 1 << 20, keep: 1, clock: clock.read)
            log.append(ArraySlice("hello ".utf8))
            #expect((readTextFile(log.path) ?? "") == "")
            log.append(ArraySlice("world\nsecond".utf8))
            // Each line carries the time its first bytes came: "hello" 10:00:00, "second" 10:00:01.
            #expect(readTextFile(log.path) == "2026-11-27T10:00:00.000Z hello world\n")
            log.flushPartial()
            let both = "2026-11-27T10:00:00.000Z hello world\n2026-11-27T10:00:01.000Z second\n"
            #expect(readTextFile(log.path) == both)
            log.flushPartial()
            #expect(readTextFile(log.path) == both)
            // Before NTP set the clock: the time as it was, marked.
            clock.synchronized = false
            clock.next = 12_345
            log.append(ArraySlice("early\n\nthird\n".utf8))
            #expect(
                readTextFile(log.path)
                    == both + "1970-01-01T00:00:12.345Z? early\n1970-01-01T00:00:12.345Z? \n1970-01-01T00:00:12.345Z? third\n")
        }
    }

    @Test("a log reopened after a restart continues counting from the file's size")
    func reopen() throws {
        try withTemporaryDirectory { dir in
            do {
                let log = RotatingLog(directory: dir, name: "r", maxBytes: 170, keep: 1, clock: SteppingClock().read)
                for i in 1...3 { log.append(ArraySlice((Self.line(i) + "\n").utf8)) }
            }
            let log = RotatingLog(directory: dir, name: "r", maxBytes: 170, keep: 1, clock: SteppingClock().read)
            log.append(ArraySlice((Self.line(4) + "\n").utf8))
            func lines(_ file: String) -> [String?] {
                (readTextFile(dir + "/" + file) ?? "").split(separator: "\n").map { Self.stored(String($0)) }
            }
            #expect(lines("r.log") == [Self.line(4)])
            #expect(lines("r.log.1") == (1...3).map(Self.line))
            #expect(!fileExists(dir + "/r.log.2"))
        }
    }
}

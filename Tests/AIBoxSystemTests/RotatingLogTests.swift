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

    @Test("appending past maxBytes rotates to .1 and .2, keeps at most `keep` files, never splits a line")
    func rotation() throws {
        try withTemporaryDirectory { dir in
            let log = RotatingLog(directory: dir, name: "chat", maxBytes: 100, keep: 2)
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
                #expect(text.utf8.count <= 100, "\(file) holds \(text.utf8.count) bytes")
                #expect(text.hasSuffix("\n"))
                let lines = text.split(separator: "\n").map(String.init)
                #expect(lines.allSatisfy { $0.utf8.count == 30 && $0.hasPrefix("line ") }, "\(file): \(lines)")
                all += lines
            }
            // Three files of 3 lines at most hold the newest lines, in order: 13 … 20.
            #expect(all == (13...20).map(Self.line))
        }
    }

    @Test("tail returns the last N lines across the current and rotated files")
    func tail() throws {
        try withTemporaryDirectory { dir in
            let log = RotatingLog(directory: dir, name: "w", maxBytes: 100, keep: 2)
            for i in 1...20 { log.append(ArraySlice((Self.line(i) + "\n").utf8)) }
            #expect(RotatingLog.tail(directory: dir, name: "w", lines: 1) == [Self.line(20)])
            #expect(RotatingLog.tail(directory: dir, name: "w", lines: 5) == (16...20).map(Self.line))
            #expect(RotatingLog.tail(directory: dir, name: "w", lines: 7) == (14...20).map(Self.line))
            #expect(RotatingLog.tail(directory: dir, name: "w", lines: 100) == (13...20).map(Self.line))
            #expect(RotatingLog.tail(directory: dir, name: "w", lines: 0) == [])
            #expect(RotatingLog.tail(directory: dir, name: "nothing", lines: 5) == [])
        }
    }

    @Test("an unfinished line waits for its end; flushPartial ends it")
    func partialLines() throws {
        try withTemporaryDirectory { dir in
            let log = RotatingLog(directory: dir, name: "p", maxBytes: 1 << 20, keep: 1)
            log.append(ArraySlice("hello ".utf8))
            #expect((readTextFile(log.path) ?? "") == "")
            log.append(ArraySlice("world\nsecond".utf8))
            #expect(readTextFile(log.path) == "hello world\n")
            log.flushPartial()
            #expect(readTextFile(log.path) == "hello world\nsecond\n")
            log.flushPartial()
            #expect(readTextFile(log.path) == "hello world\nsecond\n")
        }
    }

    @Test("a log reopened after a restart continues counting from the file's size")
    func reopen() throws {
        try withTemporaryDirectory { dir in
            do {
                let log = RotatingLog(directory: dir, name: "r", maxBytes: 100, keep: 1)
                for i in 1...3 { log.append(ArraySlice((Self.line(i) + "\n").utf8)) }
            }
            let log = RotatingLog(directory: dir, name: "r", maxBytes: 100, keep: 1)
            log.append(ArraySlice((Self.line(4) + "\n").utf8))
            #expect(readTextFile(dir + "/r.log") == Self.line(4) + "\n")
            #expect(readTextFile(dir + "/r.log.1") == (1...3).map { Self.line($0) + "\n" }.joined())
            #expect(!fileExists(dir + "/r.log.2"))
        }
    }
}

import Testing

@testable import AIBoxAgentCore

private func parse(_ text: String, chunks: [Int]? = nil) throws -> [ServerSentEvent] {
    var p = ServerSentEventParser()
    let bytes = Array(text.utf8)
    guard let chunks else { return try p.feed(bytes) }
    var out: [ServerSentEvent] = []
    var at = 0
    for n in chunks + [bytes.count] {
        let end = min(bytes.count, at + n)
        out += try p.feed(bytes[at..<end])
        at = end
    }
    return out
}

@Suite("server-sent events")
struct ServerSentEventTests {
    @Test("the standard's examples: data lines joined with newlines, comments, one space after the colon dropped")
    func standardExamples() throws {
        #expect(try parse("data: YHOO\ndata: +2\ndata: 10\n\n") == [ServerSentEvent(data: "YHOO\n+2\n10")])
        #expect(
            try parse(": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n") == [
                ServerSentEvent(data: "first event", lastEventID: "1"),
                ServerSentEvent(data: "second event", lastEventID: ""),
                ServerSentEvent(data: " third event", lastEventID: ""),
            ])
        // "data" alone is an empty data line; two of them make one newline.
        #expect(try parse("data\n\ndata\ndata\n\ndata:\n") == [ServerSentEvent(data: ""), ServerSentEvent(data: "\n")])
    }

    @Test("event types (Anthropic's), an id that carries over, an id with NUL ignored, unknown fields and retry skipped")
    func fields() throws {
        let text =
            "event: message_start\nid: 7\ndata: {\"a\":1}\n\nretry: 10\nfoo: bar\ndata: x\n\nid: a\u{0}b\nevent: ping\ndata: {}\n\n"
        #expect(
            try parse(text) == [
                ServerSentEvent(type: "message_start", data: "{\"a\":1}", lastEventID: "7"),
                ServerSentEvent(type: "message", data: "x", lastEventID: "7"),
                ServerSentEvent(type: "ping", data: "{}", lastEventID: "7"),
            ])
    }

    @Test("CRLF, LF and CR line ends, mixed; a CRLF split between chunks is one line end")
    func lineEnds() throws {
        let want = [ServerSentEvent(data: "a\nb"), ServerSentEvent(data: "c")]
        #expect(try parse("data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n") == want)
        #expect(try parse("data: a\rdata: b\r\rdata: c\r\r") == want)
        #expect(try parse("data: a\ndata: b\r\n\rdata: c\n\r\n") == want)
        #expect(try parse("data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n", chunks: [8, 1]) == want)
    }

    @Test("an event without its blank line is never dispatched, also not at the end of the stream")
    func cutStream() throws {
        var p = ServerSentEventParser()
        let half = try p.feed(Array("data: {\"choices\":[{\"delta\":{\"content\":\"Par\"}}]}\n".utf8))
        #expect(half.isEmpty)
        p.finish()
        let next = try p.feed(Array("data: b\n\n".utf8))
        #expect(next == [ServerSentEvent(data: "b")])
    }

    @Test("a byte-order mark at the start is skipped; bytes that only begin like one are text")
    func byteOrderMark() throws {
        var p = ServerSentEventParser()
        let a = try p.feed([0xEF, 0xBB, 0xBF] + Array("data: x\n\n".utf8))
        #expect(a == [ServerSentEvent(data: "x")])
        var q = ServerSentEventParser()
        let b = try q.feed([0xEF, 0xBB] + Array(":x\ndata: y\n\n".utf8))
        #expect(b == [ServerSentEvent(data: "y")])
    }

    @Test("the same events whichever way the stream is cut: at every byte, in two at every point, one byte at a time")
    func splitAnywhere() throws {
        let text =
            "\u{FEFF}: keep-alive\r\nevent: content_block_delta\r\ndata: {\"delta\":{\"text\":\"Pa\"}}\r\n\r\n"
            + "data: {\"choices\":[{\"delta\":{\"content\":\"ris ✓\"}}]}\n\ndata: line1\rdata: line2\r\rid: 9\ndata: [DONE]\n\n"
        let whole = try parse(text)
        #expect(whole.count == 4)
        #expect(whole.last == ServerSentEvent(data: "[DONE]", lastEventID: "9"))
        let n = text.utf8.count
        for cut in 0...n {
            #expect(try parse(text, chunks: [cut]) == whole, "cut at \(cut)")
        }
        #expect(try parse(text, chunks: Array(repeating: 1, count: n)) == whole)
    }

    @Test("a line or an event larger than the limit throws: a server cannot make the parser hold unbounded bytes")
    func bounded() throws {
        var p = ServerSentEventParser(maxEventBytes: 64)
        #expect(throws: ServerSentEventParser.TooLarge(limit: 64)) { try p.feed(Array(repeating: 0x61, count: 65)) }
        var q = ServerSentEventParser(maxEventBytes: 64)
        let many = String(repeating: "data: 0123456789\n", count: 10)
        #expect(throws: ServerSentEventParser.TooLarge(limit: 64)) { try q.feed(Array(many.utf8)) }
    }

    @Test("JSON lines (Ollama): split anywhere, blank lines skipped, a CR before the newline dropped, the last line without newline at finish")
    func jsonLines() throws {
        let text = "{\"a\":1}\n\n{\"b\":2}\r\n{\"done\":true}"
        for cut in 0...text.utf8.count {
            var s = JSONLinesSplitter()
            let bytes = Array(text.utf8)
            var lines = try s.feed(bytes[..<cut])
            lines += try s.feed(bytes[cut...])
            if let last = s.finish() { lines.append(last) }
            #expect(lines.map { String(decoding: $0, as: UTF8.self) } == ["{\"a\":1}", "{\"b\":2}", "{\"done\":true}"], "cut at \(cut)")
        }
        var s = JSONLinesSplitter(maxLineBytes: 8)
        #expect(throws: ServerSentEventParser.TooLarge(limit: 8)) { try s.feed(Array("{\"toolong\":1}\n".utf8)) }
    }
}

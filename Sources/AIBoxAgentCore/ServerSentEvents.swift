/// One event of a `text/event-stream` (the HTML standard's "server-sent events"): what
/// OpenAI, Anthropic and llama.cpp stream replies in.
public struct ServerSentEvent: Equatable, Sendable {
    /// The `event:` field; "message" when the server named none.
    public var type: String
    /// The `data:` lines joined with "\n".
    public var data: String
    /// The last `id:` seen so far in the stream (it carries over to later events).
    public var lastEventID: String

    public init(type: String = "message", data: String, lastEventID: String = "") {
        self.type = type
        self.data = data
        self.lastEventID = lastEventID
    }
}

/// Parses a `text/event-stream` fed in chunks of any size, as the standard's parsing rules
/// say: lines end with CRLF, LF or CR (a CRLF split across two chunks is one line end); a
/// byte-order mark at the start is skipped; `:` starts a comment; a field without `:` has
/// an empty value; one space after the colon is dropped; a blank line dispatches the event
/// (an event without data is not dispatched); an `id` containing NUL is ignored.
///
/// A hostile or broken server cannot make it hold more than `maxEventBytes` (one line or one
/// event's data): past that, `feed` throws and the stream is to be dropped.
public struct ServerSentEventParser: Sendable {
    public struct TooLarge: Error, Equatable, CustomStringConvertible {
        public let limit: Int
        public var description: String { "an event of the stream is larger than \(limit) bytes" }
    }

    public let maxEventBytes: Int
    private var line: [UInt8] = []
    private var data: [UInt8] = []
    private var hasData = false
    private var eventType: [UInt8] = []
    private var lastEventID = ""
    private var afterCR = false
    private var atStart = true
    private var bomMatched = 0

    public init(maxEventBytes: Int = 1 << 20) { self.maxEventBytes = maxEventBytes }

    /// The events completed by these bytes, in order.
    public mutating func feed(_ bytes: some Sequence<UInt8>) throws(TooLarge) -> [ServerSentEvent] {
        var out: [ServerSentEvent] = []
        for b in bytes {
            if atStart {
                // The UTF-8 byte-order mark, EF BB BF, once at the very start.
                let bom: [UInt8] = [0xEF, 0xBB, 0xBF]
                if b == bom[bomMatched] {
                    bomMatched += 1
                    if bomMatched == 3 { atStart = false }
                    continue
                }
                atStart = false
                if bomMatched > 0 {
                    // Not a BOM after all: what was held back is text of the first line.
                    line.append(contentsOf: bom[0..<bomMatched])
                }
            }
            if afterCR {
                afterCR = false
                if b == 0x0A { continue }  // the LF of a CRLF
            }
            if b == 0x0D || b == 0x0A {
                afterCR = b == 0x0D
                if let e = try endOfLine() { out.append(e) }
                continue
            }
            line.append(b)
            if line.count > maxEventBytes { throw TooLarge(limit: maxEventBytes) }
        }
        return out
    }

    /// The end of the stream: an event not ended by a blank line is dropped, as the standard
    /// says (a cut stream's half event is never taken for a whole one).
    public mutating func finish() {
        line.removeAll()
        data.removeAll()
        hasData = false
        eventType.removeAll()
    }

    private mutating func endOfLine() throws(TooLarge) -> ServerSentEvent? {
        defer { line.removeAll(keepingCapacity: true) }
        if line.isEmpty { return dispatch() }
        if line[0] == 0x3A { return nil }  // a comment (also the keep-alive some servers send)
        let field: ArraySlice<UInt8>
        var value: ArraySlice<UInt8>
        if let colon = line.firstIndex(of: 0x3A) {
            field = line[..<colon]
            value = line[(colon + 1)...]
            if value.first == 0x20 { value = value.dropFirst() }
        } else {
            field = line[...]
            value = []
        }
        switch String(decoding: field, as: UTF8.self) {
        case "event":
            eventType = Array(value)
        case "data":
            if hasData { data.append(0x0A) }
            data.append(contentsOf: value)
            hasData = true
            if data.count > maxEventBytes { throw TooLarge(limit: maxEventBytes) }
        case "id":
            if !value.contains(0) { lastEventID = String(decoding: value, as: UTF8.self) }
        default:
            break  // "retry" and unknown fields: nothing a reply stream needs
        }
        return nil
    }

    private mutating func dispatch() -> ServerSentEvent? {
        defer {
            data.removeAll(keepingCapacity: true)
            hasData = false
            eventType.removeAll()
        }
        guard hasData else { return nil }
        return ServerSentEvent(
            type: eventType.isEmpty ? "message" : String(decoding: eventType, as: UTF8.self),
            data: String(decoding: data, as: UTF8.self), lastEventID: lastEventID)
    }
}

/// Newline-delimited JSON (Ollama's native streaming): one JSON text per line, fed in chunks
/// of any size. Blank lines are skipped; a line longer than `maxLineBytes` throws.
public struct JSONLinesSplitter: Sendable {
    public let maxLineBytes: Int
    private var line: [UInt8] = []

    public init(maxLineBytes: Int = 1 << 20) { self.maxLineBytes = maxLineBytes }

    public mutating func feed(_ bytes: some Sequence<UInt8>) throws(ServerSentEventParser.TooLarge) -> [[UInt8]] {
        var out: [[UInt8]] = []
        for b in bytes {
            if b == 0x0A {
                if line.last == 0x0D { line.removeLast() }
                if !line.isEmpty { out.append(line) }
                line.removeAll(keepingCapacity: true)
                continue
            }
            line.append(b)
            if line.count > maxLineBytes { throw ServerSentEventParser.TooLarge(limit: maxLineBytes) }
        }
        return out
    }

    /// What is left at the end of the stream: a last line without its newline, if any.
    public mutating func finish() -> [UInt8]? {
        defer { line.removeAll() }
        if line.last == 0x0D { line.removeLast() }
        return line.isEmpty ? nil : line
    }
}

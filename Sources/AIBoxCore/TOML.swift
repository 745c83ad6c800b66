/// A TOML 1.0 reader for configuration files: tables, arrays of tables, dotted and quoted
/// keys, basic/literal/multi-line strings, integers (decimal, hex, octal, binary; 64-bit),
/// floats, booleans, date-times (checked, kept as text), arrays and inline tables. Errors
/// carry line and column. It is here instead of a package because the TOML package available
/// (TOMLKit) links full Foundation — ICU and all, some 6 MiB resident in a daemon whose
/// budget is 20 — and cannot tell where a key was.
///
/// Hostile input: the value tree nests at most `TOMLTable.maxDepth` levels — dotted keys,
/// [headers], arrays of tables, arrays and inline tables counted together — so neither the
/// reader (which recurses on arrays and inline tables) nor freeing the tree (ARC releases a
/// chain of tables recursively) can run out of stack. Work is linear in the input.
/// Differences from Python's `tomllib` (our differential test's reference) are deliberate and
/// listed in docs/ARCHITECTURE.md.

/// The kinds of TOML values.
public enum TOMLType: String, Sendable, CustomStringConvertible {
    case table, array, string, int = "integer", double = "float", bool = "boolean", dateTime = "date-time"
    public var description: String { rawValue }
}

/// One value.
public enum TOMLValue: Sendable {
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)
    /// An offset date-time, local date-time, local date or local time, as written (checked).
    case dateTime(String)
    case array([TOMLValue])
    case table(TOMLTable)

    public var type: TOMLType {
        switch self {
        case .string: return .string
        case .int: return .int
        case .double: return .double
        case .bool: return .bool
        case .dateTime: return .dateTime
        case .array: return .array
        case .table: return .table
        }
    }
    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    public var int: Int? { if case .int(let i) = self { return i } else { return nil } }
    public var double: Double? { if case .double(let d) = self { return d } else { return nil } }
    public var bool: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var array: [TOMLValue]? { if case .array(let a) = self { return a } else { return nil } }
    public var table: TOMLTable? { if case .table(let t) = self { return t } else { return nil } }

    /// Appends to an array in place: the enum's own reference is dropped first, so the array
    /// buffer is unique and `[[header]]` after `[[header]]` stays linear.
    fileprivate mutating func appendToArray(_ item: TOMLValue) {
        guard case .array(var items) = self else { return }
        self = .bool(false)
        items.append(item)
        self = .array(items)
    }
}

/// A table: keys in the order written, each with the line it was defined on.
public final class TOMLTable: @unchecked Sendable {
    /// How deep tables and arrays may nest below the document (key segments, [headers],
    /// arrays of tables, arrays and inline tables together). Configuration needs a handful.
    public static let maxDepth = 64

    public private(set) var keys: [String] = []
    private var entries: [String: Entry] = [:]

    private struct Entry {
        var value: TOMLValue
        var line: Int
    }

    /// How the table came to be; decides what may add to it later (TOML 1.0 "Table").
    enum Kind {
        /// Created as the prefix of a [header]: one [header] may still define it.
        case implicit
        /// Defined by a [header], an [[array-of-tables]] entry, or the document itself.
        case header
        /// Defined by dotted keys: more dotted keys in the same place, and sub-tables, may add to it.
        case dotted
        /// An inline table: complete as written.
        case inline
    }
    var kind: Kind
    /// Levels of tables and arrays above this table (the document: 0).
    let depth: Int
    /// Keys holding arrays of tables made by [[header]]s; other arrays are complete as written.
    var tableArrays: Set<String> = []

    public init() {
        kind = .header
        depth = 0
    }

    init(kind: Kind, depth: Int) {
        self.kind = kind
        self.depth = depth
    }

    public subscript(key: String) -> TOMLValue? { entries[key]?.value }

    /// The line where `key` was defined.
    public func line(of key: String) -> Int? { entries[key]?.line }

    /// The line of a key path below this table, or of its deepest part that exists (a missing
    /// key is reported at the table that lacks it).
    public func line(of path: [String]) -> Int? {
        var table: TOMLTable? = self
        var found: Int?
        for part in path {
            guard let t = table, let entry = t.entries[part] else { break }
            found = entry.line
            table = entry.value.table
        }
        return found
    }

    /// Adds a key that is not there yet.
    func add(_ key: String, _ value: TOMLValue, line: Int) {
        keys.append(key)
        entries[key] = Entry(value: value, line: line)
    }

    fileprivate func appendToArray(_ key: String, _ item: TOMLValue) {
        entries[key]?.value.appendToArray(item)
    }

    fileprivate func setLine(_ key: String, _ line: Int) {
        entries[key]?.line = line
    }

    /// Parses a document.
    public convenience init(string: String) throws(TOMLParseError) {
        self.init()
        var bytes = Array(string.utf8)
        // CRLF is a newline like LF; it is folded once here (columns are unchanged, as the CR
        // ends its line). A CR alone stays and is refused where it stands.
        if bytes.contains(0x0D) {
            var out: [UInt8] = []
            out.reserveCapacity(bytes.count)
            for (n, b) in bytes.enumerated() where !(b == 0x0D && n + 1 < bytes.count && bytes[n + 1] == 0x0A) { out.append(b) }
            bytes = out
        }
        var parser = TOMLParser(bytes, root: self)
        try parser.parseDocument()
    }
}

public struct TOMLSourcePosition: Equatable, Sendable {
    public let line: Int
    public let column: Int
}

public struct TOMLParseError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public let position: TOMLSourcePosition
}

private enum ASCII {
    static let tab: UInt8 = 0x09, lf: UInt8 = 0x0A, cr: UInt8 = 0x0D, space: UInt8 = 0x20
    static let quote = UInt8(ascii: "\""), apostrophe = UInt8(ascii: "'"), backslash = UInt8(ascii: "\\")
    static let hash = UInt8(ascii: "#"), comma = UInt8(ascii: ","), dot = UInt8(ascii: "."), equals = UInt8(ascii: "=")
    static let openBracket = UInt8(ascii: "["), closeBracket = UInt8(ascii: "]")
    static let openBrace = UInt8(ascii: "{"), closeBrace = UInt8(ascii: "}")
    static let plus = UInt8(ascii: "+"), minus = UInt8(ascii: "-"), underscore = UInt8(ascii: "_"), colon = UInt8(ascii: ":")
    static let zero = UInt8(ascii: "0"), nine = UInt8(ascii: "9")

    static func isDigit(_ c: UInt8) -> Bool { c >= zero && c <= nine }
    /// Control characters TOML refuses in strings and comments (tab is allowed).
    static func isControl(_ c: UInt8) -> Bool { (c < 0x20 && c != tab) || c == 0x7F }
}

struct TOMLParser {
    /// A place in the text, for errors that point back at what they are about.
    struct Mark {
        let offset: Int
        let line: Int
        let lineStart: Int
    }

    /// A key as written: its parts, and where each part starts.
    struct Key {
        var parts: [String] = []
        var marks: [Mark] = []
        var text: String { prefix(parts.count) }
        /// The first `n` parts as a message writes them.
        func prefix(_ n: Int) -> String { parts.prefix(n).map { shown(TOMLLines.key($0)) }.joined(separator: ".") }
    }

    let bytes: [UInt8]
    var i = 0
    var line = 1
    var lineStart = 0
    let root: TOMLTable
    var current: TOMLTable

    init(_ bytes: [UInt8], root: TOMLTable) {
        self.bytes = bytes
        self.root = root
        self.current = root
    }

    // MARK: Characters

    var peek: UInt8? { i < bytes.count ? bytes[i] : nil }
    func peek(_ offset: Int) -> UInt8? { i + offset < bytes.count ? bytes[i + offset] : nil }
    var mark: Mark { Mark(offset: i, line: line, lineStart: lineStart) }

    func fail(_ message: String) -> TOMLParseError { fail(message, at: mark) }

    func fail(_ message: String, at m: Mark) -> TOMLParseError {
        TOMLParseError(description: message, position: TOMLSourcePosition(line: m.line, column: m.offset - m.lineStart + 1))
    }

    func depthError(_ what: String, at m: Mark) -> TOMLParseError {
        fail(
            "\(what) nests deeper than \(TOMLTable.maxDepth) levels; dotted keys, [headers], arrays and inline tables may nest \(TOMLTable.maxDepth) levels together",
            at: m)
    }

    /// Steps over a line feed.
    mutating func newline() {
        i += 1
        line += 1
        lineStart = i
    }

    mutating func skipSpaces() {
        while i < bytes.count, bytes[i] == ASCII.space || bytes[i] == ASCII.tab { i += 1 }
    }

    mutating func skipComment() throws(TOMLParseError) {
        guard peek == ASCII.hash else { return }
        while i < bytes.count, bytes[i] != ASCII.lf {
            if ASCII.isControl(bytes[i]) { throw controlCharacter(bytes[i], in: "a comment") }
            i += 1
        }
    }

    func controlCharacter(_ c: UInt8, in place: String) -> TOMLParseError {
        if c == ASCII.cr { return fail("a carriage return (CR) without a line feed in \(place); lines end in LF or CRLF") }
        return fail("the control character U+\(hex(c)) in \(place); only tab is allowed (in strings, write an escape)")
    }

    /// Spaces, comments and newlines (between statements, inside arrays).
    mutating func skipBlank() throws(TOMLParseError) {
        while true {
            skipSpaces()
            try skipComment()
            guard let c = peek else { return }
            if c == ASCII.lf {
                newline()
            } else if c == ASCII.cr {
                throw controlCharacter(c, in: "the text")
            } else {
                return
            }
        }
    }

    mutating func expectLineEnd(after what: String) throws(TOMLParseError) {
        skipSpaces()
        try skipComment()
        guard let c = peek else { return }
        if c == ASCII.lf {
            newline()
            return
        }
        if c == ASCII.cr { throw controlCharacter(c, in: "the text") }
        throw fail("expected the end of the line after \(what)")
    }

    // MARK: Document

    mutating func parseDocument() throws(TOMLParseError) {
        // A byte order mark, as Windows editors write (tomllib refuses it; see docs).
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) {
            i = 3
            lineStart = 3
        }
        while true {
            try skipBlank()
            guard let c = peek else { return }
            if c == ASCII.openBracket {
                try parseHeader()
                try expectLineEnd(after: "the table header")
            } else {
                try parseKeyValue(into: current)
                try expectLineEnd(after: "the value")
            }
        }
    }

    mutating func parseHeader() throws(TOMLParseError) {
        let isArray = peek(1) == ASCII.openBracket
        let headerLine = line
        i += isArray ? 2 : 1
        let key = try parseKey(base: 0)
        skipSpaces()
        if isArray {
            guard peek == ASCII.closeBracket, peek(1) == ASCII.closeBracket else {
                throw fail("expected ']]' to close the header [[\(key.text)]]")
            }
            i += 2
        } else {
            guard peek == ASCII.closeBracket else { throw fail("expected ']' to close the header [\(key.text)]") }
            i += 1
        }
        var table = root
        let last = key.parts.count - 1
        for n in 0..<last {
            let part = key.parts[n]
            var path: String { key.prefix(n + 1) }
            switch table[part] {
            case nil:
                guard table.depth + 1 <= TOMLTable.maxDepth else { throw depthError("this header", at: key.marks[n]) }
                let fresh = TOMLTable(kind: .implicit, depth: table.depth + 1)
                table.add(part, .table(fresh), line: headerLine)
                table = fresh
            case .table(let t):
                guard t.kind != .inline else {
                    throw fail("\"\(path)\" is an inline table, complete as written; a header cannot add to it", at: key.marks[n])
                }
                table = t
            case .array(let items):
                guard table.tableArrays.contains(part), case .table(let t)? = items.last else {
                    throw fail("\"\(path)\" is an array written as a value; a header cannot add to it", at: key.marks[n])
                }
                table = t
            case let v?:
                throw fail("\"\(path)\" is already \(article(v.type)), not a table (line \(table.line(of: part) ?? 0))", at: key.marks[n])
            }
        }
        let name = key.parts[last]
        let at = key.marks[last]
        if isArray {
            let fresh = TOMLTable(kind: .header, depth: table.depth + 2)
            guard fresh.depth <= TOMLTable.maxDepth else { throw depthError("this header", at: at) }
            if table.tableArrays.contains(name) {
                // No copy of the array may be held here, or appending would copy it.
                table.appendToArray(name, .table(fresh))
                current = fresh
                return
            }
            switch table[name] {
            case nil:
                table.add(name, .array([.table(fresh)]), line: headerLine)
                table.tableArrays.insert(name)
            case .array:
                throw fail(
                    "\"\(key.text)\" is an array written as a value (line \(table.line(of: name) ?? 0)); [[\(key.text)]] cannot add tables to it",
                    at: at)
            case let v?:
                throw fail(
                    "\"\(key.text)\" is already \(article(v.type)) (line \(table.line(of: name) ?? 0)), not an array of tables", at: at)
            }
            current = fresh
            return
        }
        switch table[name] {
        case nil:
            guard table.depth + 1 <= TOMLTable.maxDepth else { throw depthError("this header", at: at) }
            let fresh = TOMLTable(kind: .header, depth: table.depth + 1)
            table.add(name, .table(fresh), line: headerLine)
            current = fresh
        case .table(let t):
            let first = table.line(of: name) ?? 0
            switch t.kind {
            case .implicit:
                t.kind = .header
                table.setLine(name, headerLine)
                current = t
            case .header: throw fail("the table [\(key.text)] is defined twice; first on line \(first)", at: at)
            case .dotted:
                throw fail(
                    "the table \"\(key.text)\" is already defined by dotted keys (line \(first)); a header cannot define it again", at: at)
            case .inline:
                throw fail("\"\(key.text)\" is an inline table (line \(first)), complete as written; a header cannot add to it", at: at)
            }
        case .array where table.tableArrays.contains(name):
            throw fail("\"\(key.text)\" is an array of tables; write [[\(key.text)]] to add a table to it", at: at)
        case let v?:
            throw fail("\"\(key.text)\" is already \(article(v.type)) (line \(table.line(of: name) ?? 0)), not a table", at: at)
        }
    }

    /// `key = value` into `base` (the current section, or an inline table being read).
    mutating func parseKeyValue(into base: TOMLTable) throws(TOMLParseError) {
        let keyLine = line
        let key = try parseKey(base: base.depth)
        skipSpaces()
        guard peek == ASCII.equals else { throw fail("expected '=' after the key \"\(key.text)\"") }
        i += 1
        skipSpaces()
        var table = base
        let last = key.parts.count - 1
        for n in 0..<last {
            let part = key.parts[n]
            var path: String { key.prefix(n + 1) }
            switch table[part] {
            case nil:
                let fresh = TOMLTable(kind: .dotted, depth: table.depth + 1)
                table.add(part, .table(fresh), line: keyLine)
                table = fresh
            case .table(let t):
                switch t.kind {
                case .implicit:
                    t.kind = .dotted
                case .dotted: break
                case .header:
                    throw fail(
                        "\"\(path)\" is a table defined by a header (line \(table.line(of: part) ?? 0)); dotted keys cannot add to it from here",
                        at: key.marks[n])
                case .inline:
                    throw fail(
                        "\"\(path)\" is an inline table (line \(table.line(of: part) ?? 0)), complete as written; dotted keys cannot add to it",
                        at: key.marks[n])
                }
                table = t
            case let v?:
                throw fail("\"\(path)\" is already \(article(v.type)) (line \(table.line(of: part) ?? 0)), not a table", at: key.marks[n])
            }
        }
        let name = key.parts[last]
        if let first = table.line(of: name) {
            throw fail("the key \"\(key.text)\" is defined twice; first on line \(first)", at: key.marks[0])
        }
        let value = try parseValue(depth: table.depth + 1)
        table.add(name, value, line: keyLine)
    }

    // MARK: Keys

    /// A bare, quoted or dotted key. `base` is the depth of the table it is relative to: each
    /// part before a dot becomes a table one level deeper, bounded by `maxDepth`.
    mutating func parseKey(base: Int) throws(TOMLParseError) -> Key {
        var key = Key()
        while true {
            skipSpaces()
            let m = mark
            guard let c = peek else { throw fail("expected a key") }
            if base + key.parts.count + 1 > TOMLTable.maxDepth { throw depthError("this key", at: m) }
            if c == ASCII.quote || c == ASCII.apostrophe {
                if peek(1) == c && peek(2) == c { throw fail("a key cannot be a multi-line string") }
                key.parts.append(c == ASCII.quote ? try parseBasicString() : try parseLiteralString())
            } else {
                let start = i
                while i < bytes.count, isBareKeyByte(bytes[i]) { i += 1 }
                guard i > start else {
                    throw fail("expected a key (letters, digits, '_' and '-', or a quoted key)")
                }
                key.parts.append(String(decoding: bytes[start..<i], as: UTF8.self))
            }
            key.marks.append(m)
            skipSpaces()
            guard peek == ASCII.dot else { return key }
            i += 1
        }
    }

    func isBareKeyByte(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || ASCII.isDigit(c) || c == ASCII.underscore || c == ASCII.minus
    }

    // MARK: Values

    /// A value that sits `depth` levels below the document.
    mutating func parseValue(depth: Int) throws(TOMLParseError) -> TOMLValue {
        guard let c = peek else { throw fail("expected a value") }
        guard depth <= TOMLTable.maxDepth else { throw depthError("this value", at: mark) }
        switch c {
        case ASCII.quote:
            if peek(1) == c && peek(2) == c { return .string(try parseMultilineBasicString()) }
            return .string(try parseBasicString())
        case ASCII.apostrophe:
            if peek(1) == c && peek(2) == c { return .string(try parseMultilineLiteralString()) }
            return .string(try parseLiteralString())
        case ASCII.openBracket:
            return try parseArray(depth: depth)
        case ASCII.openBrace:
            return try parseInlineTable(depth: depth)
        case UInt8(ascii: "t") where matches("true"):
            i += 4
            return .bool(true)
        case UInt8(ascii: "f") where matches("false"):
            i += 5
            return .bool(false)
        case ASCII.lf, ASCII.hash, ASCII.comma, ASCII.closeBracket, ASCII.closeBrace:
            throw fail("expected a value")
        default:
            return try parseNumberOrDate()
        }
    }

    /// `word` here, not followed by more of a bare word.
    func matches(_ word: StaticString) -> Bool {
        let n = word.utf8CodeUnitCount
        guard i + n <= bytes.count else { return false }
        let w = word.utf8Start
        for k in 0..<n where bytes[i + k] != w[k] { return false }
        if let next = peek(n), isBareKeyByte(next) { return false }
        return true
    }

    mutating func parseArray(depth: Int) throws(TOMLParseError) -> TOMLValue {
        i += 1
        var items: [TOMLValue] = []
        while true {
            try skipBlank()
            if peek == ASCII.closeBracket {
                i += 1
                return .array(items)
            }
            items.append(try parseValue(depth: depth + 1))
            try skipBlank()
            if peek == ASCII.comma {
                i += 1
            } else if peek == ASCII.closeBracket {
                i += 1
                return .array(items)
            } else {
                throw fail(peek == nil ? "the array is not closed: a ']' is missing" : "expected ',' or ']' in the array")
            }
        }
    }

    mutating func parseInlineTable(depth: Int) throws(TOMLParseError) -> TOMLValue {
        i += 1
        // Open to its own dotted keys while being read; complete once closed.
        let table = TOMLTable(kind: .dotted, depth: depth)
        skipSpaces()
        if peek == ASCII.closeBrace {
            i += 1
        } else {
            while true {
                try parseKeyValue(into: table)
                skipSpaces()
                if peek == ASCII.closeBrace {
                    i += 1
                    break
                }
                let comma = mark
                guard peek == ASCII.comma else {
                    if peek == nil || peek == ASCII.lf || peek == ASCII.hash {
                        throw fail("the inline table is not closed on its line: a '}' is missing (inline tables stay on one line)")
                    }
                    throw fail("expected ',' or '}' in the inline table")
                }
                i += 1
                skipSpaces()
                if peek == ASCII.closeBrace { throw fail("a trailing comma is not allowed in an inline table", at: comma) }
                if peek == nil || peek == ASCII.lf {
                    throw fail("the inline table is not closed on its line: a '}' is missing (inline tables stay on one line)")
                }
            }
        }
        TOMLParser.seal(table)
        return .table(table)
    }

    /// Marks an inline table and the tables its dotted keys made as complete (without
    /// recursion; inline tables inside it are sealed already).
    static func seal(_ table: TOMLTable) {
        var open = [table]
        while let t = open.popLast() {
            t.kind = .inline
            for key in t.keys {
                if case .table(let sub)? = t[key], sub.kind == .dotted { open.append(sub) }
            }
        }
    }

    // MARK: Strings

    mutating func parseBasicString() throws(TOMLParseError) -> String {
        i += 1
        var out: [UInt8] = []
        var run = i
        while i < bytes.count {
            let c = bytes[i]
            if c == ASCII.quote {
                let s: String
                if out.isEmpty {
                    s = String(decoding: bytes[run..<i], as: UTF8.self)
                } else {
                    out += bytes[run..<i]
                    s = String(decoding: out, as: UTF8.self)
                }
                i += 1
                return s
            }
            if c == ASCII.backslash {
                out += bytes[run..<i]
                try parseEscape(into: &out)
                run = i
                continue
            }
            if c == ASCII.lf { break }
            if ASCII.isControl(c) { throw controlCharacter(c, in: "a string") }
            i += 1
        }
        throw fail("the string is not closed on its line: a '\"' is missing")
    }

    mutating func parseLiteralString() throws(TOMLParseError) -> String {
        i += 1
        let start = i
        while i < bytes.count {
            let c = bytes[i]
            if c == ASCII.apostrophe {
                let s = String(decoding: bytes[start..<i], as: UTF8.self)
                i += 1
                return s
            }
            if c == ASCII.lf { break }
            if ASCII.isControl(c) { throw controlCharacter(c, in: "a string") }
            i += 1
        }
        throw fail("the string is not closed on its line: a \"'\" is missing")
    }

    /// After a closing `"""` or `'''`: up to two more quotes belong to the string.
    mutating func closingQuotes(_ quote: UInt8, into out: inout [UInt8]) {
        i += 3
        for _ in 0..<2 where peek == quote {
            out.append(quote)
            i += 1
        }
    }

    mutating func parseMultilineBasicString() throws(TOMLParseError) -> String {
        let open = mark
        i += 3
        // A newline right after the opening quotes is not part of the string.
        if peek == ASCII.lf { newline() }
        var out: [UInt8] = []
        while i < bytes.count {
            let c = bytes[i]
            if c == ASCII.quote && peek(1) == ASCII.quote && peek(2) == ASCII.quote {
                closingQuotes(ASCII.quote, into: &out)
                return String(decoding: out, as: UTF8.self)
            }
            if c == ASCII.backslash {
                // A backslash ending a line drops the newline and the blanks that follow.
                var j = i + 1
                while j < bytes.count, bytes[j] == ASCII.space || bytes[j] == ASCII.tab { j += 1 }
                if j < bytes.count, bytes[j] == ASCII.lf {
                    i = j
                    while let w = peek, w == ASCII.space || w == ASCII.tab || w == ASCII.lf {
                        if w == ASCII.lf { newline() } else { i += 1 }
                    }
                    continue
                }
                try parseEscape(into: &out)
                continue
            }
            if c == ASCII.lf {
                out.append(c)
                newline()
                continue
            }
            if ASCII.isControl(c) { throw controlCharacter(c, in: "a string") }
            out.append(c)
            i += 1
        }
        throw fail("the multi-line string is not closed: '\"\"\"' is missing", at: open)
    }

    mutating func parseMultilineLiteralString() throws(TOMLParseError) -> String {
        let open = mark
        i += 3
        if peek == ASCII.lf { newline() }
        let start = i
        while i < bytes.count {
            let c = bytes[i]
            if c == ASCII.apostrophe && peek(1) == ASCII.apostrophe && peek(2) == ASCII.apostrophe {
                var out = Array(bytes[start..<i])
                closingQuotes(ASCII.apostrophe, into: &out)
                return String(decoding: out, as: UTF8.self)
            }
            if c == ASCII.lf {
                newline()
                continue
            }
            if ASCII.isControl(c) { throw controlCharacter(c, in: "a string") }
            i += 1
        }
        throw fail("the multi-line string is not closed: \"'''\" is missing", at: open)
    }

    mutating func parseEscape(into out: inout [UInt8]) throws(TOMLParseError) {
        let at = mark
        i += 1
        guard let e = peek else { throw fail("the string is not closed: a '\"' is missing", at: at) }
        i += 1
        switch e {
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "r"): out.append(0x0D)
        case ASCII.quote: out.append(ASCII.quote)
        case ASCII.backslash: out.append(ASCII.backslash)
        case UInt8(ascii: "u"), UInt8(ascii: "U"):
            let n = e == UInt8(ascii: "u") ? 4 : 8
            let name = e == UInt8(ascii: "u") ? "\\u" : "\\U"
            var v: UInt32 = 0
            for _ in 0..<n {
                guard let h = peek, let d = hexDigit(h) else { throw fail("\(name) needs exactly \(n) hex digits", at: at) }
                v = v << 4 | d
                i += 1
            }
            guard let scalar = Unicode.Scalar(v) else {
                throw fail(
                    "\(name)\(hex(v, width: n)) is not a Unicode scalar value (surrogates D800-DFFF and values above 10FFFF are not characters)",
                    at: at)
            }
            UTF8.encode(scalar) { out.append($0) }
        default:
            let shown = e >= 0x20 && e < 0x7F ? String(UnicodeScalar(e)) : "U+" + hex(e)
            throw fail(
                "unknown escape \\\(shown); use \\b \\t \\n \\f \\r \\\" \\\\ \\uXXXX or \\UXXXXXXXX, or a literal string ('…') for backslashes",
                at: at)
        }
    }

    func hexDigit(_ c: UInt8) -> UInt32? {
        switch c {
        case 0x30...0x39: return UInt32(c - 0x30)
        case 0x41...0x46: return UInt32(c - 0x41 + 10)
        case 0x61...0x66: return UInt32(c - 0x61 + 10)
        default: return nil
        }
    }

    // MARK: Numbers and dates

    func isTokenEnd(_ c: UInt8) -> Bool {
        switch c {
        case ASCII.space, ASCII.tab, ASCII.lf, ASCII.cr, ASCII.comma, ASCII.closeBracket, ASCII.closeBrace, ASCII.hash: return true
        default: return false
        }
    }

    mutating func parseNumberOrDate() throws(TOMLParseError) -> TOMLValue {
        let start = mark
        var end = i
        while end < bytes.count, !isTokenEnd(bytes[end]) { end += 1 }
        // A date and a time may be separated by one space.
        if end - i == 10, bytes[i + 4] == ASCII.minus, end + 1 < bytes.count, bytes[end] == ASCII.space, ASCII.isDigit(bytes[end + 1]) {
            end += 1
            while end < bytes.count, !isTokenEnd(bytes[end]) { end += 1 }
        }
        let token = bytes[i..<end]
        let text = shown(String(decoding: token, as: UTF8.self))
        if TOMLParser.isDateOrTimeShaped(token) {
            if let problem = TOMLParser.dateTimeProblem(token) {
                throw fail("\"\(text)\" is not a valid date or time: \(problem)", at: start)
            }
            i = end
            return .dateTime(String(decoding: token, as: UTF8.self))
        }
        switch TOMLParser.number(token) {
        case .value(let v):
            i = end
            return v
        case .invalid(let why):
            throw fail("\"\(text)\" is not a valid number: \(why)", at: start)
        case .notANumber:
            throw fail("\"\(text)\" is not a TOML value; strings need quotes", at: start)
        }
    }

    enum NumberReading {
        case value(TOMLValue)
        case invalid(String)
        case notANumber
    }

    /// Digits of `radix` with single underscores between them, from `t[from...]` to the end or
    /// to the first byte that is neither. Returns the index after them, or nil when they are
    /// missing or an underscore is misplaced.
    static func digitRun(_ t: ArraySlice<UInt8>, from: Int, radix: Int) -> Int? {
        func isDigit(_ c: UInt8) -> Bool {
            switch radix {
            case 2: return c == 0x30 || c == 0x31
            case 8: return c >= 0x30 && c <= 0x37
            case 16: return ASCII.isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)
            default: return ASCII.isDigit(c)
            }
        }
        var k = from
        guard k < t.endIndex, isDigit(t[k]) else { return nil }
        k += 1
        while k < t.endIndex {
            if t[k] == ASCII.underscore {
                guard k + 1 < t.endIndex, isDigit(t[k + 1]) else { return nil }
                k += 2
            } else if isDigit(t[k]) {
                k += 1
            } else {
                break
            }
        }
        return k
    }

    /// 0x, 0o, 0b.
    static func radix(prefix c: UInt8) -> Int? {
        switch c {
        case UInt8(ascii: "x"): return 16
        case UInt8(ascii: "o"): return 8
        case UInt8(ascii: "b"): return 2
        default: return nil
        }
    }

    static func number(_ t: ArraySlice<UInt8>) -> NumberReading {
        guard let first = t.first else { return .notANumber }
        var k = t.startIndex
        var negative = false
        if first == ASCII.plus || first == ASCII.minus {
            negative = first == ASCII.minus
            k += 1
        }
        let rest = t[k...]
        if rest.elementsEqual("inf".utf8) { return .value(.double(negative ? -.infinity : .infinity)) }
        if rest.elementsEqual("nan".utf8) { return .value(.double(.nan)) }
        guard k < t.endIndex else { return .notANumber }
        // Hex, octal, binary: no sign, lower-case prefix.
        if t[k] == ASCII.zero, k + 1 < t.endIndex, let radix = radix(prefix: t[k + 1]) {
            if k != t.startIndex { return .invalid("hexadecimal, octal and binary integers take no sign") }
            guard let end = digitRun(t, from: k + 2, radix: radix), end == t.endIndex else {
                return .invalid("after 0\(Character(UnicodeScalar(t[k + 1]))) come digits of base \(radix), an underscore only between two")
            }
            var v: UInt64 = 0
            for c in t[(k + 2)...] where c != ASCII.underscore {
                let (m, o1) = v.multipliedReportingOverflow(by: UInt64(radix))
                let (s, o2) = m.addingReportingOverflow(UInt64(c <= ASCII.nine ? c - 0x30 : (c | 0x20) - 0x61 + 10))
                if o1 || o2 || s > UInt64(Int.max) { return .invalid("out of range; integers are 64-bit (at most 0x7fffffffffffffff)") }
                v = s
            }
            return .value(.int(Int(v)))
        }
        guard ASCII.isDigit(t[k]) else { return t[k] == ASCII.dot ? .invalid("a decimal point needs a digit before it") : .notANumber }
        guard let intEnd = digitRun(t, from: k, radix: 10) else { return .invalid("an underscore must stand between two digits") }
        if t[k] == ASCII.zero && intEnd > k + 1 { return .invalid("leading zeros are not allowed") }
        var end = intEnd
        var isFloat = false
        if end < t.endIndex, t[end] == ASCII.dot {
            guard let fracEnd = digitRun(t, from: end + 1, radix: 10) else {
                return .invalid("a decimal point needs digits after it (an underscore only between two)")
            }
            end = fracEnd
            isFloat = true
        }
        if end < t.endIndex, t[end] == UInt8(ascii: "e") || t[end] == UInt8(ascii: "E") {
            var e = end + 1
            if e < t.endIndex, t[e] == ASCII.plus || t[e] == ASCII.minus { e += 1 }
            guard let expEnd = digitRun(t, from: e, radix: 10) else { return .invalid("an exponent needs digits") }
            end = expEnd
            isFloat = true
        }
        guard end == t.endIndex else {
            if t[intEnd...].contains(where: { $0 == ASCII.minus || $0 == ASCII.colon }) { return .notANumber }
            return .invalid("unexpected \"\(shown(String(decoding: t[end...], as: UTF8.self)))\"")
        }
        let digits = t.filter { $0 != ASCII.underscore }
        if isFloat {
            guard let d = Double(String(decoding: digits, as: UTF8.self)) else { return .invalid("not a float") }
            return .value(.double(d))
        }
        // Accumulated negatively so that Int.min fits.
        var v = 0
        for c in digits where ASCII.isDigit(c) {
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.subtractingReportingOverflow(Int(c - 0x30))
            if o1 || o2 { return .invalid("out of range; integers are 64-bit (-9223372036854775808 to 9223372036854775807)") }
            v = s
        }
        if !negative {
            guard v != Int.min else { return .invalid("out of range; integers are 64-bit (-9223372036854775808 to 9223372036854775807)") }
            v = -v
        }
        return .value(.int(v))
    }

    /// `dddd-` or `dd:` at the start: meant as a date or a time.
    static func isDateOrTimeShaped(_ t: ArraySlice<UInt8>) -> Bool {
        let s = t.startIndex
        func digits(_ from: Int, _ n: Int) -> Bool { from + n <= t.endIndex && t[from..<(from + n)].allSatisfy(ASCII.isDigit) }
        if digits(s, 4), s + 4 < t.endIndex, t[s + 4] == ASCII.minus { return true }
        return digits(s, 2) && s + 2 < t.endIndex && t[s + 2] == ASCII.colon
    }

    /// Why `t` is not an offset date-time, local date-time, local date or local time (RFC 3339
    /// as TOML 1.0 takes it), or nil when it is one.
    static func dateTimeProblem(_ t: ArraySlice<UInt8>) -> String? {
        var k = t.startIndex
        func number(_ n: Int) -> Int? {
            guard k + n <= t.endIndex, t[k..<(k + n)].allSatisfy(ASCII.isDigit) else { return nil }
            let v = t[k..<(k + n)].reduce(0) { $0 * 10 + Int($1 - 0x30) }
            k += n
            return v
        }
        func take(_ c: UInt8) -> Bool {
            guard k < t.endIndex, t[k] == c else { return false }
            k += 1
            return true
        }
        var hasDate = false
        if t.count >= 5 && t[k + 4] == ASCII.minus {
            guard let year = number(4), take(ASCII.minus), let month = number(2), take(ASCII.minus), let day = number(2) else {
                return "a date is written YYYY-MM-DD"
            }
            guard (1...12).contains(month) else { return "month \(month) is not 01-12" }
            let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
            let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
            guard (1...days).contains(day) else { return "day \(day) is not 01-\(days) in that month" }
            hasDate = true
            if k == t.endIndex { return nil }
            guard take(UInt8(ascii: "T")) || take(UInt8(ascii: "t")) || take(ASCII.space) else {
                return "a date and a time are joined by 'T' or a space"
            }
        }
        guard let hour = number(2), take(ASCII.colon), let minute = number(2) else { return "a time is written HH:MM:SS" }
        guard take(ASCII.colon), let second = number(2) else { return "a time needs seconds (HH:MM:SS)" }
        guard hour <= 23 else { return "hour \(hour) is not 00-23" }
        guard minute <= 59 else { return "minute \(minute) is not 00-59" }
        guard second <= 59 else { return "second \(second) is not 00-59" }
        if take(ASCII.dot) {
            guard number(1) != nil else { return "a decimal point in the seconds needs digits after it" }
            while k < t.endIndex, ASCII.isDigit(t[k]) { k += 1 }
        }
        if k == t.endIndex { return nil }
        guard hasDate else { return "a time without a date takes no offset" }
        if take(UInt8(ascii: "Z")) || take(UInt8(ascii: "z")) {
            return k == t.endIndex ? nil : "nothing may follow the offset Z"
        }
        guard take(ASCII.plus) || take(ASCII.minus), let oh = number(2), take(ASCII.colon), let om = number(2), k == t.endIndex else {
            return "an offset is Z or +HH:MM / -HH:MM"
        }
        guard oh <= 23, om <= 59 else { return "the offset \(oh):\(om) is out of range" }
        return nil
    }
}

/// At most 60 characters of what the document said, for a message.
private func shown(_ s: String) -> String {
    s.count <= 60 ? s : String(s.prefix(57)) + "…"
}

private func hex<T: BinaryInteger>(_ v: T, width: Int = 4) -> String {
    let digits = String(v, radix: 16, uppercase: true)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}

/// "an integer", "a string", … for a message.
private func article(_ type: TOMLType) -> String {
    switch type {
    case .int, .array: return "an \(type)"
    default: return "a \(type)"
    }
}

/// A TOML basic string for writers (box.toml, bundle manifests): `"` and `\` escaped, control
/// characters as escapes, everything else as it is.
public func tomlBasicString(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        case "\u{08}": out += "\\b"
        case "\u{0C}": out += "\\f"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7F {
                let hex = String(scalar.value, radix: 16, uppercase: true)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

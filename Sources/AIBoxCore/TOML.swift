/// A TOML 1.0 reader for configuration files: tables, arrays of tables, dotted and quoted
/// keys, basic/literal/multi-line strings, integers (decimal, hex, octal, binary), floats,
/// booleans, date-times (kept as text), arrays and inline tables. Errors carry line and
/// column. It is here instead of a package because the TOML package available (TOMLKit)
/// links full Foundation — ICU and all, some 6 MiB resident in a daemon whose budget is 20 —
/// and cannot tell where a key was.

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
}

/// A table: keys in the order written, each with the line it was defined on.
public final class TOMLTable: @unchecked Sendable {
    public private(set) var keys: [String] = []
    private var values: [String: TOMLValue] = [:]
    private var lines: [String: Int] = [:]
    /// Defined by a `[header]` (or inline): may not be defined again.
    var explicitlyDefined = false
    /// Inline tables and arrays are closed: nothing may be added later.
    var sealed = false

    public init() {}

    public subscript(key: String) -> TOMLValue? { values[key] }

    /// The line where `key` was defined.
    public func line(of key: String) -> Int? { lines[key] }

    func set(_ key: String, _ value: TOMLValue, line: Int) {
        if values[key] == nil { keys.append(key) }
        values[key] = value
        if lines[key] == nil { lines[key] = line }
    }

    /// Parses a document.
    public convenience init(string: String) throws(TOMLParseError) {
        self.init()
        var parser = TOMLParser(Array(string.utf8), root: self)
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

struct TOMLParser {
    let bytes: [UInt8]
    var i = 0
    /// How deep arrays and inline tables nest now; bounded so that hostile input cannot
    /// exhaust the stack (the reader recurses on nesting).
    var depth = 0
    static let maxDepth = 64
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

    var atEnd: Bool { i >= bytes.count }
    var peek: UInt8? { i < bytes.count ? bytes[i] : nil }
    func peek(_ offset: Int) -> UInt8? { i + offset < bytes.count ? bytes[i + offset] : nil }

    func fail(_ message: String) -> TOMLParseError {
        TOMLParseError(description: message, position: TOMLSourcePosition(line: line, column: i - lineStart + 1))
    }

    mutating func advance() {
        if bytes[i] == 0x0A {
            line += 1
            lineStart = i + 1
        }
        i += 1
    }

    mutating func skipSpaces() {
        while let c = peek, c == 0x20 || c == 0x09 { i += 1 }
    }

    mutating func skipComment() throws(TOMLParseError) {
        guard peek == UInt8(ascii: "#") else { return }
        while let c = peek, c != 0x0A {
            if c < 0x20 && c != 0x09 { throw fail("control character in a comment") }
            i += 1
        }
    }

    /// Spaces, comments and newlines (inside arrays).
    mutating func skipBlank() throws(TOMLParseError) {
        while true {
            skipSpaces()
            try skipComment()
            if peek == 0x0A {
                advance()
            } else if peek == 0x0D && peek(1) == 0x0A {
                i += 1
                advance()
            } else {
                return
            }
        }
    }

    mutating func expectLineEnd() throws(TOMLParseError) {
        skipSpaces()
        try skipComment()
        if atEnd { return }
        if peek == 0x0D && peek(1) == 0x0A { i += 1 }
        guard peek == 0x0A else { throw fail("expected the end of the line after the value") }
        advance()
    }

    // MARK: Document

    mutating func parseDocument() throws(TOMLParseError) {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { i = 3 }
        while true {
            try skipBlank()
            guard let c = peek else { return }
            if c == UInt8(ascii: "[") {
                try parseHeader()
            } else {
                let keyLine = line
                let key = try parseKey()
                skipSpaces()
                guard peek == UInt8(ascii: "=") else { throw fail("expected '=' after the key \"\(key.joined(separator: "."))\"") }
                i += 1
                skipSpaces()
                let value = try parseValue()
                try insert(key, value, into: current, line: keyLine)
                try expectLineEnd()
            }
        }
    }

    mutating func parseHeader() throws(TOMLParseError) {
        let isArray = peek(1) == UInt8(ascii: "[")
        i += isArray ? 2 : 1
        skipSpaces()
        let headerLine = line
        let key = try parseKey()
        skipSpaces()
        if isArray {
            guard peek == UInt8(ascii: "]"), peek(1) == UInt8(ascii: "]") else { throw fail("expected ']]' to close the table header") }
            i += 2
        } else {
            guard peek == UInt8(ascii: "]") else { throw fail("expected ']' to close the table header") }
            i += 1
        }
        try expectLineEnd()
        var table = root
        for (n, part) in key.enumerated() {
            let last = n == key.count - 1
            if last && isArray {
                let fresh = TOMLTable()
                fresh.explicitlyDefined = true
                switch table[part] {
                case nil: table.set(part, .array([.table(fresh)]), line: headerLine)
                case .array(var items) where items.allSatisfy({ $0.table.map { !$0.sealed } ?? false }):
                    items.append(.table(fresh))
                    table.set(part, .array(items), line: headerLine)
                default: throw fail("\"\(key.joined(separator: "."))\" is already defined and is not an array of tables")
                }
                table = fresh
            } else {
                switch table[part] {
                case nil:
                    let fresh = TOMLTable()
                    table.set(part, .table(fresh), line: headerLine)
                    table = fresh
                case .table(let t) where !t.sealed:
                    table = t
                case .array(let items) where !last:
                    guard case .table(let t)? = items.last else { throw fail("\"\(part)\" is not a table") }
                    table = t
                default:
                    throw fail("\"\(key.prefix(n + 1).joined(separator: "."))\" is already defined and is not a table")
                }
                if last {
                    if table.explicitlyDefined { throw fail("the table [\(key.joined(separator: "."))] is defined twice") }
                    table.explicitlyDefined = true
                }
            }
        }
        current = table
    }

    /// Sets a dotted key, creating intermediate tables.
    mutating func insert(_ key: [String], _ value: TOMLValue, into base: TOMLTable, line keyLine: Int) throws(TOMLParseError) {
        var table = base
        for part in key.dropLast() {
            switch table[part] {
            case nil:
                let fresh = TOMLTable()
                table.set(part, .table(fresh), line: keyLine)
                table = fresh
            case .table(let t) where !t.sealed:
                table = t
            default:
                throw fail("\"\(part)\" is already defined and is not a table")
            }
        }
        let last = key[key.count - 1]
        if table[last] != nil { throw fail("the key \"\(key.joined(separator: "."))\" is defined twice") }
        table.set(last, value, line: keyLine)
    }

    // MARK: Keys

    mutating func parseKey() throws(TOMLParseError) -> [String] {
        var parts: [String] = []
        while true {
            skipSpaces()
            guard let c = peek else { throw fail("expected a key") }
            if c == UInt8(ascii: "\"") {
                parts.append(try parseBasicString())
            } else if c == UInt8(ascii: "'") {
                parts.append(try parseLiteralString())
            } else {
                let start = i
                while let c = peek, isBareKeyByte(c) { i += 1 }
                guard i > start else { throw fail("expected a key (letters, digits, '_' and '-', or a quoted key)") }
                parts.append(String(decoding: bytes[start..<i], as: UTF8.self))
            }
            skipSpaces()
            guard peek == UInt8(ascii: ".") else { return parts }
            i += 1
        }
    }

    func isBareKeyByte(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x5F || c == 0x2D
    }

    // MARK: Values

    mutating func parseValue() throws(TOMLParseError) -> TOMLValue {
        guard let c = peek else { throw fail("expected a value") }
        switch c {
        case UInt8(ascii: "\""):
            if peek(1) == c && peek(2) == c { return .string(try parseMultilineString(literal: false)) }
            return .string(try parseBasicString())
        case UInt8(ascii: "'"):
            if peek(1) == c && peek(2) == c { return .string(try parseMultilineString(literal: true)) }
            return .string(try parseLiteralString())
        case UInt8(ascii: "["), UInt8(ascii: "{"):
            guard depth < TOMLParser.maxDepth else {
                throw fail("arrays and inline tables nest deeper than \(TOMLParser.maxDepth) levels")
            }
            depth += 1
            defer { depth -= 1 }
            return c == UInt8(ascii: "[") ? try parseArray() : try parseInlineTable()
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            if matches("true") { i += 4; return .bool(true) }
            if matches("false") { i += 5; return .bool(false) }
            throw fail("expected a value; strings need quotes")
        default:
            return try parseNumberOrDate()
        }
    }

    func matches(_ word: String) -> Bool {
        let w = Array(word.utf8)
        guard i + w.count <= bytes.count, Array(bytes[i..<(i + w.count)]) == w else { return false }
        if let next = peek(w.count), isBareKeyByte(next) { return false }
        return true
    }

    mutating func parseArray() throws(TOMLParseError) -> TOMLValue {
        i += 1
        var items: [TOMLValue] = []
        while true {
            try skipBlank()
            if peek == UInt8(ascii: "]") {
                i += 1
                return .array(items)
            }
            items.append(try parseValue())
            try skipBlank()
            if peek == UInt8(ascii: ",") {
                i += 1
            } else if peek == UInt8(ascii: "]") {
                i += 1
                return .array(items)
            } else {
                throw fail("expected ',' or ']' in the array")
            }
        }
    }

    mutating func parseInlineTable() throws(TOMLParseError) -> TOMLValue {
        i += 1
        let table = TOMLTable()
        skipSpaces()
        if peek == UInt8(ascii: "}") {
            i += 1
            table.sealed = true
            return .table(table)
        }
        while true {
            skipSpaces()
            let keyLine = line
            let key = try parseKey()
            skipSpaces()
            guard peek == UInt8(ascii: "=") else { throw fail("expected '=' after the key \"\(key.joined(separator: "."))\"") }
            i += 1
            skipSpaces()
            let saved = current
            current = table
            let value = try parseValue()
            try insert(key, value, into: table, line: keyLine)
            current = saved
            skipSpaces()
            if peek == UInt8(ascii: ",") {
                i += 1
            } else if peek == UInt8(ascii: "}") {
                i += 1
                table.sealed = true
                return .table(table)
            } else {
                throw fail("expected ',' or '}' in the inline table (inline tables stay on one line)")
            }
        }
    }

    // MARK: Strings

    mutating func parseBasicString() throws(TOMLParseError) -> String {
        i += 1
        var out: [UInt8] = []
        while true {
            guard let c = peek, c != 0x0A else { throw fail("the string is not closed on its line: a '\"' is missing") }
            if c == UInt8(ascii: "\"") {
                i += 1
                return try utf8(out)
            }
            if c == UInt8(ascii: "\\") {
                try parseEscape(into: &out)
                continue
            }
            if c < 0x20 && c != 0x09 || c == 0x7F { throw fail("control character in a string; write it as an escape") }
            out.append(c)
            i += 1
        }
    }

    mutating func parseLiteralString() throws(TOMLParseError) -> String {
        i += 1
        let start = i
        while true {
            guard let c = peek, c != 0x0A else { throw fail("the string is not closed on its line: a \"'\" is missing") }
            if c == UInt8(ascii: "'") {
                let s = try utf8(Array(bytes[start..<i]))
                i += 1
                return s
            }
            if c < 0x20 && c != 0x09 || c == 0x7F { throw fail("control character in a string") }
            i += 1
        }
    }

    mutating func parseMultilineString(literal: Bool) throws(TOMLParseError) -> String {
        let quote = bytes[i]
        i += 3
        // A newline right after the opening quotes is dropped.
        if peek == 0x0D && peek(1) == 0x0A { i += 1 }
        if peek == 0x0A { advance() }
        var out: [UInt8] = []
        while true {
            guard let c = peek else { throw fail("the multi-line string is not closed") }
            if c == quote && peek(1) == quote && peek(2) == quote {
                // Up to two more quotes belong to the content.
                var extra = 0
                while extra < 2 && peek(3 + extra) == quote { extra += 1 }
                out += Array(repeating: quote, count: extra)
                i += 3 + extra
                return try utf8(out)
            }
            if !literal && c == UInt8(ascii: "\\") {
                // A backslash at the end of a line trims the newline and following blanks.
                var j = i + 1
                while j < bytes.count, bytes[j] == 0x20 || bytes[j] == 0x09 { j += 1 }
                if j < bytes.count, bytes[j] == 0x0A || bytes[j] == 0x0D {
                    i = j
                    while let w = peek, w == 0x20 || w == 0x09 || w == 0x0A || w == 0x0D { advance() }
                    continue
                }
                try parseEscape(into: &out)
                continue
            }
            if c < 0x20 && c != 0x09 && c != 0x0A && c != 0x0D || c == 0x7F { throw fail("control character in a string") }
            out.append(c)
            advance()
        }
    }

    mutating func parseEscape(into out: inout [UInt8]) throws(TOMLParseError) {
        i += 1
        guard let e = peek else { throw fail("unfinished escape") }
        i += 1
        switch e {
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "\""): out.append(0x22)
        case UInt8(ascii: "\\"): out.append(0x5C)
        case UInt8(ascii: "u"), UInt8(ascii: "U"):
            let n = e == UInt8(ascii: "u") ? 4 : 8
            guard i + n <= bytes.count, let v = UInt32(String(decoding: bytes[i..<(i + n)], as: UTF8.self), radix: 16),
                let scalar = Unicode.Scalar(v)
            else { throw fail("\\\(Character(Unicode.Scalar(e))) needs \(n) hex digits naming a Unicode scalar") }
            i += n
            out += Array(String(Character(scalar)).utf8)
        default:
            throw fail("unknown escape \\\(Character(Unicode.Scalar(e))); use \\b \\t \\n \\f \\r \\\" \\\\ \\uXXXX or \\UXXXXXXXX")
        }
    }

    func utf8(_ bytes: [UInt8]) throws(TOMLParseError) -> String {
        guard let s = String(validating: bytes, as: UTF8.self) else { throw fail("the string is not valid UTF-8") }
        return s
    }

    // MARK: Numbers and dates

    mutating func parseNumberOrDate() throws(TOMLParseError) -> TOMLValue {
        let start = i
        while let c = peek,
            !(c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D || c == UInt8(ascii: ",") || c == UInt8(ascii: "]")
                || c == UInt8(ascii: "}") || c == UInt8(ascii: "#"))
        {
            i += 1
        }
        // A date-time may hold one space between date and time.
        if i - start == 10, peek == 0x20, let d = peek(1), d >= 0x30 && d <= 0x39 {
            i += 1
            while let c = peek,
                !(c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D || c == UInt8(ascii: ",") || c == UInt8(ascii: "]")
                    || c == UInt8(ascii: "}") || c == UInt8(ascii: "#"))
            {
                i += 1
            }
        }
        let text = String(decoding: bytes[start..<i], as: UTF8.self)
        guard !text.isEmpty else { throw fail("expected a value") }
        if let v = TOMLParser.integer(text) { return .int(v) }
        if let v = TOMLParser.float(text) { return .double(v) }
        if TOMLParser.looksLikeDateTime(text) { return .dateTime(text) }
        i = start
        throw fail("\"\(text)\" is not a TOML value; strings need quotes")
    }

    static func integer(_ text: String) -> Int? {
        var t = Substring(text)
        guard !t.hasPrefix("_"), !t.hasSuffix("_"), !t.contains("__") else { return nil }
        for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] where t.hasPrefix(prefix) {
            return Int(t.dropFirst(2).replacingUnderscores(), radix: radix)
        }
        var sign = ""
        if t.hasPrefix("+") || t.hasPrefix("-") {
            sign = t.hasPrefix("-") ? "-" : ""
            t = t.dropFirst()
        }
        guard let f = t.first, f.isASCII && f.isNumber, !(t.count > 1 && t.hasPrefix("0")) else { return nil }
        guard t.allSatisfy({ ($0.isASCII && $0.isNumber) || $0 == "_" }) else { return nil }
        return Int(sign + t.replacingUnderscores())
    }

    static func float(_ text: String) -> Double? {
        switch text {
        case "inf", "+inf": return .infinity
        case "-inf": return -.infinity
        case "nan", "+nan", "-nan": return .nan
        default: break
        }
        guard text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }),
            text.allSatisfy({ ($0.isASCII && $0.isNumber) || "+-._eE".contains($0) }),
            !text.contains("__"), !text.hasPrefix("."), !text.hasSuffix("."), !text.contains("._"), !text.contains("_.")
        else { return nil }
        return Double(Substring(text).replacingUnderscores())
    }

    static func looksLikeDateTime(_ text: String) -> Bool {
        let allowed = "0123456789-:TZtz .+"
        guard text.count >= 8, text.allSatisfy({ allowed.contains($0) }) else { return false }
        let b = Array(text.utf8)
        let date = b.count >= 10 && b[4] == UInt8(ascii: "-") && b[7] == UInt8(ascii: "-")
        let time = b.count >= 8 && b[2] == UInt8(ascii: ":") && b[5] == UInt8(ascii: ":")
        return date || time
    }
}

extension Substring {
    fileprivate func replacingUnderscores() -> String { String(filter { $0 != "_" }) }
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

import Foundation
import Testing

@testable import AIBoxCore

/// The reader against Python's `tomllib` (a TOML 1.0 reader in Python's standard library) on
/// the corpus in TOMLCorpus/: documents made by its generate.py (grammar-based, mutated and
/// written out), each with tomllib's verdict and value tree committed beside it. The
/// committed expectations are checked against tomllib itself by TOMLCorpusDriftTests
/// (AIBoxIntegrationTests), which runs python3.
@Suite("TOML reader against tomllib's corpus")
struct TOMLCorpusTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("TOMLCorpus").path

    static func documents(_ sub: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory + "/" + sub)) ?? []
        return names.filter { $0.hasSuffix(".toml") }.map { String($0.dropLast(5)) }.sorted()
    }

    static func bytes(_ path: String) -> [UInt8]? {
        FileManager.default.contents(atPath: directory + "/" + path).map { [UInt8]($0) }
    }

    static func text(_ path: String) -> String? { bytes(path).map { String(decoding: $0, as: UTF8.self) } }

    enum Reading {
        case tree(String)
        case refused(String)
    }

    /// What aibox makes of a document. Bytes that are not UTF-8 never reach the reader: its
    /// callers refuse them first (ConfigFiles, Seed.parse), as this does.
    static func reading(_ bytes: [UInt8]) -> Reading {
        guard let text = String(validating: bytes, as: UTF8.self) else { return .refused("not UTF-8") }
        do {
            return .tree(CanonicalTree.text(of: try TOMLTable(string: text)))
        } catch {
            return .refused("\(error.position.line):\(error.position.column): \(error.description)")
        }
    }

    /// The first line where two trees differ, for a readable failure.
    static func firstDifference(_ a: String, _ b: String) -> String {
        let la = a.split(separator: "\n", omittingEmptySubsequences: false)
        let lb = b.split(separator: "\n", omittingEmptySubsequences: false)
        for n in 0..<max(la.count, lb.count) where n >= la.count || n >= lb.count || la[n] != lb[n] {
            return "line \(n + 1): aibox \(n < la.count ? String(la[n]) : "(end)") / expected \(n < lb.count ? String(lb[n]) : "(end)")"
        }
        return "no difference"
    }

    @Test("the corpus holds hundreds of documents of each kind")
    func corpusIsThere() {
        #expect(Self.documents("valid").count >= 400)
        #expect(Self.documents("invalid").count >= 400)
        #expect(Self.documents("differs").count >= 10)
    }

    @Test("every document tomllib accepts is read to the same values")
    func validDocuments() throws {
        var failures: [String] = []
        for name in Self.documents("valid") {
            let data = try #require(Self.bytes("valid/\(name).toml"))
            let expected = try #require(Self.text("valid/\(name).json"), "valid/\(name).json is missing")
            switch Self.reading(data) {
            case .refused(let why): failures.append("valid/\(name).toml refused: \(why)")
            case .tree(let tree) where tree != expected:
                failures.append("valid/\(name).toml read differently: \(Self.firstDifference(tree, expected))")
            case .tree: break
            }
        }
        #expect(failures.isEmpty, "\(failures.count) documents:\n\(failures.prefix(40).joined(separator: "\n"))")
    }

    @Test("every document tomllib refuses is refused")
    func invalidDocuments() throws {
        var failures: [String] = []
        for name in Self.documents("invalid") {
            let data = try #require(Self.bytes("invalid/\(name).toml"))
            if case .tree = Self.reading(data) { failures.append("invalid/\(name).toml was accepted") }
        }
        #expect(failures.isEmpty, "\(failures.count) documents:\n\(failures.prefix(40).joined(separator: "\n"))")
    }

    @Test("where aibox differs from tomllib, it differs as documented")
    func deliberateDifferences() throws {
        let names = Self.documents("differs")
        let readme = try #require(Self.text("differs/README.md"))
        for name in names {
            let data = try #require(Self.bytes("differs/\(name).toml"))
            let ours = Self.text("differs/\(name).json")
            let tomllib = Self.text("differs/\(name).tomllib.json")
            #expect(ours != tomllib, "differs/\(name): the same verdict and values as tomllib; it belongs in valid/ or invalid/")
            #expect(readme.contains("`\(name).toml`"), "differs/README.md does not say why \(name) differs")
            switch (Self.reading(data), ours) {
            case (.tree(let tree), let expected?):
                #expect(tree == expected, "differs/\(name): \(Self.firstDifference(tree, expected))")
            case (.tree, nil): Issue.record("differs/\(name).toml was accepted; aibox refuses it")
            case (.refused(let why), _?): Issue.record("differs/\(name).toml was refused (\(why)); aibox accepts it")
            case (.refused, nil): break
            }
        }
    }

    @Test("the canonical tree is printed as Python's json.dumps prints it")
    func canonicalPrinting() throws {
        let t = try TOMLTable(string: "a = \"é\\u0001\\\"\\\\😀\\u007f\"\nb = [ ]\nc = {}\nd = 1.5e300\ne = -nan\nf = 07:32:00.1234567\n")
        #expect(
            CanonicalTree.text(of: t) == """
                {
                 "a": {
                  "type": "string",
                  "value": "\\u00e9\\u0001\\"\\\\\\ud83d\\ude00\\u007f"
                 },
                 "b": [],
                 "c": {},
                 "d": {
                  "type": "float",
                  "value": "1.5e+300"
                 },
                 "e": {
                  "type": "float",
                  "value": "nan"
                 },
                 "f": {
                  "type": "time-local",
                  "value": "07:32:00.123456"
                 }
                }

                """)
    }
}

/// A value tree as the corpus writes it (see TOMLCorpus/generate.py): tagged scalars, floats
/// as Python's repr, date-times normalised as tomllib reads them (to the microsecond, Z as
/// +00:00), printed like `json.dumps(tree, indent=1, ensure_ascii=True)`.
enum CanonicalTree {
    static func text(of table: TOMLTable) -> String {
        var out = ""
        write(.table(table), level: 0, into: &out)
        return out + "\n"
    }

    static func write(_ value: TOMLValue, level: Int, into out: inout String) {
        switch value {
        case .table(let t):
            object(t.keys.map { k in (k, { (out: inout String) in write(t[k]!, level: level + 1, into: &out) }) }, level: level, into: &out)
        case .array(let items):
            guard !items.isEmpty else {
                out += "[]"
                return
            }
            out += "["
            for (n, item) in items.enumerated() {
                out += (n == 0 ? "" : ",") + "\n" + String(repeating: " ", count: level + 1)
                write(item, level: level + 1, into: &out)
            }
            out += "\n" + String(repeating: " ", count: level) + "]"
        case .string(let s): scalar("string", s, level: level, into: &out)
        case .int(let i): scalar("integer", String(i), level: level, into: &out)
        case .double(let d): scalar("float", d.isNaN ? "nan" : d.description, level: level, into: &out)
        case .bool(let b): scalar("bool", b ? "true" : "false", level: level, into: &out)
        case .dateTime(let text):
            let (type, normalised) = dateTime(text)
            scalar(type, normalised, level: level, into: &out)
        }
    }

    static func object(_ members: [(String, (inout String) -> Void)], level: Int, into out: inout String) {
        guard !members.isEmpty else {
            out += "{}"
            return
        }
        out += "{"
        for (n, (key, writeValue)) in members.enumerated() {
            out += (n == 0 ? "" : ",") + "\n" + String(repeating: " ", count: level + 1) + json(key) + ": "
            writeValue(&out)
        }
        out += "\n" + String(repeating: " ", count: level) + "}"
    }

    static func scalar(_ type: String, _ value: String, level: Int, into out: inout String) {
        object([("type", { $0 += json(type) }), ("value", { $0 += json(value) })], level: level, into: &out)
    }

    /// A JSON string with every character outside ' '...'~' escaped, as Python's ensure_ascii.
    static func json(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case " "..."~": out.unicodeScalars.append(scalar)
            default:
                for unit in String(scalar).utf16 {
                    let hex = String(unit, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                }
            }
        }
        return out + "\""
    }

    /// The type and tomllib's reading of a date-time the reader kept as text (anything that is
    /// not shaped like one is shown as it is, so that it differs from every expectation).
    static func dateTime(_ text: String) -> (String, String) {
        let b = Array(text.utf8)
        let shaped =
            (b.count >= 8 && b[2] == UInt8(ascii: ":")) || b.count == 10 || (b.count >= 19 && b[4] == UInt8(ascii: "-"))
        guard shaped else { return ("not-a-date-time", text) }
        func time(at start: Int) -> (String, Int) {
            var end = start + 8
            var fraction = ""
            if end < b.count, b[end] == UInt8(ascii: ".") {
                end += 1
                while end < b.count, b[end] >= 0x30 && b[end] <= 0x39 {
                    if fraction.count < 6 { fraction.unicodeScalars.append(UnicodeScalar(b[end])) }
                    end += 1
                }
            }
            let padded = fraction + String(repeating: "0", count: 6 - fraction.count)
            return (String(decoding: b[start..<(start + 8)], as: UTF8.self) + "." + padded, end)
        }
        if b[2] == UInt8(ascii: ":") { return ("time-local", time(at: 0).0) }
        let date = String(decoding: b[0..<10], as: UTF8.self)
        if b.count == 10 { return ("date-local", date) }
        let (t, end) = time(at: 11)
        if end == b.count { return ("datetime-local", date + "T" + t) }
        var offset = String(decoding: b[end...], as: UTF8.self)
        if offset == "Z" || offset == "z" || offset == "-00:00" { offset = "+00:00" }
        return ("datetime", date + "T" + t + offset)
    }
}

import Testing

@testable import AIBoxCore

@Suite("TOML reader") struct TOMLTests {
    @Test func valuesOfEveryKind() throws {
        let t = try TOMLTable(
            string: """
                # comment
                title = "A \\"box\\"\\t\\u00e9"   # trailing comment
                literal = 'C:\\path'
                int = +1_000
                neg = -17
                hex = 0xff
                oct = 0o17
                bin = 0b101
                pi = 3.14
                exp = 1e3
                yes = true
                no = false
                when = 2026-11-27T12:00:00Z
                day = 2026-11-27
                multi = \"\"\"
                one
                two\"\"\"
                raw = '''
                a\\b'''
                list = [ "a", 'b',
                  # inside
                  "c", ]
                nested = [[1, 2], ["x"]]
                inline = { a = 1, b.c = "d" }
                "quoted key" = 1
                dotted.key = "v"
                """)
        #expect(t["title"]?.string == "A \"box\"\té")
        #expect(t["literal"]?.string == "C:\\path")
        #expect(t["int"]?.int == 1000)
        #expect(t["neg"]?.int == -17)
        #expect(t["hex"]?.int == 255)
        #expect(t["oct"]?.int == 15)
        #expect(t["bin"]?.int == 5)
        #expect(t["pi"]?.double == 3.14)
        #expect(t["exp"]?.double == 1000)
        #expect(t["yes"]?.bool == true)
        #expect(t["no"]?.bool == false)
        #expect(t["when"]?.type == .dateTime)
        #expect(t["day"]?.type == .dateTime)
        #expect(t["multi"]?.string == "one\ntwo")
        #expect(t["raw"]?.string == "a\\b")
        #expect(t["list"]?.array?.compactMap(\.string) == ["a", "b", "c"])
        #expect(t["nested"]?.array?.count == 2)
        #expect(t["inline"]?.table?["a"]?.int == 1)
        #expect(t["inline"]?.table?["b"]?.table?["c"]?.string == "d")
        #expect(t["quoted key"]?.int == 1)
        #expect(t["dotted"]?.table?["key"]?.string == "v")
        #expect(t.keys.first == "title")
    }

    @Test func tablesAndArraysOfTablesWithLines() throws {
        let t = try TOMLTable(
            string: """
                [worker.a]
                exec = ["/a"]

                [worker."b-2"]
                exec = ["/b"]

                [[item]]
                n = 1
                [[item]]
                n = 2
                """)
        let workers = try #require(t["worker"]?.table)
        #expect(workers.keys == ["a", "b-2"])
        #expect(workers.line(of: "a") == 1)
        #expect(workers.line(of: "b-2") == 4)
        #expect(workers["b-2"]?.table?.line(of: "exec") == 5)
        #expect(t["item"]?.array?.compactMap { $0.table?["n"]?.int } == [1, 2])
    }

    @Test(arguments: [
        ("a = ", 1, "expected a value"),
        ("a = \"open", 1, "not closed"),
        ("a = 1\na = 2", 2, "defined twice"),
        ("[t]\n[t]", 2, "defined twice"),
        ("a = unquoted", 1, "strings need quotes"),
        ("a = [1, 2", 1, "the array is not closed"),
        ("a = [1 2]", 1, "expected ',' or ']'"),
        ("a = { b = 1", 1, "not closed on its line"),
        ("a = { b = 1 c = 2 }", 1, "expected ',' or '}'"),
        ("a = \"\\q\"", 1, "unknown escape"),
        ("a = 1 b = 2", 1, "end of the line"),
        ("a = 01", 1, "leading zeros are not allowed"),
        ("= 1", 1, "expected a key"),
        ("a = 1\n[a.b]", 2, "not a table"),
        ("t = { x = 1 }\n[t]", 2, "is an inline table (line 1), complete as written"),
        ("a = \"\u{1}\"", 1, "control character"),
    ])
    func errorsSayWhatAndWhere(text: String, line: Int, fragment: String) {
        do {
            _ = try TOMLTable(string: text)
            Issue.record("\(text.debugDescription) parsed without error")
        } catch {
            #expect(error.position.line == line, "\(text.debugDescription): \(error)")
            #expect(error.description.contains(fragment), "\(text.debugDescription): \(error.description)")
        }
    }

    @Test func deepNestingIsAnErrorNotACrash() {
        let deep = "a = " + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "\n"
        #expect(throws: TOMLParseError.self) { try TOMLTable(string: deep) }
        do {
            _ = try TOMLTable(string: "b = " + String(repeating: "{ x = ", count: 70) + "1" + String(repeating: " }", count: 70))
            Issue.record("nesting beyond the limit was accepted")
        } catch {
            #expect(error.description.contains("nests deeper than 64 levels"), "\(error)")
            #expect(error.position.line == 1)
        }
        let ok = try? TOMLTable(string: "c = " + String(repeating: "[", count: 60) + String(repeating: "]", count: 60))
        #expect(ok != nil, "60 levels are fine")
    }

    @Test("CRLF line ends with comments, as a file edited on Windows")
    func crlfWithComments() throws {
        let t = try TOMLTable(
            string:
                "# seed\r\nname = \"box\" # the name\r\n[admin]\r\nkeys = [\r\n  \"a\", # one\r\n]\r\ntext = \"\"\"\r\nl1\r\nl2\"\"\"\r\n")
        #expect(t["name"]?.string == "box")
        #expect(t["admin"]?.table?["keys"]?.array?.compactMap(\.string) == ["a"])
        #expect(t["admin"]?.table?["text"]?.string == "l1\nl2")
        #expect(t["admin"]?.table?.line(of: "text") == 7)
        do {
            _ = try TOMLTable(string: "a = 1\rb = 2\n")
            Issue.record("a CR alone was accepted")
        } catch {
            #expect(error.description.contains("carriage return (CR) without a line feed"), "\(error)")
            #expect(error.position == TOMLSourcePosition(line: 1, column: 6))
        }
    }

    /// The documents the issue names as wrongly accepted, and more, each refused with its
    /// reason and place.
    @Test(arguments: [
        ("a = 0x-1", 1, 5, "after 0x come digits of base 16"),
        ("a = -0x1", 1, 5, "take no sign"),
        ("a = 1.e5", 1, 5, "needs digits after it"),
        ("a = -.5", 1, 5, "not a valid number"),
        (#"a = "\u+123""#, 1, 6, #"\u needs exactly 4 hex digits"#),
        (#"a = "\uD800""#, 1, 6, "not a Unicode scalar value"),
        ("a = []\n[[a]]", 2, 3, "array written as a value (line 1)"),
        ("a = {b=1}\n[a.c]", 2, 2, "inline table, complete as written"),
        ("a = 9223372036854775808", 1, 5, "out of range; integers are 64-bit"),
        ("a = 0x8000000000000000", 1, 5, "out of range"),
        ("a = 2023-02-29", 1, 5, "day 29 is not 01-28"),
        ("a = 1979-05-27T24:00:00Z", 1, 5, "hour 24 is not 00-23"),
        ("a = 07:32", 1, 5, "needs seconds"),
        ("a = {b = 1,}", 1, 11, "trailing comma"),
        ("a = {b = 1,\nc = 2}", 1, 12, "not closed on its line"),
        ("a.b = 1\n[a]", 2, 2, "already defined by dotted keys (line 1)"),
        ("[a.b]\n[a]\nb.c = 1", 3, 1, "defined by a header (line 1)"),
        (#"a = "\e""#, 1, 6, #"unknown escape \e"#),
        (#"a = """x"""""""#, 1, 14, "end of the line"),
        (#""""k""" = 1"#, 1, 1, "cannot be a multi-line string"),
    ])
    func refusedWithReasonAndPlace(text: String, line: Int, column: Int, fragment: String) {
        do {
            _ = try TOMLTable(string: text)
            Issue.record("\(text.debugDescription) parsed without error")
        } catch {
            #expect(error.position == TOMLSourcePosition(line: line, column: column), "\(text.debugDescription): \(error)")
            #expect(error.description.contains(fragment), "\(text.debugDescription): \(error.description)")
        }
    }

    @Test("a key defined twice is reported at the key, not after its value")
    func duplicateKeyPointsAtTheKey() {
        do {
            _ = try TOMLTable(string: "a = 1\n  a = \"\"\"\nmany\nlines\"\"\"\n")
            Issue.record("accepted")
        } catch {
            #expect(error.position == TOMLSourcePosition(line: 2, column: 3))
            #expect(error.description == "the key \"a\" is defined twice; first on line 1")
        }
        do {
            _ = try TOMLTable(string: "[t]\nx.y = 1\n x . y = [\n1]\n")
            Issue.record("accepted")
        } catch {
            #expect(error.position == TOMLSourcePosition(line: 3, column: 2))
        }
    }

    @Test("values are what TOML 1.0 says; date-times are checked and kept as written")
    func valueEdges() throws {
        let t = try TOMLTable(
            string: #"""
                min = -9_223_372_036_854_775_808
                max = 0x7FFF_FFFF_FFFF_FFFF
                neg0 = -0.0
                big = 1e400
                nan = -nan
                esc = "\U0001F600\u00e9\b"
                ml = """\
                     trimmed \
                  line"""""
                lit = '''''x'''''
                dt = 1979-05-27 07:32:00.999999999-07:00
                day = 2024-02-29
                """#)
        #expect(t["min"]?.int == Int.min)
        #expect(t["max"]?.int == Int.max)
        #expect(t["neg0"]?.double?.sign == .minus)
        #expect(t["big"]?.double == .infinity)
        #expect(t["nan"]?.double?.isNaN == true)
        #expect(t["esc"]?.string == "😀é\u{08}")
        #expect(t["ml"]?.string == "trimmed line\"\"")
        #expect(t["lit"]?.string == "''x''")
        guard case .dateTime(let dt)? = t["dt"], case .dateTime(let day)? = t["day"] else {
            Issue.record("date-times not read as date-times")
            return
        }
        #expect(dt == "1979-05-27 07:32:00.999999999-07:00")
        #expect(day == "2024-02-29")
    }

    @Test("lines: an implicit table gets the line of the header that defines it; paths find the deepest key")
    func lines() throws {
        let t = try TOMLTable(string: "[a.b]\nx = 1\n\n[a]\ny = { z = 2 }\n")
        #expect(t.line(of: "a") == 4)
        #expect(t.line(of: ["a", "b", "x"]) == 2)
        #expect(t.line(of: ["a", "y", "z"]) == 5)
        #expect(t.line(of: ["a", "missing"]) == 4)
        #expect(t.line(of: ["nothing"]) == nil)
    }

    @Test("what a message quotes from the document is cut short")
    func longTokensAreShortened() {
        do {
            _ = try TOMLTable(string: "a = " + String(repeating: "x", count: 100_000))
            Issue.record("accepted")
        } catch {
            #expect(error.description.count < 200, "\(error.description.prefix(300))")
        }
    }

    /// Each entry once appended in a copy of the array: 50 000 entries took over a minute.
    @Test("many [[entries]] of one array of tables are read in linear time")
    func manyArrayOfTablesEntries() throws {
        let n = 50_000
        let start = ContinuousClock.now
        let t = try TOMLTable(string: String(repeating: "[[a]]\nx = 1\n", count: n))
        #expect(t["a"]?.array?.count == n)
        #expect(ContinuousClock.now - start < .seconds(20))
    }

    enum DeepDocument: String, CaseIterable, Sendable {
        case dottedKey, tableHeader, arrayOfTablesHeader, dottedKeysInInlineTables, headersThroughArraysOfTables

        /// Each about 340 KB: far under the 1 MiB cap that worker files, seeds and box.toml have.
        var text: String {
            let path = String(repeating: "a.", count: 170_000) + "a"
            switch self {
            case .dottedKey: return "x = 1\n" + path + " = 1\n"
            case .tableHeader: return "x = 1\n[" + path + "]\n"
            case .arrayOfTablesHeader: return "x = 1\n[[" + path + "]]\n"
            case .dottedKeysInInlineTables:
                return "x = 1\nb = " + String(repeating: "{ a.a = ", count: 40_000) + "1" + String(repeating: " }", count: 40_000) + "\n"
            case .headersThroughArraysOfTables:
                // Each [[…]] header goes one array and one table deeper.
                return (1...40).map { "[[" + Array(repeating: "a", count: $0).joined(separator: ".") + "]]\n" }.joined()
            }
        }

        /// The line of the error: where the limit is crossed.
        var line: Int { self == .headersThroughArraysOfTables ? 33 : 2 }
    }

    /// Key paths alone nesting ~170 000 tables deep: the reader refuses them where they cross
    /// the limit, so neither parsing nor freeing the tree can run out of stack (before the
    /// limit, freeing such a tree overflowed it and killed the process).
    @Test(arguments: DeepDocument.allCases)
    func deepKeyPathsAreAnErrorNotACrash(_ document: DeepDocument) {
        let text = document.text
        #expect(text.utf8.count < 1 << 20)
        do {
            _ = try TOMLTable(string: text)
            Issue.record("a tree deeper than the limit was accepted")
        } catch {
            #expect(error.description.contains("nests deeper than \(TOMLTable.maxDepth) levels"), "\(error.description)")
            #expect(error.position.line == document.line, "\(error.position)")
        }
    }

    @Test func theLimitItselfIsAllowed() throws {
        let path = Array(repeating: "a", count: TOMLTable.maxDepth)
        let dotted = try TOMLTable(string: path.joined(separator: ".") + " = 1\n")
        var t = dotted
        for _ in 1..<TOMLTable.maxDepth { t = try #require(t["a"]?.table) }
        #expect(t["a"]?.int == 1)
        _ = try TOMLTable(string: "[" + path.dropLast().joined(separator: ".") + "]\nx = 1\n")
        #expect(throws: TOMLParseError.self) { try TOMLTable(string: "[" + path.joined(separator: ".") + "]\nx = 1\n") }
        _ = try TOMLTable(string: "x = " + String(repeating: "[", count: 64) + String(repeating: "]", count: 64))
        #expect(throws: TOMLParseError.self) {
            try TOMLTable(string: "x = " + String(repeating: "[", count: 65) + String(repeating: "]", count: 65))
        }
    }
}

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
        ("a = [1, 2", 1, "expected ',' or ']'"),
        ("a = { b = 1", 1, "expected ',' or '}'"),
        ("a = \"\\q\"", 1, "unknown escape"),
        ("a = 1 b = 2", 1, "end of the line"),
        ("a = 01", 1, "not a TOML value"),
        ("= 1", 1, "expected a key"),
        ("a = 1\n[a.b]", 2, "not a table"),
        ("t = { x = 1 }\n[t]", 2, "already defined"),
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
            #expect(error.description.contains("nest deeper than 64 levels"), "\(error)")
            #expect(error.position.line == 1)
        }
        let ok = try? TOMLTable(string: "c = " + String(repeating: "[", count: 60) + String(repeating: "]", count: 60))
        #expect(ok != nil, "60 levels are fine")
    }
}

import Testing

@testable import AIBoxCore

@Suite("JSON nesting, measured before decoding")
struct JSONNestingTests {
    func beyond(_ limit: Int, _ text: String) -> Int? { JSONNesting.firstBeyond(limit, in: Array(text.utf8)) }

    @Test("the first [ or { deeper than the limit, by its offset")
    func depth() {
        #expect(beyond(2, #"{"a": [1, 2]}"#) == nil)
        #expect(beyond(1, #"{"a": [1, 2]}"#) == 6)
        #expect(beyond(2, #"[[1], [2], [3]]"#) == nil)
        #expect(beyond(2, #"[[1], [2], [[3]]]"#) == 12)
        #expect(beyond(0, "1") == nil)
        #expect(beyond(0, "") == nil)
    }

    @Test("brackets inside strings do not count; escaped quotes do not end a string")
    func strings() {
        #expect(beyond(1, #"{"k": "[[[{{{"}"#) == nil)
        #expect(beyond(1, #"{"k": "\"[[[", "l": "\\"}"#) == nil)
        // After an escaped backslash the quote does end the string: the [ then counts.
        #expect(beyond(1, #"{"k": "\\", "l": [1]}"#) == 17)
    }

    @Test("100,000 levels are refused at the first level beyond the limit, without recursion")
    func deep() {
        #expect(beyond(8, String(repeating: "[", count: 100_000)) == 8)
        #expect(beyond(8, String(repeating: #"{"a":"#, count: 100_000)) == 40)
    }
}

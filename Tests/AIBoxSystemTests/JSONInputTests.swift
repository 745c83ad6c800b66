import Testing

@testable import AIBoxCore
@testable import AIBoxSystem

@Suite("JSON from outside: control requests and the feed")
struct JSONInputTests {
    /// FoundationEssentials' JSONDecoder traps (index out of range while describing its
    /// own nesting-limit error) on exactly this: 513 `[` and nothing after.
    let decoderTrap = Array(String(repeating: "[", count: 513).utf8)

    @Test("a request line decodes; anything else is not a request")
    func requests() {
        #expect(
            ControlRequest.parse(line: Array(#"{"command":"stop","worker":"chat"}"#.utf8))
                == ControlRequest(command: "stop", worker: "chat"))
        #expect(ControlRequest.parse(line: Array(#"{"command":"status"}"#.utf8)) == ControlRequest(command: "status"))
        #expect(ControlRequest.parse(line: Array(#"{"worker":"chat"}"#.utf8)) == nil)
        #expect(ControlRequest.parse(line: Array("status".utf8)) == nil)
        #expect(ControlRequest.parse(line: []) == nil)
    }

    @Test("nesting that would crash or exhaust the decoder is refused before it")
    func nestedRequests() {
        #expect(ControlRequest.parse(line: decoderTrap) == nil)
        #expect(ControlRequest.parse(line: Array(String(repeating: "[", count: 100_000).utf8)) == nil)
        let deepObject = #"{"command":"status","worker":"# + String(repeating: #"{"a":"#, count: 100_000)
        #expect(ControlRequest.parse(line: Array(deepObject.utf8)) == nil)
        do {
            _ = try decodeJSONInput(ControlRequest.self, from: decoderTrap, maxNesting: ControlRequest.maxNesting)
            Issue.record("decoded")
        } catch {
            #expect(error.description == "arrays or objects nested more than 4 deep (at byte 4)")
        }
    }

    @Test("a feed nested deeper than its format is refused with the reason")
    func nestedFeed() throws {
        let good =
            #"{"format": 1, "compatible": "aibox-x86-64", "channels": {"stable": {"version": "1.2.0", "url": "https://u.example/1.2.0.aibox"}}}"#
        #expect(try UpdateFeed.parse(Array(good.utf8), signer: "k").channels["stable"]?.url == "https://u.example/1.2.0.aibox")
        for hostile in [decoderTrap, Array((#"{"format": 1, "channels": "# + String(repeating: "[", count: 100_000)).utf8)] {
            do {
                _ = try UpdateFeed.parse(hostile, signer: "k")
                Issue.record("accepted")
            } catch {
                #expect(error.description.contains("nested more than \(UpdateFeed.maxNesting) deep"), "\(error)")
            }
        }
    }
}

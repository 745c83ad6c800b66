import AIBoxCore
import FoundationEssentials

/// JSON that comes from outside (a control connection, the update feed) is decoded one way:
/// its nesting bounded first (`JSONNesting`: the decoder's own limit traps), then JSONDecoder.
public struct JSONInputError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

public func decodeJSONInput<T: Decodable>(_ type: T.Type, from bytes: [UInt8], maxNesting: Int) throws(JSONInputError) -> T {
    if let offset = JSONNesting.firstBeyond(maxNesting, in: bytes) {
        throw JSONInputError(description: "arrays or objects nested more than \(maxNesting) deep (at byte \(offset))")
    }
    do {
        return try JSONDecoder().decode(type, from: Data(bytes))
    } catch {
        throw JSONInputError(description: "\(error)")
    }
}

extension ControlRequest {
    /// A request is one flat object; anything nested deeper is not one.
    public static let maxNesting = 4

    /// One request line as the control socket receives it (without its newline), or nil when
    /// it is not a request.
    public static func parse(line: [UInt8]) -> ControlRequest? {
        try? decodeJSONInput(ControlRequest.self, from: line, maxNesting: maxNesting)
    }
}

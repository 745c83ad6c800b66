/// How deep JSON nests, measured before a decoder sees it. FoundationEssentials' JSONDecoder
/// recurses once per level and stops at 512 levels, but its error for that limit traps
/// (index out of range) when the input ends right at the 513th `[` or `{`: one such control
/// request line would kill the daemon. So JSON from outside is refused well below its limit.
public enum JSONNesting {
    /// The offset of the first `[` or `{` that opens a level deeper than `limit`, or nil.
    /// Brackets inside strings do not count (escapes are followed); the input need not be
    /// valid JSON: a decoder stops at the first error, never later than this scan counts.
    public static func firstBeyond(_ limit: Int, in bytes: some Collection<UInt8>) -> Int? {
        var depth = 0
        var inString = false
        var escaped = false
        for (offset, b) in bytes.enumerated() {
            if inString {
                if escaped {
                    escaped = false
                } else if b == UInt8(ascii: "\\") {
                    escaped = true
                } else if b == UInt8(ascii: "\"") {
                    inString = false
                }
                continue
            }
            switch b {
            case UInt8(ascii: "\""):
                inString = true
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                if depth > limit { return offset }
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                depth = max(depth - 1, 0)
            default:
                break
            }
        }
        return nil
    }
}

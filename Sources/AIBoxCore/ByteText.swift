/// Facts about the raw bytes of a file read from outside (a seed, a bundle manifest), for
/// errors that point at the place: where a byte offset is, and where UTF-8 breaks.
public enum ByteText {
    /// The offset of the first byte that is not part of a well-formed UTF-8 sequence
    /// (overlong forms, surrogates and values above U+10FFFF included), or nil.
    public static func firstInvalidUTF8(_ b: [UInt8]) -> Int? {
        var i = 0
        while i < b.count {
            let c = b[i]
            if c < 0x80 {
                i += 1
                continue
            }
            let need: Int
            var low: UInt8 = 0x80, high: UInt8 = 0xBF
            switch c {
            case 0xC2...0xDF: need = 1
            case 0xE0: (need, low) = (2, 0xA0)
            case 0xE1...0xEC, 0xEE...0xEF: need = 2
            case 0xED: (need, high) = (2, 0x9F)
            case 0xF0: (need, low) = (3, 0x90)
            case 0xF1...0xF3: need = 3
            case 0xF4: (need, high) = (3, 0x8F)
            default: return i
            }
            for k in 1...need {
                guard i + k < b.count else { return i }
                let (lo, hi) = k == 1 ? (low, high) : (0x80, 0xBF)
                guard b[i + k] >= lo && b[i + k] <= hi else { return i }
            }
            i += need + 1
        }
        return nil
    }

    /// Line and column (both from 1, the column in bytes) of a byte offset.
    public static func position(of offset: Int, in bytes: [UInt8]) -> (line: Int, column: Int) {
        var line = 1, lineStart = 0
        for i in 0..<min(offset, bytes.count) where bytes[i] == 0x0A {
            line += 1
            lineStart = i + 1
        }
        return (line, offset - lineStart + 1)
    }
}

// Update bundles (docs/BUNDLE.md), pure part: the byte layout of a `.aibox` file, read
// incrementally from any prefix so that a download is checked before a payload byte is used.

/// One signature of a bundle: which key (the SHA-256 of its 32 raw public-key bytes) and
/// the Ed25519 signature over the exact manifest bytes.
public struct BundleSignature: Sendable, Equatable {
    public var fingerprint: [UInt8]
    public var signature: [UInt8]

    public init(fingerprint: [UInt8], signature: [UInt8]) {
        self.fingerprint = fingerprint
        self.signature = signature
    }
}

/// The header of a bundle as read: nothing in it is trusted until a signature is verified.
public struct BundleHeader: Sendable, Equatable {
    public var format: UInt32
    /// The exact manifest bytes, as signed.
    public var manifest: [UInt8]
    public var signatures: [BundleSignature]
    /// Where the payload area starts: 18 + manifest length + 96 × signatures.
    public var length: Int
}

/// A problem in the header's bytes, at an offset of the bundle.
public struct BundleFormatError: Error, Equatable, Sendable, CustomStringConvertible {
    public var offset: Int
    public var message: String
    public var description: String { "at byte \(offset): \(message)" }
}

/// What a prefix of a bundle tells about its header.
public enum BundleHeaderParse: Equatable, Sendable {
    /// The prefix holds no complete header yet: give at least this many bytes (in all).
    case needMore(Int)
    /// The header is complete (any bytes beyond `header.length` are payload).
    case header(BundleHeader)
    /// These bytes are not a bundle header this code reads.
    case invalid(BundleFormatError)
}

/// The byte layout of a `.aibox` file (all integers big-endian):
///
/// | offset | bytes | field |
/// |---|---|---|
/// | 0 | 8 | magic `AIBOXBDL` |
/// | 8 | 4 | format version (1) |
/// | 12 | 4 | manifest length M (1 … 65536) |
/// | 16 | M | manifest (canonical TOML) |
/// | 16+M | 2 | signature count S (1 … 4) |
/// | 18+M | 96·S | S × (32-byte key fingerprint, 64-byte Ed25519 signature) |
/// | H = 18+M+96·S | Σ sizes | the payloads, image i at H + offset(i), in manifest order |
///
/// Nothing follows the last payload.
public enum BundleLayout {
    public static let magic: [UInt8] = Array("AIBOXBDL".utf8)
    public static let formatVersion: UInt32 = BundleManifest.formatVersion
    /// Magic, format and manifest length.
    public static let fixedLength = 16
    public static let maxManifestLength = 64 << 10
    public static let maxSignatures = 4
    public static let fingerprintLength = 32
    public static let signatureLength = 64
    public static let signatureEntryLength = 96
    public static let maxHeaderLength = fixedLength + maxManifestLength + 2 + maxSignatures * signatureEntryLength

    public static func headerLength(manifestLength: Int, signatureCount: Int) -> Int {
        fixedLength + manifestLength + 2 + signatureCount * signatureEntryLength
    }

    /// The header's bytes. Not checked (tests build wrong headers); lengths must fit their
    /// fields and each fingerprint/signature must have 32/64 bytes.
    public static func encodeHeader(manifest: [UInt8], signatures: [BundleSignature], format: UInt32 = formatVersion) -> [UInt8] {
        precondition(manifest.count <= UInt32.max && signatures.count <= UInt16.max)
        var out = magic
        out.reserveCapacity(headerLength(manifestLength: manifest.count, signatureCount: signatures.count))
        appendUInt32(format, to: &out)
        appendUInt32(UInt32(manifest.count), to: &out)
        out += manifest
        out.append(UInt8(truncatingIfNeeded: signatures.count >> 8))
        out.append(UInt8(truncatingIfNeeded: signatures.count))
        for s in signatures {
            precondition(s.fingerprint.count == fingerprintLength && s.signature.count == signatureLength)
            out += s.fingerprint
            out += s.signature
        }
        return out
    }

    /// Reads the header from the first bytes of a bundle, as many as have arrived. Wrong
    /// bytes are reported as soon as they are seen (a wrong magic after its first byte), a
    /// length beyond the limits before the bytes it announces are waited for.
    public static func parseHeader(_ prefix: [UInt8]) -> BundleHeaderParse {
        parseHeader(prefix[...])
    }

    public static func parseHeader(_ prefix: ArraySlice<UInt8>) -> BundleHeaderParse {
        let p = prefix
        let base = p.startIndex
        let n = p.count
        func byte(_ i: Int) -> UInt8 { p[base + i] }
        func u32(_ at: Int) -> UInt32 {
            UInt32(byte(at)) << 24 | UInt32(byte(at + 1)) << 16 | UInt32(byte(at + 2)) << 8 | UInt32(byte(at + 3))
        }
        for i in 0..<min(n, magic.count) where byte(i) != magic[i] {
            let seen = (0..<min(n, magic.count)).map { byte($0) }
            return .invalid(
                BundleFormatError(
                    offset: i, message: "not an aibox bundle: it starts with \(describe(seen)), an aibox bundle with \"AIBOXBDL\""))
        }
        guard n >= 12 else { return .needMore(fixedLength) }
        let format = u32(8)
        if format != formatVersion {
            let newer = format > formatVersion ? "; it needs a newer aibox" : ""
            return .invalid(
                BundleFormatError(
                    offset: 8, message: "bundle format \(format) is not supported: this aibox reads format \(formatVersion)\(newer)"))
        }
        guard n >= fixedLength else { return .needMore(fixedLength) }
        let manifestLength = u32(12)
        if manifestLength == 0 || manifestLength > UInt32(maxManifestLength) {
            return .invalid(
                BundleFormatError(
                    offset: 12, message: "the manifest length is \(manifestLength) bytes; a manifest has 1 to \(maxManifestLength) bytes"))
        }
        let m = Int(manifestLength)
        let countAt = fixedLength + m
        guard n >= countAt + 2 else { return .needMore(countAt + 2) }
        let count = Int(byte(countAt)) << 8 | Int(byte(countAt + 1))
        if count == 0 || count > maxSignatures {
            return .invalid(
                BundleFormatError(
                    offset: countAt,
                    message: "the signature count is \(count); a bundle carries 1 to \(maxSignatures) signatures"))
        }
        let length = headerLength(manifestLength: m, signatureCount: count)
        guard n >= length else { return .needMore(length) }
        var signatures: [BundleSignature] = []
        for k in 0..<count {
            let at = base + countAt + 2 + k * signatureEntryLength
            let s = BundleSignature(
                fingerprint: Array(p[at..<(at + fingerprintLength)]),
                signature: Array(p[(at + fingerprintLength)..<(at + signatureEntryLength)]))
            if let earlier = signatures.firstIndex(where: { $0.fingerprint == s.fingerprint }) {
                return .invalid(
                    BundleFormatError(
                        offset: at - base,
                        message: "signature \(k + 1) is by the same key as signature \(earlier + 1) (\(hex(s.fingerprint)))"))
            }
            signatures.append(s)
        }
        return .header(
            BundleHeader(
                format: format, manifest: Array(p[(base + fixedLength)..<(base + countAt)]), signatures: signatures, length: length))
    }

    /// Where image `index`'s payload lies in the bundle.
    public static func payloadRange(of image: BundleImage, headerLength: Int) -> Range<UInt64> {
        let start = UInt64(headerLength) + image.offset
        return start..<(start + image.size)
    }

    /// The length of the whole bundle.
    public static func totalLength(headerLength: Int, manifest: BundleManifest) -> UInt64 {
        UInt64(headerLength) + manifest.payloadLength
    }

    /// Which part of the header holds byte `offset`, as far as the lengths are known.
    public static func headerField(at offset: Int, manifestLength: Int?, signatureCount: Int?) -> String {
        switch offset {
        case 0..<8: return "the magic (bytes 0 to 7)"
        case 8..<12: return "the format version (bytes 8 to 11)"
        case 12..<16: return "the manifest length (bytes 12 to 15)"
        default: break
        }
        guard let m = manifestLength else { return "the header" }
        if offset < fixedLength + m { return "the manifest (bytes 16 to \(fixedLength + m - 1))" }
        let countAt = fixedLength + m
        if offset < countAt + 2 { return "the signature count (bytes \(countAt) to \(countAt + 1))" }
        let k = (offset - countAt - 2) / signatureEntryLength
        if let c = signatureCount, k >= c { return "the header" }
        let start = countAt + 2 + k * signatureEntryLength
        return "signature \(k + 1) (bytes \(start) to \(start + signatureEntryLength - 1))"
    }

    /// What a bundle that ends after `length` bytes lacks: where the end falls (in the
    /// header, or in which image's payload and how much of it is there).
    public static func describeEnd(at length: UInt64, prefix: [UInt8]) -> String {
        var manifestLength: Int?
        var signatureCount: Int?
        if prefix.count >= fixedLength {
            let m = Int(prefix[12]) << 24 | Int(prefix[13]) << 16 | Int(prefix[14]) << 8 | Int(prefix[15])
            if m <= maxManifestLength { manifestLength = m }
            if let m = manifestLength, prefix.count >= fixedLength + m + 2 {
                signatureCount = Int(prefix[fixedLength + m]) << 8 | Int(prefix[fixedLength + m + 1])
            }
        }
        var s =
            "the bundle ends after \(length) bytes, inside \(headerField(at: Int(length), manifestLength: manifestLength, signatureCount: signatureCount))"
        if let m = manifestLength, let c = signatureCount {
            s += "; its header has \(headerLength(manifestLength: m, signatureCount: c)) bytes"
        }
        return s
    }

    /// The same for an end in the payload area of a bundle whose header is known.
    public static func describeEnd(at length: UInt64, headerLength: Int, manifest: BundleManifest) -> String {
        let total = totalLength(headerLength: headerLength, manifest: manifest)
        for (n, image) in manifest.images.enumerated() {
            let range = payloadRange(of: image, headerLength: headerLength)
            if length >= range.lowerBound && length < range.upperBound {
                return
                    "the bundle ends after \(length) bytes, inside the payload of image \(n + 1) \(quoted(image.name)) (\(image.slotClass), bytes \(range.lowerBound) to \(range.upperBound - 1)): \(length - range.lowerBound) of its \(image.size) bytes are there; the whole bundle has \(total) bytes"
            }
        }
        return "the bundle has \(length) bytes; its manifest says \(total)"
    }

    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `0x0A`.
    public static func hexByte(_ b: UInt8) -> String {
        let h = hex([b]).uppercased()
        return "0x" + h
    }

    /// Bytes for a message: hex, and the text when printable.
    static func describe(_ bytes: [UInt8]) -> String {
        let text = bytes.allSatisfy { $0 >= 0x20 && $0 <= 0x7E } ? " (\(quoted(String(decoding: bytes, as: UTF8.self))))" : ""
        return bytes.map { hex([$0]) }.joined(separator: " ") + text
    }

    private static func appendUInt32(_ v: UInt32, to out: inout [UInt8]) {
        out += [
            UInt8(truncatingIfNeeded: v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8),
            UInt8(truncatingIfNeeded: v),
        ]
    }
}

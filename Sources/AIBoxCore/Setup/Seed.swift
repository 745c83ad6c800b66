/// Seeds (issue 4): `aibox setup --seed FILE` provisions a box from a TOML file without
/// questions. A seed has the layout of `box.toml` with the secrets' values inline
/// (`api-key = "sk-…"` where box.toml has `api-key-secret = "provider.openai.api-key"`); the
/// admin password only ever as its crypt(3) hash. provisioning/README.md documents every key.
///
/// The checks run in this order, each stopping at its first problem: size (at most 1 MiB,
/// before anything is read), UTF-8 (the offset of the first bad byte), nesting depth, TOML
/// syntax (line and column). Then every problem of the content is reported at once, each
/// as `FILE:LINE: KEY.PATH: what is wrong; what would be right`.

/// One problem in a seed or `box.toml`.
public struct SetupError: Error, Equatable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var column: Int?
    /// The key path, such as `providers.openai.base-url`; nil when the problem is the file's.
    public var key: String?
    public var message: String

    public init(file: String, line: Int?, column: Int? = nil, key: String?, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.key = key
        self.message = message
    }

    public var description: String {
        var s = file
        if let line {
            s += ":\(line)"
            if let column { s += ":\(column)" }
        }
        s += ": "
        if let key { s += "\(key): " }
        return s + message
    }
}

/// All the problems found, reported at once.
public struct SetupErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [SetupError]
    public init(_ errors: [SetupError]) { self.errors = errors }
    public var description: String { errors.map(\.description).joined(separator: "\n") }

    /// The first error about `key` (a key path), if any.
    public func error(at key: String) -> SetupError? { errors.first { $0.key == key } }
}

public enum Seed {
    /// Larger files are refused before they are read: a seed is a few kilobytes.
    public static let maxBytes = 1 << 20
    /// Arrays and inline tables nested deeper than this are refused before parsing.
    public static let maxNesting = 32
    /// The file system label of a provisioning stick, and the seed's name on it.
    public static let stickLabel = "AIBOX"
    public static let fileName = "aibox-seed.toml"

    /// Reads a seed. `tier` is the hardware's local-LLM tier: without a `chat` chain, chat
    /// starts at a local model when there is one (the box's own when it can run one) and ends
    /// in the cloud (`BoxConfig.applyDefaultRoutes`).
    /// On success, the configuration names its secrets and the dictionary holds their values.
    /// `zoneExists`, when given, checks that the time zone is installed.
    public static func parse(
        bytes: [UInt8], path: String, tier: LocalLLMTier = .none, zoneExists: Validators.ZoneCheck? = nil
    ) -> Result<(BoxConfig, [String: Secret]), SetupErrors> {
        func refuse(_ line: Int?, _ column: Int?, _ message: String) -> Result<(BoxConfig, [String: Secret]), SetupErrors> {
            .failure(SetupErrors([SetupError(file: path, line: line, column: column, key: nil, message: message)]))
        }
        if bytes.count > maxBytes {
            return refuse(
                nil, nil, "the file is \(bytes.count) bytes; a seed has at most \(maxBytes) bytes (1 MiB): is this the right file?")
        }
        if let bad = ByteText.firstInvalidUTF8(bytes) {
            let (line, column) = ByteText.position(of: bad, in: bytes)
            let byte = String(bytes[bad], radix: 16, uppercase: true)
            return refuse(
                line, column,
                "not valid UTF-8: the byte 0x\(byte.count == 1 ? "0" : "")\(byte) at offset \(bad) is not part of a UTF-8 character; save the file as UTF-8"
            )
        }
        if let deep = firstNestingBeyond(maxNesting, in: bytes) {
            let (line, column) = ByteText.position(of: deep, in: bytes)
            return refuse(line, column, "arrays or inline tables are nested more than \(maxNesting) deep; a seed needs at most 3")
        }
        return SetupFileReader.read(text: String(decoding: bytes, as: UTF8.self), path: path, form: .seed, zoneExists: zoneExists).map {
            read in
            var config = read.config
            config.applyDefaultRoutes(tier: tier)
            return (config, read.secrets)
        }
    }

    /// The offset of the first '[' or '{' nested deeper than `limit`, outside strings and
    /// comments. The TOML reader descends recursively, so depth is checked before it runs.
    static func firstNestingBeyond(_ limit: Int, in b: [UInt8]) -> Int? {
        var depth = 0, i = 0
        let quote = UInt8(ascii: "\""), apostrophe = UInt8(ascii: "'"), backslash = UInt8(ascii: "\\")
        while i < b.count {
            let c = b[i]
            switch c {
            case UInt8(ascii: "#"):
                while i < b.count && b[i] != 0x0A { i += 1 }
            case quote, apostrophe:
                let triple = i + 2 < b.count && b[i + 1] == c && b[i + 2] == c
                i += triple ? 3 : 1
                while i < b.count {
                    if c == quote && b[i] == backslash {
                        i += 2
                        continue
                    }
                    if !triple && b[i] == 0x0A { break }
                    if b[i] == c && (!triple || (i + 2 < b.count && b[i + 1] == c && b[i + 2] == c)) {
                        i += triple ? 3 : 1
                        break
                    }
                    i += 1
                }
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                if depth > limit { return i }
                i += 1
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                depth = max(0, depth - 1)
                i += 1
            default:
                i += 1
            }
        }
        return nil
    }
}

import AIBoxCore
import CAIBoxOS
import Crypto
import FoundationEssentials
import Glibc

/// The update feed (issue 5): a JSON index of the newest version per channel, signed like a
/// bundle's manifest (Ed25519 over the exact bytes, `FEED.sig` beside it: 64 bytes raw or
/// base64), by a key of the bundle keyring.
///
/// ```json
/// {"format": 1, "compatible": "aibox-x86-64",
///  "channels": {"stable": {"version": "1.2.0", "url": "https://updates.example.com/1.2.0.aibox", "size": 734003200}}}
/// ```
public struct UpdateFeed: Sendable {
    public var compatible: String
    public var channels: [String: FeedEntry]
    public var signer: String

    struct Document: Decodable {
        struct Entry: Decodable {
            var version: String
            var url: String
            var size: UInt64?
        }
        var format: Int
        var compatible: String
        var channels: [String: Entry]
    }

    public static let maxBytes = 1 << 20
    /// The document nests 3 deep (object, channels, entry).
    public static let maxNesting = 8

    /// Parses and checks a feed whose signature was verified.
    public static func parse(_ bytes: [UInt8], signer: String) throws(UpdateError) -> UpdateFeed {
        let doc: Document
        do {
            doc = try decodeJSONInput(Document.self, from: bytes, maxNesting: maxNesting)
        } catch {
            throw UpdateError("the feed is not the expected JSON (format, compatible, channels): \(error)")
        }
        guard doc.format == 1 else { throw UpdateError("feed format \(doc.format); this aibox reads format 1") }
        var channels: [String: FeedEntry] = [:]
        for (name, e) in doc.channels {
            guard let version = SemanticVersion(e.version) else {
                throw UpdateError("channel \(name): \"\(e.version)\" is not a semantic version")
            }
            guard e.url.hasPrefix("https://") || e.url.hasPrefix("http://"), e.url.utf8.count <= 2048 else {
                throw UpdateError("channel \(name): the url must be http(s), at most 2048 bytes")
            }
            channels[name] = FeedEntry(version: version, url: e.url, size: e.size)
        }
        return UpdateFeed(compatible: doc.compatible, channels: channels, signer: signer)
    }

    /// Fetches FEED and FEED.sig, verifies the signature with `keyring`, parses.
    public static func fetch(_ url: String, keyring: Keyring, ca: String? = nil) throws(UpdateError) -> UpdateFeed {
        let body = try download(url, limit: maxBytes, ca: ca)
        let sigBytes = try download(url + ".sig", limit: 4096, ca: ca)
        guard let signature = SeedSignature.signature(sigBytes) else {
            throw UpdateError("\(url).sig is not an Ed25519 signature (64 bytes, raw or base64)")
        }
        guard let key = keyring.keys.first(where: { $0.key.isValidSignature(signature, for: body) }) else {
            throw UpdateError("the feed's signature matches none of the \(keyring.keys.count) key(s) in \(keyring.directory): refused")
        }
        return try parse(body, signer: key.name)
    }

    /// A small document into memory (at most `limit` bytes), one attempt.
    static func download(_ url: String, limit: Int, ca: String?) throws(UpdateError) -> [UInt8] {
        final class Collector {
            var bytes: [UInt8] = []
            let limit: Int
            var tooLarge = false
            init(limit: Int) { self.limit = limit }
        }
        let collector = Collector(limit: limit)
        var result = aibox_http_result()
        let code = withExtendedLifetime(collector) {
            aibox_http_get(
                url, 0, 15, 30, "aibox/\(AIBoxVersion.current)", ca,
                { data, length, context in
                    let c = Unmanaged<Collector>.fromOpaque(context!).takeUnretainedValue()
                    guard let data, c.bytes.count + length <= c.limit else {
                        c.tooLarge = true
                        return 0
                    }
                    c.bytes += UnsafeRawBufferPointer(start: data, count: length)
                    return length
                }, Unmanaged.passUnretained(collector).toOpaque(), &result)
        }
        if collector.tooLarge { throw UpdateError("\(url): larger than \(limit) bytes; refused") }
        guard code == 0 else {
            let message = withUnsafeBytes(of: result.error) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            throw UpdateError("\(url): \(message)")
        }
        return collector.bytes
    }
}

/// Free bytes for unprivileged writers on the file system holding `path`.
public func freeBytes(at path: String) -> UInt64? {
    var s = statvfs()
    // nil: not known (the callers then check nothing rather than refuse).
    guard (try? syscall("statvfs", detail: path) { statvfs(path, &s) }) != nil else { return nil }
    return UInt64(s.f_bavail) * UInt64(s.f_frsize)
}

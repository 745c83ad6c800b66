import AIBoxSystem
import Glibc

/// One fuzz target: a parser the daemon or the CLI runs on bytes from outside, fed those
/// bytes exactly as it gets them. Beyond "does not crash", each harness checks what the
/// project promises of that parser (an error's line lies in the file, what is written reads
/// back the same, a stream chunked differently gives the same answer); a broken promise is
/// returned as a problem, and the driver turns it into a crash libFuzzer records.
public struct Harness: Sendable {
    public let name: String
    /// The parser, in a few words (the driver's usage).
    public let summary: String
    public let run: @Sendable ([UInt8]) -> Verdict

    public static let all: [Harness] = [
        Harness(name: "toml", summary: "TOMLTable(string:): the TOML reader", run: fuzzTOML),
        Harness(name: "workers", summary: "WorkerConfig.load: worker definition files", run: fuzzWorkers),
        Harness(name: "seed", summary: "Seed.parse: a seed from a stick or --seed", run: fuzzSeed),
        Harness(name: "box", summary: "BoxConfig.parse: etc/aibox/box.toml", run: fuzzBox),
        Harness(name: "system", summary: "SystemDescription.parse: usr/lib/aibox/system.toml", run: fuzzSystem),
        Harness(name: "bootenv", summary: "BootEnvironment.parse, BootEnvironmentFile.decode", run: fuzzBootEnvironment),
        Harness(name: "bundle-header", summary: "BundleLayout.parseHeader + manifest (bundle inspect)", run: fuzzBundleHeader),
        Harness(name: "manifest", summary: "BundleManifest.parse: a bundle's signed manifest", run: fuzzManifest),
        Harness(name: "bundle-stream", summary: "BundleStreamVerifier with a test keyring", run: fuzzBundleStream),
        Harness(name: "feed", summary: "UpdateFeed.parse: the update feed (JSON)", run: fuzzFeed),
        Harness(name: "control", summary: "ControlRequest.parse: a control socket request line (JSON)", run: fuzzControl),
        Harness(name: "notify", summary: "NotifyMessage(datagram:) into a WorkerMachine", run: fuzzNotify),
        Harness(name: "http-status", summary: "ReadyHTTP.answer: a ready-http server's status line", run: fuzzHTTPStatus),
        Harness(name: "reply-stream", summary: "ReplyDecoder: a provider's streamed reply (SSE, NDJSON)", run: fuzzReplyStream),
        Harness(name: "prices", summary: "PriceTable.parse: the agent's prices.toml", run: fuzzPrices),
        Harness(name: "whatsapp-webhook", summary: "WhatsAppWebhook.receive: a POST body Meta (or anyone) sends", run: fuzzWhatsAppWebhook),
    ]

    public static func named(_ name: String) -> Harness? { all.first { $0.name == name } }
}

/// What a harness made of one input.
public struct Verdict: Sendable {
    /// The parser took the input (so the corpus reaches past its checks).
    public var accepted: Bool
    /// Promises broken by this input; empty when every one held.
    public var problems: [String] = []
}

/// Every `line` lies within the document: the place an error names must exist.
func linesInside(_ lines: [Int?], of bytes: [UInt8], _ what: String) -> [String] {
    let last = bytes.reduce(1) { $1 == 0x0A ? $0 + 1 : $0 }
    return lines.compactMap { $0 }.filter { !(1...last).contains($0) }.map {
        "\(what): an error names line \($0); the document has \(last) lines"
    }
}

/// The bytes as text, the way the daemon reads a file (bad UTF-8 replaced).
func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

/// The inputs of a corpus: every file under `paths` (directories recursively, dot files
/// skipped), sorted, as bytes.
public func corpusInputs(_ paths: [String]) -> [(path: String, bytes: [UInt8])] {
    var out: [(path: String, bytes: [UInt8])] = []
    for path in paths {
        var st = stat()
        guard stat(path, &st) == 0 else { continue }
        if st.st_mode & S_IFMT == S_IFDIR {
            out += corpusInputs(listDirectory(path).filter { !$0.hasPrefix(".") }.sorted().map { path + "/" + $0 })
        } else if let bytes = readSmallFile(path, limit: 16 << 20) {
            out.append((path, bytes))
        }
    }
    return out
}

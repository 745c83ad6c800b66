import AIBoxCore
import CAIBoxOS
import Glibc

/// Where a download's bytes go: an update's slot (through the bundle verifier), a model's
/// part file. The download loop asks it where to resume and tells it when to start over.
public protocol DownloadSink: AnyObject {
    /// Bytes taken so far: a cut transfer resumes here with a Range request.
    var position: UInt64 { get }
    /// The next bytes of the body; an error stops the download at once (no retry).
    func consume(_ bytes: UnsafeRawBufferPointer) throws
    /// The server answered a resume with the whole body: everything taken is dropped and
    /// the body is taken again from byte 0.
    func startOver() throws
}

/// A download that failed for good: retries used up, or a failure no retry can mend. The
/// message names the URL and what went wrong; `status` is the last HTTP status (0: none).
public struct DownloadError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public var status: Int
    public init(_ description: String, status: Int = 0) {
        self.description = description
        self.status = status
    }
}

/// A cut download about to be resumed: what the person at the terminal is told.
public struct DownloadRetry: Sendable, CustomStringConvertible {
    /// 1 for the first retry.
    public var attempt: Int
    public var of: Int
    /// Where the transfer was cut (the next request resumes there, or from 0 when the
    /// server cannot resume).
    public var position: UInt64
    public var reason: String
    public var delaySeconds: Double

    public var description: String {
        "download cut at byte \(position) (\(reason)); retry \(attempt) of \(of) in \(Int(delaySeconds.rounded())) s"
    }
}

/// The one download loop of AIBox (updates, model weights): a URL streamed through libcurl
/// (`aibox_http_get`, http and https only) into a sink. A cut transfer resumes with a Range
/// request from the sink's position, after 1, 2, 4 … s (at most 30 s, ±20 %, on the
/// monotonic clock); a server that answers a resume with the whole body makes the sink start
/// over; an error of the sink stops at once.
public struct Downloader: Sendable {
    public var url: String
    /// The only CA trusted for https (a private server's); nil: the system's store.
    public var caFile: String?
    public var userAgent: String
    /// How long to wait for a connection, how long a stalled transfer may hang before it is
    /// cut, how often a cut transfer is resumed.
    public var connectTimeoutSeconds = 15
    public var stallTimeoutSeconds = 30
    public var retries = 6

    public init(url: String, caFile: String? = nil, userAgent: String = "aibox/\(AIBoxVersion.current)") {
        self.url = url
        self.caFile = caFile
        self.userAgent = userAgent
    }

    /// libcurl results that no retry can mend: bad URL, unsupported protocol, a certificate
    /// that does not verify, an unusable CA file.
    public static let permanentCurlErrors: Set<Int32> = [1, 3, 58, 60, 77]

    /// Runs the loop until the body is whole in the sink. `onRetry` hears of each cut before
    /// its wait. Errors: the sink's own, unchanged, or a `DownloadError`.
    public func run(into sink: DownloadSink, onRetry: (DownloadRetry) -> Void) throws {
        var failures = 0
        while true {
            let box = SinkBox(sink)
            var result = aibox_http_result()
            let code = withExtendedLifetime(box) {
                aibox_http_get(
                    url, sink.position, connectTimeoutSeconds, stallTimeoutSeconds, userAgent, caFile,
                    { data, length, context in
                        let box = Unmanaged<SinkBox>.fromOpaque(context!).takeUnretainedValue()
                        guard let data else { return 0 }
                        do {
                            try box.sink.consume(UnsafeRawBufferPointer(start: data, count: length))
                            return length
                        } catch {
                            box.error = error
                            return 0
                        }
                    }, Unmanaged.passUnretained(box).toOpaque(), &result)
            }
            if let e = box.error { throw e }
            var message = withUnsafeBytes(of: result.error) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            let status = Int(result.status)
            if code == -1 { throw DownloadError(message) }
            if Downloader.permanentCurlErrors.contains(result.curl_code) {
                throw DownloadError("\(url): \(message); not retried", status: status)
            }
            if code == 0 { return }
            let cutAt = sink.position
            if result.range_ignored != 0 {
                try sink.startOver()  // the server cannot resume: from the start
                message = "the server ignored the Range request; starting over"
            } else if (400..<500).contains(status) && status != 408 && status != 429 {
                throw DownloadError("\(url): HTTP \(status) (\(message)); not retried", status: status)
            }
            failures += 1
            guard failures <= retries else {
                throw DownloadError("\(url): the download failed \(failures) times; the last: \(message)", status: status)
            }
            let delay =
                Double(
                    Backoff(base: .seconds(1), max: .seconds(30)).delay(attempt: failures, random: Double.random(in: 0...1)).milliseconds)
                / 1000
            onRetry(DownloadRetry(attempt: failures, of: retries, position: cutAt, reason: message, delaySeconds: delay))
            sleep(for: .nanoseconds(Int64(delay * 1e9)))
        }
    }
}

/// The C callback's way back to the sink.
final class SinkBox {
    let sink: DownloadSink
    var error: Error?
    init(_ sink: DownloadSink) { self.sink = sink }
}

import Testing

@testable import AIBoxCore

let kib: UInt64 = 1024
let byteSizes: [(String, UInt64)] = [
    ("1048576", 1_048_576),
    ("0", 0),
    ("100K", 100 * kib),
    ("512M", 512 * kib * kib),
    ("2G", 2 * kib * kib * kib),
    ("2g", 2 * kib * kib * kib),
    ("2GB", 2 * kib * kib * kib),
    ("2GiB", 2 * kib * kib * kib),
    ("1T", kib * kib * kib * kib),
    ("1.5G", 3 * kib * kib * kib / 2),
    (" 64M ", 64 * kib * kib),
    ("10B", 10),
]

@Suite("Durations and byte sizes")
struct DurationTests {
    @Test(
        "parseDuration reads every unit and sequences of parts",
        arguments: [
            ("100ms", Duration.milliseconds(100)),
            ("30s", .seconds(30)),
            ("5m", .seconds(300)),
            ("2h", .seconds(7200)),
            ("1d", .seconds(86_400)),
            ("1h30m", .seconds(5400)),
            ("1m30s500ms", .milliseconds(90_500)),
            ("1.5s", .milliseconds(1500)),
            ("0.25s", .milliseconds(250)),
            ("250us", .microseconds(250)),
            ("250µs", .microseconds(250)),
            ("10ns", .nanoseconds(10)),
            ("0s", .zero),
            ("  30s\t", .seconds(30)),
        ])
    func parsesDurations(text: String, expected: Duration) {
        #expect(parseDuration(text) == expected)
    }

    @Test(
        "parseDuration returns nil for malformed text",
        arguments: ["", "   ", "abc", "10", "s", "ms", "10x", "5 s", "1..5s", "1.2.3s", "-5s", "+5s", "5s ms", "1e3s", "30sec", "5M"])
    func rejectsMalformedDurations(text: String) {
        #expect(parseDuration(text) == nil)
    }

    @Test("parseDuration rejects values beyond the representable range")
    func rejectsHugeDurations() {
        #expect(parseDuration("999999999999d") == nil)
    }

    @Test(
        "aiboxText writes durations the way config files spell them",
        arguments: [
            (Duration.zero, "0s"),
            (.nanoseconds(10), "10ns"),
            (.nanoseconds(1500), "1500ns"),
            (.microseconds(250), "250us"),
            (.milliseconds(100), "100ms"),
            (.milliseconds(1250), "1.25s"),
            (.milliseconds(1005), "1.005s"),
            (.seconds(30), "30s"),
            (.seconds(90), "1m30s"),
            (.seconds(300), "5m"),
            (.seconds(5400), "1h30m"),
            (.seconds(86_400 + 3 * 3600 + 1), "1d3h1s"),
            (.milliseconds(61_500), "1m1.5s"),
            (.milliseconds(3_600_250), "1h0.25s"),
        ])
    func formatsDurations(duration: Duration, text: String) {
        #expect(duration.aiboxText == text)
    }

    @Test(
        "aiboxText parses back to the same duration",
        arguments: [
            Duration.zero, .nanoseconds(7), .nanoseconds(1500), .microseconds(999), .milliseconds(1), .milliseconds(100),
            .milliseconds(999), .milliseconds(1250), .milliseconds(59_999), .seconds(30), .seconds(61),
            .milliseconds(61_500), .milliseconds(3_600_250), .seconds(300), .seconds(5400), .seconds(86_400 * 3 + 7),
        ])
    func roundTrips(duration: Duration) throws {
        let text = duration.aiboxText
        let parsed = try #require(parseDuration(text), "\(text) does not parse")
        #expect(parsed == duration, "\(duration) -> \(text) -> \(parsed)")
    }

    @Test(
        "text written in config files survives parse and format",
        arguments: ["100ms", "30s", "5m", "1h30m", "1.25s", "0.29s", "4.35s", "1m1.5s", "250us", "2d"])
    func textRoundTrips(text: String) throws {
        let d = try #require(parseDuration(text))
        #expect(parseDuration(d.aiboxText) == d, "\(text) -> \(d.aiboxText)")
    }

    @Test(
        "parseByteSize reads binary units with optional B/iB",
        arguments: byteSizes)
    func parsesByteSizes(text: String, bytes: UInt64) {
        #expect(parseByteSize(text) == bytes)
    }

    @Test(
        "parseByteSize returns nil for malformed sizes",
        arguments: ["", "G", "GB", "abc", "-1G", "2X", "2 G", "two", "inf", "nan", "1PB", "99999999999T"])
    func rejectsMalformedByteSizes(text: String) {
        #expect(parseByteSize(text) == nil)
    }

    @Test("Instant arithmetic saturates and never goes backwards")
    func instantArithmetic() {
        let t = Instant(nanoseconds: 5_000_000_000)
        #expect((t + .seconds(2)).nanoseconds == 7_000_000_000)
        #expect(t + .seconds(-2) == t)
        #expect(Instant(nanoseconds: .max - 1) + .seconds(1) == Instant(nanoseconds: .max))
        #expect((t + .milliseconds(1500)).since(t) == .milliseconds(1500))
        #expect(t.since(t + .seconds(1)) == .zero)
        #expect(Instant(nanoseconds: 1) < Instant(nanoseconds: 2))
    }

    @Test("Duration.scaled saturates and never goes negative")
    func scaled() {
        #expect(Duration.seconds(2).scaled(by: 1.5) == .seconds(3))
        #expect(Duration.seconds(2).scaled(by: -1) == .zero)
        #expect(Duration.seconds(1).scaled(by: 1e30) == .nanoseconds(Int64.max))
        #expect(Duration.milliseconds(1500).milliseconds == 1500)
        #expect(Duration.milliseconds(3).microseconds == 3000)
    }

    @Test(
        "signal names accept TERM, SIGTERM and lower case",
        arguments: [
            ("TERM", Int32(15)), ("SIGTERM", 15), ("term", 15), ("sigkill", 9), ("HUP", 1), ("INT", 2), ("USR1", 10), ("WINCH", 28),
        ])
    func signalNames(name: String, number: Int32) {
        #expect(Signals.number(named: name) == number)
        #expect(Signals.name(of: number) == "SIG" + name.uppercased().replacingSIG())
    }

    @Test("unknown signal names and numbers")
    func unknownSignals() {
        #expect(Signals.number(named: "FOO") == nil)
        #expect(Signals.number(named: "") == nil)
        #expect(Signals.number(named: "15") == nil)
        #expect(Signals.name(of: 64) == "signal 64")
    }

    @Test(
        "worker names follow [a-z0-9][a-z0-9-]{0,62}",
        arguments: [
            ("chat-agent", true), ("a", true), ("0", true), ("llm-local-2", true), (String(repeating: "a", count: 63), true),
            ("", false), ("-a", false), ("Chat", false), ("chat_agent", false), ("chat.agent", false), ("chat agent", false),
            (String(repeating: "a", count: 64), false), ("é", false),
        ])
    func workerNames(name: String, valid: Bool) {
        #expect(WorkerDefinition.isValidName(name) == valid)
    }
}

extension String {
    fileprivate func replacingSIG() -> String { hasPrefix("SIG") ? String(dropFirst(3)) : self }
}

@Suite("The restart jitter's random numbers")
struct JitterRandomTests {
    @Test("SplitMix64: the same seed gives the same numbers; fractions stay in 0..<1 and spread over it")
    func splitMix() {
        var a = SplitMix64(seed: 42), b = SplitMix64(seed: 42), c = SplitMix64(seed: 43)
        let first = (0..<8).map { _ in a.next() }
        #expect(first == (0..<8).map { _ in b.next() })
        #expect(first != (0..<8).map { _ in c.next() })
        var g = SplitMix64(seed: 7)
        let fractions = (0..<10_000).map { _ in g.nextFraction() }
        #expect(fractions.allSatisfy { $0 >= 0 && $0 < 1 })
        // Each tenth of the range gets its share (±20 %): no bias the backoff's ±20 % would show.
        var buckets = [Int](repeating: 0, count: 10)
        for f in fractions { buckets[Int(f * 10)] += 1 }
        #expect(buckets.allSatisfy { $0 > 800 && $0 < 1200 }, "\(buckets)")
    }
}

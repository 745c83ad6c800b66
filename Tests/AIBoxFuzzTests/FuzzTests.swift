import AIBoxFuzzHarnesses
import Foundation
import Glibc
import Testing

/// The repository's root, from this file's place in it.
let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

@Suite("Fuzz corpora replayed")
struct CorpusReplayTests {
    @Test("every harness's seed corpus breaks no promise, and some of it gets past the parser's checks", arguments: Harness.all.map(\.name))
    func replay(_ name: String) throws {
        let harness = try #require(Harness.named(name))
        let inputs = corpusInputs([repository + "/Fuzz/corpus/" + name])
        #expect(!inputs.isEmpty, "Fuzz/corpus/\(name) is empty")
        var accepted = 0
        for (path, bytes) in inputs {
            let verdict = harness.run(bytes)
            if verdict.accepted { accepted += 1 }
            #expect(verdict.problems.isEmpty, "\(path): \(verdict.problems.joined(separator: "\n"))")
        }
        // An input the parser takes: the fuzzer starts beyond its first refusal (for bundles:
        // the test key signs, the harness's keyring trusts it).
        #expect(accepted > 0, "no input of Fuzz/corpus/\(name) is accepted")
    }
}

@Suite("Fuzzing, a short run")
struct ShortFuzzRunTests {
    /// Seconds per harness (AIBOX_FUZZ_SECONDS), small enough for CI: docs/FUZZING.md.
    static let seconds = ProcessInfo.processInfo.environment["AIBOX_FUZZ_SECONDS"].flatMap(Int.init) ?? 8

    @Test("every harness under libFuzzer and AddressSanitizer: no crash, no leak, no broken promise, memory bounded")
    func shortRun() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/nice")
        // Niced: the sanitizer build and the fuzzer take the cores other tests leave idle.
        p.arguments = ["-n", "19", repository + "/Fuzz/run", "--seconds", String(Self.seconds), "--jobs", "2"]
        p.currentDirectoryURL = URL(fileURLWithPath: repository)
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        // On a finding the output holds libFuzzer's report, the saved input and how to replay it.
        #expect(p.terminationStatus == 0, "Fuzz/run --seconds \(Self.seconds) --jobs 2 exited \(p.terminationStatus):\n\(output)")
        // The figures, for CI's log.
        print(
            output.split(separator: "\n").filter { $0.hasPrefix("harness ") || Harness.named(String($0.prefix { $0 != " " })) != nil }
                .joined(separator: "\n"))
        for h in Harness.all {
            let line = output.split(separator: "\n").first { $0.hasPrefix(h.name + " ") }
            let runs = line.flatMap { $0.split(separator: " ").dropFirst().first }.flatMap { Int($0) } ?? 0
            #expect(runs > 0, "\(h.name) did not run:\n\(output)")
        }
    }
}

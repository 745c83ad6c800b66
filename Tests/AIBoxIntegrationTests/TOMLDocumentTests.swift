import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

// TOML documents as a box receives them: hostile worker files on reload, seeds edited on
// Windows, and the differential corpus against Python's tomllib.

@Suite("TOML documents, end to end", .serialized)
struct TOMLDocumentTests {
    typealias S = SetupSeedSupport

    /// Just under the 1 MiB cap of worker files: keys nesting ~500 000 tables deep.
    static let deepKeys = "# hostile\n" + String(repeating: "a.", count: 524_000) + "a = 1\n"
    static let deepHeaders = "# hostile\n[" + String(repeating: "w.", count: 524_000) + "w]\n"

    @Test("tomllib still reads the committed corpus as its expectations say")
    func corpusMatchesTomllib() throws {
        let script = S.packageDirectory + "/Tests/AIBoxCoreTests/TOMLCorpus/generate.py"
        let r = try S.execute("/usr/bin/python3", [script, "--check"], timeout: .seconds(120))
        #expect(r.code == 0, "generate.py --check:\n\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains(": 0 problems"), "\(r.stdout)")
    }

    /// Before the limit, freeing the tree of such a file overflowed the daemon's stack: a
    /// reload killed it, and so did every start after.
    @Test("a daemon fed documents nested half a million deep by reload keeps running and says where and why")
    func deepDocumentsOnReload() throws {
        #expect(Self.deepKeys.utf8.count < 1 << 20 && Self.deepKeys.utf8.count > 1_000_000)
        let box = try TestBox("[worker.alpha]\nexec = [\"@WORKER@\", \"--no-notify\"]\n")
        try box.startDaemon()
        defer { box.stopDaemon() }
        let alpha = try #require(try box.waitFor("alpha", ["running"])?.pid)

        try box.write(Self.deepKeys, file: "deep-keys.toml")
        try box.write(Self.deepHeaders, file: "deep-headers.toml")
        let r = try box.aibox(["reload"])
        #expect(r.code == 1, "\(r.stdout)\(r.stderr)")
        for file in ["deep-keys.toml", "deep-headers.toml"] {
            let line = r.stderr.split(separator: "\n").first { $0.contains(file) }.map(String.init) ?? ""
            #expect(line.contains("\(file):2: not valid TOML: this key nests deeper than 64 levels"), "\(r.stderr)")
            #expect(line.contains("(column \(file == "deep-keys.toml" ? 129 : 130))"), "\(line)")
        }
        #expect(box.daemon?.isRunning == true, "the daemon died on reload:\n\(box.daemonLog())")
        #expect(try box.worker("alpha")?.pid == alpha, "a refused reload changed the running worker")
        #expect(try box.aibox(["status", "--json"]).stdout.contains("deep-keys.toml:2"))

        // SIGHUP takes the same path.
        kill(box.daemonPID, SIGHUP)
        #expect(try waitUntil { try box.aibox(["status", "--json"]).code == 0 })
        #expect(box.daemon?.isRunning == true, "the daemon died on SIGHUP:\n\(box.daemonLog())")
        #expect(try box.worker("alpha")?.pid == alpha)

        // A start with the files in place is refused as for any invalid set: exit 1, saying
        // where and why (a crash-loop before).
        #expect(box.stopDaemon() == 0)
        let start = try S.execute(aiboxBinary, ["daemon", "--root", box.root, "--log-target", "files"], timeout: .seconds(30))
        #expect(start.code == 1, "\(start.stderr)")
        #expect(start.stderr.contains("deep-headers.toml:2: not valid TOML: this key nests deeper than 64 levels"), "\(start.stderr)")
        #expect(start.stderr.contains("deep-keys.toml:2: not valid TOML: this key nests deeper than 64 levels"), "\(start.stderr)")
    }

    @Test("a seed with CRLF line ends and comments, as edited on Windows, provisions the box")
    func crlfSeedProvisions() throws {
        let dir = try S.temporaryDirectory()
        defer { S.remove(dir) }
        let text = try #require(readTextFile(S.fullSeed))
        #expect(text.contains("# "), "the example seed has comments")
        let seed = dir + "/windows.toml"
        let crlf = text.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\r\n")
        try writeFileAtomically(seed, [0xEF, 0xBB, 0xBF] + Array(crlf.utf8))
        let box = try S.unprovisionedBox()
        let r = try box.aibox(["setup", "--seed", seed])
        #expect(r.code == 0, "setup failed: \(r.stderr)")
        #expect(r.stdout.contains("provisioned \"kitchen-box\""), "\(r.stdout)")
        let config = try BoxConfig.parse(text: readTextFile(box.paths.boxConfig) ?? "", path: "box.toml").get()
        #expect(config.name == "kitchen-box")
        #expect(config.timezone == "Europe/Berlin")
        #expect(Set(config.secretNames) == Set(S.fullSecrets.keys))
        for (name, value) in S.fullSecrets {
            #expect(readTextFile(box.paths.secrets + "/" + name) == value, "the secret \(name) is not as written (a CR kept?)")
        }
    }

    @Test("a seed nested half a million deep is refused with the limit and its place")
    func deepSeedIsRefused() throws {
        let dir = try S.temporaryDirectory()
        defer { S.remove(dir) }
        let box = try S.unprovisionedBox()
        for (name, text) in [("keys", Self.deepKeys), ("headers", Self.deepHeaders)] {
            let seed = dir + "/\(name).toml"
            try writeFileAtomically(seed, Array(text.utf8))
            let r = try box.aibox(["setup", "--seed", seed])
            #expect(r.code == 1, "\(name): exit \(r.code)\n\(r.stderr)")
            #expect(r.stderr.contains("\(seed):2:"), "\(name): \(r.stderr)")
            #expect(r.stderr.contains("nests deeper than 64 levels"), "\(name): \(r.stderr)")
            #expect(!fileExists(box.paths.boxConfig))
        }
    }
}

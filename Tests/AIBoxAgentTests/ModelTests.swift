import AIBoxAgent
import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// A file server on 127.0.0.1 (Fixtures/range_server.py) that answers Range requests and
/// follows a script of faults: a cut after N bytes, a wrong body, a slow transfer.
final class ModelServer {
    let server: FixtureServer
    var base: String { server.base }
    var dir: String { server.dir }

    init() throws {
        server = try FixtureServer("range_server.py") { dir in
            try makeDirectories(dir + "/files")
            return ["--dir", dir + "/files"]
        }
    }

    /// Serves `bytes` as /NAME; returns their SHA-256.
    @discardableResult
    func serve(_ name: String, _ bytes: [UInt8]) throws -> String {
        try writeFileAtomically(dir + "/files/" + name, bytes)
        return try sha256(of: dir + "/files/" + name)
    }

    func url(_ name: String) -> String { base + "/" + name }

    func script(_ faults: String) throws {
        let r = try runProgram(
            "/usr/bin/curl", ["-s", "-X", "POST", base + "/_control/script", "-H", "content-type: application/json", "-d", "{\"faults\": \(faults)}"])
        #expect(r.code == 0, "scripting the server: \(r.stderr)")
    }

    /// The requests for a file so far: each one's Range header (nil: none).
    func ranges(_ name: String) throws -> [String?] {
        let r = try runProgram("/usr/bin/curl", ["-s", base + "/_control/requests"])
        let all = (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])?["requests"] as? [[String: Any]] ?? []
        return all.filter { $0["path"] as? String == "/" + name }.map { $0["range"] as? String }
    }
}

func sha256(of path: String) throws -> String {
    String(try runProgram("/usr/bin/sha256sum", [path]).stdout.prefix(64))
}

/// Deterministic bytes that are not all alike (a model file stands in for weights).
func modelBytes(_ count: Int, seed: UInt64 = 7) -> [UInt8] {
    var x = seed
    return (0..<count).map { _ in
        x = x &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return UInt8(truncatingIfNeeded: x >> 33)
    }
}

/// `aibox-agent models`: the catalog, pulls that resume after a cut or a kill, hashes that
/// are checked, a disk that would fill, the default link, removal.
@Suite("models", .serialized)
struct ModelTests {
    let server: ModelServer
    let box: AgentBox

    init() throws {
        server = try ModelServer()
        box = try AgentBox()
    }

    var store: ModelStore { ModelStore(directory: box.paths.models) }

    /// Plants the shipped catalog (`usr/lib/aibox/agent/models.toml`) under the box's root.
    func catalog(_ text: String) throws {
        try makeDirectories(parentDirectory(box.paths.agentModelCatalog))
        try writeFileAtomically(box.paths.agentModelCatalog, Array(text.utf8))
    }

    func entry(_ name: String, sha: String, size: Int, tiers: String = "") -> String {
        """
        [models.\(name)]
        url = "\(server.url(name + ".gguf"))"
        sha256 = "\(sha)"
        size = \(size)
        context = 2048
        \(tiers.isEmpty ? "" : "default-for = [\(tiers)]")

        """
    }

    func models(_ args: [String]) throws -> Output { try box.agent(["models"] + args) }

    func link(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buf, buf.count - 1)
        return n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil
    }

    @Test("pull with no name: the tier's default in place with its hash, default.gguf points to it, list shows it")
    func pullTheTierDefault() throws {
        let bytes = modelBytes(1 << 20)
        let sha = try server.serve("tiny.gguf", bytes)
        let otherSha = try server.serve("other.gguf", modelBytes(1000, seed: 3))
        try catalog(entry("tiny", sha: sha, size: bytes.count, tiers: "\"small\"") + entry("other", sha: otherSha, size: 1000, tiers: "\"medium\""))
        let r = try models(["pull"])
        #expect(r.code == 0, "\(r.stderr)")
        #expect(r.stdout.contains("pulled tiny"), "\(r.stdout)")
        let file = store.file("tiny")
        #expect(try sha256(of: file) == sha)
        #expect(readTextFile(store.hashFile("tiny"))?.hasPrefix(sha + "  tiny.gguf") == true)
        #expect(!fileExists(store.partFile("tiny")))
        #expect(link(store.defaultLink) == "tiny.gguf")
        #expect(try sha256(of: store.defaultLink) == sha, "the link resolves to the file")

        let list = try models(["list", "--json"])
        #expect(list.code == 0, "\(list.stderr)")
        let views = list.json["models"] as? [[String: Any]] ?? []
        let tiny = views.first { $0["name"] as? String == "tiny" }
        #expect(tiny?["pulled"] as? Bool == true)
        #expect(tiny?["verified"] as? Bool == true)
        #expect(tiny?["isDefault"] as? Bool == true)
        #expect(tiny?["sha256"] as? String == sha)
        #expect(tiny?["size"] as? Int == bytes.count)
        let other = views.first { $0["name"] as? String == "other" }
        #expect(other?["pulled"] as? Bool == false, "a catalog entry not pulled yet is listed: \(views)")
        #expect(list.json["defaultTarget"] as? String == "tiny.gguf")

        let text = try models(["list"])
        #expect(text.stdout.split(separator: "\n").contains { $0.hasPrefix("* tiny ") && $0.contains(String(sha.prefix(12))) }, "\(text.stdout)")
        #expect(text.stdout.split(separator: "\n").allSatisfy { $0.count <= 80 })

        // Again: nothing is downloaded, it is there.
        let again = try models(["pull", "tiny", "--json"])
        #expect(again.json["alreadyPresent"] as? Bool == true, "\(again.stdout)")
        #expect(try server.ranges("tiny.gguf").count == 1)
    }

    @Test("a transfer cut mid-way resumes with a Range request from the cut, and the result verifies")
    func cutResumes() throws {
        let bytes = modelBytes(1 << 20)
        let sha = try server.serve("tiny.gguf", bytes)
        try catalog(entry("tiny", sha: sha, size: bytes.count))
        try server.script(#"[{"cut_after": 300000}]"#)
        let r = try models(["pull", "tiny"])
        #expect(r.code == 0, "\(r.stderr)")
        #expect(r.stderr.contains("download cut at byte 300000"), "the retry is told: \(r.stderr)")
        #expect(try server.ranges("tiny.gguf") == [nil, "bytes=300000-"])
        #expect(try sha256(of: store.file("tiny")) == sha)
    }

    @Test("a server that ignores the Range request: the download starts over and still verifies")
    func rangeIgnored() throws {
        let bytes = modelBytes(1 << 20)
        let sha = try server.serve("tiny.gguf", bytes)
        try catalog(entry("tiny", sha: sha, size: bytes.count))
        try server.script(#"[{"cut_after": 200000}, {"ignore_range": true}]"#)
        let r = try models(["pull", "tiny"])
        #expect(r.code == 0, "\(r.stderr)")
        #expect(r.stderr.contains("ignored the Range request"), "\(r.stderr)")
        #expect(try sha256(of: store.file("tiny")) == sha)
    }

    @Test("a pull killed with SIGKILL mid-download: the next pull continues from the part file")
    func killedPullResumes() throws {
        let bytes = modelBytes(4 << 20)
        let sha = try server.serve("tiny.gguf", bytes)
        try catalog(entry("tiny", sha: sha, size: bytes.count))
        try server.script(#"[{"rate": 524288}]"#)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: agentBinary)
        p.arguments = ["models", "pull", "tiny", "--root", box.root]
        var env = ProcessInfo.processInfo.environment
        for (k, v) in box.environment { env[k] = v }
        p.environment = env
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let part = store.partFile("tiny")
        let deadline = Clock.monotonic() + .seconds(20)
        while (store.partialBytes("tiny") ?? 0) < 512 << 10 && Clock.monotonic() < deadline && p.isRunning { usleep(20_000) }
        // One pull at a time: a second one is refused while this one runs.
        let second = try models(["pull", "tiny"])
        #expect(second.code == 1 && second.stderr.contains("another `aibox-agent models pull`"), "\(second.stderr)")
        #expect(p.isRunning, "the first pull was still downloading")
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let kept = try #require(store.partialBytes("tiny"), "a part file is left")
        #expect(kept >= 512 << 10 && kept < UInt64(bytes.count), "killed mid-download: \(kept) bytes")
        #expect(!fileExists(store.file("tiny")))

        let r = try models(["pull", "tiny", "--json"])
        #expect(r.code == 0, "\(r.stdout) \(r.stderr)")
        #expect(r.json["resumedFrom"] as? Int == Int(kept))
        #expect(try server.ranges("tiny.gguf").last == "bytes=\(kept)-")
        #expect(try sha256(of: store.file("tiny")) == sha)
        #expect(!fileExists(part))
    }

    @Test("a body whose SHA-256 is not the catalog's: refused naming both hashes, nothing left")
    func wrongHash() throws {
        let bytes = modelBytes(1 << 18)
        let sha = try server.serve("tiny.gguf", bytes)
        let wrong = try server.serve("wrong.gguf", bytes.map { $0 ^ 0xFF })
        try catalog(entry("tiny", sha: sha, size: bytes.count))
        try server.script(#"[{"wrong_body": true}]"#)
        let r = try models(["pull", "tiny"])
        #expect(r.code == 1)
        #expect(r.stderr.contains(sha) && r.stderr.contains(wrong), "both hashes: \(r.stderr)")
        #expect(!fileExists(store.file("tiny")))
        #expect(!fileExists(store.partFile("tiny")))
        #expect(!fileExists(store.defaultLink))
    }

    @Test("the free-space rule: 5 % of the file system, at most 256 MiB, must stay free")
    func spaceRule() {
        let gib: UInt64 = 1 << 30
        #expect(DiskSpace.margin(total: 100 * gib) == 256 << 20)
        #expect(DiskSpace.margin(total: 1 * gib) == gib / 20)
        #expect(DiskSpace.refusal(needed: 4 * gib, free: 5 * gib, total: 100 * gib, directory: "/m") == nil)
        let r = DiskSpace.refusal(needed: 4 * gib, free: 4 * gib + (100 << 20), total: 100 * gib, directory: "/m")
        #expect(r?.contains("needs 4.00 GiB") == true && r?.contains("4.10 GiB are free") == true && r?.contains("256.0 MiB must stay free") == true, "\(r ?? "nil")")
        #expect(DiskSpace.refusal(needed: 10, free: 5, total: 100, directory: "/m") != nil)
    }

    @Test("a disk that would fill: refused before any byte is requested; a model that fits is pulled")
    func diskFull() throws {
        try #require(geteuid() == 0, "mounting a small tmpfs needs root (CI runs as root)")
        let dir = box.paths.models
        try makeDirectories(dir)
        let mounted = try runProgram("/bin/mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", dir])
        try #require(mounted.code == 0, "mount failed: \(mounted.stderr)")
        defer { _ = try? runProgram("/bin/umount", ["-l", dir]) }
        let big = modelBytes(4 << 20 - 100_000)
        let small = modelBytes(64 << 10, seed: 9)
        try catalog(
            entry("big", sha: try server.serve("big.gguf", big), size: big.count)
                + entry("small", sha: try server.serve("small.gguf", small), size: small.count))
        let r = try models(["pull", "big"])
        #expect(r.code == 1)
        #expect(r.stderr.contains("not enough space in \(dir)") && r.stderr.contains("(\(big.count) bytes)"), "\(r.stderr)")
        #expect(try server.ranges("big.gguf").isEmpty, "nothing was requested")
        #expect(!fileExists(store.partFile("big")))
        #expect(try models(["pull", "small"]).code == 0)
        #expect(fileExists(store.file("small")))
    }

    @Test("remove: the default is refused without --force; others go; forced, default.gguf goes too")
    func remove() throws {
        let a = modelBytes(50_000), b = modelBytes(60_000, seed: 2)
        try catalog(
            entry("tiny", sha: try server.serve("tiny.gguf", a), size: a.count, tiers: "\"small\"")
                + entry("other", sha: try server.serve("other.gguf", b), size: b.count))
        #expect(try models(["pull"]).code == 0)
        #expect(try models(["pull", "other"]).code == 0)
        #expect(link(store.defaultLink) == "tiny.gguf", "pulling another by name leaves the default")

        let refused = try models(["remove", "tiny"])
        #expect(refused.code == 1)
        #expect(refused.stderr.contains("default") && refused.stderr.contains("--force"), "\(refused.stderr)")
        #expect(fileExists(store.file("tiny")))

        #expect(try models(["remove", "other"]).code == 0)
        #expect(!fileExists(store.file("other")) && !fileExists(store.hashFile("other")))

        let forced = try models(["remove", "tiny", "--force", "--json"])
        #expect(forced.code == 0, "\(forced.stderr)")
        #expect(forced.json["isDefault"] as? Bool == true)
        #expect(!fileExists(store.file("tiny")))
        #expect(link(store.defaultLink) == nil)

        let missing = try models(["remove", "tiny"])
        #expect(missing.code == 1 && missing.stderr.contains("no model tiny"), "\(missing.stderr)")

        // With no usable default the model pulled becomes it; --default moves the link.
        #expect(try models(["pull", "other"]).code == 0)
        #expect(link(store.defaultLink) == "other.gguf", "with no usable default, the model pulled becomes it")
        #expect(try models(["pull", "tiny", "--default"]).code == 0)
        #expect(link(store.defaultLink) == "tiny.gguf")
    }

    @Test("a model not in the catalog needs --url and --sha256; with them it is pulled")
    func byURL() throws {
        let bytes = modelBytes(30_000)
        let sha = try server.serve("extra.gguf", bytes)
        let bare = try models(["pull", "extra"])
        #expect(bare.code == 2)
        #expect(bare.stderr.contains("not in the catalog") && bare.stderr.contains("--url URL --sha256 HEX"), "\(bare.stderr)")
        let badSha = try models(["pull", "extra", "--url", server.url("extra.gguf"), "--sha256", "abc"])
        #expect(badSha.code == 2 && badSha.stderr.contains("not a SHA-256"), "\(badSha.stderr)")
        let r = try models(["pull", "extra", "--url", server.url("extra.gguf"), "--sha256", sha.uppercased()])
        #expect(r.code == 0, "\(r.stderr)")
        #expect(try sha256(of: store.file("extra")) == sha)
    }

    @Test("an invalid catalog: exit 78 naming the file, the line and the key")
    func catalogErrors() throws {
        try catalog(
            """
            [models.tiny]
            url = "ftp://example.com/tiny.gguf"
            sha256 = "not-a-hash"
            size = 10
            colour = "blue"
            default-for = ["huge"]
            """)
        let r = try models(["list"])
        #expect(r.code == 78)
        let file = box.paths.agentModelCatalog
        #expect(r.stderr.contains("\(file):2: models.tiny.url"), "\(r.stderr)")
        #expect(r.stderr.contains("\(file):3: models.tiny.sha256"), "\(r.stderr)")
        #expect(r.stderr.contains("\(file):5: models.tiny.colour: unknown key"), "\(r.stderr)")
        #expect(r.stderr.contains("\(file):6: models.tiny.default-for"), "\(r.stderr)")
        #expect(try models(["pull"]).code == 78)
        try writeFileAtomically(file, Array("[models.tiny\n".utf8))
        let broken = try models(["list"])
        #expect(broken.code == 78 && broken.stderr.contains("\(file):1: not valid TOML"), "\(broken.stderr)")
    }

    @Test("the override file adds models and takes over a tier's default")
    func catalogOverride() throws {
        let shipped = ModelCatalog.parse(
            text: entry("a", sha: String(repeating: "a", count: 64), size: 1, tiers: "\"small\", \"medium\""), path: "/usr/models.toml")
        let local = ModelCatalog.parse(text: entry("b", sha: String(repeating: "b", count: 64), size: 2, tiers: "\"small\""), path: "/etc/models.toml")
        let merged = try shipped.get().overridden(by: try local.get())
        #expect(merged.defaultModel(for: .small)?.name == "b")
        #expect(merged.defaultModel(for: .medium)?.name == "a")
        #expect(merged.entries.count == 2)
        let twice = ModelCatalog.parse(
            text: entry("a", sha: String(repeating: "a", count: 64), size: 1, tiers: "\"small\"")
                + entry("b", sha: String(repeating: "b", count: 64), size: 1, tiers: "\"small\""), path: "/m.toml")
        guard case .failure(let e) = twice else {
            Issue.record("two defaults for one tier were accepted")
            return
        }
        #expect(e.description.contains("already the default for small"), "\(e)")
    }

    @Test("the catalog the image ships is valid")
    func shippedCatalog() throws {
        let path = repository + "/image/agent/models.toml"
        let text = try #require(readTextFile(path))
        if case .failure(let e) = ModelCatalog.parse(text: text, path: path) { Issue.record("\(e)") }
    }

    @Test("the progress line fits 80 columns")
    func progressLine() {
        let line = PullProgress.line(name: String(repeating: "m", count: 100), done: 1 << 30, total: 4 << 30, bytesPerSecond: 12_000_000)
        #expect(line.count <= 79)
        #expect(line.contains("25%") && line.contains("1.00 GiB of 4.00 GiB") && line.contains("MiB/s"), "\(line)")
    }
}

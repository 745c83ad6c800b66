import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// `secrets = ["provider.*"]` under the real daemon: a worker gets every secret of its
/// family that exists when it starts, nothing else, and starts with none.
@Suite struct SecretFamilyTests {
    /// Prints what it was handed, one line per start: "creds: dir=DIR names: A B".
    static let printer = """
        exec = ["/bin/sh", "-c", 'printf "creds: dir=%s names:" "${CREDENTIALS_DIRECTORY-unset}"; for f in "$CREDENTIALS_DIRECTORY"/* ; do [ -e "$f" ] && printf " %s" "${f##*/}"; done; echo; exec sleep 600']
        restart-delay = "50ms"
        """

    /// The names the worker printed at each of its starts, in order.
    static func printedStarts(_ box: TestBox, _ worker: String) throws -> [(dir: String, names: [String])] {
        let out = try box.aibox(["logs", worker, "-n", "1000"]).stdout
        return out.split(separator: "\n").compactMap { line in
            guard let r = line.range(of: "creds: dir=") else { return nil }
            let rest = line[r.upperBound...]
            guard let n = rest.range(of: " names:") else { return nil }
            return (String(rest[..<n.lowerBound]), rest[n.upperBound...].split(separator: " ").map(String.init))
        }
    }

    /// Waits for the worker's `count`-th start to have printed, and returns what it printed.
    static func start(_ box: TestBox, _ worker: String, number count: Int) throws -> (dir: String, names: [String]) {
        var starts: [(dir: String, names: [String])] = []
        let ok = try waitUntil {
            starts = try printedStarts(box, worker); return starts.count >= count
        }
        let logs = ok ? "" : try box.aibox(["logs", worker, "-n", "50"]).stdout
        try #require(ok, "start \(count) of \(worker) printed nothing; logs: \(logs)")
        return starts[count - 1]
    }

    static func plant(_ box: TestBox, _ name: String, _ value: String) throws {
        try makeDirectories(box.paths.secrets, mode: 0o700)
        try writeFileAtomically(box.paths.secrets + "/" + name, Array(value.utf8), mode: 0o600)
    }

    @Test func aFamilyHandsOverExactlyItsSecretsAndNoneIsNoFailure() throws {
        let box = try TestBox("[worker.fam]\nsecrets = [\"provider.*\"]\n" + Self.printer)
        #expect(!fileExists(box.paths.secrets), "the test begins with no secrets directory at all")
        try box.startDaemon()
        defer { box.stopDaemon() }

        // None there: it starts, with an empty $CREDENTIALS_DIRECTORY of its own.
        let first = try Self.start(box, "fam", number: 1)
        #expect(first.dir == box.paths.credentials + "/fam", "the directory is set even when the family has no member")
        #expect(first.names.isEmpty, "\(first.names)")
        #expect(try box.worker("fam")?.state == "running")
        #expect(try box.events(worker: "fam").allSatisfy { $0.kind != "worker.spawn-failed" })

        // Its family, others' secrets, look-alikes and things that are no secret file.
        try Self.plant(box, "provider.openai.api-key", "sk-FAMILY-openai-1111")
        try Self.plant(box, "provider.anthropic.api-key", "sk-FAMILY-anthropic-2222")
        try Self.plant(box, "channel.telegram.token", "tg-OTHER-3333")
        try Self.plant(box, "providers.openai.api-key", "sk-LOOKALIKE-4444")
        try Self.plant(box, "provider", "sk-PREFIX-ONLY-5555")
        try Self.plant(box, "outside", "sk-OUTSIDE-6666")
        #expect(symlink(box.paths.secrets + "/outside", box.paths.secrets + "/provider.link") == 0)
        try makeDirectories(box.paths.secrets + "/provider.dir")
        // Picked up at the next start, not before.
        #expect(try Self.printedStarts(box, "fam").count == 1)
        #expect(try box.aibox(["restart", "fam"]).code == 0)
        let second = try Self.start(box, "fam", number: 2)
        #expect(second.names == ["provider.anthropic.api-key", "provider.openai.api-key"], "\(second.names)")
        // What it sees is the secret, read-only, and the directory is its alone.
        let copies = listDirectory(second.dir).sorted()
        #expect(copies == ["provider.anthropic.api-key", "provider.openai.api-key"])
        #expect(readTextFile(second.dir + "/provider.openai.api-key") == "sk-FAMILY-openai-1111")
        #expect(readTextFile(second.dir + "/provider.anthropic.api-key") == "sk-FAMILY-anthropic-2222")
        for name in copies {
            var st = stat()
            #expect(lstat(second.dir + "/" + name, &st) == 0 && st.st_mode & S_IFMT == S_IFREG && st.st_mode & 0o7777 == 0o400)
        }
        var dirStat = stat()
        #expect(stat(second.dir, &dirStat) == 0 && dirStat.st_mode & 0o7777 == 0o500)
        // The link to another secret was not followed: its value is in no copy.
        for name in copies { #expect(readTextFile(second.dir + "/" + name)?.contains("OUTSIDE") == false) }

        // A secret removed: gone at the next start.
        try removeFile(box.paths.secrets + "/provider.anthropic.api-key")
        #expect(try box.aibox(["restart", "fam"]).code == 0)
        let third = try Self.start(box, "fam", number: 3)
        #expect(third.names == ["provider.openai.api-key"], "\(third.names)")
        #expect(listDirectory(third.dir) == ["provider.openai.api-key"])

        // The link and the directory were passed over, and said so by name, never by value.
        let log = box.daemonLog()
        #expect(log.contains("provider.link") && log.contains("symbolic link"), "\(log)")
        #expect(log.contains("provider.dir") && log.contains("a directory"), "\(log)")
        for o in [try box.aibox(["events", "--json", "-n", "1000"]), try box.aibox(["workers", "--json"])] {
            #expect(!o.stdout.contains("sk-"), "a secret's value in the output")
        }
        #expect(!log.contains("sk-"), "a secret's value in the daemon's log")
    }

    /// `box-config = true`: the worker (the assistant, as its own user) gets box.toml as a
    /// copy of its own without the admin's password hash, readable by its user alone; box.toml
    /// itself stays root's 0640 (found on the booted image, where the agent could not read it).
    @Test func boxConfigIsHandedOverWithoutThePasswordHash() throws {
        let box = try TestBox("[worker.cfg]\nuser = \"nobody\"\nbox-config = true\n" + Self.printer)
        let hash = "$y$j9T$1Ei20lH1KONJtITrp0K8y0$zkS90.wQ.ZfhPzUFITJ1o8uOM5pZWRk9rLXnvNdZgK8"
        let config = """
            name = "cfg-box"
            [admin]
            ssh-keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGh owner@example"]
            password-hash = "\(hash)"
            [budget]
            daily-usd = 2.0

            """
        try writeFileAtomically(box.paths.boxConfig, Array(config.utf8), mode: 0o640)
        // The worker's user must reach its credentials, as on a box (mkdtemp made the root 0700).
        #expect(chmod(box.root, 0o755) == 0)
        try box.startDaemon()
        defer { box.stopDaemon() }
        let first = try Self.start(box, "cfg", number: 1)
        #expect(first.names == ["box.toml"], "\(first.names); the daemon said: \(box.daemonLog())")
        let copy = try #require(readTextFile(first.dir + "/box.toml"), "no copy of box.toml")
        #expect(copy.contains("cfg-box") && copy.contains("daily-usd") && copy.contains("owner@example"), "\(copy)")
        #expect(!copy.contains("password-hash") && !copy.contains(hash), "the password hash went into the copy:\n\(copy)")
        var st = stat()
        #expect(stat(first.dir + "/box.toml", &st) == 0 && st.st_mode & 0o7777 == 0o400)
        let nobody = try #require(getpwnam("nobody"))
        #expect(st.st_uid == nobody.pointee.pw_uid, "the copy belongs to the worker's user")
        // The worker's user cannot read box.toml itself.
        let direct = try run("/usr/bin/setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat", box.paths.boxConfig])
        #expect(direct.code != 0, "nobody read box.toml: \(direct.stdout)")
    }

    @Test func aListedNameStillFailsTheStartWhenMissingAndFamiliesAndNamesCombine() throws {
        let box = try TestBox(
            "[worker.both]\nsecrets = [\"provider.*\", \"channel.*\", \"box.token\"]\n" + Self.printer
                + "\n\n[worker.lacking]\nsecrets = [\"provider.*\", \"not.there\"]\n" + Self.printer)
        try Self.plant(box, "provider.openai.api-key", "sk-A")
        try Self.plant(box, "channel.telegram.token", "tg-B")
        try Self.plant(box, "box.token", "box-C")
        try Self.plant(box, "other.token", "other-D")
        try box.startDaemon()
        defer { box.stopDaemon() }
        let both = try Self.start(box, "both", number: 1)
        #expect(both.names == ["box.token", "channel.telegram.token", "provider.openai.api-key"], "\(both.names)")

        let failed = try box.waitForEvent("worker.spawn-failed", worker: "lacking")
        #expect(failed.first?.message.contains("secret \"not.there\"") == true, "the reason names the missing secret: \(failed)")
        #expect(try box.events(worker: "lacking").allSatisfy { $0.kind != "worker.started" })
    }

    @Test func aSecretsDirectoryThatCannotBeListedFailsTheStartRatherThanHandingOverNothing() throws {
        let box = try TestBox("[worker.fam]\nsecrets = [\"provider.*\"]\n" + Self.printer)
        // A file where the directory should be: listing it is ENOTDIR, not "no secrets".
        try makeDirectories(parentDirectory(box.paths.secrets))
        try writeFileAtomically(box.paths.secrets, Array("not a directory".utf8))
        try box.startDaemon()
        defer { box.stopDaemon() }
        let failed = try box.waitForEvent("worker.spawn-failed", worker: "fam")
        #expect(failed.first?.message.contains(box.paths.secrets) == true, "\(failed)")
        #expect(failed.first?.message.contains("Not a directory") == true, "\(failed)")
        #expect(try box.events(worker: "fam").allSatisfy { $0.kind != "worker.started" })
    }
}

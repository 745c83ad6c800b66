import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// Seeds from a USB stick labelled AIBOX (through libumockdev's testbed: the stick's node
/// holds a real file-system image made by provisioning/make-stick; the daemon mounts it
/// through a loop device, as it would mount an image file on a development box). The images
/// are ext4: the kernels of the test machines have no vfat (real boxes do; the mount code is
/// the same, only the type differs).
@Suite struct ProvisioningStickTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static let makeStick = repository + "/provisioning/make-stick"
    static let developmentKey = repository + "/provisioning/keys/development-provisioning.pem"
    static let developmentPublicKey = repository + "/provisioning/keys/development-provisioning.pub"

    /// A stick image holding `seed`, signed with `key` when given.
    static func stickImage(_ box: TestBox, seed: String, name: String, key: String? = nil) throws -> String {
        for tool in ["/usr/sbin/mke2fs", "/usr/sbin/debugfs"] {
            try #require(fileExists(tool), "\(tool) is missing (.ci/run installs e2fsprogs)")
        }
        let seedFile = box.root + "/\(name).toml"
        try writeFileAtomically(seedFile, Array(seed.utf8))
        let image = box.root + "/\(name).img"
        var args = [seedFile, image, "--no-check", "--fs", "ext4"]
        if let key { args += ["--sign", key] }
        let r = try run(makeStick, args)
        try #require(r.code == 0, "make-stick: \(r.stderr)")
        return image
    }

    /// What the daemon wrote back on the stick.
    static func report(_ testbed: Testbed, _ box: TestBox) throws -> String {
        let copy = box.root + "/after.img"
        try testbed.send("stick-copy \(copy)")
        let r = try run("/usr/sbin/debugfs", ["-R", "cat /aibox-report.txt", copy])
        #expect(r.code == 0 && !r.stdout.isEmpty, "no aibox-report.txt on the stick: \(r.stderr)")
        return r.stdout
    }

    static let seed = """
        name = "from-the-stick"
        timezone = "Europe/Paris"

        [admin]
        ssh-keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGh owner@example"]

        [channels.telegram]
        token = "123456789:AAFakeTokenForStickTestsOnly_000000"
        """

    @Test func anUnprovisionedBoxTakesTheSeedAndItsWorkersStart() throws {
        let testbed = try Testbed()
        let box = try TestBox(
            """
            [worker.agent]
            exec = ["@WORKER@", "--no-notify"]
            """, provisioned: false)
        let image = try Self.stickImage(box, seed: Self.seed, name: "seed")
        try box.startDaemon(launcher: testbed.launcher, input: testbed.input, stdout: testbed.output)
        defer { box.stopDaemon() }
        #expect(try box.waitFor("agent", ["waiting"])?.waitingFor == ["setup"])
        try testbed.send("stick \(image) ext4")
        let applied = try box.waitForEvent("provisioning.seed-applied")
        #expect(applied.first?.message.contains("provisioned \"from-the-stick\"") == true, "\(applied)")
        try box.waitFor("agent", ["running"])
        #expect(readTextFile(box.paths.boxConfig)?.contains("name = \"from-the-stick\"") == true)
        #expect(readTextFile(box.paths.secrets + "/channel.telegram.token") == "123456789:AAFakeTokenForStickTestsOnly_000000")
        let report = try Self.report(testbed, box)
        #expect(report.contains("done: provisioned \"from-the-stick\""), "\(report)")
        #expect(!report.contains("AAFakeToken"), "the report never repeats a secret")
        // Unmounted again.
        #expect(!(readTextFile("/proc/self/mountinfo") ?? "").contains(box.paths.volumeMount))
    }

    @Test func aProvisionedBoxRefusesAnUnsignedSeedAndSaysSoOnTheStick() throws {
        let testbed = try Testbed()
        let box = try TestBox()
        let before = readTextFile(box.paths.boxConfig)
        let image = try Self.stickImage(box, seed: Self.seed, name: "unsigned")
        try box.startDaemon(launcher: testbed.launcher, input: testbed.input, stdout: testbed.output)
        defer { box.stopDaemon() }
        try testbed.send("stick \(image) ext4")
        let refused = try box.waitForEvent("provisioning.seed-refused")
        #expect(refused.first?.message.contains("taken only when signed") == true, "\(refused)")
        #expect(readTextFile(box.paths.boxConfig) == before, "box.toml unchanged")
        #expect(!fileExists(box.paths.secrets + "/channel.telegram.token"))
        let report = try Self.report(testbed, box)
        #expect(report.contains("not applied, nothing changed on the box"), "\(report)")
    }

    @Test(arguments: [true, false])
    func aProvisionedBoxTakesASeedSignedWithATrustedKeyOnly(trusted: Bool) throws {
        let testbed = try Testbed()
        let box = try TestBox()
        try makeDirectories(box.paths.provisioningKeys)
        if trusted {
            _ = try run("/bin/cp", [Self.developmentPublicKey, box.paths.provisioningKeys + "/development.pub"])
        } else {
            // Another key is trusted; the stick is signed with the development key.
            let other = box.root + "/other.pem"
            _ = try run("/usr/bin/openssl", ["genpkey", "-algorithm", "ed25519", "-out", other])
            _ = try run("/usr/bin/openssl", ["pkey", "-in", other, "-pubout", "-out", box.paths.provisioningKeys + "/other.pub"])
        }
        let image = try Self.stickImage(box, seed: Self.seed, name: "signed", key: Self.developmentKey)
        try box.startDaemon(launcher: testbed.launcher, input: testbed.input, stdout: testbed.output)
        defer { box.stopDaemon() }
        try testbed.send("stick \(image) ext4")
        if trusted {
            let applied = try box.waitForEvent("provisioning.seed-applied")
            #expect(applied.first?.message.contains("signed, key development.pub") == true, "\(applied)")
            #expect(readTextFile(box.paths.boxConfig)?.contains("from-the-stick") == true)
        } else {
            let refused = try box.waitForEvent("provisioning.seed-refused")
            #expect(refused.first?.message.contains("matches none of the 1 provisioning key") == true, "\(refused)")
            #expect(readTextFile(box.paths.boxConfig) == "name = \"test-box\"\n")
        }
    }

    @Test func aBadSeedOnTheStickIsReportedWithEveryErrorAndChangesNothing() throws {
        let testbed = try Testbed()
        let box = try TestBox(provisioned: false)
        let image = try Self.stickImage(
            box, seed: "name = \"bad name!\"\n[admin]\nssh-keys = [\"not a key\"]\n[updates]\nchannel = \"nightly\"\n", name: "bad")
        try box.startDaemon(launcher: testbed.launcher, input: testbed.input, stdout: testbed.output)
        defer { box.stopDaemon() }
        try testbed.send("stick \(image) ext4")
        let refused = try box.waitForEvent("provisioning.seed-refused")
        #expect(!fileExists(box.paths.boxConfig))
        let report = try Self.report(testbed, box)
        for key in ["name", "admin.ssh-keys", "updates.channel"] {
            #expect(report.contains("aibox-seed.toml:") && report.contains(" \(key)"), "\(key) not named in the report:\n\(report)")
        }
        #expect(refused.first?.message.contains("updates.channel") == true)
    }

    /// The process taking a stick's seed: the daemon's child running `aibox stick-seed`.
    static func seedChild(of box: TestBox) -> Int32? {
        ProcFS.allPIDs().first { pid in
            guard let info = ProcFS.info(pid), info.ppid == box.daemonPID, info.state != "Z" else { return false }
            return (readSmallFile("/proc/\(pid)/cmdline") ?? []).split(separator: 0).dropFirst().first.map { Array($0) }
                == Array("stick-seed".utf8)
        }
    }

    /// A seed takes as long as the stick and the tools take (here every mount is held up 4 s
    /// by a preloaded test double): the daemon's loop goes on meanwhile, answering and
    /// restarting workers, because the seed is taken by a child it reaps.
    @Test func theDaemonAnswersAndRestartsWorkersWhileASeedIsTaken() throws {
        let testbed = try Testbed()
        let box = try TestBox("[worker.agent]\nexec = [\"@WORKER@\", \"--no-notify\"]\n")
        try makeDirectories(box.paths.provisioningKeys)
        _ = try run("/bin/cp", [Self.developmentPublicKey, box.paths.provisioningKeys + "/development.pub"])
        let image = try Self.stickImage(box, seed: Self.seed, name: "slow", key: Self.developmentKey)
        let slowMount = try compiledFixture("slow-mount", shared: true)
        try box.startDaemon(
            environment: ["TESTBED_EXTRA_PRELOAD": slowMount, "AIBOX_TEST_MOUNT_DELAY_MS": "4000"], launcher: testbed.launcher,
            input: testbed.input, stdout: testbed.output)
        defer { box.stopDaemon() }
        let before = try #require(try box.waitFor("agent", ["running"])?.pid)
        try testbed.send("stick \(image) ext4")
        let child = waitUntil(.seconds(5)) { Self.seedChild(of: box) != nil }
        try #require(child, "no aibox stick-seed child of the daemon; it said:\n\(box.daemonLog())")

        let started = Clock.monotonic()
        let workers = try box.aibox(["workers"])
        #expect(workers.code == 0 && Clock.monotonic().since(started) < .seconds(1), "\(Clock.monotonic().since(started))")
        kill(before, SIGKILL)
        let restarted = try waitUntil(.seconds(3)) { try box.worker("agent").map { $0.state == "running" && $0.pid != before } ?? false }
        #expect(restarted, "the worker was not restarted while the seed was taken")
        #expect(Self.seedChild(of: box) != nil, "the seed was taken before the checks ended: they proved nothing")
        #expect(try box.events().allSatisfy { !$0.kind.hasPrefix("provisioning.seed-") })

        let applied = try box.waitForEvent("provisioning.seed-applied", timeout: .seconds(20))
        #expect(applied.first?.message.contains("provisioned \"from-the-stick\"") == true, "\(applied)")
        #expect(readTextFile(box.paths.boxConfig)?.contains("from-the-stick") == true)
    }

    /// A seed that crashes its reader (500,000-deep dotted keys, just under 1 MiB; the TOML
    /// reader's own bound is another matter) crashes at most the child taking it: the
    /// daemon keeps its pid, answers, says the seed was not applied and lets the stick go.
    @Test func aSeedThatCrashesItsReaderLeavesTheDaemonRunning() throws {
        let testbed = try Testbed()
        let box = try TestBox("[worker.agent]\nexec = [\"@WORKER@\", \"--no-notify\"]\n", provisioned: false)
        let deep = "name = \"deep\"\n" + String(repeating: "a.", count: 500_000) + "a = 1\n"
        try #require(deep.utf8.count <= Seed.maxBytes)
        let image = try Self.stickImage(box, seed: deep, name: "deep")
        try box.startDaemon(launcher: testbed.launcher, input: testbed.input, stdout: testbed.output)
        defer { box.stopDaemon() }
        try box.waitFor("agent", ["waiting"])
        let pid = box.daemonPID
        try testbed.send("stick \(image) ext4")
        let refused = try box.waitForEvent("provisioning.seed-refused", timeout: .seconds(60))
        #expect(refused.first?.message.hasPrefix("AIBOX volume /dev/sdb1: ") == true, "\(refused)")
        #expect(box.daemonPID == pid && box.daemon?.isRunning == true, "the daemon did not survive the seed")
        #expect(try box.aibox(["status"]).code == 0)
        #expect(try box.worker("agent")?.state == "waiting")
        #expect(!fileExists(box.paths.boxConfig))
        #expect(!(readTextFile("/proc/self/mountinfo") ?? "").contains(box.paths.volumeMount), "the stick is still mounted")
    }
}

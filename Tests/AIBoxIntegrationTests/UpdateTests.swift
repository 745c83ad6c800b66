import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// A box with two image-file slots and the file boot environment, a signing key, and the
/// boot simulator: at each simulated reboot it applies the boot rule
/// (`BootEnvironment.boot()`, which image/boot/grub-aibox.cfg implements for GRUB) to the
/// file environment, as the boot loader would.
final class UpdateBox {
    let box: TestBox
    let key: String
    let scratch: String

    init(
        tries: Int = 3, workers: String = "", commitAfter: String = "5m", commitDeadline: String = "30m", feedInterval: String = "6h"
    ) throws {
        box = try TestBox(workers)
        scratch = box.root + "/scratch"
        try makeDirectories(scratch)
        try makeDirectories(box.paths.under("usr/lib/aibox/keys"))
        try makeDirectories(box.paths.under("var/lib/aibox/slots"))
        try writeFileAtomically(
            box.paths.under("usr/lib/aibox/system.toml"),
            Array(
                """
                compatible = "aibox-test"
                bootloader = "file"
                boot-env = "/var/lib/aibox/bootenv"
                boot-tries = \(tries)
                commit-after = "\(commitAfter)"
                commit-deadline = "\(commitDeadline)"
                feed-interval = "\(feedInterval)"
                [slot.A]
                device = "/var/lib/aibox/slots/A.img"
                [slot.B]
                device = "/var/lib/aibox/slots/B.img"
                """.utf8))
        key = scratch + "/signing.pem"
        let k = try run(aiboxBinary, ["bundle", "keygen", "--private", key, "--public", box.paths.under("usr/lib/aibox/keys/dev.pub")])
        try #require(k.code == 0, "keygen: \(k.stderr)")
    }

    var control: FileBootControl { FileBootControl(path: box.paths.under("var/lib/aibox/bootenv")) }

    /// A bundle of `bytes` random bytes as the rootfs image.
    func bundle(version: String, bytes: Int = 3 << 20, compatible: String = "aibox-test", rollback: Bool = false) throws -> (
        path: String, image: [UInt8]
    ) {
        let image = [UInt8](try #require(FileHandle(forReadingAtPath: "/dev/urandom")).readData(ofLength: bytes))
        let imagePath = scratch + "/rootfs-\(version).img"
        try writeFileAtomically(imagePath, image)
        let out = scratch + "/\(version)\(rollback ? "-rollback" : "").aibox"
        var args = [
            "bundle", "create", "--compatible", compatible, "--version", version, "--image", "rootfs=\(imagePath)", "--key", key,
            "--output", out,
        ]
        if rollback { args.append("--rollback") }
        let r = try run(aiboxBinary, args)
        try #require(r.code == 0, "bundle create: \(r.stderr)")
        return (out, image)
    }

    func update(_ args: [String]) throws -> CommandResult { try box.aibox(["update"] + args) }

    struct Status: Decodable {
        struct Slot: Decodable {
            var name: String
            var state: String
            var version: String?
        }
        var bootedSlot: String
        var primarySlot: String?
        var slots: [Slot]
        var state: String
        var lastError: String?
        var floor: String?
        var problems: [String]
        func slot(_ n: String) -> Slot? { slots.first { $0.name == n } }
    }

    func status() throws -> Status {
        let r = try update(["status", "--json"])
        try #require(r.code == 0, "update status: \(r.stderr)")
        return try JSONDecoder().decode(Status.self, from: Data(r.stdout.utf8))
    }

    /// When the last simulated boot happened, on the boot clock (CLOCK_BOOTTIME ns): the
    /// trial's deadline counts from it (the daemon is told in AIBOX_SIMULATED_BOOT_NS).
    var bootedAt = Clock.bootNanoseconds()

    /// The boot loader at power-on.
    @discardableResult
    func reboot() throws -> SlotName? {
        var env = try control.load()
        let slot = env.boot()
        try control.store(env)
        bootedAt = Clock.bootNanoseconds()
        return slot
    }

    /// The daemon of this boot: its trial deadline counts from `bootedAt`.
    func startDaemon() throws {
        try box.startDaemon(environment: ["AIBOX_SIMULATED_BOOT_NS": String(bootedAt)])
    }

    func slotBytes(_ slot: String) -> [UInt8]? { readSmallFile(box.paths.under("var/lib/aibox/slots/\(slot).img"), limit: 64 << 20) }

    /// A worker's hold on run/aibox/reboot.inhibit (a shared flock), until `release`.
    final class InhibitHolder {
        let process = Process()
        init(_ path: String) throws {
            try makeDirectories(parentDirectory(path))
            process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            process.arguments = [
                "-c",
                "import fcntl,sys,time; f=open(sys.argv[1],'a'); fcntl.flock(f, fcntl.LOCK_SH); print('held', flush=True); time.sleep(120)",
                path,
            ]
            let out = Pipe()
            process.standardOutput = out
            try process.run()
            #expect(LineReader(out).next { $0 == "held" } != nil, "the inhibit was not taken")
        }
        func release() {
            guard process.isRunning else { return }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        deinit { release() }
    }

    func holdInhibit() throws -> InhibitHolder { try InhibitHolder(box.paths.under("run/aibox/reboot.inhibit")) }

    var floorFile: String { box.paths.under("var/lib/aibox/update-floor") }

    /// Installed, booted and marked good: the floor is `version`.
    func committed(_ version: String) throws -> (path: String, image: [UInt8]) {
        let b = try bundle(version: version, bytes: 1 << 20)
        let r = try update(["install", b.path])
        try #require(r.code == 0, "install: \(r.stderr)")
        try reboot()
        let good = try update(["mark-good"])
        try #require(good.code == 0, "mark-good: \(good.stderr)")
        return b
    }
}

@Suite struct UpdateTests {
    @Test func installRebootCommitThenTheNewSlotStays() throws {
        let u = try UpdateBox()
        let (bundle, image) = try u.bundle(version: "1.1.0")
        let r = try u.update(["install", bundle])
        #expect(r.code == 0, "\(r.stderr)")
        #expect(r.stdout.contains("installed version 1.1.0 in slot B"))
        #expect(r.stdout.contains("progress: 100%"), "plain progress lines off a terminal")
        #expect(u.slotBytes("B") == image ? true : false, "the slot holds the image")
        var s = try u.status()
        #expect(s.bootedSlot == "A" && s.primarySlot == "B" && s.state == "installed")
        #expect(s.slot("B")?.state == "trying" && s.slot("B")?.version == "1.1.0")

        #expect(try u.reboot() == "B")
        s = try u.status()
        #expect(s.bootedSlot == "B" && s.state == "trying")
        let good = try u.update(["mark-good"])
        #expect(good.code == 0, "\(good.stderr)")
        s = try u.status()
        #expect(s.state == "committed" && s.slot("B")?.state == "good")
        for _ in 0..<5 { #expect(try u.reboot() == "B", "a good slot boots without counting") }
        let kinds = try u.box.events().map(\.kind)
        for k in ["update.installing", "update.installed", "update.trying", "update.committed"] { #expect(kinds.contains(k), "\(k)") }
    }

    /// An image built by image/build carries its version in os-release (IMAGE_VERSION): the
    /// booted slot reports it, not aibox's own version, and the factory slot's version stays
    /// known once the box runs the other slot.
    @Test func theBootedSlotReportsTheVersionStampedInItsImage() throws {
        let u = try UpdateBox()
        let osRelease = u.box.paths.under("usr/lib/os-release")
        try makeDirectories(u.box.paths.under("usr/lib"))
        try writeFileAtomically(osRelease, Array("ID=debian\nVERSION_ID=\"12\"\nIMAGE_ID=aibox\nIMAGE_VERSION=\"1.0.0\"\n".utf8))
        var s = try u.status()
        #expect(s.bootedSlot == "A" && s.slot("A")?.version == "1.0.0", "\(s)")
        #expect(s.slot("B")?.version == nil)

        let (bundle, _) = try u.bundle(version: "1.1.0")
        #expect(try u.update(["install", bundle]).code == 0)
        #expect(try u.reboot() == "B")
        // Slot B's root file system is what runs now, with the stamp of its build.
        try writeFileAtomically(osRelease, Array("ID=debian\nIMAGE_VERSION=1.1.0\n".utf8))
        s = try u.status()
        #expect(s.bootedSlot == "B" && s.slot("B")?.version == "1.1.0", "\(s)")
        #expect(s.slot("A")?.version == "1.0.0", "the factory slot's version, recorded while it ran: \(s)")
    }

    @Test func aSlotThatNeverBecomesHealthyIsRolledBackAfterItsTries() throws {
        let u = try UpdateBox(tries: 2)
        let (bundle, _) = try u.bundle(version: "2.0.0")
        #expect(try u.update(["install", bundle]).code == 0)
        // Two boots on trial; nobody marks the slot good (it crashed each time).
        #expect(try u.reboot() == "B")
        #expect(try u.status().state == "trying")
        #expect(try u.reboot() == "B")
        // Out of tries: the boot loader falls back to A.
        #expect(try u.reboot() == "A")
        let s = try u.status()
        #expect(s.bootedSlot == "A" && s.state == "rolled-back", "\(s)")
        #expect(s.slot("B")?.state == "bad" && s.slot("A")?.state == "good")
        #expect(s.lastError?.contains("did not become healthy") == true)
        let rolled = try u.box.events().filter { $0.kind == "update.rolled-back" }
        #expect(rolled.first?.message.contains("slot B (version 2.0.0) failed its trial") == true, "\(rolled)")
    }

    /// The daemon marks the slot good once the critical worker has been ready for commit-after.
    @Test func theDaemonCommitsASlotWhoseCriticalWorkersStayHealthy() throws {
        let u = try UpdateBox(
            workers: """
                [worker.agent]
                exec = ["@WORKER@"]
                notify = true
                critical = true
                """, commitAfter: "1s", commitDeadline: "60s")
        let (bundle, _) = try u.bundle(version: "1.1.0")
        #expect(try u.update(["install", bundle]).code == 0)
        #expect(try u.reboot() == "B")
        try u.startDaemon()
        defer { u.box.stopDaemon() }
        let committed = try u.box.waitForEvent("update.committed")
        #expect(committed.first?.message.contains("slot B marked good: healthy for 1s (agent)") == true, "\(committed)")
        let s = try u.status()
        #expect(s.state == "committed" && s.slot("B")?.state == "good")
        #expect(
            s.floor == "1.1.0" && VersionFloorStore.read(u.floorFile) == .version(SemanticVersion("1.1.0")!),
            "the daemon's commit writes the floor file")
        #expect(try u.box.events().contains { $0.kind == "update.trying" })
        let status = try JSONDecoder().decode(StatusView.self, from: Data(try u.box.aibox(["status", "--json"]).stdout.utf8))
        #expect(status.update == "slot B; update committed", "\(status.update ?? "nil")")
    }

    /// A critical worker crash-looping on the new slot: bad, reboot, the old slot again — rolled back.
    @Test func theDaemonRejectsASlotWhoseCriticalWorkerCrashLoopsAndTheBoxRollsBack() throws {
        let u = try UpdateBox(
            workers: """
                [worker.agent]
                exec = ["@WORKER@", "--exit-after", "20ms", "--exit-code", "1"]
                critical = true
                restart-delay = "10ms"
                crash-loop = { burst = 3, window = "30s", quarantine = "10m" }
                """, commitAfter: "1s", commitDeadline: "60s")
        let (bundle, _) = try u.bundle(version: "1.1.0")
        #expect(try u.update(["install", bundle]).code == 0)
        #expect(try u.reboot() == "B")
        try u.startDaemon()
        let reboot = try u.box.waitForEvent("update.reboot-requested")
        #expect(reboot.first?.message.contains("slot B failed its trial (critical worker agent crash-looped") == true, "\(reboot)")
        u.box.stopDaemon()
        #expect(try u.control.load().state(of: "B") == .bad)
        // The boot loader: B is bad, A boots.
        #expect(try u.reboot() == "A")
        try u.startDaemon()
        defer { u.box.stopDaemon() }
        let rolled = try u.box.waitForEvent("update.rolled-back")
        #expect(rolled.first?.message.contains("slot B (version 1.1.0) failed its trial; slot A runs again") == true)
        let s = try u.status()
        #expect(s.state == "rolled-back" && s.bootedSlot == "A", "\(s)")
        #expect(s.lastError?.contains("crash-looped") == true, "\(s.lastError ?? "nil")")
    }

    @Test func markBadAndRollbackByHand() throws {
        let u = try UpdateBox()
        let (bundle, _) = try u.bundle(version: "1.2.0")
        #expect(try u.update(["install", bundle]).code == 0)
        #expect(try u.reboot() == "B")
        let bad = try u.update(["mark-bad"])
        #expect(bad.code == 0, "\(bad.stderr)")
        #expect(try u.reboot() == "A")
        #expect(try u.status().slot("B")?.state == "bad")
        // Rolling back to a bad slot is refused.
        let refused = try u.update(["rollback"])
        #expect(refused.code == 1 && refused.stderr.contains("nothing safe to roll back to"), "\(refused.stderr)")
    }

    /// Each refused before a byte is written: the running slot untouched, the other never good.
    @Test(arguments: ["wrong-compatible", "older-than-floor", "truncated", "corrupted", "unknown-key", "trailing-bytes"])
    func aBadBundleIsRefusedAndNothingBootable(fault: String) throws {
        let u = try UpdateBox()
        // A committed 1.5.0 first: the floor.
        let (first, firstImage) = try u.bundle(version: "1.5.0")
        #expect(try u.update(["install", first]).code == 0)
        try u.reboot()
        #expect(try u.update(["mark-good"]).code == 0)
        let slotABefore = u.slotBytes("A")
        var path: String
        var expected: String
        switch fault {
        case "wrong-compatible":
            path = try u.bundle(version: "1.6.0", compatible: "other-box").path
            expected = "the bundle is for \"other-box\", this box is \"aibox-test\""
        case "older-than-floor":
            path = try u.bundle(version: "1.4.0").path
            expected = "older than 1.5.0"
        case "unknown-key":
            let stranger = u.scratch + "/stranger.pem"
            _ = try run(aiboxBinary, ["bundle", "keygen", "--private", stranger, "--public", u.scratch + "/stranger.pub"])
            let img = u.scratch + "/x.img"
            try writeFileAtomically(img, Array(repeating: 7, count: 4096))
            path = u.scratch + "/stranger.aibox"
            _ = try run(
                aiboxBinary,
                [
                    "bundle", "create", "--compatible", "aibox-test", "--version", "1.6.0", "--image", "rootfs=\(img)", "--key", stranger,
                    "--output", path,
                ])
            expected = "key"
        default:
            let b = try u.bundle(version: "1.6.0").path
            var bytes = try #require(readSmallFile(b, limit: 64 << 20))
            switch fault {
            case "truncated":
                bytes.removeLast(bytes.count / 3)
                expected = "truncated"
            case "corrupted":
                bytes[bytes.count - 1000] ^= 0xFF
                expected = "does not match its sha256"
            default:
                bytes += Array(repeating: 0, count: 100)
                expected = "extra bytes"
            }
            path = u.scratch + "/bad.aibox"
            try writeFileAtomically(path, bytes)
        }
        let r = try u.update(["install", path])
        #expect(r.code == 1, "\(fault): \(r.stdout)")
        #expect(r.stderr.contains(expected), "\(fault): \(r.stderr)")
        #expect(r.stderr.contains("the running slot is untouched"))
        let after = try u.control.load()
        #expect(after.state(of: "B") == .good && after.primary == "B", "\(fault): the running slot B stays good and primary")
        #expect(u.slotBytes("B") == firstImage ? true : false, "\(fault): the running slot's bytes are untouched")
        if u.slotBytes("A") != slotABefore {
            #expect(after.state(of: "A") == .bad, "\(fault): a slot written in part is never left good")
        } else {
            #expect(["wrong-compatible", "older-than-floor", "unknown-key"].contains(fault), "\(fault): refused only after writing")
        }
        let s = try u.status()
        #expect(s.state == "failed" && s.lastError != nil, "\(fault): \(s)")
        #expect(s.slot("B")?.version == "1.5.0", "\(fault): the running slot's version is still known")
        #expect(try u.reboot() == "B")
    }

    @Test func anOlderVersionSignedAsARollbackIsTaken() throws {
        let u = try UpdateBox()
        let (first, _) = try u.bundle(version: "3.0.0")
        #expect(try u.update(["install", first]).code == 0)
        try u.reboot()
        #expect(try u.update(["mark-good"]).code == 0)
        let (older, image) = try u.bundle(version: "2.9.0", rollback: true)
        let r = try u.update(["install", older])
        #expect(r.code == 0, "\(r.stderr)")
        #expect(u.slotBytes("A") == image ? true : false, "slot A does not hold the image")
    }

    /// Downloads from a real HTTP server on 127.0.0.1, started by the test.
    final class Server {
        let process = Process()
        let port: Int
        let directory: String

        let scheme: String

        init(directory: String, tls: (cert: String, key: String)? = nil) throws {
            self.directory = directory
            scheme = tls == nil ? "http" : "https"
            process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            process.arguments = [fixturesDirectory + "/http-server.py", directory] + (tls.map { [$0.cert, $0.key] } ?? [])
            let out = Pipe()
            process.standardOutput = out
            try process.run()
            let line = LineReader(out).next(timeout: .seconds(10)) { !$0.isEmpty }
            port = try #require(line.flatMap { Int($0) }, "the test server did not start")
        }

        /// A server of `bundle` as u.aibox, from a directory of `u`'s scratch space.
        static func serving(_ bundle: String, for u: UpdateBox, tls: (cert: String, key: String)? = nil) throws -> Server {
            let dir = u.scratch + "/www"
            try makeDirectories(dir)
            _ = try run("/bin/cp", [bundle, dir + "/u.aibox"])
            return try Server(directory: dir, tls: tls)
        }

        func url(_ mode: String, _ name: String) -> String { "\(scheme)://127.0.0.1:\(port)/\(mode)/\(name)" }
        var requests: [String] { (readTextFile(directory + "/requests.log") ?? "").split(separator: "\n").map(String.init) }
        deinit {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    @Test func aURLIsStreamedIntoTheSlotAndACutDownloadResumesWithARangeRequest() throws {
        let u = try UpdateBox()
        let (bundle, image) = try u.bundle(version: "1.1.0", bytes: 2 << 20)
        let server = try Server.serving(bundle, for: u)
        let r = try u.update(["install", server.url("cut-1000000", "u.aibox")])
        #expect(r.code == 0, "\(r.stderr)")
        #expect(u.slotBytes("B") == image ? true : false, "the slot holds the image")
        #expect(server.requests == ["/cut-1000000/u.aibox -", "/cut-1000000/u.aibox bytes=1000000-"], "\(server.requests)")
        let retry = try u.box.events().filter { $0.kind == "update.download-retry" }
        #expect(retry.first?.message.contains("download cut at byte 1000000") == true, "\(retry)")
        #expect(try u.status().state == "installed")
        #expect(!fileExists(u.box.paths.under("var/lib/aibox/u.aibox")), "no local copy of the bundle")
    }

    @Test func aServerThatIgnoresRangeMakesTheInstallStartOverAndOneThatSendsMoreIsRefused() throws {
        let u = try UpdateBox()
        let (bundle, image) = try u.bundle(version: "1.1.0", bytes: 1 << 20)
        let server = try Server.serving(bundle, for: u)
        // "more": the bundle plus 4096 bytes the manifest does not promise.
        let more = try u.update(["install", server.url("more", "u.aibox")])
        #expect(more.code == 1 && more.stderr.contains("extra bytes"), "\(more.stderr)")
        #expect(try u.control.load().state(of: "B") == .bad, "never left good")
        // A missing file: HTTP 404, not retried.
        let missing = try u.update(["install", server.url("ok", "nothing.aibox")])
        #expect(missing.code == 1 && missing.stderr.contains("HTTP 404") && missing.stderr.contains("not retried"), "\(missing.stderr)")
        // Plain: works.
        let ok = try u.update(["install", server.url("ok", "u.aibox")])
        #expect(ok.code == 0, "\(ok.stderr)")
        #expect(u.slotBytes("B") == image ? true : false, "the slot holds the image")
    }

    /// SIGKILL of the installer at every stage of the stream (in the magic, in the manifest,
    /// in a signature, right after the verified header, mid-payload, one byte short, all bytes
    /// but no end): the running slot stays good and primary, the other is never good, the
    /// status says the install was interrupted, and a new install completes.
    @Test func aKilledInstallNeverLeavesTheOtherSlotGoodAndCanBeRunAgain() throws {
        let u = try UpdateBox()
        let (bundle, image) = try u.bundle(version: "1.1.0", bytes: 1 << 20)
        let bytes = try #require(readSmallFile(bundle, limit: 8 << 20))
        let headerEnd = bytes.count - (1 << 20)
        let cuts: [(at: Int, wait: String?)] = [
            (4, nil), (40, nil), (headerEnd - 10, nil), (headerEnd, "bad"), (headerEnd + (1 << 19), "progress: 50%"),
            (bytes.count - 1, "progress: 90%"), (bytes.count, "progress: 100%"),
        ]
        for cut in cuts {
            let fifo = u.scratch + "/feed"
            _ = unlink(fifo)
            #expect(mkfifo(fifo, 0o600) == 0)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: aiboxBinary)
            p.arguments = ["update", "install", fifo, "--root", u.box.root]
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle(forWritingAtPath: "/dev/null")
            try p.run()
            let reader = LineReader(out)
            let writer = try #require(FileHandle(forWritingAtPath: fifo))  // opens once the installer reads
            try writer.write(contentsOf: Data(bytes[0..<cut.at]))
            switch cut.wait {
            case "bad"?:
                #expect(waitUntil(.seconds(10)) { (try? u.control.load().state(of: "B")) == .bad }, "cut \(cut.at): header not taken")
            case let line?:
                // "progress: 93% …": at least the percentage named.
                let least = Int(line.dropFirst("progress: ".count).dropLast()) ?? 0
                let seen = reader.next(timeout: .seconds(10)) { l in
                    l.hasPrefix("progress: ") && (Int(l.dropFirst("progress: ".count).prefix { $0.isNumber }) ?? -1) >= least
                }
                #expect(seen != nil, "cut \(cut.at): no \(line)")
            case nil:
                break
            }
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            try? writer.close()
            let env = try u.control.load()
            #expect(env.state(of: "A") == .good && env.primary == "A", "cut \(cut.at): A stays good and primary")
            #expect(env.state(of: "B") != .good && env.state(of: "B") != .trying, "cut \(cut.at): B never bootable")
            let s = try u.status()
            #expect(s.state == "interrupted", "cut \(cut.at): \(s.state)")
            #expect(s.lastError?.contains("interrupted") == true, "cut \(cut.at): \(s.lastError ?? "nil")")
            #expect(try u.reboot() == "A", "cut \(cut.at): the box boots A")
        }
        let again = try u.update(["install", bundle])
        #expect(again.code == 0, "\(again.stderr)")
        #expect(u.slotBytes("B") == image ? true : false, "the slot holds the image")
    }

    /// The slots on a file system too small for the image (a 2 MiB tmpfs, a 3 MiB image): the
    /// space is reserved before the first write, so the install fails at once, clearly, and
    /// nothing bootable changes.
    @Test func aFullDiskFailsTheInstallBeforeAnyWrite() throws {
        let u = try UpdateBox()
        let slots = u.box.paths.under("var/lib/aibox/slots")
        let mounted = try run("/bin/mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", slots])
        try #require(mounted.code == 0, "mount failed: \(mounted.stderr)")
        defer { _ = try? run("/bin/umount", ["-l", slots]) }
        let (bundle, _) = try u.bundle(version: "1.1.0", bytes: 3 << 20)
        let r = try u.update(["install", bundle])
        #expect(r.code == 1)
        #expect(r.stderr.contains("no room for the image") && r.stderr.contains("3145728 bytes needed"), "\(r.stderr)")
        let env = try u.control.load()
        #expect(env.state(of: "A") == .good && env.primary == "A" && env.state(of: "B") == .bad)
        #expect(try u.status().state == "failed")
    }

    /// The signed feed: found newer, refused unsigned or wrongly signed, deferred outside the
    /// window, installed with --install --now; the reboot waits while a worker holds the inhibit file.
    @Test func theFeedIsCheckedSignedAndInstalledInsideTheWindow() throws {
        let u = try UpdateBox()
        let (bundle, image) = try u.bundle(version: "1.1.0", bytes: 1 << 20)
        let server = try Server.serving(bundle, for: u)
        let dir = server.directory
        let feed = """
            {"format": 1, "compatible": "aibox-test", "channels": {"stable": {"version": "1.1.0", "url": "\(server.url("ok", "u.aibox"))", "size": 1049000}}}
            """
        try writeFileAtomically(dir + "/feed.json", Array(feed.utf8))
        // A window that never contains now: an hour from the current local time.
        var t = time(nil)
        var tm = tm()
        localtime_r(&t, &tm)
        let h = (Int(tm.tm_hour) + 2) % 24
        let window = String(format: "%02d:00-%02d:30", h, h)
        try writeFileAtomically(
            u.box.paths.boxConfig,
            Array(
                """
                name = "test-box"
                [admin]
                ssh-keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGh owner@example"]
                [updates]
                feed-url = "\(server.url("ok", "feed.json"))"
                window = "\(window)"

                """.utf8))
        // Unsigned: refused.
        let unsigned = try u.update(["check"])
        #expect(unsigned.code == 1 && unsigned.stderr.contains("feed.json.sig"), "\(unsigned.stderr)")
        // Signed with a key not in the keyring: refused.
        let stranger = u.scratch + "/stranger.pem"
        _ = try run(aiboxBinary, ["bundle", "keygen", "--private", stranger, "--public", u.scratch + "/stranger.pub"])
        _ = try run(aiboxBinary, ["bundle", "sign", dir + "/feed.json", "--key", stranger])
        let wrong = try u.update(["check"])
        #expect(wrong.code == 1 && wrong.stderr.contains("matches none of the 1 key"), "\(wrong.stderr)")
        // Signed right.
        let signed = try run(aiboxBinary, ["bundle", "sign", dir + "/feed.json", "--key", u.key])
        #expect(signed.code == 0, "\(signed.stderr)")
        let check = try u.update(["check", "--json"])
        #expect(check.code == 0, "\(check.stderr)")
        #expect(check.stdout.contains("\"result\" : \"available\"") && check.stdout.contains("\"version\" : \"1.1.0\""), "\(check.stdout)")
        // Unattended: outside the window, nothing is installed.
        let outside = try u.update(["check", "--install"])
        #expect(outside.code == 0 && outside.stdout.hasPrefix("deferred: 1.1.0 — outside the maintenance window"), "\(outside.stdout)")
        #expect(try u.control.load().state(of: "B") == .bad, "nothing installed")
        // A worker holds the inhibit file: installed with --now, the reboot waits.
        let holder = try u.holdInhibit()
        defer { holder.release() }
        let now = try u.update(["check", "--install", "--now", "--reboot"])
        #expect(now.code == 0, "\(now.stderr)")
        #expect(now.stdout.contains("installed: 1.1.0 — reboot deferred: a worker holds run/aibox/reboot.inhibit"), "\(now.stdout)")
        #expect(u.slotBytes("B") == image ? true : false, "the slot holds the image")
        #expect(try u.box.events().contains { $0.kind == "update.reboot-deferred" })
        // Installed and now running it: up to date.
        try u.reboot()
        #expect(try u.update(["mark-good"]).code == 0)
        #expect(try u.update(["check"]).stdout.hasPrefix("up-to-date"))
    }

    /// Unattended: the daemon looks at the feed on its own, installs inside the window and
    /// asks for the reboot.
    @Test func theDaemonPollsTheFeedAndInstallsInsideTheWindow() throws {
        let u = try UpdateBox(feedInterval: "3s")
        let (bundle, _) = try u.bundle(version: "1.2.0", bytes: 1 << 20)
        let server = try Server.serving(bundle, for: u)
        let dir = server.directory
        try writeFileAtomically(
            dir + "/feed.json",
            Array(
                """
                {"format": 1, "compatible": "aibox-test", "channels": {"stable": {"version": "1.2.0", "url": "\(server.url("ok", "u.aibox"))"}}}
                """.utf8))
        #expect(try run(aiboxBinary, ["bundle", "sign", dir + "/feed.json", "--key", u.key]).code == 0)
        var t = time(nil)
        var tm = tm()
        localtime_r(&t, &tm)
        let from = (Int(tm.tm_hour) + 23) % 24, to = (Int(tm.tm_hour) + 2) % 24
        try writeFileAtomically(
            u.box.paths.boxConfig,
            Array(
                """
                name = "test-box"
                [admin]
                ssh-keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGh owner@example"]
                [updates]
                feed-url = "\(server.url("ok", "feed.json"))"
                window = "\(String(format: "%02d:00-%02d:00", from, to))"

                """.utf8))
        try u.startDaemon()
        defer { u.box.stopDaemon() }
        let installed = try u.box.waitForEvent("update.installed", timeout: .seconds(30))
        #expect(installed.first?.message.contains("version 1.2.0 installed in slot B") == true)
        try u.box.waitForEvent("update.reboot-requested")
        #expect(server.requests.contains("/ok/feed.json.sig -"), "\(server.requests)")
        let s = try u.status()
        #expect(s.slot("B")?.state == "trying" && s.primarySlot == "B")
    }

    /// The daemon killed in the middle of a trial: at its next start the trial starts over
    /// (the stretch of health is counted again), and the slot is committed.
    @Test func aDaemonKilledDuringATrialResumesItAndCommits() throws {
        let u = try UpdateBox(
            workers: """
                [worker.agent]
                exec = ["@WORKER@"]
                notify = true
                critical = true
                """, commitAfter: "3s", commitDeadline: "60s")
        let (bundle, _) = try u.bundle(version: "1.1.0")
        #expect(try u.update(["install", bundle]).code == 0)
        #expect(try u.reboot() == "B")
        try u.startDaemon()
        try u.box.waitFor("agent", ["ready"])
        u.box.stopDaemon(signal: SIGKILL)
        #expect(try u.control.load().state(of: "B") == .trying, "not committed before the stretch")
        #expect(try !u.box.events().contains { $0.kind == "update.committed" })
        try u.startDaemon()
        defer { u.box.stopDaemon() }
        let committed = try u.box.waitForEvent("update.committed")
        #expect(committed.first?.message.contains("slot B marked good") == true)
        #expect(try u.control.load().state(of: "B") == .good)
    }
    /// HTTPS: a server whose certificate the system does not trust is refused at once (not
    /// retried); with its CA as system.toml's update-ca, the bundle streams in.
    @Test func httpsDownloadsTrustTheUpdateCAAndRefuseAnUnknownCertificate() throws {
        let u = try UpdateBox()
        let (bundle, image) = try u.bundle(version: "1.1.0", bytes: 1 << 20)
        let cert = u.scratch + "/cert.pem", key = u.scratch + "/key.pem"
        let made = try run(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1",
            ])
        try #require(made.code == 0, "openssl: \(made.stderr)")
        let server = try Server.serving(bundle, for: u, tls: (cert, key))
        let started = Clock.monotonic()
        let untrusted = try u.update(["install", server.url("ok", "u.aibox")])
        #expect(untrusted.code == 1 && untrusted.stderr.contains("not retried"), "\(untrusted.stderr)")
        #expect(Clock.monotonic().since(started) < .seconds(10), "a certificate error is not retried with backoff")
        #expect(try u.control.load().state(of: "B") == .bad)
        // The CA of the private update server, under the root.
        try makeDirectories(u.box.paths.under("usr/lib/aibox/keys/ca"))
        _ = try run("/bin/cp", [cert, u.box.paths.under("usr/lib/aibox/keys/ca/update-ca.pem")])
        let system = u.box.paths.under("usr/lib/aibox/system.toml")
        let text = try #require(readTextFile(system))
        try writeFileAtomically(
            system,
            Array(
                text.replacingOccurrences(of: "boot-tries", with: "update-ca = \"/usr/lib/aibox/keys/ca/update-ca.pem\"\nboot-tries").utf8))
        let trusted = try u.update(["install", server.url("ok", "u.aibox")])
        #expect(trusted.code == 0, "\(trusted.stderr)")
        #expect(u.slotBytes("B") == image ? true : false, "the slot holds the image")
    }
    /// The last transitions after the stream, as a kill leaves them on disk: the slot made
    /// primary but the journal still saying "installing" (killed between the two writes).
    /// The status (or the daemon) reads the boot environment: installed; after the reboot, on
    /// trial — and the daemon commits it.
    @Test func aKillBetweenSetPrimaryAndTheJournalLosesNothing() throws {
        let u = try UpdateBox(
            workers: """
                [worker.agent]
                exec = ["@WORKER@"]
                notify = true
                critical = true
                """, commitAfter: "1s", commitDeadline: "60s")
        let (bundle, _) = try u.bundle(version: "1.1.0")
        #expect(try u.update(["install", bundle]).code == 0)
        func setJournalState(_ state: String) throws {
            let r = try run(
                "/usr/bin/python3",
                [
                    "-c",
                    "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"UPDATE meta SET value=? WHERE key='update.state'\", (sys.argv[2],)); c.commit()",
                    u.box.paths.database, state,
                ])
            try #require(r.code == 0, "\(r.stderr)")
        }
        try setJournalState("installing")
        #expect(try u.status().state == "installed", "the boot environment shows the install completed")
        // The same, then the reboot before anyone looked: on trial, committed by the daemon.
        try setJournalState("installing")
        #expect(try u.reboot() == "B")
        try u.startDaemon()
        defer { u.box.stopDaemon() }
        try u.box.waitForEvent("update.committed")
        #expect(try u.control.load().state(of: "B") == .good)
    }
    /// A real block device as slot B (a loop device over a 4 MiB file): the image fits and is
    /// read back from the device; a larger one is refused by the device's capacity before a
    /// byte is written.
    @Test func aBlockDeviceSlotTakesAnImageThatFitsAndRefusesOneThatDoesNot() throws {
        let u = try UpdateBox()
        let backing = u.scratch + "/slot-b.bin"
        try writeFileAtomically(backing, [UInt8](repeating: 0, count: 4 << 20))
        let attach = try run("/sbin/losetup", ["--find", "--show", backing])
        try #require(attach.code == 0, "losetup: \(attach.stderr)")
        let device = attach.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { _ = try? run("/sbin/losetup", ["-d", device]) }
        let slotPath = u.box.paths.under("var/lib/aibox/slots/B.img")
        #expect(symlink(device, slotPath) == 0)
        let (big, _) = try u.bundle(version: "1.1.0", bytes: 6 << 20)
        let refused = try u.update(["install", big])
        #expect(refused.code == 1 && refused.stderr.contains("the slot \(slotPath) holds 4194304"), "\(refused.stderr)")
        let (fits, image) = try u.bundle(version: "1.2.0", bytes: 3 << 20)
        let ok = try u.update(["install", fits])
        #expect(ok.code == 0, "\(ok.stderr)")
        let onDevice = try #require(FileHandle(forReadingAtPath: device)).readData(ofLength: 3 << 20)
        #expect([UInt8](onDevice) == image ? true : false, "the device holds the image")
        #expect(try u.status().slot("B")?.state == "trying")
    }
    /// The remaining faults of the issue, through `aibox update install` (hand-built bundles
    /// signed with the box's own key where the fault is in what was signed).
    @Test(arguments: ["tampered-manifest", "wrong-signature", "lying-size", "traversing-name"])
    func aForgedBundleNeverReachesASlot(fault: String) throws {
        let u = try UpdateBox()
        let payload = [UInt8](repeating: 0x5A, count: 64 << 10)
        var manifest = BundleManifest(
            compatible: "aibox-test", version: SemanticVersion("1.1.0")!, created: "by hand",
            images: [
                BundleImage(
                    slotClass: "rootfs", name: "rootfs.img", size: UInt64(payload.count), sha256: BundleWorkspace.sha256(payload), offset: 0
                )
            ])
        let key = try BundleKeys.readPrivateKey(u.key)
        var expected: String
        var bytes: [UInt8]
        switch fault {
        case "lying-size":
            manifest.images[0].size += 100
            bytes = try BundleWorkspace.handBuilt(manifest, payloads: [payload], signer: key)
            expected = "truncated"
        case "traversing-name":
            manifest.images[0].name = "../etc/passwd"
            bytes = try BundleWorkspace.handBuilt(manifest, payloads: [payload], signer: key)
            expected = "image[1].name"
        default:
            bytes = try BundleWorkspace.handBuilt(manifest, payloads: [payload], signer: key)
            let manifestLength = manifest.serialized().count
            if fault == "tampered-manifest" {
                bytes[16 + manifestLength / 2] ^= 0x01  // a byte of the signed manifest
            } else {
                bytes[16 + manifestLength + 2 + 32 + 10] ^= 0x01  // a byte of the signature
            }
            expected = "signature"
        }
        let path = u.scratch + "/\(fault).aibox"
        try writeFileAtomically(path, bytes)
        let r = try u.update(["install", path])
        #expect(r.code == 1, "\(fault): installed")
        #expect(r.stderr.contains(expected), "\(fault): \(r.stderr)")
        let env = try u.control.load()
        #expect(env.state(of: "A") == .good && env.primary == "A", "\(fault): the running slot untouched")
        #expect(env.state(of: "B") == .bad, "\(fault): the other slot never good")
        #expect(fault == "lying-size" || u.slotBytes("B") == nil, "\(fault): refused before a byte reached the slot")
    }
}

/// The boot simulator follows the boot loader exactly: image/boot/grub-aibox.cfg, run by an
/// interpreter of the GRUB script subset it uses (Fixtures/grub-script-sim.py), and
/// `BootEnvironment.boot()` agree on every environment of two slots — order, states, tries.
@Suite struct GrubScriptEquivalenceTests {
    @Test func theGrubScriptAndTheSimulatorBootTheSameSlotAndSaveTheSameEnvironment() throws {
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        var cases: [BootEnvironment] = []
        for order in [["A", "B"], ["B", "A"]] {
            for a in SlotState.allCases {
                for b in SlotState.allCases {
                    for la in 0...3 {
                        for lb in 0...3 {
                            var env = BootEnvironment()
                            env.order = order
                            env.states = ["A": a, "B": b]
                            env.triesLeft = ["A": la, "B": lb]
                            cases.append(env)
                        }
                    }
                }
            }
        }
        let input = cases.map { $0.text }.joined(separator: "---\n")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = [fixturesDirectory + "/grub-script-sim.py", repository + "/image/boot/grub-aibox.cfg"]
        let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
        p.standardInput = stdin
        p.standardOutput = stdout
        p.standardError = stderr
        try p.run()
        try stdin.fileHandleForWriting.write(contentsOf: Data(input.utf8))
        try stdin.fileHandleForWriting.close()
        let out = String(decoding: stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let errors = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        try #require(p.terminationStatus == 0, "the GRUB script could not be run: \(errors)")
        let results = out.trimmingCharacters(in: .whitespacesAndNewlines).components(separatedBy: "\n---\n")
        try #require(results.count == cases.count, "\(results.count) results for \(cases.count) environments")
        var mismatches: [String] = []
        for (env, result) in zip(cases, results) {
            var expected = env
            let slot = expected.boot()
            let grub = Dictionary(
                uniqueKeysWithValues: result.split(separator: "\n").map { line -> (String, String) in
                    let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
                    return (parts[0], parts.count > 1 ? parts[1] : "")
                })
            var saved = expected
            saved.booted = nil
            let want = Dictionary(uniqueKeysWithValues: saved.variables)
            let got = grub.filter { $0.key != "BOOT" }
            if grub["BOOT"] != slot || got != want {
                mismatches.append(
                    "\(env.text.replacingOccurrences(of: "\n", with: " ")) → grub \(result.replacingOccurrences(of: "\n", with: " ")), simulator BOOT=\(slot ?? "-") \(want)"
                )
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) of \(cases.count) differ, e.g.:\n\(mismatches.prefix(5).joined(separator: "\n"))")
    }
}

/// Issue 9: the floor outside the database, the trial's deadline from the boot, one reboot
/// path with its inhibit, what a download says while it retries, schemes named.
extension UpdateTests {
    /// The database corrupt, moved aside and rebuilt by the daemon: the journal is gone, the
    /// floor is not — an older bundle is still refused, a newer one still taken.
    @Test func theFloorOutlivesADatabaseRebuiltAfterCorruption() throws {
        let u = try UpdateBox()
        _ = try u.committed("1.5.0")
        #expect(VersionFloorStore.read(u.floorFile) == .version(SemanticVersion("1.5.0")!), "the commit wrote the floor file")
        try writeFileAtomically(u.box.paths.database, Array(repeating: 0x5A, count: 8192))
        try u.startDaemon()
        try u.box.waitForEvent("daemon.database-rebuilt")
        u.box.stopDaemon()
        let s = try u.status()
        #expect(s.floor == "1.5.0" && s.problems.isEmpty, "\(s)")
        let (older, _) = try u.bundle(version: "1.4.0", bytes: 1 << 20)
        let refused = try u.update(["install", older])
        #expect(refused.code == 1 && refused.stderr.contains("version 1.4.0 is older than 1.5.0"), "\(refused.stderr)")
        #expect(try u.control.load().state(of: "A") == .good, "nothing written: the old slot stays as it was")
        #expect(u.slotBytes("A") == nil, "not a byte reached slot A")
        let (newer, image) = try u.bundle(version: "1.6.0", bytes: 1 << 20)
        let taken = try u.update(["install", newer])
        #expect(taken.code == 0, "\(taken.stderr)")
        #expect(u.slotBytes("A") == image ? true : false)
    }

    /// A floor file that cannot be read: every install refused but a signed rollback, the
    /// status says why, and a person's mark-good writes it again.
    @Test func anUnreadableFloorFileRefusesInstallsUntilACommitWritesItAgain() throws {
        let u = try UpdateBox()
        _ = try u.committed("1.5.0")
        var bytes = try #require(readSmallFile(u.floorFile))
        bytes[14] ^= 0x01  // 1.5.0 → 1.4.0: still a version, not the one written
        try writeFileAtomically(u.floorFile, bytes)
        var s = try u.status()
        #expect(s.floor == nil, "\(s)")
        #expect(
            s.problems.contains { $0.contains("the version floor cannot be read") && $0.contains("checksum mismatch") }, "\(s.problems)")
        let (newer, _) = try u.bundle(version: "1.6.0", bytes: 1 << 20)
        let refused = try u.update(["install", newer])
        #expect(refused.code == 1, "installed past an unknown floor")
        #expect(refused.stderr.contains("the version floor cannot be read (\(u.floorFile): checksum mismatch"), "\(refused.stderr)")
        #expect(try u.slotBytes("A") == nil && u.control.load().state(of: "A") == .good, "slot A untouched")
        let (rollback, image) = try u.bundle(version: "1.0.0", bytes: 1 << 20, rollback: true)
        let signed = try u.update(["install", rollback])
        #expect(signed.code == 0 && u.slotBytes("A") == image, "a signed rollback passes any floor: \(signed.stderr)")
        let good = try u.update(["mark-good"])
        #expect(good.code == 0 && good.stdout.contains("slot B is good already"), "\(good.stdout)\(good.stderr)")
        s = try u.status()
        #expect(s.floor == "1.5.0" && s.problems.isEmpty, "\(s)")
        #expect(VersionFloorStore.read(u.floorFile) == .version(SemanticVersion("1.5.0")!))
    }

    /// The floor cannot be written at the commit: the slot is good all the same, the failure
    /// is said (exit 1, stderr, an event, the status) and the write is made at the next look
    /// once it can be.
    @Test func aFloorThatCannotBeWrittenIsReportedAndWrittenLater() throws {
        let u = try UpdateBox()
        let (bundle, _) = try u.bundle(version: "1.5.0", bytes: 1 << 20)
        #expect(try u.update(["install", bundle]).code == 0)
        try u.reboot()
        // writeFileAtomically's temporary file cannot be created where a directory is.
        try makeDirectories(u.floorFile + AtomicFile.suffix)
        let good = try u.update(["mark-good"])
        #expect(good.code == 1, "a floor not written is not success")
        #expect(good.stdout.contains("slot B marked good."), "\(good.stdout)")
        #expect(good.stderr.contains("the version floor 1.5.0 could not be written to \(u.floorFile)"), "\(good.stderr)")
        #expect(try u.control.load().state(of: "B") == .good, "the healthy slot is kept")
        #expect(try u.box.events().contains { $0.kind == "update.floor-failed" })
        var s = try u.status()
        #expect(s.state == "committed")
        #expect(s.problems.contains { $0.contains("could not be written") }, "\(s.problems)")
        #expect(s.floor == "1.5.0", "the database's copy holds meanwhile")
        _ = rmdir(u.floorFile + AtomicFile.suffix)
        s = try u.status()
        #expect(s.problems.isEmpty, "\(s.problems)")
        #expect(VersionFloorStore.read(u.floorFile) == .version(SemanticVersion("1.5.0")!), "written at the next look")
    }

    /// The daemon killed again and again during a trial, none of its runs as long as the
    /// deadline: the slot is still rejected once the deadline since the boot is past.
    /// (Counted from each daemon's start, as before, it stayed on trial forever.)
    @Test func aDaemonKilledAgainAndAgainDuringATrialStillRejectsAtTheDeadlineSinceTheBoot() throws {
        let u = try UpdateBox(
            workers: """
                [worker.agent]
                exec = ["@WORKER@", "--ready-after", "-1"]
                notify = true
                critical = true
                """, commitAfter: "4s", commitDeadline: "8s")
        let (bundle, _) = try u.bundle(version: "1.1.0", bytes: 1 << 20)
        #expect(try u.update(["install", bundle]).code == 0)
        #expect(try u.reboot() == "B")
        let deadline = Duration.seconds(8)
        var runs: [Duration] = []
        var rejected: [EventRecord] = []
        var lastStart = Clock.monotonic()
        while rejected.isEmpty && runs.count < 20 {
            lastStart = Clock.monotonic()
            try u.startDaemon()
            waitUntil(.seconds(1)) {
                rejected = (try? u.box.events().filter { $0.kind == "update.reboot-requested" }) ?? []
                return !rejected.isEmpty
            }
            if rejected.isEmpty {
                u.box.stopDaemon(signal: SIGKILL)
                runs.append(Clock.monotonic().since(lastStart))
            }
        }
        let rejectedAfter = Clock.monotonic().since(lastStart)
        u.box.stopDaemon()
        try #require(!rejected.isEmpty, "never rejected over \(runs.count) daemon runs")
        #expect(runs.count >= 2, "killed \(runs.count) times before the reject")
        #expect(
            runs.allSatisfy { $0 < deadline } && rejectedAfter < deadline, "a run reached the deadline by itself: \(runs), \(rejectedAfter)"
        )
        let sinceBoot = Duration.nanoseconds(Int64(Clock.bootNanoseconds() - u.bootedAt))
        #expect(sinceBoot >= deadline)
        #expect(
            rejected.first?.message.contains("slot B failed its trial (not healthy within the commit deadline: agent not ready)") == true,
            "\(rejected)")
        #expect(try u.control.load().state(of: "B") == .bad)
        #expect(try u.reboot() == "A")
        let s = try u.status()
        #expect(s.state == "rolled-back" && s.lastError?.contains("not healthy within the commit deadline") == true, "\(s)")
    }

    /// `update install --reboot` honours the inhibit as `update check --reboot` does.
    @Test func installRebootWaitsWhileAWorkerHoldsTheInhibit() throws {
        let u = try UpdateBox()
        let (bundle, _) = try u.bundle(version: "1.1.0", bytes: 1 << 20)
        let holder = try u.holdInhibit()
        let held = try u.update(["install", bundle, "--reboot"])
        #expect(held.code == 0, "\(held.stderr)")
        #expect(held.stdout.contains("reboot deferred: a worker holds run/aibox/reboot.inhibit"), "\(held.stdout)")
        var kinds = try u.box.events().map(\.kind)
        #expect(kinds.contains("update.reboot-deferred") && !kinds.contains("update.reboot-requested"), "\(kinds)")
        holder.release()
        let free = try u.update(["install", bundle, "--reboot"])
        #expect(free.code == 0 && free.stdout.contains("reboot requested (under --root nothing reboots)"), "\(free.stdout)\(free.stderr)")
        kinds = try u.box.events().map(\.kind)
        let requested = try u.box.events().filter { $0.kind == "update.reboot-requested" }
        #expect(requested.first?.message == "rebooting into slot B (version 1.1.0)", "\(requested)")
    }

    /// The daemon's reject goes through the same Rebooter: held while a worker holds the
    /// inhibit, done once it lets go.
    @Test func theDaemonsRebootAfterAFailedTrialWaitsForTheInhibit() throws {
        let u = try UpdateBox(
            workers: """
                [worker.agent]
                exec = ["@WORKER@", "--exit-after", "20ms", "--exit-code", "1"]
                critical = true
                restart-delay = "10ms"
                crash-loop = { burst = 3, window = "30s", quarantine = "10m" }
                """, commitAfter: "1s", commitDeadline: "60s")
        let (bundle, _) = try u.bundle(version: "1.1.0", bytes: 1 << 20)
        #expect(try u.update(["install", bundle]).code == 0)
        #expect(try u.reboot() == "B")
        let holder = try u.holdInhibit()
        try u.startDaemon()
        defer { u.box.stopDaemon() }
        let deferred = try u.box.waitForEvent("update.reboot-deferred")
        #expect(deferred.first?.message.contains("slot B failed its trial") == true, "\(deferred)")
        #expect(try !u.box.events().contains { $0.kind == "update.reboot-requested" })
        holder.release()
        let requested = try u.box.waitForEvent("update.reboot-requested", timeout: .seconds(20))
        #expect(requested.first?.message.contains("slot B failed its trial (critical worker agent crash-looped") == true, "\(requested)")
    }

    /// A slot marked bad but still running when the daemon starts (it was killed before its
    /// reboot, or a person marked it by hand): the reboot into the good slot is owed and made.
    @Test func aDaemonStartingOnASlotMarkedBadMakesTheRebootItOwes() throws {
        let u = try UpdateBox()
        let (bundle, _) = try u.bundle(version: "1.1.0", bytes: 1 << 20)
        #expect(try u.update(["install", bundle]).code == 0)
        #expect(try u.reboot() == "B")
        #expect(try u.update(["mark-bad"]).code == 0)
        #expect(try !u.box.events().contains { $0.kind == "update.reboot-requested" }, "mark-bad by hand reboots nothing itself")
        try u.startDaemon()
        defer { u.box.stopDaemon() }
        let requested = try u.box.waitForEvent("update.reboot-requested")
        let want = "slot B (version 1.1.0) is marked bad (slot B marked bad: marked bad by hand): rebooting into slot A"
        #expect(requested.first?.message == want, "\(requested)")
    }

    /// A server that cuts the connection twice: two retry lines, each with its reason, on
    /// stderr off a terminal; on a terminal (a pty, by script(1)) above the progress bar.
    @Test func eachRetryOfADownloadIsShownWithItsReason() throws {
        let u = try UpdateBox()
        let (bundle, image) = try u.bundle(version: "1.1.0", bytes: 1 << 20)
        let server = try Server.serving(bundle, for: u)
        let r = try u.update(["install", server.url("cuts-2-400000", "u.aibox")])
        #expect(r.code == 0, "\(r.stderr)")
        #expect(u.slotBytes("B") == image ? true : false, "the slot holds the image")
        let lines = r.stderr.split(separator: "\n").map(String.init).filter { $0.hasPrefix("aibox: download cut") }
        #expect(lines.count == 2, "\(r.stderr)")
        for (i, at) in [400_000, 800_000].enumerated() where i < lines.count {
            #expect(lines[i].hasPrefix("aibox: download cut at byte \(at) (transfer closed with "), "\(lines[i])")
            #expect(lines[i].contains("remaining to read); retry \(i + 1) of 6 in "), "\(lines[i])")
        }
        #expect(
            server.requests == [
                "/cuts-2-400000/u.aibox -", "/cuts-2-400000/u.aibox bytes=400000-", "/cuts-2-400000/u.aibox bytes=800000-",
            ],
            "\(server.requests)")
        let command = "\(aiboxBinary) update install \(server.url("cuts-1-300000", "u.aibox")) --root \(u.box.root)"
        let t = try run("/usr/bin/script", ["-q", "-e", "-c", command, "/dev/null"])
        #expect(t.code == 0, "\(t.stdout)")
        #expect(t.stdout.contains("] 2"), "a progress bar on the terminal: \(t.stdout.debugDescription)")
        #expect(t.stdout.contains("\u{1B}[Kdownload cut at byte 300000 (transfer closed with "), "\(t.stdout.debugDescription)")
        #expect(t.stdout.contains("retry 1 of 6 in "), "\(t.stdout.debugDescription)")
        #expect(t.stdout.contains("installed version 1.1.0 in slot B"))
    }

    /// `ftp://…` is not a file called "ftp:": the scheme is named, nothing is touched.
    @Test(arguments: [
        ("ftp://127.0.0.1/u.aibox", "unsupported URL scheme ftp; use http or https or a file path"),
        ("gopher://127.0.0.1/u.aibox", "unsupported URL scheme gopher; use http or https or a file path"),
        ("file:///tmp/u.aibox", "unsupported URL scheme file; use http or https, or give the bundle's path (/tmp/u.aibox)"),
    ])
    func anUnsupportedSchemeIsNamedAndNothingIsTouched(url: String, expected: String) throws {
        let u = try UpdateBox()
        let r = try u.update(["install", url])
        #expect(r.code == 1)
        #expect(r.stderr == "aibox: \(expected)\n", "\(r.stderr)")
        let env = try u.control.load()
        #expect(env.state(of: "A") == .good && env.state(of: "B") == .bad && env.primary == "A")
        #expect(try u.status().state == "idle")
    }

    /// Writing the good slot while the running one is on trial would leave nothing to fall
    /// back on: refused until the trial is decided.
    @Test func anInstallDuringATrialIsRefusedUntilTheSlotIsDecided() throws {
        let u = try UpdateBox()
        let (first, _) = try u.bundle(version: "1.1.0", bytes: 1 << 20)
        #expect(try u.update(["install", first]).code == 0)
        #expect(try u.reboot() == "B")
        let (second, image) = try u.bundle(version: "1.2.0", bytes: 1 << 20)
        let refused = try u.update(["install", second])
        #expect(refused.code == 1)
        #expect(
            refused.stderr.contains(
                "slot B runs on trial and slot A is the good one to fall back on: commit slot B (aibox update mark-good)"),
            "\(refused.stderr)")
        let env = try u.control.load()
        #expect(env.state(of: "A") == .good && env.state(of: "B") == .trying && u.slotBytes("A") == nil)
        #expect(try u.status().state == "trying")
        #expect(try u.update(["mark-good"]).code == 0)
        let taken = try u.update(["install", second])
        #expect(taken.code == 0, "\(taken.stderr)")
        #expect(u.slotBytes("A") == image ? true : false)
    }
}

import Foundation
import Testing

// Checks the files of image/ with this machine's systemd tools (Debian package `systemd`:
// systemd-analyze, systemd-tmpfiles, systemd-sysusers). A missing tool is a failure, not a skip.

/// The repository root: this file is Tests/AIBoxImageTests/ImageUnitsTests.swift.
private let repository = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
private let unitFile = repository.appendingPathComponent("image/systemd/aibox.service")
private let tmpfilesFile = repository.appendingPathComponent("image/tmpfiles.d/aibox.conf")
private let sysusersFile = repository.appendingPathComponent("image/sysusers.d/aibox.conf")

/// Workers' default `stop-timeout` (WorkerDefinition.stopTimeout, docs/WORKERS.md), in seconds.
private let defaultWorkerStopTimeout = 10.0

@Suite struct ImageUnitsTests {
    // MARK: (a) systemd-analyze verify

    @Test func unitVerifiesCleanly() throws {
        // `verify` checks that ExecStart=/ExecReload= binaries exist and fails on
        // "/usr/bin/aibox is not executable" on a dev machine. With --root (systemd 252 here)
        // it looks for the unit *and* for those binaries under that root, so the shipped file
        // is verified byte for byte: a temp root holds it in usr/lib/systemd/system, executable
        // placeholders at exactly /usr/bin/aibox and /bin/kill, and empty stubs of the targets
        // its start transaction pulls in (sysinit.target; the others keep it independent of
        // the host's units). --man=no: man pages are not in that root.
        let root = try TempDirectory()
        let shipped = try String(contentsOf: unitFile, encoding: .utf8)
        try root.write("usr/lib/systemd/system/aibox.service", shipped)
        for target in ["sysinit.target", "basic.target", "shutdown.target", "local-fs.target", "multi-user.target"] {
            try root.write("usr/lib/systemd/system/\(target)", "[Unit]\nDescription=stub for the test\n")
        }
        for binary in ["usr/bin/aibox", "bin/kill"] {
            try root.write(binary, "#!/bin/sh\nexit 0\n", mode: 0o755)
        }

        let run = try Tool.run("systemd-analyze", ["--root=\(root.path)", "--man=no", "verify", "aibox.service"])
        #expect(run.status == 0, "systemd-analyze verify failed:\n\(run.stderr)")
        let unexpected = try verifyComplaints(run.stderr)
        #expect(unexpected.isEmpty, "systemd-analyze verify complained:\n\(unexpected.joined(separator: "\n"))")

        // The check is not vacuous: the same setup with a misspelt key is caught.
        try root.write("usr/lib/systemd/system/aibox.service", shipped.replacingOccurrences(of: "KillMode=", with: "KilMode="))
        let broken = try Tool.run("systemd-analyze", ["--root=\(root.path)", "--man=no", "verify", "aibox.service"])
        #expect(try !verifyComplaints(broken.stderr).isEmpty, "a misspelt key went unnoticed:\n\(broken.stderr)")
    }

    /// Lines of `systemd-analyze verify`'s stderr that are complaints. RestartSteps= and
    /// RestartMaxDelaySec= are systemd >= 254 keys: older versions (Debian 12 has 252) warn
    /// "Unknown key" for exactly those two and otherwise ignore them; that alone is tolerated.
    private func verifyComplaints(_ stderr: String) throws -> [String] {
        let version = try #require(try Tool.systemdVersion(), "cannot tell the systemd version")
        let newerKeys = version < 254 ? ["RestartSteps", "RestartMaxDelaySec"] : []
        return stderr.split(separator: "\n").map(String.init).filter { line in
            if line.trimmingCharacters(in: .whitespaces).isEmpty { return false }
            return !newerKeys.contains { line.contains("Unknown key '\($0)' in section [Service], ignoring.") }
        }
    }

    // MARK: (b) the keys the supervisor relies on

    @Test func unitHasTheRequiredSettings() throws {
        let unit = try UnitFile(contentsOf: unitFile)

        #expect(unit.value("Unit", "StartLimitIntervalSec").flatMap(seconds) == 0)
        #expect(unit.values("Unit", "After").flatMap { $0.split(separator: " ") }.contains("local-fs.target"))

        #expect(unit.value("Service", "Type") == "notify")
        #expect(unit.value("Service", "NotifyAccess") == "main")
        #expect(unit.value("Service", "ExecStart") == "/usr/bin/aibox daemon")
        #expect(unit.value("Service", "ExecReload") == "/bin/kill -HUP $MAINPID")
        #expect(unit.value("Service", "WatchdogSec").flatMap(seconds) == 30)

        #expect(unit.value("Service", "Restart") == "always")
        let restartSec = try #require(unit.value("Service", "RestartSec").flatMap(seconds))
        let maxDelay = try #require(unit.value("Service", "RestartMaxDelaySec").flatMap(seconds))
        let steps = try #require(unit.value("Service", "RestartSteps").flatMap { Int($0) })
        #expect(restartSec == 0.1)
        #expect(maxDelay == 60)
        #expect(steps == 10)

        #expect(unit.value("Service", "KillMode") == "mixed")
        #expect(unit.value("Service", "Delegate") == "yes")
        let stopTimeout = try #require(unit.value("Service", "TimeoutStopSec").flatMap(seconds))
        #expect(stopTimeout > defaultWorkerStopTimeout, "TimeoutStopSec must outlast the workers' stop-timeout")
        #expect(unit.value("Service", "OOMScoreAdjust") == "-900")
        // The control socket's cap (128 connections) is an eighth of this soft limit.
        #expect(unit.value("Service", "LimitNOFILE") == "1024:524288")
        #expect(unit.value("Service", "OOMPolicy") == "continue")

        #expect(unit.value("Service", "RuntimeDirectory") == "aibox")
        #expect(unit.value("Service", "StateDirectory") == "aibox")
        #expect(unit.value("Install", "WantedBy") == "multi-user.target")

        // The unit's directories and tmpfiles.d must agree: on a mismatch of the top directory's
        // owner systemd chowns the whole tree to the service's user (root) on every start.
        let tmpfiles = try TmpfilesConfig(contentsOf: tmpfilesFile)
        #expect(unit.value("Service", "RuntimeDirectoryMode") == tmpfiles.entry("/run/aibox")?.mode)
        #expect(unit.value("Service", "StateDirectoryMode") == tmpfiles.entry("/var/lib/aibox")?.mode)
        for dir in ["/run/aibox", "/var/lib/aibox"] {
            #expect(tmpfiles.entry(dir)?.user == "root" && tmpfiles.entry(dir)?.group == "root", "\(dir) must be root:root")
        }
    }

    @Test func hardwareWatchdogIsPettedBySystemd() throws {
        let url = repository.appendingPathComponent("image/systemd/system.conf.d/10-aibox-watchdog.conf")
        let conf = try UnitFile(contentsOf: url)
        let runtime = try #require(conf.value("Manager", "RuntimeWatchdogSec").flatMap(seconds))
        #expect(runtime > 0 && runtime <= 60, "the board must be reset within a minute of a hang")
        #expect(conf.value("Manager", "RebootWatchdogSec").flatMap(seconds).map { $0 > 0 } == true)
    }

    // MARK: (c) systemd-tmpfiles

    @Test func tmpfilesCreatesTheDirectories() throws {
        // systemd 252's systemd-tmpfiles has no --dry-run, and a dry run could not show the
        // modes anyway: the directories are really created under a temp root. As there, the
        // users come first (tmpfiles resolves `aibox` from ROOT/etc/group). Configuration
        // paths must be absolute: a relative one is taken relative to --root.
        try #require(geteuid() == 0, "systemd-tmpfiles must chown what it creates: run this test as root")
        let root = try TempDirectory()
        try root.makeDirectory("etc")
        let users = try Tool.run("systemd-sysusers", ["--root=\(root.path)", sysusersFile.path])
        try #require(users.status == 0, "systemd-sysusers failed:\n\(users.stderr)")

        let run = try Tool.run("systemd-tmpfiles", ["--root=\(root.path)", "--create", tmpfilesFile.path])
        #expect(run.status == 0, "systemd-tmpfiles failed:\n\(run.stderr)")
        #expect(run.stderr.isEmpty, "systemd-tmpfiles complained:\n\(run.stderr)")

        let aiboxGID = try #require(try Accounts(root: root.path).groups["aibox"]?.gid)
        let agent = try #require(try Accounts(root: root.path).users["aibox-agent"])
        let expected: [(path: String, mode: mode_t, uid: uid_t, gid: gid_t)] = [
            ("run/aibox", 0o755, 0, 0),
            ("var/lib/aibox", 0o755, 0, 0),
            ("var/lib/aibox/secrets", 0o700, 0, 0),
            ("var/lib/aibox/setup", 0o700, 0, 0),
            // setgid: log files the daemon creates 0640 belong to `aibox`.
            ("var/lib/aibox/logs", 0o2750, 0, aiboxGID),
            ("var/lib/aibox/work", 0o755, 0, 0),
            // Model weights: the agent's user pulls them, everyone (llm-local's user) reads them.
            ("var/lib/aibox/models", 0o755, agent.uid, agent.gid),
            ("etc/aibox", 0o755, 0, 0),
            ("etc/aibox/workers.d", 0o755, 0, 0),
        ]
        for e in expected {
            var st = stat()
            guard stat(root.path + "/" + e.path, &st) == 0 else {
                Issue.record("\(e.path) was not created")
                continue
            }
            #expect(st.st_mode & S_IFMT == S_IFDIR, "\(e.path) is not a directory")
            #expect(
                st.st_mode & 0o7777 == e.mode, "\(e.path): mode \(String(st.st_mode & 0o7777, radix: 8)), not \(String(e.mode, radix: 8))")
            #expect(st.st_uid == e.uid && st.st_gid == e.gid, "\(e.path): owner \(st.st_uid):\(st.st_gid), not \(e.uid):\(e.gid)")
        }
    }

    @Test func theDefaultModelLinkPointsToTheImagesModel() throws {
        let tmpfiles = try String(contentsOf: tmpfilesFile, encoding: .utf8)
        let link = tmpfiles.split(separator: "\n").first { $0.hasPrefix("L ") }?.split(separator: " ", omittingEmptySubsequences: true)
        #expect(link?[1] == "/var/lib/aibox/models/default.gguf" && link?.last == "/usr/lib/aibox/models/default.gguf", "\(link ?? [])")
    }

    // MARK: (d) systemd-sysusers

    @Test func sysusersCreatesGroupAndAgentUser() throws {
        let root = try TempDirectory()
        try root.makeDirectory("etc")  // systemd-sysusers takes ROOT/etc/.pwd.lock first
        let run = try Tool.run("systemd-sysusers", ["--root=\(root.path)", sysusersFile.path])
        #expect(run.status == 0, "systemd-sysusers failed:\n\(run.stderr)")

        let accounts = try Accounts(root: root.path)
        let group = try #require(accounts.groups["aibox"], "no group aibox in etc/group")
        #expect(group.gid > 0 && group.gid < 1000, "aibox must be a system group, has gid \(group.gid)")
        #expect(group.members.isEmpty)

        let agent = try #require(accounts.users["aibox-agent"], "no user aibox-agent in etc/passwd")
        #expect(agent.uid > 0 && agent.uid < 1000, "aibox-agent must be a system user, has uid \(agent.uid)")
        #expect(agent.home == "/var/lib/aibox/work")
        #expect(agent.shell.hasSuffix("/nologin"), "aibox-agent must not log in, has shell \(agent.shell)")
        // Unprivileged: its own primary group, and a member of no other group.
        #expect(agent.gid != 0 && agent.gid != group.gid)
        #expect(accounts.groups.values.filter { $0.members.contains("aibox-agent") }.isEmpty)

        // The local model's server: a system user of its own, in no group of the agent's.
        let llm = try #require(accounts.users["aibox-llm"], "no user aibox-llm in etc/passwd")
        #expect(llm.uid > 0 && llm.uid < 1000 && llm.uid != agent.uid, "aibox-llm must be a system user of its own, has uid \(llm.uid)")
        #expect(llm.shell.hasSuffix("/nologin"), "aibox-llm must not log in, has shell \(llm.shell)")
        #expect(llm.gid != 0 && llm.gid != group.gid && llm.gid != agent.gid)
        #expect(accounts.groups.values.filter { $0.members.contains("aibox-llm") }.isEmpty)

        let admin = try #require(accounts.users["admin"], "no user admin (the login setup configures)")
        #expect(admin.home == "/home/admin")
        #expect(!admin.shell.hasSuffix("/nologin"), "admin must be able to log in")
    }

    // MARK: (e) first-boot setup on the consoles

    @Test func setupUnitVerifiesAndHoldsTheConsoleUntilTheBoxIsSetUp() throws {
        let template = repository.appendingPathComponent("image/systemd/aibox-setup@.service")
        let root = try TempDirectory()
        let shipped = try String(contentsOf: template, encoding: .utf8)
        try root.write("usr/lib/systemd/system/aibox-setup@.service", shipped)
        try root.write("usr/lib/systemd/system/aibox.service", try String(contentsOf: unitFile, encoding: .utf8))
        for stub in ["sysinit.target", "basic.target", "shutdown.target", "local-fs.target", "multi-user.target"] {
            try root.write("usr/lib/systemd/system/\(stub)", "[Unit]\nDescription=stub for the test\n")
        }
        for stub in ["systemd-user-sessions.service", "serial-getty@.service", "getty@.service"] {
            try root.write("usr/lib/systemd/system/\(stub)", "[Unit]\nDescription=stub for the test\n[Service]\nExecStart=/bin/sh\n")
        }
        for binary in ["usr/bin/aibox", "bin/kill", "bin/sh", "bin/systemctl"] {
            try root.write(binary, "#!/bin/sh\nexit 0\n", mode: 0o755)
        }
        let run = try Tool.run("systemd-analyze", ["--root=\(root.path)", "--man=no", "verify", "aibox-setup@ttyS0.service"])
        #expect(run.status == 0, "systemd-analyze verify failed:\n\(run.stderr)")
        let complaints = try verifyComplaints(run.stderr).filter { !$0.contains("aibox.service") }
        #expect(complaints.isEmpty, "systemd-analyze verify complained:\n\(complaints.joined(separator: "\n"))")

        let unit = try UnitFile(contentsOf: template)
        // Only while unprovisioned: the same path the daemon and `aibox status` look at.
        #expect(unit.values("Unit", "ConditionPathExists").contains("!/etc/aibox/box.toml"))
        #expect(unit.value("Service", "ExecStart") == "/usr/bin/aibox setup")
        #expect(unit.value("Service", "StandardInput") == "tty")
        #expect(unit.value("Service", "TTYPath") == "/dev/%I")
        #expect(unit.value("Service", "Restart") == "always", "Ctrl-C or a dropped line asks again")
        // The conditions keep setup and the getty apart: a Conflicts= in the same boot
        // transaction drops the getty after setup (seen on the booted image, image/test).
        #expect(unit.values("Unit", "Conflicts").isEmpty)
        #expect(unit.values("Unit", "BindsTo").isEmpty, "dev-tty1.device never appears")
        #expect(unit.values("Unit", "ConditionPathExists").contains("/dev/%I"))
        #expect(unit.value("Service", "ExecStopPost")?.contains("serial-getty@%i.service") == true)

        for dropIn in ["serial-getty@.service.d", "getty@.service.d"] {
            let conf = try UnitFile(contentsOf: repository.appendingPathComponent("image/systemd/\(dropIn)/10-aibox.conf"))
            #expect(conf.value("Unit", "ConditionPathExists") == "/etc/aibox/box.toml", "\(dropIn): no login before setup")
        }
        let preset = try String(contentsOf: repository.appendingPathComponent("image/systemd/90-aibox.preset"), encoding: .utf8)
        #expect(preset.contains("enable aibox.service"))
        #expect(preset.contains("enable aibox-setup@.service ttyS0"))
    }

    @Test func ubootScriptPacksAndKeepsTheBootCountVariables() throws {
        let script = repository.appendingPathComponent("image/boot/uboot-aibox.cmd")
        let root = try TempDirectory()
        let made = try Tool.run("mkimage", ["-A", "arm64", "-T", "script", "-C", "none", "-d", script.path, root.path + "/boot.scr"])
        #expect(made.status == 0, "mkimage: \(made.stderr)")
        let text = try String(contentsOf: script, encoding: .utf8)
        for v in ["AIBOX_ORDER", "AIBOX_A_STATE", "AIBOX_A_LEFT", "AIBOX_B_STATE", "AIBOX_B_LEFT"] { #expect(text.contains(v)) }
        #expect(text.contains("saveenv"), "the try is saved before the kernel starts")
        #expect(text.contains("aibox.slot=${aibox_slot}"))
    }

    // MARK: (g) the partition layout

    @Test func partitionLayoutHasTwoEqualRootSlotsAndADataPartitionUpdatesNeverTouch() throws {
        let definitions = repository.appendingPathComponent("image/repart.d")
        let root = try TempDirectory()
        let disk = root.path + "/disk.img"
        try #require(FileManager.default.createFile(atPath: disk, contents: nil))
        try #require(truncate(disk, 8 << 30) == 0, "an 8 GiB sparse disk image")
        let run = try Tool.run(
            "systemd-repart", ["--empty=require", "--dry-run=yes", "--json=short", "--definitions=\(definitions.path)", disk])
        #expect(run.status == 0, "systemd-repart: \(run.stderr)")
        struct Partition: Decodable {
            var type: String
            var label: String
            var raw_size: Int64
        }
        let parts = try JSONDecoder().decode([Partition].self, from: Data(run.stdout.utf8))
        #expect(parts.map(\.label) == ["esp", "root-a", "root-b", "data"])
        let a = try #require(parts.first { $0.label == "root-a" }), b = try #require(parts.first { $0.label == "root-b" })
        #expect(a.raw_size == b.raw_size && a.raw_size >= 1 << 30, "two equal slots")
        #expect(a.type.hasPrefix("root") && b.type.hasPrefix("root"))
        let data = try #require(parts.first { $0.label == "data" })
        #expect(data.type == "var", "the data partition is /var: database, secrets, worker state")
        #expect(data.raw_size > 1 << 30, "it takes the rest of the disk")
        // The slots' labels are the devices system.toml names (docs/UPDATES.md).
        for label in ["root-a", "root-b"] { #expect(parts.contains { $0.label == label }) }
    }

    // MARK: (f) the boot loader script

    @Test func grubScriptParsesAndKeepsTheBootCountVariables() throws {
        let script = repository.appendingPathComponent("image/boot/grub-aibox.cfg")
        let check = try Tool.run("grub-script-check", [script.path])
        #expect(check.status == 0, "grub-script-check: \(check.stderr)")
        let text = try String(contentsOf: script, encoding: .utf8)
        // The variables BootEnvironment writes and reads (AIBoxCore/Update/BootControl.swift).
        for v in ["AIBOX_ORDER", "AIBOX_A_STATE", "AIBOX_A_LEFT", "AIBOX_B_STATE", "AIBOX_B_LEFT"] {
            #expect(text.contains("load_env") && text.contains(v), "\(v) is not used")
        }
        #expect(text.contains("save_env AIBOX_ORDER AIBOX_A_STATE AIBOX_A_LEFT AIBOX_B_STATE AIBOX_B_LEFT"))
        #expect(text.contains("aibox.slot=${aibox_slot}"), "the kernel is told the booted slot")
        // The kernel and initramfs come from the booted slot (an update's new kernel boots),
        // partitions 2 and 3 as in repart.d; image/build's grub.cfg sets aibox_disk and the console arguments.
        #expect(text.contains("linux (${aibox_disk},${aibox_part})/vmlinuz root=${aibox_root}"))
        #expect(text.contains("initrd (${aibox_disk},${aibox_part})/initrd.img"))
        #expect(text.contains("set aibox_part=\"gpt2\"") && text.contains("set aibox_part=\"gpt3\""))
        #expect(text.contains("init=/usr/lib/aibox/preinit"), "/var and the /etc overlay are mounted before systemd")
        #expect(text.contains("${aibox_cmdline}"), "a way to add console arguments")
        // The check is not vacuous: a broken copy is refused.
        let root = try TempDirectory()
        try root.write("broken.cfg", text.replacingOccurrences(of: "  fi\ndone", with: "done"))
        let broken = try Tool.run("grub-script-check", [root.path + "/broken.cfg"])
        #expect(broken.status != 0, "a script missing a 'fi' passed")
    }
}

// MARK: - Helpers

/// A systemd time span ("90s", "1min", "100ms", "1min 30s", a bare number of seconds) in seconds.
private func seconds(_ text: String) -> Double? {
    let units: [String: Double] = [
        "us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3, "": 1, "s": 1, "sec": 1, "second": 1, "seconds": 1,
        "m": 60, "min": 60, "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
    ]
    if text == "infinity" { return .infinity }
    var total = 0.0
    let scanner = Scanner(string: text)
    scanner.charactersToBeSkipped = .whitespaces
    var any = false
    while !scanner.isAtEnd {
        guard let number = scanner.scanDouble() else { return nil }
        let unit = scanner.scanCharacters(from: .letters) ?? ""
        guard let factor = units[unit] else { return nil }
        total += number * factor
        any = true
    }
    return any ? total : nil
}

/// A unit file's assignments by section, in order (a key may repeat).
private struct UnitFile {
    var assignments: [(section: String, key: String, value: String)] = []

    init(contentsOf url: URL) throws {
        var section = ""
        var pending = ""
        for raw in try String(contentsOf: url, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false) {
            var line = pending + raw.trimmingCharacters(in: .whitespaces)
            pending = ""
            if line.hasPrefix("#") || line.hasPrefix(";") || line.isEmpty { continue }
            if line.hasSuffix("\\") {
                line.removeLast()
                pending = line + " "
                continue
            }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                section = String(line.dropFirst().dropLast())
            } else if let eq = line.firstIndex(of: "=") {
                assignments.append(
                    (
                        section, line[..<eq].trimmingCharacters(in: .whitespaces),
                        line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
                    ))
            }
        }
    }

    func values(_ section: String, _ key: String) -> [String] {
        assignments.filter { $0.section == section && $0.key == key }.map(\.value)
    }

    /// The effective value of a single-valued key: the last assignment.
    func value(_ section: String, _ key: String) -> String? { values(section, key).last }
}

/// tmpfiles.d lines: type, path, mode, user, group.
private struct TmpfilesConfig {
    struct Entry { var type, path, mode, user, group: String }
    var entries: [Entry] = []

    init(contentsOf url: URL) throws {
        for line in try String(contentsOf: url, encoding: .utf8).split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard fields.count >= 5, !fields[0].hasPrefix("#") else { continue }
            entries.append(Entry(type: fields[0], path: fields[1], mode: fields[2], user: fields[3], group: fields[4]))
        }
    }

    func entry(_ path: String) -> Entry? { entries.first { $0.path == path } }
}

/// etc/passwd and etc/group under a root.
private struct Accounts {
    struct User { var uid: uid_t, gid: gid_t, home: String, shell: String }
    struct Group { var gid: gid_t, members: [String] }
    var users: [String: User] = [:]
    var groups: [String: Group] = [:]

    init(root: String) throws {
        for line in try String(contentsOfFile: root + "/etc/passwd", encoding: .utf8).split(separator: "\n") {
            let f = line.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard f.count == 7, let uid = uid_t(f[2]), let gid = gid_t(f[3]) else { continue }
            users[f[0]] = User(uid: uid, gid: gid, home: f[5], shell: f[6])
        }
        for line in try String(contentsOfFile: root + "/etc/group", encoding: .utf8).split(separator: "\n") {
            let f = line.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard f.count == 4, let gid = gid_t(f[2]) else { continue }
            groups[f[0]] = Group(gid: gid, members: f[3].split(separator: ",").map(String.init))
        }
    }
}

/// A directory under the system's temp directory, removed when the value goes away.
private final class TempDirectory {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("aibox-image-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func makeDirectory(_ relative: String) throws {
        try FileManager.default.createDirectory(atPath: path + "/" + relative, withIntermediateDirectories: true)
    }

    func write(_ relative: String, _ text: String, mode: Int = 0o644) throws {
        let file = path + "/" + relative
        try FileManager.default.createDirectory(
            atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: file)
    }
}

private enum Tool {
    struct Result { var status: Int32, stdout: String, stderr: String }

    struct Missing: Error, CustomStringConvertible {
        var name: String
        var description: String { "\(name) is not installed; it comes with the Debian package `systemd` (apt-get install systemd)" }
    }

    /// Runs a systemd tool found on $PATH (or in /usr/bin, /bin) with output captured in files.
    static func run(_ name: String, _ arguments: [String]) throws -> Result {
        let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init) + ["/usr/bin", "/bin"]
        guard let executable = directories.map({ $0 + "/" + name }).first(where: { FileManager.default.isExecutableFile(atPath: $0) })
        else {
            throw Missing(name: name)
        }
        let scratch = try TempDirectory()
        let outPath = scratch.path + "/stdout", errPath = scratch.path + "/stderr"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["SYSTEMD_LOG_COLOR"] = "0"
        environment["SYSTEMD_PAGER"] = "cat"
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = out
        process.standardError = err
        try process.run()
        process.waitUntilExit()
        try out.close()
        try err.close()
        return Result(
            status: process.terminationStatus,
            stdout: try String(contentsOfFile: outPath, encoding: .utf8),
            stderr: try String(contentsOfFile: errPath, encoding: .utf8))
    }

    /// The major version: `systemd-analyze --version` starts "systemd 252 (252.39-1~deb12u2)".
    static func systemdVersion() throws -> Int? {
        let run = try run("systemd-analyze", ["--version"])
        let words = run.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" })
        return words.count > 1 && words[0] == "systemd" ? Int(words[1]) : nil
    }
}

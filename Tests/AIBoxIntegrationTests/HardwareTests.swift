import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// `aibox hardware --json` on fake device trees through umockdev (no hardware needed).
@Suite struct HardwareInventoryTests {
    /// Hand-written umockdev fixtures: the boards the same image ships on.
    /// Hand-written umockdev fixtures (`Fixtures/*.umockdev`): the boards the same image ships
    /// on, and the capabilities each must give.
    static let fixtures: [(name: String, capabilities: [String])] = [
        ("nvidia-gpu-box", ["gpu", "gpu.nvidia", "net.ethernet"]),
        ("arm-board-with-coral-usb", ["net.wifi", "serial", "tpu.coral"]),
        ("mini-pc-with-npu", ["gpu", "gpu.intel", "npu"]),
        ("amd-gpu-box", ["gpu", "gpu.amd", "usb-storage"]),
        ("bare-vm", []),
        // Network interfaces with only the kernel's facts (no ID_NET_NAME_*, no ID_BUS).
        ("kernel-only-nic", ["net.ethernet"]),
        ("virtual-network-only", []),
    ]

    static func fixture(_ name: String) throws -> String {
        try #require(readTextFile(fixturesDirectory + "/\(name).umockdev"), "no fixture \(name)")
    }

    @Test(arguments: fixtures.map(\.name))
    func profileOfAFixture(name: String) throws {
        let fixture = try #require(Self.fixtures.first { $0.name == name })
        let text = try Self.fixture(name)
        let r = try aiboxUnderFixture(text, ["hardware", "--json"])
        #expect(r.code == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        // The devices' capabilities, and llm-local where this machine's RAM makes a tier.
        let tier = try #require(LocalLLMTier(rawValue: json["localLlmTier"] as? String ?? ""))
        let expected = (fixture.capabilities + (tier == .none ? [] : ["llm-local"])).sorted()
        #expect(json["capabilities"] as? [String] == expected, "\(name): \(r.stdout)")
        let devices = try #require(json["devices"] as? [[String: Any]])
        #expect(devices.count == text.components(separatedBy: "P: ").count - 1, "every device is listed, garbled ones too")
        for d in devices {
            for key in ["subsystem", "syspath", "vendorId", "productId", "model", "driver", "capabilities"] {
                #expect(d.keys.contains(key), "\(key) missing in \(d)")
            }
        }
        #expect((json["ramBytes"] as? Int).map { $0 > 0 } == true)
        #expect(LocalLLMTier(rawValue: json["localLlmTier"] as? String ?? "") != nil)
        #expect((json["cpu"] as? [String: Any])?["cores"] as? Int ?? 0 >= 1)
        if name == "nvidia-gpu-box" {
            let gpu = try #require(devices.first { $0["subsystem"] as? String == "pci" })
            #expect(gpu["vendorId"] as? String == "10de")
            #expect(gpu["productId"] as? String == "2684")
            #expect(gpu["driver"] as? String == "nvidia")
            #expect(gpu["model"] as? String == "AD102 [GeForce RTX 4090]")
        }
        if name == "kernel-only-nic" || name == "virtual-network-only" {
            // Per interface: only the one on a physical device is a wired NIC.
            for d in devices where d["subsystem"] as? String == "net" {
                let syspath = d["syspath"] as? String ?? ""
                let wired = syspath.hasSuffix("/net/eth0")
                #expect(d["capabilities"] as? [String] == (wired ? ["net.ethernet"] : []), "\(syspath)")
            }
        }
        if name == "amd-gpu-box" {
            #expect(json["gpuMemoryBytes"] as? Int == 25_753_026_560, "amdgpu's mem_info_vram_total")
        }
    }

    static func meminfo(gib: Int) -> String {
        "MemTotal:       \(gib * 1024 * 1024) kB\nMemFree:         1000000 kB\nMemAvailable:    2000000 kB\n"
    }

    /// The tier table on the boards, with /proc/meminfo faked through umockdev.
    @Test(arguments: [
        ("bare-vm", 4, "none", nil as Int?),
        ("arm-board-with-coral-usb", 8, "small", nil),
        ("mini-pc-with-npu", 16, "medium", nil),
        ("mini-pc-with-npu", 64, "large", nil),
        ("amd-gpu-box", 8, "large", 25_753_026_560),
    ])
    func localLLMTierOfABoard(name: String, ramGiB: Int, tier: String, gpuMemory: Int?) throws {
        let r = try aiboxUnderFixture(try Self.fixture(name), meminfo: Self.meminfo(gib: ramGiB), ["hardware", "--json"])
        #expect(r.code == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(json["ramBytes"] as? Int == ramGiB << 30, "the faked /proc/meminfo was read")
        #expect(json["localLlmTier"] as? String == tier, "\(name) with \(ramGiB) GiB")
        #expect(json["gpuMemoryBytes"] as? Int == gpuMemory)
        let capabilities = json["capabilities"] as? [String] ?? []
        #expect(capabilities.contains("llm-local") == (tier != "none"), "\(name) with \(ramGiB) GiB: \(capabilities)")
    }

    /// NVIDIA's proprietary driver tells a card's memory only through NVML: a test double of
    /// libnvidia-ml.so.1 with the same ABI stands in for it.
    @Test func nvidiaMemoryComesFromNVML() throws {
        let library = try compiledFixture("fake-nvml", shared: true)
        let dir = parentDirectory(library) + "/nvml"
        try makeDirectories(dir)
        _ = unlink(dir + "/libnvidia-ml.so.1")
        #expect(symlink(library, dir + "/libnvidia-ml.so.1") == 0)
        let fixture = try Self.fixture("nvidia-gpu-box")
        let r = try aiboxUnderFixture(
            fixture, meminfo: Self.meminfo(gib: 16), ["hardware", "--json"],
            environment: ["LD_LIBRARY_PATH": dir, "FAKE_NVML_TOTAL_BYTES": "\(24 << 30)"])
        #expect(r.code == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(json["gpuMemoryBytes"] as? Int == 24 << 30)
        #expect(json["localLlmTier"] as? String == "large", "24 GiB of GPU memory")
        // Without the driver's library: RAM alone decides.
        let bare = try aiboxUnderFixture(fixture, meminfo: Self.meminfo(gib: 16), ["hardware", "--json"])
        let plain = try #require(try JSONSerialization.jsonObject(with: Data(bare.stdout.utf8)) as? [String: Any])
        #expect(plain["gpuMemoryBytes"] is NSNull)
        #expect(plain["localLlmTier"] as? String == "medium")
    }

    @Test func workersRequiringMissingHardwareWaitAndTheOthersRun() throws {
        try #require(fileExists(umockdevRun), "umockdev is missing: apt-get install umockdev (.ci/run does)")
        let box = try TestBox(
            """
            [worker.gpu-agent]
            exec = ["@WORKER@", "--no-notify"]
            requires-hardware = ["gpu", "gpu.nvidia"]

            [worker.coral-agent]
            exec = ["@WORKER@", "--no-notify"]
            requires-hardware = ["tpu.coral"]

            [worker.plain]
            exec = ["@WORKER@", "--no-notify"]
            """)
        try box.startDaemon(launcher: [umockdevRun, "-d", fixturesDirectory + "/nvidia-gpu-box.umockdev", "--"])
        defer { box.stopDaemon() }
        try box.waitFor("gpu-agent", ["running"])
        try box.waitFor("plain", ["running"])
        let coral = try #require(try box.waitFor("coral-agent", ["waiting"]))
        #expect(coral.waitingFor == ["hardware:tpu.coral"])
        #expect(coral.pid == nil)
        let status = try JSONDecoder().decode(StatusView.self, from: Data(try box.aibox(["status", "--json"]).stdout.utf8))
        // The devices' capabilities; llm-local besides where this machine's RAM makes a tier.
        let capabilities = status.hardware?.split(separator: ";").first?.split(separator: " ").filter { $0 != "llm-local" } ?? []
        #expect(capabilities == ["gpu", "gpu.nvidia", "net.ethernet"], "\(status.hardware ?? "nil")")
        try box.waitForEvent("hardware.profile")
    }

    /// The local model's worker (`requires-hardware = ["llm-local"]`, as the image ships it)
    /// under the real daemon: it waits on a box whose RAM makes no local-LLM tier, and runs on
    /// one where a small model fits. /proc/meminfo is faked through umockdev.
    @Test(arguments: [(4, false), (8, true)])
    func theLocalModelsWorkerRunsOnlyWhereTheTierAllows(ramGiB: Int, runs: Bool) throws {
        try #require(fileExists(umockdevRun), "umockdev is missing: apt-get install umockdev (.ci/run does)")
        let box = try TestBox(
            """
            [worker.llm-local]
            exec = ["@WORKER@", "--no-notify"]
            requires-hardware = ["llm-local"]

            [worker.plain]
            exec = ["@WORKER@", "--no-notify"]
            """)
        let meminfo = box.root + "/meminfo"
        try writeFileAtomically(meminfo, Array(Self.meminfo(gib: ramGiB).utf8))
        let fakeMeminfo = "mkdir -p \"$UMOCKDEV_DIR/proc\" && cp \"$0\" \"$UMOCKDEV_DIR/proc/meminfo\" && exec \"$@\""
        try box.startDaemon(launcher: [
            umockdevRun, "-d", fixturesDirectory + "/bare-vm.umockdev", "--", "/bin/sh", "-c", fakeMeminfo, meminfo,
        ])
        defer { box.stopDaemon() }
        try box.waitFor("plain", ["running"])
        let profile = try box.waitForEvent("hardware.profile")
        #expect(profile.first?.message.contains("RAM \(ramGiB).0 GiB") == true, "the faked meminfo was read: \(profile)")
        if runs {
            try box.waitFor("llm-local", ["running"])
        } else {
            let waiting = try box.waitFor("llm-local", ["waiting"])
            #expect(waiting?.waitingFor == ["hardware:llm-local"])
            #expect(waiting?.pid == nil)
        }
    }
}

/// Hotplug through libumockdev's testbed API: the daemon sees devices come and go.
@Suite struct HotplugTests {
    @Test func coralPluggedStartsItsWorkerFirmwareReloadDoesNotRestartItUnplugStopsIt() throws {
        let testbed = try Testbed()
        let box = try TestBox(
            """
            [worker.coral-agent]
            exec = ["@WORKER@", "--no-notify"]
            requires-hardware = ["tpu.coral"]
            stop-timeout = "2s"

            [worker.plain]
            exec = ["@WORKER@", "--no-notify"]
            """)
        try box.startDaemon(launcher: testbed.launcher, input: testbed.input, stdout: testbed.output)
        defer { box.stopDaemon() }
        try box.waitFor("plain", ["running"])
        let waiting = try box.waitFor("coral-agent", ["waiting"])
        #expect(waiting?.waitingFor == ["hardware:tpu.coral"])
        let status = try JSONDecoder().decode(StatusView.self, from: Data(try box.aibox(["status", "--json"]).stdout.utf8))
        #expect(status.hotplug == "udev")

        try testbed.send("coral-boot")
        let pid = try #require(try box.waitFor("coral-agent", ["running"])?.pid)
        try box.waitForEvent("hardware.profile-changed")

        // The firmware load: the stick leaves for half a second and comes back under new ids.
        try testbed.send("coral-firmware")
        try box.waitForEvent("hardware.added", count: 2)
        // A camera after it: its profile change proves the firmware swap was applied.
        try testbed.send("camera")
        try box.waitForEvent("hardware.profile-changed", count: 2)
        let still = try box.worker("coral-agent")
        #expect(still?.pid == pid, "the firmware reload restarted the worker")
        #expect(still?.state == "running")
        let changes = try box.events().filter { $0.kind == "hardware.profile-changed" }
        #expect(changes.allSatisfy { $0.message.contains("tpu.coral") }, "tpu.coral never left the profile: \(changes)")

        try testbed.send("coral-unplug")
        let gone = try box.waitFor("coral-agent", ["waiting"])
        #expect(gone?.waitingFor == ["hardware:tpu.coral"])
        #expect(gone?.pid == nil)
        #expect(try box.worker("plain")?.state == "running")
        let stopping = try box.events(worker: "coral-agent").filter { $0.kind == "worker.stopping" }
        #expect(stopping.last?.message.contains("missing hardware:tpu.coral") == true)
    }

    @Test func aProvisioningStickIsReportedWhenItComesAndGoes() throws {
        let testbed = try Testbed()
        let box = try TestBox()
        try box.startDaemon(launcher: testbed.launcher, input: testbed.input, stdout: testbed.output)
        defer { box.stopDaemon() }
        try testbed.send("stick")
        let added = try box.waitForEvent("provisioning.volume-added")
        #expect(added.first?.message == "AIBOX volume on /dev/sdb1 (vfat)")
        let hardware = try box.waitForEvent("hardware.profile-changed")
        // The profile's capabilities come first (llm-local among them where this machine's RAM makes a tier).
        let capabilities = hardware.first?.message.split(separator: ";").first?.split(separator: " ") ?? []
        #expect(capabilities.contains("usb-storage"), "\(hardware)")
        try testbed.send("stick-unplug")
        let removed = try box.waitForEvent("provisioning.volume-removed")
        #expect(removed.first?.message == "AIBOX volume /dev/sdb1 gone")
    }

    @Test func hardwareWatchPrintsDevicesAsTheyComeAndGo() throws {
        let testbed = try Testbed()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = Array(testbed.launcher.dropFirst()) + [aiboxBinary, "hardware", "--watch"]
        p.standardInput = testbed.input
        p.standardOutput = testbed.output
        p.standardError = testbed.output
        try p.run()
        defer {
            // SIGTERM goes through the test bed's launcher to `aibox hardware --watch`: both end.
            kill(p.processIdentifier, SIGTERM)
            let ended = waitUntil(.seconds(10)) { !p.isRunning }
            #expect(ended, "aibox hardware --watch did not end on SIGTERM")
            if !ended { kill(p.processIdentifier, SIGKILL) }
            p.waitUntilExit()
        }
        #expect(testbed.reader.next { $0.hasPrefix("watching hotplug (udev source)") } != nil)
        try testbed.send("coral-boot")
        let add = testbed.reader.next { $0.hasPrefix("add") }
        #expect(add?.contains("1a6e:089a") == true && add?.contains("tpu.coral") == true, "\(add ?? "no add line")")
        try testbed.send("stick")
        #expect(testbed.reader.next { $0.contains("provisioning volume AIBOX on /dev/sdb1") } != nil)
        try testbed.send("coral-unplug")
        let remove = testbed.reader.next { $0.hasPrefix("remove") }
        #expect(remove?.contains("1a6e:089a") == true, "\(remove ?? "no remove line")")
    }
}

/// The hardware part of the daemon over its lifetime: across restarts, without a monitor.
@Suite struct HardwareLifecycleTests {
    @Test func theInventoryIsComparedWithTheLastRunAndTheLastBoot() throws {
        try #require(fileExists(umockdevRun), "umockdev is missing: apt-get install umockdev (.ci/run does)")
        let box = try TestBox()
        func start(_ fixture: String) throws {
            let file = box.root + "/box.umockdev"
            try writeFileAtomically(file, Array((try HardwareInventoryTests.fixture(fixture) + "\n").utf8))
            try box.startDaemon(launcher: [umockdevRun, "-d", file, "--"])
            try box.waitForEvent("hardware.profile", count: box.events().filter { $0.kind == "daemon.started" }.count)
        }
        try start("nvidia-gpu-box")
        #expect(try box.events().filter { $0.kind == "hardware.changed" }.isEmpty, "nothing to compare with at the first start")
        box.stopDaemon()

        try start("nvidia-gpu-box")
        box.stopDaemon()
        #expect(try box.events().filter { $0.kind == "hardware.changed" }.isEmpty, "same hardware, nothing to report")

        // The GPU swapped for another in the same slot is a change; the NIC gone, a stick added.
        var swapped = try HardwareInventoryTests.fixture("nvidia-gpu-box")
        swapped = String(swapped[..<swapped.range(of: "\n\nP: /devices/pci0000:00/0000:02:00.0")!.lowerBound])
        swapped = swapped.replacingOccurrences(of: "PCI_ID=10DE:2684", with: "PCI_ID=10DE:2204")
            .replacingOccurrences(of: "device=0x2684", with: "device=0x2204")
        swapped += """


            P: /devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/host0/target0:0:0/0:0:0:0/block/sda/sda1
            E: SUBSYSTEM=block
            E: DEVTYPE=partition
            E: DEVNAME=/dev/sda1
            E: ID_BUS=usb
            E: ID_FS_LABEL=AIBOX
            E: ID_FS_TYPE=vfat
            """
        let file = box.root + "/box.umockdev"
        try writeFileAtomically(file, Array((swapped + "\n").utf8))
        try box.startDaemon(launcher: [umockdevRun, "-d", file, "--"])
        let changed = try #require(try box.waitForEvent("hardware.changed").first)
        #expect(changed.message.hasPrefix("since the daemon last ran: "), "\(changed.message)")
        #expect(changed.message.contains("added block"), "\(changed.message)")
        #expect(changed.message.contains("removed net"), "\(changed.message)")
        #expect(changed.message.contains("changed pci 10de:2684 AD102 [GeForce RTX 4090]"), "\(changed.message)")
        #expect(changed.message.contains("→ 10de:2204"), "\(changed.message)")
        let volume = try box.waitForEvent("provisioning.volume-added")
        #expect(volume.first?.message == "AIBOX volume on /dev/sda1 (vfat)", "a stick present at start is reported too")
        box.stopDaemon()

        // A reboot (another boot id stored) with the NIC back: "since the last boot".
        _ = try run(
            "/usr/bin/python3",
            [
                "-c",
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"UPDATE meta SET value='another-boot' WHERE key='hardware.bootId'\"); c.commit()",
                box.paths.database,
            ])
        try start("nvidia-gpu-box")
        let again = try box.waitForEvent("hardware.changed", count: 2)
        #expect(again.last?.message.hasPrefix("since the last boot: ") == true, "\(again.last?.message ?? "")")
        box.stopDaemon()
    }

    /// As under systemd's RestrictAddressFamilies= without AF_NETLINK: no monitor. The
    /// inventory is still read, the failure is in the status and the events, and retried.
    @Test func aMonitorThatCannotOpenIsReportedAndRetriedAndEnumerationStillWorks() throws {
        let deny = try compiledFixture("deny-netlink")
        let box = try TestBox(
            """
            [worker.plain]
            exec = ["@WORKER@", "--no-notify"]
            """)
        try box.startDaemon(launcher: [deny])
        defer { box.stopDaemon() }
        try box.waitFor("plain", ["running"])
        let profile = try box.waitForEvent("hardware.profile")
        #expect(profile.first?.message.contains("RAM") == true)
        let status = try JSONDecoder().decode(StatusView.self, from: Data(try box.aibox(["status", "--json"]).stdout.utf8))
        #expect(status.hotplug?.hasPrefix("unavailable: udev_monitor_new_from_netlink") == true, "\(status.hotplug ?? "nil")")
        #expect(status.hotplug?.contains("Address family not supported") == true)
        // Retried after 1 s, then 2 s: three failures within a few seconds, each an event.
        let failures = try box.waitForEvent("hardware.monitor-failed", count: 3)
        #expect(failures[0].message.contains("retrying in 1s"), "\(failures[0].message)")
        #expect(failures[1].message.contains("retrying in 2s"), "\(failures[1].message)")
        #expect(failures[2].message.contains("retrying in 4s"), "\(failures[2].message)")
        let human = try box.aibox(["status"]).stdout
        #expect(human.contains("hotplug:   unavailable"), "\(human)")
        // `aibox hardware --watch` says why it cannot watch.
        let watch = try run(deny, [aiboxBinary, "hardware", "--watch"])
        #expect(watch.code == 1)
        #expect(watch.stderr.contains("cannot watch hotplug: udev_monitor_new_from_netlink"), "\(watch.stderr)")
    }

    @Test func theStatusNamesTheHotplugSource() throws {
        let box = try TestBox()
        try box.startDaemon()
        defer { box.stopDaemon() }
        let status = try JSONDecoder().decode(StatusView.self, from: Data(try box.aibox(["status", "--json"]).stdout.utf8))
        // Without udevd (a container: no /run/udev/control) the kernel's events are used.
        #expect(status.hotplug == (fileExists("/run/udev/control") ? "udev" : "kernel"))
    }
}

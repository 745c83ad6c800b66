import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// `aibox hardware --json` on fake device trees through umockdev (no hardware needed).
@Suite struct HardwareInventoryTests {
    static let umockdevRun = "/usr/bin/umockdev-run"

    /// Hand-written umockdev fixtures: the boards the same image ships on.
    static let fixtures: [(name: String, text: String, capabilities: [String])] = [
        (
            "nvidia-gpu-box",
            """
            P: /devices/pci0000:00/0000:01:00.0
            E: SUBSYSTEM=pci
            E: PCI_CLASS=30000
            E: PCI_ID=10DE:2684
            L: driver=../../../bus/pci/drivers/nvidia
            E: ID_MODEL_FROM_DATABASE=AD102 [GeForce RTX 4090]
            A: vendor=0x10de
            A: device=0x2684
            A: class=0x030000

            P: /devices/pci0000:00/0000:02:00.0/net/enp2s0
            E: SUBSYSTEM=net
            E: INTERFACE=enp2s0
            E: ID_BUS=pci
            E: ID_NET_NAME_PATH=enp2s0
            """,
            ["gpu", "gpu.nvidia", "net.ethernet"]
        ),
        (
            "arm-board-with-coral-usb",
            """
            P: /devices/platform/soc/xhci/usb1/1-1
            E: SUBSYSTEM=usb
            E: DEVTYPE=usb_device
            E: ID_VENDOR_ID=18d1
            E: ID_MODEL_ID=9302
            E: ID_PATH=platform-xhci-usb-0:1
            A: idVendor=18d1
            A: idProduct=9302

            P: /devices/platform/soc/uart/tty/ttyAMA0
            E: SUBSYSTEM=tty
            E: DEVNAME=/dev/ttyAMA0
            L: driver=../../../../../bus/platform/drivers/uart-pl011

            P: /devices/platform/soc/mmc/net/wlan0
            E: SUBSYSTEM=net
            E: DEVTYPE=wlan
            E: INTERFACE=wlan0
            """,
            ["net.wifi", "serial", "tpu.coral"]
        ),
        (
            "mini-pc-with-npu",
            """
            P: /devices/pci0000:00/0000:00:0b.0
            E: SUBSYSTEM=pci
            E: PCI_CLASS=120000
            E: PCI_ID=8086:7D1D
            L: driver=../../../bus/pci/drivers/intel_vpu
            A: vendor=0x8086
            A: class=0x120000

            P: /devices/pci0000:00/0000:00:0b.0/accel/accel0
            E: SUBSYSTEM=accel
            E: DEVNAME=/dev/accel/accel0

            P: /devices/pci0000:00/0000:00:02.0
            E: SUBSYSTEM=pci
            E: PCI_CLASS=30000
            E: PCI_ID=8086:7D55
            A: vendor=0x8086
            A: class=0x030000
            """,
            ["gpu", "gpu.intel", "npu"]
        ),
        (
            "bare-vm",
            """
            P: /devices/pci0000:00/0000:00:01.0
            E: SUBSYSTEM=pci
            E: PCI_CLASS=10000
            E: PCI_ID=1AF4:1001
            A: vendor=0x1af4
            A: class=0x010000

            P: /devices/pci0000:00/0000:00:05.0
            E: SUBSYSTEM=pci
            E: PCI_ID=ZZZZ
            A: class=garbled
            """,
            []
        ),
    ]

    @Test(arguments: fixtures.map(\.name))
    func profileOfAFixture(name: String) throws {
        try #require(fileExists(Self.umockdevRun), "umockdev is missing: apt-get install umockdev (.ci/run does)")
        let fixture = try #require(Self.fixtures.first { $0.name == name })
        var template = Array("/tmp/aibox-hw-XXXXXX".utf8CString)
        let dir = String(cString: try #require(mkdtemp(&template)))
        defer { _ = try? run("/bin/rm", ["-rf", dir]) }
        let file = dir + "/\(name).umockdev"
        try writeFileAtomically(file, Array((fixture.text + "\n").utf8))
        let r = try run(Self.umockdevRun, ["-d", file, "--", aiboxBinary, "hardware", "--json"])
        #expect(r.code == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(json["capabilities"] as? [String] == fixture.capabilities, "\(name): \(r.stdout)")
        let devices = try #require(json["devices"] as? [[String: Any]])
        #expect(devices.count == fixture.text.components(separatedBy: "P: ").count - 1, "every device is listed, garbled ones too")
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
    }

    @Test func workersRequiringMissingHardwareWaitAndTheOthersRun() throws {
        try #require(fileExists(Self.umockdevRun), "umockdev is missing: apt-get install umockdev (.ci/run does)")
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
        let fixture = try #require(Self.fixtures.first { $0.name == "nvidia-gpu-box" })
        let file = box.root + "/box.umockdev"
        try writeFileAtomically(file, Array((fixture.text + "\n").utf8))
        try box.startDaemon(launcher: [Self.umockdevRun, "-d", file, "--"])
        defer { box.stopDaemon() }
        try box.waitFor("gpu-agent", ["running"])
        try box.waitFor("plain", ["running"])
        let coral = try #require(try box.waitFor("coral-agent", ["waiting"]))
        #expect(coral.waitingFor == ["hardware:tpu.coral"])
        #expect(coral.pid == nil)
        let status = try JSONDecoder().decode(StatusView.self, from: Data(try box.aibox(["status", "--json"]).stdout.utf8))
        #expect(status.hardware?.hasPrefix("gpu gpu.nvidia net.ethernet;") == true, "\(status.hardware ?? "nil")")
        try box.waitForEvent("hardware.profile")
    }
}

/// Hotplug through libumockdev's testbed API: the daemon sees devices come and go.
@Suite struct HotplugTests {
    static let driver = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("umockdev-testbed.py").path

    @Test func coralPluggedStartsItsWorkerFirmwareReloadDoesNotRestartItUnplugStopsIt() throws {
        try #require(
            fileExists("/usr/lib/x86_64-linux-gnu/libumockdev-preload.so.0"), "libumockdev0 is missing (.ci/run installs umockdev)")
        let box = try TestBox(
            """
            [worker.coral-agent]
            exec = ["@WORKER@", "--no-notify"]
            requires-hardware = ["tpu.coral"]
            stop-timeout = "2s"

            [worker.plain]
            exec = ["@WORKER@", "--no-notify"]
            """)
        let input = Pipe(), output = Pipe()
        let testbedOutput = output.fileHandleForReading
        func send(_ command: String) throws {
            try input.fileHandleForWriting.write(contentsOf: Data((command + "\n").utf8))
            // The testbed answers once the uevent is sent.
            var answer = Data()
            while !answer.contains(UInt8(ascii: "\n")) { answer += testbedOutput.availableData }
            #expect(String(decoding: answer, as: UTF8.self) == "ok\n", "testbed: \(command)")
        }
        try box.startDaemon(launcher: ["/usr/bin/python3", Self.driver, "--"], input: input, stdout: output)
        defer { box.stopDaemon() }
        try box.waitFor("plain", ["running"])
        let waiting = try box.waitFor("coral-agent", ["waiting"])
        #expect(waiting?.waitingFor == ["hardware:tpu.coral"])

        try send("coral-boot")
        let pid = try #require(try box.waitFor("coral-agent", ["running"])?.pid)
        try box.waitForEvent("hardware.profile-changed")

        // The firmware load: the same stick under new ids, matched by ID_PATH.
        try send("coral-firmware")
        try box.waitForEvent("hardware.added", count: 2)
        // A camera after it: its profile change proves the firmware swap was applied.
        try send("camera")
        try box.waitForEvent("hardware.profile-changed", count: 2)
        let still = try box.worker("coral-agent")
        #expect(still?.pid == pid, "the firmware reload restarted the worker")
        #expect(still?.state == "running")

        try send("coral-unplug")
        let gone = try box.waitFor("coral-agent", ["waiting"])
        #expect(gone?.waitingFor == ["hardware:tpu.coral"])
        #expect(gone?.pid == nil)
        #expect(try box.worker("plain")?.state == "running")
        let stopping = try box.events(worker: "coral-agent").filter { $0.kind == "worker.stopping" }
        #expect(stopping.last?.message.contains("missing hardware:tpu.coral") == true)
    }
}

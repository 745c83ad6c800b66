import Testing

@testable import AIBoxCore

@Suite("Hardware classification") struct HardwareTests {
    static let gib: UInt64 = 1 << 30

    @Test(arguments: [
        (
            DeviceRecord(
                subsystem: "pci", syspath: "/sys/devices/pci0000:00/0000:01:00.0", vendorId: "0x10de", productId: "2684",
                pciClass: "0x030000"), ["gpu", "gpu.nvidia"]
        ),
        (DeviceRecord(subsystem: "pci", syspath: "/p/amd", vendorId: "1002", pciClass: "038000"), ["gpu", "gpu.amd"]),
        (DeviceRecord(subsystem: "pci", syspath: "/p/intel", vendorId: "8086", pciClass: "030000"), ["gpu", "gpu.intel"]),
        (DeviceRecord(subsystem: "pci", syspath: "/p/accel", vendorId: "8086", pciClass: "120000"), ["npu"]),
        (DeviceRecord(subsystem: "pci", syspath: "/p/coral", vendorId: "1ac1", productId: "089a", pciClass: "0x0880ff"), ["tpu.coral"]),
        (DeviceRecord(subsystem: "pci", syspath: "/p/hailo", vendorId: "1e60", productId: "2864", pciClass: "128000"), ["npu"]),
        (DeviceRecord(subsystem: "pci", syspath: "/p/net", vendorId: "8086", pciClass: "020000"), []),
        (DeviceRecord(subsystem: "accel", syspath: "/sys/class/accel/accel0"), ["npu"]),
        (
            DeviceRecord(subsystem: "usb", syspath: "/u/coral-boot", devtype: "usb_device", vendorId: "1a6e", productId: "089a"),
            ["tpu.coral"]
        ),
        (DeviceRecord(subsystem: "usb", syspath: "/u/coral", devtype: "usb_device", vendorId: "18d1", productId: "9302"), ["tpu.coral"]),
        (DeviceRecord(subsystem: "usb", syspath: "/u/mouse", devtype: "usb_device", vendorId: "046d", productId: "c077"), []),
        (DeviceRecord(subsystem: "video4linux", syspath: "/v/0", properties: ["ID_V4L_CAPABILITIES": ":capture:"]), ["camera"]),
        (DeviceRecord(subsystem: "video4linux", syspath: "/v/1", properties: ["ID_V4L_CAPABILITIES": ":"]), []),
        (DeviceRecord(subsystem: "sound", syspath: "/s/c", devnode: "/dev/snd/pcmC0D0c"), ["audio.in"]),
        (DeviceRecord(subsystem: "sound", syspath: "/s/p", devnode: "/dev/snd/pcmC0D0p"), ["audio.out"]),
        (DeviceRecord(subsystem: "tty", syspath: "/t/ttyUSB0", driver: "ftdi_sio", properties: ["ID_BUS": "usb"]), ["serial"]),
        (DeviceRecord(subsystem: "tty", syspath: "/t/ttyS5"), []),
        (DeviceRecord(subsystem: "block", syspath: "/b/sda", devtype: "disk", properties: ["ID_BUS": "usb"]), ["usb-storage"]),
        (DeviceRecord(subsystem: "block", syspath: "/b/nvme0n1", devtype: "disk", properties: ["ID_BUS": "nvme"]), []),
        (DeviceRecord(subsystem: "net", syspath: "/n/wlan0", devtype: "wlan"), ["net.wifi"]),
        (DeviceRecord(subsystem: "net", syspath: "/n/eth0", properties: ["ID_BUS": "pci"]), ["net.ethernet"]),
        (DeviceRecord(subsystem: "net", syspath: "/n/lo"), []),
        // Only the kernel's facts (no udev properties): a wired NIC on a PCI or USB device…
        (
            DeviceRecord(
                subsystem: "net", syspath: "/sys/devices/pci0000:00/0000:03:00.0/net/eth0",
                net: NetInterfaceFacts(type: 1, hasParentDevice: true, isWireless: false)), ["net.ethernet"]
        ),
        // …a Wi-Fi interface whose uevent has no DEVTYPE (an old wireless-extensions driver)…
        (
            DeviceRecord(
                subsystem: "net", syspath: "/sys/devices/platform/soc/mmc/net/wlan0",
                net: NetInterfaceFacts(type: 1, hasParentDevice: true, isWireless: true)), ["net.wifi"]
        ),
        // …and what is not a wired NIC: virtual links (veth, tap, bridge), a USB gadget, loopback, IP-over-InfiniBand.
        (
            DeviceRecord(
                subsystem: "net", syspath: "/sys/devices/virtual/net/veth0",
                net: NetInterfaceFacts(type: 1, hasParentDevice: false, isWireless: false)), []
        ),
        (
            DeviceRecord(
                subsystem: "net", syspath: "/sys/devices/virtual/net/br0", devtype: "bridge",
                net: NetInterfaceFacts(type: 1, hasParentDevice: false, isWireless: false)), []
        ),
        (
            DeviceRecord(
                subsystem: "net", syspath: "/sys/devices/platform/soc/gadget/net/usb0", devtype: "gadget",
                net: NetInterfaceFacts(type: 1, hasParentDevice: true, isWireless: false)), []
        ),
        (
            DeviceRecord(
                subsystem: "net", syspath: "/sys/devices/virtual/net/lo",
                net: NetInterfaceFacts(type: 772, hasParentDevice: false, isWireless: false)),
            []
        ),
        (
            DeviceRecord(
                subsystem: "net", syspath: "/sys/devices/pci0000:00/0000:04:00.0/net/ib0",
                net: NetInterfaceFacts(type: 32, hasParentDevice: true, isWireless: false)), []
        ),
        (
            DeviceRecord(
                subsystem: "net", syspath: "/n/garbled", net: NetInterfaceFacts(type: nil, hasParentDevice: true, isWireless: false)),
            []
        ),
        (DeviceRecord(subsystem: "pci", syspath: "/p/garbled", vendorId: "zz", pciClass: "x"), []),
        (DeviceRecord(subsystem: "", syspath: ""), []),
    ])
    func deviceCapabilities(device: DeviceRecord, expected: [String]) {
        #expect(HardwareClassifier.capabilities(of: device).map(\.rawValue).sorted() == expected, "\(device.syspath)")
    }

    @Test(arguments: [
        (UInt64(2) * gib, nil as UInt64?, LocalLLMTier.none),
        (4 * gib, nil, .none),
        (6 * gib, nil, .small),
        (8 * gib, nil, .small),
        (16 * gib, nil, .medium),
        (8 * gib, 8 * gib, .medium),
        (16 * gib, 24 * gib, .large),
        (64 * gib, nil, .large),
        (4 * gib, 6 * gib, .none),
    ])
    func llmTier(ram: UInt64, gpu: UInt64?, tier: LocalLLMTier) {
        #expect(HardwareClassifier.localLLMTier(ramBytes: ram, gpuMemoryBytes: gpu) == tier)
    }

    @Test func cpuinfoOfX86AndARM() {
        let x86 = """
            processor\t: 0
            model name\t: AMD EPYC 7B13
            flags\t\t: fpu sse2 avx avx2 fma avx512f
            processor\t: 1
            model name\t: AMD EPYC 7B13
            flags\t\t: fpu sse2 avx avx2 fma avx512f
            """
        let a = CPUInfo.parse(x86)
        #expect(a.model == "AMD EPYC 7B13")
        #expect(a.cores == 2)
        #expect(a.flags == ["avx", "avx2", "avx512f", "fma"])
        let arm = """
            processor\t: 0
            Features\t: fp asimd evtstrm aes crc32 asimddp
            processor\t: 1
            Features\t: fp asimd evtstrm aes crc32 asimddp
            processor\t: 2
            processor\t: 3
            Model\t\t: Raspberry Pi 5 Model B Rev 1.0
            """
        let b = CPUInfo.parse(arm)
        #expect(b.model == "Raspberry Pi 5 Model B Rev 1.0")
        #expect(b.cores == 4)
        #expect(b.flags.contains("neon"))
        #expect(CPUInfo.parse("garbage\n:::\n").cores == 1)
    }

    @Test func memTotal() {
        #expect(parseMemTotal("MemTotal:       16318888 kB\nMemFree: 1 kB\n") == 16_318_888 * 1024)
        #expect(parseMemTotal("MemFree: 1 kB\n") == nil)
        #expect(parseMemTotal("MemTotal: lots\n") == nil)
    }

    @Test func profileAndSummary() {
        let devices = [
            DeviceRecord(subsystem: "pci", syspath: "/p/gpu", vendorId: "10de", pciClass: "030000", memoryBytes: 24 * Self.gib),
            DeviceRecord(subsystem: "pci", syspath: "/p/igpu", vendorId: "8086", pciClass: "030000", memoryBytes: 1 * Self.gib),
            DeviceRecord(
                subsystem: "pci", syspath: "/p/npu", vendorId: "1e60", productId: "2864", pciClass: "128000", memoryBytes: 64 * Self.gib),
            DeviceRecord(subsystem: "net", syspath: "/n/eth0", properties: ["ID_BUS": "pci"]),
        ]
        let p = HardwareProfile(devices: devices, ramBytes: 8 * Self.gib, cpu: CPUInfo(model: nil, cores: 8, flags: []))
        #expect(p.capabilities == ["gpu", "gpu.intel", "gpu.nvidia", "llm-local", "net.ethernet", "npu"])
        #expect(p.gpuMemoryBytes == 24 * Self.gib, "the largest GPU's memory; an NPU's does not count")
        #expect(p.localLlmTier == .large)
        #expect(p.summary == "gpu gpu.intel gpu.nvidia llm-local net.ethernet npu; RAM 8.0 GiB; GPU memory 24.0 GiB; local LLM large")
        let bare = HardwareProfile(devices: [], ramBytes: 3 * Self.gib / 2, cpu: CPUInfo(model: nil, cores: 1, flags: []))
        #expect(bare.summary == "no accelerators; RAM 1.5 GiB; local LLM none")
        #expect(bare.gpuMemoryBytes == nil)
    }

    /// `llm-local` is the tier above none, whatever gives it (RAM or a GPU's memory), and
    /// comes from no device: a worker requiring it runs where a local model fits.
    @Test func llmLocalCapabilityFollowsTheTier() {
        let cpu = CPUInfo(model: nil, cores: 4, flags: [])
        let gpu = DeviceRecord(subsystem: "pci", syspath: "/p/gpu", vendorId: "10de", pciClass: "030000", memoryBytes: 12 * Self.gib)
        let cases: [(devices: [DeviceRecord], ram: UInt64, tier: LocalLLMTier)] = [
            ([], 4 * Self.gib, .none),
            ([], 6 * Self.gib - 1, .none),
            ([], 6 * Self.gib, .small),
            ([], 16 * Self.gib, .medium),
            ([], 64 * Self.gib, .large),
            ([gpu], 2 * Self.gib, .medium),  // a GPU's own memory on a box with little RAM
        ]
        for c in cases {
            let p = HardwareProfile(devices: c.devices, ramBytes: c.ram, cpu: cpu)
            #expect(p.localLlmTier == c.tier)
            #expect(p.capabilities.contains(Capability.llmLocal.rawValue) == (c.tier != .none), "\(c.ram) bytes, \(c.tier)")
        }
        // No single device gives it.
        let devices = [gpu, DeviceRecord(subsystem: "accel", syspath: "/a/accel0")]
        #expect(devices.allSatisfy { !HardwareClassifier.capabilities(of: $0).contains(.llmLocal) })
        #expect(Capability(rawValue: "llm-local") == .llmLocal)
    }

    @Test func coralReenumerationIsTheSameDevice() {
        let before = DeviceRecord(
            subsystem: "usb", syspath: "/sys/bus/usb/devices/1-1", devtype: "usb_device", vendorId: "1a6e", productId: "089a",
            idPath: "pci-0000:00:14.0-usb-0:1")
        let after = DeviceRecord(
            subsystem: "usb", syspath: "/sys/bus/usb/devices/1-1", devtype: "usb_device", vendorId: "18d1", productId: "9302",
            idPath: "pci-0000:00:14.0-usb-0:1")
        #expect(InventoryDiff(old: [before], new: [after]).isEmpty)
        let unplugged = InventoryDiff(old: [after], new: [])
        #expect(unplugged.removed == [after])
        let other = DeviceRecord(
            subsystem: "usb", syspath: "/sys/bus/usb/devices/1-2", devtype: "usb_device", vendorId: "18d1", productId: "9302",
            idPath: "pci-0000:00:14.0-usb-0:2")
        #expect(InventoryDiff(old: [after], new: [after, other]).added == [other])
    }

    @Test func anotherCardInTheSameSlotIsAChangeAndTheSummaryNamesIt() {
        let old = DeviceRecord(
            subsystem: "pci", syspath: "/sys/devices/pci0000:00/0000:01:00.0", vendorId: "10de", productId: "2684",
            pciClass: "030000", model: "AD102", idPath: "pci-0000:01:00.0")
        var new = old
        new.vendorId = "1002"
        new.productId = "744c"
        new.model = nil
        let disk = DeviceRecord(subsystem: "block", syspath: "/sys/block/sda", devtype: "disk")
        let d = InventoryDiff(old: [old], new: [new, disk])
        #expect(d.changed.count == 1)
        #expect(d.added == [disk])
        #expect(d.removed.isEmpty)
        #expect(d.summary == "added block at /sys/block/sda; changed pci 10de:2684 AD102 at pci-0000:01:00.0 → 1002:744c")
        #expect(InventoryDiff(old: [old, disk], new: [old, disk]).isEmpty)
        #expect(InventoryDiff(old: [disk], new: []).summary == "removed block at /sys/block/sda")
    }
}

@Suite("Capability gate") struct CapabilityGateTests {
    let t0 = Instant(nanoseconds: 5_000_000_000)

    @Test func gainedAtOnceLostAfterTheGracePeriod() {
        var g = CapabilityGate(grace: .seconds(2))
        #expect(g.observe(["serial"], now: t0) == ["serial"])
        #expect(g.observe(["serial", "tpu.coral"], now: t0 + .seconds(1)) == ["tpu.coral"])
        #expect(g.effective == ["serial", "tpu.coral"])
        // Unplugged: still effective during the grace period.
        #expect(g.observe(["serial"], now: t0 + .seconds(10)).isEmpty)
        #expect(g.effective.contains("tpu.coral"))
        #expect(g.nextDeadline == t0 + .seconds(12))
        #expect(g.expire(now: t0 + .milliseconds(11_999)).isEmpty)
        #expect(g.expire(now: t0 + .seconds(12)) == ["tpu.coral"])
        #expect(g.effective == ["serial"])
        #expect(g.nextDeadline == nil)
    }

    @Test func aDeviceBackWithinTheGracePeriodWasNeverLost() {
        var g = CapabilityGate(grace: .seconds(2))
        g.observe(["tpu.coral"], now: t0)
        // The Coral's firmware load: it leaves, and comes back under other ids.
        g.observe([], now: t0 + .seconds(1))
        #expect(g.observe(["tpu.coral"], now: t0 + .milliseconds(1_800)).isEmpty, "not gained again: it never went")
        #expect(g.expire(now: t0 + .seconds(10)).isEmpty)
        #expect(g.effective == ["tpu.coral"])
        // Gone twice: the grace period counts from the last departure.
        g.observe([], now: t0 + .seconds(20))
        g.observe(["tpu.coral"], now: t0 + .seconds(21))
        g.observe([], now: t0 + .seconds(22))
        #expect(g.expire(now: t0 + .seconds(23)).isEmpty)
        #expect(g.expire(now: t0 + .seconds(24)) == ["tpu.coral"])
    }
}

@Suite("Provisioning volumes") struct ProvisioningVolumeTests {
    @Test(
        arguments: [
            (["ID_FS_LABEL": "AIBOX", "ID_FS_TYPE": "vfat"], "block", "/dev/sdb1", "AIBOX"),
            (["ID_FS_LABEL": "cidata", "ID_FS_TYPE": "iso9660"], "block", "/dev/sr0", "cidata"),
            (["ID_FS_LABEL": "Aibox"], "block", "/dev/sdc", "Aibox"),
            (["ID_FS_LABEL": "BACKUP", "ID_FS_TYPE": "vfat"], "block", "/dev/sdb1", nil),
            (["ID_FS_TYPE": "vfat"], "block", "/dev/sdb1", nil),
            (["ID_FS_LABEL": "AIBOX"], "usb", "/dev/bus/usb/001/002", nil),
            (["ID_FS_LABEL": "AIBOXES"], "block", "/dev/sdb1", nil),
        ] as [([String: String], String, String, String?)])
    func labelledFileSystems(properties: [String: String], subsystem: String, node: String, label: String?) {
        let d = DeviceRecord(subsystem: subsystem, syspath: "/sys/x", devtype: "partition", devnode: node, properties: properties)
        let v = ProvisioningVolume.on(d)
        #expect(v?.label == label)
        if label != nil {
            #expect(v?.devnode == node)
            #expect(v?.fsType == properties["ID_FS_TYPE"])
        }
    }

    @Test func aBlockDeviceWithoutANodeIsNotMountable() {
        let d = DeviceRecord(subsystem: "block", syspath: "/sys/x", properties: ["ID_FS_LABEL": "AIBOX"])
        #expect(ProvisioningVolume.on(d) == nil)
    }
}

@Suite("Requirements lost") struct RequirementsLostTests {
    static func machine() -> WorkerMachine {
        var d = WorkerDefinition(name: "coral", exec: ["/bin/agent"])
        d.requiresHardware = ["tpu.coral"]
        return WorkerMachine(definition: d)
    }

    @Test func aRunningWorkerStopsGracefullyThenWaitsThenStartsAgain() {
        var m = Self.machine()
        let t0 = Instant(nanoseconds: 1_000_000_000)
        #expect(m.start(now: t0, dependenciesReady: []) == [.spawn])
        _ = m.spawned(pid: 42, now: t0)
        #expect(m.state == .running)
        let actions = m.requirementsLost(now: t0 + .seconds(1), missing: ["hardware:tpu.coral"])
        #expect(actions.contains(.signalGroup(Signals.term)))
        #expect(m.state == .stopping)
        let exit = m.exited(.code(0), now: t0 + .seconds(2), random: 0.5)
        #expect(m.state == .waiting)
        #expect(m.waitingFor == ["hardware:tpu.coral"])
        #expect(exit.contains(.record(.waiting(for: ["hardware:tpu.coral"]))))
        #expect(!exit.contains { if case .record(.backoff) = $0 { return true } else { return false } }, "not a failure")
        #expect(m.consecutiveFailures == 0)
        #expect(m.dependenciesChanged(now: t0 + .seconds(3), missing: []) == [.spawn])
        #expect(m.restarts == 1)
    }

    @Test func aWorkerInBackoffWaitsAtOnceAndAStoppedOneStaysStopped() {
        var m = Self.machine()
        let t0 = Instant(nanoseconds: 1_000_000_000)
        _ = m.start(now: t0, dependenciesReady: [])
        _ = m.spawned(pid: 42, now: t0)
        _ = m.exited(.code(1), now: t0 + .milliseconds(10), random: 0.5)
        #expect(m.state == .backoff)
        _ = m.requirementsLost(now: t0 + .milliseconds(20), missing: ["hardware:tpu.coral"])
        #expect(m.state == .waiting)
        #expect(m.deadline == nil)
        _ = m.stop(now: t0 + .milliseconds(30))
        #expect(m.requirementsLost(now: t0 + .milliseconds(40), missing: ["hardware:tpu.coral"]).isEmpty)
        #expect(m.state == .stopped)
    }
}

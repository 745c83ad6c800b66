// aibox-bench-hardware: what the daemon pays to enumerate and classify the hardware, in
// process (no process start counted): `HardwareProbe.scan()` — libudev enumeration of every
// subsystem aibox watches, sysfs attributes, /proc/meminfo and /proc/cpuinfo, NVML when an
// NVIDIA card is driven by the proprietary driver, classification and the LLM tier.
//
//   aibox-bench-hardware [--iterations N]      (run under umockdev-run -d FILE for a fixture)
//   aibox-bench-hardware --write-fixture FILE  (writes the large synthetic fixture)
import AIBoxCore
import AIBoxSystem
import Glibc

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    sorted[max(0, min(sorted.count - 1, Int((p * Double(sorted.count)).rounded(.up)) - 1))]
}

/// A big box: two GPUs, an NPU, a Coral, 40 USB devices, 8 disks of 4 partitions, 64 serial
/// ports, 12 network interfaces, 24 sound nodes, 4 cameras, 16 hidraw, 120 other PCI functions.
func largeFixture() -> String {
    var out: [String] = []
    func device(_ path: String, _ props: [String], _ attrs: [String] = [], driver: String? = nil) {
        var lines = ["P: \(path)"] + props.map { "E: \($0)" } + attrs.map { "A: \($0)" }
        if let driver { lines.append("L: driver=../../../bus/pci/drivers/\(driver)") }
        out.append(lines.joined(separator: "\n"))
    }
    device(
        "/devices/pci0000:00/0000:01:00.0", ["SUBSYSTEM=pci", "PCI_CLASS=30000", "PCI_ID=10DE:2684"],
        ["vendor=0x10de", "device=0x2684", "class=0x030000"], driver: "nvidia")
    device(
        "/devices/pci0000:00/0000:02:00.0", ["SUBSYSTEM=pci", "PCI_CLASS=30000", "PCI_ID=1002:744C"],
        ["vendor=0x1002", "device=0x744c", "class=0x030000", "mem_info_vram_total=25753026560"], driver: "amdgpu")
    device("/devices/pci0000:00/0000:00:0b.0", ["SUBSYSTEM=pci", "PCI_CLASS=120000", "PCI_ID=8086:7D1D"], ["class=0x120000"])
    device("/devices/pci0000:00/0000:00:0b.0/accel/accel0", ["SUBSYSTEM=accel", "DEVNAME=/dev/accel/accel0"])
    for i in 0..<120 {
        device(
            "/devices/pci0000:00/0000:00:\(String(i / 8, radix: 16)).\(i % 8)",
            ["SUBSYSTEM=pci", "PCI_CLASS=60400", "PCI_ID=8086:\(String(0x7a00 + i, radix: 16))"], ["class=0x060400"])
    }
    for i in 0..<40 {
        let ids = i == 0 ? ("18d1", "9302") : ("046d", String(0xc000 + i, radix: 16))
        device(
            "/devices/pci0000:00/0000:00:14.0/usb1/1-\(i + 1)",
            [
                "SUBSYSTEM=usb", "DEVTYPE=usb_device", "ID_VENDOR_ID=\(ids.0)", "ID_MODEL_ID=\(ids.1)",
                "ID_PATH=pci-0000:00:14.0-usb-0:\(i + 1)",
            ], ["idVendor=\(ids.0)", "idProduct=\(ids.1)"])
    }
    for d in 0..<8 {
        let disk = "sd" + String(UnicodeScalar(UInt8(97 + d)))
        let base = "/devices/pci0000:00/0000:00:17.0/ata\(d)/host\(d)/target\(d):0:0/\(d):0:0:0/block/\(disk)"
        device(base, ["SUBSYSTEM=block", "DEVTYPE=disk", "DEVNAME=/dev/\(disk)", "ID_BUS=ata"])
        for p in 1...4 {
            device(
                "\(base)/\(disk)\(p)",
                ["SUBSYSTEM=block", "DEVTYPE=partition", "DEVNAME=/dev/\(disk)\(p)", "ID_BUS=ata", "ID_FS_TYPE=ext4"])
        }
    }
    for i in 0..<64 { device("/devices/platform/serial8250/tty/ttyS\(i)", ["SUBSYSTEM=tty", "DEVNAME=/dev/ttyS\(i)"]) }
    for i in 0..<12 {
        device(
            "/devices/pci0000:00/0000:03:00.\(i % 8)/net/enp3s\(i)",
            ["SUBSYSTEM=net", "INTERFACE=enp3s\(i)", "ID_BUS=pci", "ID_NET_NAME_PATH=enp3s\(i)"])
    }
    for i in 0..<24 {
        device(
            "/devices/pci0000:00/0000:00:1f.3/sound/card0/pcmC0D\(i / 2)\(i % 2 == 0 ? "p" : "c")",
            ["SUBSYSTEM=sound", "DEVNAME=/dev/snd/pcmC0D\(i / 2)\(i % 2 == 0 ? "p" : "c")"])
    }
    for i in 0..<4 {
        device(
            "/devices/pci0000:00/0000:00:14.0/usb1/1-\(i + 1)/1-\(i + 1):1.0/video4linux/video\(i)",
            ["SUBSYSTEM=video4linux", "DEVNAME=/dev/video\(i)", "ID_V4L_CAPABILITIES=:capture:"])
    }
    for i in 0..<16 {
        device(
            "/devices/pci0000:00/0000:00:14.0/usb1/1-\(i + 1)/1-\(i + 1):1.1/hidraw/hidraw\(i)",
            ["SUBSYSTEM=hidraw", "DEVNAME=/dev/hidraw\(i)"])
    }
    return out.joined(separator: "\n\n") + "\n"
}

var iterations = 200
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "--iterations": iterations = Int(args.popFirst() ?? "") ?? iterations
    case "--write-fixture":
        guard let path = args.popFirst() else { break }
        try writeFileAtomically(path, Array(largeFixture().utf8))
        exit(0)
    default:
        writeStandardError("usage: aibox-bench-hardware [--iterations N] | --write-fixture FILE\n")
        exit(2)
    }
}

var times: [Double] = [], floor: [Double] = []
var devices = 0
var profile: HardwareProfile?
for _ in 0..<iterations {
    var t0 = Clock.monotonic()
    let scan = HardwareProbe.scan()
    times.append(Double(Clock.monotonic().since(t0).nanoseconds) / 1e6)
    devices = scan.devices.count
    profile = scan.profile
    // libudev's enumeration alone (no device read): the floor for any libudev consumer.
    t0 = Clock.monotonic()
    _ = UdevInventory.countWithoutReading()
    floor.append(Double(Clock.monotonic().since(t0).nanoseconds) / 1e6)
}
times.sort()
floor.sort()
print(
    "devices=\(devices) iterations=\(iterations) median_ms=\(percentile(times, 0.5)) p99_ms=\(percentile(times, 0.99)) min_ms=\(times[0]) floor_median_ms=\(percentile(floor, 0.5)) profile=\"\(profile?.summary ?? "")\""
)

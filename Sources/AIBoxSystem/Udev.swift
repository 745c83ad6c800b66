import AIBoxCore
import CAIBoxOS
import CUdev
import Glibc

/// Enumerates devices through libudev (udev_enumerate) into `DeviceRecord`s.
public enum UdevInventory {
    /// The subsystems that matter to an AI box (issue 3).
    public static let subsystems = [
        "pci", "drm", "accel", "usb", "block", "net", "tty", "sound", "video4linux", "hidraw", "apex", "hailo_chardev",
    ]

    /// Properties kept as they are for classification and display.
    static let keptProperties = [
        "ID_BUS", "ID_V4L_CAPABILITIES", "ID_FS_LABEL", "ID_FS_TYPE", "DEVTYPE", "ID_NET_NAME_PATH", "ID_TYPE",
        "ID_SERIAL", "ID_VENDOR_FROM_DATABASE",
    ]

    /// Serial ports among the `tty` class: everything but the virtual consoles (tty0…tty63),
    /// `console`, `ptmx` and `tty`, which are never a serial line and would otherwise be most
    /// of a small box's devices. libudev matches these names before it reads a device.
    public static let serialNames = ["tty[!0-9]*", "hvc*", "rfcomm*"]

    /// Every device of `subsystems`; an unreadable device is skipped, a garbled one listed as it is.
    public static func enumerate(subsystems: [String] = subsystems) -> [DeviceRecord] {
        var records: [DeviceRecord] = []
        forEachDevice(subsystems) { udev, path in
            guard let device = udev_device_new_from_syspath(udev, path) else { return }
            records.append(record(device))
            udev_device_unref(device)
        }
        return records
    }

    /// libudev's own cost, for the benchmark: the enumeration without reading the devices.
    public static func countWithoutReading(subsystems: [String] = subsystems) -> Int {
        var count = 0
        forEachDevice(subsystems) { _, _ in count += 1 }
        return count
    }

    private static func forEachDevice(_ subsystems: [String], _ body: (OpaquePointer, UnsafePointer<CChar>) -> Void) {
        guard let udev = udev_new() else { return }
        defer { udev_unref(udev) }
        // Name matches apply to every subsystem of an enumerator: tty gets one of its own.
        var passes: [([String], [String])] = [(subsystems.filter { $0 != "tty" }, [])]
        if subsystems.contains("tty") { passes.append((["tty"], serialNames)) }
        for (subs, names) in passes where !subs.isEmpty {
            guard let enumerate = udev_enumerate_new(udev) else { continue }
            defer { udev_enumerate_unref(enumerate) }
            for s in subs { udev_enumerate_add_match_subsystem(enumerate, s) }
            for n in names { udev_enumerate_add_match_sysname(enumerate, n) }
            udev_enumerate_scan_devices(enumerate)
            var entry = udev_enumerate_get_list_entry(enumerate)
            while let e = entry {
                if let path = udev_list_entry_get_name(e) { body(udev, path) }
                entry = udev_list_entry_get_next(e)
            }
        }
    }

    static func record(_ d: OpaquePointer) -> DeviceRecord {
        func string(_ p: UnsafePointer<CChar>?) -> String? {
            guard let p else { return nil }
            let s = String(decoding: UnsafeRawBufferPointer(start: p, count: strlen(p)), as: UTF8.self)
            return s.isEmpty ? nil : s
        }
        func property(_ name: String) -> String? { string(udev_device_get_property_value(d, name)) }
        func attribute(_ name: String) -> String? { string(udev_device_get_sysattr_value(d, name))?.trimmingCharacters(in: " \n") }
        let subsystem = string(udev_device_get_subsystem(d)) ?? ""
        let pciID = property("PCI_ID")?.split(separator: ":").map(String.init)
        var vendor = property("ID_VENDOR_ID") ?? pciID?.first
        var product = property("ID_MODEL_ID") ?? (pciID?.count == 2 ? pciID?[1] : nil)
        if subsystem == "pci" {
            vendor = vendor ?? attribute("vendor")
            product = product ?? attribute("device")
        } else if subsystem == "usb" {
            vendor = vendor ?? attribute("idVendor")
            product = product ?? attribute("idProduct")
        }
        var properties: [String: String] = [:]
        for k in keptProperties { if let v = property(k) { properties[k] = v } }
        let pciClass = subsystem == "pci" ? (property("PCI_CLASS") ?? attribute("class")) : nil
        // Attributes are files: read only where they can exist. amdgpu tells a display
        // controller's (class 03xx) dedicated memory; NVIDIA's comes from NVML (HardwareProbe).
        let isDisplay = pciClass.map { HardwareClassifier.pciClass($0).hasPrefix("03") } ?? false
        let vram = isDisplay ? attribute("mem_info_vram_total").flatMap { UInt64($0) } : nil
        let syspath = string(udev_device_get_syspath(d)) ?? ""
        // The kernel's facts of an interface, which hold where udev added no properties.
        var net: NetInterfaceFacts?
        if subsystem == "net" && !syspath.isEmpty {
            net = NetInterfaceFacts(
                type: attribute("type").flatMap { Int($0) }, hasParentDevice: fileExists(syspath + "/device"),
                isWireless: fileExists(syspath + "/wireless") || fileExists(syspath + "/phy80211"))
        }
        return DeviceRecord(
            subsystem: subsystem,
            syspath: syspath,
            devtype: string(udev_device_get_devtype(d)),
            devnode: string(udev_device_get_devnode(d)),
            vendorId: vendor,
            productId: product,
            pciClass: pciClass,
            driver: string(udev_device_get_driver(d)) ?? property("DRIVER"),
            model: property("ID_MODEL_FROM_DATABASE") ?? property("ID_MODEL") ?? (subsystem == "usb" ? attribute("product") : nil),
            idPath: property("ID_PATH"),
            memoryBytes: vram,
            properties: properties,
            net: net)
    }
}

/// Hotplug: a libudev monitor on the "udev" netlink source (events after udev's rules ran),
/// or the "kernel" source where udev does not run (containers, some minimal images).
/// Created before enumeration, so that nothing plugged in between is missed.
public final class UdevMonitor {
    private let udev: OpaquePointer
    private let monitor: OpaquePointer
    public let fd: Int32
    /// "udev" or "kernel".
    public let source: String

    /// Which source to listen to: "udev" when udevd runs (its control socket exists), else "kernel".
    public static func preferredSource() -> String {
        fileExists("/run/udev/control") || getenv("UMOCKDEV_DIR") != nil ? "udev" : "kernel"
    }

    public init(subsystems: [String] = UdevInventory.subsystems) throws(SystemError) {
        guard let udev = udev_new() else { throw SystemError("udev_new", errno: errno) }
        let source = UdevMonitor.preferredSource()
        errno = 0
        guard let monitor = udev_monitor_new_from_netlink(udev, source) else {
            let e = errno
            udev_unref(udev)
            throw SystemError("udev_monitor_new_from_netlink", errno: e == 0 ? EIO : e, detail: "(\(source) source)")
        }
        for s in subsystems { udev_monitor_filter_add_match_subsystem_devtype(monitor, s, nil) }
        let r = udev_monitor_enable_receiving(monitor)
        guard r >= 0 else {
            udev_monitor_unref(monitor)
            udev_unref(udev)
            throw SystemError("udev_monitor_enable_receiving", errno: -r, detail: "(\(source) source)")
        }
        // Room for a burst (a hub with many devices) before the kernel drops events.
        _ = udev_monitor_set_receive_buffer_size(monitor, 4 << 20)
        let fd = udev_monitor_get_fd(monitor)
        do {
            try setNonBlocking(fd, detail: "(\(source) source)")
        } catch {
            udev_monitor_unref(monitor)
            udev_unref(udev)
            throw error
        }
        self.udev = udev
        self.monitor = monitor
        self.source = source
        self.fd = fd
    }

    deinit {
        udev_monitor_unref(monitor)
        udev_unref(udev)
    }

    /// What one read of the socket gave.
    public struct Batch {
        /// Each event's action ("add", "remove", "change", "bind", …) and the device.
        public var events: [(action: String, device: DeviceRecord)] = []
        /// The kernel dropped events (the socket's buffer overflowed, ENOBUFS): the caller
        /// must enumerate again to learn the truth.
        public var overflowed = false
        /// The socket failed otherwise; the monitor should be replaced.
        public var error: SystemError?
    }

    /// Every waiting event.
    public func receiveAll() -> Batch {
        var batch = Batch()
        while true {
            errno = 0
            guard let d = udev_monitor_receive_device(monitor) else {
                // NULL also for a message that is not for us (filtered, wrong sender): go on
                // while the socket has data; stop on EAGAIN.
                switch errno {
                case EAGAIN, EWOULDBLOCK: return batch
                case ENOBUFS: batch.overflowed = true
                case 0, EINVAL, EPERM: if !hasData() { return batch }
                default:
                    batch.error = SystemError("udev_monitor_receive_device", errno: errno)
                    return batch
                }
                continue
            }
            let action = udev_device_get_action(d).map { String(cString: $0) } ?? "change"
            batch.events.append((action, UdevInventory.record(d)))
            udev_device_unref(d)
        }
    }

    private func hasData() -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return (try? syscall("poll") { poll(&p, 1, 0) }) ?? 0 > 0 && p.revents & Int16(POLLIN) != 0
    }
}

/// What udev does not tell: memory, CPU, GPU memory through the NVIDIA driver.
public enum HardwareProbe {
    /// The profile of `devices` on this machine (/proc/meminfo, /proc/cpuinfo).
    public static func profile(_ devices: [DeviceRecord]) -> HardwareProfile {
        let ram = readTextFile("/proc/meminfo").flatMap(parseMemTotal) ?? 0
        let cpu = CPUInfo.parse(readTextFile("/proc/cpuinfo") ?? "")
        return HardwareProfile(devices: devices, ramBytes: ram, cpu: cpu)
    }

    /// Fills in NVIDIA cards' memory from NVML, when the box has such a card driven by the
    /// proprietary driver (which ships libnvidia-ml.so.1); nothing is loaded otherwise.
    public static func addDriverMemory(_ devices: inout [DeviceRecord]) {
        let nvidia = devices.indices.filter {
            devices[$0].subsystem == "pci" && devices[$0].vendorId == "10de" && devices[$0].driver == "nvidia"
                && devices[$0].memoryBytes == nil
        }
        guard !nvidia.isEmpty else { return }
        var found = [aibox_gpu_memory](repeating: aibox_gpu_memory(), count: 16)
        let n = aibox_nvml_memory(&found, Int32(found.count))
        guard n > 0 else { return }
        for g in found.prefix(Int(n)) {
            let address = withUnsafeBytes(of: g.pci_address) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            for i in nvidia where devices[i].syspath.hasSuffix("/" + address) { devices[i].memoryBytes = g.total_bytes }
        }
    }

    /// Enumeration, driver memory, profile: what `aibox hardware` and the daemon start from.
    public static func scan() -> (devices: [DeviceRecord], profile: HardwareProfile) {
        var devices = UdevInventory.enumerate()
        addDriverMemory(&devices)
        return (devices, profile(devices))
    }
}

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

    /// Every device of `subsystems`; an unreadable device is skipped, a garbled one listed as it is.
    public static func enumerate(subsystems: [String] = subsystems) -> [DeviceRecord] {
        guard let udev = udev_new() else { return [] }
        defer { udev_unref(udev) }
        guard let enumerate = udev_enumerate_new(udev) else { return [] }
        defer { udev_enumerate_unref(enumerate) }
        for s in subsystems { udev_enumerate_add_match_subsystem(enumerate, s) }
        udev_enumerate_scan_devices(enumerate)
        var records: [DeviceRecord] = []
        var entry = udev_enumerate_get_list_entry(enumerate)
        while let e = entry {
            if let path = udev_list_entry_get_name(e), let device = udev_device_new_from_syspath(udev, path) {
                records.append(record(device))
                udev_device_unref(device)
            }
            entry = udev_list_entry_get_next(e)
        }
        return records
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
        return DeviceRecord(
            subsystem: subsystem,
            syspath: string(udev_device_get_syspath(d)) ?? "",
            devtype: string(udev_device_get_devtype(d)),
            devnode: string(udev_device_get_devnode(d)),
            vendorId: vendor,
            productId: product,
            pciClass: subsystem == "pci" ? (property("PCI_CLASS") ?? attribute("class")) : nil,
            driver: string(udev_device_get_driver(d)) ?? property("DRIVER"),
            model: property("ID_MODEL_FROM_DATABASE") ?? property("ID_MODEL") ?? attribute("product"),
            idPath: property("ID_PATH"),
            properties: properties)
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

    public init?(subsystems: [String] = UdevInventory.subsystems) {
        guard let udev = udev_new() else { return nil }
        let source = access("/run/udev/control", F_OK) == 0 || getenv("UMOCKDEV_DIR") != nil ? "udev" : "kernel"
        guard let monitor = udev_monitor_new_from_netlink(udev, source) else {
            udev_unref(udev)
            return nil
        }
        for s in subsystems { udev_monitor_filter_add_match_subsystem_devtype(monitor, s, nil) }
        guard udev_monitor_enable_receiving(monitor) >= 0 else {
            udev_monitor_unref(monitor)
            udev_unref(udev)
            return nil
        }
        self.udev = udev
        self.monitor = monitor
        self.source = source
        fd = udev_monitor_get_fd(monitor)
        _ = aibox_set_nonblocking(fd)
    }

    deinit {
        udev_monitor_unref(monitor)
        udev_unref(udev)
    }

    /// Every waiting event: its action ("add", "remove", "change", "bind", …) and the device.
    public func receiveAll() -> [(action: String, device: DeviceRecord)] {
        var out: [(String, DeviceRecord)] = []
        while let d = udev_monitor_receive_device(monitor) {
            let action = udev_device_get_action(d).map { String(cString: $0) } ?? "change"
            out.append((action, UdevInventory.record(d)))
            udev_device_unref(d)
        }
        return out
    }
}

/// Following the hardware over time (issue 3): what changed between two inventories, which
/// capabilities the supervisor acts on while devices come and go, and the provisioning
/// volumes the first-boot part looks for. Pure: time is passed in.

/// What changed between two inventories. Devices are matched by ID_PATH when they have one
/// (a Coral USB re-enumerates with new ids after its firmware load: the same device), else
/// by syspath. A device at the same place with other ids is `changed` (a GPU swapped in the
/// same slot) — except the Coral's two ids, which are one device.
public struct InventoryDiff: Sendable, Equatable {
    public var added: [DeviceRecord] = []
    public var removed: [DeviceRecord] = []
    public var changed: [(old: DeviceRecord, new: DeviceRecord)] = []

    public var isEmpty: Bool { added.isEmpty && removed.isEmpty && changed.isEmpty }

    static func identity(_ d: DeviceRecord) -> String {
        d.idPath.map { "\(d.subsystem)|\($0)|\(d.devtype ?? "")" } ?? "\(d.subsystem)|\(d.syspath)"
    }

    static func ids(_ d: DeviceRecord) -> String {
        let ids = "\(d.vendorId ?? ""):\(d.productId ?? "")"
        return HardwareClassifier.coralUSB.contains(ids) ? "coral-usb" : ids
    }

    public init(old: [DeviceRecord], new: [DeviceRecord]) {
        var oldByID: [String: DeviceRecord] = [:]
        for d in old { oldByID[InventoryDiff.identity(d)] = d }
        var seen: Set<String> = []
        for d in new {
            let id = InventoryDiff.identity(d)
            seen.insert(id)
            if let o = oldByID[id] {
                if InventoryDiff.ids(o) != InventoryDiff.ids(d) { changed.append((o, d)) }
            } else {
                added.append(d)
            }
        }
        removed = old.filter { !seen.contains(InventoryDiff.identity($0)) }
    }

    public static func == (a: InventoryDiff, b: InventoryDiff) -> Bool {
        a.added == b.added && a.removed == b.removed && a.changed.map(\.old) == b.changed.map(\.old)
            && a.changed.map(\.new) == b.changed.map(\.new)
    }

    /// One line for an event: "added usb 18d1:9302 Coral at pci-0000:00:14.0-usb-0:1; removed …".
    public var summary: String {
        var parts: [String] = []
        if !added.isEmpty { parts.append("added " + added.map(\.shortDescription).joined(separator: ", ")) }
        if !removed.isEmpty { parts.append("removed " + removed.map(\.shortDescription).joined(separator: ", ")) }
        if !changed.isEmpty {
            parts.append("changed " + changed.map { "\($0.old.shortDescription) → \($0.new.ids)" }.joined(separator: ", "))
        }
        return parts.joined(separator: "; ")
    }
}

extension DeviceRecord {
    /// "vendor:product", "?" where unknown.
    public var ids: String { "\(vendorId ?? "?"):\(productId ?? "?")" }

    /// "pci 10de:2684 AD102 [GeForce RTX 4090] at pci-0000:01:00.0": enough to find it.
    public var shortDescription: String {
        var s = subsystem.isEmpty ? "unknown" : subsystem
        if vendorId != nil || productId != nil { s += " " + ids }
        if let model { s += " " + model }
        return s + " at " + (idPath ?? syspath)
    }
}

/// Which capabilities the supervisor acts on while devices come and go.
///
/// A capability that appears counts at once: starting a worker that waits for it is what the
/// owner plugged the device in for. One that disappears counts only after `grace`: a device
/// that resets or re-enumerates (the Coral USB does so when its runtime loads the firmware —
/// it leaves and comes back as another USB device within a second or so) must not stop the
/// worker that just caused it. A capability back within the grace period was never lost.
public struct CapabilityGate: Sendable, Equatable {
    public static let defaultGrace: Duration = .seconds(2)

    /// What workers are gated on.
    public private(set) var effective: Set<String> = []
    /// Capabilities gone from the devices, with when they went; still in `effective`.
    public private(set) var goneSince: [String: Instant] = [:]
    public let grace: Duration

    public init(grace: Duration = CapabilityGate.defaultGrace) { self.grace = grace }

    /// The devices now give `live`. Returns what became effective at once (gained).
    @discardableResult
    public mutating func observe(_ live: Set<String>, now: Instant) -> Set<String> {
        let gained = live.subtracting(effective)
        effective.formUnion(live)
        for c in live { goneSince[c] = nil }
        for c in effective.subtracting(live) where goneSince[c] == nil { goneSince[c] = now }
        return gained
    }

    /// Drops what has been gone for `grace`; returns what was dropped.
    public mutating func expire(now: Instant) -> Set<String> {
        var lost: Set<String> = []
        for (c, since) in goneSince where since + grace <= now {
            lost.insert(c)
            goneSince[c] = nil
            effective.remove(c)
        }
        return lost
    }

    /// When `expire` has something to do next.
    public var nextDeadline: Instant? { goneSince.values.min().map { $0 + grace } }
}

/// A removable file system that may carry a seed for first boot: labelled `AIBOX` (ours) or
/// `CIDATA` (cloud-init's NoCloud convention; FAT labels are upper case, ISO images often
/// lower case — matched without regard to case).
public struct ProvisioningVolume: Codable, Sendable, Equatable, Hashable {
    public static let labels: Set<String> = ["AIBOX", "CIDATA"]

    public var label: String
    /// /dev/sdb1, what a mount needs.
    public var devnode: String
    public var syspath: String
    /// vfat, iso9660, ext4 … as blkid (through udev's ID_FS_TYPE) tells it.
    public var fsType: String?

    public init(label: String, devnode: String, syspath: String, fsType: String?) {
        self.label = label
        self.devnode = devnode
        self.syspath = syspath
        self.fsType = fsType
    }

    /// The volume on `device`, when it is a block device with a file system labelled AIBOX or
    /// CIDATA. Needs udev's properties (the "udev" monitor source; the kernel's carries no label).
    public static func on(_ device: DeviceRecord) -> ProvisioningVolume? {
        guard device.subsystem == "block", let node = device.devnode,
            let label = device.properties["ID_FS_LABEL"], labels.contains(label.uppercased())
        else { return nil }
        return ProvisioningVolume(label: label, devnode: node, syspath: device.syspath, fsType: device.properties["ID_FS_TYPE"])
    }
}

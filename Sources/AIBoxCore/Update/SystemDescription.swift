/// `usr/lib/aibox/system.toml`, shipped in the image: what the box is and where its slots are
/// (RAUC's system.conf plays this part there). Pure: the caller reads the file.
public struct SystemDescription: Equatable, Sendable {
    public enum Bootloader: String, Sendable, CaseIterable {
        /// A file-backed environment: development and tests (the boot simulator applies the rule).
        case file
        /// GRUB's environment block through grub-editenv (image/boot/grub-aibox.cfg reads it).
        case grub
        /// U-Boot's environment through fw_setenv -s / fw_printenv.
        case uboot
    }

    public struct Slot: Equatable, Sendable {
        public var name: SlotName
        /// A block device on a real box; an image file in development and tests.
        public var device: String
    }

    public var compatible: String
    public var bootloader: Bootloader
    /// The file backend's environment (two copies: PATH.0 and PATH.1); GRUB's grubenv file.
    public var bootEnv: String
    public var bootTries: Int
    public var slots: [Slot]
    /// How long every critical worker must have been ready and stable before a slot on
    /// trial is marked good.
    public var commitAfter: Duration
    /// A slot still not good this long after booting is marked bad and the box reboots.
    public var commitDeadline: Duration
    /// How often the update feed is looked at (box.toml [updates] feed-url, automatic = true).
    public var feedInterval: Duration = .seconds(6 * 3600)
    /// The CA (PEM) of a private update server, trusted for https instead of the system's store.
    public var updateCA: String?

    public static let defaultBootEnv = "/var/lib/aibox/bootenv"

    public func slot(_ name: SlotName) -> Slot? { slots.first { $0.name == name } }

    /// Every problem at once, each `FILE:LINE: key: message`.
    public static func parse(_ text: String, path: String) -> Result<SystemDescription, ConfigErrors> {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch {
            return .failure(ConfigErrors([ConfigError(file: path, line: error.position.line, key: nil, message: error.description)]))
        }
        var errors: [ConfigError] = []
        func fail(_ key: String, _ message: String, in t: TOMLTable = table, name: String? = nil) {
            errors.append(ConfigError(file: path, line: t.line(of: name ?? key), key: key, message: message))
        }
        let known = [
            "compatible", "bootloader", "boot-env", "boot-tries", "slot", "commit-after", "commit-deadline", "feed-interval", "update-ca",
        ]
        for k in table.keys where !known.contains(k) { fail(k, "unknown key; known keys are \(known.joined(separator: ", "))") }

        var compatible = ""
        if let c = table["compatible"]?.string, !c.isEmpty, c.utf8.count <= 64,
            c.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D || $0 == 0x2E || $0 == 0x5F })
        {
            compatible = c
        } else {
            fail("compatible", "expected the box model's name (lower case, digits, - . _; at most 64), such as \"aibox-x86-64\"")
        }
        var bootloader = Bootloader.file
        if let v = table["bootloader"] {
            if let b = v.string.flatMap(Bootloader.init(rawValue:)) {
                bootloader = b
            } else {
                fail("bootloader", "expected one of \(Bootloader.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }
        var bootEnv = defaultBootEnv
        if let v = table["boot-env"] {
            if let s = v.string, s.hasPrefix("/"), !s.contains("/../"), !s.hasSuffix("/..") {
                bootEnv = s
            } else {
                fail("boot-env", "expected an absolute path")
            }
        }
        var tries = 3
        if let v = table["boot-tries"] {
            if let n = v.int, (1...BootEnvironment.maxTries).contains(n) {
                tries = n
            } else {
                fail("boot-tries", "expected 1…\(BootEnvironment.maxTries)")
            }
        }
        func duration(_ key: String, _ fallback: Duration) -> Duration {
            guard let v = table[key] else { return fallback }
            if let s = v.string, let d = parseDuration(s), d > .zero { return d }
            fail(key, "expected a duration such as \"5m\"")
            return fallback
        }
        let commitAfter = duration("commit-after", .seconds(300))
        let commitDeadline = duration("commit-deadline", .seconds(1800))
        let feedInterval = duration("feed-interval", .seconds(6 * 3600))
        var updateCA: String?
        if let v = table["update-ca"] {
            if let s = v.string, s.hasPrefix("/"), !s.contains("/../") {
                updateCA = s
            } else {
                fail("update-ca", "expected an absolute path to a PEM file")
            }
        }
        if commitDeadline <= commitAfter { fail("commit-deadline", "must be longer than commit-after (\(commitAfter.aiboxText))") }

        var slots: [Slot] = []
        if let slotTable = table["slot"]?.table {
            for name in slotTable.keys {
                guard BootEnvironment.isSlotName(name) else {
                    fail("slot.\(name)", "slot names are upper-case letters, such as A and B", in: slotTable, name: name)
                    continue
                }
                guard let t = slotTable[name]?.table, let device = t["device"]?.string, device.hasPrefix("/") else {
                    fail(
                        "slot.\(name).device",
                        "expected device = \"/dev/disk/by-partlabel/root-\(name.lowercased())\" (or an image file's absolute path)",
                        in: slotTable, name: name)
                    continue
                }
                for k in t.keys where k != "device" { fail("slot.\(name).\(k)", "unknown key; a slot has only device", in: t, name: k) }
                slots.append(Slot(name: name, device: device))
            }
        }
        if slots.count != 2 {
            errors.append(
                ConfigError(
                    file: path, line: nil, key: "slot", message: "expected exactly two slots, [slot.A] and [slot.B]; found \(slots.count)"))
        } else if slots[0].device == slots[1].device {
            fail("slot", "the two slots name the same device")
        }
        guard errors.isEmpty else { return .failure(ConfigErrors(errors)) }
        var d = SystemDescription(
            compatible: compatible, bootloader: bootloader, bootEnv: bootEnv, bootTries: tries, slots: slots,
            commitAfter: commitAfter, commitDeadline: commitDeadline)
        d.feedInterval = feedInterval
        d.updateCA = updateCA
        return .success(d)
    }
}

import Foundation
import Testing

@testable import AIBoxCore

@Suite struct SystemDescriptionTests {
    static let good = """
        compatible = "aibox-x86-64"
        bootloader = "file"
        boot-env = "/var/lib/aibox/bootenv"
        boot-tries = 3

        [slot.A]
        device = "/dev/disk/by-partlabel/root-a"
        [slot.B]
        device = "/dev/disk/by-partlabel/root-b"
        """

    @Test func designsExampleParsesWithDefaults() throws {
        let d = try SystemDescription.parse(Self.good, path: "system.toml").get()
        #expect(d.compatible == "aibox-x86-64" && d.bootloader == .file && d.bootTries == 3)
        #expect(d.slots.map(\.name) == ["A", "B"])
        #expect(d.slot("B")?.device == "/dev/disk/by-partlabel/root-b")
        #expect(d.commitAfter == .seconds(300) && d.commitDeadline == .seconds(1800))
    }

    @Test(arguments: [
        ("compatible = \"Bad Name\"", "compatible"),
        ("bootloader = \"lilo\"", "bootloader"),
        ("boot-tries = 12", "boot-tries"),
        ("boot-env = \"relative/path\"", "boot-env"),
        ("commit-after = \"soon\"", "commit-after"),
        ("colour = \"blue\"", "colour"),
    ])
    func badValuesAreNamed(line: String, key: String) {
        let text = Self.good.replacingFirst(
            of: key == "colour" ? "boot-tries = 3" : Self.lineOf(key), with: line + (key == "colour" ? "\nboot-tries = 3" : ""))
        guard case .failure(let errors) = SystemDescription.parse(text, path: "system.toml") else {
            Issue.record("accepted \(line)")
            return
        }
        #expect(errors.errors.contains { $0.key == key && $0.location.line != nil }, "\(errors)")
    }

    static func lineOf(_ key: String) -> String {
        switch key {
        case "compatible": return "compatible = \"aibox-x86-64\""
        case "bootloader": return "bootloader = \"file\""
        case "boot-tries": return "boot-tries = 3"
        case "boot-env": return "boot-env = \"/var/lib/aibox/bootenv\""
        default: return "boot-tries = 3"
        }
    }

    @Test func slotsMustBeTwoDistinctDevices() {
        let one = "compatible = \"x\"\n[slot.A]\ndevice = \"/dev/a\"\n"
        guard case .failure(let e1) = SystemDescription.parse(one, path: "s") else {
            Issue.record("one slot accepted")
            return
        }
        #expect(e1.description.contains("exactly two slots"))
        let same = "compatible = \"x\"\n[slot.A]\ndevice = \"/dev/a\"\n[slot.B]\ndevice = \"/dev/a\"\n"
        guard case .failure(let e2) = SystemDescription.parse(same, path: "s") else {
            Issue.record("same device accepted")
            return
        }
        #expect(e2.description.contains("same device"))
        let lower = "compatible = \"x\"\n[slot.a]\ndevice = \"/dev/a\"\n[slot.B]\ndevice = \"/dev/b\"\n"
        guard case .failure(let e3) = SystemDescription.parse(lower, path: "s") else {
            Issue.record("slot a accepted")
            return
        }
        #expect(e3.description.contains("upper-case"))
    }
}

extension String {
    fileprivate func replacingFirst(of target: String, with replacement: String) -> String {
        guard let r = range(of: target) else { return self }
        return replacingCharacters(in: r, with: replacement)
    }
}

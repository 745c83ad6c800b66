import AIBoxCore
import AIBoxSystem
import ArgumentParser
import FoundationEssentials
import Glibc

/// `aibox hardware --json`: one device as listed.
struct DeviceView: Encodable {
    var subsystem: String
    var syspath: String
    var vendorId: String?
    var productId: String?
    var model: String?
    var driver: String?
    var capabilities: [String]

    enum CodingKeys: String, CodingKey { case subsystem, syspath, vendorId, productId, model, driver, capabilities }

    // Explicit nulls: every field is always present.
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(subsystem, forKey: .subsystem)
        try c.encode(syspath, forKey: .syspath)
        try c.encode(vendorId, forKey: .vendorId)
        try c.encode(productId, forKey: .productId)
        try c.encode(model, forKey: .model)
        try c.encode(driver, forKey: .driver)
        try c.encode(capabilities, forKey: .capabilities)
    }
}

struct HardwareView: Encodable {
    var devices: [DeviceView]
    var capabilities: [String]
    var ramBytes: UInt64
    var gpuMemoryBytes: UInt64?
    var cpu: CPUInfo
    var localLlmTier: LocalLLMTier

    enum CodingKeys: String, CodingKey { case devices, capabilities, ramBytes, gpuMemoryBytes, cpu, localLlmTier }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(devices, forKey: .devices)
        try c.encode(capabilities, forKey: .capabilities)
        try c.encode(ramBytes, forKey: .ramBytes)
        try c.encode(gpuMemoryBytes, forKey: .gpuMemoryBytes)
        try c.encode(cpu, forKey: .cpu)
        try c.encode(localLlmTier, forKey: .localLlmTier)
    }
}

struct Hardware: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The hardware inventory and the capability profile.")
    @OptionGroup var options: RootOptions
    @Flag(help: "One JSON document on stdout.") var json = false

    func run() throws {
        let devices = UdevInventory.enumerate()
        let ram = readTextFile("/proc/meminfo").flatMap(parseMemTotal) ?? 0
        let cpu = CPUInfo.parse(readTextFile("/proc/cpuinfo") ?? "")
        let profile = HardwareProfile(devices: devices, ramBytes: ram, gpuMemoryBytes: Hardware.gpuMemory(devices), cpu: cpu)
        let views = devices.map { d in
            DeviceView(
                subsystem: d.subsystem, syspath: d.syspath, vendorId: d.vendorId, productId: d.productId, model: d.model,
                driver: d.driver, capabilities: HardwareClassifier.capabilities(of: d).sorted().map(\.rawValue))
        }
        if json {
            printJSON(
                HardwareView(
                    devices: views, capabilities: profile.capabilities, ramBytes: profile.ramBytes,
                    gpuMemoryBytes: profile.gpuMemoryBytes, cpu: profile.cpu, localLlmTier: profile.localLlmTier))
            return
        }
        print("profile: \(profile.summary)")
        print("cpu:     \(cpu.model ?? "unknown"), \(cpu.cores) cores\(cpu.flags.isEmpty ? "" : ", " + cpu.flags.joined(separator: " "))")
        print("")
        for v in views {
            let ids = v.vendorId.map { "\($0):\(v.productId ?? "?")" } ?? "-"
            print(
                "\(v.subsystem.padded(to: 12)) \(ids.padded(to: 10)) \((v.model ?? "-").padded(to: 32)) \(v.capabilities.joined(separator: " "))"
            )
        }
    }

    /// Dedicated GPU memory where the driver tells it in sysfs (amdgpu: mem_info_vram_total).
    static func gpuMemory(_ devices: [DeviceRecord]) -> UInt64? {
        let sizes = devices.filter { $0.subsystem == "drm" }.compactMap { d in
            readTextFile(d.syspath + "/device/mem_info_vram_total").flatMap { UInt64($0.trimmingCharacters(in: " \n")) }
        }
        return sizes.max()
    }
}

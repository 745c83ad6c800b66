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
    static let configuration = CommandConfiguration(
        abstract: "The hardware inventory and the capability profile.",
        discussion: """
            --watch prints a line for each device added or removed until interrupted (with --json, \
            one JSON object per line: action, device). It reads udev itself: the daemon need not run.
            """)
    @OptionGroup var options: RootOptions
    @Flag(help: "One JSON document on stdout (with --watch: one object per line).") var json = false
    @Flag(help: "Print devices as they are added and removed.") var watch = false

    static func view(_ d: DeviceRecord) -> DeviceView {
        DeviceView(
            subsystem: d.subsystem, syspath: d.syspath, vendorId: d.vendorId, productId: d.productId, model: d.model,
            driver: d.driver, capabilities: HardwareClassifier.capabilities(of: d).sorted().map(\.rawValue))
    }

    static func line(_ v: DeviceView) -> String {
        let ids = v.vendorId.map { "\($0):\(v.productId ?? "?")" } ?? "-"
        return
            "\(v.subsystem.padded(to: 12)) \(ids.padded(to: 10)) \((v.model ?? "unknown").padded(to: 32)) \(v.capabilities.joined(separator: " "))"
    }

    func run() throws {
        if watch { return try watchHotplug() }
        let (devices, profile) = HardwareProbe.scan()
        let views = devices.map(Hardware.view)
        if json {
            printJSON(
                HardwareView(
                    devices: views, capabilities: profile.capabilities, ramBytes: profile.ramBytes,
                    gpuMemoryBytes: profile.gpuMemoryBytes, cpu: profile.cpu, localLlmTier: profile.localLlmTier))
            return
        }
        let cpu = profile.cpu
        print("profile: \(profile.summary)")
        print("cpu:     \(cpu.model ?? "unknown"), \(cpu.cores) cores\(cpu.flags.isEmpty ? "" : ", " + cpu.flags.joined(separator: " "))")
        print("")
        for v in views { print(Hardware.line(v)) }
    }

    struct WatchEvent: Encodable {
        var action: String
        var device: DeviceView
        var provisioningVolume: ProvisioningVolume?

        enum CodingKeys: String, CodingKey { case action, device, provisioningVolume }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(action, forKey: .action)
            try c.encode(device, forKey: .device)
            try c.encode(provisioningVolume, forKey: .provisioningVolume)
        }
    }

    private func watchHotplug() throws {
        let monitor: UdevMonitor
        do {
            monitor = try UdevMonitor()
        } catch {
            writeStandardError("aibox: cannot watch hotplug: \(error)\n")
            throw ExitCode(1)
        }
        if !json { writeStandardError("watching hotplug (\(monitor.source) source); Ctrl-C ends\n") }
        var encoder: JSONEncoder {
            let e = JSONEncoder()
            e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return e
        }
        while true {
            var p = pollfd(fd: monitor.fd, events: Int16(POLLIN), revents: 0)
            guard (try? syscall("poll") { poll(&p, 1, -1) }) != nil else { throw ExitCode(1) }
            let batch = monitor.receiveAll()
            if batch.overflowed { writeStandardError("aibox: the kernel dropped hotplug events (buffer full)\n") }
            if let e = batch.error {
                writeStandardError("aibox: hotplug monitor failed: \(e)\n")
                throw ExitCode(1)
            }
            for (action, device) in batch.events where action == "add" || action == "remove" {
                let v = Hardware.view(device)
                let volume = ProvisioningVolume.on(device)
                if json {
                    let data = try encoder.encode(WatchEvent(action: action, device: v, provisioningVolume: volume))
                    writeStandardOutput(String(decoding: data, as: UTF8.self) + "\n")
                } else {
                    // Unbuffered: a reader on a pipe sees each line as it happens.
                    writeStandardOutput("\(action.padded(to: 7)) \(Hardware.line(v))  \(v.syspath)\n")
                    if let volume, action == "add" {
                        writeStandardOutput("        provisioning volume \(volume.label) on \(volume.devnode)\n")
                    }
                }
            }
        }
    }
}

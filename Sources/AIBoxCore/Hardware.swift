/// Hardware classification (issue 3): device records in, capabilities and a local-LLM tier
/// out. Pure: the records come from libudev and /proc through AIBoxSystem.

/// One device as udev (and sysfs) describe it. Every field may be missing or garbled:
/// such a device is listed, with no capability, never a crash.
public struct DeviceRecord: Codable, Sendable, Equatable {
    public var subsystem: String
    public var syspath: String
    public var devtype: String?
    public var devnode: String?
    /// Lower-case hex without prefix ("10de"), from ID_VENDOR_ID / PCI_ID / sysfs `vendor`.
    public var vendorId: String?
    public var productId: String?
    /// PCI class as 6 hex digits ("030000"), from PCI_CLASS or sysfs `class`.
    public var pciClass: String?
    public var driver: String?
    public var model: String?
    /// ID_PATH: where the device sits; stable across a USB device's re-enumeration (the Coral
    /// changes its ids once its firmware is loaded).
    public var idPath: String?
    /// Dedicated memory of a GPU or accelerator, where sysfs (amdgpu's `mem_info_vram_total`)
    /// or the driver (NVIDIA's NVML) tells it.
    public var memoryBytes: UInt64?
    /// Other properties worth keeping (ID_BUS, ID_FS_LABEL, ID_TYPE, DEVTYPE of net, …).
    public var properties: [String: String]
    /// A network interface as the kernel describes it in sysfs, with or without udev's
    /// properties (nil for other subsystems).
    public var net: NetInterfaceFacts?

    public init(
        subsystem: String, syspath: String, devtype: String? = nil, devnode: String? = nil, vendorId: String? = nil,
        productId: String? = nil, pciClass: String? = nil, driver: String? = nil, model: String? = nil, idPath: String? = nil,
        memoryBytes: UInt64? = nil, properties: [String: String] = [:], net: NetInterfaceFacts? = nil
    ) {
        self.subsystem = subsystem
        self.syspath = syspath
        self.devtype = devtype
        self.devnode = devnode
        self.vendorId = vendorId.map(HardwareClassifier.normalizeHex)
        self.productId = productId.map(HardwareClassifier.normalizeHex)
        self.pciClass = pciClass.map(HardwareClassifier.pciClass)
        self.driver = driver
        self.model = model
        self.idPath = idPath
        self.memoryBytes = memoryBytes
        self.properties = properties
        self.net = net
    }
}

/// What the kernel itself says of a network interface (sysfs), where udev may have added
/// nothing (a minimal udev database, the kernel's hotplug source).
public struct NetInterfaceFacts: Codable, Sendable, Equatable {
    /// The link type, ARPHRD_* from `type`: 1 (ARPHRD_ETHER) for Ethernet and Wi-Fi alike.
    public var type: Int?
    /// A `device` link: the interface sits on a physical device (PCI, USB, SoC). Virtual
    /// ones — veth, bridge, bond, tun/tap, VLAN, loopback — have none.
    public var hasParentDevice: Bool
    /// A `wireless` directory or `phy80211` link: a Wi-Fi interface.
    public var isWireless: Bool

    public static let ethernetType = 1

    public init(type: Int?, hasParentDevice: Bool, isWireless: Bool) {
        self.type = type
        self.hasParentDevice = hasParentDevice
        self.isWireless = isWireless
    }
}

/// The named capabilities workers can require (`requires-hardware`).
public enum Capability: String, Sendable, Codable, CaseIterable, Comparable {
    case gpu, gpuNvidia = "gpu.nvidia", gpuAmd = "gpu.amd", gpuIntel = "gpu.intel"
    case npu, tpuCoral = "tpu.coral", camera
    case audioIn = "audio.in", audioOut = "audio.out"
    case serial, usbStorage = "usb-storage", netWifi = "net.wifi", netEthernet = "net.ethernet"
    /// Of the box, not of a device: the local-LLM tier is above `none` (the local model's worker requires it).
    case llmLocal = "llm-local"

    public static func < (a: Capability, b: Capability) -> Bool { a.rawValue < b.rawValue }
}

/// How large a language model this box can run locally.
public enum LocalLLMTier: String, Sendable, Codable, CaseIterable, Comparable {
    case none, small, medium, large

    public static func < (a: LocalLLMTier, b: LocalLLMTier) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

public enum HardwareClassifier {
    static let nvidia = "10de", amd = "1002", intel = "8086"
    /// Google Coral USB accelerator before (1a6e:089a) and after (18d1:9302) its firmware load.
    static let coralUSB: Set<String> = ["1a6e:089a", "18d1:9302"]
    /// Coral PCIe / M.2 (Google 1ac1:089a); Hailo-8 (1e60:2864).
    static let coralPCI = "1ac1:089a", hailoPCI = "1e60:2864"

    /// udev writes PCI_CLASS without leading zeros ("30000"), sysfs with "0x": always six
    /// lower-case digits here ("030000").
    public static func pciClass(_ raw: String) -> String {
        let hex = normalizeHex(raw)
        return String(repeating: "0", count: max(0, 6 - hex.count)) + hex
    }

    static func normalizeHex(_ s: String) -> String {
        var t = Substring(s.lowercased())
        if t.hasPrefix("0x") { t = t.dropFirst(2) }
        return String(t)
    }

    /// The capabilities one device gives.
    public static func capabilities(of d: DeviceRecord) -> Set<Capability> {
        var caps: Set<Capability> = []
        let vendor = d.vendorId ?? ""
        let ids = "\(vendor):\(d.productId ?? "")"
        switch d.subsystem {
        case "pci":
            guard let cls = d.pciClass, cls.count >= 2 else { break }
            if cls.hasPrefix("03") {  // display controller: VGA, 3D
                caps.insert(.gpu)
                switch vendor {
                case nvidia: caps.insert(.gpuNvidia)
                case amd: caps.insert(.gpuAmd)
                case intel: caps.insert(.gpuIntel)
                default: break
                }
            } else if cls.hasPrefix("12") {  // processing accelerator
                caps.insert(ids == coralPCI ? .tpuCoral : .npu)
            }
            if ids == coralPCI { caps.insert(.tpuCoral) }
            if ids == hailoPCI { caps.insert(.npu) }
        case "accel":
            caps.insert(.npu)
        case "apex":
            caps.insert(.tpuCoral)
        case "hailo_chardev", "hailo":
            caps.insert(.npu)
        case "usb":
            if d.devtype == nil || d.devtype == "usb_device", coralUSB.contains(ids) { caps.insert(.tpuCoral) }
        case "video4linux":
            // Capture devices only; ID_V4L_CAPABILITIES lists ":capture:".
            if d.properties["ID_V4L_CAPABILITIES"].map({ $0.contains(":capture:") }) ?? true { caps.insert(.camera) }
        case "sound":
            // ALSA PCM nodes: pcmC0D0c captures, pcmC0D0p plays.
            if let node = d.devnode?.split(separator: "/").last, node.hasPrefix("pcmC") {
                if node.hasSuffix("c") { caps.insert(.audioIn) }
                if node.hasSuffix("p") { caps.insert(.audioOut) }
            }
        case "tty":
            // Real serial ports: a driver behind them (not the 32 legacy placeholders without one).
            if d.driver != nil || d.properties["ID_BUS"] == "usb" { caps.insert(.serial) }
        case "block":
            if d.properties["ID_BUS"] == "usb" && (d.devtype == "disk" || d.devtype == "partition") { caps.insert(.usbStorage) }
        case "net":
            let kernel = d.net
            if d.devtype == "wlan" || d.properties["DEVTYPE"] == "wlan" || kernel?.isWireless == true {
                caps.insert(.netWifi)
            } else if d.devtype == nil && d.properties["ID_NET_NAME_PATH"] != nil || d.properties["ID_BUS"] == "pci"
                || d.properties["ID_BUS"] == "usb"
            {
                caps.insert(.netEthernet)
            } else if let k = kernel, k.type == NetInterfaceFacts.ethernetType, k.hasParentDevice, d.devtype == nil,
                d.properties["DEVTYPE"] == nil
            {
                // Without udev's naming: an Ethernet link on a physical device, and no DEVTYPE
                // (which bridges, bonds, VLANs, USB gadgets and modems carry).
                caps.insert(.netEthernet)
            }
        default:
            break
        }
        return caps
    }

    /// The local-LLM tier from memory (docs/HARDWARE.md explains the table).
    ///
    /// | tier | needs | runs well (4-bit quantised, e.g. Q4_K_M) |
    /// |---|---|---|
    /// | large | GPU memory ≥ 20 GiB, or RAM ≥ 48 GiB | 27–34 B models (≈ 17–20 GiB weights + KV cache) |
    /// | medium | GPU memory ≥ 8 GiB, or RAM ≥ 12 GiB | 7–9 B models (≈ 4.5–5.5 GiB + cache) |
    /// | small | RAM ≥ 6 GiB | 1–4 B models (≈ 1–2.5 GiB + cache) |
    /// | none | less | no local model: cloud providers only |
    public static func localLLMTier(ramBytes: UInt64, gpuMemoryBytes: UInt64?) -> LocalLLMTier {
        let gib: UInt64 = 1 << 30
        let gpu = gpuMemoryBytes ?? 0
        if gpu >= 20 * gib || ramBytes >= 48 * gib { return .large }
        if gpu >= 8 * gib || ramBytes >= 12 * gib { return .medium }
        if ramBytes >= 6 * gib { return .small }
        return .none
    }
}

/// What /proc/cpuinfo says: model, cores, and the flags that matter for local inference.
public struct CPUInfo: Codable, Sendable, Equatable {
    public var model: String?
    public var cores: Int
    /// avx2, avx512f, neon … (x86 `flags`, ARM `Features`; ARM's `asimd` is reported as neon too).
    public var flags: [String]

    public init(model: String?, cores: Int, flags: [String]) {
        self.model = model
        self.cores = cores
        self.flags = flags
    }

    static let interesting: Set<String> = [
        "avx", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "f16c", "fma", "neon", "asimd", "sve", "i8mm", "dotprod", "asimddp",
    ]

    /// Parses /proc/cpuinfo text (x86 and ARM layouts).
    public static func parse(_ text: String) -> CPUInfo {
        var model: String?
        var cores = 0
        var flags: Set<String> = []
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmingCharacters(in: " \t")
            let value = line[line.index(after: colon)...].trimmingCharacters(in: " \t")
            switch key {
            case "processor": cores += 1
            case "model name", "Model", "Hardware", "cpu model":
                if model == nil && !value.isEmpty { model = value }
            case "flags", "Features":
                for f in value.split(separator: " ") where interesting.contains(String(f)) { flags.insert(String(f)) }
            default: break
            }
        }
        if flags.contains("asimd") { flags.insert("neon") }
        return CPUInfo(model: model, cores: max(cores, 1), flags: flags.sorted())
    }
}

/// MemTotal from /proc/meminfo, in bytes; nil when absent or garbled.
public func parseMemTotal(_ text: String) -> UInt64? {
    for line in text.split(separator: "\n") where line.hasPrefix("MemTotal:") {
        let parts = line.dropFirst("MemTotal:".count).split(separator: " ")
        guard let kb = parts.first.flatMap({ UInt64($0) }) else { return nil }
        return parts.count > 1 && parts[1] == "kB" ? kb * 1024 : kb
    }
    return nil
}

/// The box in one value: what `aibox hardware --json` shows besides the devices.
public struct HardwareProfile: Codable, Sendable, Equatable {
    public var capabilities: [String]
    public var ramBytes: UInt64
    public var gpuMemoryBytes: UInt64?
    public var cpu: CPUInfo
    public var localLlmTier: LocalLLMTier

    /// GPU memory is the largest dedicated memory of one GPU: a model is loaded onto one card
    /// (splitting across cards works, but slowly; the tier stays conservative).
    public init(devices: [DeviceRecord], ramBytes: UInt64, cpu: CPUInfo) {
        var caps: Set<Capability> = []
        var gpuMemoryBytes: UInt64?
        for d in devices {
            let c = HardwareClassifier.capabilities(of: d)
            caps.formUnion(c)
            if c.contains(.gpu), let m = d.memoryBytes { gpuMemoryBytes = max(gpuMemoryBytes ?? 0, m) }
        }
        localLlmTier = HardwareClassifier.localLLMTier(ramBytes: ramBytes, gpuMemoryBytes: gpuMemoryBytes)
        if localLlmTier != .none { caps.insert(.llmLocal) }
        capabilities = caps.sorted().map(\.rawValue)
        self.ramBytes = ramBytes
        self.gpuMemoryBytes = gpuMemoryBytes
        self.cpu = cpu
    }

    /// One line for `aibox status`.
    public var summary: String {
        func gib(_ bytes: UInt64) -> Double { (Double(bytes) / Double(1 << 30) * 10).rounded() / 10 }
        let caps = capabilities.isEmpty ? "no accelerators" : capabilities.joined(separator: " ")
        let gpu = gpuMemoryBytes.map { "; GPU memory \(gib($0)) GiB" } ?? ""
        return "\(caps); RAM \(gib(ramBytes)) GiB\(gpu); local LLM \(localLlmTier.rawValue)"
    }
}

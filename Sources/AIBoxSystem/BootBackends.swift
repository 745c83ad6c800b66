import AIBoxCore
import CAIBoxOS
import Glibc

/// Where the boot environment lives (issue 5). The updater and the daemon read it, change it
/// with BootEnvironment's verbs, and store it back; the boot loader applies
/// `BootEnvironment.boot()`'s rule at power-on.
public protocol BootControl {
    func load() throws(SystemError) -> BootEnvironment
    func store(_ env: BootEnvironment) throws(SystemError)
    /// The slot running now: the kernel command line (`aibox.slot=`) on a real box, the
    /// environment's record under the file backend.
    func booted() -> SlotName?
}

extension BootControl {
    /// Reads, changes, writes back.
    public func update(_ change: (inout BootEnvironment) -> Void) throws(SystemError) {
        var env = try load()
        change(&env)
        try store(env)
    }
}

/// The slot named by `aibox.slot=` on the kernel command line, if any.
public func kernelCommandLineSlot(_ cmdline: String? = readTextFile("/proc/cmdline")) -> SlotName? {
    for word in (cmdline ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" }) where word.hasPrefix("aibox.slot=") {
        let s = String(word.dropFirst("aibox.slot=".count))
        if BootEnvironment.isSlotName(s) { return s }
    }
    return nil
}

/// Development and tests: two copies, PATH.0 and PATH.1, each with a sequence number and a
/// CRC; a write replaces the older copy by rename, so a power cut at any instant leaves a
/// valid environment (the previous or the new one). A missing environment is a fresh image.
public struct FileBootControl: BootControl {
    public let path: String
    public let slots: [SlotName]

    public init(path: String, slots: [SlotName] = ["A", "B"]) {
        self.path = path
        self.slots = slots
    }

    func copies() -> [[UInt8]?] { [readSmallFile(path + ".0", limit: 64 << 10), readSmallFile(path + ".1", limit: 64 << 10)] }

    public func load() throws(SystemError) -> BootEnvironment {
        let c = copies()
        if let chosen = BootEnvironmentFile.choose(c) { return chosen.env }
        if c.allSatisfy({ $0 == nil }) { return BootEnvironment(slots: slots) }
        throw SystemError("boot environment", errno: EIO, detail: "\(path).0 and \(path).1: neither copy is valid")
    }

    public func store(_ env: BootEnvironment) throws(SystemError) {
        let chosen = BootEnvironmentFile.choose(copies())
        let sequence = (chosen?.sequence ?? 0) + 1
        let target = chosen.map { $0.newest == 0 ? 1 : 0 } ?? 0
        try makeDirectories(parentDirectory(path))
        try writeFileAtomically("\(path).\(target)", BootEnvironmentFile.encode(env, sequence: sequence), mode: 0o644)
    }

    public func booted() -> SlotName? { (try? load())?.booted }
}

/// GRUB: the environment block (`/boot/grub/grubenv`) through `grub-editenv`, which rewrites
/// the 1 KiB block in place (GRUB itself does the same with save_env). The booted slot comes
/// from the kernel command line (image/boot/grub-aibox.cfg passes `aibox.slot=`).
public struct GrubBootControl: BootControl {
    public let envFile: String
    public var editenv = "/usr/bin/grub-editenv"
    public let slots: [SlotName]

    public init(envFile: String, slots: [SlotName] = ["A", "B"]) {
        self.envFile = envFile
        self.slots = slots
    }

    public func load() throws(SystemError) -> BootEnvironment {
        guard fileExists(envFile) else { return BootEnvironment(slots: slots) }
        let (status, output) = captureProgram([editenv, envFile, "list"])
        guard status == 0 else { throw SystemError("grub-editenv list", errno: EIO, detail: envFile) }
        if !output.contains("AIBOX_ORDER=") { return BootEnvironment(slots: slots) }
        switch BootEnvironment.parse(output) {
        case .success(let env): return env
        case .failure(let e): throw SystemError("grub environment", errno: EINVAL, detail: "\(envFile): \(e)")
        }
    }

    public func store(_ env: BootEnvironment) throws(SystemError) {
        if !fileExists(envFile) {
            guard captureProgram([editenv, envFile, "create"]).status == 0 else {
                throw SystemError("grub-editenv create", errno: EIO, detail: envFile)
            }
        }
        let assignments = env.variables.filter { $0.0 != "AIBOX_BOOTED" }.map { "\($0.0)=\($0.1)" }
        guard captureProgram([editenv, envFile, "set"] + assignments).status == 0 else {
            throw SystemError("grub-editenv set", errno: EIO, detail: envFile)
        }
    }

    public func booted() -> SlotName? { kernelCommandLineSlot() }
}

extension SystemDescription {
    /// The boot control of this description, its paths taken under `paths`' root.
    public func bootControl(_ paths: Paths) -> BootControl {
        let names = slots.map(\.name)
        switch bootloader {
        case .file: return FileBootControl(path: paths.under(String(bootEnv.dropFirst())), slots: names)
        case .grub: return GrubBootControl(envFile: paths.under(String(bootEnv.dropFirst())), slots: names)
        case .uboot:
            // boot-env names the fw_env.config for this backend.
            let config = bootEnv == SystemDescription.defaultBootEnv ? "/etc/fw_env.config" : bootEnv
            return UBootControl(slots: names, config: paths.under(String(config.dropFirst())))
        }
    }
}

/// U-Boot: `fw_printenv` reads, `fw_setenv -s SCRIPT` writes all variables at once
/// (libubootenv writes the environment's redundant copy, so the write is atomic as U-Boot's
/// own saveenv). The script format is libubootenv's (`NAME=VALUE` lines; Debian, Yocto).
/// `config` is the fw_env.config naming the environment's device and offsets (system.toml's
/// `boot-env` for this backend; default /etc/fw_env.config).
public struct UBootControl: BootControl {
    public let slots: [SlotName]
    public var config: String?
    /// A default environment for a device that holds none yet (first boot of a fresh image).
    public var defaultEnvironment: String?
    public var printenv = "/usr/bin/fw_printenv"
    public var setenv = "/usr/bin/fw_setenv"

    public init(slots: [SlotName] = ["A", "B"], config: String? = nil, defaultEnvironment: String? = nil) {
        self.slots = slots
        self.config = config
        self.defaultEnvironment = defaultEnvironment
    }

    var options: [String] {
        (config.map { ["-c", $0] } ?? []) + (defaultEnvironment.map { ["-f", $0] } ?? [])
    }

    public func load() throws(SystemError) -> BootEnvironment {
        let (status, output) = captureProgram([printenv] + options)
        guard status == 0 else { throw SystemError("fw_printenv", errno: EIO, detail: config) }
        if !output.contains("AIBOX_ORDER=") { return BootEnvironment(slots: slots) }
        switch BootEnvironment.parse(output) {
        case .success(let env): return env
        case .failure(let e): throw SystemError("u-boot environment", errno: EINVAL, detail: "\(e)")
        }
    }

    public func store(_ env: BootEnvironment) throws(SystemError) {
        var template = Array("/tmp/aibox-ubootenv-XXXXXX".utf8CString)
        let fd = try syscall("mkstemp", detail: "/tmp") { mkstemp(&template) }
        let script = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        defer { removeFileBestEffort(script) }
        let text = env.variables.filter { $0.0 != "AIBOX_BOOTED" }.map { "\($0.0)=\($0.1)\n" }.joined()
        do {
            try writeAll(fd, Array(text.utf8))
        } catch {
            closeDescriptor(fd)
            throw error
        }
        closeDescriptor(fd)
        guard captureProgram([setenv] + options + ["-s", script]).status == 0 else {
            throw SystemError("fw_setenv -s", errno: EIO, detail: config)
        }
    }

    public func booted() -> SlotName? { kernelCommandLineSlot() }
}

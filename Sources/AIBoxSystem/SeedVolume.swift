import AIBoxCore
import CAIBoxOS
import Crypto
import FoundationEssentials
import Glibc

/// A provisioning volume mounted for the time it takes to read its seed and write the report:
/// `nosuid,nodev,noexec`, read-write when the medium allows (for `aibox-report.txt`), else
/// read-only. A block device mounts as it is; an image file (development, umockdev's device
/// nodes) through a loop device that detaches itself on unmount.
public final class MountedVolume {
    public let mountPoint: String
    public let writable: Bool

    public init(_ volume: ProvisioningVolume, at mountPoint: String) throws(SystemError) {
        try makeDirectories(mountPoint, mode: 0o700)
        let fd = try syscall("open", detail: volume.devnode) { open(volume.devnode, O_RDWR | O_CLOEXEC | O_NONBLOCK) }
        defer { closeDescriptor(fd) }
        var st = stat()
        _ = try syscall("fstat", detail: volume.devnode) { fstat(fd, &st) }
        var source = volume.devnode
        var loopFD: Int32 = -1
        if st.st_mode & S_IFMT == S_IFREG {
            var name = [CChar](repeating: 0, count: 64)
            loopFD = try syscall("loop attach", detail: volume.devnode) { aibox_loop_attach(fd, 0, &name, name.count) }
            source = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        defer { if loopFD >= 0 { closeDescriptor(loopFD) } }
        let fsType = volume.fsType ?? "vfat"
        let flags = UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC)
        do {
            try syscall("mount", detail: "\(source) (\(fsType)) on \(mountPoint)") { mount(source, mountPoint, fsType, flags, nil) }
            writable = true
        } catch {
            guard error.errno == EROFS || error.errno == EACCES else { throw error }
            _ = try syscall("mount", detail: "\(source) (\(fsType), read-only) on \(mountPoint)") {
                mount(source, mountPoint, fsType, flags | UInt(MS_RDONLY), nil)
            }
            writable = false
        }
        self.mountPoint = mountPoint
    }

    /// Unmounts (lazily if something still holds it). The report was fsynced before: a volume
    /// that cannot be unmounted even lazily loses nothing, and the kernel lets it go with the stick.
    public func unmount() {
        do {
            try syscall("umount2", detail: mountPoint) { umount2(mountPoint, 0) }
        } catch {
            _ = try? syscall("umount2(MNT_DETACH)", detail: mountPoint) { umount2(mountPoint, Int32(MNT_DETACH)) }
        }
    }

    /// Writes a file on the volume: a temporary name, fsync, rename — a stick pulled out
    /// during the write keeps the old report or none, never half of one.
    public func writeReport(_ text: String, name: String = "aibox-report.txt") throws(SystemError) {
        guard writable else { throw SystemError("write", errno: EROFS, detail: mountPoint + "/" + name) }
        try writeFileAtomically(mountPoint + "/" + name, Array(text.utf8), mode: 0o644)
    }
}

/// Seeds for a box that is already provisioned must be signed: Ed25519 over the seed file's
/// bytes, in `aibox-seed.toml.sig` (64 raw bytes, or their base64), by a key whose public
/// half is in `usr/lib/aibox/keys/provisioning/*.pub` (base64 of the 32-byte key, or the
/// PEM `openssl pkey -pubout` writes).
public enum SeedSignature {
    public static let fileName = "aibox-seed.toml.sig"

    /// The trusted keys, by file name.
    public static func trustedKeys(in directory: String) -> [(name: String, key: Curve25519.Signing.PublicKey)] {
        listDirectory(directory).filter { $0.hasSuffix(".pub") }.sorted().compactMap { name in
            guard let text = readTextFile(directory + "/" + name), let key = publicKey(text) else { return nil }
            return (name, key)
        }
    }

    /// A public key from base64 of the raw 32 bytes, or a PEM SubjectPublicKeyInfo.
    public static func publicKey(_ text: String) -> Curve25519.Signing.PublicKey? {
        var body = text
        if text.contains("-----BEGIN PUBLIC KEY-----") {
            body = text.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        }
        guard var der = Data(base64Encoded: body.trimmingCharacters(in: " \n\r\t")) else { return nil }
        // SPKI for Ed25519: 30 2a 30 05 06 03 2b 65 70 03 21 00, then the 32-byte key.
        let spki: [UInt8] = [0x30, 0x2A, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x03, 0x21, 0x00]
        if der.count == 44 && Array(der.prefix(12)) == spki { der = der.dropFirst(12) }
        return try? Curve25519.Signing.PublicKey(rawRepresentation: der)
    }

    /// The signature file's 64 bytes (raw or base64).
    public static func signature(_ bytes: [UInt8]) -> [UInt8]? {
        if bytes.count == 64 { return bytes }
        let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: " \n\r\t")
        guard let d = Data(base64Encoded: text), d.count == 64 else { return nil }
        return Array(d)
    }

    /// The name of the trusted key that signed `seed`, or nil.
    public static func signer(of seed: [UInt8], signature: [UInt8], keys: [(name: String, key: Curve25519.Signing.PublicKey)]) -> String? {
        keys.first { $0.key.isValidSignature(signature, for: seed) }?.name
    }
}

/// Takes the seed from a provisioning volume: mounts it, reads and (on a provisioned box)
/// verifies the seed, applies it, writes `aibox-report.txt` back, unmounts. Slow and at the
/// mercy of the stick: the daemon runs it in a child process (`aibox stick-seed`), never
/// on its loop. Unprovisioned, any seed is taken; provisioned, only one signed with a
/// provisioning key.
public struct StickSeed {
    /// What became of it (the child's one line of JSON on stdout).
    public struct Outcome: Codable, Sendable, Equatable {
        public var applied: Bool
        public var message: String
        public init(applied: Bool, message: String) {
            self.applied = applied
            self.message = message
        }
    }

    public let paths: Paths
    public var wifiInterface: String
    public var tier: LocalLLMTier
    /// Where a failure to write the report is told (standard error in the child).
    public var note: (String) -> Void = { _ in }

    public init(paths: Paths, wifiInterface: String, tier: LocalLLMTier) {
        self.paths = paths
        self.wifiInterface = wifiInterface
        self.tier = tier
    }

    /// Mounts, reads, verifies, applies, reports, unmounts.
    public func take(_ volume: ProvisioningVolume) -> Outcome {
        let mounted: MountedVolume
        do {
            mounted = try MountedVolume(volume, at: paths.volumeMount)
        } catch {
            return Outcome(applied: false, message: "cannot mount it: \(error)")
        }
        defer { mounted.unmount() }
        let seedPath = mounted.mountPoint + "/" + Seed.fileName
        guard (try? fileStatus(seedPath, followSymlinks: false)) != nil else {
            return Outcome(applied: false, message: "no \(Seed.fileName) on it; nothing to do")
        }
        let outcome = apply(seedPath, volume: volume, mounted: mounted)
        let report = (outcome.applied ? "done: " : "not applied, nothing changed on the box:\n") + outcome.message + "\n"
        do {
            try mounted.writeReport("aibox \(AIBoxVersion.current), \(formatLocalTime(milliseconds: Clock.wallMilliseconds()))\n" + report)
        } catch {
            note("no report written to \(volume.devnode): \(error)")
        }
        return outcome
    }

    private func apply(_ seedPath: String, volume: ProvisioningVolume, mounted: MountedVolume) -> Outcome {
        let bytes: [UInt8]
        switch Provisioner.readSeed(seedPath) {
        case .failure(let f): return Outcome(applied: false, message: f.description)
        case .success(let b): bytes = b
        }
        let provisioner = Provisioner(paths: paths, wifiInterface: wifiInterface)
        var source = "stick \(volume.devnode)"
        if provisioner.isProvisioned {
            let keys = SeedSignature.trustedKeys(in: paths.provisioningKeys)
            guard let sigBytes = readSmallFile(mounted.mountPoint + "/" + SeedSignature.fileName, limit: 4096, followSymlinks: false) else {
                return Outcome(
                    applied: false,
                    message: "this box is already set up; a seed on a stick is taken only when signed with a provisioning key "
                        + "(\(SeedSignature.fileName) beside it; provisioning/make-stick --sign KEY)")
            }
            guard let sig = SeedSignature.signature(sigBytes) else {
                return Outcome(applied: false, message: "\(SeedSignature.fileName) is not an Ed25519 signature (64 bytes, raw or base64)")
            }
            guard let signer = SeedSignature.signer(of: bytes, signature: sig, keys: keys) else {
                return Outcome(
                    applied: false,
                    message: "the seed's signature matches none of the \(keys.count) provisioning key(s) in \(paths.provisioningKeys)")
            }
            source += " (signed, key \(signer))"
        }
        switch provisioner.provision(seed: bytes, path: Seed.fileName, tier: tier, source: source) {
        case .success(let config): return Outcome(applied: true, message: "provisioned \"\(config.name)\" from \(source)")
        case .failure(let f): return Outcome(applied: false, message: f.description)
        }
    }
}

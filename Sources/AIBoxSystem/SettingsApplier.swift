import AIBoxCore
import CAIBoxOS
import Crypto
import Glibc

// First boot on disk: the settings setup writes where the OS reads them.

/// Writes the box's settings where the OS reads them: hostname, time zone,
/// systemd-networkd and wpa_supplicant files, the admin's SSH keys. Under a `--root` other
/// than `/` only the files are written (tests check them); on the box itself the running
/// system is told too (sethostname, `networkctl reload`, `chpasswd -e`).
public struct SettingsApplier {
    public let paths: Paths
    /// The Wi-Fi interface wpa_supplicant is started on (`wpa_supplicant@IFACE`).
    public var wifiInterface: String

    public init(paths: Paths, wifiInterface: String = "wlan0") {
        self.paths = paths
        self.wifiInterface = wifiInterface
    }

    var live: Bool { paths.root == "/" }
    static let marker = "# Written by aibox setup (etc/aibox/box.toml); aibox factory-reset removes it.\n"

    public var wiredNetworkFile: String { paths.under("etc/systemd/network/20-aibox-wired.network") }
    public var wirelessNetworkFile: String { paths.under("etc/systemd/network/25-aibox-wireless.network") }
    public var wpaFile: String { paths.under("etc/wpa_supplicant/wpa_supplicant-\(wifiInterface).conf") }
    public var sshDropIn: String { paths.under("etc/ssh/sshd_config.d/50-aibox.conf") }
    public var adminKeys: String { paths.under("etc/aibox/ssh/admin.keys") }

    /// Every file this writes, for factory-reset.
    public var ownedFiles: [String] { [wiredNetworkFile, wirelessNetworkFile, wpaFile, sshDropIn, adminKeys] }

    /// Writes the settings (each file atomically) and tells the running system.
    public func apply(_ c: BoxConfig, secrets: [String: Secret]) throws(SystemError) {
        let tx = FileTransaction()
        do throws(SystemError) {
            try stage(c, secrets: secrets, into: tx)
        } catch {
            tx.abandon()
            throw error
        }
        try tx.commit()
        tellRunningSystem(c)
    }

    /// Stages every file of the settings in `tx` (written under temporary names; nothing
    /// replaced until the transaction commits).
    func stage(_ c: BoxConfig, secrets: [String: Secret], into tx: FileTransaction) throws(SystemError) {
        try tx.write(paths.under("etc/hostname"), c.name + "\n")
        try tx.write(paths.under("etc/timezone"), c.timezone + "\n")
        try tx.symlink(paths.under("etc/localtime"), target: "/usr/share/zoneinfo/" + c.timezone)

        var wired = SettingsApplier.marker + "[Match]\nType=ether\n\n[Network]\n"
        switch c.network.wired {
        case .dhcp: wired += "DHCP=yes\n"
        case .static(let s):
            wired += "Address=\(s.address)/\(s.prefix)\n"
            if let g = s.gateway { wired += "Gateway=\(g)\n" }
            for d in s.dns { wired += "DNS=\(d)\n" }
        }
        try tx.write(wiredNetworkFile, wired)

        if let wifi = c.network.wifi {
            try tx.write(wirelessNetworkFile, SettingsApplier.marker + "[Match]\nType=wlan\n\n[Network]\nDHCP=yes\n")
            var conf =
                SettingsApplier.marker + "ctrl_interface=/run/wpa_supplicant\nupdate_config=0\ncountry=\(wifi.country)\n\nnetwork={\n"
            // The SSID in hex (any bytes, no quoting); the passphrase as its PSK, never in clear.
            conf += "    ssid=\(hex(Array(wifi.ssid.utf8)))\n"
            if let name = wifi.passphraseSecret, let pass = secrets[name] {
                conf += "    psk=\(hex(WPA.psk(passphrase: pass, ssid: wifi.ssid)))\n"
            } else {
                conf += "    key_mgmt=NONE\n"
            }
            conf += "}\n"
            try tx.write(wpaFile, conf, mode: 0o600)
        } else {
            tx.remove(wirelessNetworkFile)
            tx.remove(wpaFile)
        }

        if c.admin.sshKeys.isEmpty {
            tx.remove(adminKeys)
        } else {
            try tx.write(adminKeys, c.admin.sshKeys.joined(separator: "\n") + "\n")
        }
        try tx.write(
            sshDropIn,
            SettingsApplier.marker + "Match User admin\n    AuthorizedKeysFile .ssh/authorized_keys /etc/aibox/ssh/admin.keys\n")
    }

    /// On the box itself (root `/`): the running system learns the new settings.
    func tellRunningSystem(_ c: BoxConfig) {
        guard live else { return }
        // Best effort, like the programs below: etc/hostname is written, and names the box from the next boot.
        _ = try? syscall("sethostname", detail: c.name) { c.name.withCString { sethostname($0, strlen($0)) } }
        if let hash = c.admin.passwordHash { _ = runProgram(["/usr/sbin/chpasswd", "-e"], input: "admin:\(hash)\n") }
        if fileExists("/usr/bin/networkctl") { _ = runProgram(["/usr/bin/networkctl", "reload"], input: nil) }
    }

    /// Back to the image's defaults: the files this wrote are removed, name and zone reset.
    public func reset() throws(SystemError) {
        let tx = FileTransaction()
        for f in ownedFiles { tx.remove(f) }
        do throws(SystemError) {
            try tx.write(paths.under("etc/hostname"), BoxConfig.defaultName + "\n")
            try tx.write(paths.under("etc/timezone"), BoxConfig.defaultTimezone + "\n")
            try tx.symlink(paths.under("etc/localtime"), target: "/usr/share/zoneinfo/" + BoxConfig.defaultTimezone)
        } catch {
            tx.abandon()
            throw error
        }
        try tx.commit()
    }

}

func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count * 2)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0xF)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// WPA2-Personal: the 256-bit PSK is PBKDF2-HMAC-SHA1(passphrase, SSID, 4096 rounds), as
/// IEEE 802.11i defines it and `wpa_passphrase` computes it.
enum WPA {
    static func psk(passphrase: Secret, ssid: String) -> [UInt8] {
        let key = SymmetricKey(data: Array(passphrase.reveal().utf8))
        var out: [UInt8] = []
        for block in UInt32(1)...2 {
            var u = Array(HMAC<Insecure.SHA1>.authenticationCode(for: Array(ssid.utf8) + block.bigEndianBytes, using: key))
            var t = u
            for _ in 1..<4096 {
                u = Array(HMAC<Insecure.SHA1>.authenticationCode(for: u, using: key))
                for i in t.indices { t[i] ^= u[i] }
            }
            out += t
        }
        return Array(out.prefix(32))
    }
}

extension UInt32 {
    fileprivate var bigEndianBytes: [UInt8] { [UInt8(self >> 24), UInt8(self >> 16 & 0xFF), UInt8(self >> 8 & 0xFF), UInt8(self & 0xFF)] }
}

/// Runs a program to its end, feeding `input` on stdin; its exit status, or nil when it
/// could not start. For the few system tools setup asks on a real box.
@discardableResult
public func runProgram(_ argv: [String], input: String?) -> Int32? { captureProgram(argv, input: input).status }

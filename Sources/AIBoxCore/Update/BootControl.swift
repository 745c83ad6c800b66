/// A/B boot control (issue 5), pure: the boot environment's variables, the rule the boot
/// loader applies at every boot (the same rule the image's GRUB script and U-Boot script
/// implement, and the test kit's boot simulator runs), and the verbs the updater uses —
/// RAUC's model: get-primary, set-primary, get-state, set-state good|bad, get-booted.
///
/// Variables (GRUB env / U-Boot env / the development file): `AIBOX_ORDER="A B"` (primary
/// first), and per slot `AIBOX_A_STATE` = `good` | `trying` | `bad` and `AIBOX_A_LEFT` = boot
/// tries left while trying (0…9: the boot loaders' scripts count by string comparison).

/// One slot's name: `A` or `B` (upper-case letters, as in the variables' names).
public typealias SlotName = String

public enum SlotState: String, Sendable, Codable, CaseIterable {
    /// Boots without counting.
    case good
    /// Booted on trial: each boot uses one of the tries left; none left means bad.
    case trying
    /// Never booted again until reinstalled.
    case bad
}

/// The boot environment, as the boot loader and the updater share it.
public struct BootEnvironment: Equatable, Sendable {
    public var order: [SlotName]
    public var states: [SlotName: SlotState]
    public var triesLeft: [SlotName: Int]
    /// The development backend's record of the slot booted last (a real box reads the
    /// kernel command line, `aibox.slot=`).
    public var booted: SlotName?

    public static let maxTries = 9

    /// A fresh image: the first slot (written by the installer) good, the others bad (empty)
    /// — as the image's GRUB script assumes when its environment block is empty.
    public init(slots: [SlotName] = ["A", "B"]) {
        order = slots
        states = Dictionary(uniqueKeysWithValues: slots.enumerated().map { ($0.element, $0.offset == 0 ? SlotState.good : .bad) })
        triesLeft = Dictionary(uniqueKeysWithValues: slots.map { ($0, 0) })
        booted = nil
    }

    public var primary: SlotName? { order.first }

    public func state(of slot: SlotName) -> SlotState { states[slot] ?? .bad }

    /// Makes `slot` primary on trial with `tries` boots (1…9).
    public mutating func setPrimary(_ slot: SlotName, tries: Int) {
        order = [slot] + order.filter { $0 != slot }
        states[slot] = .trying
        triesLeft[slot] = min(max(tries, 1), BootEnvironment.maxTries)
    }

    /// `good`: boots without counting from now on; `bad`: never again (and no longer primary).
    public mutating func setState(_ slot: SlotName, _ state: SlotState) {
        states[slot] = state
        if state != .trying { triesLeft[slot] = 0 }
        if state == .bad, order.first == slot { order = order.filter { $0 != slot } + [slot] }
    }

    /// What the boot loader does at power-on: the first slot of the order that may boot —
    /// a good one, or a trying one with a try left (which it uses up). A trying slot without
    /// tries is marked bad and passed over. If nothing may boot, the primary boots anyway
    /// (a box that boots something can still be repaired; one that boots nothing cannot).
    public mutating func boot() -> SlotName? {
        for slot in order {
            switch state(of: slot) {
            case .good:
                booted = slot
                return slot
            case .trying:
                let left = triesLeft[slot] ?? 0
                if left > 0 {
                    triesLeft[slot] = left - 1
                    booted = slot
                    return slot
                }
                states[slot] = .bad
            case .bad:
                continue
            }
        }
        booted = order.first
        return order.first
    }

    // MARK: Text form

    /// `KEY=VALUE` lines in a fixed order: what the file backend stores (with a CRC) and
    /// what `grub-editenv` / `fw_setenv -s` are given.
    public var variables: [(String, String)] {
        var out: [(String, String)] = [("AIBOX_ORDER", order.joined(separator: " "))]
        for slot in order.sorted() {
            out.append(("AIBOX_\(slot)_STATE", state(of: slot).rawValue))
            out.append(("AIBOX_\(slot)_LEFT", String(triesLeft[slot] ?? 0)))
        }
        if let booted { out.append(("AIBOX_BOOTED", booted)) }
        return out
    }

    public var text: String { variables.map { "\($0.0)=\($0.1)\n" }.joined() }

    /// Reads the variables back; unknown variables are ignored (a boot loader keeps others),
    /// missing or garbled ones are errors: a box must not guess its boot order.
    public static func parse(_ text: String) -> Result<BootEnvironment, BootEnvironmentError> {
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            values[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        guard let orderText = values["AIBOX_ORDER"] else { return .failure(.init("AIBOX_ORDER is missing")) }
        let order = orderText.split(separator: " ").map(String.init)
        guard !order.isEmpty, Set(order).count == order.count, order.allSatisfy(BootEnvironment.isSlotName) else {
            return .failure(.init("AIBOX_ORDER=\(orderText): expected distinct slot names such as \"A B\""))
        }
        var env = BootEnvironment(slots: order)
        for slot in order {
            guard let s = values["AIBOX_\(slot)_STATE"], let state = SlotState(rawValue: s) else {
                return .failure(.init("AIBOX_\(slot)_STATE: expected good, trying or bad"))
            }
            guard let l = values["AIBOX_\(slot)_LEFT"], let left = Int(l), (0...maxTries).contains(left) else {
                return .failure(.init("AIBOX_\(slot)_LEFT: expected 0…\(maxTries)"))
            }
            env.states[slot] = state
            env.triesLeft[slot] = left
        }
        if let b = values["AIBOX_BOOTED"], order.contains(b) { env.booted = b }
        return .success(env)
    }

    public static func isSlotName(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 8 && s.utf8.allSatisfy { $0 >= 0x41 && $0 <= 0x5A }
    }
}

public struct BootEnvironmentError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// The file backend's on-disk form: two copies, each `KEY=VALUE` lines followed by
/// `AIBOX_SEQ=<n>` and `AIBOX_CRC=<crc32 of everything before that line>`. A write replaces
/// the older copy (by rename) with sequence + 1, so a power cut leaves at least one valid copy;
/// a read takes the valid copy with the highest sequence.
public enum BootEnvironmentFile {
    public static func encode(_ env: BootEnvironment, sequence: UInt64) -> [UInt8] {
        let body = env.text + "AIBOX_SEQ=\(sequence)\n"
        return Array((body + "AIBOX_CRC=\(crc32(Array(body.utf8)))\n").utf8)
    }

    /// The environment and its sequence number, or why the copy is not valid.
    public static func decode(_ bytes: [UInt8]) -> Result<(BootEnvironment, UInt64), BootEnvironmentError> {
        // The last line is AIBOX_CRC=…; the body is everything before it.
        var end = bytes.count
        while end > 0 && bytes[end - 1] == UInt8(ascii: "\n") { end -= 1 }
        var start = end
        while start > 0 && bytes[start - 1] != UInt8(ascii: "\n") { start -= 1 }
        let last = String(decoding: bytes[start..<end], as: UTF8.self)
        guard last.hasPrefix("AIBOX_CRC=") else { return .failure(.init("no AIBOX_CRC line")) }
        let bodyBytes = Array(bytes[0..<start])
        let body = String(decoding: bodyBytes, as: UTF8.self)
        guard let crc = UInt32(last.dropFirst("AIBOX_CRC=".count)), crc == crc32(bodyBytes) else {
            return .failure(.init("checksum mismatch (a torn or corrupted write)"))
        }
        guard let seqLine = body.split(separator: "\n").last, seqLine.hasPrefix("AIBOX_SEQ="),
            let seq = UInt64(seqLine.dropFirst("AIBOX_SEQ=".count))
        else { return .failure(.init("no AIBOX_SEQ line")) }
        return BootEnvironment.parse(body).map { ($0, seq) }
    }

    /// Picks the valid copy with the highest sequence; also says which copy to write next.
    public static func choose(_ copies: [[UInt8]?]) -> (env: BootEnvironment, sequence: UInt64, newest: Int)? {
        var best: (BootEnvironment, UInt64, Int)?
        for (i, c) in copies.enumerated() {
            guard let c, case .success(let (env, seq)) = decode(c) else { continue }
            if best == nil || seq > best!.1 { best = (env, seq, i) }
        }
        return best.map { (env: $0.0, sequence: $0.1, newest: $0.2) }
    }
}

/// CRC-32 (IEEE 802.3, as zlib computes it).
public func crc32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for b in bytes {
        crc ^= UInt32(b)
        for _ in 0..<8 { crc = (crc >> 1) ^ (0xEDB8_8320 & (0 &- (crc & 1))) }
    }
    return ~crc
}

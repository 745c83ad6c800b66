/// The update flow (issue 9), pure: every state of an update and every transition, as values.
/// The journal (meta rows of the database) keeps the state; the boot environment is the truth
/// where the two disagree, and `reconcile` is the one place where they are made to agree.
/// The adapters (the installer, the daemon's trial, `aibox update`) load the flow, give it an
/// event with what they see, and perform the actions it returns — in order, nothing else.
/// docs/UPDATES.md has the table of states × events.

/// One slot and the version it holds, as far as the journal knows it.
public struct UpdateSlot: Equatable, Sendable, CustomStringConvertible {
    public var name: SlotName
    public var version: SemanticVersion?

    public init(_ name: SlotName, _ version: SemanticVersion?) {
        self.name = name
        self.version = version
    }

    public var description: String { "slot \(name) (version \(version?.description ?? "?"))" }
}

/// Where an update stands. Each state carries what is valid in it.
public enum UpdateState: Equatable, Sendable {
    /// Nothing in flight: a box that never installed, or whose journal was rebuilt.
    case idle
    /// A URL streaming towards `target`; its header not verified yet (the slot untouched).
    case downloading(target: SlotName)
    /// A bundle going into `target`: untouched until `version` (the verified header's) is
    /// known; from then on bad, and written.
    case installing(target: SlotName, version: SemanticVersion?)
    /// Verified, read back and primary on trial: it boots at the next reboot.
    case installed(UpdateSlot)
    /// Booted on trial: the health gate (or a person) decides.
    case trying(UpdateSlot)
    /// Marked good; its version the floor.
    case committed(UpdateSlot)
    /// Marked bad while it still runs: a reboot starts the other slot.
    case rejected(UpdateSlot, reason: String)
    /// The other slot runs (or boots next) after this one's trial ended: tries used up,
    /// rejected, or rolled back by hand.
    case rolledBack(UpdateSlot, reason: String)
    /// An install that stopped without a word (killed, power cut).
    case interrupted(target: SlotName)
    /// An install that failed or was refused.
    case failed(target: SlotName?, reason: String)

    /// The name in the journal (`update.state`), in `aibox update status` and in events.
    public var name: String {
        switch self {
        case .idle: return "idle"
        case .downloading: return "downloading"
        case .installing: return "installing"
        case .installed: return "installed"
        case .trying: return "trying"
        case .committed: return "committed"
        case .rejected: return "rejected"
        case .rolledBack: return "rolled-back"
        case .interrupted: return "interrupted"
        case .failed: return "failed"
        }
    }

    /// The slot the state is about.
    public var slot: SlotName? {
        switch self {
        case .idle: return nil
        case .downloading(let t), .installing(let t, _), .interrupted(let t): return t
        case .installed(let s), .trying(let s), .committed(let s), .rejected(let s, _), .rolledBack(let s, _): return s.name
        case .failed(let t, _): return t
        }
    }

    public var version: SemanticVersion? {
        switch self {
        case .installing(_, let v): return v
        case .installed(let s), .trying(let s), .committed(let s), .rejected(let s, _), .rolledBack(let s, _): return s.version
        default: return nil
        }
    }

    /// What went wrong (`update.lastError`).
    public var reason: String? {
        switch self {
        case .rejected(_, let r), .rolledBack(_, let r), .failed(_, let r): return r
        case .interrupted: return UpdateState.interruptedReason
        default: return nil
        }
    }

    static let interruptedReason = "the install was interrupted before it finished; run it again"
}

/// The boot environment's verbs (RAUC's), as the flow asks for them.
public enum BootVerb: Equatable, Sendable {
    /// First in the order, trying, with this many boots.
    case setPrimary(SlotName, tries: Int)
    case setState(SlotName, SlotState)
    /// First in the order, its state as it is.
    case bootNext(SlotName)
}

extension BootEnvironment {
    public mutating func apply(_ verb: BootVerb) {
        switch verb {
        case .setPrimary(let s, let tries): setPrimary(s, tries: tries)
        case .setState(let s, let state): setState(s, state)
        case .bootNext(let s): order = [s] + order.filter { $0 != s }
        }
    }
}

/// An event row: `update.<state>` at a transition, or another `update.*` kind.
public struct UpdateNote: Equatable, Sendable {
    public var kind: String
    public var message: String
    public init(_ kind: String, _ message: String) {
        self.kind = kind
        self.message = message
    }
}

/// What an adapter does, in the order given. A failed `boot` stops the rest (the journal
/// then still says what was true before); a failed `raiseFloor` is reported and the rest goes on.
public enum UpdateAction: Equatable, Sendable {
    /// One write of the boot environment with these verbs.
    case boot([BootVerb])
    /// The version floor written: the floor file (fsync'd), then the database's copy.
    case raiseFloor(SemanticVersion)
    /// The journal written (the flow's state and slot versions), with the event if any.
    case save(UpdateNote?)
    /// A reboot, through the Rebooter (which honours the inhibit).
    case reboot(String)
}

/// The lowest version this box installs (without a signed rollback), as read: the floor file
/// under var/lib/aibox (written with fsync; it outlives a database rebuilt after corruption)
/// and the database's copy (`update.floor`, what boxes had before the file).
public struct VersionFloor: Equatable, Sendable {
    public enum File: Equatable, Sendable {
        case absent
        case version(SemanticVersion)
        /// Present but not a valid floor file: what it held is unknown.
        case unreadable(String)
    }
    public var file: File
    public var database: SemanticVersion?

    /// The file, under the root: beside the database, not in it.
    public static let fileName = "var/lib/aibox/update-floor"

    public init(file: File = .absent, database: SemanticVersion? = nil) {
        self.file = file
        self.database = database
    }

    /// What installs are checked against: the higher of both; an error when the file cannot
    /// be read — the box does not know the oldest version it may accept, and guesses low never.
    public var effective: Result<SemanticVersion?, UpdateFlowError> {
        switch file {
        case .unreadable(let why): return .failure(UpdateFlowError(why))
        case .absent: return .success(database)
        case .version(let v): return .success(database.map { max($0, v) } ?? v)
        }
    }

    /// The floor to write so that the file holds at least the database's floor and `committed`
    /// (a committed rollback never lowers it); nil when the file holds it already. An
    /// unreadable file is rewritten only at an explicit commit (`replaceUnreadable`).
    public func toWrite(committed: SemanticVersion?, replaceUnreadable: Bool) -> SemanticVersion? {
        var want = [committed, database].compactMap { $0 }.max()
        switch file {
        case .unreadable: if !replaceUnreadable { return nil }
        case .absent: break
        case .version(let v):
            want = want.map { max($0, v) }
            if want.map({ $0 <= v }) ?? true { return nil }
        }
        return want
    }
}

/// The floor file: `AIBOX_FLOOR=<version>` and a CRC-32 line, so that a flipped bit is not
/// read as another version (a torn write cannot happen: it is replaced by rename).
public enum VersionFloorFile {
    public static func encode(_ floor: SemanticVersion) -> [UInt8] {
        let body = Array("AIBOX_FLOOR=\(floor)\n".utf8)
        return body + Array("AIBOX_CRC=\(crc32(body))\n".utf8)
    }

    public static func decode(_ bytes: [UInt8]) -> Result<SemanticVersion, UpdateFlowError> {
        let lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        guard lines.count == 3, lines[2].isEmpty, lines[0].starts(with: Array("AIBOX_FLOOR=".utf8)),
            lines[1].starts(with: Array("AIBOX_CRC=".utf8))
        else { return .failure(UpdateFlowError("not a floor file (expected AIBOX_FLOOR= and AIBOX_CRC= lines)")) }
        let body = Array(lines[0]) + [UInt8(ascii: "\n")]
        guard let crc = UInt32(String(decoding: lines[1].dropFirst("AIBOX_CRC=".count), as: UTF8.self)), crc == crc32(body) else {
            return .failure(UpdateFlowError("checksum mismatch (the file is corrupt)"))
        }
        let text = String(decoding: lines[0].dropFirst("AIBOX_FLOOR=".count), as: UTF8.self)
        guard let v = SemanticVersion(text) else { return .failure(UpdateFlowError("\(text) is not a version")) }
        return .success(v)
    }
}

/// Where an install takes its bundle from.
public enum BundleSource: Equatable, Sendable {
    case file(String)
    case url(String)

    /// `http://` and `https://` are downloaded; any other `scheme://` is refused by name, not
    /// read as a file in a directory called "ftp:".
    public static func parse(_ text: String) -> Result<BundleSource, UpdateFlowError> {
        guard let colon = text.firstIndex(of: ":"), text[colon...].hasPrefix("://") else { return .success(.file(text)) }
        let scheme = text[..<colon]
        func isLetter(_ c: UInt8) -> Bool { (c | 0x20) >= 0x61 && (c | 0x20) <= 0x7A }
        // RFC 3986: a letter, then letters, digits, "+", "-", ".".
        guard let first = scheme.utf8.first, isLetter(first),
            scheme.utf8.allSatisfy({ isLetter($0) || (0x30...0x39).contains($0) || $0 == 0x2B || $0 == 0x2D || $0 == 0x2E })
        else { return .success(.file(text)) }
        switch scheme.lowercased() {
        case "http", "https": return .success(.url(text))
        case "file":
            return .failure(
                UpdateFlowError(
                    "unsupported URL scheme file; use http or https, or give the bundle's path (\(text.dropFirst("file://".count)))"))
        default: return .failure(UpdateFlowError("unsupported URL scheme \(scheme); use http or https or a file path"))
        }
    }

    public var isDownload: Bool { if case .url = self { return true } else { return false } }

    public var text: String {
        switch self {
        case .file(let p), .url(let p): return p
        }
    }
}

/// A transition the flow does not make, and why (state unchanged).
public struct UpdateFlowError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// What the adapter sees when it hands the flow an event.
public struct UpdateObservation: Equatable, Sendable {
    /// The slot running now.
    public var booted: SlotName
    public var env: BootEnvironment
    /// Whether an installer holds the update lock (another process than the one asking).
    public var installerRunning: Bool
    public var floor: VersionFloor

    public init(booted: SlotName, env: BootEnvironment, installerRunning: Bool = false, floor: VersionFloor = VersionFloor()) {
        self.booted = booted
        self.env = env
        self.installerRunning = installerRunning
        self.floor = floor
    }

    /// The slot the booted one falls back on (or is installed into).
    var other: SlotName? { env.order.first { $0 != booted } }
}

public enum UpdateEvent: Equatable, Sendable {
    // The installer, holding the update lock:
    case installStarting(BundleSource, target: SlotName)
    /// The bundle's header verified and accepted (compatible, floor): the target is written next.
    case headerVerified(SemanticVersion)
    /// The payload's hash matched, the slot read back matched: activate it.
    case installVerified(tries: Int)
    case installFailed(String)
    // The daemon's trial gate:
    case trialPassed(String)
    case trialFailed(String)
    // By hand (`aibox update mark-good | mark-bad | rollback`):
    case markGood
    case markBad
    case rollback
}

/// The update flow: its state, and the versions the journal knows the slots hold.
public struct UpdateFlow: Equatable, Sendable {
    public private(set) var state: UpdateState
    public private(set) var versions: [SlotName: SemanticVersion]

    public init(state: UpdateState = .idle, versions: [SlotName: SemanticVersion] = [:]) {
        self.state = state
        self.versions = versions
    }

    // MARK: Reconciliation

    /// What the boot that happened (or an installer that vanished) means for the journal:
    /// the rules below, applied until none changes anything. The boot environment is the truth.
    public mutating func reconcile(_ seen: UpdateObservation) -> [UpdateAction] {
        var actions: [UpdateAction] = []
        for _ in 0..<4 {
            guard let step = reconcileStep(seen) else { break }
            actions += step
        }
        // The floor file behind the committed slot or the database's copy: a write that failed
        // at the commit, or a box from before the file. Written again.
        let committed: SemanticVersion?
        if case .committed(let s) = state, s.name == seen.booted, seen.env.state(of: s.name) == .good {
            committed = s.version
        } else {
            committed = nil
        }
        let raised = actions.contains { if case .raiseFloor = $0 { true } else { false } }
        if !raised, let floor = seen.floor.toWrite(committed: committed, replaceUnreadable: false) { actions.append(.raiseFloor(floor)) }
        return actions
    }

    private mutating func reconcileStep(_ seen: UpdateObservation) -> [UpdateAction]? {
        let b = seen.booted
        let env = seen.env
        switch state {
        case .downloading(let t), .installing(let t, _):
            guard !seen.installerRunning else { return nil }
            // A dead installer: its target primary on trial means it was verified and
            // activated, and only the journal's last line was lost.
            if env.primary == t && env.state(of: t) == .trying {
                let version = state.version ?? versions[t]
                versions[t] = version
                return move(
                    .installed(UpdateSlot(t, version)), "update.installed",
                    "the install of slot \(t) had completed; only its journal entry was missing")
            }
            return move(.interrupted(target: t), "update.interrupted", "the install into slot \(t) was interrupted (the installer stopped)")
        case .installed(let s), .trying(let s), .rejected(let s, _):
            let t = s.name
            if b == t {
                switch (state, env.state(of: t)) {
                case (.installed, .trying):
                    return move(.trying(s), "update.trying", "booted \(s) on trial")
                case (_, .good):
                    // Marked good, and the journal's line lost (the boot environment is written first).
                    return move(.committed(s), "update.committed", "\(s) is marked good; only its journal entry was missing")
                        + floorAtCommit(s, seen)
                case (.installed, .bad), (.trying, .bad):
                    return move(
                        .rejected(s, reason: "\(s) was marked bad"), "update.rejected",
                        "\(s) is marked bad; only its journal entry was missing")
                default:
                    return nil  // on trial, or rejected and not rebooted yet
                }
            }
            // Another slot booted: the trial is over.
            if env.state(of: t) == .bad {
                let why = state.reason ?? "\(s) did not become healthy within its boot tries"
                return move(.rolledBack(s, reason: why), "update.rolled-back", "\(s) failed its trial; slot \(b) runs again")
            }
            if case .trying = state {
                return move(
                    .rolledBack(s, reason: "slot \(b) booted instead of slot \(t), which was on trial"), "update.rolled-back",
                    "slot \(b) booted instead of \(s), which was on trial")
            }
            return nil  // installed, not booted yet
        case .idle, .failed, .interrupted, .committed:
            // A slot booted on trial is on trial, whatever the journal says (an install whose
            // last lines were lost, a journal rebuilt after corruption).
            guard env.state(of: b) == .trying else { return nil }
            let s = UpdateSlot(b, versions[b])
            return move(.trying(s), "update.trying", "booted \(s) on trial")
        case .rolledBack:
            return nil  // rolled back by hand: the reboot is the person's
        }
    }

    private mutating func move(_ next: UpdateState, _ kind: String, _ message: String) -> [UpdateAction] {
        state = next
        return [.save(UpdateNote(kind, message))]
    }

    private func floorAtCommit(_ s: UpdateSlot, _ seen: UpdateObservation) -> [UpdateAction] {
        seen.floor.toWrite(committed: s.version, replaceUnreadable: true).map { [.raiseFloor($0)] } ?? []
    }

    /// A reboot the daemon owes at its start: the booted slot was marked bad (and another is
    /// good to boot) but the box did not reboot — the daemon was killed, or the reboot deferred.
    public func owedReboot(_ seen: UpdateObservation) -> String? {
        guard case .rejected(let s, let why) = state, s.name == seen.booted, seen.env.state(of: s.name) == .bad,
            let other = seen.other, seen.env.state(of: other) == .good
        else { return nil }
        return "\(s) is marked bad (\(why)): rebooting into slot \(other)"
    }

    // MARK: Events

    /// One event, on a flow reconciled with the same observation (`reconcile` first: the flow
    /// decides on the world as it is). A transition the flow does not make throws, with the
    /// state unchanged.
    public mutating func handle(_ event: UpdateEvent, seen: UpdateObservation) throws(UpdateFlowError) -> [UpdateAction] {
        let b = seen.booted
        let env = seen.env
        switch event {
        case .installStarting(let source, let target):
            precondition(target != b, "an install never targets the booted slot")
            // The other slot is the one to fall back on while this one is not good.
            if env.state(of: b) != .good && env.state(of: target) == .good {
                throw UpdateFlowError(
                    env.state(of: b) == .trying
                        ? "slot \(b) runs on trial and slot \(target) is the good one to fall back on: commit slot \(b) (aibox update mark-good) or reject it (mark-bad) before installing another update"
                        : "slot \(b) is marked bad and slot \(target) is the good one: reboot into slot \(target) before installing another update"
                )
            }
            let next: UpdateState = source.isDownload ? .downloading(target: target) : .installing(target: target, version: nil)
            return move(
                next, "update.\(next.name)", "\(source.isDownload ? "downloading" : "installing") \(source.text) into slot \(target)")

        case .headerVerified(let version):
            guard let t = installTarget else { throw notInstalling(event) }
            // Nothing of the target is bootable from here until it is verified.
            versions[t] = nil
            state = .installing(target: t, version: version)
            return [.boot([.setState(t, .bad)]), .save(nil)]

        case .installVerified(let tries):
            guard case .installing(let t, let version?) = state else { throw notInstalling(event) }
            versions[t] = version
            state = .installed(UpdateSlot(t, version))
            return [
                .boot([.setPrimary(t, tries: tries)]),
                .save(
                    UpdateNote(
                        "update.installed",
                        "version \(version) installed in slot \(t); it boots on trial (\(tries) tries) at the next reboot")),
            ]

        case .installFailed(let why):
            guard let t = installTarget else { throw notInstalling(event) }
            return move(.failed(target: t, reason: why), "update.failed", "update failed: \(why)")

        case .trialPassed(let why):
            guard case .trying(let s) = state, s.name == b else { throw noTrial(b) }
            return commit(s, reason: why, seen)

        case .trialFailed(let why):
            guard case .trying(let s) = state, s.name == b else { throw noTrial(b) }
            var actions = try reject(s, reason: why, seen)
            actions.append(.reboot("slot \(b) failed its trial (\(why)): rebooting into slot \(seen.other ?? "?")"))
            return actions

        case .markGood:
            let s = state.slot == b ? UpdateSlot(b, state.version ?? versions[b]) : UpdateSlot(b, versions[b])
            // Already good: only the floor, where its file is behind or unreadable (a person
            // confirming the running slot is what may write an unreadable floor anew).
            if env.state(of: b) == .good { return floorAtCommit(s, seen) }
            return commit(s, reason: "marked good by hand", seen)

        case .markBad:
            if env.state(of: b) == .bad, case .rejected(let s, _) = state, s.name == b { return [] }
            let s = state.slot == b ? UpdateSlot(b, state.version ?? versions[b]) : UpdateSlot(b, versions[b])
            return try reject(s, reason: "marked bad by hand", seen)

        case .rollback:
            guard let other = seen.other else { throw UpdateFlowError("no slot other than \(b)") }
            guard env.state(of: other) == .good else {
                throw UpdateFlowError("slot \(other) is \(env.state(of: other).rawValue), not good: there is nothing safe to roll back to")
            }
            let s = state.slot == b ? UpdateSlot(b, state.version ?? versions[b]) : UpdateSlot(b, versions[b])
            state = .rolledBack(s, reason: "rolled back by hand: slot \(other) boots next")
            return [.boot([.bootNext(other)]), .save(UpdateNote("update.rolled-back", "rollback requested: slot \(other) boots next"))]
        }
    }

    private var installTarget: SlotName? {
        switch state {
        case .downloading(let t), .installing(let t, _): return t
        default: return nil
        }
    }

    private func notInstalling(_ event: UpdateEvent) -> UpdateFlowError {
        UpdateFlowError("no install is running (the update is \(state.name)): \(event) does not apply")
    }

    private func noTrial(_ booted: SlotName) -> UpdateFlowError {
        UpdateFlowError("slot \(booted) is not on trial (the update is \(state.name))")
    }

    /// Good (and first in the order: "keep this one"), its version the floor.
    private mutating func commit(_ s: UpdateSlot, reason: String, _ seen: UpdateObservation) -> [UpdateAction] {
        state = .committed(s)
        return [.boot([.setState(s.name, .good), .bootNext(s.name)])] + floorAtCommit(s, seen) + [
            .save(UpdateNote("update.committed", "slot \(s.name) marked good: \(reason)"))
        ]
    }

    /// Bad; refused when no other slot is good (the box would have nothing good to boot).
    private mutating func reject(_ s: UpdateSlot, reason: String, _ seen: UpdateObservation) throws(UpdateFlowError) -> [UpdateAction] {
        guard seen.other.map({ seen.env.state(of: $0) == .good }) ?? false else {
            throw UpdateFlowError(
                "slot \(s.name) is not marked bad: slot \(seen.other ?? "?") is not good either, and the box would have nothing good to boot"
            )
        }
        let why = "slot \(s.name) marked bad: \(reason)"
        state = .rejected(s, reason: why)
        return [.boot([.setState(s.name, .bad)]), .save(UpdateNote("update.rejected", why))]
    }

    // MARK: The journal's rows

    /// The flow as the journal's meta rows (nil: the row deleted). `update.trial` (of the
    /// journal before the flow) is retired at the first write.
    public func journalValues(slots: [SlotName]) -> [String: String?] {
        var values: [String: String?] = [
            "update.state": state.name, "update.target": state.slot, "update.version": state.version?.description,
            "update.lastError": state.reason, "update.trial": nil,
        ]
        for s in slots { values["update.slot.\(s).version"] = .some(versions[s]?.description) }
        return values
    }

    /// The flow from the journal's meta rows, those of the journal before the flow included
    /// (a reject was `failed` with `update.trial` naming the target). Unknown states are idle.
    public init(journal m: [String: String], slots: [SlotName]) {
        var versions: [SlotName: SemanticVersion] = [:]
        for s in slots { if let v = m["update.slot.\(s).version"].flatMap(SemanticVersion.init) { versions[s] = v } }
        self.versions = versions
        let target = m["update.target"].flatMap { BootEnvironment.isSlotName($0) ? $0 : nil }
        let version = m["update.version"].flatMap(SemanticVersion.init)
        let reason = m["update.lastError"]
        func slot(_ t: SlotName) -> UpdateSlot { UpdateSlot(t, version ?? versions[t]) }
        switch (m["update.state"] ?? "idle", target) {
        case ("downloading", let t?): state = .downloading(target: t)
        case ("installing", let t?): state = .installing(target: t, version: version)
        case ("installed", let t?): state = .installed(slot(t))
        case ("trying", let t?): state = .trying(slot(t))
        case ("committed", let t?): state = .committed(slot(t))
        case ("rejected", let t?): state = .rejected(slot(t), reason: reason ?? "marked bad")
        case ("rolled-back", let t?): state = .rolledBack(slot(t), reason: reason ?? "rolled back")
        case ("interrupted", let t?): state = .interrupted(target: t)
        case ("failed", let t?) where m["update.trial"] == t: state = .rejected(slot(t), reason: reason ?? "marked bad")
        case ("failed", let t): state = .failed(target: t, reason: reason ?? "failed")
        default: state = .idle
        }
    }
}

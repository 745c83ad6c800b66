import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem
import FoundationEssentials
import Glibc

/// `pair --json`.
public struct PairReport: Encodable {
    var ok: Bool
    var error: String?
    var channel: String?
    var code: String?
    var validSeconds: Int?
    /// Local time, as the console shows it.
    var expiresAt: String?
}

/// One owner in `owners --json`.
public struct OwnerView: Encodable {
    var channel: String
    var id: String
    /// "box.toml" or "paired".
    var source: String
    /// When it paired (local time); nil for box.toml's owners.
    var pairedAt: String?
}

/// `owners --json` and `owners revoke --json`.
public struct OwnersReport: Encodable {
    var ok: Bool
    var error: String?
    var owners: [OwnerView]?
    /// Configured channels without any owner: nobody can use them until someone pairs.
    var channelsWithoutOwners: [String]?
    var revoked: OwnerView?
}

extension AgentConsole {
    /// agent.db's channel tables, or why not (printed; exit 1).
    static func channelStore(_ s: AgentSettings) -> (ChannelStore, Ledger)? {
        do {
            try makeDirectories(s.paths.agentDirectory, mode: 0o750)
            let ledger = try Ledger(path: s.paths.agentDatabase)
            return (try ChannelStore(ledger: ledger), ledger)
        } catch {
            writeStandardError("aibox-agent: cannot open \(s.paths.agentDatabase): \(error)\n")
            return nil
        }
    }

    /// The channel named on the command line: one of the four, and configured in box.toml.
    static func configuredChannel(_ name: String, _ s: AgentSettings) -> Result<ChannelKind, AgentConfigError> {
        guard let kind = ChannelKind(rawValue: name.lowercased()) else {
            return .failure(
                AgentConfigError(
                    description: "no channel \"\(name)\"; the channels are " + ChannelKind.allCases.map(\.rawValue).joined(separator: ", "))
            )
        }
        guard s.config.channels.configured.contains(kind) else {
            return .failure(
                AgentConfigError(
                    description:
                        "\(kind.rawValue) is not set up in \(s.paths.boxConfig) (no [channels.\(kind.rawValue)]); add it with `aibox setup` first"
                ))
        }
        return .success(kind)
    }

    /// `aibox-agent pair CHANNEL`: a one-time code for the channel, valid `Pairing.validity`;
    /// whoever sends it to the bot in a direct message first becomes an owner. The running
    /// worker reads it from agent.db. A new code replaces the last; a restart of the box voids it.
    public static func pair(root: String, channel: String, json: Bool) -> Int32 {
        let s = settings(root: root)
        func fail(_ message: String, _ code: Int32) -> Int32 {
            if json { printJSON(PairReport(ok: false, error: message)) } else { writeStandardError("aibox-agent: \(message)\n") }
            return code
        }
        let kind: ChannelKind
        switch configuredChannel(channel, s) {
        case .success(let k): kind = k
        case .failure(let m): return fail(m.description, AgentExit.usage)
        }
        guard let (store, _) = channelStore(s) else { return AgentExit.failure }
        var random = SystemRandomNumberGenerator()
        var pairing = Pairing()
        let wall = Clock.wallMilliseconds()
        let code = pairing.issue(kind, now: Clock.monotonic(), using: &random)
        do { try store.savePairing(kind, code, wallMS: wall) } catch {
            return fail("cannot write \(s.paths.agentDatabase): \(error)", AgentExit.failure)
        }
        let seconds = Int(Pairing.validity.nanoseconds / 1_000_000_000)
        let until = formatLocalTime(milliseconds: wall + Int64(seconds) * 1000)
        if json {
            printJSON(PairReport(ok: true, channel: kind.rawValue, code: code.code, validSeconds: seconds, expiresAt: until))
        } else {
            let how =
                kind == .telegram
                ? "Send it to the bot in a private chat (or open t.me/BOTNAME?start=\(code.code))."
                : "Send it to the bot in a direct message."
            writeStandardOutput(
                TextLayout.wrap(
                    "Pairing code for \(kind.rawValue): \(code.code) (valid \(seconds / 60) minutes, until \(until))"
                ).joined(separator: "\n")
                    + "\n"
                    + TextLayout.wrap(
                        "\(how) The account that sends it becomes an owner of this box. A new code replaces this one; "
                            + "a restart of the box voids it."
                    ).joined(separator: "\n") + "\n")
        }
        return 0
    }

    /// `aibox-agent owners`: every owner of every channel, box.toml's and paired ones.
    public static func ownersList(root: String, json: Bool) -> Int32 {
        let s = settings(root: root)
        guard let (store, _) = channelStore(s) else { return AgentExit.failure }
        let paired: [ChannelStore.PairedOwner]
        do { paired = try store.pairedOwners() } catch {
            writeStandardError("aibox-agent: cannot read \(s.paths.agentDatabase): \(error)\n")
            return AgentExit.failure
        }
        var views: [OwnerView] = []
        for kind in ChannelKind.allCases {
            let configured = s.config.channels.owners(kind)
            views += configured.map { OwnerView(channel: kind.rawValue, id: $0, source: "box.toml") }
            views += paired.filter { $0.channel == kind && !configured.contains($0.sender) }.map {
                OwnerView(channel: kind.rawValue, id: $0.sender, source: "paired", pairedAt: formatLocalTime(milliseconds: $0.atMS))
            }
        }
        let orphans = s.config.channels.configured.filter { k in !views.contains { $0.channel == k.rawValue } }.map(\.rawValue)
        if json {
            printJSON(OwnersReport(ok: true, owners: views, channelsWithoutOwners: orphans))
            return 0
        }
        if views.isEmpty && s.config.channels.isEmpty { writeStandardOutput("No chat channel is set up (aibox setup adds them).\n") }
        for v in views {
            writeStandardOutput(
                v.channel + String(repeating: " ", count: max(1, 10 - v.channel.count)) + v.id + "  "
                    + (v.pairedAt.map { "paired \($0)" } ?? "box.toml") + "\n")
        }
        for o in orphans { writeStandardOutput("\(o): no owner; nobody can use it until someone pairs (aibox-agent pair \(o))\n") }
        return 0
    }

    /// `aibox-agent owners revoke CHANNEL ID`: removes an owner who paired. box.toml's owners
    /// are not removed here (the file is setup's): the message says where to.
    public static func ownersRevoke(root: String, channel: String, id: String, json: Bool) -> Int32 {
        let s = settings(root: root)
        func fail(_ message: String, _ code: Int32) -> Int32 {
            if json { printJSON(OwnersReport(ok: false, error: message)) } else { writeStandardError("aibox-agent: \(message)\n") }
            return code
        }
        guard let kind = ChannelKind(rawValue: channel.lowercased()) else {
            return fail(
                "no channel \"\(channel)\"; the channels are " + ChannelKind.allCases.map(\.rawValue).joined(separator: ", "),
                AgentExit.usage)
        }
        guard let (store, ledger) = channelStore(s) else { return AgentExit.failure }
        let removed: Bool
        do { removed = try store.revoke(kind, sender: id) } catch {
            return fail("cannot write \(s.paths.agentDatabase): \(error)", AgentExit.failure)
        }
        if s.config.channels.owners(kind).contains(id) {
            return fail(
                "\(id) is an owner of \(kind.rawValue) in \(s.paths.boxConfig); remove it there: `aibox setup`, "
                    + "or edit owners in [channels.\(kind.rawValue)]", AgentExit.failure)
        }
        guard removed else { return fail("\(id) is not an owner of \(kind.rawValue) (`aibox-agent owners` lists them)", AgentExit.failure) }
        let wall = Clock.wallMilliseconds()
        ledger.record(kind: "channel.revoked", route: nil, message: "\(kind.rawValue): \(id) is no longer an owner (revoked)", wallMS: wall)
        let view = OwnerView(channel: kind.rawValue, id: id, source: "paired")
        if json {
            printJSON(OwnersReport(ok: true, revoked: view))
        } else {
            writeStandardOutput("\(kind.rawValue): \(id) is no longer an owner.\n")
        }
        return 0
    }
}

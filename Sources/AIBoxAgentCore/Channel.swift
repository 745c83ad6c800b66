/// The chat services the owner commands the box over.
public enum ChannelKind: String, Sendable, CaseIterable, Codable, Comparable {
    case telegram, slack, discord, whatsapp

    public static func < (a: ChannelKind, b: ChannelKind) -> Bool { a.rawValue < b.rawValue }
}

/// A message that came in over a channel, as every channel reports it (the protocol cores
/// turn their service's updates, envelopes and events into these).
public struct IncomingMessage: Equatable, Sendable {
    public var channel: ChannelKind
    /// The service's id of this delivery, for de-duplication (Telegram `update_id`, Slack
    /// `envelope_id` / event id, Discord message id, WhatsApp `wamid`).
    public var id: String
    /// Where a reply goes: the chat, channel or phone number.
    public var chat: String
    /// Who sent it: the service's immutable user id (Telegram user id, Slack `TEAM:USER`,
    /// Discord user id, WhatsApp number id) — what `owners` lists.
    public var sender: String
    /// A one-to-one conversation with the bot (commands are taken from these only).
    public var isDirect: Bool
    public var text: String

    public init(channel: ChannelKind, id: String, chat: String, sender: String, isDirect: Bool, text: String) {
        self.channel = channel
        self.id = id
        self.chat = chat
        self.sender = sender
        self.isDirect = isDirect
        self.text = text
    }

    /// The conversation it belongs to in agent.db: one per (channel, chat).
    public var conversation: String { "\(channel.rawValue):\(chat)" }
}

/// A reply or a notice to send.
public struct OutgoingMessage: Equatable, Sendable {
    public var channel: ChannelKind
    public var chat: String
    public var text: String

    public init(channel: ChannelKind, chat: String, text: String) {
        self.channel = channel
        self.chat = chat
        self.text = text
    }
}

/// How a channel is doing, for `status` and `STATUS=`.
public enum ChannelState: Equatable, Sendable {
    /// Connecting or polling for the first time.
    case starting
    /// Connected; the last round trip with the service took `lastRoundTripMS`.
    case up
    /// Failing and backing off; the next try is due in a while (not stuck: an outage is not
    /// mended by a restart).
    case retrying(reason: String)
    /// Refused by the service (a bad token, a revoked app): no retries until the configuration
    /// changes; the owner is told on another channel.
    case broken(reason: String)
}

/// How sending one message ended.
public enum SendOutcome: Equatable, Sendable {
    /// Sent whole.
    case sent
    /// Not sent yet: try again after `after`. The first `partsSent` parts of a message the
    /// channel splits (counted from its first part, whatever `fromPart` was) were sent; the
    /// retry starts at the next one.
    case retry(after: Duration, reason: String, partsSent: Int)
    /// Refused for good (the chat does not exist, the bot was blocked, the token is wrong).
    case failed(reason: String)
}

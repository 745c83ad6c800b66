/// The box configuration that first-boot setup writes (`etc/aibox/box.toml`, issue 4): the
/// model, a deterministic writer, and the reader for the file (through `SetupFileReader`,
/// shared with seeds). Secrets are never part of it: the configuration names them
/// (`provider.openai.api-key`), their values travel apart as `[String: Secret]` and are stored
/// one file per secret under `var/lib/aibox/secrets/`. provisioning/README.md documents the
/// file's keys.

/// A secret value: an API key, a bot token, a Wi-Fi passphrase. It prints as `••••` however
/// it is printed (interpolation, `String(describing:)`, `debugPrint`, `dump`), it is not
/// `Codable` (so it cannot end up in JSON by accident), and its value is read only through
/// `reveal()`, which the code that writes the secret's file calls.
public struct Secret: Equatable, Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// What a secret looks like in any text meant for people.
    public static let masked = "••••"

    private let value: String

    public init(_ value: String) { self.value = value }

    /// The value itself: for writing the secret's file, nothing else.
    public func reveal() -> String { value }

    public var description: String { Secret.masked }
    public var debugDescription: String { Secret.masked }
    /// No children: `dump` and `Mirror` see nothing inside.
    public var customMirror: Mirror { Mirror(self, children: [:]) }
}

/// The names of the secrets setup stores; each is a file in `var/lib/aibox/secrets/` and a
/// name worker definitions can list in `secrets = [...]`.
public enum SecretName {
    public static let wifiPassphrase = "wifi.passphrase"
    public static let telegramToken = "channel.telegram.token"
    public static let slackBotToken = "channel.slack.bot-token"
    public static let slackAppToken = "channel.slack.app-token"
    public static let discordToken = "channel.discord.token"
    public static let whatsAppAccessToken = "channel.whatsapp.access-token"
    /// The WhatsApp app's secret: checks the signature of the webhook's deliveries.
    public static let whatsAppAppSecret = "channel.whatsapp.app-secret"
    /// The token Meta's webhook verification handshake echoes.
    public static let whatsAppVerifyToken = "channel.whatsapp.verify-token"

    public static func providerAPIKey(_ provider: String) -> String { "provider.\(provider).api-key" }
}

/// Everything `box.toml` holds.
public struct BoxConfig: Equatable, Sendable {
    /// The host name: one RFC 1123 label, lower case, at most 63 characters.
    public var name: String
    public var admin: AdminAccess
    /// An IANA zone name (`Area/City`) or `UTC`; the caller checks that the zone file exists.
    public var timezone: String
    public var network: NetworkConfig
    /// LLM providers in the order given; names are unique.
    public var providers: [ProviderConfig]
    /// Which provider/model routes serve each role: an ordered chain, the first route the
    /// primary and each next one the fallback of the one before; never empty, each route once,
    /// at most `maxChainLength`. A role without a chain is the agent's to derive (from chat's).
    public var routing: [LLMRole: [Route]]
    /// Caps on cloud spending; nil: none.
    public var budget: BudgetConfig?
    public var channels: ChannelsConfig
    public var updates: UpdatesConfig

    public static let defaultName = "aibox"
    public static let defaultTimezone = "UTC"
    /// The most routes one role's chain may have.
    public static let maxChainLength = 8

    public init(
        name: String = BoxConfig.defaultName, admin: AdminAccess, timezone: String = BoxConfig.defaultTimezone,
        network: NetworkConfig = NetworkConfig(), providers: [ProviderConfig] = [], routing: [LLMRole: [Route]] = [:],
        budget: BudgetConfig? = nil, channels: ChannelsConfig = ChannelsConfig(), updates: UpdatesConfig = UpdatesConfig()
    ) {
        self.name = name
        self.admin = admin
        self.timezone = timezone
        self.network = network
        self.providers = providers
        self.routing = routing
        self.budget = budget
        self.channels = channels
        self.updates = updates
    }

    public func provider(named name: String) -> ProviderConfig? { providers.first { $0.name == name } }

    /// The names of every secret the configuration refers to, in file order.
    public var secretNames: [String] {
        var names: [String] = []
        if let s = network.wifi?.passphraseSecret { names.append(s) }
        names += providers.compactMap(\.apiKeySecret)
        if let t = channels.telegram { names.append(t.tokenSecret) }
        if let s = channels.slack { names += [s.botTokenSecret, s.appTokenSecret] }
        if let d = channels.discord { names.append(d.tokenSecret) }
        if let w = channels.whatsapp {
            names.append(w.accessTokenSecret)
            names += [w.appSecretSecret, w.verifyTokenSecret].compactMap { $0 }
        }
        return names
    }
}

/// How the owner logs in: SSH keys and/or a password (only its crypt(3) hash is kept).
public struct AdminAccess: Equatable, Sendable {
    /// OpenSSH public key lines (`TYPE BASE64 [comment]`).
    public var sshKeys: [String]
    /// A crypt(3) string such as `$y$…` or `$6$…`; never the password.
    public var passwordHash: String?

    public init(sshKeys: [String] = [], passwordHash: String? = nil) {
        self.sshKeys = sshKeys
        self.passwordHash = passwordHash
    }

    /// Whether anyone can log in at all.
    public var isConfigured: Bool { !sshKeys.isEmpty || passwordHash != nil }
}

public struct NetworkConfig: Equatable, Sendable {
    public var wired: WiredNetwork
    public var wifi: WifiConfig?

    public init(wired: WiredNetwork = .dhcp, wifi: WifiConfig? = nil) {
        self.wired = wired
        self.wifi = wifi
    }
}

/// The wired interface: DHCP (the default) or a static address.
public enum WiredNetwork: Equatable, Sendable {
    case dhcp
    case `static`(StaticAddress)
}

public struct StaticAddress: Equatable, Sendable {
    /// IPv4 or IPv6 address of the box, as written.
    public var address: String
    /// Network prefix length: 0–32 for IPv4, 0–128 for IPv6.
    public var prefix: Int
    public var gateway: String?
    public var dns: [String]

    public init(address: String, prefix: Int, gateway: String? = nil, dns: [String] = []) {
        self.address = address
        self.prefix = prefix
        self.gateway = gateway
        self.dns = dns
    }
}

public struct WifiConfig: Equatable, Sendable {
    /// 1–32 bytes of UTF-8.
    public var ssid: String
    /// The passphrase's secret name; nil for an open network.
    public var passphraseSecret: String?
    /// ISO 3166-1 alpha-2, upper case: decides the radio channels allowed.
    public var country: String

    public init(ssid: String, passphraseSecret: String?, country: String) {
        self.ssid = ssid
        self.passphraseSecret = passphraseSecret
        self.country = country
    }
}

/// The APIs a provider can speak.
public enum ProviderKind: String, Sendable, CaseIterable, Codable {
    /// OpenAI's API, or any server compatible with it (vLLM, LM Studio, OpenRouter, …).
    case openai
    case anthropic
    case ollama
    /// llama.cpp's `llama-server`.
    case llamacpp

    /// The base URL used when none is given.
    public var defaultBaseURL: String {
        switch self {
        case .openai: return "https://api.openai.com/v1"
        case .anthropic: return "https://api.anthropic.com"
        case .ollama: return "http://127.0.0.1:11434"
        case .llamacpp: return "http://127.0.0.1:8080"
        }
    }

    /// Whether the server usually runs on the box or the local network.
    public var isLocal: Bool { self == .ollama || self == .llamacpp }

    /// Whether a provider of this kind at `baseURL` needs an API key: the official cloud APIs
    /// (api.openai.com, api.anthropic.com) always do; self-hosted servers may not.
    public func requiresAPIKey(baseURL: String) -> Bool {
        guard !isLocal, case .success(let url) = Validators.url(baseURL), case .success(let official) = Validators.url(defaultBaseURL)
        else { return false }
        return url.host.lowercased() == official.host
    }
}

public struct ProviderConfig: Equatable, Sendable {
    /// `[a-z0-9][a-z0-9-]{0,31}`: part of secret names and routes.
    public var name: String
    public var kind: ProviderKind
    /// http or https with a host, no query or fragment.
    public var baseURL: String
    /// The API key's secret name, or nil when the provider needs none.
    public var apiKeySecret: String?
    /// At least one model name.
    public var models: [String]

    public init(name: String, kind: ProviderKind, baseURL: String? = nil, apiKeySecret: String? = nil, models: [String]) {
        self.name = name
        self.kind = kind
        self.baseURL = baseURL ?? kind.defaultBaseURL
        self.apiKeySecret = apiKeySecret
        self.models = models
    }
}

/// What an agent asks a model for.
public enum LLMRole: String, Sendable, CaseIterable, Codable, Comparable {
    case chat, code, reasoning

    public static func < (a: LLMRole, b: LLMRole) -> Bool {
        (allCases.firstIndex(of: a) ?? 0) < (allCases.firstIndex(of: b) ?? 0)
    }
}

/// One route of a role's chain: a provider, one of its models, and optionally the model's
/// context window. Two routes of one chain never share provider and model.
public struct Route: Equatable, Sendable, CustomStringConvertible {
    public var provider: String
    public var model: String
    /// The model's context window in tokens (`contextRange`); nil: not given.
    public var context: Int?

    /// What `context` may be: from a tiny model's window to the largest offered.
    public static let contextRange = 512...10_000_000

    public init(provider: String, model: String, context: Int? = nil) {
        self.provider = provider
        self.model = model
        self.context = context
    }

    /// `provider/model`: provider names hold no '/', so the first one separates them.
    public var description: String { "\(provider)/\(model)" }

    /// Whether `other` names the same provider and model (whatever its context).
    public func isSameModel(as other: Route) -> Bool { provider == other.provider && model == other.model }
}

/// What happens once a budget cap is reached, until its day or month is over.
public enum BudgetExhaustion: String, Sendable, CaseIterable, Codable {
    /// Chains shrink to their local routes (cloud routes are skipped).
    case local
    /// Requests are answered with the budget notice only.
    case refuse
}

/// `[budget]`: caps on what cloud models may cost, in US dollars; local models cost nothing.
/// Days and months are the box's, in its time zone.
public struct BudgetConfig: Equatable, Sendable {
    /// Cap per day; nil: none. 0 ... `maxUSD`.
    public var dailyUSD: Double?
    /// Cap per calendar month; nil: none. 0 ... `maxUSD`.
    public var monthlyUSD: Double?
    /// The share of a cap at which the owner is warned: more than 0, at most 1.
    public var warnAt: Double
    public var whenExhausted: BudgetExhaustion

    public static let defaultWarnAt = 0.8
    /// The largest cap accepted: a bigger number is a typo, not a budget.
    public static let maxUSD = 1_000_000.0

    public init(
        dailyUSD: Double? = nil, monthlyUSD: Double? = nil, warnAt: Double = BudgetConfig.defaultWarnAt,
        whenExhausted: BudgetExhaustion = .local
    ) {
        self.dailyUSD = dailyUSD
        self.monthlyUSD = monthlyUSD
        self.warnAt = warnAt
        self.whenExhausted = whenExhausted
    }

    /// "$2.00", "$0.005": whole cents with two decimals, anything finer as it is.
    public static func dollars(_ usd: Double) -> String {
        let cents = (usd * 100).rounded()
        guard usd.isFinite, abs(usd * 100 - cents) < 1e-6, cents < 1e15 else { return "$\(usd)" }
        let c = Int(cents)
        return "$\(c / 100)." + (c % 100 < 10 ? "0" : "") + "\(c % 100)"
    }

    /// For people: "$2.00 a day, $30.00 a month, warn at 80%, then local models only".
    public var summary: String {
        var parts: [String] = []
        if let d = dailyUSD { parts.append("\(BudgetConfig.dollars(d)) a day") }
        if let m = monthlyUSD { parts.append("\(BudgetConfig.dollars(m)) a month") }
        let percent = (warnAt * 1000).rounded() / 10
        let shown = percent == percent.rounded() ? String(Int(percent)) : String(percent)
        parts.append("warn at \(shown)%")
        parts.append(whenExhausted == .local ? "then local models only" : "then refuse to answer")
        return parts.joined(separator: ", ")
    }
}

/// The chat channels the box is commanded over; each is optional.
public struct ChannelsConfig: Equatable, Sendable {
    public var telegram: TelegramChannel?
    public var slack: SlackChannel?
    public var discord: DiscordChannel?
    public var whatsapp: WhatsAppChannel?

    public init(
        telegram: TelegramChannel? = nil, slack: SlackChannel? = nil, discord: DiscordChannel? = nil,
        whatsapp: WhatsAppChannel? = nil
    ) {
        self.telegram = telegram
        self.slack = slack
        self.discord = discord
        self.whatsapp = whatsapp
    }

    public var isEmpty: Bool { telegram == nil && slack == nil && discord == nil && whatsapp == nil }
}

// What every channel has besides its credentials: who owns the box there, and where its
// API is (nil: the service's own; tests point it at a loopback fake).
//
// `owners` are the service's immutable user ids as strings: a Telegram user id (digits), a
// Slack `TEAM:USER`, a Discord user id (a snowflake), a WhatsApp number (E.164 without '+').
// Empty: nobody, until someone pairs with `aibox-agent pair CHANNEL`.

public struct TelegramChannel: Equatable, Sendable {
    public var tokenSecret: String
    /// Telegram user ids, each once.
    public var owners: [String]
    /// The Bot API's base URL; nil: https://api.telegram.org.
    public var baseURL: String?
    public init(tokenSecret: String = SecretName.telegramToken, owners: [String] = [], baseURL: String? = nil) {
        self.tokenSecret = tokenSecret
        self.owners = owners
        self.baseURL = baseURL
    }
}

/// Slack in Socket Mode: the bot token (`xoxb-`) acts, the app-level token (`xapp-`) opens the socket.
public struct SlackChannel: Equatable, Sendable {
    public var botTokenSecret: String
    public var appTokenSecret: String
    /// `TEAM:USER` ids, each once.
    public var owners: [String]
    /// The Web API's base URL; nil: https://slack.com/api.
    public var baseURL: String?
    public init(
        botTokenSecret: String = SecretName.slackBotToken, appTokenSecret: String = SecretName.slackAppToken, owners: [String] = [],
        baseURL: String? = nil
    ) {
        self.botTokenSecret = botTokenSecret
        self.appTokenSecret = appTokenSecret
        self.owners = owners
        self.baseURL = baseURL
    }
}

public struct DiscordChannel: Equatable, Sendable {
    public var tokenSecret: String
    /// Discord user ids (snowflakes), each once.
    public var owners: [String]
    /// The REST API's base URL; nil: https://discord.com/api/v10.
    public var baseURL: String?
    public init(tokenSecret: String = SecretName.discordToken, owners: [String] = [], baseURL: String? = nil) {
        self.tokenSecret = tokenSecret
        self.owners = owners
        self.baseURL = baseURL
    }
}

/// WhatsApp through Meta's WhatsApp Business Cloud API: the phone number ID the messages are
/// sent from (not the phone number) and an access token (a system user's permanent token).
/// Messages come in only through the webhook, whose deliveries the app secret signs; without
/// it the box still sends.
public struct WhatsAppChannel: Equatable, Sendable {
    public var phoneNumberId: String
    public var accessTokenSecret: String
    /// The app secret's secret name; nil: no webhook (the box sends only).
    public var appSecretSecret: String?
    /// The webhook's verify token's secret name; nil: no webhook verification handshake.
    public var verifyTokenSecret: String?
    /// Phone numbers, E.164 without '+', each once.
    public var owners: [String]
    /// The Graph API's base URL; nil: https://graph.facebook.com.
    public var baseURL: String?
    /// Where the webhook listens, `HOST:PORT`; nil: 127.0.0.1:8790 (a reverse proxy or a
    /// tunnel on the box forwards Meta's deliveries to it).
    public var listen: String?
    public init(
        phoneNumberId: String, accessTokenSecret: String = SecretName.whatsAppAccessToken, appSecretSecret: String? = nil,
        verifyTokenSecret: String? = nil, owners: [String] = [], baseURL: String? = nil, listen: String? = nil
    ) {
        self.listen = listen
        self.phoneNumberId = phoneNumberId
        self.accessTokenSecret = accessTokenSecret
        self.appSecretSecret = appSecretSecret
        self.verifyTokenSecret = verifyTokenSecret
        self.owners = owners
        self.baseURL = baseURL
    }
}

public enum UpdateChannel: String, Sendable, CaseIterable, Codable {
    case stable, beta
}

public struct UpdatesConfig: Equatable, Sendable {
    public var channel: UpdateChannel
    /// https (http only for 127.0.0.1/localhost); nil: the feed built into the image.
    public var feedURL: String?
    /// Whether updates are installed without being asked, inside `window`.
    public var automatic: Bool
    public var window: MaintenanceWindow

    public init(
        channel: UpdateChannel = .stable, feedURL: String? = nil, automatic: Bool = true,
        window: MaintenanceWindow = .defaultWindow
    ) {
        self.channel = channel
        self.feedURL = feedURL
        self.automatic = automatic
        self.window = window
    }
}

/// A daily time window in the box's time zone, `HH:MM-HH:MM`; it may wrap midnight
/// (`22:30-02:00`). The end is exclusive.
public struct MaintenanceWindow: Equatable, Sendable, CustomStringConvertible {
    /// Minutes after midnight, 0..<1440.
    public let start: Int
    public let end: Int

    public static let defaultWindow = MaintenanceWindow(uncheckedStart: 3 * 60, end: 5 * 60)

    /// Nil unless both are in 0..<1440 and differ.
    public init?(start: Int, end: Int) {
        guard (0..<1440).contains(start), (0..<1440).contains(end), start != end else { return nil }
        self.start = start
        self.end = end
    }

    private init(uncheckedStart: Int, end: Int) {
        self.start = uncheckedStart
        self.end = end
    }

    /// Parses `HH:MM-HH:MM` (two digits each).
    public init?(_ text: String) {
        let b = Array(text.utf8)
        guard b.count == 11, b[5] == UInt8(ascii: "-"), let s = MaintenanceWindow.minutes(b[0..<5]),
            let e = MaintenanceWindow.minutes(b[6..<11])
        else { return nil }
        self.init(start: s, end: e)
    }

    static func minutes(_ b: ArraySlice<UInt8>) -> Int? {
        let d = Array(b)
        guard d.count == 5, d[2] == UInt8(ascii: ":") else { return nil }
        let digits = [d[0], d[1], d[3], d[4]]
        guard digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        let v = digits.map { Int($0 - 0x30) }
        let hour = v[0] * 10 + v[1], minute = v[2] * 10 + v[3]
        guard hour < 24, minute < 60 else { return nil }
        return hour * 60 + minute
    }

    public var wrapsMidnight: Bool { end < start }

    /// Whether a time of day (minutes after midnight) is inside the window.
    public func contains(minuteOfDay m: Int) -> Bool {
        wrapsMidnight ? (m >= start || m < end) : (m >= start && m < end)
    }

    public var description: String { "\(MaintenanceWindow.clock(start))-\(MaintenanceWindow.clock(end))" }

    static func clock(_ minutes: Int) -> String {
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(two(minutes / 60)):\(two(minutes % 60))"
    }
}

// MARK: - Reading and writing box.toml

extension BoxConfig {
    /// Reads `box.toml` as `tomlText()` writes it (secret names, not values). Every problem is
    /// reported at once, each with the file, line and key.
    public static func parse(text: String, path: String) -> Result<BoxConfig, SetupErrors> {
        SetupFileReader.read(text: text, path: path, form: .boxFile).map(\.config)
    }

    /// `box.toml`: a fixed key order, strings escaped as TOML basic strings, tables only when
    /// they have content. The same configuration always gives the same bytes.
    public func tomlText() -> String {
        var out = TOMLLines()
        out.comment("Written by `aibox setup`. Secrets are not in this file: each *-secret key names")
        out.comment("a file in /var/lib/aibox/secrets/.")
        out.blank()
        out.set("name", .string(name))
        out.set("timezone", .string(timezone))

        out.table("admin")
        if !admin.sshKeys.isEmpty { out.set("ssh-keys", .strings(admin.sshKeys)) }
        if let h = admin.passwordHash { out.set("password-hash", .string(h)) }

        out.table("network.wired")
        switch network.wired {
        case .dhcp:
            out.set("mode", .string("dhcp"))
        case .static(let s):
            out.set("mode", .string("static"))
            out.set("address", .string(s.address))
            out.set("prefix", .int(s.prefix))
            if let g = s.gateway { out.set("gateway", .string(g)) }
            if !s.dns.isEmpty { out.set("dns", .strings(s.dns)) }
        }
        if let w = network.wifi {
            out.table("network.wifi")
            out.set("ssid", .string(w.ssid))
            if let p = w.passphraseSecret { out.set("passphrase-secret", .string(p)) }
            out.set("country", .string(w.country))
        }

        for p in providers {
            out.table("providers." + TOMLLines.key(p.name))
            out.set("kind", .string(p.kind.rawValue))
            out.set("base-url", .string(p.baseURL))
            if let k = p.apiKeySecret { out.set("api-key-secret", .string(k)) }
            out.set("models", .strings(p.models))
        }

        if !routing.isEmpty {
            out.table("routing")
            for role in LLMRole.allCases {
                guard let chain = routing[role], !chain.isEmpty else { continue }
                func inline(_ r: Route) -> String {
                    "{ provider = \(tomlBasicString(r.provider)), model = \(tomlBasicString(r.model))"
                        + (r.context.map { ", context = \($0)" } ?? "") + " }"
                }
                // A chain of one as the inline table it always was; longer ones a route a line.
                let value = chain.count == 1 ? inline(chain[0]) : "[\n" + chain.map { "    \(inline($0)),\n" }.joined() + "]"
                out.set(role.rawValue, .raw(value))
            }
        }

        if let b = budget {
            out.table("budget")
            if let d = b.dailyUSD { out.set("daily-usd", .double(d)) }
            if let m = b.monthlyUSD { out.set("monthly-usd", .double(m)) }
            out.set("warn-at", .double(b.warnAt))
            out.set("when-exhausted", .string(b.whenExhausted.rawValue))
        }

        func common(_ owners: [String], _ baseURL: String?) {
            if !owners.isEmpty { out.set("owners", .strings(owners)) }
            if let u = baseURL { out.set("base-url", .string(u)) }
        }
        if let t = channels.telegram {
            out.table("channels.telegram")
            out.set("token-secret", .string(t.tokenSecret))
            common(t.owners, t.baseURL)
        }
        if let s = channels.slack {
            out.table("channels.slack")
            out.set("bot-token-secret", .string(s.botTokenSecret))
            out.set("app-token-secret", .string(s.appTokenSecret))
            common(s.owners, s.baseURL)
        }
        if let d = channels.discord {
            out.table("channels.discord")
            out.set("token-secret", .string(d.tokenSecret))
            common(d.owners, d.baseURL)
        }
        if let w = channels.whatsapp {
            out.table("channels.whatsapp")
            out.set("phone-number-id", .string(w.phoneNumberId))
            out.set("access-token-secret", .string(w.accessTokenSecret))
            if let a = w.appSecretSecret { out.set("app-secret-secret", .string(a)) }
            if let v = w.verifyTokenSecret { out.set("verify-token-secret", .string(v)) }
            if let l = w.listen { out.set("listen", .string(l)) }
            common(w.owners, w.baseURL)
        }

        out.table("updates")
        out.set("channel", .string(updates.channel.rawValue))
        if let f = updates.feedURL { out.set("feed-url", .string(f)) }
        out.set("automatic", .bool(updates.automatic))
        out.set("window", .string(updates.window.description))
        return out.text
    }

    /// A few lines for people (the wizard's summary, `status`), each at most `width`
    /// columns. Secrets appear only as `••••`: the configuration holds no secret value.
    public func summaryLines(width: Int = 80) -> [String] {
        var rows: [(String, String)] = []
        rows.append(("name", name))
        var admins: [String] = []
        if !admin.sshKeys.isEmpty {
            let comments = admin.sshKeys.compactMap { line -> String? in
                let parts = line.split(separator: " ", maxSplits: 2)
                return parts.count == 3 ? String(parts[2]) : nil
            }
            let n = admin.sshKeys.count
            admins.append("\(n) SSH key\(n == 1 ? "" : "s")" + (comments.isEmpty ? "" : " (\(comments.joined(separator: ", ")))"))
        }
        admins.append(admin.passwordHash == nil ? "no password" : "password \(Secret.masked)")
        rows.append(("admin", admins.joined(separator: "; ")))
        rows.append(("time zone", timezone))
        var net: String
        switch network.wired {
        case .dhcp: net = "wired DHCP"
        case .static(let s):
            net = "wired \(s.address)/\(s.prefix)" + (s.gateway.map { " via \($0)" } ?? "")
            if !s.dns.isEmpty { net += ", DNS \(s.dns.joined(separator: " "))" }
        }
        if let w = network.wifi {
            net += "; Wi-Fi \"\(w.ssid)\" (\(w.country)), " + (w.passphraseSecret == nil ? "open" : "passphrase \(Secret.masked)")
        }
        rows.append(("network", net))
        if providers.isEmpty { rows.append(("providers", "none")) }
        for (i, p) in providers.enumerated() {
            let key = p.apiKeySecret == nil ? "" : ", key \(Secret.masked)"
            rows.append((i == 0 ? "providers" : "", "\(p.name): \(p.kind.rawValue) \(p.baseURL)\(key); \(p.models.joined(separator: " "))"))
        }
        let chains = LLMRole.allCases.compactMap { role in
            routing[role].map { "\(role.rawValue): " + $0.map(\.description).joined(separator: " → ") }
        }
        if chains.isEmpty { rows.append(("routing", "none")) }
        for (i, c) in chains.enumerated() { rows.append((i == 0 ? "routing" : "", c)) }
        rows.append(("budget", budget?.summary ?? "none"))
        var chans: [String] = []
        func owners(_ o: [String]) -> String { o.isEmpty ? "no owner yet" : "\(o.count) owner\(o.count == 1 ? "" : "s")" }
        if let t = channels.telegram { chans.append("Telegram (token \(Secret.masked), \(owners(t.owners)))") }
        if let s = channels.slack { chans.append("Slack (tokens \(Secret.masked), \(owners(s.owners)))") }
        if let d = channels.discord { chans.append("Discord (token \(Secret.masked), \(owners(d.owners)))") }
        if let w = channels.whatsapp { chans.append("WhatsApp \(w.phoneNumberId) (token \(Secret.masked), \(owners(w.owners)))") }
        rows.append(("channels", chans.isEmpty ? "none" : chans.joined(separator: "; ")))
        let feed = updates.feedURL ?? "built-in feed"
        let auto = updates.automatic ? "automatic \(updates.window)" : "manual"
        rows.append(("updates", "\(updates.channel.rawValue), \(feed), \(auto)"))
        // Long values go on indented continuation lines.
        let indent = String(repeating: " ", count: 13)
        return rows.flatMap { label, value in
            let lines = wrap(value, width: max(20, width - indent.count))
            let first = "  " + label + String(repeating: " ", count: max(1, 11 - label.count)) + (lines.first ?? "")
            return [first] + lines.dropFirst().map { indent + $0 }
        }
    }
}

/// Cuts `text` to `width` characters, ending with "…" when cut.
public func fitColumns(_ text: String, width: Int) -> String {
    guard text.count > width, width > 1 else { return text }
    return String(text.prefix(width - 1)) + "…"
}

/// The words of `text` in lines of at most `width` characters (a longer word is cut).
func wrap(_ text: String, width: Int) -> [String] {
    var lines: [String] = []
    var line = ""
    for word in text.split(separator: " ") {
        if !line.isEmpty && line.count + 1 + word.count > width {
            lines.append(line)
            line = ""
        }
        line += (line.isEmpty ? "" : " ") + fitColumns(String(word), width: width)
    }
    if !line.isEmpty { lines.append(line) }
    return lines
}

/// Builds TOML text line by line.
struct TOMLLines {
    enum Value {
        case string(String), strings([String]), int(Int), double(Double), bool(Bool), raw(String)
    }

    private(set) var text = ""

    mutating func comment(_ s: String) { text += "# \(s)\n" }
    mutating func blank() { text += "\n" }

    mutating func table(_ header: String) {
        if !text.isEmpty && !text.hasSuffix("\n\n") { text += "\n" }
        text += "[\(header)]\n"
    }

    mutating func set(_ key: String, _ value: Value) {
        let v: String
        switch value {
        case .string(let s): v = tomlBasicString(s)
        case .int(let i): v = String(i)
        // Swift's shortest form that reads back as the same Double ("2.0", "0.8", "1e-05"):
        // always a TOML float. Zero without its sign.
        case .double(let d): v = String(d == 0 ? 0.0 : d)
        case .bool(let b): v = b ? "true" : "false"
        case .raw(let r): v = r
        case .strings(let a):
            // One per line once the array would make a long line (SSH keys).
            let oneLine = "[" + a.map(tomlBasicString).joined(separator: ", ") + "]"
            v = oneLine.count + key.count + 3 <= 100 ? oneLine : "[\n" + a.map { "    \(tomlBasicString($0)),\n" }.joined() + "]"
        }
        text += "\(TOMLLines.key(key)) = \(v)\n"
    }

    /// A bare key when it can be one, else a quoted key.
    static func key(_ k: String) -> String {
        let bare =
            !k.isEmpty
            && k.utf8.allSatisfy { c in
                (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x5F || c == 0x2D
            }
        return bare ? k : tomlBasicString(k)
    }

}

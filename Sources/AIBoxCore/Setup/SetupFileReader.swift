// Reading seeds and box.toml: one strict reader for both forms of the same layout, collecting
// every problem with its key path and line (SetupError).

/// The two forms of the same layout: a seed carries secret values (`token = "…"`),
/// `box.toml` the secrets' names (`token-secret = "channel.telegram.token"`).
enum SetupFileForm {
    case seed, boxFile
}

/// Reads a seed or `box.toml` into a `BoxConfig`, collecting every problem.
final class SetupFileReader {
    let form: SetupFileForm
    let file: String
    var errors: [SetupError] = []
    var secrets: [String: Secret] = [:]
    let zoneExists: Validators.ZoneCheck?

    private init(form: SetupFileForm, file: String, zoneExists: Validators.ZoneCheck?) {
        self.form = form
        self.file = file
        self.zoneExists = zoneExists
    }

    static let topLevelKeys = ["name", "timezone", "admin", "network", "providers", "routing", "budget", "channels", "updates"]
    static let maxProviders = 32, maxSSHKeys = 32, maxDNS = 8

    static func read(
        text: String, path: String, form: SetupFileForm, zoneExists: Validators.ZoneCheck? = nil
    ) -> Result<(config: BoxConfig, secrets: [String: Secret]), SetupErrors> {
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch {
            return .failure(
                SetupErrors([
                    SetupError(
                        file: path, line: error.position.line, column: error.position.column, key: nil,
                        message: "not valid TOML: \(error.description)")
                ]))
        }
        let reader = SetupFileReader(form: form, file: path, zoneExists: zoneExists)
        let config = reader.readConfig(SetupTable(root, path: [], line: nil, reader: reader))
        guard reader.errors.isEmpty else {
            // File order; problems without a line (missing top-level keys) first.
            let sorted = reader.errors.enumerated().sorted { ($0.element.line ?? 0, $0.offset) < ($1.element.line ?? 0, $1.offset) }
            return .failure(SetupErrors(sorted.map(\.element)))
        }
        return .success((config, reader.secrets))
    }

    func add(_ line: Int?, _ path: [String], _ message: String) {
        errors.append(SetupError(file: file, line: line, key: path.map(TOMLLines.key).joined(separator: "."), message: message))
    }

    /// The key of a secret in this form: `token` in a seed, `token-secret` in box.toml.
    func secretKey(_ base: String) -> String { form == .seed ? base : base + "-secret" }

    /// A secret: in a seed its value, checked by `validate` and kept under `name`; in box.toml
    /// the name of the secret's file. Nil when absent or wrong (reported, with `missing` as
    /// the hint when the key is required).
    func secret(
        _ t: SetupTable, _ base: String, name: String, missing: String?, validate: (String) -> Validated<Secret>
    ) -> String? {
        let key = secretKey(base)
        guard let value = t.value(key) else {
            if let missing { t.missing(key, missing) }
            return nil
        }
        guard let text = value.string else {
            t.fail(key, "must be a string in quotes, not \(SetupTable.kind(of: value))")
            return nil
        }
        switch form {
        case .seed:
            switch validate(text) {
            case .success(let s):
                secrets[name] = s
                return name
            case .failure(let e):
                t.fail(key, e.message)
                return nil
            }
        case .boxFile:
            guard WorkerConfig.isValidSecretName(text) else {
                t.fail(key, "\(Validators.quote(text)) is not a secret name; use a-z, 0-9, '.', '_' and '-', such as \"\(name)\"")
                return nil
            }
            return text
        }
    }

    // MARK: Sections

    func readConfig(_ root: SetupTable) -> BoxConfig {
        root.rejectUnknownKeys(SetupFileReader.topLevelKeys)
        var config = BoxConfig(admin: AdminAccess())
        if let name = root.check("name", Validators.hostname, missing: "every box needs a name, such as name = \"kitchen-box\"") {
            config.name = name
        }
        if let tz = root.check("timezone", { Validators.timezone($0, exists: self.zoneExists) }, missing: nil) { config.timezone = tz }
        if let admin = root.table("admin") {
            config.admin = readAdmin(admin)
        } else if root.value("admin") == nil {
            root.missing(
                "admin", "the box needs admin access: [admin] with ssh-keys = [\"ssh-ed25519 AAAA… you@laptop\"] and/or password-hash")
        }
        if let network = root.table("network") {
            network.rejectUnknownKeys(["wired", "wifi"])
            if let wired = network.table("wired") { config.network.wired = readWired(wired) }
            if let wifi = network.table("wifi") { config.network.wifi = readWifi(wifi) }
        }
        if let providers = root.table("providers") { config.providers = readProviders(providers) }
        if let routing = root.table("routing") {
            config.routing = readRouting(routing, providers: config.providers, named: root.table("providers", report: false))
        }
        if let budget = root.table("budget") { config.budget = readBudget(budget) }
        if let channels = root.table("channels") { config.channels = readChannels(channels) }
        if let updates = root.table("updates") { config.updates = readUpdates(updates) }
        return config
    }

    func readAdmin(_ t: SetupTable) -> AdminAccess {
        t.rejectUnknownKeys(
            ["ssh-keys", "password-hash"],
            special: [
                "password":
                    "a \(form == .seed ? "seed" : "box.toml") never holds the password itself; give its crypt(3) hash as password-hash "
                    + "(make one with `mkpasswd -m yescrypt` or `openssl passwd -6`)"
            ])
        var admin = AdminAccess()
        if let keys = t.strings("ssh-keys", max: SetupFileReader.maxSSHKeys) {
            for (i, k) in keys.enumerated() {
                switch Validators.sshPublicKey(k) {
                case .success(let line):
                    if admin.sshKeys.contains(line) {
                        t.fail("ssh-keys", "entry \(i + 1) is the same key as an earlier one; list each key once")
                    } else {
                        admin.sshKeys.append(line)
                    }
                case .failure(let e):
                    t.fail("ssh-keys", "entry \(i + 1): \(e.message)")
                }
            }
        }
        admin.passwordHash = t.check("password-hash", Validators.passwordHash, missing: nil)
        let emptyKeys = t.value("ssh-keys")?.array?.isEmpty ?? true
        if emptyKeys && t.value("password-hash") == nil {
            t.failHere(
                "gives no way to log in; add ssh-keys = [\"ssh-ed25519 AAAA… you@laptop\"] and/or password-hash = \"$y$…\"")
        }
        return admin
    }

    func readWired(_ t: SetupTable) -> WiredNetwork {
        let staticKeys = ["address", "prefix", "gateway", "dns"]
        t.rejectUnknownKeys(["mode"] + staticKeys)
        if let v = t.value("mode"), v.string == nil {
            t.fail("mode", "must be a string in quotes, \"dhcp\" or \"static\", not \(SetupTable.kind(of: v))")
            return .dhcp
        }
        switch t.value("mode")?.string ?? "dhcp" {
        case "dhcp":
            for k in staticKeys where t.value(k) != nil {
                t.fail(k, "is used only with mode = \"static\"; remove it, or set mode = \"static\"")
            }
            return .dhcp
        case "static":
            guard let address = t.check("address", Validators.ipAddress, missing: "a static address needs address = \"192.168.1.50\"")
            else {
                return .dhcp
            }
            var prefix = address.isIPv4 ? 24 : 64
            if let p = t.int("prefix") {
                switch Validators.prefixLength(p, for: address) {
                case .success(let n): prefix = n
                case .failure(let e): t.fail("prefix", e.message)
                }
            }
            let gateway = t.check("gateway", { Validators.gateway($0, address: address, prefix: prefix) }, missing: nil)
            var dns: [String] = []
            if let list = t.strings("dns", max: SetupFileReader.maxDNS) {
                for (i, d) in list.enumerated() {
                    switch Validators.ipAddress(d) {
                    case .success: dns.append(d)
                    case .failure(let e): t.fail("dns", "entry \(i + 1): \(e.message)")
                    }
                }
            }
            return .static(StaticAddress(address: address.description, prefix: prefix, gateway: gateway?.description, dns: dns))
        case let other:
            t.fail("mode", "\(Validators.quote(other)) is not a mode; use \"dhcp\" (the default) or \"static\"")
            return .dhcp
        }
    }

    func readWifi(_ t: SetupTable) -> WifiConfig? {
        t.rejectUnknownKeys(["ssid", secretKey("passphrase"), "country"])
        let ssid = t.check("ssid", Validators.ssid, missing: "Wi-Fi needs the network's name: ssid = \"Home\"")
        let passphrase = secret(t, "passphrase", name: SecretName.wifiPassphrase, missing: nil, validate: Validators.wifiPassphrase)
        let country = t.check(
            "country", Validators.country, missing: "Wi-Fi needs the country whose radio rules apply: country = \"DE\" (ISO 3166)")
        guard let ssid, let country else { return nil }
        return WifiConfig(ssid: ssid, passphraseSecret: passphrase, country: country)
    }

    func readProviders(_ t: SetupTable) -> [ProviderConfig] {
        if t.table.keys.count > SetupFileReader.maxProviders {
            t.failHere("\(t.table.keys.count) providers; at most \(SetupFileReader.maxProviders)")
            return []
        }
        var providers: [ProviderConfig] = []
        for name in t.table.keys {
            if case .failure(let e) = Validators.providerName(name) {
                t.fail(name, e.message)
                continue
            }
            guard let p = t.table(name, example: "[providers.\(name)]") else { continue }
            p.rejectUnknownKeys(["kind", "base-url", secretKey("api-key"), "models"])
            let kindNames = ProviderKind.allCases.map(\.rawValue)
            let kind = p.check(
                "kind",
                { text in
                    ProviderKind(rawValue: text).map { .success($0) }
                        ?? Validators.fail(
                            "\(Validators.quote(text)) is not a provider kind; "
                                + (Validators.nearest(text, in: kindNames).map { "did you mean \"\($0)\"? " } ?? "")
                                + "use openai (also for OpenAI-compatible servers), anthropic, ollama or llamacpp")
                },
                missing: "say which API the provider speaks: kind = \"openai\", \"anthropic\", \"ollama\" or \"llamacpp\"")
            // Kept as written (a valid URL); nil when absent or wrong.
            let baseURL = p.check("base-url", Validators.url, missing: nil).flatMap { _ in p.value("base-url")?.string }
            let models = p.strings("models", max: nil).flatMap { list -> [String]? in
                switch Validators.modelList(list) {
                case .success(let m): return m
                case .failure(let e):
                    p.fail("models", e.message)
                    return nil
                }
            }
            if p.value("models") == nil { p.missing("models", "name the models to use, such as models = [\"gpt-4o-mini\"]") }
            guard let kind else { continue }
            let url = baseURL ?? kind.defaultBaseURL
            let required = kind.requiresAPIKey(baseURL: url)
            let apiKey = secret(
                p, "api-key", name: SecretName.providerAPIKey(name),
                missing: required ? "the \(kind == .openai ? "OpenAI" : "Anthropic") API needs an API key: api-key = \"…\"" : nil,
                validate: Validators.apiKey)
            var baseURLIsWrong = p.value("base-url") != nil && baseURL == nil
            // A key never crosses a network in clear (a keyless server on the LAN may speak http).
            if let baseURL, apiKey != nil, case .failure(let e) = Validators.providerURL(baseURL) {
                p.fail("base-url", e.message + " when it has an API key")
                baseURLIsWrong = true
            }
            guard let models, !baseURLIsWrong else { continue }
            providers.append(ProviderConfig(name: name, kind: kind, baseURL: url, apiKeySecret: apiKey, models: models))
        }
        return providers
    }

    static let routeExample = "{ provider = \"openai\", model = \"gpt-4o-mini\" }"

    /// Each role's value: one inline table (a chain of one) or an array of them.
    func readRouting(_ t: SetupTable, providers: [ProviderConfig], named: SetupTable?) -> [LLMRole: [Route]] {
        t.rejectUnknownKeys(LLMRole.allCases.map(\.rawValue))
        var routing: [LLMRole: [Route]] = [:]
        for role in LLMRole.allCases {
            let key = role.rawValue
            guard let value = t.value(key) else { continue }
            let roleLine = t.table.line(of: key) ?? t.line
            // Each entry with the table it is read from; nil where it is not a table.
            var entries: [SetupTable?] = []
            switch value {
            case .table(let one):
                entries = [SetupTable(one, path: t.path + [key], line: roleLine, reader: self)]
            case .array(let items):
                if items.count > BoxConfig.maxChainLength || items.isEmpty {
                    t.fail(key, (items.isEmpty ? "is an empty chain" : "has \(items.count) routes") + chainRule(role))
                    continue
                }
                for (i, item) in items.enumerated() {
                    guard let inline = item.table else {
                        t.fail(
                            key,
                            "route \(i + 1) must be an inline table such as \(SetupFileReader.routeExample), not \(SetupTable.kind(of: item))"
                        )
                        entries.append(nil)
                        continue
                    }
                    // An entry's own line: that of its first key (arrays may span lines).
                    let line = inline.keys.first.flatMap { inline.line(of: $0) } ?? roleLine
                    var entry = SetupTable(inline, path: t.path + [key], line: line, reader: self)
                    entry.messagePrefix = "route \(i + 1): "
                    entries.append(entry)
                }
            default:
                t.fail(
                    key,
                    "must be a route such as \(key) = \(SetupFileReader.routeExample), or an array of routes (first = primary), "
                        + "not \(SetupTable.kind(of: value))")
                continue
            }
            var chain: [(number: Int, route: Route)] = []
            for (i, entry) in entries.enumerated() {
                guard let entry, let r = readRoute(entry, role: role, providers: providers, named: named) else { continue }
                if let first = chain.first(where: { $0.route.isSameModel(as: r) }) {
                    entry.failHere("\(r) is in the chain already (route \(first.number)); list each route once")
                    continue
                }
                chain.append((i + 1, r))
            }
            if chain.count == entries.count { routing[role] = chain.map(\.route) }
        }
        return routing
    }

    func chainRule(_ role: LLMRole) -> String {
        "; a chain has 1 to \(BoxConfig.maxChainLength) routes, the first tried first, such as "
            + "\(role.rawValue) = [{ provider = \"local\", model = \"M\" }, { provider = \"openai\", model = \"gpt-4o-mini\" }]"
    }

    func readRoute(_ r: SetupTable, role: LLMRole, providers: [ProviderConfig], named: SetupTable?) -> Route? {
        r.rejectUnknownKeys(["provider", "model", "context"])
        let provider = r.check("provider", { .success($0) }, missing: "say which provider serves \(role.rawValue): provider = \"NAME\"")
        let model = r.check("model", { .success($0) }, missing: "say which model serves \(role.rawValue): model = \"NAME\"")
        var context: Int?
        var contextIsWrong = false
        if let n = r.int("context") {
            switch Validators.contextWindow(n) {
            case .success(let c): context = c
            case .failure(let e):
                r.fail("context", e.message)
                contextIsWrong = true
            }
        } else if r.value("context") != nil {
            contextIsWrong = true
        }
        guard let provider, let model else { return nil }
        guard let p = providers.first(where: { $0.name == provider }) else {
            // A provider with problems of its own has been reported already.
            if named?.table[provider] == nil {
                let known = providers.map(\.name)
                r.fail(
                    "provider",
                    "\(Validators.quote(provider)) is not a provider of this file; "
                        + (known.isEmpty ? "define it first as [providers.\(provider)]" : "providers are \(known.joined(separator: ", "))"))
            }
            return nil
        }
        guard p.models.contains(model) else {
            r.fail(
                "model",
                "\(Validators.quote(model)) is not a model of provider \"\(provider)\"; its models are \(p.models.joined(separator: ", ")) "
                    + "(add it to [providers.\(provider)] models)")
            return nil
        }
        return contextIsWrong ? nil : Route(provider: provider, model: model, context: context)
    }

    func readBudget(_ t: SetupTable) -> BudgetConfig? {
        let keys = ["daily-usd", "monthly-usd", "warn-at", "when-exhausted"]
        t.rejectUnknownKeys(keys)
        let errorsBefore = errors.count
        var budget = BudgetConfig()
        func usd(_ key: String) -> Double? {
            guard let v = t.number(key, rule: Validators.usdRule) else { return nil }
            switch Validators.usd(v) {
            case .success(let d): return d
            case .failure(let e):
                t.fail(key, e.message)
                return nil
            }
        }
        budget.dailyUSD = usd("daily-usd")
        budget.monthlyUSD = usd("monthly-usd")
        if t.value("daily-usd") == nil && t.value("monthly-usd") == nil {
            t.failHere("sets no cap; give daily-usd = 2.0 and/or monthly-usd = 30.0 (US dollars), or leave [budget] out for none")
        }
        if let w = t.number("warn-at", rule: "must be a number more than 0 and at most 1, like 0.8") {
            switch Validators.warnAt(w) {
            case .success(let v): budget.warnAt = v
            case .failure(let e): t.fail("warn-at", e.message)
            }
        }
        if let w = t.check(
            "when-exhausted",
            { text in
                BudgetExhaustion(rawValue: text).map { .success($0) }
                    ?? Validators.fail(
                        "\(Validators.quote(text)) is not a choice; use \"local\" (only local models answer until the day or month is over, "
                            + "the default) or \"refuse\" (no answers but the budget notice)")
            }, missing: nil)
        {
            budget.whenExhausted = w
        }
        return errors.count == errorsBefore ? budget : nil
    }

    func readChannels(_ t: SetupTable) -> ChannelsConfig {
        t.rejectUnknownKeys(["telegram", "slack", "discord", "whatsapp"])
        var channels = ChannelsConfig()
        let common = ["owners", "base-url"]
        if let c = t.table("telegram", example: "[channels.telegram]") {
            c.rejectUnknownKeys([secretKey("token")] + common)
            let owners = readOwners(c, Validators.telegramUserId, example: "\"123456789\"")
            let url = baseURL(c)
            if let token = secret(
                c, "token", name: SecretName.telegramToken, missing: "Telegram needs the bot token @BotFather gave",
                validate: Validators.telegramBotToken)
            {
                channels.telegram = TelegramChannel(tokenSecret: token, owners: owners, baseURL: url)
            }
        }
        if let c = t.table("slack", example: "[channels.slack]") {
            c.rejectUnknownKeys([secretKey("bot-token"), secretKey("app-token")] + common)
            let owners = readOwners(c, Validators.slackMember, example: "\"T0123ABC:U0456DEF\"")
            let url = baseURL(c)
            let bot = secret(
                c, "bot-token", name: SecretName.slackBotToken, missing: "Slack needs the bot token (xoxb-…)",
                validate: Validators.slackBotToken)
            let app = secret(
                c, "app-token", name: SecretName.slackAppToken, missing: "Slack needs the app-level token for Socket Mode (xapp-…)",
                validate: Validators.slackAppToken)
            if let bot, let app { channels.slack = SlackChannel(botTokenSecret: bot, appTokenSecret: app, owners: owners, baseURL: url) }
        }
        if let c = t.table("discord", example: "[channels.discord]") {
            c.rejectUnknownKeys([secretKey("token")] + common)
            let owners = readOwners(c, Validators.discordUserId, example: "\"80351110224678912\"")
            let url = baseURL(c)
            if let token = secret(
                c, "token", name: SecretName.discordToken, missing: "Discord needs the bot token (Developer Portal, Bot)",
                validate: Validators.discordBotToken)
            {
                channels.discord = DiscordChannel(tokenSecret: token, owners: owners, baseURL: url)
            }
        }
        if let c = t.table("whatsapp", example: "[channels.whatsapp]") {
            c.rejectUnknownKeys(
                ["phone-number-id", secretKey("access-token"), secretKey("app-secret"), secretKey("verify-token"), "listen"] + common)
            let owners = readOwners(c, Validators.whatsAppNumber, example: "\"4915112345678\"")
            let url = baseURL(c)
            let id = c.check(
                "phone-number-id", Validators.whatsAppPhoneNumberId,
                missing: "WhatsApp needs the phone number ID (WhatsApp, API Setup), such as phone-number-id = \"106540352242922\"")
            let token = secret(
                c, "access-token", name: SecretName.whatsAppAccessToken, missing: "WhatsApp needs the Cloud API access token (EAA…)",
                validate: Validators.whatsAppAccessToken)
            let appSecret = secret(
                c, "app-secret", name: SecretName.whatsAppAppSecret, missing: nil, validate: Validators.whatsAppAppSecret)
            let verify = secret(
                c, "verify-token", name: SecretName.whatsAppVerifyToken, missing: nil, validate: Validators.whatsAppVerifyToken)
            let listen = c.check("listen", Validators.listenAddress, missing: nil)
            if let id, let token {
                channels.whatsapp = WhatsAppChannel(
                    phoneNumberId: id, accessTokenSecret: token, appSecretSecret: appSecret, verifyTokenSecret: verify, owners: owners,
                    baseURL: url, listen: listen)
            }
        }
        return channels
    }

    /// A channel's `owners`: each id checked by `validate`, each once; absent or empty: nobody.
    func readOwners(_ c: SetupTable, _ validate: (String) -> Validated<String>, example: String) -> [String] {
        guard let v = c.value("owners") else { return [] }
        // Ids written as numbers are the commonest slip: say how to write them.
        if let a = v.array, a.contains(where: { $0.int != nil }) {
            c.fail("owners", "ids are strings in quotes (they are names, not numbers), such as owners = [\(example)]")
            return []
        }
        guard let list = c.strings("owners", max: Validators.maxOwners) else { return [] }
        var owners: [String] = []
        for (i, text) in list.enumerated() {
            switch validate(text) {
            case .success(let id):
                if owners.contains(id) {
                    c.fail("owners", "entry \(i + 1) is \(Validators.quote(id)) again; list each owner once")
                } else {
                    owners.append(id)
                }
            case .failure(let e): c.fail("owners", "entry \(i + 1): \(e.message)")
            }
        }
        return owners
    }

    /// A channel's `base-url`: https, http only for loopback; nil when absent or wrong (reported).
    func baseURL(_ c: SetupTable) -> String? {
        c.check("base-url", Validators.channelURL, missing: nil) != nil ? c.value("base-url")?.string : nil
    }

    func readUpdates(_ t: SetupTable) -> UpdatesConfig {
        t.rejectUnknownKeys(["channel", "feed-url", "automatic", "window"])
        var updates = UpdatesConfig()
        if let channel = t.check(
            "channel",
            { text in
                UpdateChannel(rawValue: text).map { .success($0) }
                    ?? Validators.fail("\(Validators.quote(text)) is not an update channel; use \"stable\" (the default) or \"beta\"")
            }, missing: nil)
        {
            updates.channel = channel
        }
        if t.check("feed-url", Validators.feedURL, missing: nil) != nil { updates.feedURL = t.value("feed-url")?.string }
        if let automatic = t.bool("automatic") { updates.automatic = automatic }
        if let window = t.check("window", Validators.maintenanceWindow, missing: nil) { updates.window = window }
        return updates
    }
}

/// One table being read: typed access that reports wrong types, missing and unknown keys
/// with the table's path and the line of each key. Messages name types, never values.
struct SetupTable {
    let table: TOMLTable
    let path: [String]
    /// The line where the table starts, for keys it lacks.
    let line: Int?
    let reader: SetupFileReader
    /// Put before each message: which entry of an array the table is ("route 2: ").
    var messagePrefix = ""

    init(_ table: TOMLTable, path: [String], line: Int?, reader: SetupFileReader) {
        self.table = table
        self.path = path
        self.line = line
        self.reader = reader
    }

    func value(_ key: String) -> TOMLValue? { table[key] }

    func fail(_ key: String, _ message: String) { reader.add(table.line(of: key) ?? line, path + [key], messagePrefix + message) }
    func failHere(_ message: String) { reader.add(line, path, messagePrefix + message) }
    func missing(_ key: String, _ hint: String) { reader.add(line, path + [key], messagePrefix + "missing; \(hint)") }

    /// Reports each key not in `allowed`: the near miss as a hint, or `special`'s word on it.
    func rejectUnknownKeys(_ allowed: [String], special: [String: String] = [:]) {
        for key in table.keys where !allowed.contains(key) {
            if let word = special[key] {
                fail(key, word)
                continue
            }
            var hint = ""
            if reader.form == .seed, key.hasSuffix("-secret"), allowed.contains(String(key.dropLast(7))) {
                hint = " (a seed holds the secret itself: write \(key.dropLast(7)) = \"…\")"
            } else if reader.form == .boxFile, allowed.contains(key + "-secret") {
                hint = " (box.toml holds no secret values: write \(key)-secret = \"NAME\", the value goes in the secrets directory)"
            } else if let near = Validators.nearest(key, in: allowed) {
                hint = " (did you mean \"\(near)\"?)"
            }
            fail(key, "unknown key\(hint); allowed keys here are \(allowed.joined(separator: ", "))")
        }
    }

    func string(_ key: String) -> String? {
        guard let v = table[key] else { return nil }
        guard let s = v.string else {
            fail(key, "must be a string in quotes, not \(SetupTable.kind(of: v))")
            return nil
        }
        return s
    }

    func bool(_ key: String) -> Bool? {
        guard let v = table[key] else { return nil }
        guard let b = v.bool else {
            fail(key, "must be true or false (without quotes), not \(SetupTable.kind(of: v))")
            return nil
        }
        return b
    }

    func int(_ key: String) -> Int? {
        guard let v = table[key] else { return nil }
        guard let i = v.int else {
            fail(key, "must be a whole number (without quotes), not \(SetupTable.kind(of: v))")
            return nil
        }
        return i
    }

    /// A number, float or integer; `rule` says what is wanted when it is something else.
    func number(_ key: String, rule: String) -> Double? {
        guard let v = table[key] else { return nil }
        if let d = v.double { return d }
        if let i = v.int { return Double(i) }
        fail(key, "\(rule), not \(SetupTable.kind(of: v))")
        return nil
    }

    /// An array of strings, at most `max` of them.
    func strings(_ key: String, max: Int?) -> [String]? {
        guard let v = table[key] else { return nil }
        guard let a = v.array else {
            fail(key, "must be an array of strings such as [\"a\", \"b\"], not \(SetupTable.kind(of: v))")
            return nil
        }
        if let max, a.count > max {
            fail(key, "has \(a.count) entries; at most \(max)")
            return nil
        }
        var out: [String] = []
        for (i, item) in a.enumerated() {
            guard let s = item.string else {
                fail(key, "entry \(i + 1) must be a string in quotes, not \(SetupTable.kind(of: item))")
                return nil
            }
            out.append(s)
        }
        return out
    }

    /// A sub-table; `example` shows how to write it when it is something else.
    func table(_ key: String, example: String? = nil, report: Bool = true) -> SetupTable? {
        guard let v = table[key] else { return nil }
        guard let t = v.table else {
            if report {
                let path = (self.path + [key]).map(TOMLLines.key).joined(separator: ".")
                fail(key, "must be a table such as \(example ?? "[\(path)]"), not \(SetupTable.kind(of: v))")
            }
            return nil
        }
        return SetupTable(t, path: path + [key], line: table.line(of: key) ?? line, reader: reader)
    }

    /// A string checked by `validate`: its value, or nil (reported) when wrong; when absent,
    /// reported as missing with `missing` as the hint if that is given.
    func check<T>(_ key: String, _ validate: (String) -> Validated<T>, missing hint: String?) -> T? {
        guard table[key] != nil else {
            if let hint { missing(key, hint) }
            return nil
        }
        guard let s = string(key) else { return nil }
        switch validate(s) {
        case .success(let v): return v
        case .failure(let e):
            fail(key, e.message)
            return nil
        }
    }

    /// A value's kind for messages ("an integer"), never the value.
    static func kind(of v: TOMLValue) -> String {
        switch v {
        case .string: return "a string"
        case .int: return "an integer"
        case .double: return "a number with a fraction"
        case .bool: return "a boolean"
        case .dateTime: return "a date"
        case .array: return "an array"
        case .table: return "a table"
        }
    }
}

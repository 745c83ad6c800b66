import Foundation
import Testing

@testable import AIBoxCore

/// Keys, hashes and tokens of the right shape; none of them opens anything.
enum SetupFixtures {
    static let ed25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEZm0+rRGtin0vv1zAlc4StYpmbRQSlA5RhVaTBA4As8 owner@laptop"
    static let rsa2048 =
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDBBokuZr59E6F/O67yg0ZqL7liJCR8DsLVOxniea8B+12UoDcQLO0bnpg3nCnjh9rA9j59K3Tvd/dTavuE2p8FfZAsMdONcyXudZ8m0rszSNYAC404/ptkWmpO4Qn/Af8709VvlN14u2C2dGkmjsNOZL6XcC4AfiNC6yh9mAOTLTUS91sliAsBVL9pkWzm4h3DmkboaeBsQ8rQq2HkMpY+IvaK/HKP06F2SeMJXog7FveKy898MunhhBWDh/DTe+NUPH40z1XkJZX7S9T/KmAFTI3OhxKG19y46otAQ1wuugKIczotP4wXDLSLSZLtXZ46T61Ov7kG+vRTGjLgDH3V owner@laptop"
    static let rsa1024 =
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCw9vYqVpQCybqZ2h2Sr5rScdLwyMZdjpnEhhN9F0X/ibVB6gc3mLCdyTpcqxsLW0jRvCH6lgO3sYwMwgYUUBulNa/PNYtzvLxirnu2uNLZTkbAc2ggp18gfWH67OaLnJtfP1s0xQlH6DL1D+fJxmLJf4vloiNdWMKfUWHOxAji0w== owner@laptop"
    static let ecdsa256 =
        "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBIDFjho6MUfLh/pjPVnjnKVFeamNH744ir+fxIrRk9joaiAAD0/4zM+EDMDK95d78uWn2uXs3/spLbm0qaLzy5o= owner@laptop"
    static let ecdsa384 =
        "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBAaZxWcSGg1h20GlGlLP4GWaYcyCWMpddFZinCnHlC2REdTk3Lgo+hVcZHWHAMhGZtsg6Bwb2ALeygZX5Afz6+m/mpKrhkGlwWAhY05CWUB1AUwDKeASqqrlo/Is6BVSsw== owner@laptop"
    static let ecdsa521 =
        "ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBAH6AgncM6tV4G7fscF17UPiVHKHtek4GASMGMshfHNk+pR8q/Cdi57LNZnwDIB8ERg3XwUVknKQE+JOkqiqLNVP9gGqCe6ibi619/aaVTC8qtQKvgjGcZnvnPq15xJxB1uBCLIuU+0MRgJSsrSnBeoSekLkkkILwBLQ4IUTMv3y2DkkKA== owner@laptop"
    static let skEd25519 =
        "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fAAAABHNzaDo= yubikey"
    /// An ed25519 line whose key has 31 bytes.
    static let shortEd25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAHwABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4="
    /// Says ssh-ed25519, holds ssh-rsa.
    static let mislabelled = "ssh-ed25519 AAAAB3NzaC1yc2EAAAAgAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8= mismatch"

    static let sha512Hash = "$6$examplesalt$U2f878g./DuW0DSqSprUIt6A2eIFHRCOQ/zBxD0EEz8Q9xea9yz5m.W0O0FvB23R0w6uvpdLdCrKROMQbqfNm0"
    static let sha256Hash = "$5$examplesalt$gyLvVD8JLG0gx1GWcP.yhA5qAFU5Xt2G8jEnBoQqZo5"
    static let yescryptHash = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7"
    static let bcryptHash = "$2b$12$" + String(repeating: "a", count: 53)
    static let md5Hash = "$1$abc$OGyl6dDvZCDiGmIVbeuCq/"

    static let telegram = "123456789:AAFakeTokenForExamplesOnly_00000000"
    static let slackBot = "xoxb-0000000000-0000000000000-FakeTokenForExamples00"
    static let slackApp = "xapp-1-A0000000000-0000000000000-fakeexampletoken0000000000000000"
    static let discord = "MTAwMDAwMDAwMDAwMDAwMDAwMA.GFake0.FakeTokenForExamplesOnly_000000"
    static let whatsApp = "EAAFakeWhatsAppAccessTokenForExamplesOnly000000000"
    static let openAIKey = "sk-proj-FAKE0example0key0000000000000000"
    static let anthropicKey = "sk-ant-api03-FAKE0example0key00000000000000"
    static let wifiPassphrase = "correct horse battery staple"
    static let password = "correct horse battery"

    static var allSecretValues: [String] {
        [telegram, slackBot, slackApp, discord, whatsApp, openAIKey, anthropicKey, wifiPassphrase, password]
    }

    /// A seed with every section, as a wizard run gives it too (`wizardScript`).
    static let fullSeed = """
        name = "kitchen-box"
        timezone = "Europe/Berlin"

        [admin]
        ssh-keys = ["\(ed25519)"]
        password-hash = "\(sha512Hash)"

        [network.wired]
        mode = "static"
        address = "192.168.1.50"
        prefix = 24
        gateway = "192.168.1.1"
        dns = ["192.168.1.1"]

        [network.wifi]
        ssid = "Kitchen"
        passphrase = "\(wifiPassphrase)"
        country = "DE"

        [providers.openai]
        kind = "openai"
        api-key = "\(openAIKey)"
        models = ["gpt-4o-mini", "gpt-4o"]

        [routing]
        code = { provider = "openai", model = "gpt-4o" }

        [budget]
        daily-usd = 2
        monthly-usd = 30.5
        when-exhausted = "refuse"

        [channels.telegram]
        token = "\(telegram)"

        [channels.slack]
        bot-token = "\(slackBot)"
        app-token = "\(slackApp)"

        [updates]
        window = "22:00-02:00"
        """

    /// Answers by question key; a key not here is answered with Enter.
    static let wizardScript: [String: String] = [
        "name": "kitchen-box",
        "admin.ssh-key.1": ed25519,
        "admin.password": password,
        "admin.password-again": password,
        "timezone": "Europe/Berlin",
        "network.wired": "static",
        "network.address": "192.168.1.50",
        "network.gateway": "192.168.1.1",
        "network.wifi": "yes",
        "network.wifi.ssid": "Kitchen",
        "network.wifi.passphrase": wifiPassphrase,
        "network.wifi.country": "de",
        "providers.1.add": "yes",
        "providers.1.api-key": openAIKey,
        "providers.1.models": "gpt-4o-mini, gpt-4o",
        "routing.code": "openai/gpt-4o",
        "budget.daily-usd": "2",
        "budget.monthly-usd": "$30.50",
        "budget.when-exhausted": "Refuse",
        "channels.1.add": "telegram",
        "channels.1.token": telegram,
        "channels.2.add": "slack",
        "channels.2.bot-token": slackBot,
        "channels.2.app-token": slackApp,
        "updates.window": "22:00-02:00",
    ]

    static let hasher: SetupWizard.PasswordHasher = { _ in sha512Hash }
}

/// A seed that must be refused, and how.
struct BadSeed: Sendable, CustomStringConvertible {
    var what: String
    var text: String
    var key: String?
    var line: Int?
    var fragment: String
    /// Must not appear in any message (a secret's value).
    var hidden: String?

    var description: String { what }

    static let admin = "[admin]\nssh-keys = [\"\(SetupFixtures.ed25519)\"]\n"
    static let valid = "name = \"box\"\n" + admin

    init(_ what: String, _ text: String, key: String?, line: Int? = nil, _ fragment: String, hidden: String? = nil) {
        self.what = what
        self.text = text
        self.key = key
        self.line = line
        self.fragment = fragment
        self.hidden = hidden
    }
}

@Suite struct SetupModelTests {
    typealias F = SetupFixtures

    static func seed(_ text: String, tier: LocalLLMTier = .none) -> Result<(BoxConfig, [String: Secret]), SetupErrors> {
        Seed.parse(bytes: Array(text.utf8), path: "/media/AIBOX/aibox-seed.toml", tier: tier)
    }

    static func seedErrors(_ text: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) -> [SetupError] {
        switch seed(text) {
        case .success: Issue.record("the seed was accepted", sourceLocation: sourceLocation)
        case .failure(let e): return e.errors
        }
        return []
    }

    // MARK: Seeds

    @Test func happySeedGivesEveryValueAndSecret() throws {
        let (config, secrets) = try Self.seed(F.fullSeed, tier: .small).get()
        #expect(config.name == "kitchen-box")
        #expect(config.timezone == "Europe/Berlin")
        #expect(config.admin == AdminAccess(sshKeys: [F.ed25519], passwordHash: F.sha512Hash))
        #expect(
            config.network.wired
                == .static(StaticAddress(address: "192.168.1.50", prefix: 24, gateway: "192.168.1.1", dns: ["192.168.1.1"])))
        #expect(config.network.wifi == WifiConfig(ssid: "Kitchen", passphraseSecret: "wifi.passphrase", country: "DE"))
        #expect(
            config.providers == [
                ProviderConfig(
                    name: "openai", kind: .openai, baseURL: "https://api.openai.com/v1", apiKeySecret: "provider.openai.api-key",
                    models: ["gpt-4o-mini", "gpt-4o"]),
                // Added for chat: the tier can run a small model (llama.cpp's server on the box).
                ProviderConfig(
                    name: "local", kind: .llamacpp, baseURL: "http://127.0.0.1:8080", models: ["qwen2.5-3b-instruct-q4_k_m"]),
            ])
        // Chat starts on the box and ends in the cloud; code as given; reasoning left to the agent.
        #expect(
            config.routing == [
                .chat: [Route(provider: "local", model: "qwen2.5-3b-instruct-q4_k_m"), Route(provider: "openai", model: "gpt-4o-mini")],
                .code: [Route(provider: "openai", model: "gpt-4o")],
            ])
        #expect(config.budget == BudgetConfig(dailyUSD: 2, monthlyUSD: 30.5, warnAt: 0.8, whenExhausted: .refuse))
        #expect(config.channels == ChannelsConfig(telegram: TelegramChannel(), slack: SlackChannel()))
        #expect(
            config.updates
                == UpdatesConfig(channel: .stable, feedURL: nil, automatic: true, window: try #require(MaintenanceWindow("22:00-02:00"))))
        #expect(
            secrets == [
                "wifi.passphrase": Secret(F.wifiPassphrase), "provider.openai.api-key": Secret(F.openAIKey),
                "channel.telegram.token": Secret(F.telegram), "channel.slack.bot-token": Secret(F.slackBot),
                "channel.slack.app-token": Secret(F.slackApp),
            ])
        #expect(Set(config.secretNames) == Set(secrets.keys))
    }

    @Test func minimalSeedTakesEveryDefault() throws {
        let (config, secrets) = try Self.seed(BadSeed.valid).get()
        #expect(config == BoxConfig(name: "box", admin: AdminAccess(sshKeys: [F.ed25519])))
        #expect(config.timezone == "UTC")
        #expect(config.network == NetworkConfig(wired: .dhcp, wifi: nil))
        #expect(config.updates.window.description == "03:00-05:00")
        #expect(secrets.isEmpty)
    }

    @Test(
        arguments: [
            (LocalLLMTier.none, nil), (.small, "qwen2.5-3b-instruct-q4_k_m"), (.medium, "llama-3.1-8b-instruct-q4_k_m"),
            (.large, "qwen2.5-32b-instruct-q4_k_m"),
        ] as [(LocalLLMTier, String?)])
    func chatDefaultsToALocalModelByTier(tier: LocalLLMTier, model: String?) throws {
        let (config, _) = try Self.seed(BadSeed.valid, tier: tier).get()
        // No cloud provider: a chain of one, the box's own model.
        #expect(config.routing[.chat] == model.map { [Route(provider: "local", model: $0)] })
        #expect(config.routing[.code] == nil && config.routing[.reasoning] == nil)
        #expect(config.provider(named: "local")?.models == model.map { [$0] })
        #expect(config.provider(named: "local")?.kind == model.map { _ in .llamacpp })
        #expect(config.provider(named: "local")?.baseURL == model.map { _ in "http://127.0.0.1:8080" })
        #expect(config.provider(named: "local")?.apiKeySecret == nil)
    }

    @Test func chatDefaultPrefersAConfiguredLocalServerThenTheFirstProvider() throws {
        let withServer =
            BadSeed.valid + """
                [providers.cloud]
                kind = "anthropic"
                api-key = "\(F.anthropicKey)"
                models = ["claude-3-5-haiku-latest"]
                [providers.gpu]
                kind = "llamacpp"
                base-url = "http://192.168.1.20:8080"
                models = ["qwen2.5-coder-32b"]
                """
        // The server configured comes first (the box runs no model of its own), the cloud last.
        let (a, _) = try Self.seed(withServer, tier: .large).get()
        #expect(
            a.routing[.chat] == [
                Route(provider: "gpu", model: "qwen2.5-coder-32b"), Route(provider: "cloud", model: "claude-3-5-haiku-latest"),
            ])
        #expect(a.providers.count == 2)
        // A local server alone, with no tier: a chain of one.
        let (a2, _) = try Self.seed(BadSeed.valid + "[providers.gpu]\nkind = \"ollama\"\nmodels = [\"m\"]\n", tier: .none).get()
        #expect(a2.routing[.chat] == [Route(provider: "gpu", model: "m")])
        let cloudOnly =
            BadSeed.valid + "[providers.cloud]\nkind = \"anthropic\"\napi-key = \"\(F.anthropicKey)\"\nmodels = [\"m1\", \"m2\"]\n"
        let (b, _) = try Self.seed(cloudOnly, tier: .none).get()
        #expect(b.routing[.chat] == [Route(provider: "cloud", model: "m1")])
        // A provider already called "local" keeps its name; the added one is local-2.
        let taken = BadSeed.valid + "[providers.local]\nkind = \"openai\"\nbase-url = \"http://10.0.0.2:8000/v1\"\nmodels = [\"x\"]\n"
        let (c, _) = try Self.seed(taken, tier: .small).get()
        #expect(
            c.routing[.chat] == [Route(provider: "local-2", model: "qwen2.5-3b-instruct-q4_k_m"), Route(provider: "local", model: "x")])
        // A chat chain given is kept as it is: nothing added.
        let given = cloudOnly + "[routing]\nchat = { provider = \"cloud\", model = \"m2\" }\n"
        let (d, _) = try Self.seed(given, tier: .large).get()
        #expect(d.routing == [.chat: [Route(provider: "cloud", model: "m2")]] && d.providers.count == 1)
    }

    @Test func chainsOfOneAndManyReadAndRoundTrip() throws {
        let seed =
            BadSeed.valid + """
                [providers.local]
                kind = "llamacpp"
                models = ["qwen2.5-3b-instruct-q4_k_m"]
                [providers.openai]
                kind = "openai"
                api-key = "\(F.openAIKey)"
                models = ["gpt-4o-mini", "gpt-4o"]
                [providers.anthropic]
                kind = "anthropic"
                api-key = "\(F.anthropicKey)"
                models = ["claude-sonnet-4-20250514"]
                [routing]
                chat = { provider = "local", model = "qwen2.5-3b-instruct-q4_k_m", context = 8192 }
                code = [{ provider = "openai", model = "gpt-4o" }]
                reasoning = [
                    { provider = "anthropic", model = "claude-sonnet-4-20250514", context = 200000 },
                    { provider = "openai", model = "gpt-4o" },  # a comment between routes
                    { provider = "local", model = "qwen2.5-3b-instruct-q4_k_m" },
                ]
                """
        let (config, _) = try Self.seed(seed, tier: .small).get()
        let local = Route(provider: "local", model: "qwen2.5-3b-instruct-q4_k_m")
        #expect(
            config.routing == [
                .chat: [Route(provider: "local", model: "qwen2.5-3b-instruct-q4_k_m", context: 8192)],
                .code: [Route(provider: "openai", model: "gpt-4o")],
                .reasoning: [
                    Route(provider: "anthropic", model: "claude-sonnet-4-20250514", context: 200_000),
                    Route(provider: "openai", model: "gpt-4o"),
                    local,
                ],
            ])
        #expect(config.providers.map(\.name) == ["local", "openai", "anthropic"], "chat was given: nothing added")
        let text = config.tomlText()
        // An array of one is written as the one inline table; longer chains a route a line.
        #expect(
            text.contains(
                """
                [routing]
                chat = { provider = "local", model = "qwen2.5-3b-instruct-q4_k_m", context = 8192 }
                code = { provider = "openai", model = "gpt-4o" }
                reasoning = [
                    { provider = "anthropic", model = "claude-sonnet-4-20250514", context = 200000 },
                    { provider = "openai", model = "gpt-4o" },
                    { provider = "local", model = "qwen2.5-3b-instruct-q4_k_m" },
                ]

                """), "\(text)")
        let back = try BoxConfig.parse(text: text, path: "box.toml").get()
        #expect(back == config)
        #expect(back.tomlText() == text)

        // Every length from 1 to 8, through box.toml and back.
        let models = (1...8).map { "m\($0)" }
        for n in 1...BoxConfig.maxChainLength {
            var c = BoxConfig(admin: AdminAccess(sshKeys: [F.ed25519]))
            c.providers = [ProviderConfig(name: "gpu", kind: .ollama, baseURL: "http://10.0.0.2:11434", models: models)]
            c.routing[.code] = models.prefix(n).reversed().map { Route(provider: "gpu", model: $0, context: $0 == "m3" ? 512 : nil) }
            let written = c.tomlText()
            #expect(try BoxConfig.parse(text: written, path: "box.toml").get() == c, "\(written)")
            #expect(written.contains("code = [\n") == (n > 1))
        }
    }

    @Test func budgetDefaultsAndRoundTrips() throws {
        let v = BadSeed.valid
        #expect(try Self.seed(v).get().0.budget == nil)
        // One cap alone; warn-at and when-exhausted take their defaults.
        let daily = try Self.seed(v + "[budget]\ndaily-usd = 2\n").get().0
        #expect(daily.budget == BudgetConfig(dailyUSD: 2, monthlyUSD: nil, warnAt: 0.8, whenExhausted: .local))
        let monthly = try Self.seed(v + "[budget]\nmonthly-usd = 30.25\n").get().0
        #expect(monthly.budget == BudgetConfig(dailyUSD: nil, monthlyUSD: 30.25))
        // The bounds, integers where floats are expected, and -0 read as 0.
        let edges = try Self.seed(
            v + "[budget]\ndaily-usd = -0.0\nmonthly-usd = 1_000_000\nwarn-at = 1\nwhen-exhausted = \"refuse\"\n"
        ).get().0
        #expect(edges.budget == BudgetConfig(dailyUSD: 0, monthlyUSD: 1_000_000, warnAt: 1, whenExhausted: .refuse))
        let edgesText = edges.tomlText()
        #expect(edgesText.contains("[budget]\ndaily-usd = 0.0\nmonthly-usd = 1000000.0\nwarn-at = 1.0\nwhen-exhausted = \"refuse\"\n"))
        // Through box.toml and back, bit for bit, whatever the fraction.
        for b in [
            BudgetConfig(dailyUSD: 0.015), BudgetConfig(monthlyUSD: 12.345, warnAt: 0.05),
            BudgetConfig(dailyUSD: 1e-5, monthlyUSD: 999_999.99, warnAt: 0.999, whenExhausted: .refuse),
            BudgetConfig(dailyUSD: 0.1 + 0.2),
        ] {
            var c = BoxConfig(admin: AdminAccess(sshKeys: [F.ed25519]))
            c.budget = b
            let text = c.tomlText()
            #expect(try BoxConfig.parse(text: text, path: "box.toml").get() == c, "\(text)")
            #expect(try BoxConfig.parse(text: text, path: "box.toml").get().tomlText() == text)
        }
        // For people.
        #expect(daily.summaryLines().contains("  budget     $2.00 a day, warn at 80%, then local models only"), "\(daily.summaryLines())")
        #expect(
            BudgetConfig(dailyUSD: 0.005, monthlyUSD: 30, warnAt: 0.855, whenExhausted: .refuse).summary
                == "$0.005 a day, $30.00 a month, warn at 85.5%, then refuse to answer")
        #expect(BoxConfig(admin: AdminAccess(sshKeys: [F.ed25519])).summaryLines().contains("  budget     none"))
    }

    @Test func summaryShowsChainsWithinEightyColumns() throws {
        var c = BoxConfig(admin: AdminAccess(sshKeys: [F.ed25519]))
        let long = "meta-llama/Llama-3.1-70B-Instruct-Turbo"
        c.providers = [
            ProviderConfig(name: "local", kind: .llamacpp, models: ["qwen2.5-32b-instruct-q4_k_m"]),
            ProviderConfig(name: "together", kind: .openai, baseURL: "https://api.together.xyz/v1", models: [long]),
            ProviderConfig(name: "openai", kind: .openai, apiKeySecret: "provider.openai.api-key", models: ["gpt-4o-mini"]),
        ]
        c.routing = [
            .chat: [
                Route(provider: "local", model: "qwen2.5-32b-instruct-q4_k_m"), Route(provider: "together", model: long),
                Route(provider: "openai", model: "gpt-4o-mini"),
            ],
            .reasoning: [Route(provider: "openai", model: "gpt-4o-mini")],
        ]
        let lines = c.summaryLines()
        for l in lines { #expect(l.count <= 80, "\(l)") }
        let start = try #require(lines.firstIndex { $0.hasPrefix("  routing    chat: ") })
        let end = try #require(lines.firstIndex { $0.hasPrefix("  budget ") })
        let routing = lines[start..<end].map { $0.dropFirst(13) }.joined(separator: " ")
        #expect(
            routing == "chat: local/qwen2.5-32b-instruct-q4_k_m → together/\(long) → openai/gpt-4o-mini reasoning: openai/gpt-4o-mini",
            "\(lines)")
        #expect(!routing.contains("…"))
        #expect(lines.contains { $0.hasPrefix(String(repeating: " ", count: 13) + "reasoning: openai/gpt-4o-mini") })
    }

    static let badSeeds: [BadSeed] = {
        let v = BadSeed.valid, admin = BadSeed.admin
        // Lines 4 to 7 after `v`.
        let p = "[providers.openai]\nkind = \"openai\"\napi-key = \"\(F.openAIKey)\"\nmodels = [\"gpt-4o-mini\", \"gpt-4o\"]\n"
        return [
            BadSeed("wrong type: name", "name = 42\n" + admin, key: "name", line: 1, "must be a string in quotes, not an integer"),
            BadSeed(
                "wrong type: boolean", v + "[updates]\nautomatic = \"yes\"\n", key: "updates.automatic", line: 5,
                "must be true or false (without quotes), not a string"),
            BadSeed(
                "wrong type: integer", v + "[network.wired]\nmode = \"static\"\naddress = \"10.0.0.5\"\nprefix = \"24\"\n",
                key: "network.wired.prefix", line: 7, "must be a whole number"),
            BadSeed(
                "wrong type: table", "name = \"box\"\nproviders = \"openai\"\n" + admin, key: "providers", line: 2,
                "must be a table such as [providers], not a string"),
            BadSeed(
                "wrong type: array of tables", v + "[[providers]]\nkind = \"openai\"\n", key: "providers", line: 4,
                "must be a table such as [providers], not an array"),
            BadSeed(
                "unknown top-level key", "name = \"box\"\ntimezon = \"UTC\"\n" + admin, key: "timezon", line: 2,
                "unknown key (did you mean \"timezone\"?); allowed keys here are name, timezone"),
            BadSeed(
                "unknown provider key", v + "[providers.openai]\nkind = \"openai\"\nbase_url = \"https://x.example\"\nmodels = [\"m\"]\n",
                key: "providers.openai.base_url", line: 6, "did you mean \"base-url\"?"),
            BadSeed("missing name", admin, key: "name", "missing; every box needs a name"),
            BadSeed("missing admin", "name = \"box\"\n", key: "admin", "missing; the box needs admin access"),
            BadSeed("admin without access", "name = \"box\"\n[admin]\nssh-keys = []\n", key: "admin", line: 2, "gives no way to log in"),
            BadSeed(
                "missing provider kind", v + "[providers.openai]\nmodels = [\"gpt-4o\"]\n", key: "providers.openai.kind", line: 4,
                "missing; say which API the provider speaks"),
            BadSeed(
                "missing provider models", v + "[providers.box]\nkind = \"ollama\"\n", key: "providers.box.models", line: 4,
                "missing; name the models"),
            BadSeed(
                "missing API key of a cloud API", v + "[providers.openai]\nkind = \"openai\"\nmodels = [\"gpt-4o\"]\n",
                key: "providers.openai.api-key", "the OpenAI API needs an API key"),
            BadSeed(
                "missing token", v + "[channels.telegram]\n", key: "channels.telegram.token", line: 4,
                "missing; Telegram needs the bot token"),
            BadSeed(
                "bad URL scheme", v + "[providers.o]\nkind = \"ollama\"\nbase-url = \"ftp://example.com\"\nmodels = [\"m\"]\n",
                key: "providers.o.base-url", line: 6, "only http and https are allowed"),
            BadSeed(
                "URL with a password",
                v + "[providers.o]\nkind = \"ollama\"\nbase-url = \"https://me:hunter2@example.com\"\nmodels = [\"m\"]\n",
                key: "providers.o.base-url", "holds a user name or password", hidden: "hunter2"),
            BadSeed(
                "URL without host", v + "[providers.o]\nkind = \"ollama\"\nbase-url = \"http://:8080\"\nmodels = [\"m\"]\n",
                key: "providers.o.base-url", "has no host"),
            BadSeed(
                "malformed Telegram token", v + "[channels.telegram]\ntoken = \"123456789:too-short-secret-part\"\n",
                key: "channels.telegram.token", line: 5, "has 21 characters, not 35", hidden: "too-short-secret-part"),
            BadSeed(
                "Slack tokens swapped", v + "[channels.slack]\nbot-token = \"\(F.slackApp)\"\napp-token = \"\(F.slackApp)\"\n",
                key: "channels.slack.bot-token", line: 5, "this is an app-level token (xapp-…)", hidden: F.slackApp),
            BadSeed(
                "Discord token with prefix", v + "[channels.discord]\ntoken = \"Bot \(F.discord)\"\n", key: "channels.discord.token",
                "leave out \"Bot \"", hidden: F.discord),
            BadSeed(
                "WhatsApp phone number instead of its ID",
                v + "[channels.whatsapp]\nphone-number-id = \"+4915112345678\"\naccess-token = \"\(F.whatsApp)\"\n",
                key: "channels.whatsapp.phone-number-id", "looks like a phone number"),
            BadSeed(
                "WhatsApp webhook address without a port",
                v + "[channels.whatsapp]\nphone-number-id = \"106540352242922\"\naccess-token = \"\(F.whatsApp)\"\nlisten = \"0.0.0.0\"\n",
                key: "channels.whatsapp.listen", line: 7, "is not HOST:PORT; give an IP address and a port"),
            BadSeed(
                "secret of the wrong type", v + "[channels.telegram]\ntoken = 987654321\n", key: "channels.telegram.token",
                "must be a string in quotes, not an integer", hidden: "987654321"),
            BadSeed(
                "oversized name", "name = \"\(String(repeating: "a", count: 300))\"\n" + admin, key: "name", line: 1,
                "the name is 300 characters long; a host name has at most 63"),
            BadSeed(
                "oversized API key",
                v + "[providers.o]\nkind = \"openai\"\napi-key = \"sk-\(String(repeating: "x", count: 600))\"\nmodels = [\"m\"]\n",
                key: "providers.o.api-key", "is 603 characters long; at most 512", hidden: String(repeating: "x", count: 40)),
            BadSeed(
                "too many SSH keys",
                "name = \"box\"\n[admin]\nssh-keys = [\(Array(repeating: "\"\(F.ed25519)\"", count: 33).joined(separator: ","))]\n",
                key: "admin.ssh-keys", line: 3, "has 33 entries; at most 32"),
            BadSeed(
                "weak RSA key", "name = \"box\"\n[admin]\nssh-keys = [\"\(F.rsa1024)\"]\n", key: "admin.ssh-keys", line: 3,
                "entry 1: this is an RSA key of 1024 bits; use at least 2048 bits"),
            BadSeed(
                "password in clear", v + "password = \"hunter2hunter2\"\n", key: "admin.password", line: 4,
                "never holds the password itself", hidden: "hunter2"),
            BadSeed(
                "clear text as password-hash", "name = \"box\"\n[admin]\npassword-hash = \"hunter2hunter2\"\n", key: "admin.password-hash",
                "this is not a crypt(3) hash", hidden: "hunter2"),
            BadSeed(
                "MD5 password hash", "name = \"box\"\n[admin]\npassword-hash = \"\(F.md5Hash)\"\n", key: "admin.password-hash",
                "MD5 hash ($1$), too weak"),
            BadSeed(
                "route to an unknown provider", v + "[routing]\nchat = { provider = \"openia\", model = \"gpt-4o\" }\n",
                key: "routing.chat.provider", line: 5, "\"openia\" is not a provider of this file; define it first"),
            BadSeed(
                "route to an unknown model",
                v
                    + "[providers.openai]\nkind = \"openai\"\napi-key = \"\(F.openAIKey)\"\nmodels = [\"gpt-4o\"]\n[routing]\ncode = { provider = \"openai\", model = \"gpt-5\" }\n",
                key: "routing.code.model", line: 9, "\"gpt-5\" is not a model of provider \"openai\"; its models are gpt-4o"),
            BadSeed(
                "unknown role", v + "[routing]\nchats = { provider = \"a\", model = \"b\" }\n", key: "routing.chats",
                "did you mean \"chat\"?"),
            BadSeed(
                "short Wi-Fi passphrase", v + "[network.wifi]\nssid = \"Home\"\npassphrase = \"abc123\"\ncountry = \"DE\"\n",
                key: "network.wifi.passphrase", line: 6, "8 to 63 characters", hidden: "abc123"),
            BadSeed(
                "lower-case country", v + "[network.wifi]\nssid = \"Home\"\ncountry = \"de\"\n", key: "network.wifi.country",
                "must be upper case: \"DE\""),
            BadSeed(
                "oversized SSID", v + "[network.wifi]\nssid = \"\(String(repeating: "é", count: 20))\"\ncountry = \"DE\"\n",
                key: "network.wifi.ssid", "the SSID is 40 bytes long; an SSID has at most 32 bytes"),
            BadSeed(
                "unknown time-zone area", "name = \"box\"\ntimezone = \"Erope/Berlin\"\n" + admin, key: "timezone", line: 2,
                "did you mean Europe?"),
            BadSeed(
                "unknown provider kind", v + "[providers.a]\nkind = \"openia\"\nmodels = [\"m\"]\n", key: "providers.a.kind",
                "did you mean \"openai\"?"),
            BadSeed(
                "bad provider name", v + "[providers.Open_AI]\nkind = \"ollama\"\nmodels = [\"m\"]\n", key: "providers.Open_AI",
                "is not a provider name"),
            BadSeed(
                "update feed over http", v + "[updates]\nfeed-url = \"http://updates.example.com/feed\"\n", key: "updates.feed-url",
                line: 5, "update feeds need https"),
            BadSeed(
                "bad window", v + "[updates]\nwindow = \"3am-5am\"\n", key: "updates.window", "give HH:MM-HH:MM in 24-hour time"),
            BadSeed(
                "unknown update channel", v + "[updates]\nchannel = \"nightly\"\n", key: "updates.channel", "use \"stable\""),
            BadSeed(
                "static keys without static mode", v + "[network.wired]\naddress = \"10.0.0.5\"\n", key: "network.wired.address",
                "is used only with mode = \"static\""),
            BadSeed(
                "gateway outside the network",
                v + "[network.wired]\nmode = \"static\"\naddress = \"192.168.1.50\"\nprefix = 24\ngateway = \"192.168.2.1\"\n",
                key: "network.wired.gateway", line: 8, "outside the box's network 192.168.1.50/24"),
            // Chains: each problem at the route's own line (arrays may span lines) and key.
            BadSeed(
                "empty chain", v + p + "[routing]\nchat = []\n", key: "routing.chat", line: 9,
                "is an empty chain; a chain has 1 to 8 routes"),
            BadSeed(
                "nine routes",
                v + p + "[routing]\nchat = ["
                    + Array(repeating: "{ provider = \"openai\", model = \"gpt-4o\" }", count: 9).joined(separator: ", ")
                    + "]\n", key: "routing.chat", line: 9, "has 9 routes; a chain has 1 to 8 routes"),
            BadSeed(
                "a route twice in a chain",
                v + p + "[routing]\nchat = [\n  { provider = \"openai\", model = \"gpt-4o\" },\n"
                    + "  { provider = \"openai\", model = \"gpt-4o-mini\" },\n  { provider = \"openai\", model = \"gpt-4o\", context = 8192 },\n]\n",
                key: "routing.chat", line: 12, "route 3: openai/gpt-4o is in the chain already (route 1); list each route once"),
            BadSeed(
                "unknown provider in a chain",
                v + p
                    + "[routing]\nchat = [\n  { provider = \"openai\", model = \"gpt-4o\" },\n  { provider = \"ghost\", model = \"m\" },\n]\n",
                key: "routing.chat.provider", line: 11, "route 2: \"ghost\" is not a provider of this file; providers are openai"),
            BadSeed(
                "model not in the provider's models, in a chain",
                v + p + "[routing]\nreasoning = [{ provider = \"openai\", model = \"gpt-5\" }]\n", key: "routing.reasoning.model", line: 9,
                "route 1: \"gpt-5\" is not a model of provider \"openai\"; its models are gpt-4o-mini, gpt-4o"),
            BadSeed(
                "unknown key in a route", v + p + "[routing]\nchat = { provider = \"openai\", model = \"gpt-4o\", contxt = 8192 }\n",
                key: "routing.chat.contxt", line: 9,
                "unknown key (did you mean \"context\"?); allowed keys here are provider, model, context"),
            BadSeed(
                "context too small", v + p + "[routing]\ncode = { provider = \"openai\", model = \"gpt-4o\", context = 100 }\n",
                key: "routing.code.context", line: 9,
                "100 is not a context window; give the model's context in tokens, from 512 to 10000000"),
            BadSeed(
                "context too large in a chain",
                v + p
                    + "[routing]\ncode = [\n{ provider = \"openai\", model = \"gpt-4o\" },\n{ provider = \"openai\", model = \"gpt-4o-mini\", context = 20000000 }]\n",
                key: "routing.code.context", line: 11, "route 2: 20000000 is not a context window"),
            BadSeed(
                "context not a number", v + p + "[routing]\nchat = { provider = \"openai\", model = \"gpt-4o\", context = \"8k\" }\n",
                key: "routing.chat.context", line: 9, "must be a whole number (without quotes), not a string"),
            BadSeed(
                "a chain entry that is not a table", v + p + "[routing]\nchat = [\"openai/gpt-4o\"]\n", key: "routing.chat", line: 9,
                "route 1 must be an inline table such as { provider = \"openai\", model = \"gpt-4o-mini\" }, not a string"),
            BadSeed(
                "a route as a string", v + p + "[routing]\nchat = \"openai/gpt-4o\"\n", key: "routing.chat", line: 9,
                "must be a route such as chat = { provider = \"openai\", model = \"gpt-4o-mini\" }, or an array of routes"),
            // Budget.
            BadSeed(
                "negative daily cap", v + "[budget]\ndaily-usd = -1\n", key: "budget.daily-usd", line: 5,
                "-1.0 is negative; must be a number of US dollars >= 0, like 2.0"),
            BadSeed(
                "daily cap in quotes", v + "[budget]\ndaily-usd = \"2\"\n", key: "budget.daily-usd", line: 5,
                "must be a number of US dollars >= 0, like 2.0, not a string"),
            BadSeed(
                "monthly cap too large", v + "[budget]\nmonthly-usd = 2_000_000\n", key: "budget.monthly-usd", line: 5,
                "2000000.0 is more than 1000000 dollars"),
            BadSeed(
                "monthly cap not a number", v + "[budget]\ndaily-usd = 1\nmonthly-usd = nan\n", key: "budget.monthly-usd", line: 6,
                "must be a number of US dollars >= 0, like 2.0, not nan"),
            BadSeed(
                "infinite cap", v + "[budget]\ndaily-usd = inf\n", key: "budget.daily-usd", line: 5, "not inf"),
            BadSeed(
                "warn-at zero", v + "[budget]\ndaily-usd = 1\nwarn-at = 0\n", key: "budget.warn-at", line: 6,
                "0.0 is not a share of the cap; give a number more than 0 and at most 1, like 0.8"),
            BadSeed(
                "warn-at above 1", v + "[budget]\ndaily-usd = 1\nwarn-at = 1.5\n", key: "budget.warn-at", line: 6,
                "1.5 is not a share of the cap"),
            BadSeed(
                "warn-at as a percentage string", v + "[budget]\ndaily-usd = 1\nwarn-at = \"80%\"\n", key: "budget.warn-at", line: 6,
                "must be a number more than 0 and at most 1, like 0.8, not a string"),
            BadSeed(
                "unknown when-exhausted", v + "[budget]\ndaily-usd = 1\nwhen-exhausted = \"cloud\"\n", key: "budget.when-exhausted",
                line: 6, "\"cloud\" is not a choice; use \"local\""),
            BadSeed(
                "budget without a cap", v + "[budget]\nwarn-at = 0.5\n", key: "budget", line: 4,
                "sets no cap; give daily-usd = 2.0 and/or monthly-usd = 30.0"),
            BadSeed(
                "unknown budget key", v + "[budget]\ndaily_usd = 2\n", key: "budget.daily_usd", line: 5,
                "unknown key (did you mean \"daily-usd\"?); allowed keys here are daily-usd, monthly-usd, warn-at, when-exhausted"),
            BadSeed(
                "budget not a table", "name = \"box\"\nbudget = 5\n" + admin, key: "budget", line: 2,
                "must be a table such as [budget], not an integer"),
            BadSeed(
                "box.toml form in a seed",
                v + "[providers.openai]\nkind = \"openai\"\napi-key-secret = \"provider.openai.api-key\"\nmodels = [\"m\"]\n",
                key: "providers.openai.api-key-secret", "a seed holds the secret itself: write api-key = \"…\""),
        ]
    }()

    @Test(arguments: badSeeds)
    func badSeedIsRefusedAtItsKey(_ bad: BadSeed) throws {
        let errors = Self.seedErrors(bad.text)
        let match = try #require(errors.first { $0.key == bad.key }, "no error at \(bad.key ?? "the file"): \(errors)")
        #expect(match.message.contains(bad.fragment), "\(match.message)")
        if let line = bad.line { #expect(match.line == line, "\(match)") }
        #expect(match.file == "/media/AIBOX/aibox-seed.toml")
        if let hidden = bad.hidden {
            for e in errors { #expect(!e.description.contains(hidden), "a secret leaked: \(e)") }
        }
    }

    @Test func everyProblemIsReportedAtOnceInFileOrder() throws {
        let text = """
            name = "Kitchen Box"
            timezone = "Berlin"
            colour = "red"

            [admin]
            ssh-keys = ["ssh-ed25519 not-base64!"]

            [channels.telegram]
            token = "nope"
            """
        let errors = Self.seedErrors(text)
        #expect(errors.map(\.key) == ["name", "timezone", "colour", "admin.ssh-keys", "channels.telegram.token"])
        #expect(errors.map(\.line) == [1, 2, 3, 6, 9])
        #expect(errors[0].description.hasPrefix("/media/AIBOX/aibox-seed.toml:1: name: \"Kitchen Box\""))
        let all = SetupErrors(errors).description
        #expect(all.split(separator: "\n").count == 5)
        #expect(!all.contains("nope"))
    }

    @Test func invalidUTF8IsReportedWithOffsetAndLine() throws {
        var bytes = Array("name = \"box\"\n".utf8) + Array(BadSeed.admin.utf8)
        bytes += Array("# caf".utf8) + [0xC3, 0x28] + Array("\n".utf8)
        let result = Seed.parse(bytes: bytes, path: "seed.toml")
        guard case .failure(let e) = result else {
            Issue.record("accepted")
            return
        }
        let offset = bytes.firstIndex(of: 0xC3) ?? -1
        #expect(e.errors.count == 1)
        #expect(e.errors[0].line == 4)
        #expect(e.errors[0].column == 6)
        #expect(e.errors[0].message.contains("byte 0xC3 at offset \(offset)"))
        #expect(e.errors[0].description.hasPrefix("seed.toml:4:6: not valid UTF-8"))
    }

    @Test(
        arguments: [
            ([0xFF] as [UInt8], 0), ([0x61, 0xC0, 0x80], 1), ([0xED, 0xA0, 0x80], 0), ([0xF4, 0x90, 0x80, 0x80], 0),
            ([0xE2, 0x82], 0), ([0x61, 0x62, 0x80], 2),
        ] as [([UInt8], Int)])
    func malformedUTF8IsFound(bytes: [UInt8], offset: Int) {
        #expect(ByteText.firstInvalidUTF8(bytes) == offset)
    }

    @Test func wellFormedUTF8Passes() {
        #expect(ByteText.firstInvalidUTF8(Array("name = \"Café ☕ 𝄞\"".utf8)) == nil)
    }

    @Test func aHugeFileIsRefusedBeforeParsing() throws {
        // Invalid UTF-8 and TOML both: only the size is reported, so nothing was read.
        let bytes = [UInt8](repeating: 0xFF, count: Seed.maxBytes + 1)
        guard case .failure(let e) = Seed.parse(bytes: bytes, path: "big.toml") else {
            Issue.record("accepted")
            return
        }
        #expect(e.errors.count == 1)
        #expect(e.errors[0].line == nil)
        #expect(e.errors[0].message.contains("the file is 1048577 bytes; a seed has at most 1048576 bytes (1 MiB)"))
        let atCap = Array((BadSeed.valid + "#" + String(repeating: "x", count: Seed.maxBytes - BadSeed.valid.utf8.count - 1)).utf8)
        #expect(atCap.count == Seed.maxBytes)
        #expect((try? Seed.parse(bytes: atCap, path: "cap.toml").get()) != nil)
    }

    @Test func deepNestingIsRefusedBeforeParsing() throws {
        // The TOML reader recurses per level: 10 000 levels would overflow the stack.
        let text = BadSeed.valid + "x = " + String(repeating: "[", count: 10_000)
        let errors = Self.seedErrors(text)
        #expect(errors.count == 1)
        #expect(errors.first?.line == 4)
        #expect(errors.first?.message.contains("nested more than 32 deep") == true)
        // Brackets inside strings and comments do not count.
        let quoted =
            BadSeed.valid
            + "# \(String(repeating: "[", count: 40))\n[updates]\nfeed-url = \"https://x.example/\(String(repeating: "%5B", count: 1))\"\n"
        #expect((try? Self.seed(quoted).get()) != nil)
        #expect(Seed.firstNestingBeyond(2, in: Array("a = \"[[[\"\nb = '[[[['\nc = \"\"\"\n[[[\"\"\"".utf8)) == nil)
        #expect(Seed.firstNestingBeyond(2, in: Array("a = [[[1]]]".utf8)) == 6)
    }

    @Test func tomlSyntaxErrorsGiveLineAndColumn() throws {
        let errors = Self.seedErrors("name = \"box\"\n[admin\n")
        #expect(errors.count == 1)
        #expect(errors[0].line == 2)
        #expect(errors[0].column == 7)
        #expect(errors[0].description.hasPrefix("/media/AIBOX/aibox-seed.toml:2:7: not valid TOML: expected ']'"))
    }

    // MARK: Secrets never printed

    @Test func secretPrintsAsDotsEverywhere() {
        let value = "sk-super-secret-value-123"
        let secret = Secret(value)
        var dumped = ""
        dump(secret, to: &dumped)
        var dumpedDictionary = ""
        dump(["provider.openai.api-key": secret], to: &dumpedDictionary)
        let texts = [
            "\(secret)", String(describing: secret), String(reflecting: secret), dumped, dumpedDictionary,
            "\([secret])", "\(Optional(secret) as Any)", String(describing: ["k": secret]),
        ]
        for t in texts {
            #expect(!t.contains(value), "leaked: \(t)")
            #expect(t.contains("••••"), "\(t)")
        }
        #expect(Mirror(reflecting: secret).children.isEmpty)
        #expect(secret.reveal() == value)
    }

    @Test func boxTomlHoldsSecretNamesOnly() throws {
        let (config, secrets) = try Self.seed(F.fullSeed, tier: .small).get()
        let text = config.tomlText()
        for s in secrets.values { #expect(!text.contains(s.reveal())) }
        for v in F.allSecretValues { #expect(!text.contains(v)) }
        #expect(text.contains("api-key-secret = \"provider.openai.api-key\""))
        #expect(text.contains("passphrase-secret = \"wifi.passphrase\""))
        var dumped = ""
        dump(config, to: &dumped)
        for v in F.allSecretValues { #expect(!dumped.contains(v)) }
        for line in config.summaryLines() {
            #expect(line.count <= 80)
            for v in F.allSecretValues { #expect(!line.contains(v)) }
        }
    }

    // MARK: box.toml

    @Test func boxTomlRoundTrips() throws {
        let (full, _) = try Self.seed(F.fullSeed, tier: .small).get()
        let text = full.tomlText()
        #expect(try BoxConfig.parse(text: text, path: "/etc/aibox/box.toml").get() == full)
        #expect(try BoxConfig.parse(text: text, path: "box.toml").get().tomlText() == text)

        let examplePath = Self.repositoryRoot + "/provisioning/examples/full.toml"
        let example = try Self.seed(String(contentsOfFile: examplePath, encoding: .utf8)).get().0
        #expect(try BoxConfig.parse(text: example.tomlText(), path: "box.toml").get() == example)

        // Escaping: quotes, backslashes, non-ASCII and a quoted key.
        var odd = BoxConfig(name: "odd", admin: AdminAccess(passwordHash: F.yescryptHash))
        odd.network.wifi = WifiConfig(ssid: "Café \"Home\" \\ net", passphraseSecret: nil, country: "FR")
        odd.network.wired = .static(StaticAddress(address: "fd00::50", prefix: 64, gateway: "fd00::1", dns: ["fd00::1", "9.9.9.9"]))
        odd.providers = [ProviderConfig(name: "gpu-1", kind: .llamacpp, baseURL: "http://[fd00::2]:8080", models: ["a/b:c@d+e"])]
        odd.routing = [.reasoning: [Route(provider: "gpu-1", model: "a/b:c@d+e", context: 10_000_000)]]
        odd.budget = BudgetConfig(dailyUSD: 0, monthlyUSD: nil, warnAt: 1, whenExhausted: .local)
        odd.channels.whatsapp = WhatsAppChannel(phoneNumberId: "106540352242922", listen: "[::1]:8790")
        odd.channels.discord = DiscordChannel()
        odd.updates = UpdatesConfig(channel: .beta, feedURL: "http://127.0.0.1:8000/feed", automatic: false, window: .defaultWindow)
        let oddText = odd.tomlText()
        #expect(oddText.contains(#"ssid = "Café \"Home\" \\ net""#))
        #expect(try BoxConfig.parse(text: oddText, path: "box.toml").get() == odd)
    }

    @Test func boxTomlIsDeterministicAndOrdered() throws {
        let (config, _) = try Self.seed(F.fullSeed, tier: .small).get()
        #expect(config.tomlText() == config.tomlText())
        let headers = config.tomlText().split(separator: "\n").filter { $0.hasPrefix("[") }
        #expect(
            headers == [
                "[admin]", "[network.wired]", "[network.wifi]", "[providers.openai]", "[providers.local]", "[routing]", "[budget]",
                "[channels.telegram]", "[channels.slack]", "[updates]",
            ])
        // A chain of two a route a line; a chain of one the inline table it always was.
        #expect(
            config.tomlText().contains(
                """
                [routing]
                chat = [
                    { provider = "local", model = "qwen2.5-3b-instruct-q4_k_m" },
                    { provider = "openai", model = "gpt-4o-mini" },
                ]
                code = { provider = "openai", model = "gpt-4o" }

                [budget]
                daily-usd = 2.0
                monthly-usd = 30.5
                warn-at = 0.8
                when-exhausted = "refuse"

                """))
    }

    @Test func boxTomlRefusesSecretValues() throws {
        let text = "name = \"box\"\n[admin]\nssh-keys = [\"\(F.ed25519)\"]\n[channels.telegram]\ntoken = \"\(F.telegram)\"\n"
        guard case .failure(let e) = BoxConfig.parse(text: text, path: "box.toml") else {
            Issue.record("accepted")
            return
        }
        #expect(e.errors.map(\.key) == ["channels.telegram.token-secret", "channels.telegram.token"])
        #expect(e.error(at: "channels.telegram.token")?.message.contains("box.toml holds no secret values") == true)
        #expect(!e.description.contains(F.telegram))
        let badName = "name = \"box\"\n[admin]\nssh-keys = [\"\(F.ed25519)\"]\n[channels.telegram]\ntoken-secret = \"../../etc/shadow\"\n"
        guard case .failure(let e2) = BoxConfig.parse(text: badName, path: "box.toml") else {
            Issue.record("accepted")
            return
        }
        #expect(e2.errors.first?.message.contains("is not a secret name") == true)
    }

    // MARK: Example seeds

    static var repositoryRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    @Test(arguments: ["minimal.toml", "full.toml"])
    func exampleSeedParses(file: String) throws {
        let path = Self.repositoryRoot + "/provisioning/examples/" + file
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        switch Seed.parse(bytes: bytes, path: path, tier: .small) {
        case .failure(let e): Issue.record("\(e)")
        case .success(let (config, secrets)):
            #expect(config.admin.isConfigured)
            #expect(config.routing[.chat] != nil)
            #expect(Set(config.secretNames) == Set(secrets.keys))
            if file == "full.toml" {
                #expect(config.providers.count == 4)
                #expect(secrets.count == 8)
                #expect(!config.channels.isEmpty && config.channels.whatsapp != nil && config.channels.discord != nil)
            }
        }
    }

    // MARK: Validators

    static func accepts<T>(_ r: Validated<T>) -> Bool {
        if case .success = r { return true }
        return false
    }

    static func message<T>(_ r: Validated<T>) -> String {
        if case .failure(let e) = r { return e.message }
        return ""
    }

    @Test func hostnames() {
        for good in ["aibox", "kitchen-box", "a", "box1", "1box", String(repeating: "a", count: 63)] {
            #expect(Self.accepts(Validators.hostname(good)), "\(good)")
        }
        let bad: [(String, String)] = [
            ("", "empty"), ("Kitchen", "must be lower case: \"kitchen\""), ("kitchen box", "not a host name"),
            ("-box", "begins or ends with '-'"), ("box-", "begins or ends with '-'"), ("box.local", "without the domain, such as \"box\""),
            (String(repeating: "a", count: 64), "64 characters long"), ("1234", "only digits"), ("localhost", "choose another"),
            ("bøx", "not a host name"),
        ]
        for (text, fragment) in bad { #expect(Self.message(Validators.hostname(text)).contains(fragment), "\(text)") }
    }

    @Test func urls() throws {
        for good in [
            "https://api.openai.com/v1", "http://127.0.0.1:11434", "http://[::1]:8080/v1", "https://example.com",
            "http://my-server.lan:8080/api/v1/", "https://x.example/a%20b",
        ] {
            #expect(Self.accepts(Validators.url(good)), "\(good)")
        }
        let u = try Validators.url("HTTPS://API.Example.com:8443/v1").get()
        #expect(u == WebURL(scheme: "https", host: "api.example.com", port: 8443, path: "/v1"))
        let bad: [(String, String)] = [
            ("", "empty"), ("ftp://x.com", "only http and https"), ("api.openai.com", "no scheme"), ("https://", "no host"),
            ("https://user:pw@x.com", "user name or password"), ("https://x.com/?a=1", "query or fragment"),
            ("https://x.com/#top", "query or fragment"), ("https://x.com:0", "port"), ("https://x.com:70000", "port"),
            ("https://exa mple.com", "space"), ("https://-bad.com", "begins or ends with '-'"), ("http://300.1.1.1", "not an IPv4"),
            ("https://bücher.de", "xn--"), ("https://x.com/%zz", "two hex digits"), ("http://[fe80::1%eth0]/", "not an IPv6"),
            ("https://" + String(repeating: "a", count: 2050), "at most 2048"),
        ]
        for (text, fragment) in bad { #expect(Self.message(Validators.url(text)).contains(fragment), "\(text)") }
        #expect(!Self.message(Validators.url("https://me:s3cr3t@x.com")).contains("s3cr3t"))
    }

    @Test func feedURLs() {
        for good in ["https://updates.example.com/aibox", "http://127.0.0.1:8000/feed", "http://localhost/feed", "http://[::1]/f"] {
            #expect(Self.accepts(Validators.feedURL(good)), "\(good)")
        }
        #expect(Self.message(Validators.feedURL("http://updates.example.com")).contains("need https"))
        #expect(Self.message(Validators.feedURL("http://192.168.1.1/feed")).contains("need https"))
    }

    @Test func addressesAndGateways() throws {
        for good in ["192.168.1.50", "0.0.0.0", "fd00::50", "::1", "::", "2001:db8::ffff:192.0.2.1", "1:2:3:4:5:6:7:8"] {
            #expect(Self.accepts(Validators.ipAddress(good)), "\(good)")
        }
        for bad in ["", "192.168.1", "192.168.01.1", "256.1.1.1", "1:2:3:4:5:6:7:8:9", "1::2::3", "fe80::1%eth0", "gateway"] {
            #expect(!Self.accepts(Validators.ipAddress(bad)), "\(bad)")
        }
        let a = try Validators.ipAddress("192.168.1.50").get()
        #expect(Self.accepts(Validators.gateway("192.168.1.1", address: a, prefix: 24)))
        #expect(Self.message(Validators.gateway("192.168.2.1", address: a, prefix: 24)).contains("outside"))
        #expect(Self.accepts(Validators.gateway("192.168.2.1", address: a, prefix: 16)))
        #expect(Self.message(Validators.gateway("fd00::1", address: a, prefix: 24)).contains("family"))
        #expect(Self.message(Validators.gateway("192.168.1.50", address: a, prefix: 24)).contains("own address"))
        #expect(Self.message(Validators.prefixLength(33, for: a)).contains("use 0 to 32"))
        #expect(Self.accepts(Validators.prefixLength(128, for: try Validators.ipAddress("fd00::1").get())))
    }

    @Test func ssids() {
        for good in ["Home", "Café ☕", String(repeating: "x", count: 32), "a"] { #expect(Self.accepts(Validators.ssid(good)), "\(good)") }
        #expect(Self.message(Validators.ssid("")).contains("empty"))
        #expect(Self.message(Validators.ssid(String(repeating: "x", count: 33))).contains("33 bytes long"))
        #expect(Self.message(Validators.ssid("a\nb")).contains("control character"))
    }

    @Test func wifiPassphrases() {
        let hex = String(repeating: "0123456789abcdef", count: 4)
        for good in ["12345678", String(repeating: "p", count: 63), hex, "with spaces ok !"] {
            #expect(Self.accepts(Validators.wifiPassphrase(good)), "\(good)")
        }
        let bad = ["1234567", String(repeating: "g", count: 64), String(repeating: "p", count: 65), "pässwörd-long", "tab\there1"]
        for text in bad {
            let m = Self.message(Validators.wifiPassphrase(text))
            #expect(m.contains("8 to 63"), "\(text)")
            #expect(!m.contains(text))
        }
    }

    @Test func countries() {
        #expect(Validators.countryCodes.count == 249)
        for good in ["DE", "US", "GB", "JP"] { #expect(Self.accepts(Validators.country(good))) }
        let bad: [(String, String)] = [
            ("de", "must be upper case: \"DE\""), ("UK", "is \"GB\""), ("XX", "not an assigned"), ("DEU", "two-letter"), ("", "two-letter"),
        ]
        for (text, fragment) in bad { #expect(Self.message(Validators.country(text)).contains(fragment), "\(text)") }
    }

    @Test func timezones() {
        for good in ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5", "America/Port-au-Prince", "Asia/Ho_Chi_Minh"] {
            #expect(Self.accepts(Validators.timezone(good)), "\(good)")
        }
        let bad: [(String, String)] = [
            ("", "empty"), ("Berlin", "not a time zone name"), ("utc", "must be written \"UTC\""), ("Europe/../etc", "not a time zone"),
            ("Erope/Berlin", "did you mean Europe?"), ("europe/berlin", "not a time zone"), ("/etc/passwd", "not a time zone"),
            ("Europe/Berlin/", "not a time zone"), ("Europe/Ber lin", "not a time zone"), ("Mars/Olympus", "areas are Africa"),
        ]
        for (text, fragment) in bad { #expect(Self.message(Validators.timezone(text)).contains(fragment), "\(text)") }
    }

    @Test func maintenanceWindows() throws {
        for good in ["03:00-05:00", "22:00-02:00", "00:00-23:59"] {
            #expect(try Validators.maintenanceWindow(good).get().description == good)
        }
        for bad in ["3:00-5:00", "24:00-01:00", "03:60-04:00", "03:00–05:00", "", "03:00-05:00 "] {
            #expect(Self.message(Validators.maintenanceWindow(bad)).contains("HH:MM-HH:MM"), "\(bad)")
        }
        #expect(Self.message(Validators.maintenanceWindow("03:00-03:00")).contains("same time"))
        let wrap = try #require(MaintenanceWindow("22:30-02:00"))
        #expect(wrap.wrapsMidnight)
        #expect(wrap.contains(minuteOfDay: 23 * 60) && wrap.contains(minuteOfDay: 60) && wrap.contains(minuteOfDay: 22 * 60 + 30))
        #expect(!wrap.contains(minuteOfDay: 2 * 60) && !wrap.contains(minuteOfDay: 12 * 60))
        let day = try #require(MaintenanceWindow("03:00-05:00"))
        #expect(day.contains(minuteOfDay: 3 * 60) && !day.contains(minuteOfDay: 5 * 60) && !day.wrapsMidnight)
    }

    @Test func modelsAndProviderNames() {
        for good in ["gpt-4o-mini", "qwen2.5:3b", "meta-llama/Llama-3.1-8B-Instruct", "hf.co/bartowski/x:Q4_K_M", "claude-3-5-haiku@2024"] {
            #expect(Self.accepts(Validators.modelName(good)), "\(good)")
        }
        for bad in ["", "has space", "-x", ":x", String(repeating: "m", count: 129), "mödel"] {
            #expect(!Self.accepts(Validators.modelName(bad)), "\(bad)")
        }
        #expect(Self.message(Validators.modelList([])).contains("at least one"))
        #expect(Self.message(Validators.modelList(["a", "b", "a"])).contains("listed twice"))
        #expect(Self.message(Validators.modelList(Array(repeating: "m", count: 65))).contains("at most 64"))
        for good in ["openai", "home-gpu", "1", String(repeating: "p", count: 32)] { #expect(Self.accepts(Validators.providerName(good))) }
        for bad in ["", "OpenAI", "-x", "a_b", "a/b", String(repeating: "p", count: 33)] {
            #expect(!Self.accepts(Validators.providerName(bad)))
        }
    }

    @Test func contextsChainsAndBudgetAmounts() throws {
        for good in [512, 8192, 131_072, 10_000_000] { #expect(try Validators.contextWindow(good).get() == good) }
        for bad in [0, -1, 511, 10_000_001, Int.max] {
            #expect(Self.message(Validators.contextWindow(bad)).contains("is not a context window"), "\(bad)")
        }
        let a = Route(provider: "a", model: "m"), b = Route(provider: "b", model: "m")
        #expect(try Validators.routeChain([a, b]).get() == [a, b])
        #expect(Self.message(Validators.routeChain([])).contains("the chain is empty"))
        #expect(
            Self.message(Validators.routeChain([a, b, Route(provider: "a", model: "m", context: 4096)]))
                == "route 3 is a/m again (route 1); list each route once")
        let nine = (1...9).map { Route(provider: "p", model: "m\($0)") }
        #expect(Self.message(Validators.routeChain(nine)) == "9 routes in one chain; at most 8")
        #expect(Self.accepts(Validators.routeChain(Array(nine.prefix(8)))))

        // Typed amounts: dollars, with or without '$' and cents.
        for (text, value) in [("2", 2.0), ("2.50", 2.5), ("$30", 30.0), ("0", 0.0), (".5", 0.5), ("1000000", 1_000_000.0)] {
            #expect(try Validators.usd(text).get() == value, "\(text)")
        }
        for bad in ["", "$", "-1", "two", "1.2.3", "1e3", "inf", "nan", "0x10", "2 USD", "1,5"] {
            #expect(Self.message(Validators.usd(bad)).contains("is not an amount; give US dollars such as 2 or 2.50"), "\(bad)")
        }
        #expect(Self.message(Validators.usd("1000000.01")).contains("is more than 1000000 dollars"))
        // Numbers from a file.
        #expect(Self.message(Validators.usd(-0.5)) == "-0.5 is negative; must be a number of US dollars >= 0, like 2.0")
        #expect(Self.message(Validators.usd(Double.nan)).contains("not nan"))
        #expect(try Validators.usd(-0.0).get().sign == .plus)
        for good in [0.01, 0.8, 1.0] { #expect(Self.accepts(Validators.warnAt(good))) }
        for bad in [0.0, -0.1, 1.01, .nan, .infinity] { #expect(!Self.accepts(Validators.warnAt(bad)), "\(bad)") }
    }

    @Test func yesNo() throws {
        #expect(try Validators.yesNo("Yes").get() && Validators.yesNo("y").get())
        #expect(try !Validators.yesNo("NO").get() && !Validators.yesNo("n").get())
        #expect(Self.message(Validators.yesNo("maybe")) == "answer yes or no")
    }

    @Test func sshKeys() throws {
        for good in [F.ed25519, F.rsa2048, F.ecdsa256, F.ecdsa384, F.ecdsa521, F.skEd25519] {
            #expect(Self.accepts(Validators.sshPublicKey(good)), "\(good.prefix(30))")
        }
        #expect(try Validators.sshPublicKey("  ssh-ed25519\t" + F.ed25519.split(separator: " ")[1] + "  a b c ").get().hasSuffix(" a b c"))
        #expect(Self.accepts(Validators.sshPublicKey(String(F.ed25519.split(separator: " ")[0...1].joined(separator: " ")))))
        let bad: [(String, String)] = [
            ("", "empty"), ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA", "PRIVATE key"),
            (F.rsa1024, "1024 bits"), ("ssh-dss AAAAB3NzaC1kc3M= x", "not an SSH key type"), (F.mislabelled, "not a ssh-ed25519 key"),
            ("ssh-ed25519 AAAA!!!!", "not valid base64"), (F.shortEd25519, "32 bytes"),
            ("from=\"10.0.0.1\" " + F.ed25519, "authorized_keys options"), ("ssh-ed25519", "no key after"),
            (F.ed25519 + "\n" + F.ed25519, "line break"), ("ssh-ed25519 " + String(repeating: "A", count: 9000), "at most 8192"),
        ]
        for (text, fragment) in bad { #expect(Self.message(Validators.sshPublicKey(text)).contains(fragment), "\(text.prefix(40))") }
        // A pasted private key is never repeated back.
        #expect(!Self.message(Validators.sshPublicKey("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA")).contains("b3Bl"))
    }

    @Test func passwordHashes() {
        for good in [F.sha512Hash, F.sha256Hash, F.yescryptHash, F.bcryptHash, "$6$rounds=5000$salt$" + String(repeating: "a", count: 86)] {
            #expect(Self.accepts(Validators.passwordHash(good)), "\(good)")
        }
        let bad: [(String, String)] = [
            ("", "empty"), ("hunter2hunter2", "never give the password itself"), (F.md5Hash, "MD5"), ("$6$salt$short", "cut short"),
            ("$99$x$y", "not one this box accepts"), ("$6$", "not a complete"),
            ("$6$salt$" + String(repeating: "a", count: 85) + "!", "not a complete"),
        ]
        for (text, fragment) in bad {
            let m = Self.message(Validators.passwordHash(text))
            #expect(m.contains(fragment), "\(text)")
            if text.count > 4 { #expect(!m.contains(text)) }
        }
    }

    @Test func passwords() {
        #expect(Self.accepts(Validators.password("correct horse")))
        #expect(Self.message(Validators.password("short")).contains("at least 8"))
        #expect(Self.message(Validators.password("long enough\u{7}")).contains("control character"))
        #expect(!Self.message(Validators.password("short")).contains("short\""))
    }

    /// (validator, good values, bad values with the expected words): every message is checked not to hold the value.
    static var tokenCases: [(String, (String) -> Validated<Secret>, [String], [(String, String)])] {
        [
            (
                "apiKey", Validators.apiKey, [F.openAIKey, F.anthropicKey, "x"],
                [
                    ("", "empty"), ("sk has spaces", "space"), (String(repeating: "k", count: 513), "at most 512"),
                    ("Bearer \(F.openAIKey)", "leave out \"Bearer \""), ("sk-ключ-secret", "outside printable ASCII"),
                ]
            ),
            (
                "telegram", Validators.telegramBotToken, [F.telegram, "12345:" + String(repeating: "a", count: 35)],
                [
                    ("no-colon-in-this-token", "no single ':'"), ("1234:" + String(repeating: "a", count: 35), "5 to 12 digits"),
                    ("123456789:" + String(repeating: "a", count: 34), "34 characters, not 35"),
                    ("123456789:" + String(repeating: "a", count: 34) + "!", "other than letters"), ("123456789:abc def", "space"),
                ]
            ),
            (
                "slackBot", Validators.slackBotToken, [F.slackBot],
                [
                    (F.slackApp, "app-level token"), ("xoxp-0000000000-0000000000-secretpart000", "user token"),
                    ("xoxb-short", "5 characters after xoxb-"), ("xoxb-0000000000_0000000000000_abc", "other than letters"),
                    ("token-without-prefix-0000000000", "does not start with xoxb-"),
                ]
            ),
            (
                "slackApp", Validators.slackAppToken, [F.slackApp],
                [
                    (F.slackBot, "this is the bot token"), ("xapp-1", "characters after xapp-"),
                    ("tokentokentokentoken0000", "does not start with xapp-"),
                ]
            ),
            (
                "discord", Validators.discordBotToken, [F.discord],
                [
                    ("Bot \(F.discord)", "leave out \"Bot \""), ("MTAwMDAwMDAwMDAwMDAwMDAwMA.GFake0", "2 parts, not 3"),
                    ("MTAw.GFake0.FakeTokenForExamplesOnly_000000", "too short"),
                    ("MTAwMDAwMDAwMDAwMDAwMDAwMA.GF+ke0.FakeTokenForExamplesOnly_0", "other than letters"),
                ]
            ),
            (
                "whatsApp", Validators.whatsAppAccessToken, [F.whatsApp],
                [
                    ("EAAshort0token", "too few"), ("XYZFakeWhatsAppAccessTokenForExamplesOnly000000000", "starts with EAA"),
                    ("EAA-dash-" + String(repeating: "0", count: 40), "starts with EAA"),
                ]
            ),
        ]
    }

    @Test func tokensAndKeys() {
        for (name, validate, good, bad) in Self.tokenCases {
            for g in good { #expect(Self.accepts(validate(g)), "\(name): \(g)") }
            for (text, fragment) in bad {
                let m = Self.message(validate(text))
                #expect(m.contains(fragment), "\(name): \(m)")
                if text.count >= 6 { #expect(!m.contains(text), "\(name) repeats the secret: \(m)") }
            }
        }
    }

    @Test func listenAddresses() {
        #expect(Validators.hostPort("127.0.0.1:8790")! == ("127.0.0.1", 8790))
        #expect(Validators.hostPort("[::1]:0")! == ("::1", 0))
        for bad in ["127.0.0.1", "localhost:8790", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:+80", "[::1]8790", "::1:8790x", ":8790", "1.2.3.4:000000080"] {
            #expect(Validators.hostPort(bad) == nil, "\(bad)")
            #expect(Self.message(Validators.listenAddress(bad)).contains("is not HOST:PORT"), "\(bad)")
        }
    }

    @Test func whatsAppPhoneNumberIds() {
        #expect(Self.accepts(Validators.whatsAppPhoneNumberId("106540352242922")))
        #expect(Self.message(Validators.whatsAppPhoneNumberId("+4915112345678")).contains("looks like a phone number"))
        #expect(Self.message(Validators.whatsAppPhoneNumberId("12345")).contains("6 to 20 digits"))
        #expect(Self.message(Validators.whatsAppPhoneNumberId("10654035x")).contains("6 to 20 digits"))
    }

    // MARK: Wizard

    /// Answers questions from `script` (Enter for the others) until `stop` or the end,
    /// checking every prompt and intro line fits 80 columns. Returns the questions asked.
    @discardableResult
    static func drive(
        _ w: inout SetupWizard, _ script: [String: String], until stop: SetupStep? = nil,
        sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) -> [WizardQuestion] {
        var asked: [WizardQuestion] = []
        while let q = w.question, q.step != stop, asked.count < 200 {
            asked.append(q)
            #expect(q.prompt.count <= 80, "\(q.prompt)", sourceLocation: sourceLocation)
            #expect(q.intro.allSatisfy { $0.count <= 80 }, "\(q.intro)", sourceLocation: sourceLocation)
            if case .invalid(let m) = w.answer(script[q.key] ?? "") {
                Issue.record("\(q.key): \(m)", sourceLocation: sourceLocation)
                break
            }
        }
        return asked
    }

    @Test func wizardHappyPathGivesWhatTheSeedGives() throws {
        var w = SetupWizard(tier: .small, hashPassword: F.hasher)
        let asked = Self.drive(&w, F.wizardScript)
        #expect(Set(asked.map(\.step)) == Set(SetupStep.allCases))
        #expect(asked.first?.key == "name" && asked.last?.key == "summary.confirm")
        #expect(
            asked.filter(\.isSecret).map(\.key) == [
                "admin.password", "admin.password-again", "network.wifi.passphrase", "providers.1.api-key", "channels.1.token",
                "channels.2.bot-token", "channels.2.app-token",
            ])
        #expect(w.isFinished && w.question == nil)
        let result = try #require(w.result)
        let (seedConfig, seedSecrets) = try Self.seed(F.fullSeed, tier: .small).get()
        #expect(result.config == seedConfig)
        #expect(result.secrets == seedSecrets)
        #expect(w.answer("more") == .finished)
    }

    @Test func wizardShowsDefaultsInBrackets() throws {
        let w = SetupWizard(tier: .none, hashPassword: F.hasher)
        let q = try #require(w.question)
        #expect(q.prompt == "Name of this box [aibox]: ")
        #expect(q.defaultAnswer == "aibox")
        #expect(q.intro.contains("Step 1 of 10: Name"))
        #expect(!q.isSecret && !q.isSkippable)
    }

    @Test func wizardAsksAgainWithTheReason() throws {
        var w = SetupWizard(tier: .none, hashPassword: F.hasher)
        #expect(
            w.answer("Kitchen Box")
                == .invalid(
                    "\"Kitchen Box\" is not a host name; use 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-', such as \"kitchen-box\""
                ))
        #expect(w.question?.key == "name")
        #expect(w.answer("kitchen") == .next)
        #expect(w.question?.key == "admin.ssh-key.1")
        guard case .invalid(let m) = w.answer(F.rsa1024) else {
            Issue.record("accepted a 1024-bit key")
            return
        }
        #expect(m.contains("2048"))
        #expect(w.question?.key == "admin.ssh-key.1")
        // No SSH key: the password may not be skipped.
        #expect(w.answer("") == .next)
        #expect(w.question?.key == "admin.password" && w.question?.isSkippable == false)
        guard case .invalid(let need) = w.answer("") else {
            Issue.record("skipped the only way in")
            return
        }
        #expect(need.contains("nobody can log in"))
        // A bad secret is refused without being repeated.
        guard case .invalid(let short) = w.answer("abc1234") else {
            Issue.record("accepted a short password")
            return
        }
        #expect(short.contains("at least 8") && !short.contains("abc1234"))
    }

    @Test func wizardPasswordMustBeTypedTwiceAlike() throws {
        var w = SetupWizard(tier: .none, hashPassword: F.hasher)
        #expect(w.answer("kitchen") == .next)
        #expect(w.answer("") == .next)  // no SSH key
        #expect(w.answer(F.password) == .next)
        #expect(w.question?.key == "admin.password-again")
        #expect(w.answer("something else") == .invalid("the two passwords differ; type the new password again"))
        #expect(w.question?.key == "admin.password")
        #expect(w.answer(F.password) == .next)
        #expect(w.answer(F.password + "\r\n") == .next)
        #expect(w.question?.key == "timezone")
        #expect(w.finishedSteps.last?.answers.last == WizardAnswer(key: "admin.password", value: .passwordHash(F.sha512Hash)))
        // A box that cannot hash: the password is refused, with a way out.
        var noHash = SetupWizard(tier: .none, hashPassword: { _ in nil })
        _ = noHash.answer("kitchen")
        _ = noHash.answer("")
        _ = noHash.answer(F.password)
        guard case .invalid(let m) = noHash.answer(F.password) else {
            Issue.record("accepted without a hash")
            return
        }
        #expect(m.contains("could not be hashed"))
    }

    @Test func wizardGoesBackWithTheAnswerAsDefault() throws {
        var w = SetupWizard(tier: .none, hashPassword: F.hasher)
        #expect(w.back() == false)
        guard case .invalid = w.answer("<") else {
            Issue.record("went back from the first question")
            return
        }
        #expect(w.answer("kitchen") == .next)
        #expect(w.answer(F.ed25519) == .next)
        #expect(w.question?.key == "admin.ssh-key.2")
        #expect(w.answer("back") == .next)
        #expect(w.question?.key == "admin.ssh-key.1")
        #expect(w.question?.defaultAnswer == F.ed25519)
        #expect(w.back() == true)
        let q = try #require(w.question)
        #expect(q.key == "name" && q.defaultAnswer == "kitchen" && q.prompt == "Name of this box [kitchen]: ")
        #expect(w.answer("") == .next)
        #expect(w.answer("") == .next)  // the remembered key
        #expect(w.answer("") == .next)  // no second key
        #expect(w.answer("") == .next)  // no password: the key is enough
        #expect(w.question?.key == "timezone")
        #expect(w.draft().config.admin == AdminAccess(sshKeys: [F.ed25519]))
        #expect(w.draft().config.name == "kitchen")
    }

    @Test func wizardForgetsDependentDefaultsWhenAnAnswerChanges() throws {
        var w = SetupWizard(tier: .none, hashPassword: F.hasher)
        Self.drive(&w, F.wizardScript, until: .providers)
        #expect(w.answer("yes") == .next)
        #expect(w.answer("openai") == .next)
        #expect(w.answer("") == .next)
        #expect(w.question?.key == "providers.1.base-url" && w.question?.defaultAnswer == "https://api.openai.com/v1")
        w.back()
        w.back()
        #expect(w.question?.key == "providers.1.kind")
        #expect(w.answer("ollama") == .next)
        #expect(w.question?.defaultAnswer == "ollama")  // the name follows the new kind
        #expect(w.answer("") == .next)
        #expect(w.question?.defaultAnswer == "http://127.0.0.1:11434")
        #expect(w.answer("") == .next)
        #expect(w.question?.key == "providers.1.api-key" && w.question?.isSkippable == true)
    }

    @Test func wizardResumesAtTheFirstUnfinishedStep() throws {
        var w = SetupWizard(tier: .small, hashPassword: F.hasher)
        Self.drive(&w, F.wizardScript, until: .channels)
        let records = w.finishedSteps
        #expect(records.map(\.step) == [.name, .admin, .timezone, .network, .providers, .routing, .budget])
        let secrets = w.secrets
        #expect(Set(secrets.keys) == ["wifi.passphrase", "provider.openai.api-key"])

        // The journal: JSON without any secret value or the password.
        let json = String(decoding: try JSONEncoder().encode(records), as: UTF8.self)
        for v in F.allSecretValues { #expect(!json.contains(v), "\(v) in the journal") }
        #expect(json.contains("provider.openai.api-key"))
        let journal = try JSONDecoder().decode([WizardStepRecord].self, from: Data(json.utf8))

        // A hasher that fails proves the password is not hashed again: its hash is replayed.
        var resumed = SetupWizard(tier: .small, hashPassword: { _ in nil }, resuming: journal, secrets: secrets)
        #expect(resumed.question?.key == "channels.1.add")
        #expect(resumed.step == .channels)
        #expect(resumed.finishedSteps == records)
        #expect(resumed.draft().config == w.draft().config)
        // Earlier answers stay as defaults: back through the budget into routing.
        #expect(resumed.back() == true)
        #expect(resumed.question?.key == "budget.when-exhausted" && resumed.question?.defaultAnswer == "refuse")
        #expect(resumed.back() == true)
        #expect(resumed.question?.key == "budget.monthly-usd" && resumed.question?.defaultAnswer == "30.50")
        #expect(resumed.back() == true)
        #expect(resumed.question?.key == "budget.daily-usd" && resumed.question?.defaultAnswer == "2")
        #expect(resumed.back() == true)
        #expect(resumed.question?.key == "routing.reasoning" && resumed.question?.defaultAnswer == "as chat")
        #expect(resumed.back() == true)
        #expect(resumed.question?.key == "routing.code" && resumed.question?.defaultAnswer == "openai/gpt-4o")
        Self.drive(&resumed, F.wizardScript)
        Self.drive(&w, F.wizardScript)
        let a = try #require(resumed.result), b = try #require(w.result)
        #expect(a.config == b.config && a.secrets == b.secrets)
    }

    @Test func wizardResumeStopsAtAStepThatDoesNotReplay() throws {
        var w = SetupWizard(tier: .none, hashPassword: F.hasher)
        Self.drive(&w, F.wizardScript, until: .routing)
        // The API key's file was lost: the providers step is asked again, answers as defaults.
        var secrets = w.secrets
        secrets["provider.openai.api-key"] = nil
        var resumed = SetupWizard(tier: .none, hashPassword: F.hasher, resuming: w.finishedSteps, secrets: secrets)
        #expect(resumed.question?.key == "providers.1.add")
        #expect(resumed.question?.defaultAnswer == "yes")
        #expect(resumed.finishedSteps.map(\.step) == [.name, .admin, .timezone, .network])
        #expect(resumed.answer("") == .next)
        #expect(resumed.question?.defaultAnswer == "openai")
        // A journal from elsewhere (a step out of order) is not replayed past it.
        let shuffled = [w.finishedSteps[1], w.finishedSteps[0]]
        let fresh = SetupWizard(tier: .none, hashPassword: F.hasher, resuming: shuffled, secrets: w.secrets)
        #expect(fresh.question?.key == "name")
        #expect(fresh.question?.defaultAnswer == "kitchen-box")
    }

    @Test func wizardSummaryShowsNoSecretAndCanReopenAStep() throws {
        var w = SetupWizard(tier: .small, hashPassword: F.hasher)
        Self.drive(&w, F.wizardScript, until: .summary)
        let q = try #require(w.question)
        #expect(q.key == "summary.confirm" && q.prompt == "Write this configuration? [yes]: ")
        let summary = q.intro.joined(separator: "\n")
        for v in F.allSecretValues + [F.sha512Hash] { #expect(!summary.contains(v), "\(v) in the summary") }
        #expect(summary.contains("••••"))
        #expect(summary.contains("kitchen-box") && summary.contains("chat: local/qwen2.5-3b-instruct-q4_k_m → openai/gpt-4o-mini"))
        #expect(summary.contains("$2.00 a day, $30.50 a month, warn at 80%, then refuse to answer"), "\(summary)")
        var dumped = ""
        dump(w, to: &dumped)
        for v in F.allSecretValues { #expect(!dumped.contains(v), "\(v) in a dump of the wizard") }

        guard case .invalid(let m) = w.answer("no") else {
            Issue.record("no was taken")
            return
        }
        #expect(m.contains("or the step to change: name, admin"))
        #expect(w.answer("network") == .next)
        #expect(w.question?.key == "network.wired" && w.question?.defaultAnswer == "static")
        #expect(w.answer("dhcp") == .next)
        // The rest of the network step (Wi-Fi, its answers as defaults), then the summary again.
        let asked = Self.drive(&w, [:], until: .summary)
        #expect(asked.map(\.key) == ["network.wifi", "network.wifi.ssid", "network.wifi.passphrase", "network.wifi.country"])
        #expect(w.answer("") == .finished)
        let result = try #require(w.result)
        #expect(result.config.network.wired == .dhcp)
        #expect(result.config.network.wifi?.ssid == "Kitchen")
        #expect(result.config.channels.slack != nil)
        #expect(result.secrets.count == 5)
    }

    /// The answers of the wizard script, then `change` typed at the summary: what is asked
    /// until the summary comes back.
    static func reopen(
        _ w: inout SetupWizard, _ change: String, script: [String: String] = F.wizardScript, answering: [String: String],
        sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) -> (before: BoxConfig, asked: [WizardQuestion]) {
        drive(&w, script, until: .summary, sourceLocation: sourceLocation)
        let before = w.draft().config
        #expect(w.answer(change) == .next, sourceLocation: sourceLocation)
        let asked = drive(&w, answering, until: .summary, sourceLocation: sourceLocation)
        #expect(w.step == .summary, sourceLocation: sourceLocation)
        return (before, asked)
    }

    @Test func aSummaryChangeAsksOnlyThatStepThenTheSummaryAgain() throws {
        var w = SetupWizard(tier: .small, hashPassword: F.hasher)
        let (before, asked) = Self.reopen(
            &w, "timezone", answering: ["timezone": "Europe/Paris"])
        #expect(asked.map(\.key) == ["timezone"])
        #expect(asked.first?.defaultAnswer == "Europe/Berlin")
        #expect(w.finishedSteps.map(\.step) == SetupStep.allCases.filter { $0 != .summary })
        #expect(w.question?.intro.contains { $0.hasSuffix(" Europe/Paris") } == true, "\(w.question?.intro ?? [])")
        #expect(w.answer("") == .finished)
        var expected = before
        expected.timezone = "Europe/Paris"
        let result = try #require(w.result)
        #expect(result.config == expected)
        #expect(result.secrets.count == 5)
    }

    @Test func aReopenedStepIsNotJournaledAsFinishedUntilItIs() throws {
        var w = SetupWizard(tier: .small, hashPassword: F.hasher)
        Self.drive(&w, F.wizardScript, until: .summary)
        let all = w.finishedSteps
        #expect(w.answer("providers") == .next)
        // A journal written now keeps the earlier answers of providers and later steps.
        #expect(w.finishedSteps == Array(all.prefix(4)))
        // Back from the reopened step's first question into the step before it, and forward again.
        #expect(w.answer("back") == .next)
        #expect(w.question?.key == "network.wifi.country" && w.question?.defaultAnswer == "DE")
        Self.drive(&w, [:], until: .summary)
        #expect(w.finishedSteps == all)
        #expect(w.answer("yes") == .finished)
    }

    @Test func aLaterAnswerThatNoLongerFitsIsAskedAgainWithTheReason() throws {
        // The provider is renamed: the route for code names one that is gone.
        var w = SetupWizard(tier: .small, hashPassword: F.hasher)
        let (before, asked) = Self.reopen(
            &w, "providers", answering: ["providers.1.name": "cloud", "providers.1.api-key": F.openAIKey, "routing.code": "cloud/gpt-4o"])
        // Chat's chain ended at openai/gpt-4o-mini: asked again too, its default now ending at cloud.
        #expect(
            asked.map(\.key) == [
                "providers.1.add", "providers.1.kind", "providers.1.name", "providers.1.base-url", "providers.1.api-key",
                "providers.1.models", "providers.2.add", "routing.chat", "routing.code",
            ])
        let chat = asked[7]
        #expect(chat.defaultAnswer == "local/qwen2.5-3b-instruct-q4_k_m cloud/gpt-4o-mini")
        #expect(
            chat.intro.joined(separator: " ").split(separator: " ").joined(separator: " ").contains(
                "no longer fits after the change to LLM providers: \"openai\" is not a provider"), "\(chat.intro)")
        let code = try #require(asked.last)
        let notice = code.intro.joined(separator: " ").split(separator: " ").joined(separator: " ")
        #expect(code.intro.first?.hasPrefix("  ! ") == true, "\(code.intro)")
        #expect(notice.contains("\"openai/gpt-4o\" no longer fits after the change to LLM providers"), "\(notice)")
        #expect(notice.contains("\"openai\" is not a provider"), "\(notice)")
        #expect(code.intro.allSatisfy { $0.count <= 80 })
        #expect(w.answer("") == .finished)
        let result = try #require(w.result)
        var expected = before
        expected.providers[0].name = "cloud"
        expected.providers[0].apiKeySecret = "provider.cloud.api-key"
        expected.routing[.chat] = [
            Route(provider: "local", model: "qwen2.5-3b-instruct-q4_k_m"), Route(provider: "cloud", model: "gpt-4o-mini"),
        ]
        expected.routing[.code] = [Route(provider: "cloud", model: "gpt-4o")]
        // The budget's answers still fit (a cloud provider is there): kept without a question.
        #expect(expected.budget != nil)
        #expect(result.config == expected)
        #expect(result.secrets["provider.cloud.api-key"]?.reveal() == F.openAIKey)
        #expect(result.secrets["provider.openai.api-key"] == nil)
    }

    @Test func laterAnswersWhoseQuestionIsGoneAreDropped() throws {
        // No local model and the only provider removed: routing has nothing to ask.
        var w = SetupWizard(tier: .none, hashPassword: F.hasher)
        let (before, asked) = Self.reopen(
            &w, "providers", answering: ["providers.1.add": "no"])
        #expect(asked.map(\.key) == ["providers.1.add"])
        #expect(w.answer("yes") == .finished)
        let result = try #require(w.result)
        var expected = before
        expected.providers = []
        expected.routing = [:]
        expected.budget = nil  // no cloud provider: no budget step
        #expect(result.config == expected)
        #expect(result.secrets["provider.openai.api-key"] == nil)
        // Reopening routing now: nothing to ask, said so; the summary stays.
        var again = SetupWizard(tier: .none, hashPassword: F.hasher)
        Self.drive(&again, ["admin.ssh-key.1": F.ed25519, "providers.1.add": "no"], until: .summary)
        guard case .invalid(let m) = again.answer("routing") else {
            Issue.record("routing reopened without questions")
            return
        }
        #expect(m.contains("Routing has no questions"))
        #expect(again.step == .summary)
    }

    @Test func aQuestionNewAfterTheChangeIsAskedAndSaysWhy() throws {
        let script = F.wizardScript.merging(["providers.1.add": "no"]) { _, new in new }
        var w = SetupWizard(tier: .none, hashPassword: F.hasher)
        let (_, asked) = Self.reopen(
            &w, "providers", script: script,
            answering: [
                "providers.1.add": "yes", "providers.1.api-key": F.openAIKey, "providers.1.models": "gpt-4o-mini gpt-4o",
                "routing.code": "openai/gpt-4o",
            ])
        #expect(
            asked.map(\.step) == [
                .providers, .providers, .providers, .providers, .providers, .providers, .providers, .routing, .routing, .routing,
                .budget, .budget,
            ])
        let chat = try #require(asked.first { $0.key == "routing.chat" })
        #expect(chat.intro.joined(separator: " ").contains("a new question after the change to LLM providers"), "\(chat.intro)")
        #expect(w.answer("") == .finished)
        let result = try #require(w.result)
        #expect(result.config.routing[.chat] == [Route(provider: "openai", model: "gpt-4o-mini")])
        #expect(result.config.routing[.code] == [Route(provider: "openai", model: "gpt-4o")])
        #expect(result.config.budget == nil)
        #expect(result.config.channels.slack != nil && result.config.updates.window.description == "22:00-02:00")
    }

    @Test func wizardWithoutProvidersOrLocalModelSkipsRouting() throws {
        var w = SetupWizard(tier: .none, hashPassword: F.hasher)
        let asked = Self.drive(&w, ["admin.ssh-key.1": F.ed25519, "providers.1.add": "no"])
        #expect(!asked.contains { $0.step == .routing })
        let result = try #require(w.result)
        #expect(result.config.providers.isEmpty && result.config.routing.isEmpty)
        #expect(w.finishedSteps.first { $0.step == .routing }?.answers == [])
        #expect(result.config == BoxConfig(name: "aibox", admin: AdminAccess(sshKeys: [F.ed25519])))
    }

    /// Through the providers step with `providers` answers; at the first routing question.
    static func wizardAtRouting(tier: LocalLLMTier, _ providers: [String: String]) -> (SetupWizard, [WizardQuestion]) {
        var w = SetupWizard(tier: tier, hashPassword: F.hasher)
        let asked = drive(&w, ["admin.ssh-key.1": F.ed25519].merging(providers) { _, new in new }, until: .routing)
        return (w, asked)
    }

    static let openAIOnly = ["providers.1.add": "yes", "providers.1.api-key": F.openAIKey, "providers.1.models": "gpt-4o-mini gpt-4o"]

    @Test func wizardSaysWhatChatWillUseAndWritesIt() throws {
        // The box's own model, then the cloud: said at the routing step, written on Enter.
        var (w, asked) = Self.wizardAtRouting(tier: .small, Self.openAIOnly)
        let providersIntro = try #require(asked.first { $0.key == "providers.1.add" }).intro.joined(separator: " ")
        #expect(providersIntro.contains("This box can run qwen2.5-3b-instruct-q4_k_m itself (llama.cpp)."), "\(providersIntro)")
        #expect(!providersIntro.contains("chat uses it"), "the providers step cannot know what chat will use")
        var q = try #require(w.question)
        #expect(q.key == "routing.chat" && q.prompt == "Models for chat [local/qwen2.5-3b-instruct-q4_k_m openai/gpt-4o-mini]: ")
        var said = q.intro.joined(separator: " ")
        #expect(
            said.contains(
                "Enter gives chat qwen2.5-3b-instruct-q4_k_m on this box (provider local, llama.cpp), then openai/gpt-4o-mini."),
            "\(q.intro)")
        #expect(q.intro.allSatisfy { $0.count <= 80 && !$0.contains("…") }, "\(q.intro)")
        Self.drive(&w, [:])
        var config = try #require(w.result).config
        #expect(
            config.routing == [
                .chat: [Route(provider: "local", model: "qwen2.5-3b-instruct-q4_k_m"), Route(provider: "openai", model: "gpt-4o-mini")]
            ])
        #expect(config.providers.last == ProviderConfig(name: "local", kind: .llamacpp, models: ["qwen2.5-3b-instruct-q4_k_m"]))

        // A server of the owner's comes first: the box's own model is not claimed, nor written.
        (w, _) = Self.wizardAtRouting(
            tier: .small,
            [
                "providers.1.add": "yes", "providers.1.kind": "ollama", "providers.1.name": "home", "providers.1.models": "llama3.1:8b",
                "providers.2.add": "yes", "providers.2.api-key": F.openAIKey,
            ])
        q = try #require(w.question)
        said = q.intro.joined(separator: " ")
        #expect(q.defaultAnswer == "home/llama3.1:8b openai/gpt-4o-mini")
        #expect(said.contains("Enter gives chat home/llama3.1:8b, then openai/gpt-4o-mini."), "\(q.intro)")
        #expect(said.contains("This box will not run qwen2.5-3b-instruct-q4_k_m itself"), "\(q.intro)")
        #expect(!said.contains("local/"), "the box's own model is offered only when it would be set up: \(q.intro)")
        Self.drive(&w, [:])
        config = try #require(w.result).config
        #expect(config.providers.map(\.name) == ["home", "openai"])
        #expect(
            config.routing[.chat] == [Route(provider: "home", model: "llama3.1:8b"), Route(provider: "openai", model: "gpt-4o-mini")])

        // The box's own model chosen as a fallback only: still written; not chosen: not written.
        for (answer, hasLocal) in [("openai/gpt-4o, local/qwen2.5-3b-instruct-q4_k_m", true), ("openai/gpt-4o", false)] {
            (w, _) = Self.wizardAtRouting(tier: .small, Self.openAIOnly)
            Self.drive(&w, ["routing.chat": answer])
            config = try #require(w.result).config
            #expect((config.provider(named: "local") != nil) == hasLocal, "\(answer)")
            #expect(config.routing[.chat]?.first == Route(provider: "openai", model: "gpt-4o"))
            #expect(config.routing[.chat]?.count == (hasLocal ? 2 : 1))
        }
    }

    @Test func wizardTakesChainsAndRefusesBadOnes() throws {
        var (w, _) = Self.wizardAtRouting(tier: .none, Self.openAIOnly)
        #expect(w.question?.key == "routing.chat" && w.question?.defaultAnswer == "openai/gpt-4o-mini")
        #expect(w.answer("openai/gpt-4o openai/gpt-4o") == .invalid("route 2 is openai/gpt-4o again (route 1); list each route once"))
        #expect(w.answer(Array(repeating: "openai/gpt-4o", count: 9).joined(separator: " ")) == .invalid("9 routes; a chain has at most 8"))
        guard case .invalid(let m) = w.answer("openai/gpt-4o ghost/m") else {
            Issue.record("a route to an unknown provider was taken")
            return
        }
        #expect(m == "\"ghost\" is not a provider; providers are openai")
        guard case .invalid(let m2) = w.answer("gpt-4o") else {
            Issue.record("a route without a provider was taken")
            return
        }
        #expect(m2.contains("give provider/model, such as openai/gpt-4o-mini"))
        #expect(w.answer("openai/gpt-4o,openai/gpt-4o-mini") == .next)
        #expect(w.question?.key == "routing.code" && w.question?.prompt == "Models for code [as chat]: ")
        #expect(w.answer("") == .next)
        #expect(w.answer("openai/gpt-4o-mini   openai/gpt-4o") == .next)
        // The answers as written, chains in the order given.
        #expect(
            w.finishedSteps.last?.answers.map(\.value) == [
                .text("openai/gpt-4o openai/gpt-4o-mini"), .skipped, .text("openai/gpt-4o-mini openai/gpt-4o"),
            ])
        #expect(
            w.draft().config.routing == [
                .chat: [Route(provider: "openai", model: "gpt-4o"), Route(provider: "openai", model: "gpt-4o-mini")],
                .reasoning: [Route(provider: "openai", model: "gpt-4o-mini"), Route(provider: "openai", model: "gpt-4o")],
            ])
    }

    @Test func wizardAsksForABudgetOnlyWithACloudProvider() throws {
        // No provider, or only local ones: no budget step.
        for providers in [
            ["providers.1.add": "no"],
            [
                "providers.1.add": "yes", "providers.1.kind": "llamacpp", "providers.1.base-url": "http://10.0.0.9:8080",
                "providers.1.models": "m",
            ],
        ] {
            var w = SetupWizard(tier: .small, hashPassword: F.hasher)
            let asked = Self.drive(&w, ["admin.ssh-key.1": F.ed25519].merging(providers) { _, new in new })
            #expect(!asked.contains { $0.step == .budget }, "\(providers)")
            #expect(try #require(w.result).config.budget == nil)
            #expect(w.finishedSteps.first { $0.step == .budget }?.answers == [])
        }
        // A cloud provider: daily and monthly caps, Enter for none; no cap, no further question.
        var (w, _) = Self.wizardAtRouting(tier: .small, Self.openAIOnly)
        Self.drive(&w, [:], until: .budget)
        var q = try #require(w.question)
        #expect(q.key == "budget.daily-usd" && q.prompt == "Daily cap in US dollars [none]: " && q.isSkippable)
        #expect(q.intro.first == "Step 7 of 10: Cloud budget")
        #expect(q.intro.joined(separator: " ").contains("local models cost nothing. Enter for no cap."), "\(q.intro)")
        for bad in ["-1", "two dollars", "1e3"] {
            #expect(w.answer(bad) == .invalid("\(Validators.quote(bad)) is not an amount; give US dollars such as 2 or 2.50"))
        }
        guard case .invalid(let big) = w.answer("2000000") else {
            Issue.record("a cap over the maximum was taken")
            return
        }
        #expect(big.contains("more than 1000000 dollars"))
        #expect(w.answer("") == .next)
        #expect(w.question?.key == "budget.monthly-usd" && w.question?.prompt == "Monthly cap in US dollars [none]: ")
        #expect(w.answer("") == .next)
        #expect(w.step == .channels)
        #expect(w.draft().config.budget == nil)

        // A cap: then what happens when it is reached, local by default.
        #expect(w.back() == true)
        #expect(w.answer("$25") == .next)
        q = try #require(w.question)
        #expect(q.key == "budget.when-exhausted" && q.prompt == "When a cap is reached: local or refuse [local]: ")
        #expect(q.intro.joined(separator: " ").contains("local: only local models answer until the day or month is over"))
        #expect(w.answer("cloud") == .invalid("answer local or refuse"))
        #expect(w.answer("") == .next)
        #expect(w.draft().config.budget == BudgetConfig(dailyUSD: nil, monthlyUSD: 25, warnAt: 0.8, whenExhausted: .local))
        Self.drive(&w, [:])
        let result = try #require(w.result).config
        #expect(result.budget == BudgetConfig(monthlyUSD: 25))
        #expect(try BoxConfig.parse(text: result.tomlText(), path: "box.toml").get() == result)
    }

    @Test func wizardChannelListOffersOnlyUnusedKinds() throws {
        var w = SetupWizard(tier: .none, hashPassword: F.hasher)
        Self.drive(&w, ["admin.ssh-key.1": F.ed25519, "providers.1.add": "no"], until: .channels)
        #expect(w.question?.prompt == "Add a chat channel: telegram, slack, discord, whatsapp or no [no]: ")
        #expect(w.answer("whatsapp") == .next)
        #expect(w.answer("106540352242922") == .next)
        guard case .invalid(let m) = w.answer("EAAtooShort") else {
            Issue.record("accepted")
            return
        }
        #expect(!m.contains("EAAtooShort"))
        #expect(w.answer(F.whatsApp) == .next)
        // The app secret is optional: without it the box only sends.
        #expect(w.question?.prompt == "WhatsApp app secret, for incoming messages (not shown) [send only]: ")
        #expect(w.answer("") == .next)
        #expect(w.question?.prompt == "WhatsApp owners: numbers with country code, digits only [none]: ")
        #expect(w.question?.intro.joined(separator: " ").contains("nobody until you pair with `aibox-agent pair whatsapp`") == true)
        #expect(w.answer("+4915112345678") == .invalid("\"+4915112345678\": leave out the '+'; a WhatsApp owner is the phone number with its country code, digits only, such as \"4915112345678\""))
        #expect(w.answer("4915112345678") == .next)
        #expect(w.question?.prompt == "Add another channel: telegram, slack, discord or no [no]: ")
        #expect(w.answer("whatsapp") == .invalid("whatsapp is already set up; answer telegram, slack, discord or no"))
        #expect(w.answer("discord") == .next)
        #expect(w.answer(F.discord) == .next)
        #expect(w.question?.key == "channels.2.owners")
        #expect(w.answer("") == .next)
        #expect(w.answer("") == .next)
        #expect(w.step == .updates)
        let config = w.draft().config
        #expect(
            config.channels
                == ChannelsConfig(discord: DiscordChannel(), whatsapp: WhatsAppChannel(phoneNumberId: "106540352242922", owners: ["4915112345678"])))
    }

    @Test func wizardTakesOwnersAndTheWebhookSecrets() throws {
        var w = SetupWizard(tier: .none, hashPassword: F.hasher)
        Self.drive(&w, ["admin.ssh-key.1": F.ed25519, "providers.1.add": "no"], until: .channels)
        #expect(w.answer("telegram") == .next)
        #expect(w.answer(F.telegram) == .next)
        #expect(w.question?.prompt == "Telegram owners: user ids, separated by spaces [none]: ")
        guard case .invalid(let m) = w.answer("@kitchen_owner") else {
            Issue.record("a user name was taken")
            return
        }
        #expect(m.contains("is a user name, which its owner can change"))
        #expect(w.answer("123456789, 987654321 123456789") == .next)
        #expect(w.answer("whatsapp") == .next)
        #expect(w.answer("106540352242922") == .next)
        #expect(w.answer(F.whatsApp) == .next)
        #expect(w.answer("0123456789abcdef0123456789ABCDEF") == .next)
        #expect(w.question?.key == "channels.2.verify-token" && w.question?.isSecret == true)
        #expect(w.answer("kitchen-webhook-7") == .next)
        #expect(w.answer("") == .next)
        #expect(w.answer("") == .next)
        let (config, secrets) = w.draft()
        #expect(config.channels.telegram == TelegramChannel(owners: ["123456789", "987654321"]))
        #expect(
            config.channels.whatsapp
                == WhatsAppChannel(
                    phoneNumberId: "106540352242922", appSecretSecret: "channel.whatsapp.app-secret",
                    verifyTokenSecret: "channel.whatsapp.verify-token"))
        #expect(secrets["channel.whatsapp.app-secret"] == Secret("0123456789abcdef0123456789abcdef"))
        #expect(secrets["channel.whatsapp.verify-token"] == Secret("kitchen-webhook-7"))
        #expect(try BoxConfig.parse(text: config.tomlText(), path: "box.toml").get() == config)
    }

    @Test func ownersAndBaseURLsInSeedsAndBoxToml() throws {
        let text = BadSeed.valid + """
            [channels.telegram]
            token = "\(F.telegram)"
            owners = ["123456789"]
            base-url = "http://127.0.0.1:8081"
            [channels.slack]
            bot-token = "\(F.slackBot)"
            app-token = "\(F.slackApp)"
            owners = ["T0123ABC:U0456DEF", "E0AAA111:W0BBB222"]
            [channels.discord]
            token = "\(F.discord)"
            owners = ["80351110224678912"]
            base-url = "https://discord.example.com/api/v10"
            [channels.whatsapp]
            phone-number-id = "106540352242922"
            access-token = "\(F.whatsApp)"
            app-secret = "0123456789abcdef0123456789abcdef"
            verify-token = "kitchen-webhook-7"
            owners = ["4915112345678"]

            """
        let (config, secrets) = try Self.seed(text).get()
        #expect(config.channels.telegram == TelegramChannel(owners: ["123456789"], baseURL: "http://127.0.0.1:8081"))
        #expect(config.channels.slack == SlackChannel(owners: ["T0123ABC:U0456DEF", "E0AAA111:W0BBB222"]))
        #expect(config.channels.discord == DiscordChannel(owners: ["80351110224678912"], baseURL: "https://discord.example.com/api/v10"))
        #expect(
            config.channels.whatsapp
                == WhatsAppChannel(
                    phoneNumberId: "106540352242922", appSecretSecret: "channel.whatsapp.app-secret",
                    verifyTokenSecret: "channel.whatsapp.verify-token", owners: ["4915112345678"]))
        #expect(Set(config.secretNames) == Set(secrets.keys))
        let toml = config.tomlText()
        #expect(toml.contains("owners = [\"T0123ABC:U0456DEF\", \"E0AAA111:W0BBB222\"]"))
        #expect(toml.contains("app-secret-secret = \"channel.whatsapp.app-secret\""))
        #expect(try BoxConfig.parse(text: toml, path: "box.toml").get() == config)
        #expect(config.summaryLines().joined().contains("1 owner"))
    }

    @Test(
        "owners and base URLs that are refused",
        arguments: [
            ("[channels.telegram]\ntoken = \"\(SetupFixtures.telegram)\"\nowners = [123456789]\n", "channels.telegram.owners", 6,
             "ids are strings in quotes"),
            ("[channels.telegram]\ntoken = \"\(SetupFixtures.telegram)\"\nowners = [\"-1001234\"]\n", "channels.telegram.owners", 6,
             "entry 1: \"-1001234\" is a group's or channel's id"),
            ("[channels.telegram]\ntoken = \"\(SetupFixtures.telegram)\"\nowners = [\"12\", \"12\"]\n", "channels.telegram.owners", 6,
             "entry 2 is \"12\" again; list each owner once"),
            ("[channels.slack]\nbot-token = \"\(SetupFixtures.slackBot)\"\napp-token = \"\(SetupFixtures.slackApp)\"\nowners = [\"U0456DEF\"]\n",
             "channels.slack.owners", 7, "is a member id alone; put the workspace id before it"),
            ("[channels.discord]\ntoken = \"\(SetupFixtures.discord)\"\nowners = [\"someone#1234\"]\n", "channels.discord.owners", 6,
             "is a user name"),
            ("[channels.whatsapp]\nphone-number-id = \"106540352242922\"\naccess-token = \"\(SetupFixtures.whatsApp)\"\nowners = [\"0049151\"]\n",
             "channels.whatsapp.owners", 7, "leave out the leading 00"),
            ("[channels.telegram]\ntoken = \"\(SetupFixtures.telegram)\"\nbase-url = \"http://telegram.example.com\"\n",
             "channels.telegram.base-url", 6, "a channel's API needs https (http only for 127.0.0.1 or localhost)"),
            ("[channels.whatsapp]\nphone-number-id = \"106540352242922\"\naccess-token = \"\(SetupFixtures.whatsApp)\"\napp-secret = \"short\"\n",
             "channels.whatsapp.app-secret", 7, "an app secret is 32 hex digits"),
        ])
    func refusedOwners(_ body: String, _ key: String, _ line: Int, _ fragment: String) {
        let errors = Self.seedErrors(BadSeed.valid + body)
        #expect(errors.count == 1, "\(errors)")
        #expect(errors.first?.key == key)
        #expect(errors.first?.line == line)
        #expect(errors.first?.message.contains(fragment) == true, "\(errors)")
        #expect(errors.first?.description.contains("/media/AIBOX/aibox-seed.toml") == true)
    }

    @Test func aTimeZoneThatIsNotInstalledIsRefusedWhenTheBoxCanTell() {
        let seed = Array("name = \"kitchen\"\ntimezone = \"Europe/Atlantis\"\n[admin]\nssh-keys = [\"\(F.ed25519)\"]\n".utf8)
        let installed: Validators.ZoneCheck = { $0 == "Europe/Berlin" }
        guard case .failure(let errors) = Seed.parse(bytes: seed, path: "s.toml", zoneExists: installed) else {
            Issue.record("an unknown zone was accepted")
            return
        }
        #expect(errors.error(at: "timezone")?.message.contains("no time zone \"Europe/Atlantis\" on this box") == true, "\(errors)")
        #expect(errors.error(at: "timezone")?.line == 2)
        // Without a way to tell (no zoneinfo), the shape is all that is checked.
        guard case .success = Seed.parse(bytes: seed, path: "s.toml") else {
            Issue.record("the shape alone should pass")
            return
        }
        var w = SetupWizard(tier: .none, hashPassword: F.hasher, zoneExists: installed)
        #expect(w.answer("kitchen") == .next)
        #expect(w.answer(F.ed25519) == .next)
        #expect(w.answer("") == .next)
        #expect(w.answer("") == .next)
        #expect(w.question?.key == "timezone")
        guard case .invalid(let m) = w.answer("Europe/Atlantis") else {
            Issue.record("the wizard took a zone that is not installed")
            return
        }
        #expect(m.contains("no /usr/share/zoneinfo/Europe/Atlantis"))
        #expect(w.answer("Europe/Berlin") == .next)
    }
}

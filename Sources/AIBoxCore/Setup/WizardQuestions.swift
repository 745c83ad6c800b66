// The first-boot wizard: the questions of each step, in order, with their checks and defaults.
// The state machine that asks them is SetupWizard (Wizard.swift).

extension SetupWizard {
    func currentSpec() -> Spec? {
        for step in SetupStep.allCases {
            if let spec = nextSpec(in: step) { return spec }
        }
        return nil
    }

    func nextSpec(in step: SetupStep) -> Spec? {
        switch step {
        case .name: return nameSpec()
        case .admin: return adminSpec()
        case .timezone: return timezoneSpec()
        case .network: return networkSpec()
        case .providers: return providersSpec()
        case .routing: return routingSpec()
        case .budget: return budgetSpec()
        case .channels: return channelsSpec()
        case .updates: return updatesSpec()
        case .summary: return answers[Key.confirm] == nil ? summarySpec() : nil
        }
    }

    static func textAnswer<T>(_ check: @escaping (String) -> Validated<T>) -> (String) -> Validated<Given> {
        { s in check(s).map { _ in .text(s) } }
    }

    static func secretAnswer(_ check: @escaping (String) -> Validated<Secret>) -> (String) -> Validated<Given> {
        { s in check(s).map { .secret($0) } }
    }

    /// Owner ids separated by spaces or commas, each checked by `check`; kept once each, space-separated.
    static func ownersAnswer(_ check: @escaping (String) -> Validated<String>) -> (String) -> Validated<Given> {
        { s in
            var ids: [String] = []
            for word in s.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init) {
                switch check(word) {
                case .success(let id): if !ids.contains(id) { ids.append(id) }
                case .failure(let e): return .failure(e)
                }
            }
            if ids.count > Validators.maxOwners { return Validators.fail("\(ids.count) owners; at most \(Validators.maxOwners)") }
            return ids.isEmpty ? Validators.fail("give owner ids, or Enter for none") : .success(.text(ids.joined(separator: " ")))
        }
    }

    static func yesNo(_ s: String) -> Validated<Given> { Validators.yesNo(s).map { .text($0 ? "yes" : "no") } }

    func nameSpec() -> Spec? {
        guard answers["name"] == nil else { return nil }
        var s = Spec(.name, "name", "Name of this box", accept: SetupWizard.textAnswer(Validators.hostname))
        s.intro = stepIntro(.name, "The box's name on your network: a-z, 0-9 and '-', such as kitchen-box.")
        s.fallback = .text(BoxConfig.defaultName)
        return s
    }

    func adminSpec() -> Spec? {
        var i = 1
        var keys: [String] = []
        while let k = text("admin.ssh-key.\(i)") {
            keys.append(k)
            i += 1
        }
        if answers["admin.ssh-key.\(i)"] == nil && i <= SetupWizard.maxSSHKeys {
            var s = Spec(
                .admin, "admin.ssh-key.\(i)", i == 1 ? "SSH public key for admin login" : "Another SSH public key",
                accept: { text in
                    Validators.sshPublicKey(text).flatMap { line in
                        keys.contains(line) ? Validators.fail("this key is already added") : .success(.text(line))
                    }
                })
            s.isSkippable = true
            if i == 1 {
                s.intro = stepIntro(
                    .admin, "Log in as admin with an SSH key (paste the one line of your .pub file),",
                    "a password, or both. The password is stored only as a hash.")
            } else {
                s.skipShown = "done"
            }
            return s
        }
        switch answers[Key.password] {
        case nil:
            var s = Spec(.admin, Key.password, "Admin password (not shown)", accept: SetupWizard.secretAnswer(Validators.password))
            s.isSecret = true
            s.trims = false
            s.isSkippable = !keys.isEmpty
            s.needed = "without an SSH key or a password nobody can log in; type a password, or back to add an SSH key"
            return s
        case .secret?:
            var s = Spec(.admin, Key.passwordAgain, "The same password again", accept: { _ in Validators.fail("") })
            s.isSecret = true
            s.trims = false
            s.needed = "type the same password again, or back to change it"
            return s
        default:
            return nil
        }
    }

    func timezoneSpec() -> Spec? {
        guard answers["timezone"] == nil else { return nil }
        var s = Spec(
            .timezone, "timezone", "Time zone, Area/City such as Europe/Berlin",
            accept: SetupWizard.textAnswer { [zoneExists] in Validators.timezone($0, exists: zoneExists) })
        s.intro = stepIntro(.timezone, "Used for the update window and the time agents see.")
        s.fallback = .text(BoxConfig.defaultTimezone)
        return s
    }

    func networkSpec() -> Spec? {
        if answers["network.wired"] == nil {
            var s = Spec(
                .network, "network.wired", "Wired network: dhcp or static",
                accept: { t in
                    let v = t.lowercased()
                    return v == "dhcp" || v == "static" ? .success(.text(v)) : Validators.fail("answer dhcp or static")
                })
            s.intro = stepIntro(.network, "The wired port takes its address by DHCP unless you give a static one.")
            s.fallback = .text("dhcp")
            return s
        }
        if text("network.wired") == "static" {
            guard let addressText = text("network.address"), let address = IPAddress(addressText) else {
                return Spec(
                    .network, "network.address", "IP address of this box, such as 192.168.1.50",
                    accept: SetupWizard.textAnswer(Validators.ipAddress))
            }
            guard let prefixText = text("network.prefix"), let prefix = Int(prefixText) else {
                var s = Spec(
                    .network, "network.prefix", "Prefix length",
                    accept: { t in
                        guard let n = Int(t) else {
                            return Validators.fail("\(Validators.quote(t)) is not a number; give the prefix length, such as 24")
                        }
                        return Validators.prefixLength(n, for: address).map { .text(String($0)) }
                    })
                s.fallback = .text(address.isIPv4 ? "24" : "64")
                return s
            }
            if answers["network.gateway"] == nil {
                var s = Spec(
                    .network, "network.gateway", "Gateway (router) address",
                    accept: { t in Validators.gateway(t, address: address, prefix: prefix).map { .text($0.description) } })
                s.isSkippable = true
                s.skipShown = "none"
                s.resets = ["network.dns"]
                return s
            }
            if answers["network.dns"] == nil {
                var s = Spec(
                    .network, "network.dns", "DNS servers, separated by spaces",
                    accept: { t in
                        let list = t.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
                        if list.count > SetupFileReader.maxDNS {
                            return Validators.fail("\(list.count) servers; at most \(SetupFileReader.maxDNS)")
                        }
                        for d in list { if case .failure(let e) = Validators.ipAddress(d) { return .failure(e) } }
                        return .success(.text(list.joined(separator: " ")))
                    })
                if let g = text("network.gateway") { s.fallback = .text(g) }
                s.isSkippable = true
                s.skipShown = "none"
                return s
            }
        }
        if answers["network.wifi"] == nil {
            var s = Spec(.network, "network.wifi", "Set up Wi-Fi?", accept: SetupWizard.yesNo)
            s.fallback = .text("no")
            return s
        }
        guard text("network.wifi") == "yes" else { return nil }
        if answers["network.wifi.ssid"] == nil {
            return Spec(.network, "network.wifi.ssid", "Wi-Fi network name (SSID)", accept: SetupWizard.textAnswer(Validators.ssid))
        }
        if answers["network.wifi.passphrase"] == nil {
            var s = Spec(
                .network, "network.wifi.passphrase", "Wi-Fi passphrase (not shown)",
                accept: SetupWizard.secretAnswer(Validators.wifiPassphrase))
            s.isSecret = true
            s.trims = false
            s.isSkippable = true
            s.skipShown = "open network"
            s.secretName = SecretName.wifiPassphrase
            return s
        }
        if answers["network.wifi.country"] == nil {
            return Spec(
                .network, "network.wifi.country", "Wi-Fi country, two letters such as DE or US",
                accept: { t in Validators.country(t.uppercased()).map { .text($0) } })
        }
        return nil
    }

    func providersSpec() -> Spec? {
        var names: [String] = []
        var i = 1
        while i <= SetupWizard.maxProviders {
            let base = "providers.\(i)"
            guard let add = text("\(base).add") else {
                var s = Spec(
                    .providers, "\(base).add",
                    i == 1 ? "Add an LLM provider (a cloud API or a server on your network)?" : "Add another LLM provider?",
                    accept: SetupWizard.yesNo)
                s.fallback = .text(i == 1 && tier == .none ? "yes" : "no")
                if i == 1 {
                    // What chat will use is said at the routing step, once the providers are known.
                    s.intro =
                        stepIntro(.providers)
                        + wrap(
                            LocalModel.model(for: tier).map {
                                "This box can run \($0) itself (llama.cpp). Add a cloud API for harder questions and as a "
                                    + "fallback, or a server on your network; the next step shows what chat will use."
                            } ?? "This box cannot run a model itself: add a provider for the agents to use.", width: 80)
                }
                return s
            }
            guard add == "yes" else { return nil }
            guard let kind = text("\(base).kind").flatMap(ProviderKind.init) else {
                var s = Spec(
                    .providers, "\(base).kind", "Kind: openai, anthropic, ollama or llamacpp",
                    accept: { t in
                        ProviderKind(rawValue: t.lowercased()).map { .success(.text($0.rawValue)) }
                            ?? Validators.fail("answer openai (also for OpenAI-compatible servers), anthropic, ollama or llamacpp")
                    })
                s.fallback = .text(ProviderKind.openai.rawValue)
                s.resets = ["\(base).name", "\(base).base-url", "\(base).api-key", "\(base).models"]
                return s
            }
            guard let name = text("\(base).name") else {
                let taken = names
                var s = Spec(
                    .providers, "\(base).name", "Name for this provider",
                    accept: { t in
                        Validators.providerName(t).flatMap { n in
                            taken.contains(n) ? Validators.fail("\(Validators.quote(n)) is taken; choose another name") : .success(.text(n))
                        }
                    })
                var fallback = kind.rawValue
                var n = 2
                while taken.contains(fallback) {
                    fallback = "\(kind.rawValue)-\(n)"
                    n += 1
                }
                s.fallback = .text(fallback)
                s.resets = ["\(base).api-key"]
                return s
            }
            guard let url = text("\(base).base-url") else {
                var s = Spec(.providers, "\(base).base-url", "Base URL", accept: SetupWizard.textAnswer(Validators.url))
                s.fallback = .text(kind.defaultBaseURL)
                return s
            }
            if answers["\(base).api-key"] == nil {
                // Over plain http to another machine (a local server on the network) a key would cross in clear.
                let clear: Bool = { if case .failure = Validators.providerURL(url) { return true } else { return false } }()
                var s = Spec(
                    .providers, "\(base).api-key", "API key (not shown)",
                    accept: SetupWizard.secretAnswer { key in
                        clear ? Validators.fail("this server is reached over plain http: a key would cross the network in clear; press Enter for none, or give an https URL") : Validators.apiKey(key)
                    })
                s.isSecret = true
                s.isSkippable = !kind.requiresAPIKey(baseURL: url)
                s.skipShown = "none"
                s.secretName = SecretName.providerAPIKey(name)
                s.needed = "this API needs a key; paste it (it is not shown)"
                return s
            }
            guard text("\(base).models") != nil else {
                var s = Spec(
                    .providers, "\(base).models", "Models, separated by spaces",
                    accept: { t in
                        Validators.modelList(t.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)).map {
                            .text($0.joined(separator: " "))
                        }
                    })
                switch kind {
                case .openai: s.fallback = .text("gpt-4o-mini")
                case .anthropic: s.fallback = .text("claude-3-5-haiku-latest")
                case .ollama: s.fallback = .text("llama3.1:8b")
                case .llamacpp: break
                }
                return s
            }
            names.append(name)
            i += 1
        }
        return nil
    }

    func routingSpec() -> Spec? {
        var providers = draftProviders()
        guard let preview = BoxConfig.defaultChatChain(providers: providers, tier: tier) else { return nil }
        // The box's own model is offered; it is written only if a route uses it (`draft`).
        if let p = preview.adding { providers.append(p) }
        let chat = preview.chain.map(\.description).joined(separator: " ")
        let choices = providers.flatMap { p in p.models.map { "\(p.name)/\($0)" } }
        let known = providers
        let accept: (String) -> Validated<Given> = { t in
            let words = t.split(whereSeparator: { $0 == " " || $0 == "," })
            if words.count > BoxConfig.maxChainLength {
                return Validators.fail("\(words.count) routes; a chain has at most \(BoxConfig.maxChainLength)")
            }
            var chain: [Route] = []
            for word in words {
                guard let r = SetupWizard.route(String(word)) else {
                    return Validators.fail("give provider/model, such as \(preview.chain[0]); choices: \(choices.joined(separator: " "))")
                }
                guard let p = known.first(where: { $0.name == r.provider }) else {
                    return Validators.fail(
                        "\(Validators.quote(r.provider)) is not a provider; providers are \(known.map(\.name).joined(separator: ", "))")
                }
                guard p.models.contains(r.model) else {
                    return Validators.fail(
                        "\(Validators.quote(r.model)) is not a model of \(p.name); its models are \(p.models.joined(separator: ", "))")
                }
                chain.append(r)
            }
            return Validators.routeChain(chain).map { .text($0.map(\.description).joined(separator: " ")) }
        }
        if answers["routing.chat"] == nil {
            var s = Spec(.routing, "routing.chat", "Models for chat", accept: accept)
            // Says exactly what Enter writes.
            let described = preview.chain.map { r in
                preview.adding?.name == r.provider ? "\(r.model) on this box (provider \(r.provider), llama.cpp)" : r.description
            }
            var said = "Enter gives chat " + described.joined(separator: ", then ") + "."
            if preview.adding == nil, let own = LocalModel.model(for: tier), let first = preview.chain.first,
                known.first(where: { $0.name == first.provider })?.kind.isLocal == true
            {
                said += " This box will not run \(own) itself: the server you added comes first."
            }
            s.intro =
                stepIntro(.routing)
                + wrap(
                    "Each role gets one or more provider/model, separated by spaces: the first is tried first, the next "
                        + "when the one before fails. Code and reasoning use chat's unless set.", width: 80)
                + wrap(said, width: 80) + wrap("Choices: " + choices.joined(separator: " "), width: 80)
            s.fallback = .text(chat)
            return s
        }
        for role in [LLMRole.code, .reasoning] where answers["routing.\(role.rawValue)"] == nil {
            var s = Spec(.routing, "routing.\(role.rawValue)", "Models for \(role.rawValue)", accept: accept)
            s.isSkippable = true
            s.skipShown = "as chat"
            return s
        }
        return nil
    }

    /// Asked only when a cloud provider is configured: local models cost nothing.
    func budgetSpec() -> Spec? {
        guard draftProviders().contains(where: { !$0.kind.isLocal }) else { return nil }
        let usd: (String) -> Validated<Given> = { t in
            Validators.usd(t).map { _ in .text(t.hasPrefix("$") ? String(t.dropFirst()) : t) }
        }
        if answers["budget.daily-usd"] == nil {
            var s = Spec(.budget, "budget.daily-usd", "Daily cap in US dollars", accept: usd)
            s.intro =
                stepIntro(.budget)
                + wrap(
                    "Caps on what cloud models may cost a day and a month, in the box's time zone; local models cost "
                        + "nothing. Enter for no cap.", width: 80)
            s.isSkippable = true
            s.skipShown = "none"
            return s
        }
        if answers["budget.monthly-usd"] == nil {
            var s = Spec(.budget, "budget.monthly-usd", "Monthly cap in US dollars", accept: usd)
            s.isSkippable = true
            s.skipShown = "none"
            return s
        }
        guard text("budget.daily-usd") != nil || text("budget.monthly-usd") != nil else { return nil }
        if answers["budget.when-exhausted"] == nil {
            let names = BudgetExhaustion.allCases.map(\.rawValue)
            var s = Spec(
                .budget, "budget.when-exhausted", "When a cap is reached: local or refuse",
                accept: { t in
                    BudgetExhaustion(rawValue: t.lowercased()).map { .success(.text($0.rawValue)) }
                        ?? Validators.fail("answer \(names.joined(separator: " or "))")
                })
            s.intro = wrap(
                "local: only local models answer until the day or month is over; refuse: no answers but a notice "
                    + "that the budget is spent.", width: 80)
            s.fallback = .text(BudgetExhaustion.local.rawValue)
            return s
        }
        return nil
    }

    func channelsSpec() -> Spec? {
        var used: [String] = []
        var i = 1
        while true {
            let base = "channels.\(i)"
            let left = SetupWizard.channelKinds.filter { !used.contains($0) }
            guard let kind = text("\(base).add") else {
                guard !left.isEmpty else { return nil }
                let taken = used
                var s = Spec(
                    .channels, "\(base).add",
                    (i == 1 ? "Add a chat channel: " : "Add another channel: ") + left.joined(separator: ", ") + " or no",
                    accept: { t in
                        let v = t.lowercased()
                        if v == "no" || v == "n" { return .success(.text("no")) }
                        if taken.contains(v) {
                            return Validators.fail("\(v) is already set up; answer \(left.joined(separator: ", ")) or no")
                        }
                        return left.contains(v) ? .success(.text(v)) : Validators.fail("answer \(left.joined(separator: ", ")) or no")
                    })
                s.fallback = .text("no")
                s.resets = [base + "."]
                if i == 1 {
                    s.intro = stepIntro(.channels, "Command the box from a chat app. Tokens are stored as secrets, never shown.")
                }
                return s
            }
            guard kind != "no" else { return nil }
            func secretSpec(_ key: String, _ text: String, _ name: String, _ check: @escaping (String) -> Validated<Secret>) -> Spec {
                var s = Spec(.channels, "\(base).\(key)", text, accept: SetupWizard.secretAnswer(check))
                s.isSecret = true
                s.secretName = name
                s.needed = "the token is needed; paste it (it is not shown), or back to go back"
                return s
            }
            switch kind {
            case "telegram":
                if answers["\(base).token"] == nil {
                    return secretSpec(
                        "token", "Telegram bot token from @BotFather (not shown)", SecretName.telegramToken, Validators.telegramBotToken)
                }
            case "slack":
                if answers["\(base).bot-token"] == nil {
                    return secretSpec(
                        "bot-token", "Slack bot token, xoxb-… (not shown)", SecretName.slackBotToken, Validators.slackBotToken)
                }
                if answers["\(base).app-token"] == nil {
                    return secretSpec(
                        "app-token", "Slack app-level token, xapp-… (not shown)", SecretName.slackAppToken, Validators.slackAppToken)
                }
            case "discord":
                if answers["\(base).token"] == nil {
                    return secretSpec("token", "Discord bot token (not shown)", SecretName.discordToken, Validators.discordBotToken)
                }
            default:  // whatsapp
                if answers["\(base).phone-number-id"] == nil {
                    return Spec(
                        .channels, "\(base).phone-number-id", "WhatsApp phone number ID (WhatsApp, API Setup)",
                        accept: SetupWizard.textAnswer(Validators.whatsAppPhoneNumberId))
                }
                if answers["\(base).access-token"] == nil {
                    return secretSpec(
                        "access-token", "WhatsApp access token, EAA… (not shown)", SecretName.whatsAppAccessToken,
                        Validators.whatsAppAccessToken)
                }
                if answers["\(base).app-secret"] == nil {
                    var s = secretSpec(
                        "app-secret", "WhatsApp app secret, for incoming messages (not shown)", SecretName.whatsAppAppSecret,
                        Validators.whatsAppAppSecret)
                    s.intro = wrap(
                        "Messages reach the box through a webhook it serves, signed with the app secret "
                            + "(App settings, Basic). Without it the box only sends.", width: 80)
                    s.isSkippable = true
                    s.skipShown = "send only"
                    return s
                }
                if isSecretGiven("\(base).app-secret") && answers["\(base).verify-token"] == nil {
                    return secretSpec(
                        "verify-token", "Webhook verify token, as typed in Meta's webhook settings", SecretName.whatsAppVerifyToken,
                        Validators.whatsAppVerifyToken)
                }
            }
            if answers["\(base).owners"] == nil {
                let (prompt, check): (String, (String) -> Validated<String>)
                switch kind {
                case "telegram": (prompt, check) = ("Telegram owners: user ids, separated by spaces", Validators.telegramUserId)
                case "slack": (prompt, check) = ("Slack owners: TEAM:USER ids, separated by spaces", Validators.slackMember)
                case "discord": (prompt, check) = ("Discord owners: user ids, separated by spaces", Validators.discordUserId)
                default: (prompt, check) = ("WhatsApp owners: numbers with country code, digits only", Validators.whatsAppNumber)
                }
                var s = Spec(.channels, "\(base).owners", prompt, accept: SetupWizard.ownersAnswer(check))
                s.intro = wrap(
                    "Only owners may use the box here; strangers get no answer. None: nobody until you pair "
                        + "with `aibox-agent pair \(kind)` on the box's console.", width: 80)
                s.isSkippable = true
                s.skipShown = "none"
                return s
            }
            used.append(kind)
            i += 1
        }
    }

    func updatesSpec() -> Spec? {
        if answers["updates.channel"] == nil {
            var s = Spec(
                .updates, "updates.channel", "Update channel: stable or beta",
                accept: { t in
                    UpdateChannel(rawValue: t.lowercased()).map { .success(.text($0.rawValue)) } ?? Validators.fail("answer stable or beta")
                })
            s.intro = stepIntro(.updates, "Signed updates are installed to the inactive slot; a bad one rolls back.")
            s.fallback = .text(UpdateChannel.stable.rawValue)
            return s
        }
        if answers["updates.feed-url"] == nil {
            var s = Spec(.updates, "updates.feed-url", "Update feed URL", accept: SetupWizard.textAnswer(Validators.feedURL))
            s.isSkippable = true
            s.skipShown = "built-in"
            return s
        }
        if answers["updates.automatic"] == nil {
            var s = Spec(.updates, "updates.automatic", "Install updates automatically?", accept: SetupWizard.yesNo)
            s.fallback = .text("yes")
            return s
        }
        if text("updates.automatic") == "yes" && answers["updates.window"] == nil {
            var s = Spec(
                .updates, "updates.window", "Install window, HH:MM-HH:MM local time",
                accept: SetupWizard.textAnswer(Validators.maintenanceWindow))
            s.fallback = .text(MaintenanceWindow.defaultWindow.description)
            return s
        }
        return nil
    }

    func summarySpec() -> Spec {
        var s = Spec(.summary, Key.confirm, "Write this configuration?", accept: { _ in .success(.text("yes")) })
        let steps = SetupStep.allCases.filter { $0 != .summary }.map(\.rawValue).joined(separator: ", ")
        s.intro =
            stepIntro(.summary) + draft().config.summaryLines(width: 80)
            + ["", "Answer yes to write it, or the step to change:"] + wrap(steps + ".", width: 80)
        s.fallback = .text("yes")
        return s
    }
}

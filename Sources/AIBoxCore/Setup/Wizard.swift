/// The first-boot wizard (issue 4) as a pure state machine, driven by strings: the caller
/// shows `question` (its intro lines, then its prompt; no echo when `isSecret`), reads a line
/// and passes it to `answer(_:)`. An empty line takes the default shown in brackets (or skips
/// a skippable question); `back` (or `<`) goes back one question. When the summary is confirmed,
/// `result` holds the same `(BoxConfig, secrets)` a seed gives.
///
/// Resuming after a power cut: `finishedSteps` are the answers of each finished step (secrets
/// by name only, the admin password as its hash) for the caller to journal, together with
/// `secrets` (whose values belong in the secrets directory, not the journal).
/// `init(tier:hashPassword:resuming:secrets:)` replays them and starts at the first
/// unfinished step; every journaled answer stays the default of its question.

/// The wizard's steps, in order.
public enum SetupStep: String, Sendable, CaseIterable, Codable, Comparable {
    case name, admin, timezone, network, providers, routing, channels, updates, summary

    public var number: Int { (SetupStep.allCases.firstIndex(of: self) ?? 0) + 1 }

    public var title: String {
        switch self {
        case .name: return "Name"
        case .admin: return "Admin access"
        case .timezone: return "Time zone"
        case .network: return "Network"
        case .providers: return "LLM providers"
        case .routing: return "Routing"
        case .channels: return "Chat channels"
        case .updates: return "Updates"
        case .summary: return "Summary"
        }
    }

    public static func < (a: SetupStep, b: SetupStep) -> Bool { a.number < b.number }
}

/// One question as the terminal shows it.
public struct WizardQuestion: Equatable, Sendable {
    public var step: SetupStep
    /// A stable id such as `providers.2.kind`: journals and tests name questions by it.
    public var key: String
    /// Lines to show before the prompt (a step's title and hints, the summary), each at most 80 columns.
    public var intro: [String]
    /// One line of at most 80 columns, the default in brackets: `Time zone … [UTC]: `.
    public var prompt: String
    /// What an empty answer gives, as shown (`••••` for a secret already given); nil when
    /// an empty answer skips the question or is refused.
    public var defaultAnswer: String?
    /// Read the answer without echo.
    public var isSecret: Bool
    /// An empty answer (without a default) skips the question.
    public var isSkippable: Bool
}

/// What `answer(_:)` did.
public enum WizardReply: Equatable, Sendable {
    /// Accepted (or went back): show `question` now.
    case next
    /// Refused, with what is wrong and what would be right; `question` is asked again
    /// (for a mistyped password confirmation: the password question).
    case invalid(String)
    /// The summary is confirmed: `result` is ready.
    case finished
}

/// One journaled answer. Secret values are not in it: a secret answer is its name.
public struct WizardAnswer: Codable, Equatable, Sendable {
    public enum Value: Codable, Equatable, Sendable {
        case text(String)
        case skipped
        /// The value is in the secrets the caller stores (`SetupWizard.secrets`).
        case secret(name: String)
        /// The admin password, hashed: the password itself is never kept.
        case passwordHash(String)
    }

    public var key: String
    public var value: Value

    public init(key: String, value: Value) {
        self.key = key
        self.value = value
    }
}

/// The answers of one finished step, in the order they were given.
public struct WizardStepRecord: Codable, Equatable, Sendable {
    public var step: SetupStep
    public var answers: [WizardAnswer]

    public init(step: SetupStep, answers: [WizardAnswer]) {
        self.step = step
        self.answers = answers
    }
}

public struct SetupWizard: Sendable {
    /// An answer of just one of these (any case) goes back one question: `back` as the
    /// owner would type it, `<` for short. (No box name, model or token is either.)
    public static let backCommands: Set<String> = ["back", "<"]
    /// Hashes the admin password with crypt(3) and a fresh salt (I/O: the caller's); nil if it cannot.
    public typealias PasswordHasher = @Sendable (Secret) -> String?

    public let tier: LocalLLMTier
    private let hashPassword: PasswordHasher
    private let zoneExists: Validators.ZoneCheck?
    /// The answers given, by question key.
    private var answers: [String: Given] = [:]
    /// The questions answered, in order: what `back` undoes.
    private var transcript: [Entry] = []
    /// Answers undone by `back`, a summary change or a resume: the defaults of their questions.
    private var remembered: [String: Given] = [:]

    /// `tier` decides the local model offered for chat; `hashPassword` hashes the admin password.
    /// `zoneExists`, when given, checks that the time zone answered is installed.
    public init(tier: LocalLLMTier, hashPassword: @escaping PasswordHasher, zoneExists: Validators.ZoneCheck? = nil) {
        self.tier = tier
        self.hashPassword = hashPassword
        self.zoneExists = zoneExists
    }

    /// Resumes from journaled steps: replays them in order through the same checks as typed
    /// answers, and stops at the first step that does not replay (changed, or a secret
    /// missing from `secrets`), which is then asked again. Every journaled answer is the
    /// default of its question.
    public init(
        tier: LocalLLMTier, hashPassword: @escaping PasswordHasher, zoneExists: Validators.ZoneCheck? = nil,
        resuming records: [WizardStepRecord], secrets: [String: Secret]
    ) {
        self.init(tier: tier, hashPassword: hashPassword, zoneExists: zoneExists)
        for record in records {
            for a in record.answers { remembered[a.key] = given(a.value, secrets: secrets) ?? remembered[a.key] }
        }
        for record in records {
            guard let current = currentSpec()?.step else { break }
            if record.step < current { continue }  // a step without questions here
            guard record.step == current else { break }
            let mark = transcript.count
            var replayed = true
            for a in record.answers {
                guard let spec = currentSpec(), spec.step == record.step, spec.key == a.key,
                    let g = given(a.value, secrets: secrets), case .success(let v) = validate(g, for: spec)
                else {
                    replayed = false
                    break
                }
                store(v, for: spec)
            }
            if !replayed || currentSpec()?.step == record.step {
                while transcript.count > mark { undoLast() }
                break
            }
        }
    }

    // MARK: Asking

    /// The question to ask now; nil once the summary is confirmed.
    public var question: WizardQuestion? { currentSpec().map(render) }

    /// The step being asked; nil once the summary is confirmed.
    public var step: SetupStep? { currentSpec()?.step }

    public var isFinished: Bool { currentSpec() == nil }

    /// Takes one line typed at the question.
    public mutating func answer(_ input: String) -> WizardReply {
        guard let spec = currentSpec() else { return .finished }
        let text = spec.trims ? input.trimmingSpaces() : input.strippingLineEnd()
        if SetupWizard.backCommands.contains(text.lowercased()) {
            return back() ? .next : .invalid("this is the first question; there is nothing to go back to")
        }
        let given: Given
        if text.isEmpty {
            if let d = effectiveDefault(spec) {
                given = d
            } else if spec.isSkippable {
                given = .skipped
            } else {
                return .invalid(spec.needed)
            }
        } else {
            given = spec.isSecret ? .secret(Secret(text)) : .text(text)
        }
        switch spec.key {
        case Key.passwordAgain: return confirmPassword(given)
        case Key.confirm: return confirmSummary(given)
        default: break
        }
        switch validate(given, for: spec) {
        case .failure(let e): return .invalid(e.message)
        case .success(let v): store(v, for: spec)
        }
        return isFinished ? .finished : .next
    }

    /// Goes back one question (into the previous step from a step's first question); the
    /// answer given there becomes its default. False at the first question.
    @discardableResult
    public mutating func back() -> Bool {
        guard !transcript.isEmpty else { return false }
        undoLast()
        return true
    }

    // MARK: Results

    /// The answers of each finished step, for the journal. Secrets appear by name only.
    public var finishedSteps: [WizardStepRecord] {
        let current = currentSpec()?.step
        return SetupStep.allCases.filter { step in current.map { step < $0 } ?? true }.map { step in
            WizardStepRecord(step: step, answers: transcript.filter { $0.step == step }.compactMap(exported))
        }
    }

    /// The secret answers given so far, by secret name (`provider.openai.api-key`).
    public var secrets: [String: Secret] {
        var out: [String: Secret] = [:]
        for e in transcript {
            if let name = e.secretName, case .secret(let s)? = answers[e.key] { out[name] = s }
        }
        return out
    }

    /// The configuration and its secrets, once the summary is confirmed.
    public var result: (config: BoxConfig, secrets: [String: Secret])? { isFinished ? draft() : nil }

    /// The configuration from the answers so far (defaults where none was given yet).
    public func draft() -> (config: BoxConfig, secrets: [String: Secret]) {
        var c = BoxConfig(admin: AdminAccess())
        c.name = text("name") ?? BoxConfig.defaultName
        var i = 1
        while let key = text("admin.ssh-key.\(i)") {
            c.admin.sshKeys.append(key)
            i += 1
        }
        if case .passwordHash(let h)? = answers[Key.password] { c.admin.passwordHash = h }
        c.timezone = text("timezone") ?? BoxConfig.defaultTimezone
        if text("network.wired") == "static", let address = text("network.address") {
            c.network.wired = .static(
                StaticAddress(
                    address: address, prefix: text("network.prefix").flatMap { Int($0) } ?? 24, gateway: text("network.gateway"),
                    dns: text("network.dns").map { $0.split(separator: " ").map(String.init) } ?? []))
        }
        if text("network.wifi") == "yes", let ssid = text("network.wifi.ssid"), let country = text("network.wifi.country") {
            let passphrase: String? = isSecretGiven("network.wifi.passphrase") ? SecretName.wifiPassphrase : nil
            c.network.wifi = WifiConfig(ssid: ssid, passphraseSecret: passphrase, country: country)
        }
        c.providers = draftProviders()
        let preview = BoxConfig.defaultChatRoute(providers: c.providers, tier: tier)
        if let chat = text("routing.chat") {
            if let preview, chat == preview.route.description {
                if let p = preview.adding { c.providers.append(p) }
                c.routing[.chat] = preview.route
            } else {
                c.routing[.chat] = SetupWizard.route(chat)
            }
        }
        for role in [LLMRole.code, .reasoning] {
            if let r = text("routing.\(role.rawValue)").flatMap(SetupWizard.route) { c.routing[role] = r }
        }
        for (n, kind) in draftChannelKinds().enumerated() {
            let base = "channels.\(n + 1)"
            switch kind {
            case "telegram" where isSecretGiven("\(base).token"): c.channels.telegram = TelegramChannel()
            case "slack" where isSecretGiven("\(base).bot-token") && isSecretGiven("\(base).app-token"):
                c.channels.slack = SlackChannel()
            case "discord" where isSecretGiven("\(base).token"): c.channels.discord = DiscordChannel()
            case "whatsapp" where isSecretGiven("\(base).access-token"):
                if let id = text("\(base).phone-number-id") { c.channels.whatsapp = WhatsAppChannel(phoneNumberId: id) }
            default: break
            }
        }
        if let ch = text("updates.channel").flatMap(UpdateChannel.init) { c.updates.channel = ch }
        c.updates.feedURL = text("updates.feed-url")
        c.updates.automatic = text("updates.automatic").map { $0 == "yes" } ?? true
        if let w = text("updates.window").flatMap(MaintenanceWindow.init) { c.updates.window = w }
        let names = Set(c.secretNames)
        return (c, secrets.filter { names.contains($0.key) })
    }

    // MARK: - Internals

    /// An answer as held in memory.
    enum Given: Equatable, Sendable {
        case text(String)
        case secret(Secret)
        case skipped
        case passwordHash(String)
    }

    struct Entry: Sendable {
        var step: SetupStep
        var key: String
        var secretName: String?
    }

    enum Key {
        static let password = "admin.password"
        static let passwordAgain = "admin.password-again"
        static let confirm = "summary.confirm"
    }

    static let maxProviders = SetupFileReader.maxProviders
    static let maxSSHKeys = SetupFileReader.maxSSHKeys
    static let channelKinds = ["telegram", "slack", "discord", "whatsapp"]

    /// A question with what it needs to check its answers.
    struct Spec {
        var step: SetupStep
        var key: String
        var text: String
        var intro: [String] = []
        /// The default when no remembered answer applies.
        var fallback: Given?
        var isSecret = false
        var isSkippable = false
        /// Shown in brackets for a skippable question without a default.
        var skipShown = "skip"
        /// Trim blanks around the answer (not for passwords and passphrases).
        var trims = true
        var secretName: String?
        /// Remembered answers under these key prefixes are forgotten when this answer changes.
        var resets: [String] = []
        /// Said when an empty answer has no default and may not be skipped.
        var needed = "an answer is needed here"
        /// Checks a non-empty answer (a secret's value for secret questions) and normalises it.
        var accept: (String) -> Validated<Given>

        init(_ step: SetupStep, _ key: String, _ text: String, accept: @escaping (String) -> Validated<Given>) {
            self.step = step
            self.key = key
            self.text = text
            self.accept = accept
        }
    }

    private func given(_ value: WizardAnswer.Value, secrets: [String: Secret]) -> Given? {
        switch value {
        case .text(let t): return .text(t)
        case .skipped: return .skipped
        case .passwordHash(let h): return .passwordHash(h)
        case .secret(let name): return secrets[name].map { .secret($0) }
        }
    }

    private func exported(_ e: Entry) -> WizardAnswer? {
        switch answers[e.key] {
        case .text(let t)?: return WizardAnswer(key: e.key, value: .text(t))
        case .skipped?: return WizardAnswer(key: e.key, value: .skipped)
        case .passwordHash(let h)?: return WizardAnswer(key: e.key, value: .passwordHash(h))
        case .secret?: return e.secretName.map { WizardAnswer(key: e.key, value: .secret(name: $0)) }
        case nil: return nil
        }
    }

    private func validate(_ g: Given, for spec: Spec) -> Validated<Given> {
        switch g {
        case .skipped:
            return spec.isSkippable ? .success(.skipped) : Validators.fail(spec.needed)
        case .text(let t):
            return spec.isSecret ? Validators.fail(spec.needed) : spec.accept(t)
        case .secret(let s):
            return spec.isSecret ? spec.accept(s.reveal()) : Validators.fail(spec.needed)
        case .passwordHash(let h):
            return spec.key == Key.password ? Validators.passwordHash(h).map { .passwordHash($0) } : Validators.fail(spec.needed)
        }
    }

    /// The remembered answer if it is still valid here, else the question's own default.
    private func effectiveDefault(_ spec: Spec) -> Given? {
        if let r = remembered[spec.key], case .success(let v) = validate(r, for: spec) { return v }
        return spec.fallback
    }

    private mutating func store(_ g: Given, for spec: Spec) {
        if let old = remembered.removeValue(forKey: spec.key), old != g {
            for key in remembered.keys where spec.resets.contains(where: { key.hasPrefix($0) }) { remembered[key] = nil }
        }
        answers[spec.key] = g
        transcript.append(Entry(step: spec.step, key: spec.key, secretName: spec.secretName))
    }

    private mutating func undoLast() {
        guard let last = transcript.popLast() else { return }
        if let g = answers.removeValue(forKey: last.key) { remembered[last.key] = g }
    }

    private mutating func confirmPassword(_ g: Given) -> WizardReply {
        guard case .secret(let again) = g, case .secret(let first)? = answers[Key.password] else {
            return .invalid("type the same password again, or back to change it")
        }
        func restart(_ message: String) -> WizardReply {
            transcript.removeAll { $0.key == Key.password }
            answers[Key.password] = nil
            remembered[Key.password] = nil
            return .invalid(message)
        }
        guard again == first else { return restart("the two passwords differ; type the new password again") }
        guard let hash = hashPassword(first), case .success = Validators.passwordHash(hash) else {
            return restart("the password could not be hashed on this box; use an SSH key instead (back to go back)")
        }
        answers[Key.password] = .passwordHash(hash)
        return .next
    }

    private mutating func confirmSummary(_ g: Given) -> WizardReply {
        let steps = SetupStep.allCases.filter { $0 != .summary }.map(\.rawValue)
        guard case .text(let t) = g else { return .invalid("answer yes") }
        let a = t.lowercased()
        if a == "yes" || a == "y" {
            answers[Key.confirm] = .text("yes")
            transcript.append(Entry(step: .summary, key: Key.confirm))
            return .finished
        }
        if let step = SetupStep(rawValue: a), step != .summary {
            // The step is asked again, and the ones after it, each answer as its default.
            while let last = transcript.last, last.step >= step { undoLast() }
            return .next
        }
        return .invalid("answer yes to write this configuration, or the step to change: \(steps.joined(separator: ", "))")
    }

    private func render(_ spec: Spec) -> WizardQuestion {
        let d = effectiveDefault(spec)
        let shown: String? = d.map { g in
            switch g {
            case .text(let t): return t
            case .secret, .passwordHash: return Secret.masked
            case .skipped: return spec.skipShown
            }
        }
        var prompt = spec.text
        if let bracket = shown ?? (spec.isSkippable ? spec.skipShown : nil) {
            prompt += " [" + fitColumns(bracket, width: max(12, 80 - prompt.count - 5)) + "]"
        }
        prompt = fitColumns(prompt, width: 78) + ": "
        return WizardQuestion(
            step: spec.step, key: spec.key, intro: spec.intro.map { fitColumns($0, width: 80) }, prompt: prompt, defaultAnswer: shown,
            isSecret: spec.isSecret, isSkippable: spec.isSkippable)
    }

    private func stepIntro(_ step: SetupStep, _ lines: String...) -> [String] {
        var intro: [String] = []
        if step == .name {
            intro += ["AI Box setup. Enter takes the [default]; type back to go back a question.", ""]
        }
        return intro + ["Step \(step.number) of \(SetupStep.allCases.count): \(step.title)"] + lines
    }

    // MARK: Answers so far

    private func text(_ key: String) -> String? {
        if case .text(let t)? = answers[key] { return t }
        return nil
    }

    private func isSecretGiven(_ key: String) -> Bool {
        if case .secret? = answers[key] { return true }
        return false
    }

    /// The providers whose questions are all answered.
    private func draftProviders() -> [ProviderConfig] {
        var out: [ProviderConfig] = []
        var i = 1
        while text("providers.\(i).add") == "yes" {
            let base = "providers.\(i)"
            guard let kind = text("\(base).kind").flatMap(ProviderKind.init), let name = text("\(base).name"),
                let url = text("\(base).base-url"), let models = text("\(base).models"), answers["\(base).api-key"] != nil
            else { break }
            let key = isSecretGiven("\(base).api-key") ? SecretName.providerAPIKey(name) : nil
            out.append(
                ProviderConfig(
                    name: name, kind: kind, baseURL: url, apiKeySecret: key, models: models.split(separator: " ").map(String.init)))
            i += 1
        }
        return out
    }

    /// The kinds of the channels added so far, in order.
    private func draftChannelKinds() -> [String] {
        var kinds: [String] = []
        var i = 1
        while let kind = text("channels.\(i).add"), kind != "no" {
            kinds.append(kind)
            i += 1
        }
        return kinds
    }

    static func route(_ text: String) -> Route? {
        guard let slash = text.firstIndex(of: "/") else { return nil }
        return Route(provider: String(text[..<slash]), model: String(text[text.index(after: slash)...]))
    }

    // MARK: - The questions of each step

    private func currentSpec() -> Spec? {
        for step in SetupStep.allCases {
            if let spec = nextSpec(in: step) { return spec }
        }
        return nil
    }

    private func nextSpec(in step: SetupStep) -> Spec? {
        switch step {
        case .name: return nameSpec()
        case .admin: return adminSpec()
        case .timezone: return timezoneSpec()
        case .network: return networkSpec()
        case .providers: return providersSpec()
        case .routing: return routingSpec()
        case .channels: return channelsSpec()
        case .updates: return updatesSpec()
        case .summary: return answers[Key.confirm] == nil ? summarySpec() : nil
        }
    }

    private static func textAnswer<T>(_ check: @escaping (String) -> Validated<T>) -> (String) -> Validated<Given> {
        { s in check(s).map { _ in .text(s) } }
    }

    private static func secretAnswer(_ check: @escaping (String) -> Validated<Secret>) -> (String) -> Validated<Given> {
        { s in check(s).map { .secret($0) } }
    }

    private static func yesNo(_ s: String) -> Validated<Given> { Validators.yesNo(s).map { .text($0 ? "yes" : "no") } }

    private func nameSpec() -> Spec? {
        guard answers["name"] == nil else { return nil }
        var s = Spec(.name, "name", "Name of this box", accept: SetupWizard.textAnswer(Validators.hostname))
        s.intro = stepIntro(.name, "The box's name on your network: a-z, 0-9 and '-', such as kitchen-box.")
        s.fallback = .text(BoxConfig.defaultName)
        return s
    }

    private func adminSpec() -> Spec? {
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

    private func timezoneSpec() -> Spec? {
        guard answers["timezone"] == nil else { return nil }
        var s = Spec(
            .timezone, "timezone", "Time zone, Area/City such as Europe/Berlin",
            accept: SetupWizard.textAnswer { [zoneExists] in Validators.timezone($0, exists: zoneExists) })
        s.intro = stepIntro(.timezone, "Used for the update window and the time agents see.")
        s.fallback = .text(BoxConfig.defaultTimezone)
        return s
    }

    private func networkSpec() -> Spec? {
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

    private func providersSpec() -> Spec? {
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
                    s.intro = stepIntro(
                        .providers,
                        LocalModel.model(for: tier).map { "This box can run \($0) itself; chat uses it unless you choose another." }
                            ?? "This box cannot run a model itself: add a provider for the agents to use.")
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
                var s = Spec(.providers, "\(base).api-key", "API key (not shown)", accept: SetupWizard.secretAnswer(Validators.apiKey))
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
                case .ollama: s.fallback = .text(LocalModel.model(for: tier) ?? "llama3.1:8b")
                case .llamacpp: break
                }
                return s
            }
            names.append(name)
            i += 1
        }
        return nil
    }

    private func routingSpec() -> Spec? {
        var providers = draftProviders()
        guard let preview = BoxConfig.defaultChatRoute(providers: providers, tier: tier) else { return nil }
        let chat = preview.route.description
        if let p = preview.adding, answers["routing.chat"] == nil || text("routing.chat") == chat { providers.append(p) }
        let choices = providers.flatMap { p in p.models.map { "\(p.name)/\($0)" } }
        let known = providers
        let accept: (String) -> Validated<Given> = { t in
            guard let r = SetupWizard.route(t) else {
                return Validators.fail("give provider/model, such as \(chat); choices: \(choices.joined(separator: " "))")
            }
            guard let p = known.first(where: { $0.name == r.provider }) else {
                return Validators.fail(
                    "\(Validators.quote(r.provider)) is not a provider; providers are \(known.map(\.name).joined(separator: ", "))")
            }
            guard p.models.contains(r.model) else {
                return Validators.fail(
                    "\(Validators.quote(r.model)) is not a model of \(p.name); its models are \(p.models.joined(separator: ", "))")
            }
            return .success(.text(r.description))
        }
        if answers["routing.chat"] == nil {
            var s = Spec(.routing, "routing.chat", "Model for chat, as provider/model", accept: accept)
            s.intro =
                stepIntro(.routing, "Which model serves each role; code and reasoning use chat's unless set.")
                + wrap("Choices: " + choices.joined(separator: " "), width: 80)
            s.fallback = .text(chat)
            return s
        }
        for role in [LLMRole.code, .reasoning] where answers["routing.\(role.rawValue)"] == nil {
            var s = Spec(.routing, "routing.\(role.rawValue)", "Model for \(role.rawValue)", accept: accept)
            s.isSkippable = true
            s.skipShown = "as chat"
            return s
        }
        return nil
    }

    private func channelsSpec() -> Spec? {
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
            }
            used.append(kind)
            i += 1
        }
    }

    private func updatesSpec() -> Spec? {
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

    private func summarySpec() -> Spec {
        var s = Spec(.summary, Key.confirm, "Write this configuration?", accept: { _ in .success(.text("yes")) })
        let steps = SetupStep.allCases.filter { $0 != .summary }.map(\.rawValue).joined(separator: ", ")
        s.intro =
            stepIntro(.summary) + draft().config.summaryLines(width: 80)
            + ["", "Answer yes to write it, or the step to change:"] + wrap(steps + ".", width: 80)
        s.fallback = .text("yes")
        return s
    }
}

extension String {
    /// Without a trailing "\n" or "\r\n" (a line as a terminal delivers it).
    fileprivate func strippingLineEnd() -> String {
        var s = Substring(self)
        while let l = s.last, l == "\n" || l == "\r" || l == "\r\n" { s = s.dropLast() }
        return String(s)
    }
}

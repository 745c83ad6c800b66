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
///
/// Changing a step from the summary asks that step again and comes back to the summary: the
/// later steps' answers are held and taken again as their questions come back, except one
/// that no longer passes its check (a route to a provider that is gone), which is asked with
/// the reason (`WizardQuestion.intro`).

/// The wizard's steps, in order.
public enum SetupStep: String, Sendable, CaseIterable, Codable, Comparable {
    case name, admin, timezone, network, providers, routing, budget, channels, updates, summary

    public var number: Int { (SetupStep.allCases.firstIndex(of: self) ?? 0) + 1 }

    public var title: String {
        switch self {
        case .name: return "Name"
        case .admin: return "Admin access"
        case .timezone: return "Time zone"
        case .network: return "Network"
        case .providers: return "LLM providers"
        case .routing: return "Routing"
        case .budget: return "Cloud budget"
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

    /// The secrets this step's answers name (their values are staged beside the journal).
    public var secretNames: [String] {
        answers.compactMap { a in
            if case .secret(let name) = a.value { return name }
            return nil
        }
    }
}

public struct SetupWizard: Sendable {
    /// An answer of just one of these (any case) goes back one question: `back` as the
    /// owner would type it, `<` for short. (No box name, model or token is either.)
    public static let backCommands: Set<String> = ["back", "<"]
    /// Hashes the admin password with crypt(3) and a fresh salt (I/O: the caller's); nil if it cannot.
    public typealias PasswordHasher = @Sendable (Secret) -> String?

    public let tier: LocalLLMTier
    let hashPassword: PasswordHasher
    let zoneExists: Validators.ZoneCheck?
    /// The answers given, by question key.
    var answers: [String: Given] = [:]
    /// The questions answered, in order: what `back` undoes.
    var transcript: [Entry] = []
    /// Answers undone by `back`, a summary change or a resume: the defaults of their questions.
    var remembered: [String: Given] = [:]
    /// The step reopened from the summary, while it is asked again.
    var reopened: SetupStep?
    /// The answers of the steps after `reopened`, in order, waiting to be taken again.
    var held: [Held] = []
    /// Why a question is asked although it was answered before, by question key.
    var notices: [String: String] = [:]

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
        case Key.passwordAgain:
            let reply = confirmPassword(given)
            if reply == .next { takeHeldAnswers() }
            return reply
        case Key.confirm: return confirmSummary(given)
        default: break
        }
        switch validate(given, for: spec) {
        case .failure(let e): return .invalid(e.message)
        case .success(let v): store(v, for: spec)
        }
        takeHeldAnswers()
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
        for role in LLMRole.allCases {
            if let chain = text("routing.\(role.rawValue)").flatMap(SetupWizard.chain) { c.routing[role] = chain }
        }
        // The box's own model becomes a provider only when a route uses it.
        if let p = BoxConfig.defaultChatChain(providers: c.providers, tier: tier)?.adding,
            c.routing.values.contains(where: { $0.contains { $0.provider == p.name } })
        {
            c.providers.append(p)
        }
        let daily = text("budget.daily-usd").flatMap(SetupWizard.dollars)
        let monthly = text("budget.monthly-usd").flatMap(SetupWizard.dollars)
        if daily != nil || monthly != nil {
            c.budget = BudgetConfig(
                dailyUSD: daily, monthlyUSD: monthly,
                whenExhausted: text("budget.when-exhausted").flatMap(BudgetExhaustion.init) ?? .local)
        }
        for (n, kind) in draftChannelKinds().enumerated() {
            let base = "channels.\(n + 1)"
            let owners = text("\(base).owners").map { $0.split(separator: " ").map(String.init) } ?? []
            switch kind {
            case "telegram" where isSecretGiven("\(base).token"): c.channels.telegram = TelegramChannel(owners: owners)
            case "slack" where isSecretGiven("\(base).bot-token") && isSecretGiven("\(base).app-token"):
                c.channels.slack = SlackChannel(owners: owners)
            case "discord" where isSecretGiven("\(base).token"): c.channels.discord = DiscordChannel(owners: owners)
            case "whatsapp" where isSecretGiven("\(base).access-token"):
                let webhook = isSecretGiven("\(base).app-secret")
                if let id = text("\(base).phone-number-id") {
                    c.channels.whatsapp = WhatsAppChannel(
                        phoneNumberId: id, appSecretSecret: webhook ? SecretName.whatsAppAppSecret : nil,
                        verifyTokenSecret: webhook && isSecretGiven("\(base).verify-token") ? SecretName.whatsAppVerifyToken : nil,
                        owners: owners)
                }
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

    /// A later step's answer held while a step reopened from the summary is asked again.
    struct Held: Sendable {
        var entry: Entry
        var value: Given
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

    func given(_ value: WizardAnswer.Value, secrets: [String: Secret]) -> Given? {
        switch value {
        case .text(let t): return .text(t)
        case .skipped: return .skipped
        case .passwordHash(let h): return .passwordHash(h)
        case .secret(let name): return secrets[name].map { .secret($0) }
        }
    }

    func exported(_ e: Entry) -> WizardAnswer? {
        switch answers[e.key] {
        case .text(let t)?: return WizardAnswer(key: e.key, value: .text(t))
        case .skipped?: return WizardAnswer(key: e.key, value: .skipped)
        case .passwordHash(let h)?: return WizardAnswer(key: e.key, value: .passwordHash(h))
        case .secret?: return e.secretName.map { WizardAnswer(key: e.key, value: .secret(name: $0)) }
        case nil: return nil
        }
    }

    func validate(_ g: Given, for spec: Spec) -> Validated<Given> {
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
    func effectiveDefault(_ spec: Spec) -> Given? {
        if let r = remembered[spec.key], case .success(let v) = validate(r, for: spec) { return v }
        return spec.fallback
    }

    mutating func store(_ g: Given, for spec: Spec) {
        if let old = remembered.removeValue(forKey: spec.key), old != g {
            for key in remembered.keys where spec.resets.contains(where: { key.hasPrefix($0) }) { remembered[key] = nil }
        }
        answers[spec.key] = g
        notices[spec.key] = nil
        transcript.append(Entry(step: spec.step, key: spec.key, secretName: spec.secretName))
    }

    mutating func undoLast() {
        guard let last = transcript.popLast() else { return }
        if let g = answers.removeValue(forKey: last.key) { remembered[last.key] = g }
    }

    mutating func confirmPassword(_ g: Given) -> WizardReply {
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

    mutating func confirmSummary(_ g: Given) -> WizardReply {
        let steps = SetupStep.allCases.filter { $0 != .summary }.map(\.rawValue)
        guard case .text(let t) = g else { return .invalid("answer yes") }
        let a = t.lowercased()
        if a == "yes" || a == "y" {
            answers[Key.confirm] = .text("yes")
            transcript.append(Entry(step: .summary, key: Key.confirm))
            return .finished
        }
        if let step = SetupStep(rawValue: a), step != .summary {
            reopen(step)
            if currentSpec()?.step == .summary {
                return .invalid("\(step.title) has no questions with the other answers as they are; nothing to change there")
            }
            return .next
        }
        return .invalid("answer yes to write this configuration, or the step to change: \(steps.joined(separator: ", "))")
    }

    /// Asks `step` again, its answers as defaults; the later steps' answers are held and taken
    /// again as their questions come back (`takeHeldAnswers`).
    mutating func reopen(_ step: SetupStep) {
        var later: [Held] = []
        while let last = transcript.last, last.step >= step {
            if last.step > step, let g = answers[last.key] { later.insert(Held(entry: last, value: g), at: 0) }
            undoLast()
        }
        reopened = step
        held = later
        takeHeldAnswers()
    }

    /// Takes held answers while their questions are the ones asked, in order. A held answer
    /// whose question no longer comes is dropped; one that no longer passes its check stops
    /// the replay, and its question is asked with the reason; so is a question not asked before.
    mutating func takeHeldAnswers() {
        while let h = held.first, let spec = currentSpec() {
            if answers[h.entry.key] != nil || h.entry.step < spec.step {
                held.removeFirst()
                continue
            }
            guard spec.key == h.entry.key else {
                if let r = reopened, spec.step > r, remembered[spec.key] == nil {
                    notices[spec.key] = "\(spec.step.title): a new question after the change to \(r.title)"
                }
                return
            }
            held.removeFirst()
            switch validate(h.value, for: spec) {
            case .success(let v):
                store(v, for: spec)
            case .failure(let e):
                let earlier: String
                if case .text(let t) = h.value {
                    earlier = "the earlier answer \(Validators.quote(t))"
                } else {
                    earlier = "the earlier answer"
                }
                notices[spec.key] =
                    "\(spec.step.title): \(earlier) no longer fits after the change to \(reopened?.title ?? "a step"): \(e.message)"
                return
            }
        }
        if currentSpec()?.step == .summary { reopened = nil }
    }

    func render(_ spec: Spec) -> WizardQuestion {
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
        var intro = spec.intro.map { fitColumns($0, width: 80) }
        if let notice = notices[spec.key] {
            let lines = wrap(notice, width: 76)
            intro += lines.prefix(1).map { "  ! " + $0 } + lines.dropFirst().map { "    " + $0 }
        }
        return WizardQuestion(
            step: spec.step, key: spec.key, intro: intro, prompt: prompt, defaultAnswer: shown, isSecret: spec.isSecret,
            isSkippable: spec.isSkippable)
    }

    func stepIntro(_ step: SetupStep, _ lines: String...) -> [String] {
        var intro: [String] = []
        if step == .name {
            intro += ["AI Box setup. Enter takes the [default]; type back to go back a question.", ""]
        }
        return intro + ["Step \(step.number) of \(SetupStep.allCases.count): \(step.title)"] + lines
    }

    // MARK: Answers so far

    func text(_ key: String) -> String? {
        if case .text(let t)? = answers[key] { return t }
        return nil
    }

    func isSecretGiven(_ key: String) -> Bool {
        if case .secret? = answers[key] { return true }
        return false
    }

    /// The providers whose questions are all answered.
    func draftProviders() -> [ProviderConfig] {
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
    func draftChannelKinds() -> [String] {
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

    /// A chain as answered: `provider/model` words separated by spaces (or commas), first = primary.
    static func chain(_ text: String) -> [Route]? {
        let routes = text.split(whereSeparator: { $0 == " " || $0 == "," }).map { SetupWizard.route(String($0)) }
        guard !routes.isEmpty, !routes.contains(where: { $0 == nil }) else { return nil }
        return routes.compactMap { $0 }
    }

    /// A cap as answered (checked already): dollars.
    static func dollars(_ text: String) -> Double? {
        if case .success(let v) = Validators.usd(text) { return v }
        return nil
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

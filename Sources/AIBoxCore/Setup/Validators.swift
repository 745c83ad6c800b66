/// Checks for each kind of setup answer (issue 4), shared by seeds, `box.toml` and the
/// wizard. Each says what is wrong and what would be right, in words for the box's owner.
/// A message never holds a secret's value: the secret checks speak of lengths and shapes only.

/// Why an answer is refused, and what would be accepted.
public struct InvalidAnswer: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// An accepted value, or why it was refused.
public typealias Validated<Value> = Result<Value, InvalidAnswer>

public enum Validators {
    // MARK: Names

    /// The box's host name: one RFC 1123 label, 1–63 of `a-z 0-9 -`, lower case, not
    /// beginning or ending with '-'.
    public static func hostname(_ text: String) -> Validated<String> {
        let rule = "use 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-', such as \"kitchen-box\""
        let b = Array(text.utf8)
        if b.isEmpty { return fail("the name is empty; \(rule)") }
        if b.count > 63 { return fail("the name is \(b.count) characters long; a host name has at most 63") }
        if b.contains(UInt8(ascii: ".")) {
            let first = text.prefix { $0 != "." }
            return fail("\(quote(text)) holds a '.'; give one name without the domain, such as \(quote(String(first)))")
        }
        if !b.allSatisfy(isLowerAlnumOrDash) {
            let lower = text.lowercased()
            if lower != text && lower.utf8.allSatisfy(isLowerAlnumOrDash) {
                return fail("\(quote(text)) must be lower case: \(quote(lower))")
            }
            return fail("\(quote(text)) is not a host name; \(rule)")
        }
        if b.first == UInt8(ascii: "-") || b.last == UInt8(ascii: "-") {
            return fail("\(quote(text)) begins or ends with '-'; \(rule)")
        }
        if b.allSatisfy(isDigit) { return fail("\(quote(text)) is only digits; a host name needs a letter") }
        if text == "localhost" { return fail("\"localhost\" names every machine itself; choose another name") }
        return .success(text)
    }

    /// A provider's name: `[a-z0-9][a-z0-9-]{0,31}`. It is part of secret names and routes.
    public static func providerName(_ text: String) -> Validated<String> {
        let b = Array(text.utf8)
        let rule = "use 1 to 32 of a-z, 0-9 and '-', starting with a letter or digit, such as \"openai\" or \"home-gpu\""
        if b.isEmpty { return fail("the provider name is empty; \(rule)") }
        if b.count > 32 { return fail("the provider name is \(b.count) characters long; at most 32") }
        guard b.allSatisfy(isLowerAlnumOrDash), b[0] != UInt8(ascii: "-") else {
            return fail("\(quote(text)) is not a provider name; \(rule)")
        }
        return .success(text)
    }

    /// A model name as the provider spells it: 1–128 of `A-Z a-z 0-9 . _ : / @ + -`,
    /// starting with a letter or digit (`gpt-4o-mini`, `qwen2.5:3b`, `meta-llama/Llama-3.1-8B`).
    public static func modelName(_ text: String) -> Validated<String> {
        let b = Array(text.utf8)
        if b.isEmpty {
            return fail("the model name is empty; give it as the provider spells it, such as \"gpt-4o-mini\" or \"qwen2.5:3b\"")
        }
        if b.count > 128 { return fail("the model name is \(b.count) characters long; at most 128") }
        let extra = Array("._:/@+-".utf8)
        guard isAlnum(b[0]), b.allSatisfy({ isAlnum($0) || extra.contains($0) }) else {
            return fail(
                "\(quote(text)) is not a model name; use letters, digits and . _ : / @ + -, starting with a letter or digit, "
                    + "such as \"gpt-4o-mini\" or \"qwen2.5:3b\"")
        }
        return .success(text)
    }

    /// A provider's models: 1–64 valid names, none twice.
    public static func modelList(_ names: [String]) -> Validated<[String]> {
        if names.isEmpty { return fail("no models given; name at least one, such as [\"gpt-4o-mini\"]") }
        if names.count > 64 { return fail("\(names.count) models given; at most 64") }
        var seen: Set<String> = []
        for n in names {
            if case .failure(let e) = modelName(n) { return .failure(e) }
            if !seen.insert(n).inserted { return fail("\(quote(n)) is listed twice; name each model once") }
        }
        return .success(names)
    }

    /// A model's context window in tokens: a whole number in `Route.contextRange`.
    public static func contextWindow(_ n: Int) -> Validated<Int> {
        guard Route.contextRange.contains(n) else {
            return fail(
                "\(n) is not a context window; give the model's context in tokens, from \(Route.contextRange.lowerBound) "
                    + "to \(Route.contextRange.upperBound), such as 8192")
        }
        return .success(n)
    }

    /// A role's chain: 1 to `BoxConfig.maxChainLength` routes, no provider/model twice.
    public static func routeChain(_ chain: [Route]) -> Validated<[Route]> {
        if chain.isEmpty {
            return fail("the chain is empty; give at least one route, such as { provider = \"openai\", model = \"gpt-4o-mini\" }")
        }
        if chain.count > BoxConfig.maxChainLength {
            return fail("\(chain.count) routes in one chain; at most \(BoxConfig.maxChainLength)")
        }
        for (i, r) in chain.enumerated() {
            if let first = chain[..<i].firstIndex(where: { $0.isSameModel(as: r) }) {
                return fail("route \(i + 1) is \(r) again (route \(first + 1)); list each route once")
            }
        }
        return .success(chain)
    }

    static let usdRule = "must be a number of US dollars >= 0, like 2.0"

    /// A budget cap in US dollars: 0 ... `BudgetConfig.maxUSD` (a TOML float or integer).
    public static func usd(_ v: Double) -> Validated<Double> {
        guard v.isFinite else { return fail("\(usdRule), not \(v)") }
        guard v >= 0 else { return fail("\(v) is negative; \(usdRule)") }
        guard v <= BudgetConfig.maxUSD else {
            return fail("\(v) is more than \(Int(BudgetConfig.maxUSD)) dollars; \(usdRule) and at most \(Int(BudgetConfig.maxUSD))")
        }
        return .success(v + 0)  // -0.0 as 0.0
    }

    /// A cap typed at the wizard: digits with at most one '.', optionally after a '$'
    /// (`2`, `2.50`, `$30`).
    public static func usd(_ text: String) -> Validated<Double> {
        let digits = text.hasPrefix("$") ? String(text.dropFirst()) : text
        let b = Array(digits.utf8)
        let dots = b.filter { $0 == UInt8(ascii: ".") }.count
        guard (1...16).contains(b.count), dots <= 1, b.contains(where: isDigit),
            b.allSatisfy({ isDigit($0) || $0 == UInt8(ascii: ".") }), let v = Double(digits)
        else {
            return fail("\(quote(text)) is not an amount; give US dollars such as 2 or 2.50")
        }
        return usd(v)
    }

    /// The share of a cap at which the owner is warned: more than 0, at most 1.
    public static func warnAt(_ v: Double) -> Validated<Double> {
        guard v > 0, v <= 1 else {
            return fail("\(v) is not a share of the cap; give a number more than 0 and at most 1, like 0.8 (warn at 80%)")
        }
        return .success(v)
    }

    /// Yes or no (`yes`, `y`, `no`, `n`, any case).
    public static func yesNo(_ text: String) -> Validated<Bool> {
        switch text.lowercased() {
        case "yes", "y": return .success(true)
        case "no", "n": return .success(false)
        default: return fail("answer yes or no")
        }
    }

    // MARK: Time

    /// The areas of the tz database (`Area/City`), plus `Etc`.
    public static let timezoneAreas = [
        "Africa", "America", "Antarctica", "Arctic", "Asia", "Atlantic", "Australia", "Europe", "Indian", "Pacific", "Etc",
    ]

    /// A time zone's name in the shape of the tz database: `UTC`, or `Area/City` or
    /// `Area/Region/City` with a known area, each part starting with a capital letter and made
    /// of letters, digits, `_`, `+` and `-`. Whether the zone exists is the caller's check
    /// (the zone file); the shape keeps that check from leaving the zoneinfo directory.
    public static func timezone(_ text: String) -> Validated<String> {
        let rule = "use Area/City as in the tz database, such as Europe/Berlin or America/New_York, or UTC"
        if text == "UTC" { return .success(text) }
        if text.isEmpty { return fail("the time zone is empty; \(rule)") }
        if text.utf8.count > 64 { return fail("the time zone is \(text.utf8.count) characters long; at most 64") }
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        let extra = Array("_+-".utf8)
        let shapeOK =
            (2...3).contains(parts.count)
            && parts.allSatisfy { p in
                let b = Array(p.utf8)
                return (1...30).contains(b.count) && isUpper(b[0]) && b.allSatisfy { isAlnum($0) || extra.contains($0) }
            }
        guard shapeOK else {
            if text.lowercased() == "utc" { return fail("\(quote(text)) must be written \"UTC\"") }
            return fail("\(quote(text)) is not a time zone name; \(rule)")
        }
        let area = String(parts[0])
        guard timezoneAreas.contains(area) else {
            let hint = nearest(area, in: timezoneAreas).map { "did you mean \($0)? " } ?? ""
            return fail("\(quote(area)) is not an area of the tz database; \(hint)areas are \(timezoneAreas.joined(separator: ", "))")
        }
        return .success(text)
    }

    /// Whether a zone (already of the right shape) exists on this box: the caller's look at
    /// its zoneinfo directory, passed in (this module does no I/O).
    public typealias ZoneCheck = @Sendable (String) -> Bool

    /// `timezone(_:)`, then `exists` when given.
    public static func timezone(_ text: String, exists: ZoneCheck?) -> Validated<String> {
        timezone(text).flatMap { zone in
            guard let exists, zone != "UTC", !exists(zone) else { return .success(zone) }
            return fail(
                "there is no time zone \(quote(zone)) on this box (no /usr/share/zoneinfo/\(zone)); check the spelling, such as Europe/Berlin"
            )
        }
    }

    /// `HH:MM-HH:MM` in 24-hour time; it may wrap midnight (`22:00-02:00`).
    public static func maintenanceWindow(_ text: String) -> Validated<MaintenanceWindow> {
        if let w = MaintenanceWindow(text) { return .success(w) }
        let b = Array(text.utf8)
        if b.count == 11, b[5] == UInt8(ascii: "-"), let s = MaintenanceWindow.minutes(b[0..<5]),
            let e = MaintenanceWindow.minutes(b[6..<11]), s == e
        {
            return fail("\(quote(text)) starts and ends at the same time; give a window such as 03:00-05:00")
        }
        return fail(
            "\(quote(text)) is not a time window; give HH:MM-HH:MM in 24-hour time, such as 03:00-05:00 (22:00-02:00 wraps midnight)")
    }

    // MARK: Network

    /// A URL for an HTTP API: `http` or `https`, a host (name, IPv4, or `[IPv6]`), an optional
    /// port and path; no user name or password, query or fragment. At most 2048 characters.
    public static func url(_ text: String) -> Validated<WebURL> {
        let rule = "give http:// or https://, a host, and optionally a port and a path, such as https://api.example.com/v1"
        if text.isEmpty { return fail("the URL is empty; \(rule)") }
        if text.utf8.count > 2048 { return fail("the URL is \(text.utf8.count) characters long; at most 2048") }
        if text.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F }) {
            return fail("the URL holds a space or a control character; \(rule)")
        }
        if !text.unicodeScalars.allSatisfy(\.isASCII) {
            return fail("the URL holds a character outside ASCII; write international host names in their xn-- form")
        }
        guard let sep = text.firstRange(of: "://") else { return fail("the URL has no scheme; \(rule)") }
        let scheme = text[..<sep.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else {
            return fail("the URL's scheme is \(quote(String(scheme.prefix(16)))); only http and https are allowed")
        }
        let rest = text[sep.upperBound...]
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        let tail = rest.dropFirst(authority.count)
        if authority.contains("@") {
            return fail("the URL holds a user name or password (before '@'); leave them out: credentials go in api-key, never in a URL")
        }
        if tail.contains("?") || tail.contains("#") {
            return fail("the URL has a query or fragment ('?' or '#'); give only scheme, host, port and path")
        }
        var hostPart = authority[...]
        var portText: Substring?
        var host: String
        if hostPart.hasPrefix("[") {
            guard let close = hostPart.firstIndex(of: "]") else { return fail("the URL's IPv6 address misses its ']'") }
            let inside = hostPart[hostPart.index(after: hostPart.startIndex)..<close]
            guard let ip = IPAddress(String(inside)), !ip.isIPv4 else {
                return fail("the URL's host in [ ] is not an IPv6 address")
            }
            host = ip.description
            let after = hostPart[hostPart.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return fail("the URL has text after its IPv6 address; \(rule)") }
                portText = after.dropFirst()
            }
        } else {
            if let colon = hostPart.lastIndex(of: ":") {
                portText = hostPart[hostPart.index(after: colon)...]
                hostPart = hostPart[..<colon]
            }
            host = String(hostPart)
            if host.isEmpty { return fail("the URL has no host; \(rule)") }
            if host.utf8.allSatisfy({ isDigit($0) || $0 == UInt8(ascii: ".") }) {
                guard IPAddress(host)?.isIPv4 == true else { return fail("the URL's host \(quote(host)) is not an IPv4 address") }
            } else if let problem = dnsNameProblem(host) {
                return fail("the URL's host \(quote(host)) \(problem)")
            }
        }
        var port: Int?
        if let p = portText {
            guard (1...5).contains(p.count), p.utf8.allSatisfy(isDigit), let n = Int(p), (1...65535).contains(n) else {
                return fail("the URL's port is not a number from 1 to 65535")
            }
            port = n
        }
        let pathExtra = Array("-._~!$&'()*+,;=:@/%".utf8)
        let path = Array(tail.utf8)
        guard path.allSatisfy({ isAlnum($0) || pathExtra.contains($0) }) else {
            return fail("the URL's path holds a character that needs percent-encoding")
        }
        for (i, c) in path.enumerated() where c == UInt8(ascii: "%") {
            guard i + 2 < path.count, isHex(path[i + 1]), isHex(path[i + 2]) else {
                return fail("the URL's path has a '%' not followed by two hex digits")
            }
        }
        return .success(WebURL(scheme: scheme, host: host.lowercased(), port: port, path: String(tail)))
    }

    /// The update feed: like `url`, and https unless the host is the box itself (for tests).
    /// The base URL of a provider that has an API key: like `url`, and https unless the server
    /// is the box itself (a key must not cross a network in clear).
    public static func providerURL(_ text: String) -> Validated<WebURL> {
        secureURL(text, otherwise: "the URL uses http to another machine; a provider needs https (http only for 127.0.0.1 or localhost)")
    }

    public static func feedURL(_ text: String) -> Validated<WebURL> {
        secureURL(text, otherwise: "the feed URL uses http; update feeds need https (http only for 127.0.0.1 or localhost)")
    }

    /// A chat channel's API base URL (tests point it at a loopback fake): https, http only for loopback.
    public static func channelURL(_ text: String) -> Validated<WebURL> {
        secureURL(
            text, otherwise: "the URL uses http to another machine; a channel's API needs https (http only for 127.0.0.1 or localhost)")
    }

    /// A URL that is https, or http to this machine only; `otherwise` says why not.
    static func secureURL(_ text: String, otherwise: String) -> Validated<WebURL> {
        url(text).flatMap { u in u.scheme == "https" || u.isLoopback ? .success(u) : fail(otherwise) }
    }

    /// A listening address, `HOST:PORT` or `[V6]:PORT`, with an IP address and a port 0…65535
    /// (the WhatsApp webhook's `listen`).
    public static func listenAddress(_ text: String) -> Validated<String> {
        hostPort(text) != nil
            ? .success(text)
            : fail("\(quote(text)) is not HOST:PORT; give an IP address and a port, such as 127.0.0.1:8790 or [::1]:8790")
    }

    /// `HOST:PORT` or `[V6]:PORT` taken apart; nil unless the host is an IP address and the port 0…65535.
    public static func hostPort(_ text: String) -> (host: String, port: Int)? {
        let host: String
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            host = String(text[text.index(after: text.startIndex)..<close])
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = String(text[..<colon])
            portText = text[text.index(after: colon)...]
        }
        guard IPAddress(host) != nil, !portText.isEmpty, portText.utf8.count <= 5, portText.allSatisfy(\.isNumber), let port = Int(portText),
            (0...65535).contains(port)
        else { return nil }
        return (host, port)
    }

    /// An IPv4 (`192.168.1.50`) or IPv6 (`fd00::50`) address.
    public static func ipAddress(_ text: String) -> Validated<IPAddress> {
        if text.isEmpty { return fail("the address is empty; give one such as 192.168.1.50 or fd00::50") }
        guard text.utf8.count <= 45, let ip = IPAddress(text) else {
            return fail("\(quote(text)) is not an IP address; give one such as 192.168.1.50 or fd00::50")
        }
        return .success(ip)
    }

    /// A prefix length for `address`: 0–32 for IPv4, 0–128 for IPv6.
    public static func prefixLength(_ n: Int, for address: IPAddress) -> Validated<Int> {
        let maxBits = address.bytes.count * 8
        guard (0...maxBits).contains(n) else {
            return fail(
                "\(n) is not a prefix length for an IPv\(address.isIPv4 ? 4 : 6) address; use 0 to \(maxBits), such as \(address.isIPv4 ? 24 : 64)"
            )
        }
        return .success(n)
    }

    /// The gateway of a static address: the same family, inside the address's network.
    public static func gateway(_ text: String, address: IPAddress, prefix: Int) -> Validated<IPAddress> {
        ipAddress(text).flatMap { g in
            if g.isIPv4 != address.isIPv4 {
                return fail("the gateway \(quote(text)) is not of the address's family (IPv\(address.isIPv4 ? 4 : 6))")
            }
            if g == address { return fail("the gateway \(quote(text)) is the box's own address") }
            if !g.isInNetwork(of: address, prefix: prefix) {
                return fail("the gateway \(quote(text)) is outside the box's network \(address)/\(prefix); check the address and prefix")
            }
            return .success(g)
        }
    }

    /// A Wi-Fi network name: 1–32 bytes of UTF-8, no control characters.
    public static func ssid(_ text: String) -> Validated<String> {
        let n = text.utf8.count
        if n == 0 { return fail("the network name (SSID) is empty; give it as the router shows it") }
        if n > 32 {
            return fail("the SSID is \(n) bytes long; an SSID has at most 32 bytes (letters outside ASCII take 2 to 4 bytes each)")
        }
        if text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            return fail("the SSID holds a control character; give the name as the router shows it")
        }
        return .success(text)
    }

    /// A WPA passphrase (a secret): 8–63 printable ASCII characters, or the 64 hex digits of
    /// a pre-shared key.
    public static func wifiPassphrase(_ text: String) -> Validated<Secret> {
        let b = Array(text.utf8)
        let rule = "a WPA passphrase has 8 to 63 characters of printable ASCII, or is 64 hex digits"
        if b.count == 64 && b.allSatisfy(isHex) { return .success(Secret(text)) }
        if b.count < 8 { return fail("the passphrase is \(text.count) characters long; \(rule)") }
        if b.count > 63 { return fail("the passphrase is \(text.count) characters long; \(rule)") }
        guard b.allSatisfy({ $0 >= 0x20 && $0 <= 0x7E }) else {
            return fail("the passphrase holds a character outside printable ASCII (letters, digits, punctuation, space); \(rule)")
        }
        return .success(Secret(text))
    }

    /// ISO 3166-1 alpha-2 codes in use: the Wi-Fi regulatory domain is set from one.
    public static let countryCodes: Set<String> = Set(
        """
        AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ \
        CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO \
        FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE \
        JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO \
        MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW \
        PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM \
        TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
        """.split(separator: " ").map(String.init))

    /// The Wi-Fi country: an assigned ISO 3166-1 alpha-2 code in upper case (`DE`, `US`).
    public static func country(_ text: String) -> Validated<String> {
        if countryCodes.contains(text) { return .success(text) }
        let upper = text.uppercased()
        if countryCodes.contains(upper) { return fail("\(quote(text)) must be upper case: \(quote(upper))") }
        if upper == "UK" { return fail("\"UK\" is not an ISO 3166 code; the United Kingdom is \"GB\"") }
        if text.utf8.count == 2 && text.utf8.allSatisfy(isAlpha) {
            return fail("\(quote(text)) is not an assigned ISO 3166 country code; use one such as DE, US or GB")
        }
        return fail("\(quote(text)) is not a country code; give the two-letter ISO 3166 code, such as DE, US or GB")
    }

    // MARK: Admin access

    /// The key types accepted in an admin's SSH key line.
    public static let sshKeyTypes = [
        "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
    ]

    /// One OpenSSH public key line: `TYPE BASE64 [comment]`, as in a `.pub` file. The key data
    /// must decode and name the same type; RSA keys need at least 2048 bits. Returns the line
    /// with single spaces between its parts.
    public static func sshPublicKey(_ text: String) -> Validated<String> {
        let line = text.trimmingSpaces()
        let example = "paste one line of the .pub file, such as \"ssh-ed25519 AAAAC3Nza… you@laptop\""
        if line.isEmpty { return fail("the SSH key is empty; \(example)") }
        if line.utf8.count > 8192 { return fail("the SSH key line is \(line.utf8.count) characters long; at most 8192") }
        if line.contains("PRIVATE KEY") {
            return fail(
                "this is a PRIVATE key: keep it secret. Give the public key, the one-line .pub file (ssh-keygen -y -f KEY prints it)")
        }
        if line.unicodeScalars.contains(where: { ($0.value < 0x20 && $0 != "\t") || $0.value == 0x7F }) {
            return fail("the SSH key holds a line break or control character; give one key per line")
        }
        let parts = line.split(maxSplits: 2, omittingEmptySubsequences: true) { $0 == " " || $0 == "\t" }
        let type = String(parts[0])
        guard sshKeyTypes.contains(type) else {
            if sshKeyTypes.contains(where: { line.contains($0 + " ") }) {
                return fail("the SSH key line starts with authorized_keys options; give only TYPE KEY [comment]")
            }
            return fail(
                "\(quote(String(type.prefix(40)))) is not an SSH key type; use ssh-ed25519 (recommended), ssh-rsa, "
                    + "ecdsa-sha2-nistp256/384/521 or a security key type (sk-…)")
        }
        guard parts.count >= 2 else { return fail("the SSH key line has no key after \(type); it is TYPE KEY [comment]") }
        guard let blob = base64Decode(parts[1]) else {
            return fail("the key part is not valid base64; copy the whole line of the .pub file unchanged")
        }
        var reader = SSHBlobReader(bytes: blob)
        guard let inner = reader.string(), String(decoding: inner, as: UTF8.self) == type else {
            return fail("the key data is not a \(type) key; copy the whole line of the .pub file unchanged")
        }
        switch type {
        case "ssh-ed25519", "sk-ssh-ed25519@openssh.com":
            guard let key = reader.string(), key.count == 32 else {
                return fail("the \(type) key data is damaged (an ed25519 key has 32 bytes); copy the line unchanged")
            }
        case "ssh-rsa":
            guard reader.string() != nil, let modulus = reader.string() else {
                return fail("the ssh-rsa key data is damaged; copy the line unchanged")
            }
            let bits = SSHBlobReader.bitLength(modulus)
            if bits < 2048 { return fail("this is an RSA key of \(bits) bits; use at least 2048 bits, or better an ssh-ed25519 key") }
        default:
            // ecdsa-sha2-nistpNNN and sk-ecdsa-sha2-nistp256@openssh.com name their curve next.
            let curve = type.split(separator: "-").last.map { $0.prefix { $0 != "@" } } ?? ""
            guard let named = reader.string(), String(decoding: named, as: UTF8.self) == curve else {
                return fail("the \(type) key data names another curve; copy the line unchanged")
            }
        }
        let comment = parts.count > 2 ? parts[2].trimmingSpaces() : ""
        return .success("\(type) \(parts[1])" + (comment.isEmpty ? "" : " \(comment)"))
    }

    /// The crypt(3) methods accepted for the admin password, and the length of their hash part.
    static let cryptMethods: [String: (name: String, hashLength: Int)] = [
        "y": ("yescrypt", 43), "gy": ("gost-yescrypt", 43), "7": ("scrypt", 43), "6": ("SHA-512", 86), "5": ("SHA-256", 43),
        "2b": ("bcrypt", 53), "2y": ("bcrypt", 53), "2a": ("bcrypt", 53),
    ]

    /// The admin password's crypt(3) hash (`$y$…`, `$6$…`, `$5$…`, `$2b$…`, `$7$…`). Its text
    /// is never repeated in a message: a clear-text password may have been put here by mistake.
    public static func passwordHash(_ text: String) -> Validated<String> {
        let how = "make one with `mkpasswd -m yescrypt` or `openssl passwd -6`"
        if text.isEmpty { return fail("the password hash is empty; \(how)") }
        if text.utf8.count > 512 { return fail("the password hash is \(text.utf8.count) characters long; at most 512") }
        guard text.hasPrefix("$") else {
            return fail("this is not a crypt(3) hash (those begin with $y$, $6$, …); never give the password itself: \(how)")
        }
        let fields = text.split(separator: "$", omittingEmptySubsequences: false).map(String.init)
        let id = fields.count > 1 ? fields[1] : ""
        if id == "1" || id == "md5" { return fail("this is an MD5 hash ($1$), too weak; use yescrypt ($y$) or SHA-512 ($6$): \(how)") }
        guard let method = cryptMethods[id] else {
            return fail(
                "the hash method is not one this box accepts; use yescrypt ($y$), SHA-512 ($6$), SHA-256 ($5$) or bcrypt ($2b$): \(how)")
        }
        let allowed = Array("./$=,".utf8)
        guard fields.count >= 4, text.utf8.allSatisfy({ isAlnum($0) || allowed.contains($0) }),
            fields.dropFirst(2).allSatisfy({ !$0.isEmpty })
        else { return fail("this is not a complete \(method.name) hash; \(how)") }
        let hash = fields[fields.count - 1]
        guard hash.utf8.count == method.hashLength else {
            return fail(
                "this \(method.name) hash is cut short or damaged (its last part has \(hash.utf8.count) characters, not \(method.hashLength)); \(how)"
            )
        }
        return .success(text)
    }

    /// A password typed into the wizard (hashed there, never stored): 8–256 bytes, no control characters.
    public static func password(_ text: String) -> Validated<Secret> {
        if text.count < 8 { return fail("the password is \(text.count) characters long; use at least 8") }
        if text.utf8.count > 256 { return fail("the password is \(text.utf8.count) bytes long; at most 256") }
        if text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            return fail("the password holds a control character; use letters, digits, spaces and punctuation")
        }
        return .success(Secret(text))
    }

    // MARK: Secrets of providers and channels

    /// An LLM provider's API key: 1–512 characters of printable ASCII without spaces.
    public static func apiKey(_ text: String) -> Validated<Secret> {
        if text.hasPrefix("Bearer ") { return fail("leave out \"Bearer \": give the API key alone") }
        if let problem = tokenProblem(text, what: "the API key", maxLength: 512) { return .failure(problem) }
        return .success(Secret(text))
    }

    /// A Telegram bot token as @BotFather gives it: 5–12 digits (the bot's id), ':', and 35
    /// of `A-Z a-z 0-9 _ -`.
    public static func telegramBotToken(_ text: String) -> Validated<Secret> {
        if let problem = tokenProblem(text, what: "the bot token", maxLength: 64) { return .failure(problem) }
        let shape =
            "a Telegram bot token is the bot's number (5 to 12 digits), ':' and 35 letters, digits, '_' or '-', as @BotFather gives it"
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return fail("this is not a Telegram bot token: it has no single ':'; \(shape)") }
        let id = Array(parts[0].utf8), rest = Array(parts[1].utf8)
        guard (5...12).contains(id.count), id.allSatisfy(isDigit) else {
            return fail("this is not a Telegram bot token: the part before ':' has to be 5 to 12 digits; \(shape)")
        }
        guard rest.allSatisfy(isBase64URL) else {
            return fail("this is not a Telegram bot token: the part after ':' holds a character other than letters, digits, '_' and '-'")
        }
        guard rest.count == 35 else {
            return fail("this is not a Telegram bot token: the part after ':' has \(rest.count) characters, not 35; \(shape)")
        }
        return .success(Secret(text))
    }

    /// A Slack bot token: `xoxb-` and 20–250 of `A-Z a-z 0-9 -` (OAuth & Permissions page).
    public static func slackBotToken(_ text: String) -> Validated<Secret> {
        if text.hasPrefix("xapp-") {
            return fail("this is an app-level token (xapp-…); the bot token starts with xoxb- (OAuth & Permissions page)")
        }
        if text.hasPrefix("xoxp-") { return fail("this is a user token (xoxp-…); give the bot token, which starts with xoxb-") }
        return slackToken(text, prefix: "xoxb-", what: "bot token", whereFound: "OAuth & Permissions page")
    }

    /// A Slack app-level token for Socket Mode: `xapp-` and 20–250 of `A-Z a-z 0-9 -`.
    public static func slackAppToken(_ text: String) -> Validated<Secret> {
        if text.hasPrefix("xoxb-") {
            return fail("this is the bot token (xoxb-…); the app-level token starts with xapp- (Basic Information, App-Level Tokens)")
        }
        return slackToken(text, prefix: "xapp-", what: "app-level token", whereFound: "Basic Information, App-Level Tokens")
    }

    /// A Discord bot token: three base64url parts separated by '.' (the bot's id, a
    /// timestamp, an HMAC), at most 200 characters, without the "Bot " prefix.
    public static func discordBotToken(_ text: String) -> Validated<Secret> {
        if text.hasPrefix("Bot ") { return fail("leave out \"Bot \": give the token alone") }
        if let problem = tokenProblem(text, what: "the bot token", maxLength: 200) { return .failure(problem) }
        let shape =
            "a Discord bot token is three parts of letters, digits, '_' and '-' separated by '.' (Developer Portal, Bot, Reset Token)"
        let parts = text.split(separator: ".", omittingEmptySubsequences: false).map { Array($0.utf8) }
        guard parts.count == 3 else { return fail("this is not a Discord bot token: it has \(parts.count) parts, not 3; \(shape)") }
        guard parts.allSatisfy({ $0.allSatisfy(isBase64URL) }) else {
            return fail("this is not a Discord bot token: a part holds a character other than letters, digits, '_' and '-'; \(shape)")
        }
        guard parts[0].count >= 16, parts[1].count >= 4, parts[2].count >= 20 else {
            return fail("this is not a Discord bot token: its parts are too short (it was cut?); \(shape)")
        }
        return .success(Secret(text))
    }

    /// WhatsApp Business Cloud API access token (a Meta access token): `EAA` and letters and
    /// digits, 32–1024 characters in all.
    public static func whatsAppAccessToken(_ text: String) -> Validated<Secret> {
        if text.hasPrefix("Bearer ") { return fail("leave out \"Bearer \": give the access token alone") }
        if let problem = tokenProblem(text, what: "the access token", maxLength: 1024) { return .failure(problem) }
        let shape =
            "a WhatsApp Cloud API access token starts with EAA and has only letters and digits (Meta for Developers, WhatsApp, API Setup)"
        guard text.hasPrefix("EAA"), text.utf8.allSatisfy(isAlnum) else { return fail("this is not a WhatsApp access token; \(shape)") }
        guard text.utf8.count >= 32 else {
            return fail("this WhatsApp access token has \(text.utf8.count) characters, too few (it was cut?); \(shape)")
        }
        return .success(Secret(text))
    }

    /// The WhatsApp Cloud API phone number ID (not the phone number): 6–20 digits.
    public static func whatsAppPhoneNumberId(_ text: String) -> Validated<String> {
        let place = "the phone number ID is shown under WhatsApp, API Setup (about 15 digits)"
        if text.isEmpty { return fail("the phone number ID is empty; \(place)") }
        if text.hasPrefix("+") { return fail("\(quote(text)) looks like a phone number; give the phone number ID instead: \(place)") }
        guard (6...20).contains(text.utf8.count), text.utf8.allSatisfy(isDigit) else {
            return fail("\(quote(text)) is not a phone number ID: it has 6 to 20 digits only; \(place)")
        }
        return .success(text)
    }

    /// A WhatsApp app's secret (Meta for Developers, App settings, Basic): 32 hex digits; it
    /// signs the webhook's deliveries (`X-Hub-Signature-256`).
    public static func whatsAppAppSecret(_ text: String) -> Validated<Secret> {
        let shape = "an app secret is 32 hex digits (Meta for Developers, App settings, Basic, App secret, Show)"
        guard text.utf8.count == 32, text.utf8.allSatisfy(isHex) else {
            return fail("this is not an app secret: it has \(text.utf8.count) characters; \(shape)")
        }
        return .success(Secret(text.lowercased()))
    }

    /// The verify token of the WhatsApp webhook, chosen by the owner and typed into Meta's
    /// webhook settings: 8–128 of printable ASCII without spaces.
    public static func whatsAppVerifyToken(_ text: String) -> Validated<Secret> {
        if let problem = tokenProblem(text, what: "the verify token", maxLength: 128) { return .failure(problem) }
        guard text.utf8.count >= 8 else {
            return fail(
                "the verify token has \(text.utf8.count) characters; choose at least 8 (and type the same into Meta's webhook settings)")
        }
        return .success(Secret(text))
    }

    // MARK: Owners of channels

    /// The most owners one channel may list.
    public static let maxOwners = 32

    /// A Telegram user id (the owner's, not the bot's or a group's): 1–16 digits. @userinfobot tells it.
    public static func telegramUserId(_ text: String) -> Validated<String> {
        let rule = "a Telegram user id is 1 to 16 digits, such as \"123456789\" (send /start to @userinfobot to learn yours)"
        if text.hasPrefix("-") { return fail("\(quote(text)) is a group's or channel's id; owners are people: \(rule)") }
        if text.hasPrefix("@") { return fail("\(quote(text)) is a user name, which its owner can change; give the user id: \(rule)") }
        guard (1...16).contains(text.utf8.count), text.utf8.allSatisfy(isDigit), text.first != "0" else {
            return fail("\(quote(text)) is not a Telegram user id; \(rule)")
        }
        return .success(text)
    }

    /// A Slack member as `TEAM:USER`: the workspace's id (`T…`, or `E…` on Enterprise Grid)
    /// and the member id (`U…` or `W…`), each 3–24 of `A-Z 0-9`.
    public static func slackMember(_ text: String) -> Validated<String> {
        let rule =
            "a Slack owner is TEAM:USER, the workspace id and the member id, such as \"T0123ABC:U0456DEF\" "
            + "(profile, ⋮, Copy member ID; the workspace id is in the browser's URL)"
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map { Array($0.utf8) }
        func id(_ b: [UInt8], _ first: String) -> Bool {
            (3...24).contains(b.count) && first.utf8.contains(b[0]) && b.allSatisfy { isDigit($0) || ($0 >= 0x41 && $0 <= 0x5A) }
        }
        guard parts.count == 2 else {
            if parts.count == 1, let only = parts.first, !only.isEmpty, id(only, "UW") {
                return fail("\(quote(text)) is a member id alone; put the workspace id before it: \(rule)")
            }
            return fail("\(quote(text)) is not TEAM:USER; \(rule)")
        }
        guard id(parts[0], "TE") else { return fail("\(quote(text)): the part before ':' is not a workspace id (T…); \(rule)") }
        guard id(parts[1], "UW") else { return fail("\(quote(text)): the part after ':' is not a member id (U… or W…); \(rule)") }
        return .success(text)
    }

    /// A Discord user id (a snowflake): 17–20 digits (Developer Mode on, right-click the user, Copy User ID).
    public static func discordUserId(_ text: String) -> Validated<String> {
        let rule = "a Discord user id is 17 to 20 digits (User Settings, Advanced, Developer Mode; then right-click the user, Copy User ID)"
        if text.contains("#") || text.hasPrefix("@") {
            return fail("\(quote(text)) is a user name, which its owner can change; give the user id: \(rule)")
        }
        guard (17...20).contains(text.utf8.count), text.utf8.allSatisfy(isDigit) else {
            return fail("\(quote(text)) is not a Discord user id; \(rule)")
        }
        return .success(text)
    }

    /// A WhatsApp user as the Cloud API names senders: the phone number in E.164 without '+'
    /// (country code first), 7–15 digits.
    public static func whatsAppNumber(_ text: String) -> Validated<String> {
        let rule = "a WhatsApp owner is the phone number with its country code, digits only, such as \"4915112345678\""
        if text.hasPrefix("+") { return fail("\(quote(text)): leave out the '+'; \(rule)") }
        if text.hasPrefix("00") { return fail("\(quote(text)): leave out the leading 00; \(rule)") }
        guard (7...15).contains(text.utf8.count), text.utf8.allSatisfy(isDigit), text.first != "0" else {
            return fail("\(quote(text)) is not a phone number in international form; \(rule)")
        }
        return .success(text)
    }

    // MARK: Helpers

    static func fail<T>(_ message: String) -> Validated<T> { .failure(InvalidAnswer(message)) }

    /// A user's (non-secret) text for a message: quoted, cut to 40 characters, control characters shown as '?'.
    static func quote(_ text: String) -> String {
        var s = String(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) })
        if s.count > 40 { s = String(s.prefix(39)) + "…" }
        return "\"" + s + "\""
    }

    /// The near miss among `candidates`, for "did you mean" hints.
    static func nearest(_ text: String, in candidates: [String]) -> String? {
        let scored = candidates.map { ($0, editDistance($0.lowercased(), text.lowercased())) }
        guard let best = scored.min(by: { $0.1 < $1.1 }), best.1 <= max(2, text.count / 3) else { return nil }
        return best.0
    }

    /// The common checks of a token, without saying anything of its value.
    static func tokenProblem(_ text: String, what: String, maxLength: Int) -> InvalidAnswer? {
        if text.isEmpty { return InvalidAnswer("\(what) is empty") }
        let n = text.utf8.count
        if n > maxLength { return InvalidAnswer("\(what) is \(n) characters long; at most \(maxLength)") }
        if text.unicodeScalars.contains(where: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }) {
            return InvalidAnswer("\(what) holds a space or a line break; copy it without them")
        }
        if !text.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) {
            return InvalidAnswer("\(what) holds a character outside printable ASCII; copy it exactly as given")
        }
        return nil
    }

    static func slackToken(_ text: String, prefix: String, what: String, whereFound: String) -> Validated<Secret> {
        if let problem = tokenProblem(text, what: "the \(what)", maxLength: 255) { return .failure(problem) }
        let shape = "a Slack \(what) is \(prefix) and 20 to 250 letters, digits and '-' (\(whereFound))"
        guard text.hasPrefix(prefix) else { return fail("this is not a Slack \(what): it does not start with \(prefix); \(shape)") }
        let body = Array(text.utf8.dropFirst(prefix.utf8.count))
        guard body.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: "-") }) else {
            return fail("this is not a Slack \(what): it holds a character other than letters, digits and '-'; \(shape)")
        }
        guard (20...250).contains(body.count) else {
            return fail("this is not a Slack \(what): it has \(body.count) characters after \(prefix); \(shape)")
        }
        return .success(Secret(text))
    }

    /// Nil for a valid DNS name, else what is wrong with it.
    static func dnsNameProblem(_ host: String) -> String? {
        if host.utf8.count > 253 { return "is longer than 253 characters" }
        for label in host.split(separator: ".", omittingEmptySubsequences: false) {
            let b = Array(label.utf8)
            if b.isEmpty { return "has an empty part between dots" }
            if b.count > 63 { return "has a part longer than 63 characters" }
            if !b.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: "-") }) {
                return "holds a character other than letters, digits, '-' and '.'"
            }
            if b.first == UInt8(ascii: "-") || b.last == UInt8(ascii: "-") { return "has a part that begins or ends with '-'" }
        }
        return nil
    }

    static func base64Decode(_ text: Substring) -> [UInt8]? {
        let b = Array(text.utf8)
        guard !b.isEmpty, b.count % 4 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(b.count / 4 * 3)
        var buffer: UInt32 = 0
        var bits = 0
        var padding = 0
        for (i, c) in b.enumerated() {
            if c == UInt8(ascii: "=") {
                guard i >= b.count - 2 else { return nil }
                padding += 1
                continue
            }
            guard padding == 0 else { return nil }
            let v: UInt32
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = UInt32(c - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): v = UInt32(c - UInt8(ascii: "a")) + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = UInt32(c - UInt8(ascii: "0")) + 52
            case UInt8(ascii: "+"): v = 62
            case UInt8(ascii: "/"): v = 63
            default: return nil
            }
            buffer = (buffer << 6) | v
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8((buffer >> UInt32(bits)) & 0xFF))
            }
        }
        return out
    }

    static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    static func isUpper(_ c: UInt8) -> Bool { c >= 0x41 && c <= 0x5A }
    static func isAlpha(_ c: UInt8) -> Bool { isUpper(c) || (c >= 0x61 && c <= 0x7A) }
    static func isAlnum(_ c: UInt8) -> Bool { isAlpha(c) || isDigit(c) }
    static func isHex(_ c: UInt8) -> Bool { isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66) }
    static func isLowerAlnumOrDash(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7A) || isDigit(c) || c == 0x2D }
    static func isBase64URL(_ c: UInt8) -> Bool { isAlnum(c) || c == UInt8(ascii: "_") || c == UInt8(ascii: "-") }
}

/// A parsed http(s) URL (what `Validators.url` accepts).
public struct WebURL: Equatable, Sendable {
    /// `http` or `https`, lower case.
    public var scheme: String
    /// Lower case; an IPv6 address without its brackets.
    public var host: String
    public var port: Int?
    /// Empty or starting with '/'.
    public var path: String

    /// Whether the host is the box itself: `localhost`, 127.0.0.0/8 or ::1.
    public var isLoopback: Bool {
        if host == "localhost" { return true }
        guard let ip = IPAddress(host) else { return false }
        return ip.isLoopback
    }
}

/// An IPv4 or IPv6 address.
public struct IPAddress: Equatable, Sendable, CustomStringConvertible {
    /// 4 bytes for IPv4, 16 for IPv6.
    public let bytes: [UInt8]
    private let text: String

    /// Parses dotted IPv4 (no leading zeros) or IPv6 (with `::` and a dotted IPv4 tail);
    /// nil for anything else, zone ids included.
    public init?(_ text: String) {
        if let v4 = IPAddress.parseIPv4(Substring(text)) {
            bytes = v4
        } else if let v6 = IPAddress.parseIPv6(Substring(text)) {
            bytes = v6
        } else {
            return nil
        }
        self.text = text
    }

    public var isIPv4: Bool { bytes.count == 4 }
    public var description: String { text }

    public var isLoopback: Bool { isIPv4 ? bytes[0] == 127 : bytes == Array(repeating: 0, count: 15) + [1] }

    /// Whether `self` is in the network of `other`/`prefix`.
    public func isInNetwork(of other: IPAddress, prefix: Int) -> Bool {
        guard bytes.count == other.bytes.count else { return false }
        var bitsLeft = prefix
        for (a, b) in zip(bytes, other.bytes) where bitsLeft > 0 {
            let mask: UInt8 = bitsLeft >= 8 ? 0xFF : ~(0xFF >> UInt8(bitsLeft))
            if a & mask != b & mask { return false }
            bitsLeft -= 8
        }
        return true
    }

    public static func == (a: IPAddress, b: IPAddress) -> Bool { a.bytes == b.bytes }

    static func parseIPv4(_ s: Substring) -> [UInt8]? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for p in parts {
            guard (1...3).contains(p.count), p.utf8.allSatisfy(Validators.isDigit), !(p.count > 1 && p.hasPrefix("0")),
                let v = UInt8(p)
            else { return nil }
            out.append(v)
        }
        return out
    }

    static func parseIPv6(_ s: Substring) -> [UInt8]? {
        guard s.utf8.count <= 45, s.utf8.allSatisfy({ Validators.isHex($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: ".") })
        else { return nil }
        func groups(_ part: Substring, allowIPv4Tail: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            var out: [UInt16] = []
            let items = part.split(separator: ":", omittingEmptySubsequences: false)
            for (i, g) in items.enumerated() {
                if allowIPv4Tail && i == items.count - 1 && g.contains(".") {
                    guard let v4 = parseIPv4(g) else { return nil }
                    out += [UInt16(v4[0]) << 8 | UInt16(v4[1]), UInt16(v4[2]) << 8 | UInt16(v4[3])]
                } else {
                    guard (1...4).contains(g.count), let v = UInt16(g, radix: 16) else { return nil }
                    out.append(v)
                }
            }
            return out
        }
        var all: [UInt16]
        if let gap = s.firstRange(of: "::") {
            let head = s[..<gap.lowerBound], tail = s[gap.upperBound...]
            guard !tail.contains("::"), let h = groups(head, allowIPv4Tail: false), let t = groups(tail, allowIPv4Tail: true),
                h.count + t.count <= 7
            else { return nil }
            all = h + Array(repeating: 0, count: 8 - h.count - t.count) + t
        } else {
            guard let g = groups(s, allowIPv4Tail: true), g.count == 8 else { return nil }
            all = g
        }
        return all.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
    }
}

/// Reads the length-prefixed fields of an SSH public key blob (RFC 4253 §6.6).
struct SSHBlobReader {
    let bytes: [UInt8]
    var offset = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func string() -> ArraySlice<UInt8>? {
        guard offset + 4 <= bytes.count else { return nil }
        let n = bytes[offset..<(offset + 4)].reduce(0) { $0 << 8 | Int($1) }
        offset += 4
        guard n >= 0, n <= bytes.count - offset else { return nil }
        defer { offset += n }
        return bytes[offset..<(offset + n)]
    }

    /// Bits of an mpint (big-endian, possibly with a leading zero byte).
    static func bitLength(_ mpint: ArraySlice<UInt8>) -> Int {
        let digits = mpint.drop { $0 == 0 }
        guard let first = digits.first else { return 0 }
        return (digits.count - 1) * 8 + (8 - first.leadingZeroBitCount)
    }
}

/// Update bundles (issue 5), the pure part: semantic versions, the signed manifest (its
/// canonical TOML bytes and a strict reader), the byte layout of a `.aibox` file (read
/// incrementally from any prefix, so that a download is checked before a payload byte is
/// used) and the policy that says whether a verified bundle may be installed on this box.
/// No I/O and no cryptography here: hashing and signatures are AIBoxSystem's (BundleIO.swift);
/// this file gets bytes and digests as values. docs/BUNDLE.md describes the format.

// MARK: - Semantic versions

/// A version as Semantic Versioning 2.0.0 defines it: `MAJOR.MINOR.PATCH[-PRE.RELEASE][+BUILD]`.
///
/// Comparison is SemVer's precedence: numbers numerically, then a pre-release is lower than
/// the release (`1.0.0-rc.1 < 1.0.0`), pre-release identifiers compare one by one (numeric
/// ones numerically and below alphanumeric ones, alphanumeric ones in ASCII order, more
/// identifiers win when all before are equal). Build metadata has no precedence: equality
/// (and hashing) ignores it too, so that `==` agrees with `<`; `description` keeps it.
public struct SemanticVersion: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// One dot-separated pre-release identifier.
    public enum Identifier: Sendable, Hashable, Comparable, CustomStringConvertible {
        case numeric(UInt64)
        case alphanumeric(String)

        public static func < (a: Identifier, b: Identifier) -> Bool {
            switch (a, b) {
            case (.numeric(let x), .numeric(let y)): return x < y
            case (.numeric, .alphanumeric): return true
            case (.alphanumeric, .numeric): return false
            case (.alphanumeric(let x), .alphanumeric(let y)): return Array(x.utf8).lexicographicallyPrecedes(Array(y.utf8))
            }
        }

        public var description: String {
            switch self {
            case .numeric(let n): return String(n)
            case .alphanumeric(let s): return s
            }
        }
    }

    public var major: UInt64
    public var minor: UInt64
    public var patch: UInt64
    public var preRelease: [Identifier]
    public var build: [String]

    /// The longest version text accepted (a manifest value, a database column).
    public static let maxLength = 128

    /// Not checked: identifiers are taken as given. Text goes through `parse`.
    public init(major: UInt64, minor: UInt64, patch: UInt64, preRelease: [Identifier] = [], build: [String] = []) {
        self.major = major
        self.minor = minor
        self.patch = patch
        self.preRelease = preRelease
        self.build = build
    }

    /// A version from its text, or nil (`parse` says why).
    public init?(_ text: String) {
        guard case .success(let v) = SemanticVersion.parse(text) else { return nil }
        self = v
    }

    public var description: String {
        var s = "\(major).\(minor).\(patch)"
        if !preRelease.isEmpty { s += "-" + preRelease.map(\.description).joined(separator: ".") }
        if !build.isEmpty { s += "+" + build.joined(separator: ".") }
        return s
    }

    public var isPreRelease: Bool { !preRelease.isEmpty }

    public static func == (a: SemanticVersion, b: SemanticVersion) -> Bool {
        a.major == b.major && a.minor == b.minor && a.patch == b.patch && a.preRelease == b.preRelease
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(major)
        hasher.combine(minor)
        hasher.combine(patch)
        hasher.combine(preRelease)
    }

    public static func < (a: SemanticVersion, b: SemanticVersion) -> Bool {
        if a.major != b.major { return a.major < b.major }
        if a.minor != b.minor { return a.minor < b.minor }
        if a.patch != b.patch { return a.patch < b.patch }
        switch (a.preRelease.isEmpty, b.preRelease.isEmpty) {
        case (true, true), (true, false): return false
        case (false, true): return true
        case (false, false): return a.preRelease.lexicographicallyPrecedes(b.preRelease)
        }
    }

    /// Parses strictly (no `v` prefix, no leading zeros, no empty identifiers, numbers that
    /// fit 64 bits). The error says which part is wrong and what a version looks like.
    public static func parse(_ text: String) -> Result<SemanticVersion, SemanticVersionError> {
        func refuse(_ why: String) -> Result<SemanticVersion, SemanticVersionError> {
            .failure(SemanticVersionError(text: text, message: why))
        }
        let bytes = Array(text.utf8)
        if bytes.isEmpty { return refuse("the version is empty; write MAJOR.MINOR.PATCH, such as 1.4.0") }
        if bytes.count > maxLength { return refuse("the version is \(bytes.count) bytes long; at most \(maxLength)") }
        if let first = bytes.first, first == UInt8(ascii: "v") || first == UInt8(ascii: "V") {
            return refuse(
                "\(quoted(text)) starts with '\(Character(Unicode.Scalar(first)))'; write the version without it, such as \(String(decoding: bytes.dropFirst(), as: UTF8.self))"
            )
        }
        var main = bytes[...]
        var buildPart: ArraySlice<UInt8>?
        if let plus = main.firstIndex(of: UInt8(ascii: "+")) {
            buildPart = main[(plus + 1)...]
            main = main[..<plus]
        }
        var prePart: ArraySlice<UInt8>?
        if let dash = main.firstIndex(of: UInt8(ascii: "-")) {
            prePart = main[(dash + 1)...]
            main = main[..<dash]
        }
        let core = main.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard core.count == 3 else {
            return refuse("\(quoted(text)) is not MAJOR.MINOR.PATCH (three numbers separated by dots, such as 1.4.0)")
        }
        var numbers: [UInt64] = []
        for (part, name) in zip(core, ["major", "minor", "patch"]) {
            guard !part.isEmpty, part.allSatisfy(isDigit) else {
                return refuse("the \(name) version \(quoted(String(decoding: part, as: UTF8.self))) is not a number")
            }
            if part.count > 1 && part.first == UInt8(ascii: "0") {
                return refuse("the \(name) version \(String(decoding: part, as: UTF8.self)) has a leading zero")
            }
            guard let n = UInt64(String(decoding: part, as: UTF8.self)) else {
                return refuse("the \(name) version \(String(decoding: part, as: UTF8.self)) is too large (at most \(UInt64.max))")
            }
            numbers.append(n)
        }
        var pre: [Identifier] = []
        if let prePart {
            for part in prePart.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false) {
                let s = String(decoding: part, as: UTF8.self)
                if part.isEmpty { return refuse("\(quoted(text)) has an empty pre-release identifier (after '-', between dots)") }
                guard part.allSatisfy(isIdentifierByte) else {
                    return refuse("the pre-release identifier \(quoted(s)) may only hold letters, digits and '-'")
                }
                if part.allSatisfy(isDigit) {
                    if part.count > 1 && part.first == UInt8(ascii: "0") {
                        return refuse("the numeric pre-release identifier \(s) has a leading zero")
                    }
                    guard let n = UInt64(s) else { return refuse("the pre-release number \(s) is too large (at most \(UInt64.max))") }
                    pre.append(.numeric(n))
                } else {
                    pre.append(.alphanumeric(s))
                }
            }
        }
        var build: [String] = []
        if let buildPart {
            for part in buildPart.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false) {
                let s = String(decoding: part, as: UTF8.self)
                if part.isEmpty { return refuse("\(quoted(text)) has an empty build identifier (after '+', between dots)") }
                guard part.allSatisfy(isIdentifierByte) else {
                    return refuse("the build identifier \(quoted(s)) may only hold letters, digits and '-'")
                }
                build.append(s)
            }
        }
        return .success(SemanticVersion(major: numbers[0], minor: numbers[1], patch: numbers[2], preRelease: pre, build: build))
    }

    private static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    private static func isIdentifierByte(_ c: UInt8) -> Bool {
        isDigit(c) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == UInt8(ascii: "-")
    }
}

public struct SemanticVersionError: Error, Equatable, Sendable, CustomStringConvertible {
    public var text: String
    public var message: String
    public var description: String { message }
}

// MARK: - Manifest

/// One image of a bundle: what slot class it is written to, and how its payload is checked.
public struct BundleImage: Sendable, Equatable {
    /// The class of slot it is for, such as `rootfs` (`[a-z0-9-]{1,32}`).
    public var slotClass: String
    /// The file name it was made from: a plain name, for messages and logs only.
    public var name: String
    public var size: UInt64
    /// 64 lower-case hex digits.
    public var sha256: String
    /// Where its payload starts, counted from the end of the header.
    public var offset: UInt64

    public init(slotClass: String, name: String, size: UInt64, sha256: String, offset: UInt64) {
        self.slotClass = slotClass
        self.name = name
        self.size = size
        self.sha256 = sha256
        self.offset = offset
    }
}

/// One problem in a manifest: where (line, key) and what would be right.
public struct BundleManifestError: Error, Equatable, Sendable, CustomStringConvertible {
    public var line: Int?
    public var column: Int?
    /// Such as `version` or `image[2].size` (images are numbered from 1).
    public var key: String?
    public var message: String

    public init(line: Int?, column: Int? = nil, key: String?, message: String) {
        self.line = line
        self.column = column
        self.key = key
        self.message = message
    }

    public var description: String {
        var s = "manifest"
        if let line {
            s += ":\(line)"
            if let column { s += ":\(column)" }
        }
        s += ": "
        if let key { s += "\(key): " }
        return s + message
    }
}

/// Every problem found in a manifest, at once.
public struct BundleManifestErrors: Error, Equatable, Sendable, CustomStringConvertible {
    public var errors: [BundleManifestError]
    public init(_ errors: [BundleManifestError]) { self.errors = errors }
    public var description: String { errors.map(\.description).joined(separator: "\n") }
    /// The first error about `key`, if any.
    public func error(at key: String) -> BundleManifestError? { errors.first { $0.key == key } }
}

/// The signed part of a bundle. Its bytes are canonical TOML (`serialized()`): the writer
/// signs exactly them and the reader accepts exactly them, so there is one text per manifest
/// and what `inspect` shows is what was signed.
///
/// ```toml
/// format = 1
/// compatible = "aibox-x86-64"
/// version = "1.4.0"
/// rollback = false
/// created = "2026-11-27T12:00:00Z"
///
/// [[image]]
/// class = "rootfs"
/// name = "rootfs.ext4"
/// size = 268435456
/// sha256 = "…64 hex digits…"
/// offset = 0
/// ```
public struct BundleManifest: Sendable, Equatable {
    /// The bundle format this code reads and writes (header and manifest).
    public static let formatVersion: UInt32 = 1
    public static let maxImages = 8
    /// 64 GiB: larger than any slot of a box, small enough that sizes never overflow.
    public static let maxImageSize: UInt64 = 64 << 30
    public static let maxNameBytes = 64
    public static let maxSlotClassBytes = 32
    public static let maxCompatibleBytes = 64
    public static let maxCreatedBytes = 64

    public var format: UInt32
    /// The box model the bundle is for (system.toml's `compatible`).
    public var compatible: String
    public var version: SemanticVersion
    /// Signed permission to install this version below the box's version floor.
    public var rollback: Bool
    /// When it was made, as text (informative; nothing decides on it).
    public var created: String
    public var images: [BundleImage]

    /// Not checked: tests build wrong manifests this way. `make` and `parse` check.
    public init(
        format: UInt32 = BundleManifest.formatVersion, compatible: String, version: SemanticVersion, rollback: Bool = false,
        created: String, images: [BundleImage]
    ) {
        self.format = format
        self.compatible = compatible
        self.version = version
        self.rollback = rollback
        self.created = created
        self.images = images
    }

    /// The bytes of all payloads together (saturating, for unchecked manifests).
    public var payloadLength: UInt64 {
        images.reduce(UInt64(0)) { sum, image in
            let (s, overflow) = sum.addingReportingOverflow(image.size)
            return overflow ? .max : s
        }
    }

    /// A checked manifest with offsets laid out in order: the way `aibox bundle create` makes one.
    public static func make(
        compatible: String, version: SemanticVersion, rollback: Bool, created: String,
        images: [(slotClass: String, name: String, size: UInt64, sha256: String)]
    ) -> Result<BundleManifest, BundleManifestErrors> {
        var laidOut: [BundleImage] = []
        var offset: UInt64 = 0
        for image in images {
            laidOut.append(
                BundleImage(slotClass: image.slotClass, name: image.name, size: image.size, sha256: image.sha256, offset: offset))
            let (next, overflow) = offset.addingReportingOverflow(image.size)
            offset = overflow ? .max : next
        }
        let manifest = BundleManifest(compatible: compatible, version: version, rollback: rollback, created: created, images: laidOut)
        // What is written is what the reader accepts: the same checks, on the same bytes.
        return parse(manifest.serialized())
    }

    // MARK: Canonical bytes

    /// The canonical TOML text: keys in a fixed order, one per line, `\n` line ends, a blank
    /// line before each `[[image]]`, strings in double quotes (`"` and `\` escaped).
    public func serialized() -> [UInt8] {
        var s = "format = \(format)\n"
        s += "compatible = \(tomlBasicString(compatible))\n"
        s += "version = \(tomlBasicString(version.description))\n"
        s += "rollback = \(rollback)\n"
        s += "created = \(tomlBasicString(created))\n"
        for image in images {
            s += "\n[[image]]\n"
            s += "class = \(tomlBasicString(image.slotClass))\n"
            s += "name = \(tomlBasicString(image.name))\n"
            s += "size = \(image.size)\n"
            s += "sha256 = \(tomlBasicString(image.sha256))\n"
            s += "offset = \(image.offset)\n"
        }
        return Array(s.utf8)
    }

    // MARK: Reading

    static let topKeys = ["format", "compatible", "version", "rollback", "created", "image"]
    static let imageKeys = ["class", "name", "size", "sha256", "offset"]

    /// Reads manifest bytes strictly. File-level problems stop at the first (size, a byte
    /// that is not printable ASCII, TOML syntax); then every problem of the content is
    /// reported at once, each with its line and key; last, the bytes must be canonical.
    public static func parse(_ bytes: [UInt8]) -> Result<BundleManifest, BundleManifestErrors> {
        func refuse(_ line: Int?, _ column: Int?, _ message: String) -> Result<BundleManifest, BundleManifestErrors> {
            .failure(BundleManifestErrors([BundleManifestError(line: line, column: column, key: nil, message: message)]))
        }
        if bytes.isEmpty { return refuse(nil, nil, "the manifest is empty") }
        if bytes.count > BundleLayout.maxManifestLength {
            return refuse(nil, nil, "the manifest is \(bytes.count) bytes; at most \(BundleLayout.maxManifestLength)")
        }
        if let bad = bytes.firstIndex(where: { !($0 == 0x0A || ($0 >= 0x20 && $0 <= 0x7E)) }) {
            let (line, column) = position(of: bad, in: bytes)
            return refuse(
                line, column,
                "the byte \(BundleLayout.hexByte(bytes[bad])) at offset \(bad) is not allowed: a manifest is printable ASCII with \\n line ends"
            )
        }
        let table: TOMLTable
        do {
            table = try TOMLTable(string: String(decoding: bytes, as: UTF8.self))
        } catch {
            return refuse(error.position.line, error.position.column, error.description)
        }
        var errors: [BundleManifestError] = []
        func problem(_ key: String?, _ line: Int?, _ message: String) {
            errors.append(BundleManifestError(line: line, key: key, message: message))
        }

        for key in table.keys where !topKeys.contains(key) {
            problem(
                key, table.line(of: key),
                "unknown key; a manifest has format, compatible, version, rollback, created and [[image]] tables")
        }

        // format
        var format = BundleManifest.formatVersion
        switch table["format"] {
        case nil: problem("format", nil, "missing; write format = \(formatVersion)")
        case .int(let n)?:
            if n != Int(formatVersion) {
                problem(
                    "format", table.line(of: "format"),
                    "format \(n) is not supported: this aibox reads bundle format \(formatVersion)\(n > Int(formatVersion) ? " (the bundle needs a newer aibox)" : "")"
                )
            } else {
                format = UInt32(n)
            }
        case let v?: problem("format", table.line(of: "format"), "must be an integer (\(formatVersion)), not \(article(v.type))")
        }

        // compatible
        var compatible = ""
        if let s = string(table, "compatible", &errors) {
            if let why = checkCompatible(s) { problem("compatible", table.line(of: "compatible"), why) } else { compatible = s }
        }

        // version
        var version = SemanticVersion(major: 0, minor: 0, patch: 0)
        if let s = string(table, "version", &errors) {
            switch SemanticVersion.parse(s) {
            case .success(let v): version = v
            case .failure(let e): problem("version", table.line(of: "version"), e.message)
            }
        }

        // rollback
        var rollback = false
        switch table["rollback"] {
        case nil: problem("rollback", nil, "missing; write rollback = false (or true for a bundle that may go below the version floor)")
        case .bool(let b)?: rollback = b
        case let v?: problem("rollback", table.line(of: "rollback"), "must be true or false, not \(article(v.type))")
        }

        // created
        var created = ""
        if let s = string(table, "created", &errors) {
            if let why = checkCreated(s) { problem("created", table.line(of: "created"), why) } else { created = s }
        }

        // images
        var images: [BundleImage] = []
        let imageLine = table.line(of: "image")
        switch table["image"] {
        case nil:
            problem("image", nil, "no [[image]] table; a bundle holds 1 to \(maxImages) images")
        case .array(let items)? where items.allSatisfy({ $0.table != nil }):
            if items.isEmpty { problem("image", imageLine, "no image; a bundle holds 1 to \(maxImages) images") }
            if items.count > maxImages {
                problem("image", imageLine, "\(items.count) images; a bundle holds at most \(maxImages)")
            }
            var expectedOffset: UInt64? = 0
            for (n, item) in items.prefix(maxImages).enumerated() {
                guard let t = item.table else { continue }
                let path = "image[\(n + 1)]"
                let image = parseImage(t, path: path, tableLine: imageLine, expectedOffset: expectedOffset, errors: &errors)
                if let image {
                    if let dup = images.firstIndex(where: { $0.slotClass == image.slotClass }) {
                        problem(
                            path + ".class", t.line(of: "class"),
                            "the class \(quoted(image.slotClass)) is already image \(dup + 1)'s; each slot class appears once")
                    }
                    if let dup = images.firstIndex(where: { $0.name == image.name }) {
                        problem(path + ".name", t.line(of: "name"), "the name \(quoted(image.name)) is already image \(dup + 1)'s")
                    }
                    images.append(image)
                    expectedOffset = image.offset + image.size
                } else {
                    expectedOffset = nil
                }
            }
        case let v?:
            problem("image", imageLine, "must be [[image]] tables (an array of tables), not \(article(v.type))")
        }

        if !errors.isEmpty { return .failure(BundleManifestErrors(errors)) }
        let manifest = BundleManifest(
            format: format, compatible: compatible, version: version, rollback: rollback, created: created, images: images)
        if let difference = canonicalDifference(bytes, manifest.serialized()) {
            return .failure(BundleManifestErrors([difference]))
        }
        return .success(manifest)
    }

    private static func parseImage(
        _ t: TOMLTable, path: String, tableLine: Int?, expectedOffset: UInt64?, errors: inout [BundleManifestError]
    ) -> BundleImage? {
        let before = errors.count
        func problem(_ key: String, _ message: String) {
            errors.append(BundleManifestError(line: t.line(of: key) ?? firstLine(t) ?? tableLine, key: path + "." + key, message: message))
        }
        for key in t.keys where !imageKeys.contains(key) {
            problem(key, "unknown key; an image has class, name, size, sha256 and offset")
        }
        func text(_ key: String) -> String? {
            switch t[key] {
            case nil:
                problem(key, "missing")
                return nil
            case .string(let s)?: return s
            case let v?:
                problem(key, "must be a string, not \(article(v.type))")
                return nil
            }
        }
        func number(_ key: String) -> Int? {
            switch t[key] {
            case nil:
                problem(key, "missing")
                return nil
            case .int(let n)?: return n
            case let v?:
                problem(key, "must be an integer, not \(article(v.type))")
                return nil
            }
        }
        let slotClass = text("class")
        if let slotClass, let why = checkSlotClass(slotClass) { problem("class", why) }
        let name = text("name")
        if let name, let why = checkName(name) { problem("name", why) }
        var size: UInt64?
        if let n = number("size") {
            if n <= 0 {
                problem("size", "\(n) is not a size: an image has at least 1 byte")
            } else if UInt64(n) > maxImageSize {
                problem("size", "\(n) bytes is more than an image may have (\(maxImageSize) bytes, 64 GiB)")
            } else {
                size = UInt64(n)
            }
        }
        let digest = text("sha256")
        if let digest, let why = checkSHA256(digest) { problem("sha256", why) }
        var offset: UInt64?
        if let n = number("offset") {
            if n < 0 {
                problem("offset", "\(n) is negative; offsets count bytes from the end of the header")
            } else if let expectedOffset, UInt64(n) != expectedOffset {
                problem(
                    "offset",
                    "\(n) is not where this payload starts: payloads follow each other in manifest order without gaps, so this one is at \(expectedOffset)"
                )
            } else {
                offset = UInt64(n)
            }
        }
        guard errors.count == before, let slotClass, let name, let size, let digest, let offset else { return nil }
        return BundleImage(slotClass: slotClass, name: name, size: size, sha256: digest, offset: offset)
    }

    private static func firstLine(_ t: TOMLTable) -> Int? { t.keys.compactMap { t.line(of: $0) }.min() }

    private static func string(_ table: TOMLTable, _ key: String, _ errors: inout [BundleManifestError]) -> String? {
        switch table[key] {
        case nil:
            errors.append(BundleManifestError(line: nil, key: key, message: "missing"))
            return nil
        case .string(let s)?: return s
        case let v?:
            errors.append(BundleManifestError(line: table.line(of: key), key: key, message: "must be a string, not \(article(v.type))"))
            return nil
        }
    }

    /// nil when `bytes` are the canonical text, else where they first differ.
    private static func canonicalDifference(_ bytes: [UInt8], _ canonical: [UInt8]) -> BundleManifestError? {
        if bytes == canonical { return nil }
        let given = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
        let wanted = canonical.split(separator: 0x0A, omittingEmptySubsequences: false)
        let advice = "the manifest must be byte for byte as aibox bundle create writes it (docs/BUNDLE.md)"
        for n in 0..<max(given.count, wanted.count) {
            let g = n < given.count ? String(decoding: given[n], as: UTF8.self) : nil
            let w = n < wanted.count ? String(decoding: wanted[n], as: UTF8.self) : nil
            if g == w { continue }
            let message: String
            switch (g, w) {
            case (let g?, let w?):
                message = "the line \(quoted(g)) is not in canonical form; expected \(quoted(w)): \(advice)"
            case (let g?, nil):
                message = "\(g.isEmpty ? "an empty line" : "the line \(quoted(g))") after the end of the canonical text: \(advice)"
            case (nil, let w?) where w.isEmpty:
                return BundleManifestError(line: n, key: nil, message: "the last line has no line end (\\n): \(advice)")
            case (nil, let w?):
                message = "the text ends before the line \(quoted(w)): \(advice)"
            case (nil, nil):
                continue
            }
            return BundleManifestError(line: n + 1, key: nil, message: message)
        }
        return BundleManifestError(line: nil, key: nil, message: advice)
    }

    // MARK: Value checks (nil when right, else what is wrong and what would be right)

    public static func checkSlotClass(_ s: String) -> String? {
        let b = Array(s.utf8)
        if b.isEmpty || b.count > maxSlotClassBytes
            || !b.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "-") })
        {
            return "\(quoted(s)) is not a slot class: use 1 to \(maxSlotClassBytes) of a-z, 0-9 and '-' (such as rootfs)"
        }
        return nil
    }

    /// A plain file name: no directory, not `.`/`..` or hidden, ASCII letters, digits and
    /// `._+-` only, at most 64 bytes. It names the image in messages; nothing is ever
    /// opened by it, but a name that could be a path is refused all the same.
    public static func checkName(_ s: String) -> String? {
        let b = Array(s.utf8)
        if b.isEmpty { return "the name is empty" }
        if b.contains(UInt8(ascii: "/")) || b.contains(UInt8(ascii: "\\")) {
            return "\(quoted(s)) is a path: an image name is a plain file name, without '/' (or '\\')"
        }
        if s == "." || s == ".." { return "\(quoted(s)) is not a file name" }
        if b.count > maxNameBytes { return "the name is \(b.count) bytes long; at most \(maxNameBytes)" }
        if let n = b.firstIndex(where: { $0 < 0x20 || $0 == 0x7F }) {
            return "the name holds the control character \(BundleLayout.hexByte(b[n])) at byte \(n)"
        }
        if let n = b.firstIndex(where: { $0 >= 0x80 }) {
            return "the name holds the non-ASCII byte \(BundleLayout.hexByte(b[n])) at byte \(n); use letters, digits and . _ + -"
        }
        if b[0] == UInt8(ascii: ".") { return "\(quoted(s)) starts with '.'; an image name is not hidden" }
        let allowed: (UInt8) -> Bool = {
            ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: ".")
                || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-")
        }
        if let n = b.firstIndex(where: { !allowed($0) }) {
            return "the name holds \(quoted(String(Character(Unicode.Scalar(b[n]))))) at byte \(n); use letters, digits and . _ + -"
        }
        return nil
    }

    public static func checkCompatible(_ s: String) -> String? {
        let b = Array(s.utf8)
        let allowed: (UInt8) -> Bool = {
            ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: ".")
                || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-")
        }
        if b.isEmpty || b.count > maxCompatibleBytes || !b.allSatisfy(allowed) || !(b[0] != UInt8(ascii: ".") && b[0] != UInt8(ascii: "-"))
        {
            return
                "\(quoted(s)) is not a compatible string: 1 to \(maxCompatibleBytes) letters, digits and . _ + -, starting with a letter or digit (such as aibox-x86-64)"
        }
        return nil
    }

    public static func checkCreated(_ s: String) -> String? {
        let b = Array(s.utf8)
        if b.isEmpty { return "empty; write when the bundle was made, such as 2026-11-27T12:00:00Z" }
        if b.count > maxCreatedBytes { return "\(b.count) bytes long; at most \(maxCreatedBytes)" }
        if let n = b.firstIndex(where: { $0 < 0x20 || $0 > 0x7E }) {
            return "the byte \(BundleLayout.hexByte(b[n])) at \(n) is not printable ASCII"
        }
        return nil
    }

    public static func checkSHA256(_ s: String) -> String? {
        let b = Array(s.utf8)
        if b.count != 64 || !b.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) {
            return "\(quoted(s.count > 80 ? String(s.prefix(80)) + "…" : s)) is not a SHA-256 digest: 64 lower-case hex digits"
        }
        return nil
    }

    static func position(of offset: Int, in bytes: [UInt8]) -> (line: Int, column: Int) {
        var line = 1, lineStart = 0
        for i in 0..<min(offset, bytes.count) where bytes[i] == 0x0A {
            line += 1
            lineStart = i + 1
        }
        return (line, offset - lineStart + 1)
    }
}

/// "an integer", "a string", … for a message.
private func article(_ type: TOMLType) -> String {
    switch type {
    case .int, .array: return "an \(type)"
    default: return "a \(type)"
    }
}

/// A string in double quotes for a message.
private func quoted(_ s: String) -> String { "\"" + s + "\"" }

// MARK: - Byte layout

/// One signature of a bundle: which key (the SHA-256 of its 32 raw public-key bytes) and
/// the Ed25519 signature over the exact manifest bytes.
public struct BundleSignature: Sendable, Equatable {
    public var fingerprint: [UInt8]
    public var signature: [UInt8]

    public init(fingerprint: [UInt8], signature: [UInt8]) {
        self.fingerprint = fingerprint
        self.signature = signature
    }
}

/// The header of a bundle as read: nothing in it is trusted until a signature is verified.
public struct BundleHeader: Sendable, Equatable {
    public var format: UInt32
    /// The exact manifest bytes, as signed.
    public var manifest: [UInt8]
    public var signatures: [BundleSignature]
    /// Where the payload area starts: 18 + manifest length + 96 × signatures.
    public var length: Int
}

/// A problem in the header's bytes, at an offset of the bundle.
public struct BundleFormatError: Error, Equatable, Sendable, CustomStringConvertible {
    public var offset: Int
    public var message: String
    public var description: String { "at byte \(offset): \(message)" }
}

/// What a prefix of a bundle tells about its header.
public enum BundleHeaderParse: Equatable, Sendable {
    /// The prefix holds no complete header yet: give at least this many bytes (in all).
    case needMore(Int)
    /// The header is complete (any bytes beyond `header.length` are payload).
    case header(BundleHeader)
    /// These bytes are not a bundle header this code reads.
    case invalid(BundleFormatError)
}

/// The byte layout of a `.aibox` file (all integers big-endian):
///
/// | offset | bytes | field |
/// |---|---|---|
/// | 0 | 8 | magic `AIBOXBDL` |
/// | 8 | 4 | format version (1) |
/// | 12 | 4 | manifest length M (1 … 65536) |
/// | 16 | M | manifest (canonical TOML) |
/// | 16+M | 2 | signature count S (1 … 4) |
/// | 18+M | 96·S | S × (32-byte key fingerprint, 64-byte Ed25519 signature) |
/// | H = 18+M+96·S | Σ sizes | the payloads, image i at H + offset(i), in manifest order |
///
/// Nothing follows the last payload.
public enum BundleLayout {
    public static let magic: [UInt8] = Array("AIBOXBDL".utf8)
    public static let formatVersion: UInt32 = BundleManifest.formatVersion
    /// Magic, format and manifest length.
    public static let fixedLength = 16
    public static let maxManifestLength = 64 << 10
    public static let maxSignatures = 4
    public static let fingerprintLength = 32
    public static let signatureLength = 64
    public static let signatureEntryLength = 96
    public static let maxHeaderLength = fixedLength + maxManifestLength + 2 + maxSignatures * signatureEntryLength

    public static func headerLength(manifestLength: Int, signatureCount: Int) -> Int {
        fixedLength + manifestLength + 2 + signatureCount * signatureEntryLength
    }

    /// The header's bytes. Not checked (tests build wrong headers); lengths must fit their
    /// fields and each fingerprint/signature must have 32/64 bytes.
    public static func encodeHeader(manifest: [UInt8], signatures: [BundleSignature], format: UInt32 = formatVersion) -> [UInt8] {
        precondition(manifest.count <= UInt32.max && signatures.count <= UInt16.max)
        var out = magic
        out.reserveCapacity(headerLength(manifestLength: manifest.count, signatureCount: signatures.count))
        appendUInt32(format, to: &out)
        appendUInt32(UInt32(manifest.count), to: &out)
        out += manifest
        out.append(UInt8(truncatingIfNeeded: signatures.count >> 8))
        out.append(UInt8(truncatingIfNeeded: signatures.count))
        for s in signatures {
            precondition(s.fingerprint.count == fingerprintLength && s.signature.count == signatureLength)
            out += s.fingerprint
            out += s.signature
        }
        return out
    }

    /// Reads the header from the first bytes of a bundle, as many as have arrived. Wrong
    /// bytes are reported as soon as they are seen (a wrong magic after its first byte), a
    /// length beyond the limits before the bytes it announces are waited for.
    public static func parseHeader(_ prefix: [UInt8]) -> BundleHeaderParse {
        parseHeader(prefix[...])
    }

    public static func parseHeader(_ prefix: ArraySlice<UInt8>) -> BundleHeaderParse {
        let p = prefix
        let base = p.startIndex
        let n = p.count
        func byte(_ i: Int) -> UInt8 { p[base + i] }
        func u32(_ at: Int) -> UInt32 {
            UInt32(byte(at)) << 24 | UInt32(byte(at + 1)) << 16 | UInt32(byte(at + 2)) << 8 | UInt32(byte(at + 3))
        }
        for i in 0..<min(n, magic.count) where byte(i) != magic[i] {
            let seen = (0..<min(n, magic.count)).map { byte($0) }
            return .invalid(
                BundleFormatError(
                    offset: i, message: "not an aibox bundle: it starts with \(describe(seen)), an aibox bundle with \"AIBOXBDL\""))
        }
        guard n >= 12 else { return .needMore(fixedLength) }
        let format = u32(8)
        if format != formatVersion {
            let newer = format > formatVersion ? "; it needs a newer aibox" : ""
            return .invalid(
                BundleFormatError(
                    offset: 8, message: "bundle format \(format) is not supported: this aibox reads format \(formatVersion)\(newer)"))
        }
        guard n >= fixedLength else { return .needMore(fixedLength) }
        let manifestLength = u32(12)
        if manifestLength == 0 || manifestLength > UInt32(maxManifestLength) {
            return .invalid(
                BundleFormatError(
                    offset: 12, message: "the manifest length is \(manifestLength) bytes; a manifest has 1 to \(maxManifestLength) bytes"))
        }
        let m = Int(manifestLength)
        let countAt = fixedLength + m
        guard n >= countAt + 2 else { return .needMore(countAt + 2) }
        let count = Int(byte(countAt)) << 8 | Int(byte(countAt + 1))
        if count == 0 || count > maxSignatures {
            return .invalid(
                BundleFormatError(
                    offset: countAt,
                    message: "the signature count is \(count); a bundle carries 1 to \(maxSignatures) signatures"))
        }
        let length = headerLength(manifestLength: m, signatureCount: count)
        guard n >= length else { return .needMore(length) }
        var signatures: [BundleSignature] = []
        for k in 0..<count {
            let at = base + countAt + 2 + k * signatureEntryLength
            let s = BundleSignature(
                fingerprint: Array(p[at..<(at + fingerprintLength)]),
                signature: Array(p[(at + fingerprintLength)..<(at + signatureEntryLength)]))
            if let earlier = signatures.firstIndex(where: { $0.fingerprint == s.fingerprint }) {
                return .invalid(
                    BundleFormatError(
                        offset: at - base,
                        message: "signature \(k + 1) is by the same key as signature \(earlier + 1) (\(hex(s.fingerprint)))"))
            }
            signatures.append(s)
        }
        return .header(
            BundleHeader(
                format: format, manifest: Array(p[(base + fixedLength)..<(base + countAt)]), signatures: signatures, length: length))
    }

    /// Where image `index`'s payload lies in the bundle.
    public static func payloadRange(of image: BundleImage, headerLength: Int) -> Range<UInt64> {
        let start = UInt64(headerLength) + image.offset
        return start..<(start + image.size)
    }

    /// The length of the whole bundle.
    public static func totalLength(headerLength: Int, manifest: BundleManifest) -> UInt64 {
        UInt64(headerLength) + manifest.payloadLength
    }

    /// Which part of the header holds byte `offset`, as far as the lengths are known.
    public static func headerField(at offset: Int, manifestLength: Int?, signatureCount: Int?) -> String {
        switch offset {
        case 0..<8: return "the magic (bytes 0 to 7)"
        case 8..<12: return "the format version (bytes 8 to 11)"
        case 12..<16: return "the manifest length (bytes 12 to 15)"
        default: break
        }
        guard let m = manifestLength else { return "the header" }
        if offset < fixedLength + m { return "the manifest (bytes 16 to \(fixedLength + m - 1))" }
        let countAt = fixedLength + m
        if offset < countAt + 2 { return "the signature count (bytes \(countAt) to \(countAt + 1))" }
        let k = (offset - countAt - 2) / signatureEntryLength
        if let c = signatureCount, k >= c { return "the header" }
        let start = countAt + 2 + k * signatureEntryLength
        return "signature \(k + 1) (bytes \(start) to \(start + signatureEntryLength - 1))"
    }

    /// What a bundle that ends after `length` bytes lacks: where the end falls (in the
    /// header, or in which image's payload and how much of it is there).
    public static func describeEnd(at length: UInt64, prefix: [UInt8]) -> String {
        var manifestLength: Int?
        var signatureCount: Int?
        if prefix.count >= fixedLength {
            let m = Int(prefix[12]) << 24 | Int(prefix[13]) << 16 | Int(prefix[14]) << 8 | Int(prefix[15])
            if m <= maxManifestLength { manifestLength = m }
            if let m = manifestLength, prefix.count >= fixedLength + m + 2 {
                signatureCount = Int(prefix[fixedLength + m]) << 8 | Int(prefix[fixedLength + m + 1])
            }
        }
        var s =
            "the bundle ends after \(length) bytes, inside \(headerField(at: Int(length), manifestLength: manifestLength, signatureCount: signatureCount))"
        if let m = manifestLength, let c = signatureCount {
            s += "; its header has \(headerLength(manifestLength: m, signatureCount: c)) bytes"
        }
        return s
    }

    /// The same for an end in the payload area of a bundle whose header is known.
    public static func describeEnd(at length: UInt64, headerLength: Int, manifest: BundleManifest) -> String {
        let total = totalLength(headerLength: headerLength, manifest: manifest)
        for (n, image) in manifest.images.enumerated() {
            let range = payloadRange(of: image, headerLength: headerLength)
            if length >= range.lowerBound && length < range.upperBound {
                return
                    "the bundle ends after \(length) bytes, inside the payload of image \(n + 1) \(quoted(image.name)) (\(image.slotClass), bytes \(range.lowerBound) to \(range.upperBound - 1)): \(length - range.lowerBound) of its \(image.size) bytes are there; the whole bundle has \(total) bytes"
            }
        }
        return "the bundle has \(length) bytes; its manifest says \(total)"
    }

    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `0x0A`.
    public static func hexByte(_ b: UInt8) -> String {
        let h = hex([b]).uppercased()
        return "0x" + h
    }

    /// Bytes for a message: hex, and the text when printable.
    static func describe(_ bytes: [UInt8]) -> String {
        let text = bytes.allSatisfy { $0 >= 0x20 && $0 <= 0x7E } ? " (\(quoted(String(decoding: bytes, as: UTF8.self))))" : ""
        return bytes.map { hex([$0]) }.joined(separator: " ") + text
    }

    private static func appendUInt32(_ v: UInt32, to out: inout [UInt8]) {
        out += [
            UInt8(truncatingIfNeeded: v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8),
            UInt8(truncatingIfNeeded: v),
        ]
    }
}

// MARK: - Policy

/// Why a verified bundle may be installed.
public enum UpdateDecision: String, Sendable, Equatable {
    /// Newer than the floor, or the box has no floor yet.
    case install
    /// The same version as the floor (build metadata aside): installed again, e.g. to repair a slot.
    case reinstall
    /// Older than the floor, and the bundle is signed as a rollback.
    case rollback
}

/// Why a verified bundle is not installed on this box.
public struct UpdateRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Reason: String, Sendable, Equatable {
        case incompatible
        case downgrade
    }
    public var reason: Reason
    public var message: String
    public var description: String { message }
}

/// The checks made on a verified manifest before a slot is touched.
public enum UpdatePolicy {
    /// `compatible` must equal the box's (exactly, case included). A version below `floor`
    /// (the lowest version the box still accepts, kept in its database) is refused unless
    /// the manifest's signed `rollback = true` allows it; the same version is a reinstall.
    public static func check(_ manifest: BundleManifest, compatible: String, floor: SemanticVersion?) -> Result<
        UpdateDecision, UpdateRefusal
    > {
        if manifest.compatible != compatible {
            return .failure(
                UpdateRefusal(
                    reason: .incompatible,
                    message:
                        "the bundle is for \(quoted(manifest.compatible)), this box is \(quoted(compatible)) (compatible in system.toml): it was not installed"
                ))
        }
        guard let floor else { return .success(.install) }
        if manifest.version > floor { return .success(.install) }
        if manifest.version == floor { return .success(.reinstall) }
        if manifest.rollback { return .success(.rollback) }
        return .failure(
            UpdateRefusal(
                reason: .downgrade,
                message:
                    "version \(manifest.version) is older than \(floor), the lowest version this box accepts: an older version is installed only from a bundle signed as a rollback (aibox bundle create --rollback)"
            ))
    }
}

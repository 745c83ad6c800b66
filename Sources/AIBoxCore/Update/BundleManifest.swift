// Update bundles (docs/BUNDLE.md), pure part: the signed manifest — its canonical TOML
// bytes (exactly what is signed) and a strict reader. Digests arrive as values; hashing and
// signatures are AIBoxSystem's (BundleKeys.swift, BundleStreamVerifier.swift).

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
            let (line, column) = ByteText.position(of: bad, in: bytes)
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
}

/// "an integer", "a string", … for a message.
private func article(_ type: TOMLType) -> String {
    switch type {
    case .int, .array: return "an \(type)"
    default: return "a \(type)"
    }
}

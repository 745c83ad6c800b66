// Update bundles (docs/BUNDLE.md), pure part: the version a bundle carries and the floor
// compares against. No I/O here.

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

import Foundation
import Testing

@testable import AIBoxCore

/// Digests of the right shape; nothing is hashed here.
enum BundleFixtures {
    static let digestA = String(repeating: "a", count: 64)
    static let digestB = String(repeating: "0123456789abcdef", count: 4)

    static func manifest(rollback: Bool = false, version: String = "1.4.0") throws -> BundleManifest {
        let v = try #require(SemanticVersion(version))
        return try BundleManifest.make(
            compatible: "aibox-x86-64", version: v, rollback: rollback, created: "2026-11-27T12:00:00Z",
            images: [("rootfs", "rootfs.ext4", 268_435_456, digestA), ("data", "data.img", 4096, digestB)]
        ).get()
    }

    /// The canonical text of `manifest()`.
    static let canonical = """
        format = 1
        compatible = "aibox-x86-64"
        version = "1.4.0"
        rollback = false
        created = "2026-11-27T12:00:00Z"

        [[image]]
        class = "rootfs"
        name = "rootfs.ext4"
        size = 268435456
        sha256 = "\(digestA)"
        offset = 0

        [[image]]
        class = "data"
        name = "data.img"
        size = 4096
        sha256 = "\(digestB)"
        offset = 268435456

        """

    /// Parses text that must fail; the errors.
    static func errors(_ text: String) -> [BundleManifestError] {
        switch BundleManifest.parse(Array(text.utf8)) {
        case .success(let m): Issue.record("accepted: \(m)"); return []
        case .failure(let e): return e.errors
        }
    }

    /// Whether `text` is accepted.
    static func parses(_ text: String) -> Bool {
        if case .success = BundleManifest.parse(Array(text.utf8)) { return true }
        return false
    }

    /// A manifest text with one image; values in `top`/`image` replace the defaults (an
    /// empty value leaves the key out); the `extra` texts are appended.
    static func text(top: [String: String] = [:], image: [String: String] = [:], extraTop: String = "", extraImage: String = "") -> String {
        func value(_ dict: [String: String], _ key: String, _ fallback: String) -> String? {
            if let v = dict[key] { return v.isEmpty ? nil : v }
            return fallback
        }
        var s = ""
        for (k, d) in [
            ("format", "1"), ("compatible", "\"aibox-x86-64\""), ("version", "\"1.4.0\""), ("rollback", "false"),
            ("created", "\"2026-11-27T12:00:00Z\""),
        ] {
            if let v = value(top, k, d) { s += "\(k) = \(v)\n" }
        }
        s += extraTop
        s += "\n[[image]]\n"
        for (k, d) in [
            ("class", "\"rootfs\""), ("name", "\"rootfs.ext4\""), ("size", "1024"), ("sha256", "\"\(digestA)\""), ("offset", "0"),
        ] {
            if let v = value(image, k, d) { s += "\(k) = \(v)\n" }
        }
        s += extraImage
        return s
    }
}

@Suite("Bundle: semantic versions") struct BundleSemanticVersionTests {
    @Test func parsesAndPrintsWhatItRead() throws {
        for text in [
            "0.0.0", "1.4.0", "10.20.30", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-0.3.7", "1.0.0-x.7.z.92", "1.0.0-x-y-z.--",
            "1.0.0+20130313144700", "1.0.0-beta+exp.sha.5114f85", "1.0.0+21AF26D3---117B344092BD", "18446744073709551615.0.0",
        ] {
            let v = try #require(SemanticVersion(text), "\(text)")
            #expect(v.description == text)
        }
        let v = try SemanticVersion.parse("1.2.3-rc.1+build.7").get()
        #expect(v.major == 1 && v.minor == 2 && v.patch == 3)
        #expect(v.preRelease == [.alphanumeric("rc"), .numeric(1)])
        #expect(v.build == ["build", "7"])
        #expect(v.isPreRelease)
    }

    @Test func refusesWhatIsNotSemVerAndSaysWhy() {
        let cases: [(String, String)] = [
            ("", "the version is empty"),
            ("1.2", "is not MAJOR.MINOR.PATCH"),
            ("1.2.3.4", "is not MAJOR.MINOR.PATCH"),
            ("v1.2.3", "starts with 'v'; write the version without it, such as 1.2.3"),
            ("01.2.3", "the major version 01 has a leading zero"),
            ("1.02.3", "the minor version 02 has a leading zero"),
            ("1.2.x", "the patch version \"x\" is not a number"),
            ("1..3", "the minor version \"\" is not a number"),
            ("1.2.3-", "has an empty pre-release identifier"),
            ("1.2.3-a..b", "has an empty pre-release identifier"),
            ("1.2.3-01", "the numeric pre-release identifier 01 has a leading zero"),
            ("1.2.3-a_b", "the pre-release identifier \"a_b\" may only hold letters, digits and '-'"),
            ("1.2.3+", "has an empty build identifier"),
            ("1.2.3+a+b", "the build identifier \"a+b\" may only hold"),
            (" 1.2.3", "the major version \" 1\" is not a number"),
            ("18446744073709551616.0.0", "the major version 18446744073709551616 is too large"),
            ("1.0.0-18446744073709551616", "the pre-release number 18446744073709551616 is too large"),
            ("1.0.0-" + String(repeating: "a", count: 130), "bytes long; at most 128"),
        ]
        for (text, expected) in cases {
            switch SemanticVersion.parse(text) {
            case .success(let v): Issue.record("\"\(text)\" was accepted as \(v)")
            case .failure(let e): #expect(e.message.contains(expected), "\"\(text)\": \(e.message)")
            }
        }
    }

    @Test func precedenceIsSemVers() throws {
        // The order of semver.org §11, and numbers compared as numbers.
        let ordered = [
            "0.9.9", "1.0.0-0", "1.0.0-1", "1.0.0-2", "1.0.0-10", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
            "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.9.0", "1.10.0", "1.11.0", "2.0.0-rc.1", "2.0.0",
            "10.0.0",
        ].map { SemanticVersion($0)! }
        for i in ordered.indices {
            for j in ordered.indices {
                #expect((ordered[i] < ordered[j]) == (i < j), "\(ordered[i]) < \(ordered[j])")
                #expect((ordered[i] == ordered[j]) == (i == j), "\(ordered[i]) == \(ordered[j])")
            }
        }
        #expect(ordered.shuffled().sorted() == ordered)
        // Upper-case sorts before lower-case (ASCII).
        #expect(SemanticVersion("1.0.0-Beta")! < SemanticVersion("1.0.0-alpha")!)
    }

    @Test func buildMetadataHasNoPrecedence() throws {
        let a = try #require(SemanticVersion("1.0.0+build.1"))
        let b = try #require(SemanticVersion("1.0.0+build.2"))
        #expect(a == b)
        #expect(!(a < b) && !(b < a))
        #expect(Set([a, b]).count == 1)
        #expect(a.description != b.description)
    }
}

@Suite("Bundle: manifest") struct BundleManifestTests {
    @Test func canonicalBytesAreStable() throws {
        let m = try BundleFixtures.manifest()
        #expect(String(decoding: m.serialized(), as: UTF8.self) == BundleFixtures.canonical)
        #expect(m.serialized() == m.serialized())
        #expect(m.images.map(\.offset) == [0, 268_435_456])
        #expect(m.payloadLength == 268_435_456 + 4096)
    }

    @Test func roundTrips() throws {
        let m = try BundleFixtures.manifest(rollback: true, version: "2.0.0-rc.1+b.5")
        let again = try BundleManifest.parse(m.serialized()).get()
        #expect(again == m)
        #expect(again.version.description == "2.0.0-rc.1+b.5")
        #expect(again.rollback)
        #expect(again.serialized() == m.serialized())
        // Quotes and backslashes in the free text survive, escaped.
        var quoted = m
        quoted.created = "made \"by\" CI \\ job 7"
        let text = String(decoding: quoted.serialized(), as: UTF8.self)
        #expect(text.contains(#"created = "made \"by\" CI \\ job 7""#))
        #expect(try BundleManifest.parse(quoted.serialized()).get() == quoted)
    }

    @Test func everyProblemOfTheContentAtOnceWithLineAndKey() {
        let text = """
            format = 1
            compatible = "aibox x86"
            version = "v1.4"
            rollback = "no"
            created = "2026-11-27"
            colour = "blue"

            [[image]]
            class = "RootFS"
            name = "../etc/passwd"
            size = 0
            sha256 = "ABC"
            offset = 0
            mode = 420

            """
        let errors = BundleFixtures.errors(text)
        func at(_ key: String) -> BundleManifestError? { errors.first { $0.key == key } }
        #expect(errors.count == 9, "\(errors)")
        #expect(at("compatible")?.line == 2)
        #expect(at("compatible")?.message.contains("is not a compatible string") == true)
        #expect(at("version")?.line == 3)
        #expect(at("version")?.message.contains("starts with 'v'") == true)
        #expect(at("rollback")?.line == 4)
        #expect(at("rollback")?.message == "must be true or false, not a string")
        #expect(at("colour")?.line == 6)
        #expect(at("colour")?.message.hasPrefix("unknown key") == true)
        #expect(at("image[1].class")?.line == 9)
        #expect(at("image[1].name")?.line == 10)
        #expect(at("image[1].name")?.message.contains("is a path") == true)
        #expect(at("image[1].size")?.line == 11)
        #expect(at("image[1].size")?.message == "0 is not a size: an image has at least 1 byte")
        #expect(at("image[1].sha256")?.line == 12)
        #expect(at("image[1].mode")?.line == 14)
        #expect(at("image[1].mode")?.description.hasPrefix("manifest:14: image[1].mode: unknown key") == true)
    }

    @Test func missingKeysAreAllNamed() {
        let errors = BundleFixtures.errors(
            BundleFixtures.text(top: ["compatible": "", "version": "", "rollback": ""], image: ["sha256": "", "offset": ""]))
        #expect(Set(errors.compactMap(\.key)) == ["compatible", "version", "rollback", "image[1].sha256", "image[1].offset"], "\(errors)")
        #expect(errors.first { $0.key == "rollback" }?.message.hasPrefix("missing") == true)
        // An image's missing key points at the image.
        #expect(errors.first { $0.key == "image[1].sha256" }?.line == 5)
    }

    @Test func imageNamesThatCouldBePathsOrWorse() {
        let cases: [(String, String)] = [
            (#""../etc/passwd""#, #""../etc/passwd" is a path: an image name is a plain file name, without '/'"#),
            (#""rootfs/../x""#, "is a path"),
            (#""/rootfs.ext4""#, "is a path"),
            (#""a\\b""#, "is a path"),
            (#""..""#, #"".." is not a file name"#),
            (#"".""#, #""." is not a file name"#),
            (#"".hidden""#, "starts with '.'"),
            (#""""#, "the name is empty"),
            (#""tab\there""#, "the control character 0x09 at byte 3"),
            (#""nul\u0000""#, "the control character 0x00 at byte 3"),
            (#""new\nline""#, "the control character 0x0A at byte 3"),
            (#""caf\u00e9.img""#, "the non-ASCII byte 0xC3 at byte 3"),
            (#""with space.img""#, #"holds " " at byte 4"#),
            (#""star*.img""#, #"holds "*" at byte 4"#),
            ("\"" + String(repeating: "n", count: 65) + "\"", "the name is 65 bytes long; at most 64"),
        ]
        for (value, expected) in cases {
            let errors = BundleFixtures.errors(BundleFixtures.text(image: ["name": value]))
            #expect(errors.count == 1 && errors.first?.key == "image[1].name", "\(value): \(errors)")
            #expect(errors.first?.line == 9, "\(value)")
            #expect(errors.first?.message.contains(expected) == true, "\(value): \(errors.first?.message ?? "-")")
        }
        // 64 bytes is the limit, not beyond it.
        #expect(BundleManifest.checkName(String(repeating: "n", count: 64)) == nil)
        #expect(BundleManifest.checkName("rootfs-1.2_3+x.ext4") == nil)
    }

    @Test func sizesDigestsOffsetsAndClasses() {
        let cases: [([String: String], String, String)] = [
            (["size": "-1"], "image[1].size", "-1 is not a size"),
            (["size": "68719476737"], "image[1].size", "68719476737 bytes is more than an image may have (68719476736 bytes, 64 GiB)"),
            (["size": "1.5"], "image[1].size", "must be an integer, not a float"),
            (["size": "\"1024\""], "image[1].size", "must be an integer, not a string"),
            (
                ["sha256": "\"" + String(repeating: "A", count: 64) + "\""], "image[1].sha256",
                "is not a SHA-256 digest: 64 lower-case hex digits"
            ),
            (["sha256": "\"abc\""], "image[1].sha256", "is not a SHA-256 digest"),
            (["offset": "7"], "image[1].offset", "7 is not where this payload starts"),
            (["offset": "-7"], "image[1].offset", "-7 is negative"),
            (["class": "\"root fs\""], "image[1].class", "is not a slot class: use 1 to 32 of a-z, 0-9 and '-'"),
            (["class": "\"" + String(repeating: "a", count: 33) + "\""], "image[1].class", "is not a slot class"),
            (["class": "7"], "image[1].class", "must be a string, not an integer"),
        ]
        for (image, key, expected) in cases {
            let errors = BundleFixtures.errors(BundleFixtures.text(image: image))
            #expect(errors.count == 1 && errors.first?.key == key, "\(image): \(errors)")
            #expect(errors.first?.message.contains(expected) == true, "\(image): \(errors.first?.message ?? "-")")
        }
        // The biggest size allowed.
        #expect(BundleFixtures.parses(BundleFixtures.text(image: ["size": "68719476736"])))
    }

    @Test func topLevelValues() {
        let cases: [([String: String], String, String)] = [
            (["format": "2"], "format", "format 2 is not supported: this aibox reads bundle format 1 (the bundle needs a newer aibox)"),
            (["format": "0"], "format", "format 0 is not supported"),
            (["format": "\"1\""], "format", "must be an integer (1), not a string"),
            (["compatible": "\"\""], "compatible", "is not a compatible string"),
            (["compatible": "\"-box\""], "compatible", "is not a compatible string"),
            (["compatible": "\"" + String(repeating: "b", count: 65) + "\""], "compatible", "is not a compatible string"),
            (["version": "\"1.4\""], "version", "is not MAJOR.MINOR.PATCH"),
            (["version": "1"], "version", "must be a string, not an integer"),
            (["created": "\"\""], "created", "empty"),
            (["created": "\"" + String(repeating: "c", count: 65) + "\""], "created", "65 bytes long; at most 64"),
            (["created": #""a\u0007b""#], "created", "the byte 0x07 at 1 is not printable ASCII"),
            (["created": "2026-11-27T12:00:00Z"], "created", "must be a string, not a date-time"),
        ]
        for (top, key, expected) in cases {
            let errors = BundleFixtures.errors(BundleFixtures.text(top: top))
            #expect(errors.count == 1 && errors.first?.key == key, "\(top): \(errors)")
            #expect(errors.first?.message.contains(expected) == true, "\(top): \(errors.first?.message ?? "-")")
            #expect(errors.first?.line != nil, "\(top)")
        }
    }

    @Test func imagesCountAndUniqueness() {
        // None.
        var errors = BundleFixtures.errors("format = 1\ncompatible = \"b\"\nversion = \"1.0.0\"\nrollback = false\ncreated = \"now\"\n")
        #expect(errors.map(\.key) == ["image"])
        #expect(errors.first?.message.contains("a bundle holds 1 to 8 images") == true)
        // Not an array of tables.
        errors = BundleFixtures.errors(
            BundleFixtures.text(top: [:], extraTop: "image = \"rootfs.ext4\"\n").replacingFirst("\n[[image]]", with: "\n[[x]]"))
        #expect(errors.contains { $0.key == "image" && $0.message.contains("must be [[image]] tables") }, "\(errors)")
        // Nine.
        var text = BundleFixtures.text(top: [:])
        text = String(text[..<text.range(of: "\n[[image]]")!.lowerBound])
        for n in 0..<9 {
            text +=
                "\n[[image]]\nclass = \"c\(n)\"\nname = \"n\(n)\"\nsize = 10\nsha256 = \"\(BundleFixtures.digestA)\"\noffset = \(n * 10)\n"
        }
        errors = BundleFixtures.errors(text)
        #expect(errors.map(\.key) == ["image"], "\(errors)")
        #expect(errors.first?.message == "9 images; a bundle holds at most 8")
        #expect(errors.first?.line == 7)
        // The same class or name twice.
        text = BundleFixtures.text(
            extraImage:
                "\n[[image]]\nclass = \"rootfs\"\nname = \"rootfs.ext4\"\nsize = 10\nsha256 = \"\(BundleFixtures.digestA)\"\noffset = 1024\n"
        )
        errors = BundleFixtures.errors(text)
        #expect(errors.map(\.key) == ["image[2].class", "image[2].name"], "\(errors)")
        #expect(errors.first?.message == "the class \"rootfs\" is already image 1's; each slot class appears once")
        #expect(errors.first?.line == 15)
    }

    @Test func offsetsFollowEachOther() {
        let second = { (offset: Int) in
            BundleFixtures.text(
                extraImage:
                    "\n[[image]]\nclass = \"data\"\nname = \"data.img\"\nsize = 10\nsha256 = \"\(BundleFixtures.digestA)\"\noffset = \(offset)\n"
            )
        }
        #expect(BundleFixtures.parses(second(1024)))
        for wrong in [0, 1023, 1025, 4096] {
            let errors = BundleFixtures.errors(second(wrong))
            #expect(errors.map(\.key) == ["image[2].offset"], "\(wrong): \(errors)")
            #expect(errors.first?.message.contains("so this one is at 1024") == true)
        }
    }

    @Test func fileLevelProblemsStopAtTheFirst() {
        var errors = BundleFixtures.errors("")
        #expect(errors.first?.message == "the manifest is empty")
        errors = BundleFixtures.errors(String(repeating: "#", count: 65537))
        #expect(errors.first?.message == "the manifest is 65537 bytes; at most 65536")
        errors = BundleFixtures.errors("format = 1\ncompatible = \"caf\u{e9}\"\n")
        #expect(errors.count == 1)
        #expect(errors.first?.line == 2 && errors.first?.column == 18, "\(errors)")
        #expect(errors.first?.message.contains("the byte 0xC3 at offset 28 is not allowed: a manifest is printable ASCII") == true)
        errors = BundleFixtures.errors("format = 1\r\n")
        #expect(errors.first?.message.contains("the byte 0x0D at offset 10") == true)
        errors = BundleFixtures.errors("format = 1\nversion = \"1.0.0\nrollback = false\n")
        #expect(errors.count == 1 && errors.first?.line == 2, "\(errors)")
        #expect(errors.first?.description.hasPrefix("manifest:2:") == true)
    }

    @Test func onlyTheCanonicalTextIsAccepted() throws {
        let canonical = BundleFixtures.canonical
        #expect(throws: Never.self) { try BundleManifest.parse(Array(canonical.utf8)).get() }
        let variants: [(String, Int, String)] = [
            (
                canonical.replacingFirst("format = 1", with: "format=1"), 1,
                "the line \"format=1\" is not in canonical form; expected \"format = 1\""
            ),
            (canonical.replacingFirst("version = \"1.4.0\"", with: "version = '1.4.0'"), 3, "not in canonical form"),
            ("# a comment\n" + canonical, 1, "the line \"# a comment\" is not in canonical form"),
            (canonical + "\n", 21, "an empty line after the end of the canonical text"),
            (String(canonical.dropLast()), 19, "the last line has no line end"),
            (
                canonical.replacingFirst("rollback = false\n", with: "").replacingFirst(
                    "format = 1\n", with: "format = 1\nrollback = false\n"), 2, "not in canonical form"
            ),
            (canonical.replacingFirst("size = 4096", with: "size = 4_096"), 17, "not in canonical form"),
        ]
        for (text, line, expected) in variants {
            let errors = BundleFixtures.errors(text)
            #expect(errors.count == 1, "\(errors)")
            #expect(errors.first?.line == line, "\(errors)")
            #expect(errors.first?.message.contains(expected) == true, "\(errors.first?.message ?? "-")")
        }
    }

    @Test func makeChecksLikeTheReader() {
        let bad = BundleManifest.make(
            compatible: "aibox-x86-64", version: SemanticVersion("1.0.0")!, rollback: false, created: "now",
            images: [("rootfs", "../x", 10, BundleFixtures.digestA)])
        guard case .failure(let errors) = bad else {
            Issue.record("a traversing name was accepted")
            return
        }
        #expect(errors.errors.map(\.key) == ["image[1].name"])
    }
}

@Suite("Bundle: byte layout") struct BundleLayoutTests {
    static let signatures = [
        BundleSignature(fingerprint: Array(repeating: 0x11, count: 32), signature: Array(repeating: 0x22, count: 64)),
        BundleSignature(fingerprint: Array(repeating: 0x33, count: 32), signature: Array(repeating: 0x44, count: 64)),
    ]

    static func header() throws -> (BundleManifest, [UInt8]) {
        let m = try BundleFixtures.manifest()
        return (m, BundleLayout.encodeHeader(manifest: m.serialized(), signatures: signatures))
    }

    @Test func fieldsAreWhereTheDocumentSays() throws {
        let (m, h) = try Self.header()
        let manifest = m.serialized()
        #expect(Array(h[0..<8]) == Array("AIBOXBDL".utf8))
        #expect(Array(h[8..<12]) == [0, 0, 0, 1])
        let ml = manifest.count
        #expect(Array(h[12..<16]) == [0, 0, UInt8(ml >> 8), UInt8(ml & 0xFF)])
        #expect(Array(h[16..<(16 + ml)]) == manifest)
        #expect(Array(h[(16 + ml)..<(18 + ml)]) == [0, 2])
        #expect(Array(h[(18 + ml)..<(50 + ml)]) == Self.signatures[0].fingerprint)
        #expect(Array(h[(50 + ml)..<(114 + ml)]) == Self.signatures[0].signature)
        #expect(Array(h[(114 + ml)..<(146 + ml)]) == Self.signatures[1].fingerprint)
        #expect(h.count == 18 + ml + 192)
        #expect(BundleLayout.headerLength(manifestLength: ml, signatureCount: 2) == h.count)
        #expect(BundleLayout.maxHeaderLength == 16 + 65536 + 2 + 4 * 96)
        let first = BundleLayout.payloadRange(of: m.images[0], headerLength: h.count)
        let second = BundleLayout.payloadRange(of: m.images[1], headerLength: h.count)
        #expect(first == UInt64(h.count)..<UInt64(h.count + 268_435_456))
        #expect(second.lowerBound == first.upperBound)
        #expect(BundleLayout.totalLength(headerLength: h.count, manifest: m) == second.upperBound)
    }

    @Test func everyPrefixOfAHeaderAsksForMoreThenGivesTheHeader() throws {
        let (m, h) = try Self.header()
        var lastNeed = 0
        for n in 0..<h.count {
            switch BundleLayout.parseHeader(Array(h[0..<n])) {
            case .needMore(let k):
                #expect(k > n && k <= h.count, "prefix \(n): asks for \(k)")
                #expect(k >= lastNeed, "prefix \(n): asks for less than before")
                lastNeed = k
            case let other:
                Issue.record("prefix \(n): \(other)")
                return
            }
        }
        let expected = BundleHeader(format: 1, manifest: m.serialized(), signatures: Self.signatures, length: h.count)
        #expect(BundleLayout.parseHeader(h) == .header(expected))
        // Payload bytes after the header change nothing; a slice that does not start at 0 neither.
        #expect(BundleLayout.parseHeader(h + [1, 2, 3]) == .header(expected))
        #expect(BundleLayout.parseHeader(([9, 9] + h)[2...]) == .header(expected))
        // The points where it can move on: magic+format+length, the count, the whole header.
        #expect(BundleLayout.parseHeader(Array(h[0..<3])) == .needMore(16))
        #expect(BundleLayout.parseHeader(Array(h[0..<16])) == .needMore(16 + m.serialized().count + 2))
        #expect(BundleLayout.parseHeader(Array(h[0..<(18 + m.serialized().count)])) == .needMore(h.count))
    }

    @Test func wrongBytesAreSeenAsSoonAsTheyArrive() throws {
        let (_, h) = try Self.header()
        func invalid(_ bytes: [UInt8]) -> BundleFormatError? {
            if case .invalid(let e) = BundleLayout.parseHeader(bytes) { return e }
            return nil
        }
        // The first byte of something else.
        #expect(invalid([0x7F])?.offset == 0)
        #expect(invalid(Array("PK\u{3}\u{4}".utf8))?.message.contains("not an aibox bundle: it starts with 50 4b 03 04") == true)
        #expect(invalid(Array("AIBOXBDX".utf8))?.offset == 7)
        #expect(invalid(Array("AIBOXBDX".utf8))?.message.contains("(\"AIBOXBDX\")") == true)
        var bad = h
        bad[11] = 2
        #expect(
            invalid(Array(bad[0..<12]))?.message == "bundle format 2 is not supported: this aibox reads format 1; it needs a newer aibox")
        #expect(invalid(Array(bad[0..<12]))?.offset == 8)
        bad = h
        bad[12...15] = [0, 0, 0, 0]
        #expect(invalid(Array(bad[0..<16]))?.message == "the manifest length is 0 bytes; a manifest has 1 to 65536 bytes")
        bad[12...15] = [0, 1, 0, 1]
        #expect(invalid(Array(bad[0..<16]))?.message == "the manifest length is 65537 bytes; a manifest has 1 to 65536 bytes")
        bad[12...15] = [0xFF, 0xFF, 0xFF, 0xFF]
        #expect(invalid(Array(bad[0..<16]))?.offset == 12, "a lying length is refused before its bytes are awaited")
        let manifest = try BundleFixtures.manifest().serialized()
        for (count, expected) in [
            (0, "the signature count is 0"), (5, "the signature count is 5"), (0xFFFF, "the signature count is 65535"),
        ] {
            let header = BundleLayout.encodeHeader(
                manifest: manifest, signatures: Array(repeating: Self.signatures[0], count: min(count, 5)))
            var b = Array(header[0..<(18 + manifest.count)])
            b[16 + manifest.count] = UInt8(count >> 8)
            b[17 + manifest.count] = UInt8(count & 0xFF)
            #expect(invalid(b)?.message.hasPrefix(expected) == true, "\(count)")
            #expect(invalid(b)?.offset == 16 + manifest.count)
        }
        let twice = BundleLayout.encodeHeader(manifest: manifest, signatures: [Self.signatures[0], Self.signatures[0]])
        #expect(invalid(twice)?.message.hasPrefix("signature 2 is by the same key as signature 1 (1111") == true)
        #expect(invalid(twice)?.offset == 18 + manifest.count + 96)
    }

    @Test func whereABundleEnds() throws {
        let (m, h) = try Self.header()
        let ml = m.serialized().count
        #expect(
            BundleLayout.describeEnd(at: 3, prefix: Array(h[0..<3])) == "the bundle ends after 3 bytes, inside the magic (bytes 0 to 7)")
        #expect(BundleLayout.describeEnd(at: 9, prefix: Array(h[0..<9])).hasSuffix("inside the format version (bytes 8 to 11)"))
        #expect(BundleLayout.describeEnd(at: 20, prefix: Array(h[0..<20])).hasSuffix("inside the manifest (bytes 16 to \(15 + ml))"))
        #expect(
            BundleLayout.describeEnd(at: UInt64(17 + ml), prefix: Array(h[0..<(17 + ml)]))
                .hasSuffix("inside the signature count (bytes \(16 + ml) to \(17 + ml))"))
        #expect(
            BundleLayout.describeEnd(at: UInt64(18 + ml + 100), prefix: Array(h[0..<(18 + ml + 100)]))
                == "the bundle ends after \(18 + ml + 100) bytes, inside signature 2 (bytes \(18 + ml + 96) to \(18 + ml + 191)); its header has \(h.count) bytes"
        )
        let inFirst = BundleLayout.describeEnd(at: UInt64(h.count + 10), headerLength: h.count, manifest: m)
        #expect(
            inFirst
                == "the bundle ends after \(h.count + 10) bytes, inside the payload of image 1 \"rootfs.ext4\" (rootfs, bytes \(h.count) to \(h.count + 268_435_455)): 10 of its 268435456 bytes are there; the whole bundle has \(h.count + 268_435_456 + 4096) bytes"
        )
        let atSecond = BundleLayout.describeEnd(at: UInt64(h.count + 268_435_456), headerLength: h.count, manifest: m)
        #expect(atSecond.contains("inside the payload of image 2 \"data.img\" (data,") && atSecond.contains("0 of its 4096 bytes"))
    }

    @Test func hex() {
        #expect(BundleLayout.hex([0x00, 0x0F, 0xA0, 0xFF]) == "000fa0ff")
        #expect(BundleLayout.hexByte(0x0A) == "0x0A")
    }
}

@Suite("Bundle: update policy") struct BundlePolicyTests {
    func manifest(_ version: String, rollback: Bool = false, compatible: String = "aibox-x86-64") throws -> BundleManifest {
        var m = try BundleFixtures.manifest(rollback: rollback, version: version)
        m.compatible = compatible
        return m
    }

    @Test func compatibleMustMatchExactly() throws {
        for other in ["aibox-arm64", "AIBOX-X86-64", "aibox-x86-64-v2"] {
            let r = UpdatePolicy.check(try manifest("9.0.0", compatible: other), compatible: "aibox-x86-64", floor: nil)
            guard case .failure(let refusal) = r else {
                Issue.record("\(other) was accepted")
                continue
            }
            #expect(refusal.reason == .incompatible)
            #expect(
                refusal.message
                    == "the bundle is for \"\(other)\", this box is \"aibox-x86-64\" (compatible in system.toml): it was not installed")
        }
    }

    @Test func versionsAgainstTheFloor() throws {
        let floor = SemanticVersion("1.4.0")!
        let check = { (v: String, rollback: Bool) throws -> Result<UpdateDecision, UpdateRefusal> in
            UpdatePolicy.check(try self.manifest(v, rollback: rollback), compatible: "aibox-x86-64", floor: floor)
        }
        #expect(UpdatePolicy.check(try manifest("0.1.0"), compatible: "aibox-x86-64", floor: nil) == .success(.install))
        #expect(try check("1.4.1", false) == .success(.install))
        #expect(try check("1.5.0-rc.1", false) == .success(.install))
        #expect(try check("1.4.0", false) == .success(.reinstall))
        #expect(try check("1.4.0+rebuilt", false) == .success(.reinstall))
        #expect(try check("2.0.0", true) == .success(.install), "a rollback flag on a newer version changes nothing")
        #expect(try check("1.3.9", true) == .success(.rollback))
        #expect(try check("1.4.0-rc.9", true) == .success(.rollback))
        for older in ["1.3.9", "1.4.0-rc.9", "0.0.1"] {
            guard case .failure(let refusal) = try check(older, false) else {
                Issue.record("\(older) was accepted below the floor")
                continue
            }
            #expect(refusal.reason == .downgrade)
            #expect(
                refusal.message
                    == "version \(older) is older than 1.4.0, the lowest version this box accepts: an older version is installed only from a bundle signed as a rollback (aibox bundle create --rollback)"
            )
        }
    }
}

extension String {
    fileprivate func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let r = range(of: target) else { return self }
        return replacingCharacters(in: r, with: replacement)
    }
}

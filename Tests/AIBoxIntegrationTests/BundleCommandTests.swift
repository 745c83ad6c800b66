import AIBoxCore
import AIBoxSystem
import Crypto
import Foundation
import Glibc
import Testing

/// A scratch directory with a key pair (keyring `keys/`) and two images: `rootfs.ext4` of
/// 2.5 MiB (its payload crosses the 1 MiB read buffers) and `data.img` of 1000 bytes.
final class BundleWorkspace {
    let dir: String
    var key: String { dir + "/release.pem" }
    var keyring: String { dir + "/keys" }
    var publicKey: String { keyring + "/release.pub" }
    var rootfs: String { dir + "/rootfs.ext4" }
    var data: String { dir + "/data.img" }
    var bundle: String { dir + "/update.aibox" }
    let rootfsBytes: [UInt8] = (0..<(5 << 19)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 11) }
    let dataBytes: [UInt8] = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }

    init() throws {
        var template = Array("/tmp/aibox-bundle-XXXXXX".utf8CString)
        guard let d = mkdtemp(&template) else { throw SystemError("mkdtemp", errno: errno) }
        dir = String(cString: d)
        try makeDirectories(keyring)
        let r = try run(aiboxBinary, ["bundle", "keygen", "--private", key, "--public", publicKey])
        try #require(r.code == 0, "keygen: \(r.stderr)")
        try write(rootfsBytes, to: rootfs)
        try write(dataBytes, to: data)
    }

    deinit { _ = try? run("/bin/rm", ["-rf", dir]) }

    func write(_ bytes: [UInt8], to path: String) throws { try Data(bytes).write(to: URL(fileURLWithPath: path)) }
    func read(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

    /// `aibox bundle create` with both images; fails the test when it fails.
    @discardableResult
    func create(version: String = "1.4.0", extra: [String] = [], output: String? = nil) throws -> CommandResult {
        let r = try run(
            aiboxBinary,
            [
                "bundle", "create", "--compatible", "aibox-x86-64", "--version", version, "--image", "rootfs=\(rootfs)", "--image",
                "data=\(data)", "--key", key, "--output", output ?? bundle, "--created", "2026-11-27T12:00:00Z",
            ] + extra)
        try #require(r.code == 0, "create: \(r.stderr)")
        return r
    }

    func verify(_ path: String, keyring: String? = nil) throws -> CommandResult {
        try run(aiboxBinary, ["bundle", "verify", path, "--keyring", keyring ?? self.keyring])
    }

    /// Writes `bytes` as a bundle file and verifies it: it must fail (exit 1) with `expected`
    /// in the message, and print nothing on stdout.
    func expectRefused(_ bytes: [UInt8], _ expected: [String], name: String, sourceLocation: Testing.SourceLocation = #_sourceLocation)
        throws
    {
        let path = dir + "/\(name).aibox"
        try write(bytes, to: path)
        let r = try verify(path)
        #expect(r.code == 1, "\(name): exit \(r.code): \(r.stdout)\(r.stderr)", sourceLocation: sourceLocation)
        #expect(r.stdout.isEmpty, "\(name): \(r.stdout)", sourceLocation: sourceLocation)
        for e in expected {
            #expect(r.stderr.contains(e), "\(name): expected \(e) in:\n\(r.stderr)", sourceLocation: sourceLocation)
        }
        #expect(r.stderr.hasPrefix("aibox: \(path): "), "\(name): \(r.stderr)", sourceLocation: sourceLocation)
    }

    /// The header of the bundle made by `create`.
    func header() throws -> BundleHeader {
        guard case .header(let h) = BundleLayout.parseHeader(try read(bundle)) else { throw SystemError("parse", errno: EINVAL) }
        return h
    }

    func signingKey() throws -> Curve25519.Signing.PrivateKey { try BundleKeys.readPrivateKey(key) }

    /// A bundle built by hand: `manifest` (not checked) signed with `signer`, then `payloads`.
    static func handBuilt(_ manifest: BundleManifest, payloads: [[UInt8]], signer: Curve25519.Signing.PrivateKey) throws -> [UInt8] {
        let bytes = manifest.serialized()
        let signature = Array(try signer.signature(for: bytes))
        let fingerprint = Array(SHA256.hash(data: signer.publicKey.rawRepresentation))
        return BundleLayout.encodeHeader(manifest: bytes, signatures: [BundleSignature(fingerprint: fingerprint, signature: signature)])
            + payloads.flatMap { $0 }
    }

    static func sha256(_ bytes: [UInt8]) -> String { BundleLayout.hex(Array(SHA256.hash(data: bytes))) }

    /// The manifest of the two images, as create makes it.
    func manifest() -> BundleManifest {
        BundleManifest(
            compatible: "aibox-x86-64", version: SemanticVersion("1.4.0")!, created: "by hand",
            images: [
                BundleImage(
                    slotClass: "rootfs", name: "rootfs.ext4", size: UInt64(rootfsBytes.count), sha256: Self.sha256(rootfsBytes), offset: 0),
                BundleImage(
                    slotClass: "data", name: "data.img", size: UInt64(dataBytes.count), sha256: Self.sha256(dataBytes),
                    offset: UInt64(rootfsBytes.count)),
            ])
    }
}

@Suite struct BundleCommandTests {
    @Test func keygenCreateInspectVerify() throws {
        let w = try BundleWorkspace()
        var st = stat()
        #expect(stat(w.key, &st) == 0 && st.st_mode & 0o777 == 0o600, "the private key is 0600")
        #expect(stat(w.publicKey, &st) == 0 && st.st_mode & 0o777 == 0o644)
        let pem = readTextFile(w.key) ?? ""
        #expect(pem.hasPrefix("-----BEGIN PRIVATE KEY-----\n") && pem.hasSuffix("-----END PRIVATE KEY-----\n"))

        let created = try w.create()
        #expect(created.stdout.contains("wrote \(w.bundle): aibox-x86-64 1.4.0"))
        #expect(!fileExists(w.bundle + AtomicFile.suffix))
        let h = try w.header()
        let total = h.length + w.rootfsBytes.count + w.dataBytes.count
        #expect(try w.read(w.bundle).count == total)
        // Payloads follow the header byte for byte.
        let bytes = try w.read(w.bundle)
        #expect(Array(bytes[h.length..<(h.length + w.rootfsBytes.count)]) == w.rootfsBytes)
        #expect(Array(bytes[(h.length + w.rootfsBytes.count)...]) == w.dataBytes)

        let inspect = try run(aiboxBinary, ["bundle", "inspect", w.bundle])
        #expect(inspect.code == 0, "\(inspect.stderr)")
        for line in [
            "compatible: aibox-x86-64", "version:    1.4.0", "created:    2026-11-27T12:00:00Z",
            "1. rootfs rootfs.ext4: 2621440 bytes at \(h.length), sha256 \(BundleWorkspace.sha256(w.rootfsBytes))",
            "2. data data.img: 1000 bytes at \(h.length + 2_621_440), sha256 \(BundleWorkspace.sha256(w.dataBytes))",
            BundleLayout.hex(h.signatures[0].fingerprint),
        ] {
            #expect(inspect.stdout.contains(line), "\(line) in:\n\(inspect.stdout)")
        }
        #expect(inspect.stderr.isEmpty)

        let json = try run(aiboxBinary, ["bundle", "inspect", w.bundle, "--json"])
        #expect(json.code == 0)
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(doc["format"] as? Int == 1)
        #expect(doc["compatible"] as? String == "aibox-x86-64")
        #expect(doc["version"] as? String == "1.4.0")
        #expect(doc["rollback"] as? Bool == false)
        #expect(doc["headerBytes"] as? Int == h.length)
        #expect(doc["totalBytes"] as? Int == total)
        let images = try #require(doc["images"] as? [[String: Any]])
        #expect(images.map { $0["class"] as? String } == ["rootfs", "data"])
        #expect(images.map { $0["name"] as? String } == ["rootfs.ext4", "data.img"])
        #expect(images.map { $0["size"] as? Int } == [2_621_440, 1000])
        #expect(images.map { $0["sha256"] as? String } == [BundleWorkspace.sha256(w.rootfsBytes), BundleWorkspace.sha256(w.dataBytes)])
        let signatures = try #require(doc["signatures"] as? [[String: Any]])
        let fingerprint = BundleLayout.hex(BundleKeys.fingerprint(try w.signingKey().publicKey))
        #expect(signatures.map { $0["fingerprint"] as? String } == [fingerprint])

        let verify = try w.verify(w.bundle)
        #expect(verify.code == 0, "\(verify.stderr)")
        #expect(
            verify.stdout
                == "\(w.bundle): OK: aibox-x86-64 1.4.0, 2 images, \(total) bytes; signed by release.pub (\(fingerprint)); every payload matches its sha256\n"
        )
        // The default keyring is the box's, under --root.
        let root = w.dir + "/root"
        try makeDirectories(root + "/usr/lib/aibox/keys")
        _ = try run("/bin/cp", [w.publicKey, root + "/usr/lib/aibox/keys/"])
        #expect(try run(aiboxBinary, ["bundle", "verify", w.bundle, "--root", root]).code == 0)
    }

    @Test func opensslReadsOurKeysAndSignatures() throws {
        let w = try BundleWorkspace()
        try w.create()
        let pub = try run("/usr/bin/openssl", ["pkey", "-in", w.key, "-pubout"])
        #expect(pub.code == 0, "\(pub.stderr)")
        #expect(pub.stdout == readTextFile(w.publicKey))
        let text = try run("/usr/bin/openssl", ["pkey", "-in", w.key, "-noout", "-text"])
        #expect(text.code == 0 && text.stdout.contains("ED25519 Private-Key"), "\(text.stdout)\(text.stderr)")
        let h = try w.header()
        try w.write(h.manifest, to: w.dir + "/manifest.toml")
        try w.write(h.signatures[0].signature, to: w.dir + "/manifest.sig")
        let ok = try run(
            "/usr/bin/openssl",
            [
                "pkeyutl", "-verify", "-pubin", "-inkey", w.publicKey, "-rawin", "-in", w.dir + "/manifest.toml", "-sigfile",
                w.dir + "/manifest.sig",
            ])
        #expect(ok.code == 0 && ok.stdout.contains("Signature Verified Successfully"), "\(ok.stdout)\(ok.stderr)")
        // The fingerprint is the SHA-256 of the raw key: the last 32 bytes of the DER.
        let der = try run("/usr/bin/openssl", ["pkey", "-pubin", "-in", w.publicKey, "-outform", "DER", "-out", w.dir + "/pub.der"])
        #expect(der.code == 0)
        let raw = Array(try w.read(w.dir + "/pub.der").suffix(32))
        #expect(BundleWorkspace.sha256(raw) == BundleLayout.hex(h.signatures[0].fingerprint))

        // And the other way: a key made by openssl signs bundles, its public half verifies them.
        let other = w.dir + "/openssl.pem"
        #expect(try run("/usr/bin/openssl", ["genpkey", "-algorithm", "ed25519", "-out", other]).code == 0)
        try makeDirectories(w.dir + "/keys2")
        #expect(try run("/usr/bin/openssl", ["pkey", "-in", other, "-pubout", "-out", w.dir + "/keys2/openssl.pub"]).code == 0)
        let made = try run(
            aiboxBinary,
            [
                "bundle", "create", "--compatible", "b", "--version", "1.0.0", "--image", "rootfs=\(w.data)", "--key", other, "--output",
                w.dir + "/o.aibox",
            ])
        #expect(made.code == 0, "\(made.stderr)")
        let v = try w.verify(w.dir + "/o.aibox", keyring: w.dir + "/keys2")
        #expect(v.code == 0 && v.stdout.contains("signed by openssl.pub"), "\(v.stderr)")
    }

    @Test func truncatedAnywhere() throws {
        let w = try BundleWorkspace()
        try w.create()
        let bytes = try w.read(w.bundle)
        let h = try w.header()
        let m = h.manifest.count
        let total = bytes.count
        let cases: [(Int, [String])] = [
            (0, ["truncated: the bundle is empty"]),
            (5, ["truncated: the bundle ends after 5 bytes, inside the magic (bytes 0 to 7)"]),
            (10, ["inside the format version (bytes 8 to 11)"]),
            (14, ["inside the manifest length (bytes 12 to 15)"]),
            (100, ["truncated: the bundle ends after 100 bytes, inside the manifest (bytes 16 to \(15 + m))"]),
            (17 + m, ["inside the signature count"]),
            (h.length - 10, ["inside signature 1 (bytes \(18 + m) to \(h.length - 1)); its header has \(h.length) bytes"]),
            (
                h.length,
                [
                    "inside the payload of image 1 \"rootfs.ext4\" (rootfs, bytes \(h.length) to \(h.length + 2_621_439)): 0 of its 2621440 bytes"
                ]
            ),
            (h.length + 1_500_000, ["1500000 of its 2621440 bytes are there; the whole bundle has \(total) bytes"]),
            (
                total - 1,
                ["inside the payload of image 2 \"data.img\" (data, bytes \(total - 1000) to \(total - 1)): 999 of its 1000 bytes"]
            ),
        ]
        for (length, expected) in cases {
            try w.expectRefused(Array(bytes[0..<length]), expected, name: "cut-\(length)")
        }
    }

    @Test func aChangedByteAnywhere() throws {
        let w = try BundleWorkspace()
        try w.create()
        let bytes = try w.read(w.bundle)
        let h = try w.header()
        func flipped(_ at: Int) -> [UInt8] {
            var b = bytes
            b[at] ^= 0x01
            return b
        }
        let fingerprint = BundleLayout.hex(h.signatures[0].fingerprint)
        let rootfs = BundleWorkspace.sha256(w.rootfsBytes)
        // In the first payload, past the first 1 MiB buffer; in the second; the last byte.
        try w.expectRefused(
            flipped(h.length + (1 << 20) + 5),
            [
                "corrupted: the payload of image 1 \"rootfs.ext4\" (rootfs, bytes \(h.length) to \(h.length + 2_621_439)) does not match its sha256: the manifest says \(rootfs), the payload has "
            ], name: "payload1")
        try w.expectRefused(flipped(bytes.count - 1), ["corrupted: the payload of image 2 \"data.img\" (data, bytes"], name: "payload2")
        // In the manifest (the version's digit), in the signature, in the fingerprint.
        let needle = Array("version = \"1.4.0\"".utf8)
        let found = (0...(h.manifest.count - needle.count)).first { Array(h.manifest[$0..<($0 + needle.count)]) == needle }
        let versionAt = 16 + (try #require(found)) + 11
        #expect(bytes[versionAt] == UInt8(ascii: "1"))
        try w.expectRefused(
            flipped(versionAt),
            [
                "bad signature: signature 1 by release.pub (\(fingerprint)) does not match the manifest: the manifest or the signature was changed after signing"
            ],
            name: "manifest")
        try w.expectRefused(flipped(h.length - 1), ["bad signature: signature 1 by release.pub"], name: "signature")
        try w.expectRefused(flipped(h.length - 64 - 1), ["unknown key: the bundle is signed by the key "], name: "fingerprint")
        // In the fixed header.
        try w.expectRefused(
            flipped(0), ["not a valid bundle: at byte 0: not an aibox bundle: it starts with 40 49 42 4f 58 42 44 4c (\"@IBOXBDL\")"],
            name: "magic")
        try w.expectRefused(flipped(11), ["not a valid bundle: at byte 8: bundle format 0 is not supported"], name: "format")
        try w.expectRefused(flipped(12), ["at byte 12: the manifest length is"], name: "length")
        try w.expectRefused(flipped(16 + h.manifest.count + 1), ["the signature count is 0"], name: "count")
    }

    @Test func aKeyNotInTheKeyring() throws {
        let w = try BundleWorkspace()
        try w.create()
        let others = w.dir + "/others"
        try makeDirectories(others)
        #expect(try run(aiboxBinary, ["bundle", "keygen", "--private", w.dir + "/other.pem", "--public", others + "/other.pub"]).code == 0)
        try w.write(Array("not a key\n".utf8), to: others + "/broken.pub")
        let otherFingerprint = BundleLayout.hex(BundleKeys.fingerprint(try BundleKeys.readPublicKey(others + "/other.pub")))
        let fingerprint = BundleLayout.hex(try w.header().signatures[0].fingerprint)
        let r = try w.verify(w.bundle, keyring: others)
        #expect(r.code == 1)
        #expect(
            r.stderr.contains(
                "aibox: \(w.bundle): unknown key: the bundle is signed by the key \(fingerprint), not in the keyring \(others); it trusts other.pub (\(otherFingerprint))"
            ), "\(r.stderr)")
        #expect(r.stderr.contains("warning: keyring \(others): \(others)/broken.pub: not an Ed25519 public key"), "\(r.stderr)")
        // An empty keyring, a missing one.
        let empty = w.dir + "/empty"
        try makeDirectories(empty)
        #expect(try w.verify(w.bundle, keyring: empty).stderr.contains("it trusts no key (no usable *.pub file)"))
        let missing = try w.verify(w.bundle, keyring: w.dir + "/missing")
        #expect(missing.code == 1 && missing.stderr.contains("cannot read the keyring \(w.dir)/missing: No such file or directory"))
    }

    @Test func bytesAfterTheLastPayload() throws {
        let w = try BundleWorkspace()
        try w.create()
        let bytes = try w.read(w.bundle)
        try w.expectRefused(
            bytes + Array("extra\n".utf8),
            [
                "extra bytes: the file has 6 bytes after the end of its last payload at byte \(bytes.count); its manifest accounts for \(bytes.count) bytes"
            ],
            name: "trailing")
        // inspect shows the bundle but says so.
        let inspect = try run(aiboxBinary, ["bundle", "inspect", w.dir + "/trailing.aibox"])
        #expect(inspect.code == 0)
        #expect(
            inspect.stderr.contains(
                "the file has \(bytes.count + 6) bytes, its manifest says \(bytes.count): it is followed by extra bytes"))
    }

    @Test func sizesThatLie() throws {
        let w = try BundleWorkspace()
        let key = try w.signingKey()
        // Image 2 promises 100 bytes more than there are: signed, so the file ends early.
        var m = w.manifest()
        m.images[1].size += 100
        var b = try BundleWorkspace.handBuilt(m, payloads: [w.rootfsBytes, w.dataBytes], signer: key)
        try w.expectRefused(
            b, ["truncated: the bundle ends after \(b.count) bytes, inside the payload of image 2 \"data.img\"", "1000 of its 1100 bytes"],
            name: "longer")
        // Image 1 promises 100 bytes fewer (with the digest of those): image 2 would start early; the file is longer than said.
        m = w.manifest()
        m.images[0].size -= 100
        m.images[0].sha256 = BundleWorkspace.sha256(Array(w.rootfsBytes.dropLast(100)))
        m.images[1].offset -= 100
        b = try BundleWorkspace.handBuilt(m, payloads: [w.rootfsBytes, w.dataBytes], signer: key)
        try w.expectRefused(b, ["extra bytes: the file has 100 bytes after the end of its last payload"], name: "shorter")
        // The stream, which cannot know the length beforehand, finds image 2's digest wrong.
        var verifier = BundleStreamVerifier(keyring: try Keyring.load(directory: w.keyring))
        #expect(throws: BundleError.self) { try verifier.consume(b) { _ in } }
        // Beyond the limit, or an offset with a gap: the signed manifest itself is refused.
        m = w.manifest()
        m.images[1].size = (64 << 30) + 1
        b = try BundleWorkspace.handBuilt(m, payloads: [w.rootfsBytes, w.dataBytes], signer: key)
        try w.expectRefused(
            b,
            [
                "invalid manifest (bytes 16 to",
                "image[2].size: 68719476737 bytes is more than an image may have (68719476736 bytes, 64 GiB)",
            ],
            name: "huge")
        m = w.manifest()
        m.images[1].offset += 1
        b = try BundleWorkspace.handBuilt(m, payloads: [w.rootfsBytes, [0], w.dataBytes], signer: key)
        try w.expectRefused(b, ["image[2].offset: 2621441 is not where this payload starts"], name: "gap")
    }

    @Test func namesThatArePaths() throws {
        let w = try BundleWorkspace()
        let key = try w.signingKey()
        for (name, file) in [("../etc/passwd", "traversal"), ("sub/data.img", "slash"), ("..", "dotdot")] {
            var m = w.manifest()
            m.images[1].name = name
            let b = try BundleWorkspace.handBuilt(m, payloads: [w.rootfsBytes, w.dataBytes], signer: key)
            try w.expectRefused(b, ["invalid manifest", "manifest:16: image[2].name: \"\(name)\""], name: file)
            let inspect = try run(aiboxBinary, ["bundle", "inspect", w.dir + "/\(file).aibox"])
            #expect(inspect.code == 1 && inspect.stderr.contains("image[2].name"), "\(inspect.stderr)")
        }
        // Through create: the file's own name is checked before anything is read.
        let spaced = w.dir + "/my image.img"
        try w.write([1, 2, 3], to: spaced)
        let r = try run(
            aiboxBinary,
            [
                "bundle", "create", "--compatible", "b", "--version", "1.0.0", "--image", "rootfs=\(spaced)", "--key", w.key, "--output",
                w.dir + "/x.aibox",
            ])
        #expect(
            r.code == 1 && r.stderr.contains("image 1 (rootfs=\(spaced)): the file name: the name holds \" \" at byte 2"), "\(r.stderr)")
        #expect(!fileExists(w.dir + "/x.aibox"))
    }

    @Test func rollbackIsSignedAndVersionsAreChecked() throws {
        let w = try BundleWorkspace()
        try w.create(version: "1.3.0", extra: ["--rollback"])
        let json = try run(aiboxBinary, ["bundle", "inspect", w.bundle, "--json"])
        #expect(json.stdout.contains("\"rollback\" : true"))
        #expect(try run(aiboxBinary, ["bundle", "inspect", w.bundle]).stdout.contains("1.3.0 (signed as a rollback)"))
        #expect(try w.verify(w.bundle).stdout.contains("1.3.0 (rollback)"))
        // Unsigned permission: the flag turned on by hand breaks the signature.
        try w.create(version: "1.3.0")
        var bytes = try w.read(w.bundle)
        let h = try w.header()
        let text = String(decoding: h.manifest, as: UTF8.self).replacingOccurrences(of: "rollback = false", with: "rollback = true ")
        bytes.replaceSubrange(16..<(16 + h.manifest.count), with: Array(text.utf8))
        try w.expectRefused(bytes, ["bad signature: signature 1 by release.pub"], name: "forged-rollback")
    }

    @Test func createAndKeygenRefuseBadInput() throws {
        let w = try BundleWorkspace()
        func create(_ args: [String]) throws -> CommandResult {
            try run(aiboxBinary, ["bundle", "create", "--key", w.key, "--output", w.dir + "/bad.aibox"] + args)
        }
        let base = ["--compatible", "aibox-x86-64", "--version", "1.0.0"]
        var r = try create(["--compatible", "aibox-x86-64", "--version", "1.0", "--image", "rootfs=\(w.rootfs)"])
        #expect(r.code == 1 && r.stderr.contains("--version: \"1.0\" is not MAJOR.MINOR.PATCH"), "\(r.stderr)")
        r = try create(base + ["--image", "RootFS=\(w.rootfs)"])
        #expect(r.code == 1 && r.stderr.contains("\"RootFS\" is not a slot class"), "\(r.stderr)")
        r = try create(base + ["--image", "rootfs=\(w.rootfs)", "--image", "rootfs=\(w.data)"])
        #expect(r.code == 1 && r.stderr.contains("image 2 (rootfs=\(w.data)): the class rootfs is already image 1's"), "\(r.stderr)")
        r = try create(base + ["--image", "rootfs=\(w.dir)/nope.img"])
        #expect(r.code == 1 && r.stderr.contains("cannot open the image \(w.dir)/nope.img: No such file or directory"), "\(r.stderr)")
        r = try create(base + ["--image", "rootfs=\(w.dir)"])
        #expect(r.code == 1 && r.stderr.contains("is not a regular file"), "\(r.stderr)")
        try w.write([], to: w.dir + "/empty.img")
        r = try create(base + ["--image", "rootfs=\(w.dir)/empty.img"])
        #expect(r.code == 1 && r.stderr.contains("the image \(w.dir)/empty.img is empty"), "\(r.stderr)")
        r = try create(base + ["--image", "rootfs"])
        #expect(r.code == 2 && r.stderr.contains("write CLASS=FILE"), "\(r.stderr)")
        r = try create(["--compatible", "aibox x86", "--version", "1.0.0", "--image", "rootfs=\(w.rootfs)"])
        #expect(r.code == 1 && r.stderr.contains("compatible: \"aibox x86\" is not a compatible string"), "\(r.stderr)")
        r = try run(
            aiboxBinary,
            ["bundle", "create", "--key", w.publicKey, "--output", w.dir + "/bad.aibox"] + base + ["--image", "rootfs=\(w.rootfs)"])
        #expect(r.code == 1 && r.stderr.contains("\(w.publicKey): not a private key in PEM"), "\(r.stderr)")
        #expect(!fileExists(w.dir + "/bad.aibox"))
        // A private key others can read is said.
        chmod(w.key, 0o644)
        r = try create(base + ["--image", "rootfs=\(w.data)"])
        #expect(r.code == 0 && r.stderr.contains("warning: the private key \(w.key) can be read by others (mode 644)"), "\(r.stderr)")

        // keygen never overwrites.
        let before = readTextFile(w.key)
        r = try run(aiboxBinary, ["bundle", "keygen", "--private", w.key, "--public", w.dir + "/new.pub"])
        #expect(r.code == 1 && r.stderr.contains("\(w.key) already exists; keygen never overwrites a key"), "\(r.stderr)")
        #expect(readTextFile(w.key) == before && !fileExists(w.dir + "/new.pub"))
        r = try run(aiboxBinary, ["bundle", "keygen", "--private", w.dir + "/new.pem", "--public", w.publicKey])
        #expect(r.code == 1 && !fileExists(w.dir + "/new.pem"))
        r = try run(aiboxBinary, ["bundle", "keygen", "--private", w.dir + "/nodir/k.pem", "--public", w.dir + "/k.pub"])
        #expect(r.code == 1 && r.stderr.contains("nodir/k.pem.aibox-new"), "\(r.stderr)")
        #expect(!fileExists(w.dir + "/k.pub"))
    }

    @Test func notABundle() throws {
        let w = try BundleWorkspace()
        try w.expectRefused(
            Array("PK\u{3}\u{4} a zip file".utf8), ["not a valid bundle: at byte 0: not an aibox bundle: it starts with 50 4b 03 04"],
            name: "zip")
        let r = try run(aiboxBinary, ["bundle", "inspect", w.dir + "/absent.aibox"])
        #expect(r.code == 1 && r.stderr.contains("cannot open \(w.dir)/absent.aibox: No such file or directory"))
    }
}

/// The reader's core on its own: bytes pushed in any chunks, as a download would.
@Suite struct BundleStreamTests {
    struct Seen {
        var headerAt: Int?
        var payload: [[UInt8]] = [[], []]
        var verified: [Int] = []
        var events = 0
    }

    static func feed(_ bytes: [UInt8], chunks: (Int) -> Int, keyring: Keyring, accept: (BundleInfo) throws -> Void = { _ in }) throws
        -> (Seen, BundleInfo)
    {
        var verifier = BundleStreamVerifier(keyring: keyring)
        var seen = Seen()
        var at = 0
        while at < bytes.count {
            let n = min(chunks(at), bytes.count - at)
            try verifier.consume(Array(bytes[at..<(at + n)])) { event in
                seen.events += 1
                switch event {
                case .header(let bundle):
                    #expect(seen.headerAt == nil)
                    seen.headerAt = seen.events
                    try accept(bundle)
                case .payload(let image, let offset, let chunk):
                    #expect(seen.headerAt != nil, "a payload byte before the header was verified")
                    #expect(offset == UInt64(seen.payload[image].count))
                    seen.payload[image] += Array(chunk)
                case .imageVerified(let image):
                    seen.verified.append(image)
                }
            }
            at += n
        }
        return (seen, try verifier.finish())
    }

    @Test func anyChunkingGivesTheSamePayloads() throws {
        let w = try BundleWorkspace()
        try w.create()
        let bytes = try w.read(w.bundle)
        let keyring = try Keyring.load(directory: w.keyring)
        let h = try w.header()
        let chunkings: [(String, (Int) -> Int)] = [
            // One byte at a time through the header and a bit beyond, then large reads.
            ("bytes", { $0 < h.length + 2000 ? 1 : 1 << 20 }),
            ("7", { _ in 7 }),
            ("4096", { _ in 4096 }),
            ("1 MiB + 3", { _ in (1 << 20) + 3 }),
            ("whole", { _ in bytes.count }),
        ]
        for (label, chunks) in chunkings {
            let (seen, bundle) = try Self.feed(bytes, chunks: chunks, keyring: keyring)
            #expect(seen.headerAt == 1, "\(label)")
            #expect(seen.payload[0] == w.rootfsBytes, "\(label)")
            #expect(seen.payload[1] == w.dataBytes, "\(label)")
            #expect(seen.verified == [0, 1], "\(label)")
            #expect(bundle.manifest.version == SemanticVersion("1.4.0")!)
            #expect(bundle.signers.map(\.name) == ["release.pub"])
        }
    }

    @Test func thePolicyRefusesBeforeAnyPayloadByte() throws {
        let w = try BundleWorkspace()
        try w.create(version: "1.3.0")
        let bytes = try w.read(w.bundle)
        let keyring = try Keyring.load(directory: w.keyring)
        let cases: [(String, SemanticVersion?, UpdateRefusal.Reason)] = [
            ("aibox-arm64", nil, .incompatible), ("aibox-x86-64", SemanticVersion("1.4.0"), .downgrade),
        ]
        for (compatible, floor, expected) in cases {
            var verifier = BundleStreamVerifier(keyring: keyring)
            var payloadEvents = 0
            do {
                try verifier.consume(bytes) { event in
                    switch event {
                    case .header(let bundle): _ = try UpdatePolicy.check(bundle.manifest, compatible: compatible, floor: floor).get()
                    case .payload, .imageVerified: payloadEvents += 1
                    }
                }
                Issue.record("\(compatible) \(String(describing: floor)): accepted")
            } catch let refusal as UpdateRefusal {
                #expect(refusal.reason == expected)
            }
            #expect(payloadEvents == 0)
            // It stays stopped.
            #expect(throws: BundleError.self) { try verifier.consume([0]) { _ in payloadEvents += 1 } }
            #expect(throws: BundleError.self) { _ = try verifier.finish() }
            #expect(payloadEvents == 0)
        }
        // The same through the file reader: accept refuses, the sink never sees a payload byte.
        var sunk = 0
        #expect(throws: UpdateRefusal.self) {
            try BundleReader(path: w.bundle).verify(
                keyring: keyring,
                accept: { _ = try UpdatePolicy.check($0.manifest, compatible: "aibox-x86-64", floor: SemanticVersion("2.0.0")).get() },
                sink: { if case .payload = $0 { sunk += 1 } })
        }
        #expect(sunk == 0)
        // Allowed: the decision is there to act on.
        let bundle = try BundleReader(path: w.bundle).verify(keyring: keyring)
        #expect(try UpdatePolicy.check(bundle.manifest, compatible: "aibox-x86-64", floor: SemanticVersion("1.3.0")).get() == .reinstall)
    }

    @Test func aServerSendingMoreThanPromisedOrLess() throws {
        let w = try BundleWorkspace()
        try w.create()
        let bytes = try w.read(w.bundle)
        let keyring = try Keyring.load(directory: w.keyring)
        // More: refused as soon as the extra byte arrives, before the end of the stream.
        var verifier = BundleStreamVerifier(keyring: keyring)
        try verifier.consume(bytes) { _ in }
        #expect(verifier.isComplete)
        do {
            try verifier.consume([0x41]) { _ in }
            Issue.record("an extra byte was accepted")
        } catch let e as BundleError {
            #expect(e.kind == .trailingBytes)
            #expect(e.message.contains("extra bytes: the bundle goes on after the end of its last payload at byte \(bytes.count)"))
        }
        // Less: the end of the stream says where it stopped.
        verifier = BundleStreamVerifier(keyring: keyring)
        try verifier.consume(Array(bytes.dropLast(10))) { _ in }
        #expect(!verifier.isComplete)
        do {
            _ = try verifier.finish()
            Issue.record("a short stream was accepted")
        } catch {
            #expect(error.kind == .truncated)
            #expect(error.message.contains("inside the payload of image 2 \"data.img\""), "\(error.message)")
            #expect(error.message.contains("990 of its 1000 bytes"))
        }
    }
}

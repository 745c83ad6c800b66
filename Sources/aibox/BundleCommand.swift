import AIBoxCore
import AIBoxSystem
import ArgumentParser
import FoundationEssentials
import Glibc

/// `aibox bundle keygen|create|inspect|verify`: update bundles, for integrators
/// (docs/BUNDLE.md). File arguments are taken as given (relative to the current directory);
/// `--root` only places the default keyring of `verify` (DIR/usr/lib/aibox/keys).
/// Named `BundleCommand`, not `Bundle`, so that it never meets Foundation's `Bundle`.
struct BundleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bundle",
        abstract: "Update bundles for integrators: make a signing key, create, inspect and verify bundles.",
        discussion: """
            A bundle (.aibox) is a signed manifest followed by the images it names; the box checks \
            the signature, the compatible string and the version before it writes a byte to a \
            slot. The format: docs/BUNDLE.md.
            """,
        subcommands: [Keygen.self, Create.self, Inspect.self, Verify.self, SignFile.self])
}

extension BundleCommand {
    /// `aibox bundle keygen --private KEY --public KEY.pub`
    struct Keygen: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make an Ed25519 key pair for signing bundles.",
            discussion: """
                The private key is written as PKCS#8 PEM with mode 0600 (what openssl genpkey \
                -algorithm ed25519 writes), the public key as PEM (openssl pkey -pubout). Existing \
                files are never overwritten. Put the public key in usr/lib/aibox/keys/ of the image.
                """)
        @OptionGroup var options: RootOptions
        @Option(name: .customLong("private"), help: ArgumentHelp("Where to write the private key.", valueName: "KEY"))
        var privateKey: String
        @Option(name: .customLong("public"), help: ArgumentHelp("Where to write the public key.", valueName: "KEY.pub"))
        var publicKey: String

        func run() throws {
            let key = BundleKeys.generate()
            do {
                try BundleKeys.write(key, privatePath: privateKey, publicPath: publicKey)
            } catch {
                fail(CLIError(error.message))
            }
            print("private key: \(privateKey) (keep it secret; mode 0600)")
            print("public key:  \(publicKey) (install it in usr/lib/aibox/keys/)")
            print("fingerprint: \(BundleLayout.hex(BundleKeys.fingerprint(key.publicKey)))")
        }
    }

    /// `aibox bundle create --compatible STR --version SEMVER --image CLASS=FILE … --key KEY --output FILE.aibox`
    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a signed bundle from one or more images.",
            discussion: """
                Each --image CLASS=FILE adds an image for slots of that class (such as rootfs); \
                the file's name is kept in the manifest. The output is written to a temporary file \
                and renamed when complete. --rollback signs permission to install this version on \
                a box that already runs a newer one.
                """)
        @OptionGroup var options: RootOptions
        @Option(help: ArgumentHelp("The box model the bundle is for (system.toml's compatible).", valueName: "STR"))
        var compatible: String
        @Option(help: ArgumentHelp("The version of the software in the bundle (semantic version).", valueName: "SEMVER"))
        var version: String
        @Option(
            name: .customLong("image"),
            help: ArgumentHelp("An image for slots of class CLASS (repeatable, 1 to 8).", valueName: "CLASS=FILE"))
        var images: [String] = []
        @Option(help: ArgumentHelp("The private key to sign with (PKCS#8 PEM).", valueName: "KEY"))
        var key: String
        @Option(help: ArgumentHelp("Where to write the bundle.", valueName: "FILE.aibox"))
        var output: String
        @Flag(help: "Allow this version to be installed below the box's version floor (a signed rollback).")
        var rollback = false
        @Option(
            help: ArgumentHelp(
                "When the bundle was made (text, at most 64 printable ASCII characters); default: now, UTC.", valueName: "TEXT"))
        var created: String?

        func validate() throws {
            if images.isEmpty { throw ValidationError("give at least one --image CLASS=FILE") }
            for image in images where !image.contains("=") {
                throw ValidationError("--image \(image): write CLASS=FILE, such as rootfs=build/rootfs.ext4")
            }
        }

        func run() throws {
            let semver: SemanticVersion
            switch SemanticVersion.parse(version) {
            case .success(let v): semver = v
            case .failure(let e): fail(CLIError("--version: \(e.message)"))
            }
            let pairs = images.map { image -> (slotClass: String, path: String) in
                let eq = image.firstIndex(of: "=") ?? image.endIndex
                return (String(image[..<eq]), eq < image.endIndex ? String(image[image.index(after: eq)...]) : "")
            }
            do {
                let signingKey = try BundleKeys.readPrivateKey(key)
                warnIfExposed(key)
                let made = try BundleWriter.create(
                    compatible: compatible, version: semver, rollback: rollback, created: created ?? utcNow(), images: pairs,
                    key: signingKey, output: output)
                let m = made.manifest
                print("wrote \(output): \(m.compatible) \(m.version)\(m.rollback ? " (rollback)" : ""), \(made.totalLength) bytes")
                for (n, image) in m.images.enumerated() {
                    print("  image \(n + 1): \(image.slotClass) \(image.name) \(image.size) bytes sha256 \(image.sha256)")
                }
                print("signed by \(BundleLayout.hex(made.signers.first?.fingerprint ?? []))")
            } catch {
                fail(CLIError(error.message))
            }
        }

        /// A private key others can read is said (not refused: CI systems differ).
        private func warnIfExposed(_ path: String) {
            if let st = try? fileStatus(path), st.st_mode & 0o077 != 0 {
                writeStandardError(
                    "aibox: warning: the private key \(path) can be read by others (mode \(String(st.st_mode & 0o777, radix: 8))); chmod 600 \(path)\n"
                )
            }
        }

        private func utcNow() -> String {
            var t = time_t(Clock.wallMilliseconds() / 1000)
            var parts = tm()
            gmtime_r(&t, &parts)
            var buf = [CChar](repeating: 0, count: 32)
            let n = strftime(&buf, buf.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
            return String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    /// `aibox bundle inspect FILE.aibox [--json]`
    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a bundle's manifest and signatures (without verifying them).",
            discussion: "Reads the header only; aibox bundle verify checks signatures and payloads.")
        @OptionGroup var options: RootOptions
        @Argument(help: ArgumentHelp("The bundle.", valueName: "FILE.aibox")) var file: String
        @Flag(help: "One JSON document on stdout.") var json = false

        struct ImageView: Encodable {
            var slotClass: String
            var name: String
            var size: UInt64
            var sha256: String
            var offset: UInt64
            enum CodingKeys: String, CodingKey {
                case slotClass = "class"
                case name, size, sha256, offset
            }
        }

        struct SignatureView: Encodable { var fingerprint: String }

        struct View: Encodable {
            var format: UInt32
            var compatible: String
            var version: String
            var rollback: Bool
            var created: String
            var images: [ImageView]
            var signatures: [SignatureView]
            var headerBytes: Int
            var totalBytes: UInt64
            var fileBytes: UInt64
        }

        func run() throws {
            let bundle: BundleInfo
            let fileBytes: UInt64
            do {
                let reader = try BundleReader(path: file)
                bundle = try reader.readHeader()
                fileBytes = reader.fileSize
            } catch {
                fail(CLIError("\(file): \(error.message)"))
            }
            let m = bundle.manifest
            let mismatch =
                fileBytes == bundle.totalLength
                ? nil
                : "the file has \(fileBytes) bytes, its manifest says \(bundle.totalLength): it is \(fileBytes < bundle.totalLength ? "truncated" : "followed by extra bytes") (aibox bundle verify refuses it)"
            if json {
                printJSON(
                    View(
                        format: m.format, compatible: m.compatible, version: m.version.description, rollback: m.rollback,
                        created: m.created,
                        images: m.images.map {
                            ImageView(slotClass: $0.slotClass, name: $0.name, size: $0.size, sha256: $0.sha256, offset: $0.offset)
                        },
                        signatures: bundle.header.signatures.map { SignatureView(fingerprint: BundleLayout.hex($0.fingerprint)) },
                        headerBytes: bundle.headerLength, totalBytes: bundle.totalLength, fileBytes: fileBytes))
                if let mismatch { writeStandardError("aibox: warning: \(file): \(mismatch)\n") }
                return
            }
            print("bundle:     \(file)")
            print("format:     \(m.format)")
            print("compatible: \(m.compatible)")
            print("version:    \(m.version)\(m.rollback ? " (signed as a rollback)" : "")")
            print("created:    \(m.created)")
            print("size:       \(bundle.totalLength) bytes (header \(bundle.headerLength), payloads \(m.payloadLength))")
            print("images:")
            for (n, image) in m.images.enumerated() {
                let range = bundle.payloadRange(n)
                print("  \(n + 1). \(image.slotClass) \(image.name): \(image.size) bytes at \(range.lowerBound), sha256 \(image.sha256)")
            }
            print("signatures (not verified here; aibox bundle verify checks them):")
            for s in bundle.header.signatures { print("  \(BundleLayout.hex(s.fingerprint))") }
            if let mismatch { writeStandardError("aibox: warning: \(file): \(mismatch)\n") }
        }
    }

    /// `aibox bundle verify FILE.aibox --keyring DIR`
    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a bundle's signature against a keyring and every payload against its sha256.",
            discussion: """
                Exit status 0 when the bundle is whole, signed by a key of the keyring and every \
                payload matches; 1 otherwise, with what is wrong and where. Without --keyring, the \
                keys of the box under --root (usr/lib/aibox/keys/) are used.
                """)
        @OptionGroup var options: RootOptions
        @Argument(help: ArgumentHelp("The bundle.", valueName: "FILE.aibox")) var file: String
        @Option(help: ArgumentHelp("A directory of trusted public keys (*.pub).", valueName: "DIR")) var keyring: String?

        func run() throws {
            let directory = keyring ?? options.paths.under("usr/lib/aibox/keys")
            let keys: Keyring
            do {
                keys = try Keyring.load(directory: directory)
            } catch {
                fail(CLIError(error.message))
            }
            for problem in keys.problems { writeStandardError("aibox: warning: keyring \(directory): \(problem)\n") }
            do {
                let bundle = try BundleReader(path: file).verify(keyring: keys)
                let m = bundle.manifest
                let signers = bundle.signers.map { "\($0.name) (\(BundleLayout.hex($0.fingerprint)))" }.joined(separator: ", ")
                print(
                    "\(file): OK: \(m.compatible) \(m.version)\(m.rollback ? " (rollback)" : ""), \(m.images.count) image\(m.images.count == 1 ? "" : "s"), \(bundle.totalLength) bytes; signed by \(signers); every payload matches its sha256"
                )
            } catch let e as BundleError {
                fail(CLIError("\(file): \(e.message)"))
            }
        }
    }
}

/// `aibox bundle sign FILE --key KEY`: an Ed25519 signature of FILE's bytes in FILE.sig
/// (base64), for the update feed.
struct SignFile: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sign", abstract: "Sign a file (the update feed) with a bundle key: FILE.sig, base64.")
    @Argument(help: ArgumentHelp("The file to sign.", valueName: "FILE")) var file: String
    @Option(help: ArgumentHelp("The private key (PEM).", valueName: "KEY")) var key: String

    func run() throws {
        do {
            let privateKey = try BundleKeys.readPrivateKey(key)
            guard let bytes = readSmallFile(file, limit: UpdateFeed.maxBytes) else {
                throw CLIError("cannot read \(file) (at most \(UpdateFeed.maxBytes) bytes)")
            }
            let signature = try privateKey.signature(for: bytes)
            try writeFileAtomically(file + ".sig", Array((Data(signature).base64EncodedString() + "\n").utf8))
            print("wrote \(file).sig")
        } catch let e as CLIError {
            fail(e)
        } catch {
            fail(CLIError("\(error)"))
        }
    }
}

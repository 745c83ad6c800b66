import AIBoxCore
import AIBoxSystem

// Updates: the bundle header and manifest, the stream verifier, the feed, the boot environment.

/// `aibox bundle inspect` reads any file without a keyring: the header, then the manifest.
func fuzzBundleHeader(_ bytes: [UInt8]) -> Verdict {
    switch BundleLayout.parseHeader(bytes) {
    case .needMore(let n):
        return Verdict(accepted: false, problems: n > bytes.count ? [] : ["bundle-header: asks for \(n) bytes with \(bytes.count) there"])
    case .invalid(let e):
        return Verdict(
            accepted: false, problems: e.offset < bytes.count ? [] : ["bundle-header: an error at byte \(e.offset) of \(bytes.count)"])
    case .header(let h):
        var problems: [String] = []
        guard h.length <= bytes.count else {
            return Verdict(accepted: false, problems: ["bundle-header: a header of \(h.length) bytes from \(bytes.count)"])
        }
        // What was read is what the writer makes of it.
        if BundleLayout.encodeHeader(manifest: h.manifest, signatures: h.signatures, format: h.format) != Array(bytes[..<h.length]) {
            problems.append("bundle-header: the header read does not encode to its bytes")
        }
        guard let info = try? BundleInfo.unverified(h) else { return Verdict(accepted: false, problems: problems) }
        if info.manifest.serialized() != h.manifest { problems.append("bundle-header: a manifest accepted that is not canonical") }
        _ = BundleLayout.describeEnd(at: UInt64(bytes.count), headerLength: h.length, manifest: info.manifest)
        return Verdict(accepted: true, problems: problems)
    }
}

/// The manifest alone (in a bundle it sits behind the header's lengths): strictly canonical.
func fuzzManifest(_ bytes: [UInt8]) -> Verdict {
    guard case .success(let manifest) = BundleManifest.parse(bytes) else { return Verdict(accepted: false) }
    var problems: [String] = []
    if manifest.serialized() != bytes { problems.append("manifest: accepted bytes that are not its canonical text") }
    var end: UInt64 = 0
    for image in manifest.images {
        if image.offset != end { problems.append("manifest: image \(image.name) at \(image.offset), the previous ends at \(end)") }
        end = image.offset + image.size
    }
    if manifest.payloadLength != end { problems.append("manifest: payload length \(manifest.payloadLength), images end at \(end)") }
    return Verdict(accepted: true, problems: problems)
}

/// The keyring of `Fuzz/keys/fuzz-test.pub`: the corpus holds bundles signed with its
/// private key (`Fuzz/make-corpus`), so the fuzzer starts beyond the signature check.
let fuzzKeyring: Keyring = {
    let pem = """
        -----BEGIN PUBLIC KEY-----
        MCowBQYDK2VwAyEA1ZFECZqm1e8y8CWfSoO5jW9yZUNTmQrsUkHZpxJA800=
        -----END PUBLIC KEY-----
        """
    let key = try! BundleKeys.parsePublicKey(pem, path: "Fuzz/keys/fuzz-test.pub")
    return Keyring(directory: "Fuzz/keys", keys: [Keyring.Key(name: "fuzz-test.pub", key: key)])
}()

/// What a verifier made of a bundle: compared between the input in one piece and in pieces.
struct StreamOutcome: Equatable {
    var error: BundleError.Kind?
    var verified: [Int] = []
    var payloads: [[UInt8]] = []
    var payloadBeforeHeader = false
    var length: UInt64?
}

func stream(_ bytes: [UInt8], chunks: [Int]) -> StreamOutcome {
    var verifier = BundleStreamVerifier(keyring: fuzzKeyring)
    var outcome = StreamOutcome()
    var sawHeader = false
    var at = 0, k = 0
    do {
        while at < bytes.count {
            let n = min(chunks[k % chunks.count], bytes.count - at)
            k += 1
            try verifier.consume(Array(bytes[at..<(at + n)])) { event in
                switch event {
                case .header: sawHeader = true
                case .payload(let image, let offset, let b):
                    if !sawHeader { outcome.payloadBeforeHeader = true }
                    while outcome.payloads.count <= image { outcome.payloads.append([]) }
                    if UInt64(outcome.payloads[image].count) != offset { outcome.payloadBeforeHeader = true }
                    outcome.payloads[image] += b
                case .imageVerified(let image): outcome.verified.append(image)
                }
            }
            at += n
        }
        let info = try verifier.finish()
        outcome.length = info.totalLength
    } catch let e as BundleError {
        outcome.error = e.kind
        _ = e.description
    } catch {
        outcome.error = .refused
    }
    return outcome
}

/// A download or a file read in pieces of any size gives the same answer as the whole.
func fuzzBundleStream(_ bytes: [UInt8]) -> Verdict {
    let whole = stream(bytes, chunks: [bytes.count + 1])
    let pieces = stream(bytes, chunks: [1, 2, 3, 7, 16, 17, 61, 4096])
    var problems: [String] = []
    if whole != pieces {
        problems.append("bundle-stream: in one piece \(summary(whole)); in pieces \(summary(pieces))")
    }
    if whole.payloadBeforeHeader { problems.append("bundle-stream: payload handed on before the header was verified, or out of order") }
    if whole.error == nil {
        // Accepted: whole, and each image's bytes are its payload's.
        if whole.length != UInt64(bytes.count) { problems.append("bundle-stream: accepted \(bytes.count) bytes as \(whole.length ?? 0)") }
        if case .header(let h) = BundleLayout.parseHeader(bytes), let info = try? BundleInfo.verify(h, keyring: fuzzKeyring) {
            for i in info.manifest.images.indices {
                let r = info.payloadRange(i)
                if i >= whole.payloads.count || whole.payloads[i] != Array(bytes[Int(r.lowerBound)..<Int(r.upperBound)]) {
                    problems.append("bundle-stream: image \(i + 1)'s bytes are not its payload")
                }
            }
            if whole.verified != Array(info.manifest.images.indices) { problems.append("bundle-stream: images verified \(whole.verified)") }
        } else {
            problems.append("bundle-stream: accepted a bundle whose header does not verify")
        }
    }
    return Verdict(accepted: whole.error == nil, problems: problems)
}

private func summary(_ o: StreamOutcome) -> String {
    "error \(o.error.map(\.rawValue) ?? "none"), verified \(o.verified), payload bytes \(o.payloads.map(\.count))"
}

/// The feed's JSON, after its signature (the signature only says who wrote it).
func fuzzFeed(_ bytes: [UInt8]) -> Verdict {
    guard let feed = try? UpdateFeed.parse(bytes, signer: "fuzz-test.pub") else { return Verdict(accepted: false) }
    return Verdict(
        accepted: true,
        problems: feed.channels.compactMap { name, entry in
            entry.url.hasPrefix("https://") || entry.url.hasPrefix("http://") ? nil : "feed: channel \(name) accepted the url \(entry.url)"
        })
}

/// The boot environment as the boot loader's tools print it, and the file backend's copies.
func fuzzBootEnvironment(_ bytes: [UInt8]) -> Verdict {
    var problems: [String] = []
    var accepted = false
    if case .success(let env) = BootEnvironment.parse(text(bytes)) {
        accepted = true
        if BootEnvironment.parse(env.text) != .success(env) { problems.append("bootenv: the text written does not read back") }
        var booted = env
        _ = booted.boot()
    }
    if case .success(let (env, seq)) = BootEnvironmentFile.decode(bytes) {
        accepted = true
        switch BootEnvironmentFile.decode(BootEnvironmentFile.encode(env, sequence: seq)) {
        case .success(let (again, s)) where again == env && s == seq: break
        default: problems.append("bootenv: a copy written does not read back")
        }
    }
    return Verdict(accepted: accepted, problems: problems)
}

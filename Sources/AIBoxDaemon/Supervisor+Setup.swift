import AIBoxCore
import AIBoxSystem
import Glibc
import Logging

/// Setup mode (issue 4): until `etc/aibox/box.toml` exists the daemon detects hardware and
/// takes seeds, and no worker runs (each waits for "setup"). Provisioning — by `aibox setup`,
/// a seed, or a stick labelled AIBOX — starts them without a reboot; a factory reset stops
/// them again.
struct SetupState {
    var provisioned = false
    var nextCheck: Instant?
    var seeds: SeedVolumeHandler?
    /// How often box.toml is looked at, in case no one told the daemon (the socket refused).
    static let checkInterval: Duration = .seconds(2)
}

extension Supervisor {
    /// At start, before hardware detection (a stick already in must find the hook ready).
    func beginSetupWatch() {
        let handler = SeedVolumeHandler(supervisor: self)
        setup.seeds = handler
        provisioningHook = handler
        setup.provisioned = fileExists(paths.boxConfig)
        setup.nextCheck = Clock.monotonic() + SetupState.checkInterval
        if !setup.provisioned {
            let message = "waiting for setup: no \(paths.boxConfig); run aibox setup, or insert a stick labelled AIBOX with aibox-seed.toml"
            logger.notice("\(message)")
            store.record(event(kind: "setup.waiting", worker: nil, message: message))
        }
    }

    /// Looks at box.toml again; starts or stops the workers when it came or went.
    @discardableResult
    func checkProvisioning() -> Bool {
        setup.nextCheck = Clock.monotonic() + SetupState.checkInterval
        let now = fileExists(paths.boxConfig)
        guard now != setup.provisioned else { return now }
        setup.provisioned = now
        stateChanged = true  // waiting workers are looked at again
        beginFeedWatch()
        if now {
            logger.notice("setup complete: starting the workers")
            store.record(event(kind: "setup.complete", worker: nil, message: "the box is provisioned; starting the workers"))
        } else {
            logger.notice("the box is no longer provisioned (factory reset): stopping the workers; waiting for setup")
            store.record(
                event(kind: "setup.waiting", worker: nil, message: "unprovisioned (factory reset): workers stopped; waiting for setup"))
            let t = Clock.monotonic()
            for name in order {
                guard let slot = slots[name] else { continue }
                apply(name, slot.machine.requirementsLost(now: t, missing: ["setup"]))
            }
        }
        afterTurn()
        return now
    }

    func setupTimer(now: Instant) {
        if let due = setup.nextCheck, due <= now { checkProvisioning() }
    }
}

/// Takes seeds from provisioning volumes: unprovisioned, any seed; provisioned, only one
/// signed with a provisioning key. Writes `aibox-report.txt` back when the stick is writable.
final class SeedVolumeHandler: ProvisioningHook {
    unowned let supervisor: Supervisor

    init(supervisor: Supervisor) { self.supervisor = supervisor }

    func volumeRemoved(_ volume: ProvisioningVolume) {}

    func volumeAppeared(_ volume: ProvisioningVolume) {
        let s = supervisor
        let outcome = take(volume)
        let kind = outcome.applied ? "provisioning.seed-applied" : "provisioning.seed-refused"
        s.store.record(s.event(kind: kind, worker: nil, message: "\(volume.label) volume \(volume.devnode): \(outcome.message)"))
        if outcome.applied {
            s.logger.notice("provisioned from \(volume.devnode): \(outcome.message)")
        } else {
            s.logger.warning("seed on \(volume.devnode) not applied: \(outcome.message)")
        }
        s.checkProvisioning()
    }

    struct Outcome {
        var applied: Bool
        var message: String
    }

    /// Mounts, reads, verifies, applies, reports, unmounts.
    private func take(_ volume: ProvisioningVolume) -> Outcome {
        let s = supervisor
        let paths = s.paths
        let mounted: MountedVolume
        do {
            mounted = try MountedVolume(volume, at: paths.volumeMount)
        } catch {
            return Outcome(applied: false, message: "cannot mount it: \(error)")
        }
        defer { mounted.unmount() }
        let seedPath = mounted.mountPoint + "/" + Seed.fileName
        var st = stat()
        guard lstat(seedPath, &st) == 0 else {
            return Outcome(applied: false, message: "no \(Seed.fileName) on it; nothing to do")
        }
        let outcome = apply(seedPath, volume: volume, mounted: mounted)
        let report = (outcome.applied ? "done: " : "not applied, nothing changed on the box:\n") + outcome.message + "\n"
        do {
            try mounted.writeReport("aibox \(AIBoxVersion.current), \(formatLocalTime(milliseconds: Clock.wallMilliseconds()))\n" + report)
        } catch {
            s.logger.notice("no report written to \(volume.devnode): \(error)")
        }
        return outcome
    }

    private func apply(_ seedPath: String, volume: ProvisioningVolume, mounted: MountedVolume) -> Outcome {
        let s = supervisor
        let paths = s.paths
        let bytes: [UInt8]
        switch Provisioner.readSeed(seedPath) {
        case .failure(let f): return Outcome(applied: false, message: f.description)
        case .success(let b): bytes = b
        }
        let provisioner = Provisioner(paths: paths, wifiInterface: s.wifiInterface)
        var source = "stick \(volume.devnode)"
        if provisioner.isProvisioned {
            let keys = SeedSignature.trustedKeys(in: paths.provisioningKeys)
            guard let sigBytes = readSmallFile(mounted.mountPoint + "/" + SeedSignature.fileName, limit: 4096, followSymlinks: false) else {
                return Outcome(
                    applied: false,
                    message: "this box is already set up; a seed on a stick is taken only when signed with a provisioning key "
                        + "(\(SeedSignature.fileName) beside it; provisioning/make-stick --sign KEY)")
            }
            guard let sig = SeedSignature.signature(sigBytes) else {
                return Outcome(applied: false, message: "\(SeedSignature.fileName) is not an Ed25519 signature (64 bytes, raw or base64)")
            }
            guard let signer = SeedSignature.signer(of: bytes, signature: sig, keys: keys) else {
                return Outcome(
                    applied: false,
                    message: "the seed's signature matches none of the \(keys.count) provisioning key(s) in \(paths.provisioningKeys)")
            }
            source += " (signed, key \(signer))"
        }
        switch provisioner.provision(seed: bytes, path: Seed.fileName, tier: s.hardware?.localLlmTier ?? .none, source: source) {
        case .success(let config): return Outcome(applied: true, message: "provisioned \"\(config.name)\" from \(source)")
        case .failure(let f): return Outcome(applied: false, message: f.description)
        }
    }
}

extension Supervisor {
    /// The Wi-Fi interface for wpa_supplicant: the first wlan device of the inventory.
    var wifiInterface: String {
        hw.inventory.values.first { $0.subsystem == "net" && ($0.devtype == "wlan" || $0.properties["DEVTYPE"] == "wlan") }
            .flatMap { $0.syspath.split(separator: "/").last.map(String.init) } ?? "wlan0"
    }
}

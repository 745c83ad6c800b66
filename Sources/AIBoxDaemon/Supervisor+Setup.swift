import AIBoxCore
import AIBoxSystem
import FoundationEssentials
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
        setup.seeds?.timer(now: now)
    }
}

/// Takes seeds from provisioning volumes, one at a time, each in a child process the daemon
/// reaps (`aibox stick-seed`, spawned as the feed check is): mounting, reading and applying
/// a seed — chpasswd, networkctl, a slow stick — never hold the loop, and a seed that crashes
/// its reader takes down only that child. The child's one JSON line says what became of it;
/// the event and log are written here when it is reaped.
final class SeedVolumeHandler: ProvisioningHook {
    unowned let supervisor: Supervisor
    /// Volumes waiting their turn (there is one mount point).
    private var queue: [ProvisioningVolume] = []
    /// The child taking a seed now.
    private(set) var running: (pid: Int32, volume: ProvisioningVolume, deadline: Instant)?
    private var timedOut = false
    private var outputFD: Int32 = -1
    private var output: [UInt8] = []
    /// A stick that takes longer than this (a mount that hangs) is given up: the child's group is killed.
    static let timeout: Duration = .seconds(300)
    static let maxOutput = 256 << 10

    init(supervisor: Supervisor) { self.supervisor = supervisor }

    func volumeRemoved(_ volume: ProvisioningVolume) { queue.removeAll { $0 == volume } }

    func volumeAppeared(_ volume: ProvisioningVolume) {
        guard !queue.contains(volume), running?.volume != volume else { return }
        queue.append(volume)
        startNext()
    }

    private func startNext() {
        let s = supervisor
        guard running == nil, !queue.isEmpty, !s.shuttingDown else { return }
        let volume = queue.removeFirst()
        var argv = [currentExecutable() ?? "/usr/bin/aibox", "stick-seed", volume.devnode, "--label", volume.label]
        if let fs = volume.fsType { argv += ["--fs-type", fs] }
        argv += [
            "--wifi-interface", s.wifiInterface, "--tier", (s.hardware?.localLlmTier ?? .none).rawValue, "--root", s.paths.root,
        ]
        let pipe: (read: Int32, write: Int32)
        do {
            pipe = try makePipe()
        } catch {
            finish(volume, StickSeed.Outcome(applied: false, message: "cannot take its seed: \(error)"))
            return
        }
        defer { closeDescriptor(pipe.write) }
        let request = SpawnRequest(
            argv: argv, environment: currentEnvironment(), workdir: nil, user: nil, stdoutFD: pipe.write,
            stderrFD: 2)  // its words go where the daemon's go
        do {
            let pid = try Spawner.spawn(request)
            running = (pid, volume, Clock.monotonic() + SeedVolumeHandler.timeout)
            timedOut = false
            output = []
            outputFD = pipe.read
            // On a pipe just made, fcntl can fail only with EBADF, which stops the program anyway.
            try? setNonBlocking(pipe.read, detail: "aibox stick-seed's output")
            try? s.loop.add(pipe.read, events: EventLoop.readable) { [unowned self] _ in self.readOutput() }
            s.logger.info("\(volume.label) volume \(volume.devnode): taking its seed (pid \(pid))")
        } catch {
            closeDescriptor(pipe.read)
            finish(volume, StickSeed.Outcome(applied: false, message: "cannot run aibox stick-seed: \(error)"))
        }
    }

    /// What the child wrote so far (the rest, if too long, is read and dropped).
    private func readOutput() {
        guard outputFD >= 0 else { return }
        let ended = drainPipe(outputFD, chunkSize: 16384, detail: "aibox stick-seed's output") { chunk in
            if output.count < SeedVolumeHandler.maxOutput { output += chunk }
        }
        if ended { closeOutput() }
    }

    private func closeOutput() {
        guard outputFD >= 0 else { return }
        supervisor.loop.remove(outputFD)
        closeDescriptor(outputFD)
        outputFD = -1
    }

    /// The child was reaped: its outcome, or why there is none.
    func childEnded(_ status: ExitStatus) {
        guard let r = running else { return }
        readOutput()
        closeOutput()
        running = nil
        let line = output.split(separator: UInt8(ascii: "\n")).last.map { Array($0) } ?? []
        var outcome = try? JSONDecoder().decode(StickSeed.Outcome.self, from: Data(line))
        if outcome == nil || status != .code(0) {
            // It did not finish: whatever it mounted is let go (lazily: never waiting on the stick).
            let mountPoint = supervisor.paths.volumeMount
            do {
                try syscall("umount2(MNT_DETACH)", detail: mountPoint) { umount2(mountPoint, Int32(MNT_DETACH)) }
            } catch {
                // EINVAL: nothing mounted there (it ended before mounting), the usual case.
                if error.errno != EINVAL && error.errno != ENOENT { supervisor.logger.warning("\(error)") }
            }
            let why =
                timedOut
                ? "it took longer than \(SeedVolumeHandler.timeout.aiboxText) and was stopped"
                : "aibox stick-seed ended (\(status)) before it said what became of the seed"
            outcome = StickSeed.Outcome(applied: false, message: "the seed was not applied: \(why)")
        }
        finish(r.volume, outcome!)
        startNext()
    }

    /// From the setup timer: a child past its time is killed with its group (mount, chpasswd…).
    func timer(now: Instant) {
        guard let r = running, r.deadline <= now, !timedOut else { return }
        timedOut = true
        sendSignal(SIGKILL, to: -r.pid)  // a group gone meanwhile has ended by itself
    }

    private func finish(_ volume: ProvisioningVolume, _ outcome: StickSeed.Outcome) {
        let s = supervisor
        let kind = outcome.applied ? "provisioning.seed-applied" : "provisioning.seed-refused"
        s.store.record(s.event(kind: kind, worker: nil, message: "\(volume.label) volume \(volume.devnode): \(outcome.message)"))
        if outcome.applied {
            s.logger.notice("provisioned from \(volume.devnode): \(outcome.message)")
        } else {
            s.logger.warning("seed on \(volume.devnode) not applied: \(outcome.message)")
        }
        s.checkProvisioning()
    }
}

extension Supervisor {
    /// The Wi-Fi interface for wpa_supplicant: the first wlan device of the inventory.
    var wifiInterface: String {
        hw.inventory.values.first { $0.subsystem == "net" && ($0.devtype == "wlan" || $0.properties["DEVTYPE"] == "wlan") }
            .flatMap { $0.syspath.split(separator: "/").last.map(String.init) } ?? "wlan0"
    }
}

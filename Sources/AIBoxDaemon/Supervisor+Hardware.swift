import AIBoxCore
import AIBoxSystem
import Glibc
import Logging

/// Told when a removable volume labelled AIBOX or CIDATA comes and goes — present at start
/// included. The first-boot part (issue 4) takes seeds from it; the supervisor only detects.
public protocol ProvisioningHook: AnyObject {
    func volumeAppeared(_ volume: ProvisioningVolume)
    func volumeRemoved(_ volume: ProvisioningVolume)
}

/// What the supervisor knows about the hardware, and how it hears of changes.
struct HardwareState {
    var monitor: UdevMonitor?
    /// Why there is no monitor, and when to try again (monotonic).
    var monitorError: SystemError?
    var monitorRetryAt: Instant?
    var monitorFailures = 0
    var inventory: [String: DeviceRecord] = [:]
    var gate = CapabilityGate()
    var profile: HardwareProfile?
    /// RAM and CPU, read with each full enumeration (hotplug does not change them here).
    var ramBytes: UInt64 = 0
    var cpu = CPUInfo(model: nil, cores: 1, flags: [])
    var volumes: [String: ProvisioningVolume] = [:]
    weak var hook: ProvisioningHook?

    /// Monitor retries: 1 s, doubling, at most a minute apart.
    /// 1, 2, 4 … 60 s: no jitter, a box's own kernel is not a shared server.
    static func retryDelay(failures: Int) -> Duration {
        Backoff(base: .seconds(1), max: .seconds(60), jitter: 0).delay(attempt: failures, random: 0)
    }
}

extension Supervisor {
    /// Where provisioning volumes are reported (issue 4's first-boot part).
    public var provisioningHook: ProvisioningHook? {
        get { hw.hook }
        set { hw.hook = newValue }
    }

    var hardware: HardwareProfile? { hw.profile }
    var capabilities: Set<String> { hw.gate.effective }

    var hotplugDescription: String? {
        if let m = hw.monitor { return m.source }
        guard let e = hw.monitorError else { return nil }
        let retry = hw.monitorRetryAt.map { " (retrying in \(max(0, ($0.since(Clock.monotonic()).milliseconds + 999) / 1000)) s)" } ?? ""
        return "unavailable: \(e)\(retry)"
    }

    /// The next moment the hardware part has something to do.
    var hardwareDeadline: Instant? {
        [hw.gate.nextDeadline, hw.monitorRetryAt].compactMap { $0 }.min()
    }

    /// At start: the monitor first, so that nothing plugged in during enumeration slips
    /// through; then the inventory, compared with the one the last run stored.
    func detectHardware() {
        openMonitor()
        let previous = store.loadInventory()
        rescan(initial: true)
        let current = Array(hw.inventory.values)
        if let previous {
            let diff = InventoryDiff(old: previous, new: current)
            if !diff.isEmpty {
                let since = store.loadMeta("hardware.bootId") == bootID ? "the daemon last ran" : "the last boot"
                logger.notice("hardware changed since \(since): \(diff.summary)")
                store.record(event(kind: "hardware.changed", worker: nil, message: "since \(since): \(diff.summary)"))
            }
        }
        store.setMeta("hardware.bootId", bootID)
    }

    private func openMonitor() {
        do {
            let m = try UdevMonitor()
            try loop.add(m.fd, events: EventLoop.readable) { [unowned self] events in self.onHotplug(events) }
            hw.monitor = m
            if hw.monitorError != nil {
                store.record(event(kind: "hardware.monitor-restored", worker: nil, message: "hotplug monitor open (\(m.source) source)"))
                logger.notice("hotplug monitor open again (\(m.source) source)")
            }
            hw.monitorError = nil
            hw.monitorRetryAt = nil
            hw.monitorFailures = 0
        } catch {
            monitorFailed(error)
        }
    }

    private func monitorFailed(_ error: SystemError) {
        if let m = hw.monitor { loop.remove(m.fd) }
        hw.monitor = nil
        hw.monitorFailures += 1
        let delay = HardwareState.retryDelay(failures: hw.monitorFailures)
        hw.monitorError = error
        hw.monitorRetryAt = Clock.monotonic() + delay
        let message = "hotplug monitor unavailable: \(error); devices are enumerated, changes are not seen; retrying in \(delay.aiboxText)"
        logger.error("\(message)")
        store.record(event(kind: "hardware.monitor-failed", worker: nil, message: message))
        stateChanged = true
    }

    /// Enumerates everything again: at start, after the monitor comes back, after the
    /// kernel dropped events.
    private func rescan(initial: Bool) {
        var devices = UdevInventory.enumerate()
        HardwareProbe.addDriverMemory(&devices)
        let machine = HardwareProbe.profile([])
        hw.ramBytes = machine.ramBytes
        hw.cpu = machine.cpu
        let old = hw.inventory
        hw.inventory = Dictionary(devices.map { ($0.syspath, $0) }, uniquingKeysWith: { a, _ in a })
        if !initial {
            let diff = InventoryDiff(old: Array(old.values), new: devices)
            for d in diff.added { store.record(event(kind: "hardware.added", worker: nil, message: d.shortDescription)) }
            for d in diff.removed { store.record(event(kind: "hardware.removed", worker: nil, message: d.shortDescription)) }
        }
        applyHardware(initial: initial)
    }

    private func onHotplug(_ events: UInt32) {
        guard let m = hw.monitor else { return }
        let batch = m.receiveAll()
        var added: [DeviceRecord] = []
        for (action, device) in batch.events {
            switch action {
            case "remove":
                if let old = hw.inventory.removeValue(forKey: device.syspath) {
                    store.record(event(kind: "hardware.removed", worker: nil, message: old.shortDescription))
                }
            case "add", "change", "bind", "move", "online":
                // "change" carries new properties (a file system written to a stick, media in a reader).
                if hw.inventory.updateValue(device, forKey: device.syspath) == nil {
                    store.record(event(kind: "hardware.added", worker: nil, message: device.shortDescription))
                    added.append(device)
                }
            default:
                break
            }
        }
        if added.contains(where: { $0.vendorId == "10de" && $0.subsystem == "pci" }) {
            var all = Array(hw.inventory.values)
            HardwareProbe.addDriverMemory(&all)
            for d in all { hw.inventory[d.syspath] = d }
        }
        if let e = batch.error {
            monitorFailed(e)
        } else if events & EventLoop.failed != 0 {
            monitorFailed(SystemError("udev monitor socket", errno: EIO))
        }
        if batch.overflowed {
            logger.warning("the kernel dropped hotplug events (receive buffer full); enumerating again")
            store.record(
                event(kind: "hardware.events-lost", worker: nil, message: "hotplug events dropped by the kernel; enumerated again"))
            rescan(initial: false)
        } else {
            applyHardware(initial: false)
        }
        afterTurn()
    }

    /// Applies the inventory: capabilities gained count at once, lost ones after the
    /// gate's grace period (`hardwareTimer`).
    private func applyHardware(initial: Bool) {
        let now = Clock.monotonic()
        var profile = HardwareProfile(devices: Array(hw.inventory.values), ramBytes: hw.ramBytes, cpu: hw.cpu)
        let before = hw.gate.effective
        hw.gate.observe(Set(profile.capabilities), now: now)
        profile.capabilities = hw.gate.effective.sorted()
        let changed = hw.gate.effective != before
        hw.profile = profile
        if initial || changed {
            logger.notice("hardware: \(profile.summary)")
            store.record(event(kind: initial ? "hardware.profile" : "hardware.profile-changed", worker: nil, message: profile.summary))
            stateChanged = true  // waiting workers are looked at again
        }
        store.saveInventory(Array(hw.inventory.values))
        reportVolumes()
    }

    func hardwareTimer(now: Instant) {
        if let retry = hw.monitorRetryAt, retry <= now {
            hw.monitorRetryAt = nil
            openMonitor()
            // Whatever happened while deaf.
            if hw.monitor != nil { rescan(initial: false) }
        }
        let lost = hw.gate.expire(now: now)
        guard !lost.isEmpty else { return }
        let effective = hw.gate.effective.sorted()  // read first: `hw` is one variable (exclusive access)
        hw.profile?.capabilities = effective
        if let p = hw.profile {
            logger.notice("hardware: \(p.summary)")
            store.record(event(kind: "hardware.profile-changed", worker: nil, message: p.summary))
        }
        stateChanged = true
        guard !shuttingDown else { return }
        for name in order {
            guard let slot = slots[name], !slot.machine.definition.requiresHardware.isEmpty else { continue }
            let missing = missing(for: name).filter { $0.hasPrefix("hardware:") }
            if !missing.isEmpty { apply(name, slot.machine.requirementsLost(now: now, missing: missing)) }
        }
    }

    /// Provisioning volumes: compared with what was reported, each change told once.
    private func reportVolumes() {
        var now: [String: ProvisioningVolume] = [:]
        for d in hw.inventory.values { if let v = ProvisioningVolume.on(d) { now[v.syspath] = v } }
        for (path, v) in hw.volumes where now[path] != v {
            store.record(event(kind: "provisioning.volume-removed", worker: nil, message: "\(v.label) volume \(v.devnode) gone"))
            hw.hook?.volumeRemoved(v)
        }
        for (path, v) in now where hw.volumes[path] != v {
            let message = "\(v.label) volume on \(v.devnode) (\(v.fsType ?? "unknown file system"))"
            logger.notice("provisioning: \(message)")
            store.record(event(kind: "provisioning.volume-added", worker: nil, message: message))
            hw.hook?.volumeAppeared(v)
        }
        hw.volumes = now
    }
}

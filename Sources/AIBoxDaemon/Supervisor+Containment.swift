import AIBoxCore
import AIBoxSystem
import Glibc

/// Containment: each worker in a cgroup v2 of its own (or the process-group rule where that
/// cannot be had), its leftovers killed with cgroup.kill, orphans from outside any worker
/// killed, pressure recorded.
extension Supervisor {
    /// How often the daemon's children are looked at for orphans reparented to it.
    static let orphanCheckInterval: Duration = .seconds(2)

    /// Sets up the cgroup tree (or says why not) before the first worker starts.
    func setUpContainment() {
        let (c, tree) = CgroupTree.establish(root: paths.root)
        containment = c
        cgroups = tree
        if let tree {
            do {
                try loop.add(tree.eventsFD, events: EventLoop.readable) { [unowned self] _ in self.onCgroupEvents() }
            } catch {
                logger.warning("cannot watch the workers' cgroup.events (\(error)); leftovers are waited for by stop-timeout")
            }
            let now = Clock.monotonic()
            nextOrphanCheck = now + Supervisor.orphanCheckInterval
            nextPressureCheck = now + PressureWatch.interval
        }
        logger.notice("containment: \(c.summary)")
        store.record(event(kind: "daemon.containment", worker: nil, message: c.summary))
    }

    /// The main process has exited and processes are left in the worker's cgroup: all of them
    /// get SIGKILL (cgroup.kill), and the exit reaches the machine once the cgroup is empty, so
    /// that "stopped" means nothing of it runs and a restart never overlaps its leftovers.
    /// Returns true when the cgroup is already empty (deliver the exit now).
    func awaitEmpty(_ name: String, _ slot: WorkerSlot, _ cg: CgroupTree, _ status: ExitStatus, now: Instant) -> Bool {
        cg.kill(name)
        slot.cgroupKilled = true
        do {
            try cg.watch(name)
        } catch {
            pendingLog.append((.warning, "worker \(name): cannot watch its cgroup (\(error)); checked again at its stop-timeout"))
        }
        if !cg.isPopulated(name) {
            cg.unwatch(name)
            return true
        }
        slot.pendingExit = (status, now)
        slot.emptyDeadline = now + slot.machine.definition.stopTimeout
        awaitingEmpty.insert(name)
        return false
    }

    private func onCgroupEvents() {
        guard let cg = cgroups else { return }
        for name in cg.changedWorkers() {
            guard let slot = slots[name], slot.pendingExit != nil, !cg.isPopulated(name) else { continue }
            finishPendingExit(name, slot)
        }
        afterTurn()
    }

    private func finishPendingExit(_ name: String, _ slot: WorkerSlot) {
        guard let (status, at) = slot.pendingExit else { return }
        awaitingEmpty.remove(name)
        cgroups?.unwatch(name)
        slot.pendingExit = nil
        slot.emptyDeadline = nil
        apply(name, slot.machine.exited(status, now: at, random: jitter()))
    }

    /// Timers of containment: leftovers that outlived cgroup.kill, orphans, pressure.
    func containmentTimer(now: Instant) {
        guard let cg = cgroups else { return }
        for name in awaitingEmpty.sorted() {
            guard let slot = slots[name], let deadline = slot.emptyDeadline, deadline <= now else { continue }
            if cg.isPopulated(name) {
                cg.kill(name)
                let text =
                    "\(cg.processes(name).count) process(es) still in its cgroup \(slot.machine.definition.stopTimeout.aiboxText) after cgroup.kill (uninterruptible sleep?); going on without waiting for them"
                store.record(event(kind: "worker.unkillable", worker: name, message: text))
                pendingLog.append((.error, "worker \(name): \(text)"))
            }
            finishPendingExit(name, slot)
        }
        if let next = nextOrphanCheck, next <= now {
            killOrphans(cg)
            nextOrphanCheck = now + Supervisor.orphanCheckInterval
        }
        if let next = nextPressureCheck, next <= now {
            checkPressure(cg)
            nextPressureCheck = now + PressureWatch.interval
        }
    }

    /// As a subreaper the daemon inherits every orphaned descendant. One in a worker's cgroup
    /// is that worker's (its cgroup goes with it); one outside every worker's cgroup that the
    /// daemon did not start itself (a process moved out of its worker's cgroup, a helper's
    /// daemonized grandchild) would run unsupervised for good: it is killed, and recorded.
    /// A child of ours keeps its pid until we reap it, so the pid checked is the pid killed.
    private func killOrphans(_ cg: CgroupTree) {
        for pid in ProcFS.childrenOfSelf() where byPID[pid] == nil && !Spawner.isOwnChild(pid) {
            guard let path = ProcFS.cgroupPath(pid), !cg.layout.isWorkerCgroup(path) else { continue }
            guard let info = ProcFS.info(pid), info.state != "Z" else { continue }
            let command = ProcFS.command(pid) ?? "?"
            guard sendSignal(SIGKILL, to: pid) else { continue }  // gone meanwhile: nothing to record
            let text = "killed pid \(pid) (\(command)): an orphan reparented to the supervisor from outside any worker (cgroup \(path))"
            store.record(event(kind: "daemon.orphan-killed", worker: nil, message: text))
            pendingLog.append((.warning, text))
        }
    }

    /// PSI of each running worker: an episode of high pressure is recorded when it starts and ends.
    /// While all workers together stay under the line, no worker can be over it: only
    /// `workers/` is read then (and the workers whose episode is still open).
    private func checkPressure(_ cg: CgroupTree) {
        let anyHigh = cg.pressure(nil).values.contains { $0.avg10 >= PressureWatch.high }
        for name in order {
            guard let slot = slots[name], slot.cgroupMade, slot.machine.state.hasProcess else { continue }
            guard anyHigh || !slot.pressure.raised.isEmpty else { continue }
            for (kind, message) in slot.pressure.observe(cg.pressure(name)) {
                store.record(event(kind: kind, worker: name, message: message))
                pendingLog.append((.notice, "worker \(name): \(message)"))
            }
        }
    }
}

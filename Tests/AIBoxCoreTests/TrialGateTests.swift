import Testing

@testable import AIBoxCore

@Suite("Trial gate") struct TrialGateTests {
    let t0 = Instant(nanoseconds: 10_000_000_000)
    func w(_ ready: Bool, restarts: Int = 0, quarantined: Bool = false) -> TrialGate.Worker {
        TrialGate.Worker(name: "agent", ready: ready, quarantined: quarantined, restarts: restarts)
    }

    @Test func commitsAfterAStableStretchOnly() {
        var g = TrialGate(started: t0, commitAfter: .seconds(300), deadline: .seconds(1800))
        #expect(g.evaluate(now: t0, critical: [w(false)]) == .wait(until: t0 + .seconds(1800)))
        #expect(g.evaluate(now: t0 + .seconds(10), critical: [w(true)]) == .wait(until: t0 + .seconds(310)))
        // A restart in between starts the stretch again.
        #expect(g.evaluate(now: t0 + .seconds(200), critical: [w(true, restarts: 1)]) == .wait(until: t0 + .seconds(1800)))
        #expect(g.evaluate(now: t0 + .seconds(201), critical: [w(true, restarts: 1)]) == .wait(until: t0 + .seconds(501)))
        #expect(g.evaluate(now: t0 + .seconds(500), critical: [w(true, restarts: 1)]) == .wait(until: t0 + .seconds(501)))
        guard case .commit = g.evaluate(now: t0 + .seconds(501), critical: [w(true, restarts: 1)]) else {
            Issue.record("not committed after 300 s of health")
            return
        }
    }

    @Test func rejectsACrashLoopAtOnceAndAnUnhealthyBoxAtTheDeadline() {
        var g = TrialGate(started: t0, commitAfter: .seconds(300), deadline: .seconds(1800))
        #expect(
            g.evaluate(now: t0 + .seconds(5), critical: [w(false, quarantined: true)])
                == .reject("critical worker agent crash-looped (quarantined)"))
        var h = TrialGate(started: t0, commitAfter: .seconds(300), deadline: .seconds(1800))
        #expect(h.evaluate(now: t0 + .seconds(1799), critical: [w(false)]) == .wait(until: t0 + .seconds(1800)))
        #expect(
            h.evaluate(now: t0 + .seconds(1800), critical: [w(false)]) == .reject("not healthy within the commit deadline: agent not ready")
        )
    }

    @Test func withoutCriticalWorkersTheSlotIsGoodAfterTheStretch() {
        var g = TrialGate(started: t0, commitAfter: .seconds(60), deadline: .seconds(600))
        #expect(g.evaluate(now: t0, critical: []) == .wait(until: t0 + .seconds(60)))
        #expect(g.evaluate(now: t0 + .seconds(60), critical: []) == .commit("healthy for 1m (no critical workers)"))
    }

    /// The daemon gives the gate the boot clock with the boot as its start: a daemon killed
    /// and started again mid-trial makes a new gate with the same deadline, and one started
    /// after the deadline rejects at its first look.
    @Test func aGateMadeAgainAfterARestartKeepsTheDeadlineOfTheBoot() {
        let boot = Instant(nanoseconds: 0)
        var first = TrialGate(started: boot, commitAfter: .seconds(300), deadline: .seconds(1800))
        #expect(first.evaluate(now: boot + .seconds(20), critical: [w(false)]) == .wait(until: boot + .seconds(1800)))
        var again = TrialGate(started: boot, commitAfter: .seconds(300), deadline: .seconds(1800))
        #expect(again.evaluate(now: boot + .seconds(1000), critical: [w(false)]) == .wait(until: boot + .seconds(1800)))
        var late = TrialGate(started: boot, commitAfter: .seconds(300), deadline: .seconds(1800))
        #expect(late.evaluate(now: boot + .seconds(1801), critical: [w(true)]) == .reject("not healthy within the commit deadline"))
    }
}

import Testing

@testable import AIBoxCore

@Suite("DeadlineQueue")
struct DeadlineQueueTests {
    @Test("the earliest deadline of any key, against a scan of every key, through 50,000 random changes")
    func againstScan() {
        let q = DeadlineQueue()
        var truth: [String: Instant] = [:]
        var random = SplitMix64(seed: 7)
        for step in 0..<50_000 {
            let key = "w\(Int.random(in: 0..<100, using: &random))"
            let value: Instant? =
                Int.random(in: 0..<5, using: &random) == 0 ? nil : Instant(nanoseconds: UInt64.random(in: 0..<1_000, using: &random))
            q.set(key, value)
            truth[key] = value
            let want = truth.values.min()
            #expect(q.earliest() == want, "step \(step)")
            #expect(q.deadline(key) == value)
            if q.earliest() != want { return }
        }
        // Stale entries are dropped or compacted: the heap stays within a bound of the live keys.
        #expect(q.storedEntries <= 2 * 100 + 32)
    }

    @Test("watchdog pings in turn (each moves the earliest key to the back) keep the heap bounded")
    func pingsInTurn() {
        let q = DeadlineQueue()
        let names = (0..<100).map { "w\($0)" }
        var now = Instant(nanoseconds: 0)
        var pinged: [String: Instant] = [:]
        for _ in 0..<200 {
            for name in names {
                now = now + .milliseconds(10)
                q.set(name, now + .seconds(2))
                pinged[name] = now + .seconds(2)
                // The earliest is the one that pinged longest ago: the next in turn.
                #expect(q.earliest() == pinged.values.min())
            }
        }
        #expect(q.storedEntries <= 2 * 100 + 32)
        for name in names { q.set(name, nil) }
        #expect(q.earliest() == nil)
    }
}

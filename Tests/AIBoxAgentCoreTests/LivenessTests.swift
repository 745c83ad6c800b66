import AIBoxCore
import Testing

@testable import AIBoxAgentCore

@Suite("liveness")
struct LivenessTests {
    let t0 = Instant(nanoseconds: 1_000_000_000_000)

    @Test("an operation is stuck only once it is open past its deadline by the grace")
    func stuckAfterGrace() {
        var l = Liveness()
        let call = l.begin("a call to local/m", deadline: t0 + .seconds(120))
        #expect(l.stuck(now: t0 + .seconds(149)).isEmpty)
        #expect(l.stuck(now: t0 + .seconds(150)).map(\.what) == ["a call to local/m"])
        l.end(call)
        #expect(l.stuck(now: t0 + .seconds(3600)).isEmpty)
        #expect(l.count == 0)
    }

    @Test("progress moves the deadline: a long reply that keeps flowing is never stuck")
    func progress() {
        var l = Liveness()
        let call = l.begin("a stream", deadline: t0 + .seconds(30))
        for s in stride(from: 10, through: 600, by: 10) {
            l.extend(call, to: t0 + .seconds(Int64(s) + 30))
            #expect(l.stuck(now: t0 + .seconds(Int64(s))).isEmpty)
        }
        #expect(l.stuck(now: t0 + .seconds(600 + 30 + 30)).count == 1)
    }

    @Test("several open: the stuck ones, oldest deadline first; an ended token is gone for good")
    func several() {
        var l = Liveness()
        let a = l.begin("poll", deadline: t0 + .seconds(60))
        _ = l.begin("call", deadline: t0 + .seconds(10))
        _ = l.begin("fresh", deadline: t0 + .seconds(500))
        #expect(l.stuck(now: t0 + .seconds(100)).map(\.what) == ["call", "poll"])
        l.end(a)
        l.extend(a, to: t0)  // a late extension of an ended operation does not bring it back
        #expect(l.stuck(now: t0 + .seconds(100)).map(\.what) == ["call"])
        #expect(l.count == 2)
    }
}

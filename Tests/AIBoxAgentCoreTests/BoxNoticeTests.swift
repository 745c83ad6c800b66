import AIBoxCore
import Testing

@testable import AIBoxAgentCore

@Suite("the box's notices to its owner")
struct BoxNoticeTests {
    let t0 = Instant(nanoseconds: 5_000_000_000_000)

    @Test("the owner's kinds are told, keyed per worker, kind and day; the rest stays in the log")
    func kinds() throws {
        let q = try #require(BoxNotices.notice(BoxEvent(id: 1, kind: "worker.quarantined", worker: "flaky", message: "5 exits in 60 s"), day: "2026-12-02"))
        #expect(q.key == "box:worker.quarantined:flaky:2026-12-02")
        #expect(q.text == "flaky keeps failing and is paused for a while: 5 exits in 60 s")
        for kind in ["worker.parked", "worker.unkillable", "update.installed", "update.committed", "update.rolled-back", "update.failed", "hardware.removed", "daemon.database-rebuilt", "owner.notice"] {
            #expect(BoxNotices.notice(BoxEvent(id: 2, kind: kind, worker: nil, message: "m"), day: "d") != nil, "\(kind)")
        }
        for kind in ["worker.started", "worker.exited", "worker.ready", "update.checked", "daemon.started", "route.fallback"] {
            #expect(BoxNotices.notice(BoxEvent(id: 3, kind: kind, worker: "w", message: "m"), day: "d") == nil, "\(kind)")
        }
        // Two different notices of the agent's are two keys; the same one twice a day is one.
        let a = BoxNotices.notice(BoxEvent(id: 4, kind: "owner.notice", worker: nil, message: "budget spent"), day: "d")?.key
        let b = BoxNotices.notice(BoxEvent(id: 5, kind: "owner.notice", worker: nil, message: "key refused"), day: "d")?.key
        #expect(a != b && a == BoxNotices.notice(BoxEvent(id: 6, kind: "owner.notice", worker: nil, message: "budget spent"), day: "d")?.key)
        // A long message is cut to one line's bound.
        let long = BoxNotices.notice(BoxEvent(id: 7, kind: "update.failed", worker: nil, message: String(repeating: "x", count: 5000)), day: "d")
        #expect(long?.text.count == NoticeDesk.maxLine)
    }

    @Test("what comes within the gathering time is one message; the next waits a minute from the last")
    func gathering() {
        var d = NoticeDesk()
        #expect(d.message(now: t0) == nil)
        d.take("one", now: t0)
        d.take("two", now: t0 + .seconds(3))
        #expect(d.message(now: t0 + .seconds(9)) == nil)
        #expect(d.message(now: t0 + .seconds(10)) == "AI Box:\n- one\n- two")
        #expect(d.isEmpty && d.message(now: t0 + .seconds(11)) == nil)
        d.take("three", now: t0 + .seconds(20))
        #expect(d.dueAt() == t0 + .seconds(70))
        #expect(d.message(now: t0 + .seconds(69)) == nil)
        #expect(d.message(now: t0 + .seconds(70)) == "AI Box: three")
    }

    @Test("a storm is a bounded message that counts the rest")
    func storm() {
        var d = NoticeDesk()
        for i in 0..<1000 { d.take("event \(i)", now: t0) }
        let m = d.message(now: t0 + .seconds(10)) ?? ""
        #expect(m.split(separator: "\n").count == 1 + NoticeDesk.maxLines + 1)
        #expect(m.hasSuffix("(and \(1000 - NoticeDesk.maxLines) more: `aibox events`)"))
    }
}

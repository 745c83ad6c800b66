import Testing

@testable import AIBoxCore

@Suite("sd_notify messages")
struct NotifyMessageTests {
    @Test("several assignments in one datagram")
    func multiLine() {
        let m = NotifyMessage("READY=1\nSTATUS=Loading model 3/7\nWATCHDOG=1\n")
        #expect(m.ready)
        #expect(m.watchdog)
        #expect(m.status == "Loading model 3/7")
        #expect(!m.stopping)
        #expect(!m.watchdogTrigger)
        #expect(m.extendTimeout == nil)
    }

    @Test("EXTEND_TIMEOUT_USEC is microseconds")
    func extendTimeout() {
        #expect(NotifyMessage("EXTEND_TIMEOUT_USEC=2500000").extendTimeout == .milliseconds(2500))
        #expect(NotifyMessage("EXTEND_TIMEOUT_USEC=soon").extendTimeout == nil)
    }

    @Test("WATCHDOG=trigger asks for the watchdog action, not a ping")
    func watchdogTrigger() {
        let m = NotifyMessage("WATCHDOG=trigger")
        #expect(m.watchdogTrigger)
        #expect(!m.watchdog)
    }

    @Test("STOPPING=1 and RELOADING=1")
    func stoppingReloading() {
        #expect(NotifyMessage("STOPPING=1").stopping)
        #expect(NotifyMessage("RELOADING=1").reloading)
    }

    @Test("junk lines and unknown keys are ignored; values must be exact")
    func junk() {
        let m = NotifyMessage("hello\n=1\nFOO=bar\nREADY=0\nWATCHDOG=2\nready=1\n\n\nSTATUS=a=b\nMAINPID=12")
        #expect(
            m
                == {
                    var e = NotifyMessage()
                    e.status = "a=b"
                    return e
                }())
        #expect(NotifyMessage("") == NotifyMessage())
        #expect(NotifyMessage("READY=1 ").ready == false)
    }

    @Test("STATUS is cut at 256 characters; the last STATUS wins")
    func statusLimit() {
        #expect(NotifyMessage(Substring("STATUS=" + String(repeating: "x", count: 1000))).status?.count == 256)
        #expect(NotifyMessage("STATUS=one\nSTATUS=two").status == "two")
        #expect(NotifyMessage("STATUS=").status == "")
    }

    @Test("a datagram's bytes as received: bad UTF-8 is replaced, the lines around it still count")
    func datagramBytes() {
        let bytes: [UInt8] = Array("READY=1\nSTATUS=a".utf8) + [0xFF, 0xC0] + Array("b\nWATCHDOG=1".utf8)
        let m = NotifyMessage(datagram: bytes[...])
        #expect(m.ready && m.watchdog)
        #expect(m.status == "a\u{FFFD}\u{FFFD}b")
        #expect(NotifyMessage(datagram: [UInt8]()) == NotifyMessage())
    }

    @Test("lines end at each newline byte, as systemd reads them: READY=1\\r is not READY=1; an = with a combining mark still splits")
    func bytesNotCharacters() {
        let m = NotifyMessage("READY=1\r\nWATCHDOG=1\nSTATUS=\u{301}x")
        #expect(!m.ready)
        #expect(m.watchdog)
        #expect(m.status == "\u{301}x")
    }

    /// The reader before it worked on bytes (Characters of a String): kept as the reference.
    static func characterReader(_ bytes: [UInt8]) -> NotifyMessage {
        var m = NotifyMessage()
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq], value = line[line.index(after: eq)...]
            switch key {
            case "READY": m.ready = value == "1"
            case "WATCHDOG": if value == "1" { m.watchdog = true } else if value == "trigger" { m.watchdogTrigger = true }
            case "STOPPING": m.stopping = value == "1"
            case "RELOADING": m.reloading = value == "1"
            case "STATUS": m.status = String(value.prefix(256))
            case "EXTEND_TIMEOUT_USEC": if let us = Int64(value) { m.extendTimeout = .microseconds(us) }
            default: break
            }
        }
        return m
    }

    @Test("the byte reader agrees with the character reader on 20,000 generated datagrams without CR or combining marks")
    func differential() {
        let pieces: [[UInt8]] = [
            "READY", "WATCHDOG", "STATUS", "STOPPING", "RELOADING", "EXTEND_TIMEOUT_USEC", "MAINPID", "=", "=", "1", "0",
            "trigger", "\n", "\n", "x", " ", "2500000", "+5", "-3", "99999999999999999999", "é", "READY=1", "WATCHDOG=1\n",
        ].map { Array($0.utf8) } + [[0xFF], [0xC3], [0xE2, 0x82], [0x00], Array(repeating: 0x61, count: 300)]
        var random = SplitMix64(seed: 9)
        for _ in 0..<20_000 {
            var bytes: [UInt8] = []
            for _ in 0..<Int.random(in: 0...8, using: &random) { bytes += pieces.randomElement(using: &random)! }
            let got = NotifyMessage(datagram: bytes)
            let want = Self.characterReader(bytes)
            #expect(got == want, "datagram \(bytes)")
            if got != want { return }
        }
    }
}

func def(_ name: String, after: [String] = [], file: String = "/a.toml", exec: String? = nil) -> WorkerDefinition {
    var d = WorkerDefinition(name: name, exec: [exec ?? "/usr/bin/\(name)"])
    d.after = after
    d.source = SourceLocation(file: file, line: 1)
    return d
}

@Suite("Dependency order and reload plans")
struct DependencyOrderTests {
    @Test("levels: 0 without after, else one more than the deepest dependency")
    func levels() {
        let workers = [
            def("chat", after: ["llm", "db"]), def("llm", after: ["db"]), def("db"), def("solo"),
            def("orphan", after: ["not-defined"]),
        ]
        #expect(DependencyOrder.levels(workers) == ["db": 0, "solo": 0, "llm": 1, "chat": 2, "orphan": 0])
        #expect(DependencyOrder.levels([]) == [:])
    }

    @Test("levels terminates on a cycle")
    func levelsWithCycle() {
        let levels = DependencyOrder.levels([def("a", after: ["b"]), def("b", after: ["a"])])
        #expect(Set(levels.keys) == ["a", "b"])
    }

    @Test("findCycle names the cycle, first name repeated at the end")
    func findsCycle() {
        #expect(
            DependencyOrder.findCycle([def("a", after: ["b"]), def("b", after: ["c"]), def("c", after: ["a"])]) == ["a", "b", "c", "a"])
        #expect(DependencyOrder.findCycle([def("x"), def("a", after: ["a"])]) == ["a", "a"])
        // The cycle need not start at the first worker.
        #expect(DependencyOrder.findCycle([def("top", after: ["b"]), def("b", after: ["c"]), def("c", after: ["b"])]) == ["b", "c", "b"])
    }

    @Test("findCycle: none in a diamond, none through undefined names")
    func noCycle() {
        #expect(
            DependencyOrder.findCycle([def("top", after: ["l", "r"]), def("l", after: ["base"]), def("r", after: ["base"]), def("base")])
                == nil)
        #expect(DependencyOrder.findCycle([def("a", after: ["ghost"]), def("ghost2", after: ["a"])]) == nil)
        #expect(DependencyOrder.findCycle([]) == nil)
    }

    @Test("ReloadPlan sorts workers into added, removed, changed and unchanged")
    func reloadPlan() {
        let old = [def("keep"), def("change"), def("gone"), def("move", file: "/usr/lib/aibox/workers.d/a.toml")]
        var changed = def("change")
        changed.restart = .never
        let new = [
            def("keep"), changed, def("move", file: "/etc/aibox/workers.d/b.toml"), def("fresh"),
        ]
        let plan = ReloadPlan(old: old, new: new)
        #expect(plan.added == ["fresh"])
        #expect(plan.removed == ["gone"])
        #expect(plan.changed == ["change"])
        #expect(plan.unchanged == ["keep", "move"])
    }

    @Test("every field counts as a change", arguments: 0..<8)
    func everyFieldIsAChange(field: Int) {
        let base = def("w")
        var d = base
        switch field {
        case 0: d.exec = ["/usr/bin/w", "--flag"]
        case 1: d.env = ["A": "1"]
        case 2: d.watchdog = .seconds(5)
        case 3: d.crashLoop.burst = 9
        case 4: d.after = ["x"]
        case 5: d.memoryMax = 1
        case 6: d.stopSignal = Signals.int
        default: d.critical = true
        }
        #expect(ReloadPlan(old: [base], new: [d]).changed == ["w"])
        // The source location alone is no change.
        var moved = base
        moved.source = SourceLocation(file: "/elsewhere.toml", line: 40)
        #expect(ReloadPlan(old: [base], new: [moved]).unchanged == ["w"])
    }

    @Test("an empty reload plan")
    func emptyPlan() {
        #expect(ReloadPlan(old: [], new: []) == ReloadPlan(old: [def("a")], new: [def("a")]).withUnchangedCleared())
        let removeAll = ReloadPlan(old: [def("a"), def("b")], new: [])
        #expect(removeAll.removed == ["a", "b"])
        #expect(removeAll.added.isEmpty && removeAll.changed.isEmpty && removeAll.unchanged.isEmpty)
    }
}

extension ReloadPlan {
    fileprivate func withUnchangedCleared() -> ReloadPlan {
        var p = self
        p.unchanged = []
        return p
    }
}

import Testing

@testable import AIBoxCore

@Suite("Boot control") struct BootControlTests {
    @Test func aTrialSlotBootsItsTriesThenTheBoxFallsBack() {
        var env = BootEnvironment()
        #expect(env.boot() == "A")
        env.setPrimary("B", tries: 3)
        #expect(env.primary == "B")
        #expect(env.state(of: "B") == .trying)
        // Three boots on trial (the health check never passes), each using a try.
        for left in [2, 1, 0] {
            #expect(env.boot() == "B")
            #expect(env.triesLeft["B"] == left)
        }
        // No try left: B is bad, the box boots A again — rolled back.
        #expect(env.boot() == "A")
        #expect(env.state(of: "B") == .bad)
        #expect(env.boot() == "A")
    }

    @Test func aSlotMarkedGoodBootsWithoutCountingAndBadIsNeverBootedAgain() {
        var env = BootEnvironment()
        env.setPrimary("B", tries: 2)
        #expect(env.boot() == "B")
        env.setState("B", .good)
        for _ in 0..<20 { #expect(env.boot() == "B") }
        env.setState("B", .bad)
        #expect(env.primary == "A", "a bad slot is not primary")
        #expect(env.boot() == "A")
        // Both bad: the primary boots anyway (something must).
        env.setState("A", .bad)
        #expect(env.boot() != nil)
    }

    @Test func triesAreBoundedForTheBootLoadersScripts() {
        var env = BootEnvironment()
        env.setPrimary("B", tries: 50)
        #expect(env.triesLeft["B"] == 9)
        env.setPrimary("A", tries: 0)
        #expect(env.triesLeft["A"] == 1)
    }

    @Test func theTextFormRoundTripsAndBadTextIsRefused() throws {
        var env = BootEnvironment()
        env.setPrimary("B", tries: 3)
        _ = env.boot()
        #expect(env.text == "AIBOX_ORDER=B A\nAIBOX_A_STATE=good\nAIBOX_A_LEFT=0\nAIBOX_B_STATE=trying\nAIBOX_B_LEFT=2\nAIBOX_BOOTED=B\n")
        #expect(try BootEnvironment.parse(env.text).get() == env)
        // Other variables (the boot loader's own) are ignored.
        #expect(try BootEnvironment.parse("saved_entry=0\n" + env.text).get() == env)
        for bad in [
            "", "AIBOX_ORDER=\n", "AIBOX_ORDER=A A\n", "AIBOX_ORDER=a b\n",
            "AIBOX_ORDER=A\nAIBOX_A_STATE=maybe\nAIBOX_A_LEFT=0\n", "AIBOX_ORDER=A\nAIBOX_A_STATE=good\nAIBOX_A_LEFT=10\n",
            "AIBOX_ORDER=A\nAIBOX_A_STATE=good\n",
        ] {
            guard case .failure = BootEnvironment.parse(bad) else {
                Issue.record("accepted: \(bad)")
                continue
            }
        }
    }

    @Test func theFileFormDetectsTornWritesAndTakesTheNewestValidCopy() throws {
        #expect(crc32(Array("123456789".utf8)) == 0xCBF4_3926)
        var env = BootEnvironment()
        let first = BootEnvironmentFile.encode(env, sequence: 7)
        env.setPrimary("B", tries: 3)
        let second = BootEnvironmentFile.encode(env, sequence: 8)
        #expect(try BootEnvironmentFile.decode(second).get().1 == 8)
        let chosen = try #require(BootEnvironmentFile.choose([first, second]))
        #expect(chosen.sequence == 8 && chosen.newest == 1 && chosen.env.primary == "B")
        // A torn write of the newer copy: every prefix of it is refused, the older one wins.
        for cut in stride(from: 0, to: second.count - 1, by: 7) {
            let torn = Array(second.prefix(cut))
            guard case .failure = BootEnvironmentFile.decode(torn) else {
                Issue.record("a copy cut at \(cut) bytes was taken")
                continue
            }
            #expect(BootEnvironmentFile.choose([first, torn])?.sequence == 7)
        }
        // A flipped bit anywhere is caught.
        var flipped = second
        flipped[10] ^= 0x01
        #expect(BootEnvironmentFile.choose([first, flipped])?.sequence == 7)
        #expect(BootEnvironmentFile.choose([nil, nil]) == nil)
    }
}

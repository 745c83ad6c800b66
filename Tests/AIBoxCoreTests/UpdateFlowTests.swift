import Testing

@testable import AIBoxCore

/// The update flow, transition by transition: reconciliation with the boot environment (every
/// rule of docs/UPDATES.md's table), each event in each state it applies to and some it
/// refuses, the journal's rows (old ones too), the floor file and the bundle source.
@Suite("Update flow") struct UpdateFlowTests {
    let v1 = SemanticVersion("1.1.0")!
    let v2 = SemanticVersion("2.0.0")!

    func env(_ order: [SlotName] = ["A", "B"], _ states: [SlotName: SlotState], left: [SlotName: Int] = [:]) -> BootEnvironment {
        var e = BootEnvironment()
        e.order = order
        e.states = states
        e.triesLeft = ["A": left["A"] ?? 0, "B": left["B"] ?? 0]
        return e
    }

    /// A booted, good; B primary on trial (as an install leaves it).
    var installedEnv: BootEnvironment { env(["B", "A"], ["A": .good, "B": .trying], left: ["B": 3]) }

    func seen(_ booted: SlotName, _ e: BootEnvironment, running: Bool = false, floor: VersionFloor = VersionFloor()) -> UpdateObservation {
        UpdateObservation(booted: booted, env: e, installerRunning: running, floor: floor)
    }

    func kinds(_ actions: [UpdateAction]) -> [String] {
        actions.compactMap { if case .save(let n?) = $0 { n.kind } else { nil } }
    }

    // MARK: Reconciliation

    @Test func aDeadInstallWhoseTargetIsPrimaryOnTrialHadCompleted() {
        var f = UpdateFlow(state: .installing(target: "B", version: v1))
        let actions = f.reconcile(seen("A", installedEnv))
        #expect(f.state == .installed(UpdateSlot("B", v1)))
        #expect(f.versions["B"] == v1, "the slot's version recorded, as the lost line would have")
        #expect(kinds(actions) == ["update.installed"])
    }

    @Test func anInstallStillRunningIsLeftAlone() {
        var f = UpdateFlow(state: .installing(target: "B", version: v1))
        #expect(f.reconcile(seen("A", env(["A", "B"], ["A": .good, "B": .bad]), running: true)) == [])
        #expect(f.state == .installing(target: "B", version: v1))
    }

    @Test func aDeadInstallWithItsTargetBadWasInterrupted() {
        var f = UpdateFlow(state: .installing(target: "B", version: v1))
        let actions = f.reconcile(seen("A", env(["A", "B"], ["A": .good, "B": .bad])))
        #expect(f.state == .interrupted(target: "B"))
        #expect(f.state.reason?.contains("interrupted") == true)
        #expect(kinds(actions) == ["update.interrupted"])
    }

    /// Killed before the header: the slot still holds the install before, primary on trial.
    @Test func aDeadDownloadBeforeItsHeaderLeavesThePreviousInstall() {
        var f = UpdateFlow(state: .downloading(target: "B"), versions: ["B": v1])
        _ = f.reconcile(seen("A", installedEnv))
        #expect(f.state == .installed(UpdateSlot("B", v1)))
    }

    /// Killed between set-primary and the journal, then rebooted before anyone looked: one
    /// look goes through installed to trying.
    @Test func aLostLineThenTheRebootGoesStraightToTrying() {
        var f = UpdateFlow(state: .installing(target: "B", version: v1))
        let actions = f.reconcile(seen("B", installedEnv))
        #expect(f.state == .trying(UpdateSlot("B", v1)))
        #expect(kinds(actions) == ["update.installed", "update.trying"])
    }

    @Test func installedThenBootedOnTrialIsTrying() {
        var f = UpdateFlow(state: .installed(UpdateSlot("B", v1)), versions: ["B": v1])
        #expect(f.reconcile(seen("A", installedEnv)) == [], "not rebooted yet: nothing changes")
        #expect(f.state == .installed(UpdateSlot("B", v1)))
        let actions = f.reconcile(seen("B", installedEnv))
        #expect(f.state == .trying(UpdateSlot("B", v1)))
        #expect(actions == [.save(UpdateNote("update.trying", "booted slot B (version 1.1.0) on trial"))])
        #expect(f.reconcile(seen("B", installedEnv)) == [], "on trial: the gate decides, not the look")
    }

    /// Nobody looked while the slot used up its tries: rolled back all the same.
    @Test func installedAndNeverSeenOnTrialButOutOfTriesIsRolledBack() {
        var f = UpdateFlow(state: .installed(UpdateSlot("B", v2)))
        let actions = f.reconcile(seen("A", env(["B", "A"], ["A": .good, "B": .bad])))
        #expect(f.state == .rolledBack(UpdateSlot("B", v2), reason: "slot B (version 2.0.0) did not become healthy within its boot tries"))
        #expect(actions == [.save(UpdateNote("update.rolled-back", "slot B (version 2.0.0) failed its trial; slot A runs again"))])
    }

    /// The boot environment written, the journal's line lost (a kill in between).
    @Test func onTrialButMarkedGoodIsCommittedWithItsFloor() {
        var f = UpdateFlow(state: .trying(UpdateSlot("B", v2)))
        let actions = f.reconcile(seen("B", env(["B", "A"], ["A": .good, "B": .good]), floor: VersionFloor(file: .version(v1))))
        #expect(f.state == .committed(UpdateSlot("B", v2)))
        #expect(kinds(actions) == ["update.committed"])
        #expect(actions.contains(.raiseFloor(v2)))
    }

    @Test func onTrialButMarkedBadIsRejected() {
        var f = UpdateFlow(state: .trying(UpdateSlot("B", v2)))
        _ = f.reconcile(seen("B", env(["A", "B"], ["A": .good, "B": .bad])))
        guard case .rejected(let s, _) = f.state else {
            Issue.record("\(f.state)")
            return
        }
        #expect(s == UpdateSlot("B", v2))
    }

    @Test func aTrialEndedByTheBootLoaderIsRolledBack() {
        var f = UpdateFlow(state: .trying(UpdateSlot("B", v2)))
        _ = f.reconcile(seen("A", env(["B", "A"], ["A": .good, "B": .bad])))
        #expect(f.state == .rolledBack(UpdateSlot("B", v2), reason: "slot B (version 2.0.0) did not become healthy within its boot tries"))
    }

    /// The trial slot still trying but another one booted: the trial is over (no gate may run
    /// on the slot booted instead).
    @Test func anotherSlotBootedDuringATrialEndsIt() {
        var f = UpdateFlow(state: .trying(UpdateSlot("B", v2)))
        _ = f.reconcile(seen("A", env(["A", "B"], ["A": .good, "B": .trying], left: ["B": 2])))
        #expect(f.state == .rolledBack(UpdateSlot("B", v2), reason: "slot A booted instead of slot B, which was on trial"))
    }

    @Test func aRejectedSlotWaitsForTheRebootThenIsRolledBackWithItsReason() {
        var f = UpdateFlow(state: .rejected(UpdateSlot("B", v2), reason: "slot B marked bad: crash loop"))
        let bad = env(["A", "B"], ["A": .good, "B": .bad])
        #expect(f.reconcile(seen("B", bad)) == [], "not rebooted yet")
        _ = f.reconcile(seen("A", bad))
        #expect(f.state == .rolledBack(UpdateSlot("B", v2), reason: "slot B marked bad: crash loop"))
    }

    /// The branch the old reconcile had for this could never run (the one before took it),
    /// and it needed the journal's target: a journal rebuilt, or failed, still runs the trial.
    @Test(arguments: [UpdateState.idle, .failed(target: "A", reason: "x"), .interrupted(target: "A"), .committed(UpdateSlot("A", nil))])
    func aSlotBootedOnTrialIsOnTrialWhateverTheJournalSays(state: UpdateState) {
        var f = UpdateFlow(state: state, versions: ["B": v1])
        _ = f.reconcile(seen("B", installedEnv))
        #expect(f.state == .trying(UpdateSlot("B", v1)))
    }

    /// The old reconcile turned this back into a trial at the next look.
    @Test func aRollbackByHandDuringATrialStaysRolledBack() throws {
        var f = UpdateFlow(state: .trying(UpdateSlot("B", v2)))
        let trial = env(["B", "A"], ["A": .good, "B": .trying], left: ["B": 2])
        let actions = try f.handle(.rollback, seen: seen("B", trial))
        #expect(actions.first == .boot([.bootNext("A")]))
        var after = trial
        after.apply(.bootNext("A"))
        #expect(f.reconcile(seen("B", after)) == [])
        guard case .rolledBack = f.state else {
            Issue.record("\(f.state)")
            return
        }
    }

    @Test func theFloorFileIsWrittenWhereItIsBehind() {
        let good = env(["A", "B"], ["A": .good, "B": .bad])
        // A box from before the file: the database's floor copied into it.
        var f = UpdateFlow(state: .idle)
        #expect(f.reconcile(seen("A", good, floor: VersionFloor(file: .absent, database: v1))) == [.raiseFloor(v1)])
        // A commit whose file write failed: written again at the next look.
        f = UpdateFlow(state: .committed(UpdateSlot("A", v2)))
        #expect(f.reconcile(seen("A", good, floor: VersionFloor(file: .version(v1), database: v2))) == [.raiseFloor(v2)])
        #expect(f.reconcile(seen("A", good, floor: VersionFloor(file: .version(v2), database: v2))) == [])
        // Unreadable: left alone (installs refuse); only an explicit commit writes it anew.
        #expect(f.reconcile(seen("A", good, floor: VersionFloor(file: .unreadable("bad"), database: v1))) == [])
    }

    // MARK: The installer's events

    @Test func anInstallStartsFromAFileOrAURL() throws {
        let fresh = env(["A", "B"], ["A": .good, "B": .bad])
        var f = UpdateFlow()
        var actions = try f.handle(.installStarting(.file("/tmp/u.aibox"), target: "B"), seen: seen("A", fresh))
        #expect(f.state == .installing(target: "B", version: nil))
        #expect(actions == [.save(UpdateNote("update.installing", "installing /tmp/u.aibox into slot B"))])
        f = UpdateFlow(state: .committed(UpdateSlot("A", v1)))
        actions = try f.handle(.installStarting(.url("http://h/u.aibox"), target: "B"), seen: seen("A", fresh))
        #expect(f.state == .downloading(target: "B"))
        #expect(kinds(actions) == ["update.downloading"])
    }

    /// Installing into the good slot while the running one is on trial (or marked bad) would
    /// leave no good slot to fall back on.
    @Test func anInstallIntoTheOnlyGoodSlotIsRefused() {
        var f = UpdateFlow(state: .trying(UpdateSlot("B", v1)))
        let trial = env(["B", "A"], ["A": .good, "B": .trying], left: ["B": 2])
        #expect(throws: UpdateFlowError.self) { try f.handle(.installStarting(.file("x"), target: "A"), seen: seen("B", trial)) }
        #expect(f.state == .trying(UpdateSlot("B", v1)), "unchanged")
        do {
            _ = try f.handle(.installStarting(.file("x"), target: "A"), seen: seen("B", trial))
        } catch {
            #expect(error.description.contains("slot B runs on trial"), "\(error)")
        }
        var r = UpdateFlow(state: .rejected(UpdateSlot("B", v1), reason: "x"))
        do {
            _ = try r.handle(.installStarting(.file("x"), target: "A"), seen: seen("B", env(["A", "B"], ["A": .good, "B": .bad])))
            Issue.record("installed into the good slot while a bad one runs")
        } catch {
            #expect(error.description.contains("reboot into slot A"), "\(error)")
        }
        // Nothing good to lose: allowed.
        var g = UpdateFlow(state: .trying(UpdateSlot("B", v1)))
        #expect(throws: Never.self) {
            try g.handle(.installStarting(.file("x"), target: "A"), seen: seen("B", env(["B", "A"], ["A": .bad, "B": .trying])))
        }
    }

    @Test func theVerifiedHeaderMakesTheTargetBadBeforeItsFirstByte() throws {
        var f = UpdateFlow(state: .installing(target: "B", version: nil), versions: ["B": v1])
        let actions = try f.handle(.headerVerified(v2), seen: seen("A", installedEnv))
        #expect(actions == [.boot([.setState("B", .bad)]), .save(nil)])
        #expect(f.state == .installing(target: "B", version: v2))
        #expect(f.versions["B"] == nil, "the slot no longer holds what it held")
    }

    @Test func theVerifiedSlotBecomesPrimaryOnTrial() throws {
        var f = UpdateFlow(state: .installing(target: "B", version: v2))
        let actions = try f.handle(.installVerified(tries: 3), seen: seen("A", installedEnv))
        #expect(actions.first == .boot([.setPrimary("B", tries: 3)]), "the boot environment before the journal")
        #expect(kinds(actions) == ["update.installed"])
        #expect(f.state == .installed(UpdateSlot("B", v2)) && f.versions["B"] == v2)
    }

    @Test func installStepsOutsideAnInstallAreRefused() {
        var f = UpdateFlow(state: .committed(UpdateSlot("A", v1)))
        let s = seen("A", installedEnv)
        #expect(throws: UpdateFlowError.self) { try f.handle(.headerVerified(v2), seen: s) }
        #expect(throws: UpdateFlowError.self) { try f.handle(.installFailed("x"), seen: s) }
        var noHeader = UpdateFlow(state: .installing(target: "B", version: nil))
        #expect(throws: UpdateFlowError.self) { try noHeader.handle(.installVerified(tries: 3), seen: s) }
        #expect(f.state == .committed(UpdateSlot("A", v1)))
    }

    @Test func aFailedInstallIsFailedWithItsReason() throws {
        var f = UpdateFlow(state: .downloading(target: "B"))
        let actions = try f.handle(.installFailed("HTTP 404"), seen: seen("A", installedEnv))
        #expect(f.state == .failed(target: "B", reason: "HTTP 404") && f.state.reason == "HTTP 404")
        #expect(kinds(actions) == ["update.failed"])
    }

    // MARK: The trial and the verbs by hand

    var trialEnv: BootEnvironment { env(["B", "A"], ["A": .good, "B": .trying], left: ["B": 2]) }

    @Test func aPassedTrialMarksTheSlotGoodThenRaisesTheFloorThenWritesTheJournal() throws {
        var f = UpdateFlow(state: .trying(UpdateSlot("B", v2)))
        let actions = try f.handle(
            .trialPassed("healthy for 5m (agent)"), seen: seen("B", trialEnv, floor: VersionFloor(file: .version(v1))))
        #expect(
            actions == [
                .boot([.setState("B", .good), .bootNext("B")]), .raiseFloor(v2),
                .save(UpdateNote("update.committed", "slot B marked good: healthy for 5m (agent)")),
            ])
        #expect(f.state == .committed(UpdateSlot("B", v2)))
    }

    /// A committed signed rollback (older than the floor) does not lower it.
    @Test func aCommittedRollbackKeepsTheFloor() throws {
        var f = UpdateFlow(state: .trying(UpdateSlot("B", v1)))
        let actions = try f.handle(.trialPassed("ok"), seen: seen("B", trialEnv, floor: VersionFloor(file: .version(v2))))
        #expect(!actions.contains { if case .raiseFloor = $0 { true } else { false } })
    }

    @Test func aFailedTrialMarksTheSlotBadAndAsksForTheReboot() throws {
        var f = UpdateFlow(state: .trying(UpdateSlot("B", v2)))
        let actions = try f.handle(.trialFailed("critical worker agent crash-looped"), seen: seen("B", trialEnv))
        #expect(
            actions == [
                .boot([.setState("B", .bad)]),
                .save(UpdateNote("update.rejected", "slot B marked bad: critical worker agent crash-looped")),
                .reboot("slot B failed its trial (critical worker agent crash-looped): rebooting into slot A"),
            ])
        #expect(f.owedReboot(seen("B", env(["A", "B"], ["A": .good, "B": .bad]))) != nil, "owed until the box reboots")
        #expect(f.owedReboot(seen("A", env(["A", "B"], ["A": .good, "B": .bad]))) == nil)
    }

    @Test func theGateDecidesOnlyDuringATrialOfTheBootedSlot() {
        var f = UpdateFlow(state: .committed(UpdateSlot("B", v2)))
        #expect(throws: UpdateFlowError.self) { try f.handle(.trialPassed("x"), seen: seen("B", trialEnv)) }
        #expect(throws: UpdateFlowError.self) { try f.handle(.trialFailed("x"), seen: seen("B", trialEnv)) }
    }

    /// The box would have nothing good to boot.
    @Test func markingBadWithNoOtherGoodSlotIsRefused() {
        var f = UpdateFlow(state: .trying(UpdateSlot("B", v2)))
        let noFallback = env(["B", "A"], ["A": .bad, "B": .trying], left: ["B": 2])
        #expect(throws: UpdateFlowError.self) { try f.handle(.trialFailed("x"), seen: seen("B", noFallback)) }
        #expect(throws: UpdateFlowError.self) { try f.handle(.markBad, seen: seen("B", noFallback)) }
        #expect(f.state == .trying(UpdateSlot("B", v2)))
    }

    @Test func markBadByHandAsksForNoReboot() throws {
        var f = UpdateFlow(state: .trying(UpdateSlot("B", v2)))
        let actions = try f.handle(.markBad, seen: seen("B", trialEnv))
        #expect(!actions.contains { if case .reboot = $0 { true } else { false } })
        #expect(f.state.name == "rejected")
    }

    @Test func markGoodOnAGoodSlotOnlyRepairsTheFloor() throws {
        let good = env(["A", "B"], ["A": .good, "B": .bad])
        var f = UpdateFlow(state: .committed(UpdateSlot("A", v2)), versions: ["A": v2])
        #expect(try f.handle(.markGood, seen: seen("A", good, floor: VersionFloor(file: .version(v2)))) == [])
        // An unreadable floor file: a person confirming the running slot writes it anew
        // (never below the database's copy).
        let higher = SemanticVersion("3.0.0")!
        #expect(
            try f.handle(.markGood, seen: seen("A", good, floor: VersionFloor(file: .unreadable("x"), database: higher))) == [
                .raiseFloor(higher)
            ])
    }

    /// The slot booted because nothing else could: a person may keep it.
    @Test func markGoodOnABadBootedSlotCommitsIt() throws {
        var f = UpdateFlow(state: .idle, versions: ["A": v1])
        let actions = try f.handle(.markGood, seen: seen("A", env(["A", "B"], ["A": .bad, "B": .bad])))
        #expect(actions.first == .boot([.setState("A", .good), .bootNext("A")]))
        #expect(f.state == .committed(UpdateSlot("A", v1)))
    }

    @Test func rollbackNeedsAGoodSlotToGoTo() throws {
        var f = UpdateFlow(state: .committed(UpdateSlot("A", v1)))
        do {
            _ = try f.handle(.rollback, seen: seen("A", env(["A", "B"], ["A": .good, "B": .bad])))
            Issue.record("rolled back to a bad slot")
        } catch {
            #expect(error.description == "slot B is bad, not good: there is nothing safe to roll back to")
        }
        let actions = try f.handle(.rollback, seen: seen("A", env(["A", "B"], ["A": .good, "B": .good])))
        #expect(actions == [.boot([.bootNext("B")]), .save(UpdateNote("update.rolled-back", "rollback requested: slot B boots next"))])
    }

    // MARK: The journal's rows

    @Test(arguments: [
        UpdateState.idle, .downloading(target: "B"), .installing(target: "B", version: nil),
        .installing(target: "B", version: SemanticVersion("2.0.0")!), .installed(UpdateSlot("B", SemanticVersion("2.0.0")!)),
        .trying(UpdateSlot("B", SemanticVersion("2.0.0")!)), .committed(UpdateSlot("B", SemanticVersion("2.0.0")!)),
        .rejected(UpdateSlot("B", SemanticVersion("2.0.0")!), reason: "slot B marked bad: x"),
        .rolledBack(UpdateSlot("B", SemanticVersion("2.0.0")!), reason: "y"), .interrupted(target: "B"), .failed(target: "B", reason: "z"),
        .failed(target: nil, reason: "z"),
    ])
    func everyStateSurvivesTheJournal(state: UpdateState) {
        let f = UpdateFlow(state: state, versions: ["A": v1, "B": v2])
        let rows = f.journalValues(slots: ["A", "B"]).compactMapValues { $0 }
        #expect(UpdateFlow(journal: rows, slots: ["A", "B"]) == f)
        #expect(rows["update.state"] == state.name)
    }

    /// What boxes have from the journal before the flow: a reject was "failed" with
    /// `update.trial` naming the target; that key is retired at the first write.
    @Test func theJournalBeforeTheFlowIsRead() {
        let old: [String: String] = [
            "update.state": "failed", "update.target": "B", "update.trial": "B", "update.lastError": "slot B marked bad: crash",
            "update.slot.B.version": "1.1.0", "update.version": "1.1.0", "update.floor": "1.0.0",
        ]
        let f = UpdateFlow(journal: old, slots: ["A", "B"])
        #expect(f.state == .rejected(UpdateSlot("B", v1), reason: "slot B marked bad: crash"))
        #expect(f.journalValues(slots: ["A", "B"])["update.trial"] == .some(nil))
        var failed = old
        failed["update.trial"] = nil
        #expect(UpdateFlow(journal: failed, slots: ["A", "B"]).state == .failed(target: "B", reason: "slot B marked bad: crash"))
        #expect(UpdateFlow(journal: ["update.state": "frobbing"], slots: ["A", "B"]).state == .idle)
        #expect(UpdateFlow(journal: ["update.state": "trying"], slots: ["A", "B"]).state == .idle, "a trial without a slot")
    }

    // MARK: The floor

    @Test func theFloorFileIsReadBackAndAFlippedBitIsSeen() throws {
        let bytes = VersionFloorFile.encode(SemanticVersion("1.5.0")!)
        #expect(String(decoding: bytes, as: UTF8.self).hasPrefix("AIBOX_FLOOR=1.5.0\nAIBOX_CRC="))
        #expect(try VersionFloorFile.decode(bytes).get() == SemanticVersion("1.5.0")!)
        // 1.5.0 → 1.4.0 is one bit: a version still, but not the one written.
        var flipped = bytes
        flipped[14] ^= 0x01
        #expect(String(decoding: flipped.prefix(17), as: UTF8.self) == "AIBOX_FLOOR=1.4.0")
        #expect(throws: UpdateFlowError.self) { try VersionFloorFile.decode(flipped).get() }
        #expect(throws: UpdateFlowError.self) { try VersionFloorFile.decode(Array("1.5.0\n".utf8)).get() }
        #expect(throws: UpdateFlowError.self) { try VersionFloorFile.decode(Array(bytes.dropLast(3))).get() }
        #expect(throws: UpdateFlowError.self) { try VersionFloorFile.decode([]).get() }
    }

    @Test func theFloorIsTheHigherOfFileAndDatabaseAndUnknownWhenTheFileIsUnreadable() throws {
        #expect(try VersionFloor(file: .version(v2), database: v1).effective.get() == v2)
        #expect(try VersionFloor(file: .version(v1), database: v2).effective.get() == v2)
        #expect(try VersionFloor(file: .absent, database: v1).effective.get() == v1)
        #expect(try VersionFloor().effective.get() == nil)
        #expect(throws: UpdateFlowError.self) { try VersionFloor(file: .unreadable("x"), database: v2).effective.get() }
    }

    /// An unreadable floor lets only a signed rollback through; compatible is checked first.
    @Test func anUnreadableFloorRefusesAllButASignedRollback() throws {
        let floor = VersionFloor(file: .unreadable("var/lib/aibox/update-floor: checksum mismatch"), database: v1)
        func check(_ version: String, rollback: Bool = false, compatible: String = "aibox-x86-64") throws -> Result<
            UpdateDecision, UpdateRefusal
        > {
            var m = try BundleFixtures.manifest(rollback: rollback, version: version)
            m.compatible = compatible
            return UpdatePolicy.check(m, compatible: "aibox-x86-64", floor: floor)
        }
        guard case .failure(let refusal) = try check("9.0.0") else {
            Issue.record("a newer version passed an unknown floor")
            return
        }
        #expect(refusal.reason == .floorUnknown)
        #expect(refusal.message.hasPrefix("the version floor cannot be read (var/lib/aibox/update-floor: checksum mismatch)"))
        #expect(try check("0.1.0", rollback: true) == .success(.rollback))
        #expect((try? check("9.0.0", rollback: true, compatible: "other").get()) == nil, "compatible still first")
        // A readable floor: the database's copy counts when there is no file.
        let older = UpdatePolicy.check(
            try BundleFixtures.manifest(rollback: false, version: "1.0.0"), compatible: "aibox-x86-64", floor: VersionFloor(database: v1))
        #expect((try? older.get()) == nil)
    }

    // MARK: Bundle sources

    @Test func aBundleIsAFileOrAnHTTPURLAndAnyOtherSchemeIsNamed() {
        #expect(BundleSource.parse("/tmp/u.aibox") == .success(.file("/tmp/u.aibox")))
        #expect(BundleSource.parse("u.aibox") == .success(.file("u.aibox")))
        #expect(BundleSource.parse("http://h/u.aibox") == .success(.url("http://h/u.aibox")))
        #expect(BundleSource.parse("HTTPS://h/u.aibox") == .success(.url("HTTPS://h/u.aibox")))
        #expect(
            BundleSource.parse("ftp://h/u.aibox")
                == .failure(UpdateFlowError("unsupported URL scheme ftp; use http or https or a file path")))
        #expect(
            BundleSource.parse("gopher://h/u")
                == .failure(UpdateFlowError("unsupported URL scheme gopher; use http or https or a file path")))
        #expect(
            BundleSource.parse("file:///tmp/u.aibox")
                == .failure(UpdateFlowError("unsupported URL scheme file; use http or https, or give the bundle's path (/tmp/u.aibox)")))
        // Not schemes: a path with a colon, a "scheme" starting with a digit.
        #expect(BundleSource.parse("./ftp://u") == .success(.file("./ftp://u")))
        #expect(BundleSource.parse("1x://u") == .success(.file("1x://u")))
    }
}

import Testing

@testable import AIBoxCore

@Suite("Update feed") struct FeedTests {
    let v = { (s: String) in SemanticVersion(s)! }
    func decide(
        _ entry: String?, running: String? = "1.0.0", floor: String? = nil, year: Int = 2026, minute: Int = 4 * 60,
        window: MaintenanceWindow? = MaintenanceWindow("03:00-05:00"), free: UInt64? = nil, size: UInt64? = nil,
        feed: String = "box"
    ) -> FeedDecision {
        UpdatePlanner.decide(
            entry: entry.map { FeedEntry(version: v($0), url: "http://x/\($0).aibox", size: size) }, channel: "stable", compatible: "box",
            feedCompatible: feed, running: running.map(v), floor: floor.map(v), localYear: year, minuteOfDay: minute, window: window,
            freeBytes: free)
    }

    @Test func newerInsideTheWindowIsInstalledAndEverythingElseSaysWhyNot() {
        guard case .available(let e) = decide("1.1.0") else {
            Issue.record("not available")
            return
        }
        #expect(e.version == v("1.1.0"))
        #expect(decide("1.0.0") == .upToDate("stable offers 1.0.0; 1.0.0 runs"))
        #expect(decide(nil) == .upToDate("the feed has no stable channel"))
        #expect(decide("1.1.0", feed: "other") == .refused("the feed is for \"other\", this box is \"box\""))
        #expect(
            decide("1.1.0", running: nil, floor: "1.2.0") == .refused("stable offers 1.1.0, older than 1.2.0, the oldest this box accepts"))
        guard case .deferred(_, let outside) = decide("1.1.0", minute: 12 * 60) else {
            Issue.record("installed outside")
            return
        }
        #expect(outside == "outside the maintenance window 03:00-05:00")
        guard case .deferred(_, let clock) = decide("1.1.0", year: 1970) else {
            Issue.record("trusted a 1970 clock")
            return
        }
        #expect(clock.contains("clock is not set"))
        guard case .deferred(_, let space) = decide("1.1.0", free: 1000, size: 1000) else {
            Issue.record("no space check")
            return
        }
        #expect(space.contains("not enough free space"))
        // By hand (no window): any time, even before NTP.
        guard case .available = decide("1.1.0", year: 1970, minute: 12 * 60, window: nil) else {
            Issue.record("manual refused")
            return
        }
    }

    @Test func pollingBacksOffWithJitterAndNeverExceedsTheInterval() {
        let six = Duration.seconds(6 * 3600)
        #expect(UpdatePlanner.nextPoll(after: 0, interval: six, random: 0) == six.scaled(by: 0.9))
        #expect(UpdatePlanner.nextPoll(after: 0, interval: six, random: 1) == six.scaled(by: 1.1))
        #expect(UpdatePlanner.nextPoll(after: 1, interval: six, random: 0.5) == .seconds(60))
        #expect(UpdatePlanner.nextPoll(after: 3, interval: six, random: 0.5) == .seconds(240))
        #expect(UpdatePlanner.nextPoll(after: 40, interval: six, random: 0.5) == six)
        #expect(UpdatePlanner.nextPoll(after: 40, interval: six, random: 1) <= six.scaled(by: 1.2))
    }
}

/// Unattended updates (issue 5), pure: what a feed entry means for this box, and whether now
/// is a time to install it. The feed itself (signed JSON) is fetched and verified by
/// AIBoxSystem; time and the box's state are passed in.
public struct FeedEntry: Equatable, Sendable {
    public var version: SemanticVersion
    public var url: String
    /// The bundle's size, when the feed gives it (for the free-space check).
    public var size: UInt64?

    public init(version: SemanticVersion, url: String, size: UInt64?) {
        self.version = version
        self.url = url
        self.size = size
    }
}

public enum FeedDecision: Equatable, Sendable {
    case upToDate(String)
    /// Newer than what runs and not below the floor.
    case available(FeedEntry)
    /// Newer, but not now (outside the window, clock not set, not enough space).
    case deferred(FeedEntry, String)
    case refused(String)
}

public enum UpdatePlanner {
    /// Before NTP answers, a box without a real-time clock believes it is 1970: no window
    /// can be trusted, so nothing is installed unattended until the clock is set.
    public static let earliestPlausibleYear = 2024

    /// Compares the channel's entry with what runs, then the conditions of an unattended
    /// install: inside the window (local minute of the day), the clock set, the space there.
    public static func decide(
        entry: FeedEntry?, channel: String, compatible: String, feedCompatible: String, running: SemanticVersion?,
        floor: SemanticVersion?, localYear: Int, minuteOfDay: Int, window: MaintenanceWindow?, freeBytes: UInt64?
    ) -> FeedDecision {
        guard feedCompatible == compatible else {
            return .refused("the feed is for \"\(feedCompatible)\", this box is \"\(compatible)\"")
        }
        guard let entry else { return .upToDate("the feed has no \(channel) channel") }
        if let running, entry.version <= running {
            return .upToDate("\(channel) offers \(entry.version); \(running) runs")
        }
        if let floor, entry.version < floor {
            return .refused("\(channel) offers \(entry.version), older than \(floor), the oldest this box accepts")
        }
        if let window {
            guard localYear >= earliestPlausibleYear else {
                return .deferred(entry, "the clock is not set yet (year \(localYear)); waiting for NTP before trusting the window")
            }
            guard window.contains(minuteOfDay: minuteOfDay) else {
                return .deferred(entry, "outside the maintenance window \(window)")
            }
        }
        if let size = entry.size, let free = freeBytes, free < size + size / 20 {
            return .deferred(entry, "not enough free space: \(size) bytes needed (+5 %), \(free) free")
        }
        return .available(entry)
    }

    /// When to look at the feed again: every `interval` ± 10 % after a good look; after
    /// `failures` failed looks, 1 min doubling up to `interval` (± 20 %, `Backoff`), so that a
    /// fleet of boxes neither hammers a server that is down nor comes back all at once.
    public static func nextPoll(after failures: Int, interval: Duration, random: Double) -> Duration {
        if failures == 0 { return interval.scaled(by: 0.9 + 0.2 * random) }
        return Backoff(base: .seconds(60), max: interval).delay(attempt: failures, random: random)
    }
}

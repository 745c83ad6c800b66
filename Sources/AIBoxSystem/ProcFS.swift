import AIBoxCore
import Glibc

/// What /proc/PID/stat tells about a process.
public struct ProcessStat: Equatable, Sendable {
    public var pid: Int32
    public var state: Character
    public var ppid: Int32
    public var pgrp: Int32
    public var session: Int32
    /// Start time in clock ticks since boot: with the pid, it names a process uniquely,
    /// so a reused pid is never taken for the process we recorded.
    public var startTime: UInt64
    public var rssPages: Int64
}

public enum ProcFS {
    public static let pageSize = Int64(sysconf(Int32(_SC_PAGESIZE)))

    public static func info(_ pid: Int32) -> ProcessStat? {
        guard let bytes = readSmallFile("/proc/\(pid)/stat", limit: 4096) else { return nil }
        return parseStat(bytes)
    }

    /// Parses /proc/PID/stat. The command name is in parentheses and may hold anything,
    /// spaces and ')' included: the fields start after the last ')'.
    public static func parseStat(_ bytes: [UInt8]) -> ProcessStat? {
        guard let open = bytes.firstIndex(of: UInt8(ascii: "(")), let close = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        guard let pid = Int32(String(decoding: bytes[..<open], as: UTF8.self).trimmingCharacters(in: " ")) else { return nil }
        let fields = bytes[(close + 1)...].split(separator: UInt8(ascii: " "))
        // fields[0] is field 3 (state); field N is fields[N - 3].
        guard fields.count > 21 else { return nil }
        func field(_ n: Int) -> String { String(decoding: fields[n - 3], as: UTF8.self) }
        guard let ppid = Int32(field(4)), let pgrp = Int32(field(5)), let session = Int32(field(6)),
            let start = UInt64(field(22)), let rss = Int64(field(24).trimmingCharacters(in: "\n")),
            fields[0].count == 1
        else { return nil }
        return ProcessStat(
            pid: pid, state: Character(field(3)), ppid: ppid, pgrp: pgrp, session: session, startTime: start,
            rssPages: rss)
    }

    /// Every pid in /proc.
    public static func allPIDs() -> [Int32] {
        listDirectory("/proc").compactMap { Int32($0) }
    }

    /// Every process whose process group is `pgid`.
    public static func members(ofGroup pgid: Int32) -> [ProcessStat] {
        allPIDs().compactMap { info($0) }.filter { $0.pgrp == pgid }
    }

    /// Resident memory of process groups, in bytes, from one scan of /proc.
    public static func residentBytes(ofGroups groups: Set<Int32>) -> [Int32: UInt64] {
        var out: [Int32: UInt64] = [:]
        for pid in allPIDs() {
            guard let i = info(pid), groups.contains(i.pgrp) else { continue }
            out[i.pgrp, default: 0] += UInt64(max(i.rssPages, 0) * pageSize)
        }
        return out
    }

    /// This process's children: /proc/self/task/TID/children of each thread, or a scan of
    /// /proc where the kernel has no such file (CONFIG_PROC_CHILDREN).
    public static func childrenOfSelf() -> [Int32] {
        var out: [Int32] = []
        var found = false
        for tid in listDirectory("/proc/self/task") {
            guard let text = readTextFile("/proc/self/task/\(tid)/children") else { continue }
            found = true
            out += text.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: "\n")) }
        }
        if found { return out }
        let me = getpid()
        return allPIDs().filter { info($0)?.ppid == me }
    }

    /// The process's cgroup v2 path ("/aibox/workers/chat"); nil when it has none or is gone.
    public static func cgroupPath(_ pid: Int32) -> String? {
        readTextFile("/proc/\(pid)/cgroup").flatMap { CgroupFacts.v2Path(procCgroup: $0) }
    }

    /// The command name (/proc/PID/comm).
    public static func command(_ pid: Int32) -> String? {
        readTextFile("/proc/\(pid)/comm")?.trimmingCharacters(in: "\n")
    }
}

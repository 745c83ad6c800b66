import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

let umockdevRun = "/usr/bin/umockdev-run"
let umockdevPreload = "/usr/lib/x86_64-linux-gnu/libumockdev-preload.so.0"
let fixturesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path
let testbedDriver = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("umockdev-testbed.py").path

/// Compiles `Fixtures/NAME.c` once per test run (a shared library with `shared`) and returns
/// the output's path. The C compiler comes from .ci/run (gcc).
func compiledFixture(_ name: String, shared: Bool = false) throws -> String {
    try #require(fileExists("/usr/bin/cc"), "no C compiler at /usr/bin/cc (.ci/run installs gcc)")
    let dir = "/tmp/aibox-test-tools-\(getpid())"
    try makeDirectories(dir)
    let output = dir + "/" + (shared ? "lib\(name).so" : name)
    if fileExists(output) { return output }
    // Each caller compiles to its own file, then renames: parallel tests never see half a file.
    let tmp = output + ".\(UInt64.random(in: 0...UInt64.max))"
    var args = ["-O2", "-Wall", "-o", tmp, fixturesDirectory + "/\(name).c"]
    if shared { args = ["-shared", "-fPIC"] + args }
    let r = try run("/usr/bin/cc", args)
    try #require(r.code == 0, "cc \(name).c failed: \(r.stderr)")
    _ = rename(tmp, output)
    return output
}

/// Runs `aibox ARGS` inside a umockdev test bed holding `fixture` (umockdev's text format),
/// with /proc/meminfo replaced by `meminfo` when given (umockdev redirects /proc paths that
/// exist under $UMOCKDEV_DIR/proc).
func aiboxUnderFixture(
    _ fixture: String, meminfo: String? = nil, _ args: [String], environment extra: [String: String] = [:]
) throws -> CommandResult {
    try #require(fileExists(umockdevRun), "umockdev is missing: apt-get install umockdev (.ci/run does)")
    var template = Array("/tmp/aibox-hw-XXXXXX".utf8CString)
    let dir = String(cString: try #require(mkdtemp(&template)))
    defer { _ = try? run("/bin/rm", ["-rf", dir]) }
    try writeFileAtomically(dir + "/box.umockdev", Array((fixture + "\n").utf8))
    var command = [aiboxBinary] + args
    if let meminfo {
        try writeFileAtomically(dir + "/meminfo", Array(meminfo.utf8))
        command =
            [
                "/bin/sh", "-c", "mkdir -p \"$UMOCKDEV_DIR/proc\" && cp \"$0\" \"$UMOCKDEV_DIR/proc/meminfo\" && exec \"$@\"",
                dir + "/meminfo",
            ]
            + command
    }
    var env = ProcessInfo.processInfo.environment
    for (k, v) in extra { env[k] = v }
    return try run(umockdevRun, ["-d", dir + "/box.umockdev", "--"] + command, environment: env)
}

/// Reads lines from a pipe with a bound on the wait (poll on the monotonic clock).
final class LineReader {
    let fd: Int32
    private var buffer: [UInt8] = []
    private(set) var lines: [String] = []

    init(_ pipe: Pipe) { fd = pipe.fileHandleForReading.fileDescriptor }

    /// Waits until a line (new or already read but not yet taken) satisfies `match`; takes and returns it.
    func next(timeout: Duration = .seconds(15), where match: (String) -> Bool) -> String? {
        let deadline = Clock.monotonic() + timeout
        while true {
            if let i = lines.firstIndex(where: match) { return lines.remove(at: i) }
            let left = deadline.since(Clock.monotonic())
            guard left > .zero else { return nil }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32(max(1, left.milliseconds))) > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = read(fd, &chunk, chunk.count)
            guard n > 0 else { return nil }
            buffer += chunk[0..<n]
            while let nl = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                lines.append(String(decoding: buffer[..<nl], as: UTF8.self))
                buffer.removeSubrange(...nl)
            }
        }
    }
}

/// Drives `umockdev-testbed.py`: a command on its stdin, "ok" once the uevent is sent.
final class Testbed {
    let input = Pipe(), output = Pipe()
    let reader: LineReader

    init() throws {
        try #require(fileExists(umockdevPreload), "libumockdev0 is missing (.ci/run installs umockdev)")
        reader = LineReader(output)
    }

    /// The launcher that runs a program inside the test bed.
    var launcher: [String] { ["/usr/bin/python3", testbedDriver, "--"] }

    func send(_ command: String) throws {
        try input.fileHandleForWriting.write(contentsOf: Data((command + "\n").utf8))
        #expect(reader.next { $0 == "ok" } != nil, "the test bed did not confirm \(command); it said: \(reader.lines)")
    }
}

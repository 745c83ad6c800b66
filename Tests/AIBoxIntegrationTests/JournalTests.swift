import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// Worker output to the journal: a real systemd-journald, started for the test where the
/// machine runs none (containers, CI).
@Suite(.serialized) struct JournalTests {
    @Test func workerOutputGoesToTheJournalUnderItsName() throws {
        try #require(geteuid() == 0, "starting systemd-journald needs root (CI runs as root)")
        let journald = try Journald()
        defer { withExtendedLifetime(journald) {} }
        let name = "jtest-\(UInt32.random(in: 1..<UInt32.max))"
        let box = try TestBox(
            """
            [worker.\(name)]
            exec = ["@WORKER@", "--ready-after", "0"]
            notify = true
            watchdog = "200ms"
            """)
        try box.startDaemon(logTarget: "journal")
        defer { box.stopDaemon() }
        try box.waitFor(name, ["ready"])
        // journalctl finds the lines by the worker's name (SYSLOG_IDENTIFIER).
        var out = ""
        let found = try waitUntil(.seconds(15)) {
            out = try run("/usr/bin/journalctl", ["--no-pager", "-o", "cat", "-t", name]).stdout
            return out.contains("heartbeat")
        }
        #expect(found, "journalctl -t \(name) printed: \(out)")
        // And nothing went to a file instead.
        #expect(!fileExists(box.paths.logs + "/\(name).log"))
    }

    /// The `logs` request reads a worker's lines back from the journal (sd_journal, by its
    /// name), with the secrets the daemon holds replaced.
    @Test func theLogsRequestReadsTheJournalAndRedactsSecrets() throws {
        try #require(geteuid() == 0, "starting systemd-journald needs root (CI runs as root)")
        let journald = try Journald()
        defer { withExtendedLifetime(journald) {} }
        let name = "jlogs-\(UInt32.random(in: 1..<UInt32.max))"
        let box = try TestBox(
            """
            [worker.\(name)]
            exec = ["/bin/sh", "-c", "echo \\"token $(cat $CREDENTIALS_DIRECTORY/tg) here\\"; echo done; exec sleep 1000"]
            secrets = ["tg"]
            """)
        try makeDirectories(box.paths.secrets, mode: 0o700)
        try writeFileAtomically(box.paths.secrets + "/tg", Array("tg-JOURNAL-SECRET-99".utf8), mode: 0o600)
        try box.startDaemon(logTarget: "journal")
        defer { box.stopDaemon() }
        try box.waitFor(name, ["running"])
        var got: LogLines?
        let found = waitUntil(.seconds(15)) {
            got = try? DaemonClient(socket: box.paths.controlSocket).request(ControlRequest(command: "logs", worker: name, lines: 5), as: LogLines.self)
            return got?.lines.contains { $0.text == "done" } == true
        }
        #expect(found, "\(String(describing: got))")
        #expect(got?.source == "journal")
        #expect(got?.lines.map(\.text) == ["token [secret] here", "done"], "\(String(describing: got))")
        #expect(got?.lines.allSatisfy { $0.at != nil } == true)
        #expect(!fileExists(box.paths.logs + "/\(name).log"))
    }
}

/// A systemd-journald for the test where none answers (containers, CI): started, waited for,
/// SIGKILLed when dropped; nothing when the machine runs its own.
final class Journald {
    private var process: Process?

    init() throws {
        guard !Journald.journalAnswers() else { return }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/lib/systemd/systemd-journald")
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try makeDirectories("/run/systemd/journal")
        try p.run()
        process = p
        #expect(waitUntil(.seconds(10)) { Journald.journalAnswers() }, "systemd-journald did not start")
    }

    /// Whether a journald listens on its stdout socket.
    static func journalAnswers() -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let path = "/run/systemd/journal/stdout"
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        } == 0
    }

    deinit {
        if let p = process {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
    }
}

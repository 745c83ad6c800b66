import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// A loop nothing can block (issue 9): what a file in a worker directory is cannot wedge the
/// daemon.
@Suite struct WorkerDirectoryTests {
    @Test func aFIFOADirectoryAndAHugeFileInAWorkerDirectoryAreReportedAndSkippedTheOtherWorkersRun() throws {
        let box = try TestBox(
            """
            [worker.agent]
            exec = ["@WORKER@", "--no-notify"]
            """)
        let fifo = box.paths.localWorkers + "/fifo.toml"
        #expect(mkfifo(fifo, 0o644) == 0)
        try makeDirectories(box.paths.vendorWorkers + "/dir.toml")
        try box.startDaemon()
        defer {
            // A daemon blocked in open(fifo) is freed by a writer, so that it can be stopped.
            closeDescriptor(open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC))
            box.stopDaemon()
        }
        try box.waitFor("agent", ["running"])
        let skipped = try box.waitForEvent("daemon.config-skipped", count: 2)
        #expect(
            skipped.contains { $0.message.hasPrefix("\(fifo) is a FIFO (named pipe), not a regular file; skipped") }, "\(skipped)")
        #expect(skipped.contains { $0.message.hasPrefix("\(box.paths.vendorWorkers)/dir.toml is a directory") }, "\(skipped)")
        let status = try box.aibox(["status"])
        #expect(status.stdout.contains("config:    skipped \(fifo): is a FIFO (named pipe), not a regular file"), "\(status.stdout)")

        // A reload meets the FIFO and a file over 1 MiB: both skipped, the new worker starts.
        try writeFileAtomically(box.paths.localWorkers + "/huge.toml", [UInt8](repeating: 0x23, count: (1 << 20) + 1))
        try box.write("[worker.second]\nexec = [\"\(workerBinary)\", \"--no-notify\"]\n", file: "second.toml")
        let started = Clock.monotonic()
        let reload = try box.aibox(["reload"])
        #expect(reload.code == 0, "\(reload.stderr)")
        #expect(Clock.monotonic().since(started) < .seconds(3), "reload took \(Clock.monotonic().since(started))")
        try box.waitFor("second", ["running"])
        let json = try JSONDecoder().decode(StatusView.self, from: Data(try box.aibox(["status", "--json"]).stdout.utf8))
        #expect(json.configSkipped?.count == 3, "\(json.configSkipped ?? [])")
        #expect(json.configSkipped?.contains { $0.hasPrefix(box.paths.localWorkers + "/huge.toml: is 1048577 bytes") } == true)
        // And SIGTERM is still heard.
        #expect(box.stopDaemon() == 0)
    }
}

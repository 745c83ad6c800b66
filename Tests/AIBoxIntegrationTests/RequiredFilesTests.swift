import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// `requires-files` under the real daemon: a worker waits for its files (a model's weights)
/// and starts once they are there, without a restart of the daemon.
@Suite(.serialized) struct RequiredFilesTests {
    @Test func aWorkerWaitsForItsFileAndStartsWhenItAppears() throws {
        var template = Array("/tmp/aibox-files-XXXXXX".utf8CString)
        let dir = String(cString: try #require(mkdtemp(&template)))
        defer { _ = try? run("/bin/rm", ["-rf", dir]) }
        let weights = dir + "/models/default.gguf"
        let box = try TestBox(
            """
            [worker.llm-local]
            exec = ["@WORKER@", "--no-notify"]
            requires-files = ["\(weights)"]

            [worker.empty]
            exec = ["@WORKER@", "--no-notify"]
            requires-files = ["\(dir)/models/empty.gguf"]

            [worker.plain]
            exec = ["@WORKER@", "--no-notify"]
            """)
        try makeDirectories(dir + "/models")
        // A link to nothing yet (a removed model leaves one); an empty file is no model either.
        #expect(symlink("nothing.gguf", weights) == 0)
        try writeFileAtomically(dir + "/models/empty.gguf", [])
        try box.startDaemon()
        defer { box.stopDaemon() }
        try box.waitFor("plain", ["running"])
        let waiting = try #require(try box.waitFor("llm-local", ["waiting"]))
        #expect(waiting.waitingFor == ["file:\(weights)"])
        #expect(waiting.pid == nil)

        #expect(try box.waitFor("empty", ["waiting"])?.waitingFor == ["file:\(dir)/models/empty.gguf"])

        // The weights arrive (what a pull does: the file in place, then the link is there).
        try writeFileAtomically(dir + "/models/nothing.gguf", Array(repeating: 7, count: 4096))
        let running = try #require(try box.waitFor("llm-local", ["running"], timeout: .seconds(10)))
        #expect(running.pid != nil)
        #expect(box.daemon?.isRunning == true, "the same daemon, not restarted")
        #expect(try box.worker("plain")?.restarts == 0)
        #expect(try box.worker("empty")?.state == "waiting")
        let waited = try box.events(worker: "llm-local").filter { $0.kind == "worker.waiting" }
        #expect(waited.first?.message.contains("file:\(weights)") == true, "\(waited)")
    }
}

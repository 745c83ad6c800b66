import Glibc
import Testing

@testable import AIBoxSystem

/// Files replaced together (setup's commit, factory reset): removals are part of the commit.
@Suite struct FileTransactionTests {
    func contents(_ path: String) -> String? { readSmallFile(path).map { String(decoding: $0, as: UTF8.self) } }

    @Test func removalsAreMadeAndAFileAlreadyGoneIsNoError() throws {
        try withTemporaryDirectory { dir in
            try writeFile(dir + "/box.toml", "old\n")
            try writeFile(dir + "/wifi.psk", "secret\n")
            let tx = FileTransaction()
            tx.remove(dir + "/wifi.psk")
            tx.remove(dir + "/never-there")
            try tx.write(dir + "/box.toml", "new\n")
            try tx.commit()
            #expect(!fileExists(dir + "/wifi.psk"))
            #expect(contents(dir + "/box.toml") == "new\n")
        }
    }

    /// A file that was to go and stays (an SSH key, a Wi-Fi password) must not be passed over:
    /// the commit fails, before anything is replaced.
    @Test func aRemovalThatFailsStopsTheCommitBeforeAnythingIsReplaced() throws {
        try withTemporaryDirectory { dir in
            try writeFile(dir + "/box.toml", "old\n")
            try makeDirectories(dir + "/admin.keys/inside")  // cannot be unlinked
            let tx = FileTransaction()
            tx.remove(dir + "/admin.keys")
            try tx.write(dir + "/box.toml", "new\n")
            do throws(SystemError) {
                try tx.commit()
                Issue.record("the commit succeeded with admin.keys still there")
            } catch {
                #expect(error.function == "unlink" && error.errno == EISDIR)
                #expect("\(error)".hasPrefix("unlink \(dir)/admin.keys (no file was replaced"), "\(error)")
            }
            #expect(contents(dir + "/box.toml") == "old\n", "nothing was replaced")
            #expect(!fileExists(dir + "/box.toml" + AtomicFile.suffix), "what was staged is gone")
        }
    }
}

import Glibc
import Testing

@testable import AIBoxSystem

/// The one atomic writer: what a reader of the path sees before, during and after a write,
/// and what is left when a write fails or is abandoned.
@Suite struct AtomicFileTests {
    func contents(_ path: String) -> String? { readSmallFile(path).map { String(decoding: $0, as: UTF8.self) } }

    func mode(_ path: String) -> mode_t? {
        var st = stat()
        return lstat(path, &st) == 0 ? st.st_mode & 0o7777 : nil
    }

    @Test func theOldFileStaysWholeUntilTheCommitThenTheNewOneIsThere() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/box.toml"
            try writeFile(path, "old\n")
            let file = try AtomicFile(path, mode: 0o600)
            try file.write(Array("new, first half ".utf8))
            #expect(contents(path) == "old\n", "a reader sees the old file while the new one is written")
            try file.write(Array("and second\n".utf8))
            try file.finish()
            #expect(contents(path) == "old\n", "finished is not placed")
            try file.commit()
            #expect(contents(path) == "new, first half and second\n")
            #expect(mode(path) == 0o600)
            #expect(!fileExists(path + AtomicFile.suffix), "no temporary file is left")
        }
    }

    @Test func anAbandonedOrDroppedWriteLeavesThePathAndNoTemporaryFile() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/secret"
            try writeFile(path, "kept")
            let file = try AtomicFile(path, mode: 0o600)
            try file.write(Array("half".utf8))
            file.abandon()
            #expect(contents(path) == "kept")
            #expect(!fileExists(path + AtomicFile.suffix))
            do {
                let dropped = try AtomicFile(path, mode: 0o600)
                try dropped.write(Array("never committed".utf8))
            }
            #expect(contents(path) == "kept")
            #expect(!fileExists(path + AtomicFile.suffix), "deinit of an unplaced file removes its temporary file")
        }
    }

    @Test func theModeIsExactWhateverTheUmask() throws {
        try withTemporaryDirectory { dir in
            let old = umask(0o077)
            defer { umask(old) }
            try writeFileAtomically(dir + "/shared", Array("x".utf8), mode: 0o644)
            #expect(mode(dir + "/shared") == 0o644)
        }
    }

    @Test func aLeftoverFromAPowerCutIsReplacedButAFIFOThereFailsTheWriteWithoutBlocking() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/floor"
            // A power cut after the temporary file was written, before the rename.
            try writeFile(path + AtomicFile.suffix, "stale")
            try writeFileAtomically(path, Array("1.5.0".utf8))
            #expect(contents(path) == "1.5.0")

            // A symlink planted at the temporary name is removed, not followed.
            try writeFile(dir + "/target", "untouched")
            #expect(symlink(dir + "/target", path + AtomicFile.suffix) == 0)
            try writeFileAtomically(path, Array("1.6.0".utf8))
            #expect(contents(path) == "1.6.0")
            #expect(contents(dir + "/target") == "untouched")

            // A FIFO there: the write fails at once (O_EXCL, O_NONBLOCK), the path is unchanged.
            #expect(mkfifo(path + AtomicFile.suffix, 0o600) == 0)
            let started = Clock.monotonic()
            #expect(throws: SystemError.self) { try writeFileAtomically(path, Array("1.7.0".utf8)) }
            #expect(Clock.monotonic().since(started) < .seconds(2))
            #expect(contents(path) == "1.6.0")
        }
    }

    @Test func createNewNeverReplacesAFile() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/key.pem"
            try writeFile(path, "the integrator's key")
            let file = try AtomicFile(path, mode: 0o600, placement: .createNew)
            try file.write(Array("another key".utf8))
            do throws(SystemError) {
                try file.commit()
                Issue.record("an existing key was replaced")
            } catch {
                #expect(error.function == "link" && error.errno == EEXIST, "\(error)")
            }
            #expect(contents(path) == "the integrator's key")
            #expect(!fileExists(path + AtomicFile.suffix))

            let fresh = try AtomicFile(dir + "/new.pem", mode: 0o600, placement: .createNew)
            try fresh.write(Array("k".utf8))
            try fresh.commit()
            #expect(contents(dir + "/new.pem") == "k")
            #expect(mode(dir + "/new.pem") == 0o600)
        }
    }
}

import Glibc
import Synchronization
import Testing

@testable import AIBoxCore
@testable import AIBoxSystem

/// `readRegularFile` (and `readSmallFile` on it): every file the daemon reads goes through
/// it, so nothing a file is can block or exhaust the daemon.
@Suite("Reading small files")
struct FileReadTests {
    /// Runs `body` on another thread; fails when it has not returned within two seconds,
    /// then frees it by opening `fifo` for writing (a blocked open or read ends).
    func returnsPromptly<T: Sendable>(freeing fifo: String, _ body: @escaping @Sendable () -> T) throws -> T {
        let result = Mutex<T?>(nil)
        let thread = Thread {
            let r = body()
            result.withLock { $0 = r }
        }
        let done = waitUntil(timeoutMilliseconds: 2000) { result.withLock { $0 != nil } }
        if !done { closeDescriptor(open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC)) }
        thread.join()
        #expect(done, "blocked on the FIFO")
        return try #require(result.withLock { $0 })
    }

    /// Why `path` is not read; nil when it is.
    func refusal(_ path: String, limit: Int = 1 << 20, followSymlinks: Bool = true) -> FileReadError? {
        do throws(FileReadError) {
            _ = try readRegularFile(path, limit: limit, followSymlinks: followSymlinks)
            return nil
        } catch {
            return error
        }
    }

    @Test("a FIFO nobody writes is refused at once, named as a FIFO")
    func fifo() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/workers.toml"
            #expect(mkfifo(path, 0o644) == 0)
            let error = try returnsPromptly(freeing: path) { self.refusal(path)?.description }
            #expect(error == "\(path): is a FIFO (named pipe), not a regular file")
            #expect(readSmallFile(path) == nil)
        }
    }

    @Test("a directory, a device node, a socket are refused and named")
    func otherKinds() throws {
        try withTemporaryDirectory { dir in
            #expect(refusal(dir)?.reason == "is a directory, not a regular file")
            #expect(refusal("/dev/zero")?.reason == "is a character device, not a regular file")
            let socketPath = dir + "/s"
            let listener = try ControlListener(path: socketPath)
            #expect(refusal(socketPath, limit: 100)?.reason == "is a socket, not a regular file")
            withExtendedLifetime(listener) {}
        }
    }

    @Test("a file over the limit is refused, not cut; one at the limit is read whole")
    func sizeCap() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/big"
            try writeFileAtomically(path, [UInt8](repeating: 0x61, count: 5000))
            #expect(try readRegularFile(path, limit: 5000).count == 5000)
            #expect(refusal(path, limit: 4999)?.description == "\(path): is 5000 bytes, more than the 4999 allowed")
            #expect(readSmallFile(path, limit: 4999) == nil)
        }
    }

    @Test("/proc files (size 0 in stat) are read to their end, and held to the limit")
    func procFiles() throws {
        let status = try #require(readSmallFile("/proc/self/status"))
        #expect(String(decoding: status, as: UTF8.self).contains("Pid:\t\(getpid())\n"))
        // /proc/self/maps of a Swift test process is far more than 100 bytes.
        #expect(refusal("/proc/self/maps", limit: 100)?.reason == "grew past 100 bytes while read")
    }

    @Test("followSymlinks: false refuses a symlink; by default it is followed to a regular file")
    func symlinks() throws {
        try withTemporaryDirectory { dir in
            try writeFileAtomically(dir + "/real", Array("secret".utf8))
            #expect(symlink(dir + "/real", dir + "/link") == 0)
            #expect(readSmallFile(dir + "/link") == Array("secret".utf8))
            #expect(refusal(dir + "/link", limit: 100, followSymlinks: false)?.reason == "is a symbolic link, not a regular file")
            // A symlink to a FIFO is refused for what it points to.
            #expect(mkfifo(dir + "/fifo", 0o644) == 0)
            #expect(symlink(dir + "/fifo", dir + "/to-fifo") == 0)
            #expect(refusal(dir + "/to-fifo", limit: 100)?.reason == "is a FIFO (named pipe), not a regular file")
            #expect(refusal(dir + "/missing", limit: 100)?.reason == "cannot be opened: No such file or directory")
        }
    }

    @Test("worker directories: a FIFO, a directory and an oversized file are skipped and named; the others load")
    func configFilesSkipWhatIsNoWorkerFile() throws {
        try withTemporaryDirectory { dir in
            let paths = Paths(root: dir)
            try makeDirectories(paths.vendorWorkers)
            try makeDirectories(paths.localWorkers)
            try writeFileAtomically(paths.vendorWorkers + "/good.toml", Array("[worker.good]\nexec = [\"/bin/true\"]\n".utf8))
            #expect(mkfifo(paths.localWorkers + "/fifo.toml", 0o644) == 0)
            try makeDirectories(paths.vendorWorkers + "/dir.toml")
            try writeFileAtomically(paths.localWorkers + "/huge.toml", [UInt8](repeating: 0x23, count: ConfigFiles.maxBytes + 1))
            let (names, skipped) = try returnsPromptly(freeing: paths.localWorkers + "/fifo.toml") {
                let (loaded, skipped) = ConfigFiles.load(paths)
                return ((try? loaded.get())?.map(\.name), skipped.map(\.description))
            }
            #expect(names == ["good"])
            #expect(
                skipped == [
                    "\(paths.vendorWorkers)/dir.toml: is a directory, not a regular file",
                    "\(paths.localWorkers)/fifo.toml: is a FIFO (named pipe), not a regular file",
                    "\(paths.localWorkers)/huge.toml: is \(ConfigFiles.maxBytes + 1) bytes, more than the \(ConfigFiles.maxBytes) allowed",
                ])
        }
    }
}

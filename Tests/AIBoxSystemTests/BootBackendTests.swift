import CAIBoxOS
import Glibc
import Synchronization
import Testing

@testable import AIBoxCore
@testable import AIBoxSystem

@Suite struct BootBackendTests {
    @Test func theFileBackendSurvivesATornWriteOfEitherCopy() throws {
        try withTemporaryDirectory { dir in
            let control = FileBootControl(path: dir + "/bootenv")
            // Nothing stored yet: a fresh image.
            #expect(try control.load() == BootEnvironment())
            try control.update { $0.setPrimary("B", tries: 3) }
            try control.update { _ = $0.boot() }
            let env = try control.load()
            #expect(env.primary == "B" && env.triesLeft["B"] == 2 && control.booted() == "B")
            // The newer copy torn (a power cut mid-write without rename): the older one is taken.
            let newer = try #require(BootEnvironmentFile.choose(control.copies())).newest
            let path = dir + "/bootenv.\(newer)"
            let bytes = try #require(readSmallFile(path))
            try writeFileAtomically(path, Array(bytes.prefix(bytes.count / 2)))
            let older = try control.load()
            #expect(older.primary == "B" && older.triesLeft["B"] == 3, "the copy before the last write")
            // The next write goes to the broken copy's place and wins again.
            try control.update { $0.setState("B", .good) }
            #expect(try control.load().state(of: "B") == .good)
            // Both copies garbage: an error, never a guess.
            try writeFileAtomically(dir + "/bootenv.0", Array("junk".utf8))
            try writeFileAtomically(dir + "/bootenv.1", Array("junk".utf8))
            #expect(throws: SystemError.self) { try control.load() }
        }
    }

    @Test func theGrubBackendReadsAndWritesTheEnvironmentBlockWithGrubEditenv() throws {
        try #require(fileExists("/usr/bin/grub-editenv"), "grub-editenv is missing (.ci/run installs grub-common)")
        try withTemporaryDirectory { dir in
            let control = GrubBootControl(envFile: dir + "/grubenv")
            #expect(try control.load() == BootEnvironment())
            try control.update { $0.setPrimary("B", tries: 3) }
            // What GRUB's load_env will see: the block holds exactly our variables.
            let listed = captureProgram(["/usr/bin/grub-editenv", dir + "/grubenv", "list"])
            #expect(listed.status == 0)
            #expect(listed.output.contains("AIBOX_ORDER=B A\n") && listed.output.contains("AIBOX_B_STATE=trying\n"))
            #expect(listed.output.contains("AIBOX_B_LEFT=3\n"))
            #expect(readSmallFile(dir + "/grubenv")?.count == 1024, "GRUB's environment block is 1 KiB")
            var expected = BootEnvironment()
            expected.setPrimary("B", tries: 3)
            #expect(try control.load() == expected)
            // The boot loader's own variables stay.
            _ = captureProgram(["/usr/bin/grub-editenv", dir + "/grubenv", "set", "saved_entry=1"])
            try control.update { $0.setState("B", .good) }
            #expect(captureProgram(["/usr/bin/grub-editenv", dir + "/grubenv", "list"]).output.contains("saved_entry=1"))
        }
    }

    @Test func theUBootBackendWritesAllVariablesAtOnceThroughFwSetenv() throws {
        try #require(fileExists("/usr/bin/fw_setenv"), "fw_setenv is missing (.ci/run installs libubootenv-tool)")
        try withTemporaryDirectory { dir in
            // The environment on a 16 KiB "device" (a file), as fw_env.config names it.
            try writeFileAtomically(dir + "/env.bin", [UInt8](repeating: 0, count: 16384))
            try writeFileAtomically(dir + "/fw_env.config", Array("\(dir)/env.bin 0x0 0x4000\n".utf8))
            try writeFileAtomically(dir + "/default.env", [])
            let control = UBootControl(config: dir + "/fw_env.config", defaultEnvironment: dir + "/default.env")
            #expect(try control.load() == BootEnvironment(), "an empty device: a fresh image")
            try control.update { $0.setPrimary("B", tries: 3) }
            var expected = BootEnvironment()
            expected.setPrimary("B", tries: 3)
            #expect(try control.load() == expected)
            // What U-Boot's script reads: the variables as fw_printenv shows them.
            let listed = captureProgram(["/usr/bin/fw_printenv", "-c", dir + "/fw_env.config", "-f", dir + "/default.env"])
            #expect(listed.output.contains("AIBOX_ORDER=B A\n") && listed.output.contains("AIBOX_B_LEFT=3\n"), "\(listed.output)")
            try control.update { _ = $0.boot() }
            try control.update { $0.setState("B", .good) }
            #expect(try control.load().state(of: "B") == .good)
            #expect(try control.load().triesLeft["B"] == 0)
        }
    }

    @Test func theBootedSlotComesFromTheKernelCommandLine() {
        #expect(kernelCommandLineSlot("BOOT_IMAGE=/vmlinuz-B root=PARTLABEL=root-b ro aibox.slot=B quiet\n") == "B")
        #expect(kernelCommandLineSlot("root=/dev/sda1 quiet") == nil)
        #expect(kernelCommandLineSlot("aibox.slot=../x") == nil)
    }
}

/// captureProgram's exit status is what the program said, or nil when it cannot be known.
@Suite struct CaptureProgramTests {
    @Test func theExitStatusAndOutputAreThePrograms() {
        let r = captureProgram(["/bin/sh", "-c", "echo out; exit 3"])
        #expect(r.status == 3 && r.output == "out\n")
        #expect(captureProgram(["/nonexistent/program"]).status == nil)
        #expect(captureProgram(["/bin/sh", "-c", "kill -9 $$"]).status == -1, "killed by a signal")
    }

    /// What `input` says arrives on the program's standard input; its output is captured
    /// (the first MiB of it); it has this process's environment.
    @Test func theInputArrivesAndTheOutputIsCaptured() {
        let r = captureProgram(["/bin/sh", "-c", "read a; read b; echo \"got $b $a\"; tr a-z A-Z"], input: "one\ntwo\nrest of it\n")
        #expect(r.status == 0 && r.output == "got two one\nREST OF IT\n", "\(r)")
        #expect(captureProgram(["/bin/sh", "-c", "echo \"$PATH\""]).output == (currentEnvironment()["PATH"] ?? "") + "\n")
        #expect(captureProgram(["/bin/sh", "-c", "cat"]).output == "", "no input: an empty one, not the test's own")
        let big = captureProgram(["/bin/sh", "-c", "head -c 3000000 /dev/zero"])
        #expect(big.output.utf8.count > 1 << 20 && big.output.utf8.count <= (1 << 20) + 4096, "\(big.output.utf8.count)")
    }

    /// A program that exits without reading its input is an exit status, not a SIGPIPE that
    /// kills the caller (the CLI keeps SIGPIPE's default; so does this test process: without
    /// the guard, the 1 MiB write to a pipe nobody reads any more ends the whole run).
    @Test func aProgramThatReadsNoInputDoesNotKillTheCaller() {
        let input = String(repeating: "x", count: 1 << 20)
        let r = captureProgram(["/bin/sh", "-c", "echo gone; exit 4"], input: input)
        #expect(r.status == 4 && r.output == "gone\n", "\(r)")
        var pending = sigset_t()
        sigpending(&pending)
        #expect(sigismember(&pending, SIGPIPE) == 0, "no SIGPIPE left pending")
    }

    /// The program is started as every child is, through the Spawner: in a session of its
    /// own, and in the Spawner's record of our children while it runs (the daemon takes a
    /// child of its own that it did not record for an orphan, and kills it); once reaped it is
    /// forgotten. It waits for its own child only: another child's status stays for its waiter.
    @Test func theProgramIsOneOfTheSpawnersChildrenWhileItRuns() throws {
        let other = try Spawner.spawn(
            SpawnRequest(argv: ["/bin/sh", "-c", "exit 5"], environment: [:], workdir: nil, user: nil, stdoutFD: 2, stderrFD: 2))
        try withTemporaryDirectory { dir in
            let release = dir + "/release"
            #expect(mkfifo(release, 0o600) == 0)
            let result = Mutex<(status: Int32?, output: String)?>(nil)
            let thread = Thread {
                let r = captureProgram(["/bin/sh", "-c", "read x < \"$0\"; echo released", release])
                result.withLock { $0 = r }
            }
            defer { thread.join() }
            var child: Int32?
            #expect(
                waitUntil {
                    child = listDirectory("/proc").compactMap { Int32($0) }.first { pid in
                        ProcFS.info(pid)?.ppid == getpid()
                            && String(decoding: readSmallFile("/proc/\(pid)/cmdline") ?? [], as: UTF8.self).contains(release)
                    }
                    // The child can exec (and show in /proc) before the spawning thread records
                    // it: wait, bounded, for both.
                    return child.map(Spawner.isOwnChild) ?? false
                }, "a running captured program is recorded as our own child")
            if let child {
                #expect(getsid(child) == child, "started by the Spawner: a session of its own")
            }
            let writer = open(release, O_WRONLY | O_CLOEXEC)
            _ = write(writer, "\n", 1)
            closeDescriptor(writer)
            #expect(waitUntil { result.withLock { $0 != nil } })
            #expect(result.withLock { $0 }?.status == 0 && result.withLock { $0 }?.output == "released\n")
            if let child { #expect(!Spawner.isOwnChild(child), "reaped: forgotten") }
        }
        #expect(Spawner.wait(for: other) == .code(5), "another child's status was left to its own waiter")
    }

    /// When the child is not there to be waited for (SIGCHLD ignored by a parent and kept
    /// across exec, or another waiter took it first) its status is unknown: a failed program
    /// must not read as one that succeeded. Here the test takes the child first: the program
    /// exits 7 when told (FIFO `exit`), and a process it leaves behind holds its output open
    /// until the test has reaped it (FIFO `release`).
    @Test func aStatusThatCannotBeWaitedForIsUnknownNotSuccess() throws {
        try withTemporaryDirectory { dir in
            let release = dir + "/release", exit = dir + "/exit"
            #expect(mkfifo(release, 0o600) == 0 && mkfifo(exit, 0o600) == 0)
            let result = Mutex<(status: Int32?, output: String)?>(nil)
            let thread = Thread {
                let r = captureProgram(["/bin/sh", "-c", "(read x < \"$0\") & read y < \"$1\"; exit 7", release, exit])
                result.withLock { $0 = r }
            }
            defer { thread.join() }
            // The program: our child, its command line naming the FIFOs (its own child has it too).
            var child: Int32?
            #expect(
                waitUntil {
                    child = listDirectory("/proc").compactMap { Int32($0) }.first { pid in
                        ProcFS.info(pid)?.ppid == getpid()
                            && String(decoding: readSmallFile("/proc/\(pid)/cmdline") ?? [], as: UTF8.self).contains(exit)
                    }
                    return child != nil
                })
            closeDescriptor(open(exit, O_WRONLY | O_CLOEXEC))  // read y ends: it exits 7
            var status: Int32 = 0
            if let child { #expect(waitpid(child, &status, 0) == child && aibox_wexitstatus(status) == 7) }
            let writer = open(release, O_WRONLY | O_CLOEXEC)
            _ = write(writer, "\n", 1)
            closeDescriptor(writer)
            #expect(waitUntil { result.withLock { $0 != nil } })
            #expect(result.withLock { $0 }?.status == nil, "the status of a child taken by another is unknown, not 0")
        }
    }
}

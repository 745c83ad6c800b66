import Glibc
import Testing

@testable import AIBoxCore
@testable import AIBoxSystem

/// Kills and reaps a child, returning how it ended.
func killAndReap(_ pid: Int32) -> ExitStatus? {
    _ = kill(pid, SIGKILL)
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 {
        if errno != EINTR { return nil }
    }
    return Reaper.decode(status)
}

func openDevNull(_ flags: Int32) throws -> Int32 {
    try syscall("open", detail: "/dev/null") { open("/dev/null", flags) }
}

@Suite("Spawning processes")
struct SpawnerTests {
    @Test("a real program: own session and group, only 0-2 open, exactly the environment, the workdir")
    func spawnSleep() throws {
        try withTemporaryDirectory { dir in
            // Descriptors the parent holds without O_CLOEXEC must not reach the child.
            let leaks = try (0..<3).map { _ in try openDevNull(O_RDONLY) }
            var pipeFDs: [Int32] = [0, 0]
            #expect(pipe(&pipeFDs) == 0)
            defer { for fd in leaks + pipeFDs { closeDescriptor(fd) } }
            let out = try openDevNull(O_WRONLY | O_CLOEXEC)
            defer { closeDescriptor(out) }

            let environment = ["PATH": "/usr/bin:/bin", "AIBOX_TEST": "value with spaces=and equals", "EMPTY": ""]
            let pid = try Spawner.spawn(
                SpawnRequest(argv: ["/bin/sleep", "30"], environment: environment, workdir: dir, user: nil, stdoutFD: out, stderrFD: out))
            defer { #expect(killAndReap(pid) == .signal(SIGKILL)) }
            #expect(pid > 0)
            #expect(waitForExec(pid))

            let info = try #require(ProcFS.info(pid))
            #expect(info.pgrp == pid)
            #expect(info.session == pid)
            #expect(info.ppid == getpid())

            // The dynamic loader holds a descriptor for a moment while it maps libc; a
            // descriptor inherited from us would stay for good.
            let settled = waitUntil { listDirectory("/proc/\(pid)/fd").sorted() == ["0", "1", "2"] }
            #expect(
                settled, "open in the child: \(listDirectory("/proc/\(pid)/fd").map { ($0, readLink("/proc/\(pid)/fd/" + $0) ?? "?") })")
            #expect(readLink("/proc/\(pid)/fd/0") == "/dev/null")

            let environ = try #require(readSmallFile("/proc/\(pid)/environ"))
            var seen: [String: String] = [:]
            for entry in environ.split(separator: 0, omittingEmptySubsequences: true) {
                let text = String(decoding: entry, as: UTF8.self)
                let eq = try #require(text.firstIndex(of: "="))
                seen[String(text[..<eq])] = String(text[text.index(after: eq)...])
            }
            #expect(seen == environment)

            #expect(readLink("/proc/\(pid)/cwd") == realPath(dir))
            let cmdline = try #require(readSmallFile("/proc/\(pid)/cmdline"))
            #expect(cmdline == Array("/bin/sleep\u{0}30\u{0}".utf8))
        }
    }

    @Test("without a workdir the child stays in the parent's directory")
    func noWorkdir() throws {
        let out = try openDevNull(O_WRONLY | O_CLOEXEC)
        defer { closeDescriptor(out) }
        let pid = try Spawner.spawn(
            SpawnRequest(argv: ["/bin/sleep", "30"], environment: [:], workdir: nil, user: nil, stdoutFD: out, stderrFD: out))
        defer { _ = killAndReap(pid) }
        #expect(waitForExec(pid))
        #expect(readLink("/proc/\(pid)/cwd") == readLink("/proc/self/cwd"))
        #expect(readSmallFile("/proc/\(pid)/environ") == [])
    }

    @Test("the child's output goes to the descriptors given")
    func output() throws {
        try withTemporaryDirectory { dir in
            let file = dir + "/out"
            let fd = try syscall("open") { open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644) }
            defer { closeDescriptor(fd) }
            let pid = try Spawner.spawn(
                SpawnRequest(argv: ["/bin/echo", "hello", "world"], environment: [:], workdir: nil, user: nil, stdoutFD: fd, stderrFD: fd))
            var status: Int32 = 0
            #expect(waitpid(pid, &status, 0) == pid)
            #expect(Reaper.decode(status) == .code(0))
            #expect(readTextFile(file) == "hello world\n")
        }
    }

    @Test("a missing program fails in execve, naming the path")
    func missingProgram() throws {
        let out = try openDevNull(O_WRONLY | O_CLOEXEC)
        defer { closeDescriptor(out) }
        let error = #expect(throws: SystemError.self) {
            _ = try Spawner.spawn(
                SpawnRequest(
                    argv: ["/nonexistent/aibox-no-such-program"], environment: [:], workdir: nil, user: nil, stdoutFD: out, stderrFD: out))
        }
        #expect(error?.function == "execve")
        #expect(error?.errno == ENOENT)
        #expect(error?.description == "execve /nonexistent/aibox-no-such-program: No such file or directory")
    }

    @Test("a program that is not executable fails in execve with EACCES")
    func notExecutable() throws {
        try withTemporaryDirectory { dir in
            try writeFile(dir + "/script", "#!/bin/sh\nexit 0\n")
            let out = try openDevNull(O_WRONLY | O_CLOEXEC)
            defer { closeDescriptor(out) }
            let error = #expect(throws: SystemError.self) {
                _ = try Spawner.spawn(
                    SpawnRequest(argv: [dir + "/script"], environment: [:], workdir: nil, user: nil, stdoutFD: out, stderrFD: out))
            }
            #expect(error?.function == "execve")
            #expect(error?.errno == EACCES)
        }
    }

    @Test("a missing workdir fails in chdir, naming the directory")
    func missingWorkdir() throws {
        let out = try openDevNull(O_WRONLY | O_CLOEXEC)
        defer { closeDescriptor(out) }
        let error = #expect(throws: SystemError.self) {
            _ = try Spawner.spawn(
                SpawnRequest(
                    argv: ["/bin/sleep", "30"], environment: [:], workdir: "/nonexistent/aibox-workdir", user: nil, stdoutFD: out,
                    stderrFD: out))
        }
        #expect(error?.function == "chdir")
        #expect(error?.errno == ENOENT)
        #expect(error?.description.contains("/nonexistent/aibox-workdir") == true)
    }

    @Test("as root, the named user is taken on; an unknown user is an error")
    func user() throws {
        let out = try openDevNull(O_WRONLY | O_CLOEXEC)
        defer { closeDescriptor(out) }
        let nobody = try #require(UserIdentity.lookup("nobody"))
        let pid = try Spawner.spawn(
            SpawnRequest(argv: ["/bin/sleep", "30"], environment: [:], workdir: nil, user: "nobody", stdoutFD: out, stderrFD: out))
        defer { _ = killAndReap(pid) }
        var st = stat()
        #expect(stat("/proc/\(pid)", &st) == 0)
        // Without root rights the user is not changed (there is nothing to drop).
        #expect(st.st_uid == (geteuid() == 0 ? nobody.uid : geteuid()))
        if geteuid() == 0 {
            let error = #expect(throws: SystemError.self) {
                _ = try Spawner.spawn(
                    SpawnRequest(
                        argv: ["/bin/true"], environment: [:], workdir: nil, user: "aibox-no-such-user", stdoutFD: out, stderrFD: out))
            }
            #expect(error?.function == "getpwnam")
            #expect(error?.description.contains("aibox-no-such-user") == true)
        }
    }

    @Test("exit statuses are decoded as code or signal")
    func decode() throws {
        let out = try openDevNull(O_WRONLY | O_CLOEXEC)
        defer { closeDescriptor(out) }
        let pid = try Spawner.spawn(
            SpawnRequest(argv: ["/bin/sh", "-c", "exit 78"], environment: [:], workdir: nil, user: nil, stdoutFD: out, stderrFD: out))
        var status: Int32 = 0
        #expect(waitpid(pid, &status, 0) == pid)
        #expect(Reaper.decode(status) == .code(78))
    }
}

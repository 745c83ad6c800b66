import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// What the owner reads on an 80-column console: `status`, `workers`, `events`, `logs`.
@Suite(.serialized) struct ConsoleOutputTests {
    /// Every line of `text` within 80 columns, and no escape sequence.
    static func expectConsoleText(_ text: String, _ what: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) {
        for line in text.split(separator: "\n") {
            #expect(line.count <= 80, "\(what): \(line.count) columns: \(line)", sourceLocation: sourceLocation)
        }
        #expect(!text.utf8.contains(0x1B), "\(what): an escape sequence", sourceLocation: sourceLocation)
    }

    /// A line as the table wraps it, put back together: the row, then the lines indented below it.
    static func detail(under prefix: String, in text: String) -> String? {
        let lines = text.split(separator: "\n").map(String.init)
        guard let row = lines.firstIndex(where: { $0.hasPrefix(prefix) }) else { return nil }
        return lines[(row + 1)...].prefix { $0.hasPrefix("    ") }.map { $0.dropFirst(4) }.joined(separator: " ")
    }

    @Test func statusWorkersAndEventsFitEightyColumnsInEveryWorkerState() throws {
        try #require(fileExists(umockdevRun), "umockdev is missing: apt-get install umockdev (.ci/run does)")
        let box = try TestBox(
            """
            [worker.mailer]
            exec = ["@WORKER@", "--no-notify", "--exit-after", "50", "--exit-code", "78"]

            [worker.flaky]
            exec = ["@WORKER@", "--no-notify", "--exit-after", "10"]
            restart-delay = "10ms"
            crash-loop = { burst = 3, window = "30s", quarantine = "10m" }

            [worker.vision]
            exec = ["@WORKER@", "--no-notify"]
            requires-hardware = ["camera", "tpu.coral", "gpu.nvidia"]

            [worker.assistant-with-a-longer-name]
            exec = ["@WORKER@", "--ready-after", "0"]
            notify = true
            """)
        // A box without any device: the hardware the vision worker needs is surely missing.
        try box.startDaemon(launcher: [umockdevRun, "-d", fixturesDirectory + "/bare-vm.umockdev", "--"])
        defer { box.stopDaemon() }
        let parked = try #require(try box.waitFor("mailer", ["parked"])?.reason)
        try box.waitFor("flaky", ["quarantined"])
        try box.waitFor("vision", ["waiting"])
        try box.waitFor("assistant-with-a-longer-name", ["ready"])

        for command in [["workers"], ["status"]] {
            let r = try box.aibox(command)
            #expect(r.code == 0, "\(r.stderr)")
            Self.expectConsoleText(r.stdout, command[0])
            #expect(Self.detail(under: "mailer ", in: r.stdout) == parked, "\(command[0]):\n\(r.stdout)")
            #expect(r.stdout.contains("waiting for hardware:camera"), "\(r.stdout)")
            #expect(r.stdout.contains("crash loop: 3 exits"), "\(r.stdout)")
        }
        let events = try box.aibox(["events", "-n", "1000"])
        #expect(events.code == 0)
        Self.expectConsoleText(events.stdout, "events")
        // Each event's first line: date, time, kind, worker; the worker column starts at the
        // same place on every one.
        let firsts = events.stdout.split(separator: "\n").filter { $0.first?.isNumber == true }
        #expect(firsts.count >= 8, "\(events.stdout)")
        let workerColumns = Set(
            firsts.compactMap { line -> Int? in
                var tokens = 0
                var inToken = false
                for (i, c) in line.enumerated() {
                    if c != " " && !inToken {
                        tokens += 1
                        if tokens == 4 { return i }
                    }
                    inToken = c != " "
                }
                return nil
            })
        #expect(workerColumns.count == 1, "the worker column moves: \(workerColumns.sorted())\n\(events.stdout)")
        #expect(events.stdout.contains("mailer"), "\(events.stdout)")

        // The database's view, with the daemon stopped, fits too.
        #expect(box.stopDaemon() == 0)
        let down = try box.aibox(["workers"])
        #expect(down.code == 3)
        Self.expectConsoleText(down.stdout, "workers without a daemon")
        #expect(Self.detail(under: "mailer ", in: down.stdout) == parked, "\(down.stdout)")
    }

    @Test func logsOfAnUnknownWorkerNameTheKnownOnes() throws {
        let box = try TestBox(
            """
            [worker.talker]
            exec = ["@WORKER@", "--ready-after", "0"]
            notify = true

            [worker.quiet]
            exec = ["/bin/sleep", "1000"]
            """)
        // Never started: the definitions know the workers.
        let never = try box.aibox(["logs", "talkr"])
        #expect(never.code == 1)
        #expect(never.stderr == "aibox: no worker named \"talkr\"; known workers: quiet, talker\n", "\(never.stderr)")
        #expect(never.stdout.isEmpty)

        try box.startDaemon()
        try box.waitFor("talker", ["ready"])
        try box.waitFor("quiet", ["running"])
        let running = try box.aibox(["logs", "talkr"])
        #expect(running.code == 1)
        #expect(running.stderr == "aibox: no worker named \"talkr\"; known workers: quiet, talker\n", "\(running.stderr)")
        // A known worker that wrote nothing.
        let quiet = try box.aibox(["logs", "quiet"])
        #expect(quiet.code == 1)
        #expect(quiet.stderr.contains("no output captured for \"quiet\""), "\(quiet.stderr)")

        // The daemon down and the definition file gone: the database still knows them.
        #expect(box.stopDaemon() == 0)
        unlink(box.paths.vendorWorkers + "/test.toml")
        let down = try box.aibox(["logs", "nobody"])
        #expect(down.code == 1)
        #expect(down.stderr == "aibox: no worker named \"nobody\"; known workers: quiet, talker\n", "\(down.stderr)")
    }

    /// "2026-11-27 10:00:00.123" then a space (or "?": the clock was not synchronized), a
    /// space, the worker's text.
    static func shownStamp(_ line: Substring) -> (time: String, text: Substring)? {
        let chars = Array(line)
        guard chars.count >= 25, chars[24] == " ", chars[23] == " " || chars[23] == "?" else { return nil }
        let time = String(chars[0..<23])
        let shape = time.map { $0.isNumber ? "9" : String($0) }.joined()
        guard shape == "9999-99-99 99:99:99.999" else { return nil }
        return (time, line.dropFirst(25))
    }

    @Test func capturedLinesCarryTheirTimeInTheFileAndInLogs() throws {
        let box = try TestBox(
            """
            [worker.talker]
            exec = ["@WORKER@", "--ready-after", "0", "--watchdog-stop", "-1"]
            notify = true
            watchdog = "200ms"
            """)
        let before = Clock.wallMilliseconds()
        try box.startDaemon()
        defer { box.stopDaemon() }
        try box.waitFor("talker", ["ready"])
        let file = box.paths.logs + "/talker.log"
        #expect(waitUntil { (readTextFile(file) ?? "").split(separator: "\n").count >= 3 }, "no output in \(file)")
        let after = Clock.wallMilliseconds()
        // The file: each line after its UTC stamp, taken when the line came in.
        let stored = (readTextFile(file) ?? "").split(separator: "\n").prefix(3)
        var stamps: [LogStamp] = []
        for line in stored {
            let (stamp, text) = try #require(LogStamp.split(line), "no stamp: \(line)")
            #expect(line.dropFirst(24).first == (stamp.synchronized ? " " : "?"))
            #expect((before - 1000...after).contains(stamp.milliseconds), "\(line)")
            #expect(!text.isEmpty)
            stamps.append(stamp)
        }
        #expect(stamps.map(\.milliseconds) == stamps.map(\.milliseconds).sorted())

        // `aibox logs`: the same times in local time (here UTC+05:30), to the millisecond.
        var env = ProcessInfo.processInfo.environment
        env["TZ"] = "IST-05:30"
        let shown = try run(aiboxBinary, ["logs", "talker", "-n", "500", "--root", box.root], environment: env)
        #expect(shown.code == 0, "\(shown.stderr)")
        let first = try #require(shown.stdout.split(separator: "\n").first)
        let (time, text) = try #require(Self.shownStamp(first), "no time on \(first)")
        let (stamp, storedText) = try #require(stored.first.flatMap { LogStamp.split($0) })
        #expect(text == storedText)
        let local = stamp.milliseconds + (5 * 3600 + 30 * 60) * 1000
        #expect(time == LogStamp(milliseconds: local, synchronized: true).text.dropLast().replacingOccurrences(of: "T", with: " "))

        // `--follow`: new lines come with their time too.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: aiboxBinary)
        p.arguments = ["logs", "talker", "-n", "0", "--follow", "--root", box.root]
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        defer {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
        var seen = Data()
        let fd = out.fileHandleForReading.fileDescriptor
        let got = waitUntil(.seconds(10)) {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 50) > 0 { seen += out.fileHandleForReading.availableData }
            return String(decoding: seen, as: UTF8.self).contains("\n")
        }
        let followed = String(decoding: seen, as: UTF8.self)
        #expect(got, "logs --follow printed: \(followed)")
        let line = try #require(followed.split(separator: "\n").first)
        #expect(Self.shownStamp(line) != nil, "no time on \(line)")
    }

    /// scripts/demo's hints, as the owner follows them in another terminal.
    @Test func theDemoHintsFitAndPutTheBuiltAiboxOnThePath() throws {
        let repository = parentDirectory(parentDirectory(parentDirectory(#filePath)))
        let hints = try run(repository + "/scripts/demo", ["--hints"], environment: ["PATH": "/usr/bin:/bin"])
        #expect(hints.code == 0, "\(hints.stderr)")
        Self.expectConsoleText(hints.stdout, "scripts/demo --hints")
        let lines = hints.stdout.split(separator: "\n").map(String.init)
        let cd = try #require(lines.first { $0.hasPrefix("  cd ") }, "\(hints.stdout)")
        let export = try #require(lines.first { $0.hasPrefix("  export PATH=") }, "\(hints.stdout)")
        #expect(lines.contains("  aibox status"))
        // Typed as shown, from another directory: `aibox` is the one built here, on the demo's root.
        let script = "cd /\n\(cd)\n\(export)\ncommand -v aibox\necho \"$AIBOX_ROOT\"\naibox --version\n"
        let shell = try run("/bin/bash", ["-c", script], environment: ["PATH": "/usr/bin:/bin"])
        #expect(shell.code == 0, "\(shell.stderr)")
        let out = shell.stdout.split(separator: "\n").map(String.init)
        #expect(out == [repository + "/.build/debug/aibox", repository + "/.demo-root", AIBoxVersion.current], "\(shell.stdout)")
    }

    /// The repository carries what a user needs: no doc, README or message points at a file
    /// outside it, and every relative link in the docs leads to a file that is there.
    @Test func docsAndMessagesPointOnlyInsideTheRepository() throws {
        let repository = parentDirectory(parentDirectory(parentDirectory(#filePath)))
        var files: [String] = []
        func walk(_ dir: String) {
            for name in listDirectory(dir) where !name.hasPrefix(".") {
                let path = dir + "/" + name
                var st = stat()
                guard lstat(path, &st) == 0 else { continue }
                if st.st_mode & S_IFMT == S_IFDIR {
                    walk(path)
                } else if name.hasSuffix(".md") || name.hasSuffix(".swift") || name.hasSuffix(".c") || name.hasSuffix(".h") {
                    files.append(path)
                }
            }
        }
        for top in ["README.md", "docs", "provisioning", "image", "examples", "Sources", "scripts"] {
            let path = repository + "/" + top
            if top.hasSuffix(".md") { files.append(path) } else { walk(path) }
        }
        #expect(files.count > 40, "\(files.count) files")
        for file in files {
            let text = try #require(readTextFile(file), "\(file)")
            for outside in ["../shared", "DESIGN.md"] {
                #expect(!text.contains(outside), "\(file) points at \(outside)")
            }
            guard file.hasSuffix(".md") else { continue }
            // [text](target): a relative target is a file or directory of the repository.
            var rest = Substring(text)
            while let open = rest.range(of: "](") {
                rest = rest[open.upperBound...]
                guard let close = rest.firstIndex(of: ")") else { break }
                let target = String(rest[..<close].split(separator: "#", omittingEmptySubsequences: false).first ?? "")
                rest = rest[close...]
                if target.isEmpty || target.contains("://") || target.hasPrefix("mailto:") { continue }
                let resolved = parentDirectory(file) + "/" + target
                #expect(fileExists(resolved), "\(file): the link \(target) leads nowhere")
                #expect(!target.hasPrefix("/"), "\(file): the link \(target) is absolute")
            }
        }
    }
}

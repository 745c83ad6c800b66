import Testing

@testable import AIBoxCore

/// Workers' control grants, the redaction of secrets, and what a requested update check says.
@Suite struct ControlGrantTests {
    @Test func aGrantAllowsItsRequestsAndPingAndStatusOnly() {
        let grants: [ControlGrant] = [.workers, .logs]
        for allowed in ["workers", "logs", "ping", "status"] {
            #expect(ControlGrant.refusal(allowed, worker: "agent", grants: grants) == nil, "\(allowed)")
        }
        for refused in ["restart", "update-check", "update-install", "start", "stop", "reload", "setup-changed", "nonsense"] {
            #expect(ControlGrant.refusal(refused, worker: "agent", grants: grants) != nil, "\(refused)")
        }
        #expect(
            ControlGrant.refusal("stop", worker: "agent", grants: grants)
                == "\"stop\" is not granted to worker agent (control = [\"workers\", \"logs\"])")
        #expect(ControlGrant.refusal("update-install", worker: "agent", grants: [.update]) == nil)
        #expect(ControlGrant.refusal("restart", worker: "agent", grants: [.restart]) == nil)
    }

    @Test func controlIsReadAndCheckedLikeTheOtherKeys() throws {
        let d = try #require(
            try parse("[worker.a]\nexec = [\"/a\"]\ncontrol = [\"update\", \"workers\", \"workers\", \"logs\"]\n").get().first)
        #expect(d.control == [.workers, .logs, .update], "each once, in one order")
        #expect(try parse("[worker.a]\nexec = [\"/a\"]\n").get().first?.control == [])
        let errors = parseErrors("[worker.a]\nexec = [\"/a\"]\ncontrol = [\"workers\", \"stop\"]\n")
        #expect(errors.count == 1)
        #expect(errors.first?.location.line == 3 && errors.first?.key == "worker.a.control")
        #expect(
            errors.first?.description
                == "\(vendorPath):3: worker.a.control: \"stop\" is not a control request a worker may be granted; allowed: workers, logs, restart, update")
        #expect(parseErrors("[worker.a]\nexec = [\"/a\"]\ncontrol = \"workers\"\n").first?.message.contains("array of strings") == true)
        #expect(parseErrors("[worker.a]\nexec = [\"/a\"]\nenv = { AIBOX_CONTROL_SOCKET = \"/x\" }\n").first?.message.contains("supervisor") == true)
    }

    @Test func secretsAreReplacedLongestFirstAndShortOnesAreNotLookedFor() {
        let r = SecretRedactor(["sk-live-ABCDEF123456\n", "sk-live-ABCDEF", "abc", "-----BEGIN KEY-----\nMIIBVQIBADANBgkq\n-----END KEY-----\n"])
        #expect(r.redact("key=sk-live-ABCDEF123456 ok") == "key=[secret] ok")
        #expect(r.redact("prefix sk-live-ABCDEF only") == "prefix [secret] only")
        #expect(r.redact("abc stays: too short to look for") == "abc stays: too short to look for")
        #expect(r.redact("a line of it: MIIBVQIBADANBgkq") == "a line of it: [secret]")
        #expect(SecretRedactor([]).redact("nothing") == "nothing")
        #expect(LogLines.clip(String(repeating: "x", count: 600)).count == LogLines.maxLineCharacters)
    }

    @Test func aRequestedCheckIsRefusedWithTheReasonAndItsOutcomeSaysWhatTheOwnerNeeds() {
        #expect(UpdateRequest.refusal(abBox: false, feedConfigured: true, running: false, shuttingDown: false)?.contains("no A/B slots") == true)
        #expect(UpdateRequest.refusal(abBox: true, feedConfigured: false, running: false, shuttingDown: false)?.contains("no update feed") == true)
        #expect(UpdateRequest.refusal(abBox: true, feedConfigured: true, running: true, shuttingDown: false)?.contains("already running") == true)
        #expect(UpdateRequest.refusal(abBox: true, feedConfigured: true, running: false, shuttingDown: false) == nil)
        func outcome(_ r: UpdateRequest.Report?, install: Bool = false, ok: Bool = true, stderr: String = "") -> (String, String) {
            let o = UpdateRequest.outcome(install: install, exitedZero: ok, exit: ok ? "exit code 0" : "exit code 1", report: r, stderr: stderr)
            return (o.kind, o.message)
        }
        #expect(outcome(UpdateRequest.Report(result: "available", version: "1.2.0")) == ("update.available", "update 1.2.0 is available; /update install installs it"))
        #expect(outcome(UpdateRequest.Report(result: "up-to-date", reason: "0.1.0 is the newest on stable")) == ("update.none", "no update: 0.1.0 is the newest on stable"))
        #expect(outcome(UpdateRequest.Report(result: "installed", version: "1.2.0", reason: "rebooting"), install: true) == ("update.install-done", "update 1.2.0 is installed; rebooting"))
        #expect(outcome(UpdateRequest.Report(result: "deferred", version: "1.2.0", reason: "not enough space")).0 == "update.none")
        #expect(
            outcome(nil, install: true, ok: false, stderr: "aibox: a retry\naibox: the feed's signature matches none of the 1 key\n")
                == ("update.request-failed", "the update install failed (exit code 1): the feed's signature matches none of the 1 key"))
        #expect(outcome(nil, ok: true).0 == "update.request-failed", "no report is no outcome")
    }
}

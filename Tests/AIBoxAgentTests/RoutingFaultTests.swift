import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// `aibox-agent ask` against loopback fakes of the cloud APIs with the faults those services
/// really produce: the answer comes from the next route, breakers remember, the owner is told.
@Suite("routing under faults", .serialized)
struct RoutingFaultTests {
    static let key = "sk-ant-PLANTED-7f3c9e21d4b8a6"

    /// A cloud route (Anthropic's API on the fake) for `reasoning`, and a local one (Ollama's
    /// API on the same fake) that every chain ends on.
    /// The local server: a fake of its own, without a key (the cloud fake wants one on every path).
    let local: FakeProvider

    init() throws { local = try FakeProvider() }

    func box(_ fake: FakeProvider, cloudBase: String? = nil) throws -> AgentBox {
        let b = try AgentBox()
        try b.configureCloudAndLocal(
            cloud: cloudBase ?? fake.base, key: RoutingFaultTests.key, local: local.base,
            "[routing]\nreasoning = { provider = \"anthropic\", model = \"claude-3-5-haiku-latest\" }\n")
        return b
    }

    @Test("a 429 with Retry-After: the next route answers, and the throttled route is left alone until then")
    func throttled() throws {
        let fake = try FakeProvider(apiKey: RoutingFaultTests.key)
        let b = try box(fake)
        try fake.script(#"[{"fault": "status", "match": {"path": "/v1/messages"}, "error": "rate_limit_error", "retry_after": "90"}]"#)
        let first = try b.ask("Why is the sky blue?", role: "reasoning")
        #expect(first.code == 0, "\(first.stderr)")
        let j = first.json
        #expect(j["route"] as? String == "local/llama3.2:3b")
        #expect((j["answer"] as? String)?.hasPrefix("ollama llama3.2:3b: Why is the sky blue?") == true)
        #expect(j["fallbacks"] as? Int == 1)
        let attempts = j["attempts"] as? [[String: Any]] ?? []
        #expect(attempts.first?["outcome"] as? String == "failed")
        #expect((attempts.first?["reason"] as? String)?.contains("HTTP 429") == true)

        // Another process, at once: the throttled route is skipped without a request.
        let second = try b.ask("And at night?", role: "reasoning")
        #expect(second.code == 0)
        #expect((second.json["attempts"] as? [[String: Any]])?.first?["outcome"] as? String == "skipped")
        #expect(try fake.requests(path: "/v1/messages").count == 1)
        let state = try b.routeStates("reasoning").first
        #expect(state?["state"] as? String == "off")
        #expect((state?["retryInSeconds"] as? Int ?? 0) > 60, "Retry-After: 90 is honoured over the 30 s ladder step")
        #expect(try b.events().contains { $0["kind"] as? String == "route.fallback" })
    }

    @Test("throttled, and no other route answers: one more try after Retry-After, and it answers")
    func retryAfterWhenNothingElseAnswers() throws {
        let fake = try FakeProvider(apiKey: RoutingFaultTests.key)
        let b = try AgentBox()
        // Nothing listens where the local route points: no other route can answer.
        try b.configureCloudAndLocal(
            cloud: fake.base, key: RoutingFaultTests.key, local: "http://127.0.0.1:\(try closedPort())",
            "[routing]\nreasoning = { provider = \"anthropic\", model = \"claude-3-5-haiku-latest\" }\n")
        try fake.script(#"[{"fault": "status", "match": {"path": "/v1/messages"}, "error": "rate_limit_error", "retry_after": "1"}]"#)
        let start = Clock.monotonic()
        let out = try b.ask("Still there?", role: "reasoning")
        let took = Clock.monotonic().since(start)
        #expect(out.json["route"] as? String == "anthropic/claude-3-5-haiku-latest", "\(out.stdout)\(out.stderr)")
        let outcomes = (out.json["attempts"] as? [[String: Any]] ?? []).map { "\($0["route"] ?? "")=\($0["outcome"] ?? "")" }
        #expect(outcomes == ["anthropic/claude-3-5-haiku-latest=failed", "local/llama3.2:3b=failed", "anthropic/claude-3-5-haiku-latest=answered"])
        #expect(took >= .seconds(1) && took < .seconds(5), "waited Retry-After (1 s, up to a quarter more): \(took)")
        #expect(try fake.requests(path: "/v1/messages").count == 2)
    }

    @Test("every cloud route unreachable: the local model answers; the provider's breaker opens")
    func cloudDown() throws {
        let fake = try FakeProvider(apiKey: RoutingFaultTests.key)
        let b = try box(fake, cloudBase: "http://127.0.0.1:\(try closedPort())")
        let out = try b.ask("Hello?", role: "reasoning")
        #expect(out.code == 0, "\(out.stderr)")
        #expect(out.json["route"] as? String == "local/llama3.2:3b")
        #expect(((out.json["attempts"] as? [[String: Any]])?.first?["reason"] as? String)?.contains("refused") == true)
        #expect(try b.events().contains { $0["kind"] as? String == "route.breaker-open" && ($0["message"] as? String)?.hasPrefix("anthropic off") == true })
    }

    @Test("a stream cut, an error event, garbage mid-stream: the whole answer comes from the next route", arguments: [
        #"{"fault": "cut", "after": 3}"#, #"{"fault": "error_event", "after": 2}"#, #"{"fault": "malformed", "after": 2}"#,
    ])
    func brokenStream(fault: String) throws {
        let fake = try FakeProvider(apiKey: RoutingFaultTests.key)
        let b = try box(fake)
        let f = fault.dropLast() + #", "match": {"path": "/v1/messages"}}"#
        try fake.script("[\(f)]")
        let out = try b.ask("Tell me a long story about a box", role: "reasoning")
        #expect(out.code == 0, "\(out.stderr)")
        #expect(out.json["route"] as? String == "local/llama3.2:3b")
        // Nothing of the broken reply reaches the answer.
        #expect((out.json["answer"] as? String)?.hasPrefix("ollama ") == true)
        #expect(((out.json["attempts"] as? [[String: Any]])?.first?["reason"] as? String)?.contains("broke off") == true)
    }

    @Test("a provider that accepts the connection and never answers, or stalls mid-reply: the next route answers once the silence limit passes", arguments: [
        #"{"fault": "hang_before_headers", "seconds": 60}"#, #"{"fault": "stall", "after": 2, "seconds": 60}"#,
    ])
    func wedged(fault: String) throws {
        let fake = try FakeProvider(apiKey: RoutingFaultTests.key)
        let b = try box(fake)
        b.environment["AGENT_SILENCE_SECONDS"] = "1.5"
        try fake.script("[" + fault.dropLast() + #", "match": {"path": "/v1/messages"}}]"#)
        let start = Clock.monotonic()
        let out = try b.ask("Are you there?", role: "reasoning")
        let took = Clock.monotonic().since(start)
        #expect(out.json["route"] as? String == "local/llama3.2:3b", "\(out.stdout)\(out.stderr)")
        let reason = (out.json["attempts"] as? [[String: Any]])?.first?["reason"] as? String ?? ""
        #expect(reason == (fault.contains("hang") ? "no answer in time" : "the reply stalled"), "\(reason)")
        #expect(took >= .milliseconds(1400) && took < .seconds(10), "given up after the silence limit, not before: \(took)")
        #expect(try b.routeStates("reasoning").first?["state"] as? String == "off", "the provider's breaker opened")
    }

    @Test("a key refused (401): the provider stays off until its key changes; the owner is told once")
    func unauthorised() throws {
        let fake = try FakeProvider(apiKey: "sk-ant-the-right-one-0000")
        let b = try box(fake)
        let first = try b.ask("one", role: "reasoning")
        #expect(first.json["route"] as? String == "local/llama3.2:3b")
        _ = try b.ask("two", role: "reasoning")
        #expect(try fake.requests(path: "/v1/messages").count == 1, "a disabled provider is not asked again")
        let states = try b.routeStates("reasoning")
        #expect(states.first?["state"] as? String == "disabled")
        #expect(try b.events().filter { $0["kind"] as? String == "owner.notice" }.count == 1)
        // A new key is a new configuration: tried again, and it answers.
        try b.secret("provider.anthropic.api-key", "sk-ant-the-right-one-0000")
        let third = try b.ask("three", role: "reasoning")
        #expect(third.json["route"] as? String == "anthropic/claude-3-5-haiku-latest", "\(third.stdout)")
        #expect(try b.routeStates("reasoning").first?["state"] as? String == "ok")
    }

    @Test("quota exhausted: the provider is off for hours, other routes answer, the owner is told once")
    func quota() throws {
        let fake = try FakeProvider(apiKey: RoutingFaultTests.key)
        let b = try box(fake)
        try fake.script(#"[{"fault": "status", "match": {"path": "/v1/messages"}, "error": "enforced_spend_limit_reached"}]"#)
        for q in ["a", "b", "c"] { #expect(try b.ask(q, role: "reasoning").json["route"] as? String == "local/llama3.2:3b") }
        #expect(try fake.requests(path: "/v1/messages").count == 1)
        #expect((try b.routeStates("reasoning").first?["retryInSeconds"] as? Int ?? 0) > 4 * 3600)
        let notices = try b.events().filter { $0["kind"] as? String == "owner.notice" }
        #expect(notices.count == 1)
    }

    @Test("a bad request (400) is not sent to another route")
    func rejected() throws {
        let fake = try FakeProvider(apiKey: RoutingFaultTests.key)
        let b = try box(fake)
        try fake.script(#"[{"fault": "status", "match": {"path": "/v1/messages"}, "code": 400, "error": "invalid_request_error", "message": "messages: roles must alternate"}]"#)
        let out = try b.ask("x", role: "reasoning")
        #expect(out.code == 1)
        #expect(out.json["ok"] as? Bool == false)
        #expect(try local.requests(path: "/api/chat").isEmpty)
    }

    @Test("the API key is sent to its provider and found nowhere else: not in output, events, the database or any file")
    func keyStaysSecret() throws {
        let fake = try FakeProvider(apiKey: "sk-ant-other")  // every call is refused, with the key's tail in the message
        let b = try box(fake)
        var outputs = ""
        for _ in 0..<2 {
            let o = try b.ask("hi", role: "reasoning")
            outputs += o.stdout + o.stderr
        }
        let status = try b.agent(["status", "--json"])
        let human = try b.agent(["status"])
        outputs += status.stdout + status.stderr + human.stdout + human.stderr
        let sent = try fake.requests(path: "/v1/messages").first?["headers"] as? [String: Any]
        #expect(sent?["x-api-key"] as? String == RoutingFaultTests.key, "the key went to the provider")
        #expect(!outputs.contains(RoutingFaultTests.key))
        let grep = try runProgram("/bin/grep", ["-r", "-l", "-a", "-F", RoutingFaultTests.key, b.root])
        let files = grep.stdout.split(separator: "\n").map(String.init)
        #expect(files == [b.paths.secrets + "/provider.anthropic.api-key"], "the key is in \(files)")
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on.
func closedPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var a = sockaddr_in()
    a.sin_family = sa_family_t(AF_INET)
    a.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return Int(UInt16(bigEndian: a.sin_port))
}

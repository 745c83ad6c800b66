import AIBoxCore
import Testing

@testable import AIBoxAgentCore

/// The owner's replies to the box's commands, and /model's chains.
@Suite struct BoxRepliesTests {
    func view(_ name: String, _ state: String, restarts: Int = 0, reason: String? = nil) -> WorkerView {
        WorkerView(name: name, state: state, pid: 10, restarts: restarts, lastExit: nil, status: nil, reason: reason, waitingFor: [], critical: false)
    }

    @Test func workersAreOneShortLineEach() {
        let text = BoxReplies.workers([
            view("agent", "ready"), view("flaky", "quarantined", restarts: 5, reason: "5 exits within 1m"), view("w", "running", restarts: 1),
        ])
        #expect(text == "agent: ready\nflaky: quarantined, 5 restarts (5 exits within 1m)\nw: running, 1 restart")
        #expect(BoxReplies.workers([]) == "No workers are defined.")
        #expect(BoxReplies.restarted(view("w", "stopping"), previousPID: 41) == "Restarting w (was pid 41): now stopping.")
    }

    @Test func logsAreStampedWithTheTimeOfDayAndTheAgentsSecretsGoAgain() {
        let l = LogLines(worker: "w", source: "files", lines: [.init(at: 1000, text: "token agent-own-secret-1"), .init(at: nil, text: "[secret] from the daemon")])
        let text = BoxReplies.logs(l, redactor: SecretRedactor(["agent-own-secret-1"]), timeOfDay: { "T\($0)" })
        #expect(text == "w, last 2 lines:\nT1000 token [secret]\n[secret] from the daemon")
        #expect(BoxReplies.logs(LogLines(worker: "w", source: "journal", lines: []), redactor: SecretRedactor([]), timeOfDay: { _ in "" }) == "w has no output to show.")
    }

    @Test func theDaemonUnreachableIsSaidPlainly() {
        #expect(BoxReplies.unreachable(.notRunning).contains("not running"))
        #expect(BoxReplies.unreachable(.notResponding(seconds: 5)).contains("did not answer within 5 s"))
        #expect(BoxReplies.unreachable(.refused("\"stop\" is not granted")) == "aibox refused: \"stop\" is not granted")
        #expect(BoxReplies.unreachable(.noSocket).contains("control = ["))
    }

    @Test func anOverridePutsTheRouteFirstAndRefusesAProviderNotConfigured() throws {
        let providers = [
            ProviderConfig(name: "local", kind: .ollama, baseURL: "http://127.0.0.1:1", models: ["a"]),
            ProviderConfig(name: "cloud", kind: .anthropic, apiKeySecret: "provider.cloud.api-key", models: ["c1", "c2"]),
        ]
        let table = RoutingTable.build(routing: [:], providers: providers, tier: .small)
        #expect(table.chains[.chat]?.map(\.key.description) == ["local/a", "cloud/c1"])
        let chain = try table.overriding(.chat, with: Route(provider: "cloud", model: "c2"), providers: providers).get()
        #expect(chain.map(\.key.description) == ["cloud/c2", "local/a", "cloud/c1"])
        #expect(chain[0].apiKeySecret == "provider.cloud.api-key" && !chain[0].isLocal)
        let again = try table.overriding(.chat, with: Route(provider: "cloud", model: "c1"), providers: providers).get()
        #expect(again.map(\.key.description) == ["cloud/c1", "local/a"], "the named route once, first")
        let refused = table.overriding(.chat, with: Route(provider: "openai", model: "gpt"), providers: providers)
        #expect(refused == .failure(.unknownProvider("openai", configured: ["local", "cloud"])))
        if case .failure(let e) = refused { #expect(e.description == "box.toml configures no provider \"openai\"; local, cloud are configured") }
    }

    @Test func theOutcomeOfAnUpdateSomeoneAskedForIsToldEachTime() throws {
        for kind in UpdateRequest.kinds {
            let a = try #require(BoxNotices.notice(BoxEvent(id: 1, kind: kind, worker: nil, message: "no update: x"), day: "d"))
            let b = try #require(BoxNotices.notice(BoxEvent(id: 2, kind: kind, worker: nil, message: "no update: x"), day: "d"))
            #expect(a.key != b.key, "asked twice a day, told twice")
            #expect(a.text == "No update: x")
        }
    }
}

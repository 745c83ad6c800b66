import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc
import Testing

/// The worker definitions the image ships (image/workers.d), read as the daemon reads
/// usr/lib/aibox/workers.d (ConfigFiles.load), and what they must say.
@Suite struct ImageWorkerDefinitionTests {
    static let image = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("image").path

    /// The image's definitions, installed under a temporary root as image/README.md says.
    static func shipped() throws -> [String: WorkerDefinition] {
        let box = try TestBox()
        let files = listDirectory(image + "/workers.d").filter { $0.hasSuffix(".toml") }
        #expect(Set(files) == ["agent.toml", "llm-local.toml"], "\(files)")
        for f in files {
            let text = try #require(readTextFile(image + "/workers.d/" + f))
            try writeFileAtomically(box.paths.vendorWorkers + "/" + f, Array(text.utf8))
        }
        let (loaded, skipped) = ConfigFiles.load(box.paths)
        #expect(skipped.isEmpty)
        let defs = try loaded.get()
        return Dictionary(uniqueKeysWithValues: defs.map { ($0.name, $0) })
    }

    /// The `u` lines of image/sysusers.d/aibox.conf.
    static func imageUsers() throws -> Set<String> {
        let text = try #require(readTextFile(image + "/sysusers.d/aibox.conf"))
        return Set(
            text.split(separator: "\n").compactMap { line in
                let f = line.split(separator: " ", omittingEmptySubsequences: true)
                return f.count > 1 && f[0] == "u" ? String(f[1]) : nil
            })
    }

    @Test func theAgentsDefinition() throws {
        let agent = try #require(try Self.shipped()["agent"])
        #expect(agent.exec == ["/usr/bin/aibox-agent", "run"])
        #expect(agent.user == "aibox-agent")
        #expect(agent.workdir == "/var/lib/aibox/work/agent")
        #expect(agent.notify && agent.readyHTTP == nil)
        #expect(agent.watchdog == .seconds(30))
        #expect(agent.critical)
        #expect(agent.secrets == ["provider.*", "channel.*"])
        // What setup stores (docs: provider.NAME.api-key, channel.…) reaches it; nothing else does.
        let stored = [
            "provider.openai.api-key", "provider.local.api-key", "channel.telegram.token", "channel.slack.bot-token",
            "channel.whatsapp.app-secret", "wifi.password", "seed.signing-key",
        ]
        let handed = SecretSelection.expand(agent.secrets, available: stored)
        #expect(handed.required.isEmpty, "no listed name that could be missing")
        #expect(handed.optional == stored.filter { $0.hasPrefix("provider.") || $0.hasPrefix("channel.") }.sorted())
        // Never held back by the local model, which may never run on this box.
        #expect(agent.after.isEmpty && agent.requiresHardware.isEmpty)
        // The owner's box commands over chat: its own control socket, these requests only.
        #expect(agent.control == [.workers, .logs, .restart, .update])
        #expect(try Self.shipped()["llm-local"]?.control.isEmpty == true, "the model server asks nothing of the daemon")
    }

    @Test func theLocalModelsDefinition() throws {
        let llm = try #require(try Self.shipped()["llm-local"])
        #expect(llm.exec.first == "/usr/lib/aibox/llama/llama-server")
        let args = Array(llm.exec.dropFirst())
        func value(_ flag: String) -> String? { args.firstIndex(of: flag).flatMap { $0 + 1 < args.count ? args[$0 + 1] : nil } }
        #expect(value("--host") == "127.0.0.1", "loopback only")
        #expect(value("--port") == "8080")
        #expect(value("--alias") == "local")
        #expect(value("-m") == "/var/lib/aibox/models/default.gguf")
        #expect(value("-c") == "4096")
        #expect(llm.user == "aibox-llm")
        #expect(llm.secrets.isEmpty, "the model server gets no secret")
        #expect(llm.requiresHardware == [Capability.llmLocal.rawValue])
        #expect(llm.requiresFiles == [value("-m")], "it waits for the weights it is started with")
        // Readiness from its health endpoint, on the port it listens on.
        let ready = try #require(llm.readyHTTP)
        #expect(!llm.notify)
        #expect(ready.url == "http://127.0.0.1:8080/health")
        #expect(ready.address == [127, 0, 0, 1] && "\(ready.port)" == value("--port"))
        #expect(llm.readyTimeout >= .seconds(90), "loading weights from flash takes a while")
    }

    @Test func everyShippedWorkerRunsAsAUserTheImageCreatesInItsOwnWorkdir() throws {
        let users = try Self.imageUsers()
        for (name, d) in try Self.shipped() {
            let user = try #require(d.user, "\(name) would run as root")
            #expect(users.contains(user), "\(name): user \(user) is not in image/sysusers.d/aibox.conf (\(users.sorted()))")
            #expect(d.workdir == "/var/lib/aibox/work/\(name)", "\(name): \(d.workdir ?? "no workdir")")
            for c in d.requiresHardware { #expect(Capability(rawValue: c) != nil, "\(name): \(c) is no capability of the profile") }
        }
    }
}

// aibox-agent-bench: the agent's routing overhead, memory and fallback time, beside LiteLLM's
// proxy in the same run, all against the same loopback fake of the OpenAI API
// (Tests/AIBoxAgentTests/Fixtures/llm_fake.py). docs/BENCHMARKS.md §9 has the figures.
//
//   aibox-agent-bench [--requests N] [--litellm PATH/TO/litellm] [--agent PATH/TO/aibox-agent]
//   aibox-agent-bench --channels ...   (the channels' figures: ChannelBench.swift)
//
// Routing overhead: the time of `Assistant.ask` (chains, breakers, the budget's reservation
// and settlement in agent.db, events) minus the time of the same streamed call made directly
// with the same HTTP client; for LiteLLM, the same call through its proxy minus the direct
// one. Both for the whole reply and for the first byte. Memory: resident set of an idle
// `aibox-agent run` and of a process running 20 conversations at once, beside LiteLLM's
// proxy idle and under 20 requests at once. Fallback: a first route failing with HTTP 500,
// the time from its failure to the answer of the next route.
import AIBoxAgent
import AIBoxAgentCore
import AIBoxCore
import AIBoxSystem
import Foundation
import Glibc

func say(_ s: String) { FileHandle.standardError.write(Data(("[agent-bench] " + s + "\n").utf8)) }

struct Options {
    var requests = 300
    var litellm: String?
    var agent: String?
    var fake = ""
}

func parse() -> Options {
    var o = Options()
    var args = CommandLine.arguments.dropFirst().makeIterator()
    while let a = args.next() {
        switch a {
        case "--requests": o.requests = Int(args.next() ?? "") ?? o.requests
        case "--litellm": o.litellm = args.next()
        case "--agent": o.agent = args.next()
        case "--fake": o.fake = args.next() ?? ""
        default:
            say("usage: aibox-agent-bench [--requests N] [--litellm PATH] [--agent PATH] --fake llm_fake.py")
            exit(2)
        }
    }
    return o
}

func ms(_ since: Instant) -> Double { Double(Clock.monotonic().since(since).nanoseconds) / 1e6 }

struct Stats {
    var p50: Double, p99: Double, n: Int
    init(_ xs: [Double]) {
        let s = xs.sorted()
        n = s.count
        p50 = s.isEmpty ? .nan : s[s.count / 2]
        p99 = s.isEmpty ? .nan : s[min(s.count - 1, Int(Double(s.count) * 0.99))]
    }
}

func f(_ d: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", d) }

/// Resident set (KiB) of a process and its descendants.
func rssKiB(_ pid: pid_t) -> Int {
    var total = 0
    var todo = [pid]
    while let p = todo.popLast() {
        if let status = try? String(contentsOfFile: "/proc/\(p)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        {
            total += Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
        }
        if let children = try? String(contentsOfFile: "/proc/\(p)/task/\(p)/children", encoding: .utf8) {
            todo += children.split(separator: " ").compactMap { pid_t($0) }
        }
    }
    return total
}

func startProcess(_ path: String, _ args: [String], env: [String: String] = [:], log: String = "/dev/null") throws -> Process {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    var e = ProcessInfo.processInfo.environment
    for (k, v) in env { e[k] = v }
    p.environment = e
    _ = creat(log, 0o644)
    p.standardOutput = FileHandle(forWritingAtPath: log)
    p.standardError = FileHandle(forWritingAtPath: log)
    try p.run()
    return p
}

func stop(_ p: Process) {
    kill(p.processIdentifier, SIGTERM)
    let end = Clock.monotonic() + .seconds(10)
    while p.isRunning && Clock.monotonic() < end { usleep(20_000) }
    if p.isRunning { kill(p.processIdentifier, SIGKILL) }
    p.waitUntilExit()
}

func httpOK(_ url: String) -> Bool {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
    p.arguments = ["-sf", "-o", "/dev/null", "--max-time", "2", url]
    try? p.run()
    p.waitUntilExit()
    return p.terminationStatus == 0
}

func post(_ url: String, _ body: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
    p.arguments = ["-sf", "-o", "/dev/null", "-X", "POST", "-H", "content-type: application/json", "-d", body, url]
    try? p.run()
    p.waitUntilExit()
}

@main
struct Bench {
    static func main() async throws {
        if CommandLine.arguments.contains("--channels") {
            try await ChannelBench.run(Array(CommandLine.arguments.dropFirst()))
            return
        }
        let o = parse()
        let dir = "/tmp/aibox-agent-bench-\(getpid())"
        try makeDirectories(dir + "/root/etc/aibox")
        try makeDirectories(dir + "/root/usr/lib/aibox/agent")
        defer { _ = try? FileManager.default.removeItem(atPath: dir) }

        // The fake cloud.
        let fake = try startProcess("/usr/bin/python3", [o.fake, "--port", "0", "--port-file", dir + "/port"])
        defer { stop(fake) }
        var port = 0
        for _ in 0..<300 where port == 0 {
            port = Int((try? String(contentsOfFile: dir + "/port", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
            usleep(20_000)
        }
        let base = "http://127.0.0.1:\(port)"
        say("fake on \(base)")

        // A box with a budget (so every call reserves and settles, as a real one does).
        try """
        name = "bench"
        [admin]
        ssh-keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl bench@box"]
        [providers.cloud]
        kind = "openai"
        base-url = "\(base)/v1"
        models = ["gpt-4o-mini", "gpt-4o"]
        [routing]
        chat = { provider = "cloud", model = "gpt-4o-mini" }
        reasoning = [{ provider = "cloud", model = "gpt-4o" }, { provider = "cloud", model = "gpt-4o-mini" }]
        [budget]
        daily-usd = 1000.0
        """.write(toFile: dir + "/root/etc/aibox/box.toml", atomically: true, encoding: .utf8)
        try "[openai]\n\"gpt-4o-mini\" = { input = 0.15, output = 0.6 }\n\"gpt-4o\" = { input = 2.5, output = 10 }\n"
            .write(toFile: dir + "/root/usr/lib/aibox/agent/prices.toml", atomically: true, encoding: .utf8)
        let paths = Paths(root: dir + "/root")
        guard case .success(let settings) = AgentSettings.load(paths: paths, environment: ["AGENT_LOCAL_LLM_TIER": "none"]) else {
            say("the bench's box.toml is invalid")
            exit(1)
        }
        try makeDirectories(paths.agentDirectory)
        let client = ProviderClient()
        let assistant = Assistant(settings: settings, ledger: try Ledger(path: paths.agentDatabase), client: client)
        let route = settings.table.chains[.chat]![0]
        let question = "Summarise the plot of a short story about a box that answers questions."
        let request = ModelRequest(model: route.key.model, messages: [ChatMessage(.user, question)], maxTokens: assistant.maxTokens)

        let master = "sk-bench-master-0123456789abcdef"
        let direct: @Sendable (ResolvedRoute) async -> (Double, Double) = { r in
            let t = Clock.monotonic()
            // LiteLLM's proxy wants its master key; the fake takes any.
            guard case .success(let reply) = await client.call(r, apiKey: Secret(master), request: request, timeouts: CallTimeouts.forRoute(r)) else { return (.nan, .nan) }
            return (ms(t), reply.firstByteMS)
        }
        func viaAgent() async -> (Double, Double) {
            let t = Clock.monotonic()
            guard case .success(let a) = await assistant.ask(role: .chat, message: question) else { return (.nan, .nan) }
            let total = ms(t)
            return (total, total - (a.totalMS - a.firstByteMS))
        }

        // Direct and agent, interleaved so a drift of the machine reaches both alike.
        say("routing overhead: \(o.requests) requests each, direct and through the agent, interleaved")
        for _ in 0..<30 {
            _ = await direct(route)
            _ = await viaAgent()
        }
        var d: [(Double, Double)] = [], a: [(Double, Double)] = []
        for _ in 0..<o.requests {
            d.append(await direct(route))
            a.append(await viaAgent())
        }

        // LiteLLM's proxy before the same fake.
        var l: [(Double, Double)] = [], dl: [(Double, Double)] = []
        var litellmIdle = 0, litellmBusy = 0, litellmFallback: [Double] = []
        var litellmNote = "not run (no --litellm)"
        if let litellm = o.litellm {
            let lport = 40_000 + Int(getpid() % 10_000)
            try """
            model_list:
              - model_name: gpt-4o-mini
                litellm_params:
                  model: openai/gpt-4o-mini
                  api_base: \(base)/v1
                  api_key: sk-bench
              - model_name: gpt-4o
                litellm_params:
                  model: openai/gpt-4o
                  api_base: \(base)/v1
                  api_key: sk-bench
            router_settings:
              num_retries: 0
              fallbacks: [{"gpt-4o": ["gpt-4o-mini"]}]
            litellm_settings:
              telemetry: false
            """.write(toFile: dir + "/litellm.yaml", atomically: true, encoding: .utf8)
            let proxy = try startProcess(
                litellm, ["--config", dir + "/litellm.yaml", "--host", "127.0.0.1", "--port", "\(lport)", "--num_workers", "1"],
                env: ["LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "LITELLM_MASTER_KEY": master], log: dir + "/litellm.log")
            defer { stop(proxy) }
            let up = Clock.monotonic()
            while !httpOK("http://127.0.0.1:\(lport)/health/liveliness") && Clock.monotonic() < up + .seconds(180) && proxy.isRunning {
                usleep(200_000)
            }
            if httpOK("http://127.0.0.1:\(lport)/health/liveliness") {
                say("litellm up after \(f(ms(up) / 1000, 1)) s")
                var viaProxy = route
                viaProxy.baseURL = "http://127.0.0.1:\(lport)/v1"
                for _ in 0..<30 {
                    _ = await direct(route)
                    _ = await direct(viaProxy)
                }
                usleep(2_000_000)
                litellmIdle = rssKiB(proxy.processIdentifier)
                say("routing through litellm: \(o.requests) requests, interleaved with direct ones")
                for _ in 0..<o.requests {
                    dl.append(await direct(route))
                    l.append(await direct(viaProxy))
                }
                // 20 at once, each held open by slow replies.
                post(base + "/_fake/script", #"{"faults": [{"fault": "delay_ms", "ms": 100, "times": -1}]}"#)
                let proxyRoute = viaProxy, proxyPID = proxy.processIdentifier
                litellmBusy = await withTaskGroup(of: Int.self) { g in
                    for _ in 0..<20 { g.addTask { _ = await direct(proxyRoute); return 0 } }
                    g.addTask {
                        try? await Task.sleep(for: .milliseconds(800))
                        return rssKiB(proxyPID)
                    }
                    var m = 0
                    for await x in g { m = max(m, x) }
                    return m
                }
                post(base + "/_fake/reset", "{}")
                // Fallback through LiteLLM: gpt-4o answers 500, its fallback gpt-4o-mini answers.
                var fb = viaProxy
                fb.key = RouteKey(provider: "cloud", model: "gpt-4o")
                for _ in 0..<min(o.requests, 100) {
                    post(base + "/_fake/script", #"{"faults": [{"fault": "status", "match": {"model": "gpt-4o"}, "error": "server_error"}]}"#)
                    let t = Clock.monotonic()
                    var r = request
                    r.model = "gpt-4o"
                    if case .success = await client.call(fb, apiKey: Secret(master), request: r, timeouts: CallTimeouts.forRoute(fb)) { litellmFallback.append(ms(t)) }
                }
                post(base + "/_fake/reset", "{}")
                let v = Process()
                v.executableURL = URL(fileURLWithPath: (litellm as NSString).deletingLastPathComponent + "/python")
                v.arguments = ["-c", "import importlib.metadata as m; print(m.version('litellm'))"]
                let out = Pipe()
                v.standardOutput = out
                try? v.run()
                v.waitUntilExit()
                litellmNote = "LiteLLM " + String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            } else {
                litellmNote = "did not come up: " + ((try? String(contentsOfFile: dir + "/litellm.log", encoding: .utf8))?.suffix(400).description ?? "")
            }
        }

        // The agent's memory: an idle worker process, and this process under 20 conversations at once.
        var agentIdle = 0
        if let agent = o.agent {
            let w = try startProcess(agent, ["run", "--root", paths.root], env: ["AGENT_LOCAL_LLM_TIER": "none"])
            usleep(3_000_000)
            agentIdle = rssKiB(w.processIdentifier)
            stop(w)
        }
        let selfIdle = rssKiB(getpid())
        post(base + "/_fake/script", #"{"faults": [{"fault": "delay_ms", "ms": 100, "times": -1}]}"#)
        let agentBusy = await withTaskGroup(of: Int.self) { g in
            for i in 0..<20 { g.addTask { _ = await assistant.ask(role: .chat, message: "conversation \(i): " + question); return 0 } }
            g.addTask {
                try? await Task.sleep(for: .milliseconds(800))
                return rssKiB(getpid())
            }
            var m = 0
            for await x in g { m = max(m, x) }
            return m
        }
        post(base + "/_fake/reset", "{}")

        // Fallback time: the first route of `reasoning` answers 500; from its failure to the answer.
        var fallback: [Double] = []
        for _ in 0..<min(o.requests, 100) {
            await assistant.resetBreakers()
            post(base + "/_fake/script", #"{"faults": [{"fault": "status", "match": {"model": "gpt-4o"}, "error": "server_error"}]}"#)
            let t = Clock.monotonic()
            guard case .success(let answer) = await assistant.ask(role: .reasoning, message: question), answer.attempts.count == 2,
                let failed = answer.attempts.first?.milliseconds
            else { continue }
            fallback.append(ms(t) - failed)
        }
        await client.shutdown()

        // The figures.
        func overhead(_ x: [(Double, Double)], _ base: [(Double, Double)], _ k: KeyPath<(Double, Double), Double>) -> (Stats, Stats, Stats) {
            (Stats(base.map { $0[keyPath: k] }), Stats(x.map { $0[keyPath: k] }), Stats(zip(x, base).map { $0[keyPath: k] - $1[keyPath: k] }))
        }
        print("### 9. The agent beside LiteLLM (\(litellmNote))\n")
        print("\(o.requests) streamed requests each to the loopback fake of the OpenAI API, interleaved with direct calls by the same client. Overhead = paired difference (route − direct), in ms.\n")
        print("| path | measure | direct p50 | via p50 | overhead p50 | overhead p99 |")
        print("|---|---|---:|---:|---:|---:|")
        for (name, x, b) in [("aibox-agent (in process)", a, d), ("LiteLLM proxy", l, dl)] where !x.isEmpty {
            let (bt, vt, ot) = overhead(x, b, \.0)
            let (bf, vf, of) = overhead(x, b, \.1)
            print("| \(name) | whole reply | \(f(bt.p50)) | \(f(vt.p50)) | **\(f(ot.p50, 3))** | \(f(ot.p99, 3)) |")
            print("| \(name) | first byte | \(f(bf.p50)) | \(f(vf.p50)) | **\(f(of.p50, 3))** | \(f(of.p99, 3)) |")
        }
        print("\n| memory (resident, MiB) | idle | 20 requests at once |")
        print("|---|---:|---:|")
        print("| aibox-agent | \(agentIdle > 0 ? f(Double(agentIdle) / 1024, 1) : "–") (`aibox-agent run`) | \(f(Double(agentBusy) / 1024, 1)) (this bench process: \(f(Double(selfIdle) / 1024, 1)) before) |")
        if litellmIdle > 0 { print("| LiteLLM proxy (all its processes) | \(f(Double(litellmIdle) / 1024, 1)) | \(f(Double(litellmBusy) / 1024, 1)) |") }
        let fs = Stats(fallback), lf = Stats(litellmFallback)
        print("\n| fallback after HTTP 500 | n | p50 ms | p99 ms |")
        print("|---|---:|---:|---:|")
        print("| aibox-agent: from the failure to the next route's answer | \(fs.n) | \(f(fs.p50)) | \(f(fs.p99)) |")
        if lf.n > 0 { print("| LiteLLM: the whole request (failure + fallback) | \(lf.n) | \(f(lf.p50)) | \(f(lf.p99)) |") }
    }
}

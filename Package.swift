// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "aibox",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "aibox", targets: ["aibox"]),
        .executable(name: "aibox-agent", targets: ["aibox-agent"]),
        .executable(name: "aibox-example-worker", targets: ["aibox-example-worker"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        // The agent's HTTP client (streaming bodies, idle read timeouts); the daemon never links it.
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.100.0"),
        // The agent's WebSocket client (Discord's Gateway); the daemon never links it.
        .package(url: "https://github.com/hummingbird-project/swift-websocket", from: "1.6.2"),
    ],
    targets: [
        // C libraries of the system, in the shape GRDB uses for SQLite.
        .systemLibrary(
            name: "CSystemd", pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]),
        .systemLibrary(
            name: "CUdev", pkgConfig: "libudev",
            providers: [.apt(["libudev-dev"])]),
        .systemLibrary(
            name: "CSQLite", pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]),
        // The few OS calls Swift cannot make safely itself (vfork+exec, variadic fcntl/ioctl).
        .target(name: "CAIBoxOS", linkerSettings: [.linkedLibrary("crypt")]),

        // Pure logic: no I/O, time injected.
        .target(name: "AIBoxCore"),
        // The agent's pure logic: stream parsers, failure classes, breakers, budget
        // arithmetic, routing. No I/O, time injected; the daemon never links it.
        // HMAC (a pure function) from swift-crypto: the WhatsApp webhook's signature.
        .target(
            name: "AIBoxAgentCore",
            dependencies: ["AIBoxCore", .product(name: "Crypto", package: "swift-crypto")]),
        // Adapters over the OS.
        .target(
            name: "AIBoxSystem",
            dependencies: [
                "AIBoxCore", "CAIBoxOS", "CSystemd", "CSQLite", "CUdev",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        // The long-running supervisor.
        .target(
            name: "AIBoxDaemon",
            dependencies: [
                "AIBoxCore", "AIBoxSystem",
                .product(name: "Logging", package: "swift-log"),
            ]),
        // The one executable.
        .executableTarget(
            name: "aibox",
            dependencies: [
                "AIBoxCore", "AIBoxSystem", "AIBoxDaemon",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // The assistant's I/O: provider clients over async-http-client, its SQLite ledger,
        // configuration and secrets. Linked by aibox-agent only.
        .target(
            name: "AIBoxAgent",
            dependencies: [
                "AIBoxCore", "AIBoxAgentCore", "AIBoxSystem", "CSystemd",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                // The WhatsApp webhook's small HTTP/1.1 server.
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // The assistant: a worker supervised by aibox, and its console commands.
        .executableTarget(
            name: "aibox-agent",
            dependencies: [
                "AIBoxCore", "AIBoxAgentCore", "AIBoxAgent", "AIBoxSystem",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // A tiny worker in C, written for systemd (sd_notify): examples, tests, benchmarks.
        .executableTarget(name: "aibox-example-worker", dependencies: ["CSystemd"]),
        // Benchmarks (run by hand; see docs/BENCHMARKS.md).
        .executableTarget(name: "aibox-bench-spawnloop", path: "Benchmarks/spawnloop"),
        .executableTarget(
            name: "aibox-bench",
            dependencies: ["AIBoxCore", "AIBoxSystem"],
            path: "Benchmarks/bench"),
        .executableTarget(
            name: "aibox-agent-bench",
            dependencies: ["AIBoxAgent", "AIBoxAgentCore", "AIBoxCore", "AIBoxSystem"],
            path: "Benchmarks/agent"),
        .executableTarget(
            name: "aibox-bench-hardware",
            dependencies: ["AIBoxCore", "AIBoxSystem"],
            path: "Benchmarks/hardware"),
        // Fuzzing (docs/FUZZING.md): one harness per parser; `aibox-fuzz HARNESS` replays
        // inputs, or is libFuzzer when built by Fuzz/run (-sanitize=fuzzer,address -D FUZZING).
        .target(
            name: "AIBoxFuzzHarnesses",
            dependencies: ["AIBoxCore", "AIBoxAgentCore", "AIBoxSystem", .product(name: "Crypto", package: "swift-crypto")],
            path: "Fuzz/Harnesses"),
        .target(name: "CLibFuzzer", path: "Fuzz/CLibFuzzer"),
        .executableTarget(name: "aibox-fuzz", dependencies: ["AIBoxFuzzHarnesses", "AIBoxSystem", "CLibFuzzer"], path: "Fuzz/Driver"),

        .testTarget(name: "AIBoxCoreTests", dependencies: ["AIBoxCore"], exclude: ["TOMLCorpus"]),
        .testTarget(
            name: "AIBoxAgentCoreTests",
            dependencies: ["AIBoxAgentCore", "AIBoxCore", .product(name: "Crypto", package: "swift-crypto")]),
        // Runs the built aibox-agent against loopback fakes of the cloud APIs and a real
        // llama-server (scripts/local-model), under a real aibox daemon.
        .testTarget(
            name: "AIBoxAgentTests",
            dependencies: ["AIBoxCore", "AIBoxAgentCore", "AIBoxAgent", "AIBoxSystem", "aibox", "aibox-agent"],
            exclude: ["Fixtures"]),
        .testTarget(name: "AIBoxSystemTests", dependencies: ["AIBoxSystem"]),
        .testTarget(name: "AIBoxImageTests"),
        // Replays the fuzz corpora; runs every harness briefly under libFuzzer (Fuzz/run).
        .testTarget(name: "AIBoxFuzzTests", dependencies: ["AIBoxFuzzHarnesses"]),
        // Runs the built `aibox` and example worker as real processes.
        .testTarget(
            name: "AIBoxIntegrationTests",
            dependencies: ["AIBoxCore", "AIBoxSystem", "aibox", "aibox-example-worker"],
            exclude: ["umockdev-testbed.py", "Fixtures"]),
    ],
    swiftLanguageModes: [.v6]
)

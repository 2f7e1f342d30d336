// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "portbudget",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "portbudget", targets: ["portbudget"]),
        .executable(name: "portbudget-loadgen", targets: ["portbudget-loadgen"]),
        // For the micro-benchmarks in Benchmarks/, a package of their own that depends on this one.
        .library(name: "PortBudgetCore", targets: ["PortBudgetCore"]),
        // The micro-benchmarks make their dump bytes with its encoders.
        .library(name: "PortBudgetTestSupport", targets: ["PortBudgetTestSupport"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        // libmnl plus the sock_diag UAPI, with a shim for what Swift cannot import.
        .systemLibrary(
            name: "CMNL",
            pkgConfig: "libmnl",
            providers: [.apt(["libmnl-dev"])]
        ),
        // libbpf (Debian's libbpf-dev) linked statically, so the agent's only
        // new run-time dependencies are libelf and zlib; a small shim keeps
        // libbpf's own log lines for the one-line errors the agent prints.
        .target(
            name: "CLibBPF",
            linkerSettings: [.linkedLibrary(":libbpf.a"), .linkedLibrary("elf"), .linkedLibrary("z")]
        ),
        // Compiles the failure collector's BPF programs with the toolchain's
        // clang and embeds the object in the Linux layer.
        .plugin(name: "FailureProgramsPlugin", capability: .buildTool()),
        // libxcrypt's crypt_r, which verifies the bcrypt hashes of basic_auth_users.
        .systemLibrary(
            name: "CCrypt",
            providers: [.apt(["libcrypt-dev"])]
        ),
        // glibc's malloc.h (mallinfo2, malloc_trim), which the Glibc module does not import.
        .systemLibrary(name: "CMalloc"),
        // Pure: parsers of /proc text and netlink bytes, the census and its
        // diagnosis, the alert state machine, the exposition and check's text.
        // No I/O, so tests drive it with fixtures and synthetic bytes.
        .target(name: "PortBudgetCore"),
        // Thin Linux layer: the collectors (procfs files, SOCK_DIAG and
        // ctnetlink dumps via libmnl), network namespaces, cgroups, processes.
        .target(
            name: "PortBudgetLinux",
            dependencies: [
                "CMNL", "CLibBPF", "CMalloc", "PortBudgetCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            exclude: ["Failures/BPF"],
            plugins: ["FailureProgramsPlugin"]
        ),
        // What every command runs collections with, HTTP or not: the runner
        // (a collection off the caller's thread, with a deadline), the
        // coordinator that shares one collection among concurrent askers and
        // hands it to observers, and the textfile writer's service.
        .target(
            name: "PortBudgetAgent",
            dependencies: [
                "PortBudgetCore",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The exporter's HTTP side: serves the coordinator's exposition over SwiftNIO.
        .target(
            name: "PortBudgetServer",
            dependencies: [
                "PortBudgetCore", "PortBudgetAgent", "PortBudgetYAML", "CCrypt",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                // TLS for --web.config.file; already built for async-http-client.
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOHTTPCompression", package: "swift-nio-extras"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The YAML reader both configuration files use: errors name file, line and key.
        .target(name: "PortBudgetYAML", dependencies: [.product(name: "Yams", package: "Yams")]),
        // Blocking socket calls with explicit source addresses: the alert
        // delivery's pinned source ports, and the load generator's sockets.
        .target(name: "PortBudgetSockets"),
        // The in-agent alert evaluator: YAML rules, state kept across
        // collections it observes, delivery to Alertmanager that survives port exhaustion.
        .target(
            name: "PortBudgetAlerting",
            dependencies: [
                "PortBudgetCore", "PortBudgetSockets", "PortBudgetYAML",
                .product(name: "Yams", package: "Yams"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // For tests only (as swift-nio keeps NIOTestUtils out of NIOCore): encoders
        // that lay out netlink replies as the kernel does, so decoders are tested without one.
        .target(name: "PortBudgetTestSupport", dependencies: ["PortBudgetCore"]),
        // Real-socket load generator for the integration tests and the benchmark.
        .target(name: "PortBudgetLoad", dependencies: ["PortBudgetSockets"]),
        .executableTarget(
            name: "portbudget",
            dependencies: [
                "PortBudgetCore", "PortBudgetLinux", "PortBudgetAgent", "PortBudgetServer", "PortBudgetAlerting",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            // Nothing loads against the agent's own symbols, and keeping them
            // out of its dynamic symbol table (32,000 entries otherwise) saves
            // about a millisecond of every start: the Swift runtime's dladdr()
            // at start scans that table entry by entry.
            linkerSettings: [.unsafeFlags(["-Xlinker", "--no-export-dynamic"])],
            plugins: ["VersionConstant"]
        ),
        // The version constant, generated from the VERSION file at the root
        // (one source for --version, build_info, the .deb and the image tag).
        .executableTarget(name: "GenerateVersionConstant"),
        .plugin(
            name: "VersionConstant",
            capability: .buildTool(),
            dependencies: ["GenerateVersionConstant"]
        ),
        .executableTarget(
            name: "portbudget-loadgen",
            dependencies: ["PortBudgetLoad", "PortBudgetSockets", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // The benchmark orchestrator (populations in a private netns; check, serve,
        // ss and node_exporter measured against a bare libmnl dump). Glibc and
        // libmnl only, so its `floor` mode starts as fast as a C program would.
        .executableTarget(name: "portbudget-bench", dependencies: ["CMNL", "CLibBPF"],
                          exclude: ["Failures/hooks_floor.bpf.c"]),
        .testTarget(
            name: "PortBudgetCoreTests",
            dependencies: ["PortBudgetCore", "PortBudgetTestSupport"],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "PortBudgetServerTests",
            dependencies: [
                "PortBudgetCore", "PortBudgetAgent", "PortBudgetServer",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "PortBudgetAlertingTests",
            dependencies: ["PortBudgetCore", "PortBudgetAlerting", "PortBudgetYAML"]
        ),
        .testTarget(
            name: "PortBudgetIntegrationTests",
            // Logging: for the tests that drive a collector directly.
            dependencies: ["PortBudgetCore", "PortBudgetLinux", .product(name: "Logging", package: "swift-log")]
        ),
    ]
)

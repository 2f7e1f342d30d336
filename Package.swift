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
    ],
    targets: [
        // libmnl plus the sock_diag UAPI, with a shim for what Swift cannot import.
        .systemLibrary(
            name: "CMNL",
            pkgConfig: "libmnl",
            providers: [.apt(["libmnl-dev"])]
        ),
        // Pure: parsers of /proc text and netlink bytes, the accounting model,
        // report rendering. No I/O, so tests drive it with fixtures and synthetic bytes.
        .target(name: "PortBudgetCore"),
        // Thin Linux layer: reads procfs files and runs SOCK_DIAG dumps via libmnl.
        .target(
            name: "PortBudgetLinux",
            dependencies: [
                "CMNL", "PortBudgetCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // The exporter's HTTP side: serves the exposition over SwiftNIO, one
        // collection per scrape shared by concurrent scrapers.
        .target(
            name: "PortBudgetServer",
            dependencies: [
                "PortBudgetCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOHTTPCompression", package: "swift-nio-extras"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The in-agent alert evaluator: YAML rules, state kept across
        // collections, delivery to Alertmanager that survives port exhaustion.
        .target(
            name: "PortBudgetAlerting",
            dependencies: [
                "PortBudgetCore", "PortBudgetServer", "PortBudgetLoad",
                .product(name: "Yams", package: "Yams"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Real-socket load generator shared by the integration tests and the benchmark.
        .target(name: "PortBudgetLoad"),
        .executableTarget(
            name: "portbudget",
            dependencies: [
                "PortBudgetCore", "PortBudgetLinux", "PortBudgetServer", "PortBudgetAlerting",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
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
            dependencies: ["PortBudgetLoad", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // The benchmark orchestrator (populations in a private netns; check, serve,
        // ss and node_exporter measured against a bare libmnl dump). Glibc and
        // libmnl only, so its `floor` mode starts as fast as a C program would.
        .executableTarget(name: "portbudget-bench", dependencies: ["CMNL"]),
        .testTarget(
            name: "PortBudgetCoreTests",
            dependencies: ["PortBudgetCore"],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "PortBudgetServerTests",
            dependencies: [
                "PortBudgetCore", "PortBudgetServer",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "PortBudgetAlertingTests",
            dependencies: ["PortBudgetCore", "PortBudgetAlerting"]
        ),
        .testTarget(
            name: "PortBudgetIntegrationTests",
            dependencies: ["PortBudgetCore", "PortBudgetLinux"]
        ),
    ]
)

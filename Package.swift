// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "portbudget",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "portbudget", targets: ["portbudget"]),
        .executable(name: "portbudget-loadgen", targets: ["portbudget-loadgen"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
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
        // Real-socket load generator shared by the integration tests and the benchmark.
        .target(name: "PortBudgetLoad"),
        .executableTarget(
            name: "portbudget",
            dependencies: [
                "PortBudgetCore", "PortBudgetLinux",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "portbudget-loadgen",
            dependencies: ["PortBudgetLoad", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(
            name: "PortBudgetCoreTests",
            dependencies: ["PortBudgetCore"],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "PortBudgetIntegrationTests",
            dependencies: ["PortBudgetCore", "PortBudgetLinux"]
        ),
    ]
)

// swift-tools-version:6.1
// Micro-benchmarks for portbudget's hot path, kept out of the main package so
// its build stays lean. Run from this folder:
//   swift package --scratch-path ../.build-microbench benchmark
import Foundation
import PackageDescription

// A path dependency is named after its folder, which is whatever the clone is called.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent

let package = Package(
    name: "portbudget-benchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", exact: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "CensusBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "PortBudgetCore", package: root),
                .product(name: "PortBudgetTestSupport", package: root),
            ],
            path: "Benchmarks/CensusBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)

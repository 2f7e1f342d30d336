import Glibc

// portbudget-bench: one mode per folder — Sockets/ (the default: check,
// serve, ss and node_exporter against the floor over growing populations),
// Floor/, Soak/, TLS/, Failures/, Conntrack/ and Namespaces/ (with the flood, `namespaces --flood`); Shared/ holds what they share.

let arguments = Array(CommandLine.arguments.dropFirst())
do {
    if arguments.first == "floor" {
        try FloorDump.main()
    } else if arguments.first == "soak" {
        installSignalHandlers()
        try Soak.main(Array(arguments.dropFirst()))
    } else if arguments.first == "conntrack-floor" {
        try ConntrackFloor.main()
    } else if arguments.first == "namespaces-floor" {
        try NamespacesFloor.main()
    } else if arguments.first == "namespaces", arguments.contains("--flood") {
        installSignalHandlers()  // a tenant's namespace flood beside serve --all-namespaces
        try FloodBench(Array(arguments.dropFirst().filter { $0 != "--flood" })).run()
    } else if arguments.first == "namespaces" {
        installSignalHandlers()  // every namespace, against an ss loop and a bare per-namespace dump
        try NamespacesBench(Array(arguments.dropFirst())).run()
    } else if arguments.first == "failures" {
        installSignalHandlers()  // the failure collector's cost on the paths it watches
        try FailuresBench(Array(arguments.dropFirst())).run()
    } else if arguments.first == "tls" {
        installSignalHandlers()  // serve's scrape latency over TLS with keep-alive against plain HTTP
        try TLSBench(Array(arguments.dropFirst())).run()
    } else if arguments.first == "conntrack" {
        installSignalHandlers()  // the SNAT census against conntrack -L and a bare dump
        try ConntrackBench(Array(arguments.dropFirst())).run()
    } else {
        installSignalHandlers()
        try runSocketsBench(try SocketsBenchOptions(Array(arguments.drop { $0 == "run" })))
    }
} catch {
    log("\(error)")
    exit(1)
}

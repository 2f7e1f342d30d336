import Glibc

/// portbudget-bench: builds socket populations in a private network
/// namespace and measures, interleaved, `portbudget check`, `portbudget
/// serve`, `ss`, node_exporter's tcpstat collector and a bare libmnl dump
/// (the floor). `portbudget-bench floor` is that bare dump on its own.
struct Options {
    var sizes = [10_000, 100_000, 200_000, 1_000_000]
    var rounds = 5
    var binDir: String
    var doc: String? = nil
    var results = "bench-results/latest.md"
    var netns = "pbbench-\(getpid())"
    var command: String
    /// Build the largest population, then hold it until stdin closes (for profiling).
    var hold = false

    static let usage = """
        usage: portbudget-bench [--sizes N,N,...] [--rounds N] [--bin-dir DIR] [--doc FILE] [--netns NAME]
               portbudget-bench --hold --sizes N --netns NAME   (build, then hold until stdin closes)
               portbudget-bench floor
               portbudget-bench soak [--seconds N] [--period N]   (serve under scrapes and abuse, over time)
               portbudget-bench tls [--scrapes N] [--rounds N]   (scrape latency over TLS vs plain HTTP, see TLSBench.swift)
               portbudget-bench conntrack [--entries N,N,...] [--rounds N]   (the SNAT census, see ConntrackBench.swift)
               portbudget-bench failures [--rounds N] [--seconds S] [--ci]   (the failure collector's overhead)
               portbudget-bench namespaces [--namespaces N] [--connections N] [--host-sockets N] [--rounds N]
                                           (every network namespace, see NamespacesBench.swift)
        Needs root (a private network namespace). Defaults: --sizes 10000,100000,200000,1000000 --rounds 5.
        """

    init(_ args: [String]) throws {
        binDir = Options.ownDirectory()
        command = "portbudget-bench " + args.joined(separator: " ")
        var arguments = BenchArguments(args, usage: Options.usage)
        while let flag = arguments.next() {
            switch flag {
            case "--sizes":
                let list = try arguments.value().split(separator: ",").map { Int($0.filter { $0 != "_" && $0 != "k" }) }
                guard !list.isEmpty, list.allSatisfy({ ($0 ?? 0) > 0 }) else { throw BenchError("--sizes takes N,N,...") }
                sizes = list.map { $0! }.sorted()
            case "--rounds":
                guard let n = Int(try arguments.value()), n >= 1 else { throw BenchError("--rounds takes a number ≥ 1") }
                rounds = n
            case "--bin-dir": binDir = try arguments.value()
            case "--doc": doc = try arguments.value()
            case "--results": results = try arguments.value()
            case "--netns": netns = try arguments.value()
            case "--command": command = try arguments.value()
            case "--hold": hold = true
            case "-h", "--help": arguments.help()
            default: throw arguments.unknown
            }
        }
    }

    static func ownDirectory() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let path = n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "./x"
        return String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)])
    }
}

func machineDescription() -> String {
    var u = utsname()
    uname(&u)
    let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    let cpu = (readFile("/proc/cpuinfo") ?? "").split(separator: "\n")
        .first { $0.hasPrefix("model name") }.flatMap { $0.split(separator: ":").last }
        .map { $0.trimmingPrefix(" ") } ?? "unknown CPU"
    let memKiB = (readFile("/proc/meminfo") ?? "").split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
        .flatMap { $0.split(separator: " ").dropFirst().first }.flatMap { Int($0) } ?? 0
    return "\(sysconf(Int32(_SC_NPROCESSORS_ONLN))) CPUs (\(cpu)), \(memKiB / 1024 / 1024) GiB, Linux \(release)"
}

func utcDate() -> String {
    var t = time(nil)
    var tmv = tm()
    gmtime_r(&t, &tmv)
    var buffer = [CChar](repeating: 0, count: 64)
    let n = strftime(&buffer, buffer.count, "%Y-%m-%d %H:%M UTC", &tmv)
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Replaces the generated part of `path` (between the markers), or appends it.
func updateDoc(_ path: String, _ body: String, marker: String = "portbudget-bench") throws {
    let begin = "<!-- \(marker):begin -->", end = "<!-- \(marker):end -->"
    let block = begin + "\n" + body + end
    let old = readFile(path) ?? ""
    if let b = old.firstRange(of: begin), let e = old.firstRange(of: end), b.lowerBound < e.lowerBound {
        try writeFile(path, String(old[..<b.lowerBound]) + block + String(old[e.upperBound...]))
    } else {
        try writeFile(path, old + (old.isEmpty ? "" : "\n") + block + "\n")
    }
}

func runBenchmark(_ options: Options) throws {
    guard geteuid() == 0 else { throw BenchError("needs root: it makes a private network namespace") }
    let portbudget = options.binDir + "/portbudget"
    let loadgen = options.binDir + "/portbudget-loadgen"
    for binary in [portbudget, loadgen] where access(binary, X_OK) != 0 {
        throw BenchError("\(binary) not found (build with `swift build -c release`)")
    }
    let bench = options.binDir + "/portbudget-bench"

    try Namespace.create(options.netns)
    try Namespace.sysctl("net.core.somaxconn", "65535")
    if (Int(Namespace.readSysctl("net.ipv4.tcp_max_tw_buckets")) ?? 0) < 110_000 {
        try Namespace.sysctl("net.ipv4.tcp_max_tw_buckets", "131072")
    }
    log("namespace \(options.netns): port range \(Namespace.readSysctl("net.ipv4.ip_local_port_range")), "
        + "tcp_tw_reuse \(Namespace.readSysctl("net.ipv4.tcp_tw_reuse"))")

    var probes = Probes(bench: bench, portbudget: portbudget)
    var population: Population? = nil
    defer {
        probes.nodeExporter?.stop()
        probes.serve?.stop()
        population?.shutdown()
        terminateChildren()
        Namespace.delete()
    }
    probes.nodeExporter = try Probes.startNodeExporter(port: 19100)
    probes.serve = try Probes.startServe(portbudget: portbudget, port: 19958)
    population = try Population(loadgen: loadgen)

    if options.hold {
        try population!.grow(to: options.sizes.last!)
        writeAll(1, "holding \(population!.connections) connections, \(population!.udp) UDP in \(options.netns); close stdin to end\n")
        var byte: UInt8 = 0
        while read(0, &byte, 1) > 0 {}
        return
    }
    var results: [SizeResult] = []
    let scratch = "/tmp/portbudget-bench-\(getpid()).json"
    defer { unlink(scratch) }
    for size in options.sizes {
        let start = monotonicSeconds()
        try population!.grow(to: size)
        log("built \(size): \(population!.connections) connections, \(population!.udp) UDP, "
            + "\(Namespace.timeWaitCount()) TIME_WAIT, \(population!.generatorCount) generators "
            + "in \(Format.fixed(monotonicSeconds() - start, 1)) s")
        try probes.warmUp(scratch: scratch)
        var result = SizeResult(requested: size, connections: population!.connections, timeWait: 0, udp: population!.udp)
        var tw: [Double] = []
        for round in 0..<options.rounds {
            try population!.topUpTimeWait()
            tw.append(Double(Namespace.timeWaitCount()))
            // Rotate the order each round so drift (TIME_WAIT expiring, caches) falls on every tool alike.
            let tools = probes.tools
            for k in 0..<tools.count {
                let tool = tools[(k + round) % tools.count]
                result.samples[tool, default: []].append(try probes.measure(tool))
            }
        }
        result.timeWait = Int(median(tw) ?? 0)
        results.append(result)
        log("measured \(Format.thousands(result.sockets)) sockets: floor \(Format.ms(result.wall(.floor))) ms, "
            + "check \(Format.ms(result.wall(.check))) ms (\(Format.mib(result.rssMiB(.check))) MB), "
            + "ss \(Format.ms(result.wall(.ss))) ms, tcpstat \(Format.ms(result.tcpstat)) ms, "
            + "serve \(Format.ms(result.wall(.serve))) ms")
        if population!.exhausted != nil { break }
    }

    var report = Report(results: results, rounds: options.rounds, command: options.command,
                        machine: machineDescription(), date: utcDate())
    if let why = population!.exhausted {
        report.notes.append("The largest population is what this machine held: \(why)")
    }
    if probes.serve == nil { report.notes.append("`portbudget serve` was not in this build: its column is empty.") }
    let text = report.markdown
    writeAll(1, "\n" + text)
    let dir = String(options.results[..<(options.results.lastIndex(of: "/") ?? options.results.startIndex)])
    if !dir.isEmpty { mkdir(dir, 0o755) }
    try writeFile(options.results, text)
    if let doc = options.doc { try updateDoc(doc, text) }
}

func installSignalHandlers() {
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        signal(sig) { _ in
            terminateChildren()
            NetnsRegistry.deleteAll()
            Namespace.delete()
            _exit(130)
        }
    }
    signal(SIGPIPE, SIG_IGN)
}

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
    } else if arguments.first == "namespaces" {
        installSignalHandlers()  // issue 9: every namespace, against an ss loop and a bare per-namespace dump
        try NamespacesBench(Array(arguments.dropFirst())).run()
    } else if arguments.first == "failures" {
        installSignalHandlers()  // the failure collector's cost on the paths it watches
        try FailuresBench(Array(arguments.dropFirst())).run()
    } else if arguments.first == "tls" {
        installSignalHandlers()  // serve's scrape latency over TLS with keep-alive against plain HTTP
        try TLSBench(Array(arguments.dropFirst())).run()
    } else if arguments.first == "conntrack" {
        installSignalHandlers()  // issue 11: the SNAT census against conntrack -L and a bare dump
        try ConntrackBench(Array(arguments.dropFirst())).run()
    } else {
        installSignalHandlers()
        try runBenchmark(try Options(Array(arguments.drop { $0 == "run" })))
    }
} catch {
    log("\(error)")
    exit(1)
}

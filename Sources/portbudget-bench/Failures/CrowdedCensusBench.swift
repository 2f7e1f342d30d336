import CMNL  // keeps SOCK_STREAM unambiguous in this target (see HTTP.swift)
import Glibc

/// `portbudget-bench failures --crowded-census N`: what one namespace's
/// census costs while another namespace holds N sockets bound before
/// connect() that the failure programs remember. `serve --netns` watches
/// two namespaces: the bench's own ("quiet": 10 such sockets) and a
/// "crowded" one (`unshare -n`, held by its listener). The quiet
/// namespace's `sockdiag` collector duration — its census, map reads
/// included — is sampled once per collection with the crowd empty, with N
/// plain connect()s in it (which every dump walks past), and, in a fresh
/// crowd, with N sockets bound before connect(), opened in steps each once
/// the agent has collected the last (so maps that grow with use have
/// grown). Run it with `--bin-dir` of another build to compare agents.
struct CrowdedCensusBench {
    var crowd: Int
    var samples: Int
    var binDir: String

    static let agentPort: UInt16 = 9959
    /// Sockets one load generator holds: below the machine's descriptor limit.
    static let socketsPerGenerator = 15_000
    /// Sockets bound before connect() in the quiet namespace.
    static let quietSockets = 10

    /// What one crowd's run measured.
    struct Phase {
        var empty: Double?
        var full: Double
        var made: Int
        var exact: Double?
    }

    func run() throws {
        guard FailuresBench.unshareNetwork() == 0 else { throw BenchError("unshare(CLONE_NEWNET): errno \(errno) (needs root)") }
        guard try Child.run(["ip", "link", "set", "lo", "up"]).status == 0 else { throw BenchError("ip link set lo up failed") }
        try writeFile("/proc/sys/net/ipv4/ip_local_port_range", "1024 65535\n")
        let quietListener = try FailuresBench.tcpListener(port: 7000)
        FailuresBench.startAcceptor(quietListener)
        var quiet: [Int32] = []
        defer { quiet.forEach { close($0) } }
        for _ in 0..<Self.quietSockets { quiet.append(try Self.boundClient(to: 7000)) }

        // The crowd's sockets cost every namespace's dump (the kernel walks
        // one host-wide hash), remembered or not: plain connect()s first,
        // so the difference bind-before-connect makes is the maps' alone.
        let plain = try phase(bound: false, measureEmpty: true)
        let bound = try phase(bound: true, measureEmpty: false)
        func row(_ what: String, _ seconds: Double, against base: Double?) -> String {
            "| \(what) | \(Format.ms(seconds)) ms" + (base.map { " (\(FailuresBench.percent(seconds / max($0, 1e-9))))" } ?? "") + " |\n"
        }
        writeAll(1, "\nThe census of a quiet namespace (the sockdiag collector: its dumps and its \(Self.quietSockets) "
                 + "sockets bound before connect()) beside a crowded one, median of \(samples) collections; "
                 + "\(machineDescription())\n\n| the crowded namespace holds | census of the quiet namespace |\n|---|---:|\n"
                 + row("nothing", plain.empty ?? 0, against: nil)
                 + row("\(Format.thousands(plain.made)) connect()ed sockets", plain.full, against: plain.empty)
                 + row("\(Format.thousands(bound.made)) sockets bound before connect(), remembered", bound.full, against: plain.full)
                 + "\nThe crowded namespace's capacities exact with its sockets remembered: "
                 + (bound.exact.map { $0 == 1 ? "yes" : "no" } ?? "?") + "\n")
    }

    /// A crowded namespace of its own (`unshare -n`, held by its listener)
    /// watched beside this one by a `serve` of its own; `crowd` sockets
    /// made in it, bound before connect() or not.
    func phase(bound: Bool, measureEmpty: Bool) throws -> Phase {
        let loadgen = binDir + "/portbudget-loadgen"
        let setup = "ip link set lo up && sysctl -qw net.ipv4.ip_local_port_range='1024 65535' net.core.somaxconn=65535"
            + " && exec \"$0\" listen --at 127.0.0.1:9000 --accept none --backlog 65535"
        let crowded = try Child.spawn(["unshare", "-n", "sh", "-c", setup, loadgen], stdinPipe: true, stdout: .pipe)
        defer { crowded.finish() }
        guard crowded.readLine(timeout: 30) != nil else { throw BenchError("the crowded namespace's listener did not start") }
        let quietName = "pid:\(getpid())", crowdedName = "pid:\(crowded.pid)"
        let agent = try Child.spawn([binDir + "/portbudget", "serve", "--netns", quietName, "--netns", crowdedName,
                                     "--collection-interval", "1s", "--collection-cpu-budget", "0",
                                     "--listen", "127.0.0.1:\(Self.agentPort)"], quietStderr: true)
        defer { agent.terminate(); _ = try? agent.wait() }
        _ = try awaitMetrics("the agent's first collection") { $0.contains(#"collector="failures""#) ? true : nil }
        let empty = measureEmpty ? try sampleQuietCensus(quietName) : nil

        // In steps that each fill half of the map they land in, so maps that
        // grow with use (fourfold from 1,024) have grown before the next.
        var generators: [Child] = []
        defer { generators.forEach { $0.finish() } }
        var made = 0
        for target in (bound ? [600, 2_500, 8_500, crowd] : [crowd]) where target > made && target <= crowd {
            while made < target {
                let count = min(target - made, Self.socketsPerGenerator - (made % Self.socketsPerGenerator))
                let generator = try Child.spawn(["nsenter", "--net=/proc/\(crowded.pid)/ns/net", loadgen, "connect",
                                                 "--to", "127.0.0.1:9000", "--count", "\(count)", "--hold"]
                                                + (bound ? ["--bind", "127.0.0.1:0"] : []),
                                                stdinPipe: true, stdout: .pipe)
                generators.append(generator)
                guard let line = generator.readLine(timeout: 120), line.contains("\"made\":\(count)") else {
                    throw BenchError("the crowd's load generator did not make \(count) connections")
                }
                made += count
            }
            if bound {
                try awaitRemembered(crowdedName, made)
                usleep(2_500_000)  // two more collections: a map grown at the last one has taken its entries over
            }
        }
        log("failures bench: \(made) \(bound ? "sockets bound before connect()" : "connect()ed sockets") in the crowded namespace")
        let full = try sampleQuietCensus(quietName)
        let exact = ExpositionValue.first(try metrics(), "portbudget_tcp_destination_capacity_exact", netns: crowdedName)
        return Phase(empty: empty, full: full, made: made, exact: exact)
    }

    /// The quiet namespace's census duration, median of `samples` collections.
    func sampleQuietCensus(_ netns: String) throws -> Double {
        var seen: [Double] = []
        var last: Double?
        let deadline = monotonicSeconds() + Double(samples) * 3 + 30
        while seen.count < samples && monotonicSeconds() < deadline {
            if let value = ExpositionValue.first(try metrics(), "portbudget_scrape_collector_duration_seconds", netns: netns,
                                                 also: #"collector="sockdiag""#), value != last {
                seen.append(value)
                last = value
            }
            usleep(250_000)
        }
        guard let median = median(seen) else { throw BenchError("no census duration of \(netns) in the agent's metrics") }
        return median
    }

    func awaitRemembered(_ netns: String, _ count: Int) throws {
        _ = try awaitMetrics("\(count) remembered sockets in \(netns)") {
            ExpositionValue.first($0, "portbudget_tcp_bound_before_connect_ports", netns: netns,
                                  also: #"evidence="socket_cookie""#) == Double(count) ? true : nil
        }
    }

    func metrics() throws -> String {
        try HTTP.get(port: Self.agentPort, path: "/metrics", timeout: 10).body
    }

    func awaitMetrics<T>(_ what: String, timeout: Double = 120, _ probe: (String) -> T?) throws -> T {
        let deadline = monotonicSeconds() + timeout
        while monotonicSeconds() < deadline {
            if let body = try? metrics(), let found = probe(body) { return found }
            usleep(200_000)
        }
        throw BenchError("timed out waiting for \(what)")
    }

    /// bind(127.0.0.1, 0), then connect() to the quiet listener: a port bind() took.
    static func boundClient(to port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var source = FailuresBench.loopback(0)
        var destination = FailuresBench.loopback(port)
        let bound = withUnsafePointer(to: &source) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        let connected = withUnsafePointer(to: &destination) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, connected == 0 else { throw BenchError("bind-before-connect to 127.0.0.1:\(port): errno \(errno)") }
        return fd
    }
}

/// One sample's value from the exposition: the series `name` whose labels
/// include `netns="…"` and `also`.
enum ExpositionValue {
    static func first(_ metrics: String, _ name: String, netns: String, also: String? = nil) -> Double? {
        for line in metrics.split(separator: "\n") where line.hasPrefix(name + "{") && line.contains(#"netns="\#(netns)""#) {
            if let also, !line.contains(also) { continue }
            return line.split(separator: " ").last.flatMap { Double($0) }
        }
        return nil
    }
}

import CLibBPF
import CMNL  // keeps SOCK_STREAM and friends unambiguous in this target (see HTTP.swift)
import Glibc

/// `portbudget-bench failures`: what the failure collector's programs cost
/// on the paths they watch, measured interleaved in one run, in a private
/// network namespace. Workloads: loopback TCP connect()+close() (RST, so no
/// TIME_WAIT piles up), UDP sendto() on an already-bound socket, and
/// getpid() (watched by nothing). Variants: no collector; empty programs on
/// the collector's two BTF tracepoints (the floor: what the kernel charges
/// for running any program there; loaded by this process from the object
/// `--hooks-floor-object` names, which scripts/bench compiles); `serve` with
/// the collector (BTF tracepoints only); `serve --failure-syscall-hooks`. Also the
/// agent's CPU while idle, and the counts at the end, which must be zero:
/// every call in the run succeeded. Each workload is timed two ways: calls
/// per wall-clock second, and CPU time per call on the calling thread — the
/// second is what the programs add to, and holds still on a shared machine
/// where another process's load moves the first. Ratios are taken per round
/// (a variant against the round's run without the collector) and their
/// median reported, so drift between rounds cancels.
struct FailuresBench {
    var rounds = 9
    var seconds = 0.5
    var binDir = executableDirectory()
    var hooksFloorObject: String?
    /// `--crowded-census N`: measure a census beside another namespace's N
    /// remembered sockets instead (`CrowdedCensusBench`).
    var crowdedCensus: Int?

    static let usage = """
        usage: portbudget-bench failures [--rounds N] [--seconds S] [--ci] [--bin-dir DIR] [--hooks-floor-object FILE]
               portbudget-bench failures --crowded-census N [--rounds N] [--ci] [--bin-dir DIR]
        Defaults: --rounds 9 --seconds 0.5 (per workload, variant and round); --ci: 2 rounds of 0.3 s.
        --crowded-census N: one namespace's census while another holds N sockets bound before connect()
        (up to 60,000; --rounds collections sampled, 15 by default; --ci: 4,000 sockets, 5 collections).
        """

    enum Variant: String, CaseIterable {
        case without = "without collector"
        case hooksFloor = "empty programs, same hooks"
        case collector = "collector"
        case syscallHooks = "collector + syscall hooks"
    }

    enum Workload: String, CaseIterable {
        case connectClose = "TCP connect()+close() /s"
        case udpSend = "UDP sendto() on a bound socket /s"
        case getpid = "getpid() /s"
    }

    init(_ args: [String]) throws {
        var arguments = BenchArguments(args, usage: Self.usage)
        while let flag = arguments.next() {
            switch flag {
            case "--rounds":
                guard let n = Int(try arguments.value()), n >= 1 else { throw BenchError("--rounds takes a number ≥ 1") }
                rounds = n
            case "--seconds":
                guard let s = Double(try arguments.value()), s > 0, s <= 60 else { throw BenchError("--seconds takes 0 < S ≤ 60") }
                seconds = s
            case "--ci": (rounds, seconds, ci) = (2, 0.3, true)
            case "--crowded-census":
                guard let n = Int(try arguments.value()), n >= 1, n <= 60_000 else {
                    throw BenchError("--crowded-census takes 1 to 60000 (the crowded range holds 64,512 ports)")
                }
                crowdedCensus = n
            case "--bin-dir": binDir = try arguments.value()
            case "--hooks-floor-object": hooksFloorObject = try arguments.value()
            case "-h", "--help": arguments.help()
            default: throw arguments.unknown
            }
        }
        roundsGiven = args.contains("--rounds")
    }

    var ci = false
    var roundsGiven = false

    func run() throws {
        if let crowd = crowdedCensus {
            try CrowdedCensusBench(crowd: ci ? min(crowd, 4_000) : crowd,
                                   samples: roundsGiven ? rounds : ci ? 5 : 15, binDir: binDir).run()
            return
        }
        guard Self.unshareNetwork() == 0 else { throw BenchError("unshare(CLONE_NEWNET): errno \(errno) (needs root)") }
        guard try Child.run(["ip", "link", "set", "lo", "up"]).status == 0 else { throw BenchError("ip link set lo up failed") }
        try writeFile("/proc/sys/net/ipv4/ip_local_port_range", "1024 65535\n")
        let listener = try Self.tcpListener(port: 7000)
        Self.startAcceptor(listener)
        let (sender, receiverPort) = try Self.udpPair()

        let variants = Variant.allCases.filter { $0 != .hooksFloor || hooksFloorObject != nil }
        var rates: [Variant: [Workload: [Double]]] = [:]
        var cpuPerCall: [Variant: [Workload: [Double]]] = [:]
        var idleCPU: [Variant: [Double]] = [:]
        var countedAtEnd: [Variant: Int] = [:]
        for round in 0..<rounds {
            // Interleaved: each round starts with a different variant.
            let order = variants.indices.map { variants[($0 + round) % variants.count] }
            for variant in order {
                let floor = variant == .hooksFloor ? try EmptyPrograms(hooksFloorObject ?? "") : nil
                defer { withExtendedLifetime(floor) {} }
                let agent = try start(variant)
                defer { agent?.terminate(); _ = try? agent?.wait() }
                let cpuBefore = agent.map { Self.cpuSeconds($0.pid) } ?? 0
                let idleStart = monotonicSeconds()
                usleep(UInt32(seconds * 1e6))
                if let agent { idleCPU[variant, default: []].append((Self.cpuSeconds(agent.pid) - cpuBefore) / (monotonicSeconds() - idleStart)) }
                for workload in Workload.allCases {
                    let (rate, cpu) = try measure(workload, sender: sender, receiverPort: receiverPort)
                    rates[variant, default: [:]][workload, default: []].append(rate)
                    cpuPerCall[variant, default: [:]][workload, default: []].append(cpu)
                }
                if let agent, round == rounds - 1 { countedAtEnd[variant] = try Self.failuresCounted() }
                _ = agent
            }
            log("failures bench: round \(round + 1)/\(rounds) done")
        }

        // Per round: the variant's figure over the same round's figure without the collector.
        func pairedRatio(_ table: [Variant: [Workload: [Double]]], _ variant: Variant, _ workload: Workload) -> Double {
            let base = table[.without]?[workload] ?? [], with = table[variant]?[workload] ?? []
            return median(zip(with, base).filter { $0.1 > 0 }.map { $0.0 / $0.1 }) ?? 0
        }
        var out = "| workload | " + variants.map(\.rawValue).joined(separator: " | ") + " |\n"
        out += "|---|" + String(repeating: "---:|", count: variants.count) + "\n"
        for workload in Workload.allCases {
            out += "| \(workload.rawValue) | " + variants.map { variant in
                let m = median(rates[variant]?[workload] ?? []) ?? 0
                return variant == .without ? Format.thousands(Int(m))
                    : "\(Format.thousands(Int(m))) (\(Self.percent(pairedRatio(rates, variant, workload))))"
            }.joined(separator: " | ") + " |\n"
            out += "| \(workload.rawValue.replacing(" /s", with: "")): CPU ns per call | " + variants.map { variant in
                let m = median(cpuPerCall[variant]?[workload] ?? []) ?? 0
                let ns = m >= 100 ? "\(Int(m.rounded()))" : "\((m * 10).rounded() / 10)"
                return variant == .without ? ns : "\(ns) (\(Self.percent(pairedRatio(cpuPerCall, variant, workload))))"
            }.joined(separator: " | ") + " |\n"
        }
        let dashes = String(repeating: "– | ", count: variants.count - 2)
        out += "| agent CPU while idle | " + dashes + [Variant.collector, .syscallHooks].map {
            Self.percent(median(idleCPU[$0] ?? []) ?? 0) + " of a core"
        }.joined(separator: " | ") + " |\n"
        out += "| failures counted during the run (expected 0) | " + dashes + [Variant.collector, .syscallHooks].map {
            countedAtEnd[$0].map(String.init) ?? "?"
        }.joined(separator: " | ") + " |\n"
        writeAll(1, "\nFailure collector overhead, medians of \(rounds) interleaved rounds of \(seconds) s per workload "
                 + "(in brackets: the median per-round ratio to the run without the collector; rate ≥ 98 % and CPU per "
                 + "call ≤ 102 % meet the 2 % goal); \(machineDescription())\n\n" + out)
        if countedAtEnd.values.contains(where: { $0 != 0 }) { throw BenchError("the collector counted failures that did not happen") }
    }

    /// `serve` with the variant's programs, in this namespace, once it reports them loaded.
    func start(_ variant: Variant) throws -> Child? {
        guard variant == .collector || variant == .syscallHooks else { return nil }
        let agent = try Child.spawn([binDir + "/portbudget", "serve", "--listen", "127.0.0.1:\(Self.agentPort)"]
                                    + (variant == .syscallHooks ? ["--failure-syscall-hooks"] : []), quietStderr: true)
        let deadline = monotonicSeconds() + 30
        while monotonicSeconds() < deadline {
            if let body = try? HTTP.get(port: Self.agentPort, path: "/metrics", timeout: 5).body,
               body.contains(#"portbudget_scrape_collector_success{collector="failures"}"#) {
                guard body.contains(#"portbudget_scrape_collector_success{collector="failures"} 1"#) else {
                    throw BenchError("serve could not load the failure collector (run as root)")
                }
                return agent
            }
            usleep(100_000)
        }
        throw BenchError("serve did not answer on 127.0.0.1:\(Self.agentPort) within 30 s")
    }

    static let agentPort: UInt16 = 9958

    static func failuresCounted() throws -> Int {
        let body = try HTTP.get(port: agentPort, path: "/metrics", timeout: 10).body
        return body.split(separator: "\n").filter { $0.hasPrefix("portbudget_port_allocation_failures_total{") }
            .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }.reduce(0) { $0 + Int($1) }
    }

    /// Calls per wall-clock second, and CPU nanoseconds per call on this thread.
    func measure(_ workload: Workload, sender: Int32, receiverPort: UInt16) throws -> (rate: Double, cpuNanoseconds: Double) {
        let cpuStart = Self.threadCPUNanoseconds()
        let start = monotonicSeconds()
        let end = start + seconds
        var done = 0
        switch workload {
        case .connectClose:
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            while monotonicSeconds() < end {
                for _ in 0..<64 {
                    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                    setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
                    var address = Self.loopback(7000)
                    let rc = withUnsafePointer(to: &address) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                    }
                    close(fd)
                    guard rc == 0 else { throw BenchError("connect 127.0.0.1:7000: errno \(errno)") }
                }
                done += 64
            }
        case .udpSend:
            var address = Self.loopback(receiverPort)
            var byte: UInt8 = 0
            while monotonicSeconds() < end {
                for _ in 0..<256 {
                    let rc = withUnsafePointer(to: &address) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            sendto(sender, &byte, 1, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                        }
                    }
                    guard rc == 1 else { throw BenchError("sendto: errno \(errno)") }
                }
                done += 256
            }
        case .getpid:
            while monotonicSeconds() < end {
                // glibc no longer caches the pid: every call enters the kernel.
                for _ in 0..<4096 { _ = getpid() }
                done += 4096
            }
        }
        let wall = monotonicSeconds() - start
        return (Double(done) / wall, (Self.threadCPUNanoseconds() - cpuStart) / Double(max(done, 1)))
    }

    static func threadCPUNanoseconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) * 1e9 + Double(ts.tv_nsec)
    }

    /// unshare(CLONE_NEWNET), looked up at run time: Glibc declares it only under _GNU_SOURCE.
    static func unshareNetwork() -> Int32 {
        typealias Unshare = @convention(c) (Int32) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "unshare") else { return -1 }
        return unsafeBitCast(symbol, to: Unshare.self)(0x4000_0000)
    }

    static func loopback(_ port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        return address
    }

    static func tcpListener(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, 4)
        var address = loopback(port)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0, listen(fd, 4096) == 0 else { throw BenchError("listen 127.0.0.1:\(port): errno \(errno)") }
        return fd
    }

    /// Accepts and closes every connection, so the backlog never fills.
    static func startAcceptor(_ listener: Int32) {
        var thread = pthread_t()
        let context = UnsafeMutableRawPointer(bitPattern: Int(listener) + 1)
        pthread_create(&thread, nil, { raw in
            let fd = Int32(Int(bitPattern: raw) - 1)
            while true {
                let client = accept(fd, nil, nil)
                if client >= 0 { close(client) }
            }
        }, context)
    }

    /// A bound sender and a bound receiver whose queue simply overflows (drops, never blocks the sender).
    static func udpPair() throws -> (sender: Int32, receiverPort: UInt16) {
        let receiver = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        let sender = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        for (fd, port) in [(receiver, UInt16(7001)), (sender, UInt16(7002))] {
            var address = loopback(port)
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard rc == 0 else { throw BenchError("bind UDP 127.0.0.1:\(port): errno \(errno)") }
        }
        return (sender, 7001)
    }

    /// User + system CPU seconds of a process so far.
    static func cpuSeconds(_ pid: pid_t) -> Double {
        guard let stat = readFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func percent(_ ratio: Double) -> String {
        let value = (ratio * 1000).rounded() / 10
        return "\(value) %"
    }
}

/// Programs loaded and attached from an object file for as long as this
/// lives: the hooks' floor.
final class EmptyPrograms {
    private let object: OpaquePointer
    private var links: [OpaquePointer] = []

    init(_ path: String) throws {
        guard let object = bpf_object__open_file(path, nil) else {
            throw BenchError("opening \(path): errno \(errno) (scripts/bench compiles it)")
        }
        self.object = object
        let loaded = bpf_object__load(object)
        guard loaded == 0 else {
            bpf_object__close(object)
            throw BenchError("loading \(path): errno \(-loaded) (needs root)")
        }
        var program = bpf_object__next_program(object, nil)
        while let current = program {
            guard let link = bpf_program__attach(current) else {
                for link in links { bpf_link__destroy(link) }
                bpf_object__close(object)
                throw BenchError("attaching \(String(cString: bpf_program__name(current))): errno \(errno)")
            }
            links.append(link)
            program = bpf_object__next_program(object, current)
        }
    }

    deinit {
        for link in links { bpf_link__destroy(link) }
        bpf_object__close(object)
    }
}

import Glibc

/// `portbudget-bench namespaces`: the agent across every network namespace
/// (issue 9). A "host" namespace made by the benchmark holds a large
/// population (the agent runs in it, so it is the agent's own namespace) and
/// N `ip netns add` namespaces each hold C loopback connections. Measured,
/// interleaved over rounds in one run:
/// - the agent: one `serve --all-namespaces` scrape (when the build has it)
///   and `check --all-namespaces --json` as a whole process, with peak RSS;
/// - what a user would do today: `ip netns exec NS ss -tanH` over the same namespaces;
/// - the floor: `portbudget-bench namespaces-floor`, one SOCK_DIAG socket per
///   namespace made once, four dumps per namespace that only count.
/// Then the floor at several namespace counts (every diag dump walks the
/// host-wide socket hash, whatever namespace it asks about), and the agent's
/// scrape-to-scrape cost while namespaces are deleted and re-added.
struct NamespacesBench {
    var namespaces = 100
    var connections = 1000
    var hostSockets = 100_000
    var rounds = 5
    var growth: [Int] = []
    var churnRounds = 5
    var churnPerRound = 0
    var scrapesPerRound = 3
    /// When set, net.ipv4.tcp_child_ehash_entries (and udp_child_hash_entries)
    /// in the host namespace, so every member gets a hash table of its own
    /// instead of sharing the machine's (Linux 6.1+/6.2+).
    var childHash: Int? = nil
    var binDir = Options.ownDirectory()
    var prefix = "pbns\(getpid())"
    var results = "bench-results/namespaces.md"
    var doc: String? = nil
    var command: String

    /// Each member namespace's ephemeral range: 4,000 ports, so 1,000
    /// connections are 25% (ok) and other tools' tests running beside the
    /// benchmark never find one of these the worst namespace.
    static let range = (low: 40000, high: 43999)
    static let memberPort = 8080
    static let servePort: UInt16 = 19960
    static let marker = "portbudget-bench-namespaces"
    static let goalSS = 0.25, goalFloor = 1.3, goalRSSMiB = 48.0, goalChurn = 1.25

    static let usage = """
        usage: portbudget-bench namespaces [--namespaces N] [--connections N] [--host-sockets N] [--rounds N]
                                           [--growth N,N,...] [--churn-rounds N] [--churn N] [--scrapes N]
                                           [--child-ehash N] [--prefix NAME] [--bin-dir DIR] [--results FILE] [--doc FILE] [--ci]
        Defaults: 100 namespaces × 1,000 connections, 100,000 sockets in the host namespace, 5 rounds,
        floor growth at N/10, N/2 and N namespaces, 5 churn rounds replacing N/10 namespaces each, 3 scrapes per round.
        --child-ehash N: the members get TCP and UDP hash tables of their own (N buckets) instead of the host-wide ones.
        --ci: 5 namespaces × 50 connections, 2,000 host sockets, 2 rounds, 2 churn rounds (seconds, for the test suite).
        Needs root.
        """

    init(_ args: [String]) throws {
        command = "portbudget-bench namespaces " + args.joined(separator: " ")
        var arguments = BenchArguments(args, usage: Self.usage)
        func number(_ name: String, min: Int) throws -> Int {
            guard let n = Int(try arguments.value().filter { $0 != "_" && $0 != "," }), n >= min else {
                throw BenchError("\(name) takes a number ≥ \(min)")
            }
            return n
        }
        while let flag = arguments.next() {
            switch flag {
            case "--namespaces": namespaces = try number("--namespaces", min: 1)
            case "--connections": connections = try number("--connections", min: 1)
            case "--host-sockets": hostSockets = try number("--host-sockets", min: 1000)
            case "--rounds": rounds = try number("--rounds", min: 1)
            case "--churn-rounds": churnRounds = try number("--churn-rounds", min: 0)
            case "--churn": churnPerRound = try number("--churn", min: 1)
            case "--scrapes": scrapesPerRound = try number("--scrapes", min: 1)
            case "--growth":
                let list = try arguments.value().split(separator: ",").map { Int($0) }
                guard !list.isEmpty, list.allSatisfy({ ($0 ?? 0) >= 1 }) else { throw BenchError("--growth takes N,N,...") }
                growth = list.map { $0! }
            case "--ci":
                namespaces = 5; connections = 50; hostSockets = 2000; rounds = 2; churnRounds = 2; scrapesPerRound = 2
            case "--child-ehash": childHash = try number("--child-ehash", min: 128)
            case "--prefix": prefix = try arguments.value()
            case "--bin-dir": binDir = try arguments.value()
            case "--results": results = try arguments.value()
            case "--doc": doc = try arguments.value()
            case "--command": command = try arguments.value()
            case "-h", "--help": arguments.help()
            default: throw arguments.unknown
            }
        }
        guard connections < Self.range.high - Self.range.low else {
            throw BenchError("--connections must stay below the members' \(Self.range.high - Self.range.low + 1)-port range")
        }
        if growth.isEmpty { growth = [max(1, namespaces / 10), max(1, namespaces / 2), namespaces] }
        growth = Array(Set(growth.map { min($0, namespaces) } + [namespaces])).sorted()
        if churnPerRound == 0 { churnPerRound = max(1, namespaces / 10) }
        churnPerRound = min(churnPerRound, namespaces)
    }

    enum Tool: String, CaseIterable {
        case floor, serve, check, ssLoop = "ss loop"
    }

    struct Measure {
        var wall: Double
        var cpu: Double?
        var rssKiB: Int?
    }

    // MARK: run

    func run() throws {
        guard geteuid() == 0 else { throw BenchError("needs root: it makes network namespaces") }
        let portbudget = binDir + "/portbudget", loadgen = binDir + "/portbudget-loadgen", bench = binDir + "/portbudget-bench"
        for binary in [portbudget, loadgen] where access(binary, X_OK) != 0 {
            throw BenchError("\(binary) not found (build with `swift build -c release`)")
        }
        NetnsRegistry.prepare()
        let hostName = prefix + "-host"
        let hostPath = "/run/netns/" + hostName
        try Namespace.create(hostName)  // this process's main thread now lives there
        try Namespace.sysctl("net.core.somaxconn", "65535")
        if (Int(Namespace.readSysctl("net.ipv4.tcp_max_tw_buckets")) ?? 0) < 110_000 {
            try Namespace.sysctl("net.ipv4.tcp_max_tw_buckets", "131072")
        }
        if let childHash {
            // Read by the kernel when `ip netns add` (started from here) makes each member.
            try Namespace.sysctl("net.ipv4.tcp_child_ehash_entries", "\(childHash)")
            if access("/proc/sys/net/ipv4/udp_child_hash_entries", F_OK) == 0 {
                try Namespace.sysctl("net.ipv4.udp_child_hash_entries", "\(max(256, childHash / 16))")
            }
        }
        let hostFD = open(hostPath, O_RDONLY | O_CLOEXEC)
        guard hostFD >= 0 else { throw BenchError("open \(hostPath): errno \(errno)") }
        let fleet = Fleet(prefix: prefix, loadgen: loadgen, connections: connections, hostFD: hostFD)
        var population: Population? = nil
        var floor: FloorProcess? = nil
        var serve: ScrapeTarget? = nil
        defer {
            serve?.stop()
            floor?.stop()
            fleet.removeAll()
            population?.shutdown()
            terminateChildren()
            Namespace.delete()
            close(hostFD)
        }

        var start = monotonicSeconds()
        population = try Population(loadgen: loadgen)
        try population!.grow(to: hostSockets)
        log("host namespace \(hostName): \(population!.connections) connections, \(population!.udp) UDP, "
            + "\(Namespace.timeWaitCount()) TIME_WAIT in \(Format.fixed(monotonicSeconds() - start, 1)) s")

        floor = try FloorProcess(bench: bench)
        try floor!.add(hostName, path: hostPath)

        // The hash walk: the floor per namespace as namespaces (and so the host-wide hash) grow.
        var walk: [WalkRow] = []
        for count in growth {
            start = monotonicSeconds()
            while fleet.members.count < count {
                let member = try fleet.add()
                try floor!.add(member.name, path: member.path)
            }
            log("\(count) namespaces × \(connections) connections in \(Format.fixed(monotonicSeconds() - start, 1)) s")
            try floor!.check(members: fleet.members.map(\.name), tcpEach: 2 * connections + 1)
            var row = WalkRow(namespaces: count)
            for _ in 0..<rounds {
                try population!.topUpTimeWait()
                let dump = try floor!.dump()
                row.memberSeconds.append(dump.perNamespace.filter { $0.name != hostName }.map(\.seconds).reduce(0, +) / Double(count))
                row.hostSeconds.append(dump.perNamespace.first { $0.name == hostName }?.seconds ?? 0)
                row.allSeconds.append(dump.seconds)
                row.tcpSockets.append(Double(dump.perNamespace.map(\.tcp).reduce(0, +)))
                row.hashSockets.append(Double(Self.hostWideTCP()))
            }
            log("floor at \(count) namespaces: \(Format.ms(median(row.memberSeconds))) ms per member namespace, "
                + "host \(Format.ms(median(row.hostSeconds))) ms, \(Format.thousands(Int(median(row.tcpSockets) ?? 0))) TCP sockets of this run")
            walk.append(row)
        }

        // The agent, once, checked against what was built before anything is timed.
        let ours = [hostName] + fleet.members.map(\.name)
        let canServe = Self.serveHasAllNamespaces(portbudget)
        if canServe {
            let child = try Child.spawn(["nsenter", "--net=" + hostPath, portbudget, "serve", "--all-namespaces",
                                         "--listen", "127.0.0.1:\(Self.servePort)"], quietStderr: true)
            serve = ScrapeTarget(child: child, port: Self.servePort)
            guard HTTP.waitReady(port: Self.servePort, path: "/metrics", timeout: 60) else {
                throw BenchError("portbudget serve --all-namespaces did not answer on 127.0.0.1:\(Self.servePort)")
            }
        } else {
            log("this portbudget has no `serve --all-namespaces`: only check --all-namespaces is measured")
        }
        let checkArgv = [portbudget, "check", "--all-namespaces", "--json"]
        var others = 0
        if let serve {
            let view = try AgentView(metrics: try HTTP.get(port: serve.port, path: "/metrics").body, prefix: prefix + "-", host: hostName)
            others = try agree(view, ours: ours, fleet: fleet, agent: "serve --all-namespaces")
        }
        let scratch = "/tmp/portbudget-nsbench-\(getpid()).json"
        defer { unlink(scratch) }
        let checked = try Child.run(checkArgv, stdout: .file(scratch))
        guard (0...2).contains(checked.status) else { throw BenchError("check --all-namespaces exited \(checked.status)") }
        others = try agree(AgentView(checkJSON: readFile(scratch) ?? "", prefix: prefix + "-", host: hostName), ours: ours, fleet: fleet,
                           agent: "check --all-namespaces")
        let loop = "for ns in \(ours.joined(separator: " ")); do ip netns exec \"$ns\" ss -tanH || exit 1; done"
        let membersLoop = "for ns in \(fleet.members.map(\.name).joined(separator: " ")); do ip netns exec \"$ns\" ss -tanH || exit 1; done"
        guard try Child.run(["sh", "-c", membersLoop], stdout: .file(scratch)).status == 0 else { throw BenchError("the ss loop failed") }
        let ssLines = Self.countLines(scratch)
        guard ssLines == fleet.members.count * (2 * connections + 1) else {
            throw BenchError("the ss loop shows \(ssLines) TCP sockets in the member namespaces, built \(fleet.members.count * (2 * connections + 1))")
        }
        log("the ss loop agrees: \(ssLines) TCP sockets in the \(fleet.members.count) member namespaces")

        // Interleaved rounds at the full count.
        var samples: [Tool: [Measure]] = [:]
        let tools = Tool.allCases.filter { $0 != .serve || serve != nil }
        for round in 0..<rounds {
            try population!.topUpTimeWait()
            for k in 0..<tools.count {
                let tool = tools[(k + round) % tools.count]
                switch tool {
                case .floor:
                    let dump = try floor!.dump()
                    samples[tool, default: []].append(Measure(wall: dump.seconds, cpu: dump.cpu, rssKiB: floor!.child.peakRSSKiB))
                case .serve:
                    let s = try serve!.scrape(gauge: nil)
                    samples[tool, default: []].append(Measure(wall: s.wall, cpu: s.cpu, rssKiB: s.rssKiB))
                case .check:
                    let u = try Child.run(checkArgv, quietStderr: true)
                    guard (0...2).contains(u.status) else { throw BenchError("check --all-namespaces exited \(u.status)") }
                    samples[tool, default: []].append(Measure(wall: u.wall, cpu: u.cpu, rssKiB: u.maxRSSKiB))
                case .ssLoop:
                    let u = try Child.run(["sh", "-c", loop])
                    guard u.status == 0 else { throw BenchError("the ss loop exited \(u.status)") }
                    samples[tool, default: []].append(Measure(wall: u.wall, cpu: u.cpu, rssKiB: u.maxRSSKiB))
                }
            }
        }
        func med(_ t: Tool) -> Double? { median(samples[t, default: []].map(\.wall)) }
        log("at \(fleet.members.count) namespaces: floor \(Format.ms(med(.floor))) ms, serve \(Format.ms(med(.serve))) ms, "
            + "check \(Format.ms(med(.check))) ms, ss loop \(Format.ms(med(.ssLoop))) ms")

        // Churn: delete and re-add namespaces between scrapes.
        var phases: [ChurnPhase] = []
        var replaced = 0
        for phase in 0...churnRounds {
            var p = ChurnPhase(round: phase, replacedSoFar: replaced)
            if phase > 0 {
                let t0 = monotonicSeconds()
                for _ in 0..<churnPerRound {
                    let (gone, fresh) = try fleet.replaceOldest()
                    try floor!.replace(gone, with: fresh.name, path: fresh.path)
                    replaced += 1
                }
                p.replacedSoFar = replaced
                p.replaceSeconds = monotonicSeconds() - t0
            }
            try population!.topUpTimeWait()
            let current = [hostName] + fleet.members.map(\.name)
            for _ in 0..<scrapesPerRound {
                if let serve {
                    p.scrapes.append(try serve.scrape(gauge: nil).wall)
                } else {
                    let u = try Child.run(checkArgv, quietStderr: true)
                    guard (0...2).contains(u.status) else { throw BenchError("check --all-namespaces exited \(u.status)") }
                    p.scrapes.append(u.wall)
                }
            }
            // After the churn, the agent must show exactly the namespaces there are now.
            let view: AgentView
            if let serve {
                view = try AgentView(metrics: try HTTP.get(port: serve.port, path: "/metrics").body, prefix: prefix + "-", host: hostName)
                p.rssKiB = serve.child.rssKiB
                p.peakRSSKiB = serve.child.peakRSSKiB
                p.descriptors = Self.descriptorCount(serve.child.pid)
            } else {
                _ = try Child.run(checkArgv, stdout: .file(scratch), quietStderr: true)
                view = try AgentView(checkJSON: readFile(scratch) ?? "", prefix: prefix + "-", host: hostName)
            }
            p.seen = view.total
            _ = try agree(view, ours: current, fleet: fleet, agent: serve != nil ? "serve --all-namespaces" : "check --all-namespaces",
                          quiet: true)
            phases.append(p)
            log("churn round \(phase): \(replaced) namespaces replaced so far, scrape median \(Format.ms(median(p.scrapes))) ms"
                + (p.descriptors.map { ", \($0) descriptors" } ?? ""))
        }

        let report = NamespacesReport(bench: self, hostName: hostName, hostSockets: Int(median(walk.last!.tcpSockets) ?? 0),
                                      hostConnections: population!.connections, hostUDP: population!.udp,
                                      others: others, samples: samples, walk: walk, phases: phases,
                                      agentCount: ours.count + others, checkOnly: serve == nil,
                                      memberHashes: fleet.memberHashes)
        let text = report.markdown
        writeAll(1, "\n" + text)
        let dir = String(results[..<(results.lastIndex(of: "/") ?? results.startIndex)])
        if !dir.isEmpty { mkdir(dir, 0o755) }
        try writeFile(results, text)
        if let doc { try updateDoc(doc, text, marker: Self.marker + (childHash == nil ? "" : "-child-ehash")) }
    }

    /// The agent must list every namespace of this run exactly once, and in
    /// each member the one destination built, with every connection. Returns
    /// how many other namespaces it measured (the machine's own, other tests').
    func agree(_ view: AgentView, ours: [String], fleet: Fleet, agent: String, quiet: Bool = false) throws -> Int {
        let seen = Set(view.ours.keys)
        guard seen == Set(ours) else {
            let missing = Set(ours).subtracting(seen).sorted(), extra = seen.subtracting(Set(ours)).sorted()
            throw BenchError("\(agent) lists namespaces of this run \(seen.count) (missing \(missing), stale \(extra)); built \(ours.count)")
        }
        for member in fleet.members {
            let got = view.ours[member.name]!
            guard got.bound == connections, got.established == connections else {
                throw BenchError("\(agent) in \(member.name): \(got.bound.map(String.init) ?? "no") TCP ports bound, "
                    + "\(got.established.map(String.init) ?? "no") established sockets; built \(connections) connections")
            }
        }
        if !quiet {
            log("\(agent) agrees: \(ours.count) namespaces of this run (host + \(fleet.members.count)), "
                + "\(connections) TCP ports bound and \(connections) established TCP sockets in each member; "
                + "\(view.total - ours.count) other namespaces on the machine")
        }
        return view.total - ours.count
    }

    /// TCP sockets in the host-wide hash, near enough: full sockets of every
    /// namespace (sockstat's `alloc` is one machine-wide counter) plus the
    /// TIME_WAIT entries of the host namespace (this run's members have none;
    /// other namespaces' few are left out).
    static func hostWideTCP() -> Int {
        guard let text = readFile("/proc/net/sockstat") else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("TCP:") {
            let words = line.split(separator: " ")
            func field(_ key: Substring) -> Int { words.firstIndex(of: key).flatMap { Int(words[$0 + 1]) } ?? 0 }
            return field("alloc") + field("tw")
        }
        return 0
    }

    /// Lines in a file, read in chunks: the ss loop's answer is some 20 MB at
    /// full size, and this process's own peak RSS must stay small, because a
    /// child started with posix_spawn (vfork) starts its wait4 peak RSS from it.
    static func countLines(_ path: String) -> Int {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var chunk = [UInt8](repeating: 0, count: 65536)
        var lines = 0
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return lines }
            for i in 0..<n where chunk[i] == 10 { lines += 1 }
        }
    }

    static func serveHasAllNamespaces(_ portbudget: String) -> Bool {
        guard let child = try? Child.spawn([portbudget, "serve", "--help"], stdout: .pipe, quietStderr: true) else { return false }
        let text = child.readAll()
        _ = try? child.wait()
        return text.contains("--all-namespaces")
    }

    static func descriptorCount(_ pid: pid_t) -> Int? {
        guard let dir = opendir("/proc/\(pid)/fd") else { return nil }
        defer { closedir(dir) }
        var n = 0
        while let entry = readdir(dir) {
            if entry.pointee.d_name.0 != 46 { n += 1 }  // skip "." and ".."
        }
        return n
    }
}

// MARK: the member namespaces

/// The N member namespaces, each with a listener and C held connections to
/// it. They are made from this process's main thread, which enters each one
/// to write its sysctls and start its generators there, then returns to the
/// host namespace.
final class Fleet {
    final class Member {
        let name: String
        var listener: Child?
        var connector: Child?
        var path: String { "/run/netns/" + name }
        init(name: String) { self.name = name }
    }

    let prefix: String
    let loadgen: String
    let connections: Int
    let hostFD: Int32
    private(set) var members: [Member] = []
    private var made = 0
    /// The hash table sizes a member sees (negative: the shared host-wide table).
    private(set) var memberHashes = "?"

    init(prefix: String, loadgen: String, connections: Int, hostFD: Int32) {
        self.prefix = prefix
        self.loadgen = loadgen
        self.connections = connections
        self.hostFD = hostFD
    }

    @discardableResult
    func add() throws -> Member {
        let member = Member(name: "\(prefix)-\(made)")
        made += 1
        guard try Child.run(["ip", "netns", "add", member.name]).status == 0 else {
            throw BenchError("`ip netns add \(member.name)` failed")
        }
        NetnsRegistry.add(member.path)
        members.append(member)
        let fd = open(member.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw BenchError("open \(member.path): errno \(errno)") }
        defer {
            close(fd)
            if setNetworkNamespace(hostFD) != 0 { log("cannot return to the host namespace: errno \(errno)"); exit(1) }
        }
        guard setNetworkNamespace(fd) == 0 else { throw BenchError("setns into \(member.name): errno \(errno)") }
        guard try Child.run(["ip", "link", "set", "lo", "up"]).status == 0 else { throw BenchError("lo up in \(member.name)") }
        try Namespace.sysctl("net.ipv4.ip_local_port_range", "\(NamespacesBench.range.low) \(NamespacesBench.range.high)")
        try Namespace.sysctl("net.core.somaxconn", "65535")
        memberHashes = "tcp_ehash_entries \(Namespace.readSysctl("net.ipv4.tcp_ehash_entries")), "
            + "udp_hash_entries \(Namespace.readSysctl("net.ipv4.udp_hash_entries"))"
        let port = NamespacesBench.memberPort
        member.listener = try Child.spawn([loadgen, "listen", "--at", "127.0.0.1:\(port)", "--accept", "none",
                                           "--backlog", "65535"], stdinPipe: true, stdout: .pipe)
        guard let up = member.listener!.readLine(timeout: 30), up.contains("\"error\":null") else {
            throw BenchError("listener in \(member.name) did not start")
        }
        member.connector = try Child.spawn([loadgen, "connect", "--to", "127.0.0.1:\(port)", "--count", "\(connections)", "--hold"],
                                           stdinPipe: true, stdout: .pipe)
        guard let line = member.connector!.readLine(timeout: 60), Population.made(line) == connections,
              line.contains("\"error\":null") else {
            throw BenchError("connections in \(member.name) were not all made")
        }
        return member
    }

    func remove(_ member: Member) {
        member.connector?.finish()
        member.listener?.finish()
        _ = try? Child.run(["ip", "netns", "del", member.name], quietStderr: true)
        NetnsRegistry.remove(member.path)
        members.removeAll { $0 === member }
    }

    /// Deletes the oldest member namespace and adds a new one in its place
    /// (a new name and inode, as a restarted pod gets).
    func replaceOldest() throws -> (gone: String, fresh: Member) {
        let oldest = members[0]
        remove(oldest)
        return (oldest.name, try add())
    }

    func removeAll() {
        for member in members { member.connector?.release(); member.listener?.release() }
        for member in members { remove(member) }
    }
}

/// Namespace paths made by this run, kept where a signal handler can reach
/// them without allocating: fixed slots of NUL-terminated paths.
enum NetnsRegistry {
    static let slots = 2048, width = 128
    nonisolated(unsafe) static var table: UnsafeMutablePointer<CChar>? = nil

    static func prepare() {
        guard table == nil else { return }
        let t = UnsafeMutablePointer<CChar>.allocate(capacity: slots * width)
        t.initialize(repeating: 0, count: slots * width)
        table = t
    }

    static func add(_ path: String) {
        guard let table, path.utf8.count < width else { return }
        for i in 0..<slots where table[i * width] == 0 {
            let bytes = Array(path.utf8CString)
            for (k, b) in bytes.enumerated() { table[i * width + k] = b }
            return
        }
    }

    static func remove(_ path: String) {
        guard let table else { return }
        for i in 0..<slots where table[i * width] != 0 && String(cString: table + i * width) == path {
            table[i * width] = 0
        }
    }

    /// Async-signal-safe: detach and unlink every path still registered.
    static func deleteAll() {
        guard let table else { return }
        for i in 0..<slots where table[i * width] != 0 {
            _ = umount2(table + i * width, Int32(MNT_DETACH))
            _ = unlink(table + i * width)
        }
    }
}

// MARK: the floor process

/// `portbudget-bench namespaces-floor`, driven over its stdin.
final class FloorProcess {
    struct Dump {
        struct Entry { var name: String; var tcp: Int; var messages: Int; var seconds: Double }
        var perNamespace: [Entry] = []
        var seconds: Double = 0
        var cpu: Double = 0
        var messages: Int = 0
    }

    let child: Child

    init(bench: String) throws {
        child = try Child.spawn([bench, "namespaces-floor"], stdinPipe: true, stdout: .pipe)
    }

    private func ask(_ line: String) throws -> String {
        writeAll(child.stdinWrite, line + "\n")
        guard let answer = child.readLine(timeout: 120) else { throw BenchError("the floor process did not answer `\(line)`") }
        return answer
    }

    func add(_ name: String, path: String) throws {
        let answer = try ask("add \(name) \(path)")
        guard answer == "ok \(name)" else { throw BenchError("floor: \(answer)") }
    }

    func replace(_ gone: String, with name: String, path: String) throws {
        _ = try ask("del \(gone)")
        try add(name, path: path)
    }

    func dump() throws -> Dump {
        writeAll(child.stdinWrite, "dump\n")
        var dump = Dump()
        while true {
            guard let line = child.readLine(timeout: 300) else { throw BenchError("the floor process stopped answering") }
            func field(_ key: String) -> Substring? {
                guard let r = line.firstRange(of: " " + key + "=") else { return nil }
                return line[r.upperBound...].prefix { $0 != " " }
            }
            if line.hasPrefix("ns ") {
                let name = String(line.dropFirst(3).prefix { $0 != " " })
                dump.perNamespace.append(.init(name: name, tcp: Int(field("tcp") ?? "") ?? 0,
                                               messages: Int(field("messages") ?? "") ?? 0,
                                               seconds: Double(field("seconds") ?? "") ?? 0))
            } else if line.hasPrefix("dump ") {
                dump.seconds = Double(field("seconds") ?? "") ?? 0
                dump.cpu = Double(field("cpu") ?? "") ?? 0
                dump.messages = Int(field("messages") ?? "") ?? 0
                return dump
            } else {
                throw BenchError("floor: \(line)")
            }
        }
    }

    /// Every member namespace must show exactly its listener and both ends of each connection.
    func check(members: [String], tcpEach: Int) throws {
        let dump = try dump()
        for name in members {
            guard let entry = dump.perNamespace.first(where: { $0.name == name }), entry.tcp == tcpEach else {
                throw BenchError("the floor sees \(dump.perNamespace.first { $0.name == name }?.tcp ?? -1) TCP sockets in \(name), built \(tcpEach)")
            }
        }
    }

    func stop() {
        child.finish(timeout: 5)
    }
}

// MARK: what the agent says

/// Per namespace of this run (the names starting with the run's prefix):
/// the TCP ports bound in its range and its established TCP sockets — both
/// kept for every namespace, whatever `--top` cuts from the group series —
/// from `serve`'s metrics or from `check --all-namespaces --json`.
struct AgentView {
    struct Entry { var bound: Int?; var established: Int? }
    var total = 0
    var ours: [String: Entry] = [:]

    /// The agent names its own namespace `host`: that is the run's host
    /// namespace, where it was started.
    static func ownName(_ name: String, host: String) -> String { name == "host" ? host : name }

    /// From /metrics: `portbudget_netns_info{netns=…}` names each namespace,
    /// `portbudget_tcp_bound_ports{netns=…}` and `portbudget_tcp_sockets{netns=…,state="ESTABLISHED"}` count.
    init(metrics: String, prefix: String, host: String) throws {
        var names = Set<String>()
        func label(_ line: Substring, _ key: String) -> String? {
            Self.label(line, key).map { key == "netns" ? Self.ownName($0, host: host) : $0 }
        }
        for line in metrics.split(separator: "\n") where !line.hasPrefix("#") {
            if line.hasPrefix("portbudget_netns_info{") {
                guard let name = label(line, "netns") else { continue }
                names.insert(name)
                if name.hasPrefix(prefix) { ours[name, default: Entry()] = ours[name] ?? Entry() }
            } else if line.hasPrefix("portbudget_tcp_bound_ports{"), let name = label(line, "netns"), name.hasPrefix(prefix),
                      let value = line.split(separator: " ").last.flatMap({ Double($0) }) {
                ours[name, default: Entry()].bound = Int(value)
            } else if line.hasPrefix("portbudget_tcp_sockets{"), let name = label(line, "netns"), name.hasPrefix(prefix),
                      Self.label(line, "state") == "ESTABLISHED" || Self.label(line, "state") == "established",
                      let value = line.split(separator: " ").last.flatMap({ Double($0) }) {
                ours[name, default: Entry()].established = Int(value)
            }
        }
        guard !names.isEmpty else { throw BenchError("the agent's /metrics has no portbudget_netns_info") }
        total = names.count
    }

    /// From check's pretty-printed JSON (sorted keys): each namespace object's
    /// `"netns"` comes before its `"tcp"`, and `"tcp"` before `"udp"`.
    init(checkJSON json: String, prefix: String, host: String) throws {
        let chunks = json.split(separator: "\"netns\" : {", omittingEmptySubsequences: false).dropFirst()
        guard !chunks.isEmpty else { throw BenchError("check --all-namespaces --json lists no namespace") }
        total = chunks.count
        for chunk in chunks {
            guard let r = chunk.firstRange(of: "\"name\" : \"") else { continue }
            let name = Self.ownName(String(chunk[r.upperBound...].prefix { $0 != "\"" }), host: host)
            guard name.hasPrefix(prefix) else { continue }
            var entry = Entry()
            if let t = chunk.firstRange(of: "\"tcp\" : {") {
                let tcp = chunk[t.upperBound..<(chunk[t.upperBound...].firstRange(of: "\"udp\" : {")?.lowerBound ?? chunk.endIndex)]
                // Sorted keys: the object's own bound_ports comes before its groups and holders.
                if let b = tcp.firstRange(of: "\"bound_ports\" : ") {
                    entry.bound = Int(tcp[b.upperBound...].prefix { $0.isNumber })
                }
                if let e = tcp.firstRange(of: "\"ESTABLISHED\" : ") {
                    entry.established = Int(tcp[e.upperBound...].prefix { $0.isNumber })
                }
            }
            ours[name] = entry
        }
    }

    static func label(_ line: Substring, _ key: String) -> String? {
        for opener in ["{" + key + "=\"", "," + key + "=\""] {
            if let r = line.firstRange(of: opener) { return String(line[r.upperBound...].prefix { $0 != "\"" }) }
        }
        return nil
    }
}

// MARK: results

struct WalkRow {
    var namespaces: Int
    var memberSeconds: [Double] = []
    var hostSeconds: [Double] = []
    var allSeconds: [Double] = []
    var tcpSockets: [Double] = []
    /// TCP sockets in the host-wide hash (every namespace's).
    var hashSockets: [Double] = []
}

struct ChurnPhase {
    var round: Int
    var replacedSoFar: Int
    var replaceSeconds: Double? = nil
    var scrapes: [Double] = []
    var rssKiB: Int? = nil
    var peakRSSKiB: Int? = nil
    var descriptors: Int? = nil
    var seen = 0
}

func percentile(_ values: [Double], _ p: Double) -> Double? {
    guard !values.isEmpty else { return nil }
    let s = values.sorted()
    let rank = Int((p * Double(s.count)).rounded(.up)) - 1
    return s[max(0, min(s.count - 1, rank))]
}

/// Least squares y = a + b·x.
func linearFit(_ points: [(Double, Double)]) -> (a: Double, b: Double, r2: Double)? {
    guard points.count >= 2 else { return nil }
    let n = Double(points.count)
    let mx = points.map(\.0).reduce(0, +) / n, my = points.map(\.1).reduce(0, +) / n
    let sxx = points.map { ($0.0 - mx) * ($0.0 - mx) }.reduce(0, +)
    let sxy = points.map { ($0.0 - mx) * ($0.1 - my) }.reduce(0, +)
    let syy = points.map { ($0.1 - my) * ($0.1 - my) }.reduce(0, +)
    guard sxx > 0 else { return nil }
    let b = sxy / sxx, a = my - b * mx
    return (a, b, syy > 0 ? (sxy * sxy) / (sxx * syy) : 1)
}

struct NamespacesReport {
    var bench: NamespacesBench
    var hostName: String
    var hostSockets: Int
    var hostConnections: Int
    var hostUDP: Int
    var others: Int
    var samples: [NamespacesBench.Tool: [NamespacesBench.Measure]]
    var walk: [WalkRow]
    var phases: [ChurnPhase]
    var agentCount: Int
    var checkOnly: Bool
    var memberHashes: String

    func wall(_ t: NamespacesBench.Tool) -> Double? { median(samples[t, default: []].map(\.wall)) }
    func cpu(_ t: NamespacesBench.Tool) -> Double? { median(samples[t, default: []].compactMap(\.cpu)) }
    func rss(_ t: NamespacesBench.Tool) -> Double? {
        samples[t, default: []].compactMap(\.rssKiB).max().map { Double($0) / 1024 }
    }

    static func verdict(_ ok: Bool) -> String { ok ? "PASS" : "MISS" }

    var markdown: String {
        let n = bench.namespaces, ours = n + 1
        var out = "Measured \(utcDate()) on \(machineDescription()); medians of \(bench.rounds) interleaved rounds.\n"
        out += "Command: `\(bench.command)`\n\n"
        out += "Population: the agent's own namespace (`host`, made by the benchmark) holds \(Format.thousands(hostConnections)) "
        out += "loopback connections, TIME_WAIT churn and \(Format.thousands(hostUDP)) UDP sockets; \(n) `ip netns add` namespaces "
        out += "hold \(Format.thousands(bench.connections)) loopback connections each (\(Format.thousands(2 * bench.connections + 1)) "
        out += "TCP sockets with both ends and the listener) in a \(NamespacesBench.range.low)–\(NamespacesBench.range.high) range: "
        out += "\(Format.thousands(hostSockets)) TCP sockets of this run in all. The agent also measured \(others) other "
        out += "namespace\(others == 1 ? "" : "s") on the machine (its initial namespace, other tests'); the floor and the ss loop "
        out += "cover the \(ours) of this run.\n\n"
        out += "| at \(n) namespaces | namespaces | wall ms | ms per namespace | CPU ms | peak RSS MB | / ss loop | / floor |\n"
        out += "|---|---:|---:|---:|---:|---:|---:|---:|\n"
        let rows: [(NamespacesBench.Tool, String, Int)] = [
            (.floor, "floor: one SOCK_DIAG socket per namespace, 4 dumps each, counts only", ours),
            (.serve, "`serve --all-namespaces`: one /metrics scrape", agentCount),
            (.check, "`check --all-namespaces --json`: whole process", agentCount),
            (.ssLoop, "`ip netns exec NS ss -tanH` for each namespace", ours),
        ]
        for (tool, what, count) in rows where samples[tool] != nil {
            let w = wall(tool)
            out += "| \(what) | \(count) | \(Format.ms(w)) | \(Format.ms(w.map { $0 / Double(count) })) "
            out += "| \(Format.ms(cpu(tool))) | \(Format.mib(rss(tool))) "
            out += "| \(tool == .ssLoop ? "1.00" : Format.ratio(w, wall(.ssLoop))) | \(tool == .floor ? "1.00" : Format.ratio(w, wall(.floor))) |\n"
        }
        out += "\nThe floor dumps one namespace after another; the agent may collect several at once, so on 2 CPUs compare CPU as well as wall. "
        out += "CPU of a scrape is the serve process's own (/proc/PID/stat); the floor's wall and CPU are its own dump loop's; "
        out += "peak RSS is VmHWM for serve and the floor, wait4's for the processes (the largest process of the ss loop); "
        out += "a child started with posix_spawn (vfork) begins its wait4 peak at the benchmark's own, "
        out += "\(Format.mib(Child.statusField(getpid(), "VmHWM:").map { Double($0) / 1024 })) MB here.\n\n"

        let agent: NamespacesBench.Tool = checkOnly ? .check : .serve
        let agentName = checkOnly ? "check --all-namespaces (serve --all-namespaces not in this build)" : "serve --all-namespaces scrape"
        out += "Goals (issue 9), \(agentName):\n\n"
        if let a = wall(agent), let s = wall(.ssLoop), let f = wall(.floor) {
            out += "- / the ss loop: \(Format.fixed(a / s, 2))× (goal ≤ \(NamespacesBench.goalSS)×) — \(Self.verdict(a / s <= NamespacesBench.goalSS))\n"
            out += "- / the floor: \(Format.fixed(a / f, 2))× (goal ≤ \(NamespacesBench.goalFloor)×) — \(Self.verdict(a / f <= NamespacesBench.goalFloor))\n"
        }
        if let r = rss(agent) {
            out += "- peak RSS: \(Format.mib(r)) MB (goal ≤ \(Int(NamespacesBench.goalRSSMiB)) MB) — \(Self.verdict(r <= NamespacesBench.goalRSSMiB))\n"
        }
        let steady = phases.first.flatMap { median($0.scrapes) }
        let churned = phases.dropFirst().flatMap(\.scrapes)
        if let steady, let last = median(churned) {
            let ratio = last / steady
            out += "- under churn: median \(Format.ms(last)) ms against \(Format.ms(steady)) ms before "
            out += "(\(Format.fixed(ratio, 2))×; flat if ≤ \(NamespacesBench.goalChurn)×) — \(Self.verdict(ratio <= NamespacesBench.goalChurn))\n"
        }

        out += "\n### Hash walk: the floor as namespaces are added\n\n"
        out += "Same host population; each member namespace adds \(Format.thousands(2 * bench.connections + 1)) TCP sockets to the host-wide hash "
        out += "that every dump walks, unless the members have hash tables of their own. In the host namespace: "
        out += "tcp_ehash_entries \(Namespace.readSysctl("net.ipv4.tcp_ehash_entries")), "
        out += "tcp_child_ehash_entries \(Namespace.readSysctl("net.ipv4.tcp_child_ehash_entries")); in a member: \(memberHashes) "
        out += "(negative: the machine's shared table).\n\n"
        out += "| namespaces | TCP sockets of this run | TCP sockets in the host-wide hash | floor ms per member namespace (4 dumps) | floor ms, host namespace | floor ms, all |\n"
        out += "|---:|---:|---:|---:|---:|---:|\n"
        for r in walk {
            out += "| \(r.namespaces) | \(Format.thousands(Int(median(r.tcpSockets) ?? 0))) | \(Format.thousands(Int(median(r.hashSockets) ?? 0))) "
            out += "| \(Format.fixed((median(r.memberSeconds) ?? 0) * 1000, 2)) "
            out += "| \(Format.ms(median(r.hostSeconds))) | \(Format.ms(median(r.allSeconds))) |\n"
        }
        let points = walk.compactMap { r -> (Double, Double)? in
            guard let x = median(r.hashSockets), let y = median(r.memberSeconds) else { return nil }
            return (x, y * 1000)
        }
        if let fit = linearFit(points) {
            out += "\nFit: a member namespace's dumps cost \(Format.fixed(fit.a, 2)) ms + \(Format.fixed(fit.b * 100_000, 3)) ms per "
            out += "100,000 TCP sockets in the host-wide hash (r² \(Format.fixed(fit.r2, 2))). "
            let perMember = Double(2 * bench.connections + 1)
            let base = (median(walk.last!.hashSockets) ?? 0) - Double(walk.last!.namespaces) * perMember
            let at500 = base + 500 * perMember
            let dump500 = fit.a + fit.b * at500
            out += "Extrapolated, not measured: at 500 such namespaces the hash holds about \(Format.thousands(Int(at500))) TCP sockets, "
            out += "a member's dumps about \(Format.fixed(dump500, 1)) ms, and one sweep of all 500 about "
            out += "\(Format.fixed(dump500 * 500 / 1000, 2)) s of floor alone.\n"
        }

        out += "\n### Churn: scrape to scrape while namespaces come and go\n\n"
        out += "Each round deletes the \(bench.churnPerRound) oldest member namespaces (their generators end, `ip netns del`) and adds "
        out += "as many new ones, then scrapes \(bench.scrapesPerRound) times; after each round the agent must list exactly the namespaces there are.\n\n"
        out += "| round | replaced so far | \(checkOnly ? "check" : "scrape") median ms | p90 ms | RSS MB | peak RSS MB | descriptors | namespaces the agent lists |\n"
        out += "|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        for p in phases {
            out += "| \(p.round) | \(p.replacedSoFar) | \(Format.ms(median(p.scrapes))) | \(Format.ms(percentile(p.scrapes, 0.9))) "
            out += "| \(Format.mib(p.rssKiB.map { Double($0) / 1024 })) | \(Format.mib(p.peakRSSKiB.map { Double($0) / 1024 })) "
            out += "| \(p.descriptors.map(String.init) ?? "–") | \(p.seen) |\n"
        }
        return out
    }
}

import Glibc

/// `portbudget-bench namespaces`: the agent across every network namespace
/// (`--all-namespaces`). A "host" namespace made by the benchmark holds a large
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
    var binDir = executableDirectory()
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
    /// Fresh background collections a serve may take to show a change of namespaces.
    static let backgroundAgreementCollections = 3
    /// Namespaces listed beyond the run's own: the machine's others (its initial one, other tests').
    static let listedHeadroom = 64
    /// Rounds of the table walks timed alone (each walks every member's tables three times).
    static let walkRounds = 3
    /// Against the ss loop: serve's scrape (set at 100 × 1,000 beside 100k
    /// host sockets) and check's whole process (set at 45 small namespaces).
    static let goalServeSS = 0.3, goalCheckSS = 0.25
    static let goalFloor = 1.3, goalRSSMiB = 48.0, goalChurn = 1.25

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
        while let flag = arguments.next() {
            switch flag {
            case "--namespaces": namespaces = try arguments.count(min: 1)
            case "--connections": connections = try arguments.count(min: 1)
            case "--host-sockets": hostSockets = try arguments.count(min: 1000)
            case "--rounds": rounds = try arguments.count(min: 1)
            case "--churn-rounds": churnRounds = try arguments.count(min: 0)
            case "--churn": churnPerRound = try arguments.count(min: 1)
            case "--scrapes": scrapesPerRound = try arguments.count(min: 1)
            case "--growth":
                let list = try arguments.value().split(separator: ",").map { Int($0) }
                guard !list.isEmpty, list.allSatisfy({ ($0 ?? 0) >= 1 }) else { throw BenchError("--growth takes N,N,...") }
                growth = list.map { $0! }
            case "--ci":
                namespaces = 5; connections = 50; hostSockets = 2000; rounds = 2; churnRounds = 2; scrapesPerRound = 2
            case "--child-ehash": childHash = try arguments.count(min: 128)
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
        // check twice: with --json, which the benchmark reads to hold the
        // agent to the fleet, and as the goal names it, printing its table.
        case floor, serve, check, checkTable = "check table", ssLoop = "ss loop"
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
        // A serve that collects in the background is timed by its collections (BackgroundServe.swift).
        let background = canServe && Self.serveHelp(portbudget).contains("--collection-interval")
        // The agent lists at most --listed-namespaces one by one and sums the
        // rest; the agreement checks need every namespace of the run listed.
        let listed = Self.serveHelp(portbudget).contains("--listed-namespaces")
            ? ["--listed-namespaces", String(ours.count + Self.listedHeadroom)] : []
        // What a collection costs is measured here, not how the agent spaces
        // them: with its CPU budget, one costing seconds would wait minutes.
        let unpaced = Self.serveHelp(portbudget).contains("--collection-cpu-budget") ? ["--collection-cpu-budget", "0"] : []
        let builtAt = monotonicSeconds()
        if canServe {
            let child = try Child.spawn(["nsenter", "--net=" + hostPath, portbudget, "serve", "--all-namespaces",
                                         "--listen", "127.0.0.1:\(Self.servePort)"]
                                        + (background ? ["--collection-interval", ScrapeTarget.backgroundInterval] : []) + listed + unpaced,
                                        quietStderr: true)
            serve = ScrapeTarget(child: child, port: Self.servePort)
            guard HTTP.waitReady(port: Self.servePort, path: "/metrics", timeout: 60) else {
                throw BenchError("portbudget serve --all-namespaces did not answer on 127.0.0.1:\(Self.servePort)")
            }
        } else {
            log("this portbudget has no `serve --all-namespaces`: only check --all-namespaces is measured")
        }
        let checkArgv = [portbudget, "check", "--all-namespaces", "--json"] + listed
        let checkTableArgv = [portbudget, "check", "--all-namespaces"] + listed
        var others = 0
        if let serve {
            if background {
                others = try agreeInBackground(serve, since: builtAt, ours: ours, fleet: fleet, host: hostName).others
            } else {
                let view = try AgentView(metrics: try HTTP.get(port: serve.port, path: "/metrics").body, prefix: prefix + "-", host: hostName)
                others = try agree(view, ours: ours, fleet: fleet, agent: "serve --all-namespaces")
            }
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
        // serve collects every second by itself: stopped (SIGSTOP) while the
        // other tools are timed, so none of them shares the CPUs with it.
        let backgroundServe = background ? serve?.child.pid : nil
        defer { if let backgroundServe { kill(backgroundServe, SIGCONT) } }
        for round in 0..<rounds {
            try population!.topUpTimeWait()
            for k in 0..<tools.count {
                let tool = tools[(k + round) % tools.count]
                if let backgroundServe { kill(backgroundServe, tool == .serve ? SIGCONT : SIGSTOP) }
                switch tool {
                case .floor:
                    let dump = try floor!.dump()
                    samples[tool, default: []].append(Measure(wall: dump.seconds, cpu: dump.cpu, rssKiB: floor!.child.peakRSSKiB))
                case .serve where background:
                    // Its CPU cannot be told apart from the collections before and after it.
                    let fresh = try serve!.freshCollection(since: monotonicSeconds())
                    samples[tool, default: []].append(Measure(wall: fresh.seconds, cpu: nil, rssKiB: serve!.child.peakRSSKiB))
                case .serve:
                    let s = try serve!.scrape(gauge: nil)
                    samples[tool, default: []].append(Measure(wall: s.wall, cpu: s.cpu, rssKiB: s.rssKiB))
                case .check, .checkTable:
                    let u = try Child.run(tool == .check ? checkArgv : checkTableArgv, quietStderr: true)
                    guard (0...2).contains(u.status) else { throw BenchError("check --all-namespaces exited \(u.status)") }
                    samples[tool, default: []].append(Measure(wall: u.wall, cpu: u.cpu, rssKiB: u.maxRSSKiB))
                case .ssLoop:
                    let u = try Child.run(["sh", "-c", loop])
                    guard u.status == 0 else { throw BenchError("the ss loop exited \(u.status)") }
                    samples[tool, default: []].append(Measure(wall: u.wall, cpu: u.cpu, rssKiB: u.maxRSSKiB))
                }
            }
        }
        // What an exact census must ask of this kernel: each table walk alone, per member.
        var walkSeconds: [TCPWalk: [Double]] = [:]
        for _ in 0..<min(rounds, Self.walkRounds) {
            let walks = try floor!.walks()
            let members = fleet.members.compactMap { walks[$0.name] }
            guard !members.isEmpty else { break }
            for walk in TCPWalk.allCases {
                walkSeconds[walk, default: []].append(members.compactMap { $0[walk] }.reduce(0, +) / Double(members.count))
            }
        }
        if let backgroundServe { kill(backgroundServe, SIGCONT) }
        func med(_ t: Tool) -> Double? { median(samples[t, default: []].map(\.wall)) }
        log("at \(fleet.members.count) namespaces: floor \(Format.ms(med(.floor))) ms, serve \(Format.ms(med(.serve))) ms, "
            + "check \(Format.ms(med(.checkTable))) ms (--json \(Format.ms(med(.check))) ms), ss loop \(Format.ms(med(.ssLoop))) ms")

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
            let churnedAt = monotonicSeconds()
            let current = [hostName] + fleet.members.map(\.name)
            for _ in 0..<scrapesPerRound {
                if let serve, background {
                    p.scrapes.append(try serve.freshCollection(since: monotonicSeconds()).seconds)
                } else if let serve {
                    p.scrapes.append(try serve.scrape(gauge: nil).wall)
                } else {
                    let u = try Child.run(checkArgv, quietStderr: true)
                    guard (0...2).contains(u.status) else { throw BenchError("check --all-namespaces exited \(u.status)") }
                    p.scrapes.append(u.wall)
                }
            }
            // After the churn, the agent must show exactly the namespaces there are now.
            let view: AgentView
            if let serve, background {
                view = try agreeInBackground(serve, since: churnedAt, ours: current, fleet: fleet, host: hostName, quiet: true).view
                p.rssKiB = serve.child.rssKiB
                p.peakRSSKiB = serve.child.peakRSSKiB
                p.descriptors = Self.descriptorCount(serve.child.pid)
            } else if let serve {
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

        let report = NamespacesBenchReport(bench: self, hostName: hostName, hostSockets: Int(median(walk.last!.tcpSockets) ?? 0),
                                      hostConnections: population!.connections, hostUDP: population!.udp,
                                      others: others, samples: samples, walk: walk, phases: phases,
                                      agentCount: ours.count + others, checkOnly: serve == nil, background: background,
                                      memberHashes: fleet.memberHashes, walkSeconds: walkSeconds)
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

    /// A serve that collects in the background must agree within
    /// `backgroundAgreementCollections` collections started after `since`:
    /// one already under way when the namespaces changed may still show the
    /// namespaces before.
    func agreeInBackground(_ serve: ScrapeTarget, since: Double, ours: [String], fleet: Fleet, host: String,
                           quiet: Bool = false) throws -> (view: AgentView, others: Int) {
        var attempt = 1, after = since
        while true {
            let view = try AgentView(metrics: try serve.freshCollection(since: after).metrics, prefix: prefix + "-", host: host)
            do {
                return (view, try agree(view, ours: ours, fleet: fleet, agent: "serve --all-namespaces", quiet: quiet))
            } catch where attempt < Self.backgroundAgreementCollections {
                log("serve --all-namespaces, collection \(attempt) after the change: \(error); waiting for the next")
                attempt += 1
                after = monotonicSeconds()
            }
        }
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
        serveHelp(portbudget).contains("--all-namespaces")
    }

    static func serveHelp(_ portbudget: String) -> String {
        guard let child = try? Child.spawn([portbudget, "serve", "--help"], stdout: .pipe, quietStderr: true) else { return "" }
        let text = child.readAll()
        _ = try? child.wait()
        return text
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

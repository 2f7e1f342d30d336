import Glibc

/// `portbudget-bench namespaces --flood`: a tenant floods the host with
/// namespaces while `serve --all-namespaces` runs as root. An unprivileged
/// uid (setpriv) runs `portbudget-loadgen tenants` — the same generator the
/// flood test uses — which makes N user + network namespaces, each with a
/// 2-port range drained, one in ten with many destinations, and replaces the
/// oldest ones while it runs. Beside it a root-owned namespace (`ip netns
/// add`) holds 9 of its 10 ports. The benchmark scrapes throughout and holds
/// every scrape to the goals below, then lets the tenant go and checks the
/// agent returns to where it started.
struct FloodBench {
    var namespaces = 1500
    var destinations = 300
    var severalEvery = 10
    var churnPerSecond = 2.0
    /// Seconds of scraping once a collection has seen the whole flood.
    var seconds = 120.0
    var collectionInterval = "15s"
    var tenantUID = 4242
    /// Memory is judged this many seconds after the tenant left: time for a
    /// collection without it to finish (each takes up to 37 s at 1,500
    /// namespaces) and for the evaluator to forget it.
    var memoryReadAfter = 60.0
    /// Scraping goes on until this many seconds after the tenant left (at
    /// least `memoryReadAfter`), to see whether memory falls later.
    var watchAfter = 0.0
    var binDir = executableDirectory()
    var prefix = "pbfl\(getpid())"
    var results = "bench-results/namespaces-flood.md"
    var doc: String? = nil
    var command: String

    static let servePort: UInt16 = 19961
    static let marker = "portbudget-bench-namespaces-flood"
    /// The root-owned namespace: a 10-port range, 9 ports held (its one group at 90%).
    static let rootRange = (low: 46000, high: 46009)
    static let rootPort = 7000
    static let rootHeld = 9
    /// Time between scrapes (as a Prometheus scraping every second would).
    static let scrapeInterval: useconds_t = 1_000_000
    /// How long making the tenant's namespaces, and the first collection over them, may each take.
    static let buildTimeout = 900.0
    /// How long after the tenant leaves a collection without it may take to show.
    static let goneTimeout = 600.0
    // The goals, per scrape and for the agent process.
    static let goalScrapeSeconds = 2.0
    static let goalSamples = 20_000
    static let goalBytes = 4 << 20
    static let goalDescriptors = 2_048
    static let goalRSSMiB = 256.0
    /// Back to baseline: descriptors beside the kept sessions within this many
    /// of the baseline's (the test's allowance: a connection being served).
    static let baselineDescriptorSlack = 2
    /// Back to baseline: anonymous RSS (heap and stacks: the agent's own
    /// memory) within this many MiB of the baseline's, read `memoryReadAfter`
    /// seconds after the tenant left: pages a live allocation shares with
    /// freed ones stay resident. File-backed RSS (code and libraries first
    /// run during the flood) is shared page cache the kernel may drop; it is
    /// printed, not judged.
    static let baselineRSSSlackMiB = 8.0
    /// Descriptors one kept session holds (`NamespaceSession.descriptorsPerNamespace`).
    static let descriptorsPerSession = 13

    static let usage = """
        usage: portbudget-bench namespaces --flood [--namespaces N] [--destinations N] [--several-every N] [--churn PER_SECOND]
                                                   [--seconds S] [--collection-interval D] [--tenant-uid UID]
                                                   [--memory-read-after S] [--watch-after S]
                                                   [--prefix NAME] [--bin-dir DIR] [--results FILE] [--doc FILE] [--ci]
        Defaults: 1,500 tenant namespaces (each a user + network namespace of uid 4242 with a 2-port range drained),
        one in 10 with 300 destinations, 2 replaced per second, 120 s of scrapes once a collection has seen them,
        serve --all-namespaces collecting every 15 s (its default). Memory is judged 60 s after the tenant left
        (--memory-read-after); --watch-after S goes on scraping until S s after it left, to follow memory longer.
        --ci: 20 namespaces, one in 10 with 20 destinations, 8 s of scrapes, collection every 1s, memory judged
        10 s after the tenant left (seconds, for the test suite).
        Needs root (and user namespaces allowed for unprivileged users).
        """

    init(_ args: [String]) throws {
        command = "portbudget-bench namespaces --flood " + args.joined(separator: " ")
        var arguments = BenchArguments(args, usage: Self.usage)
        while let flag = arguments.next() {
            switch flag {
            case "--namespaces": namespaces = try arguments.count(min: 1)
            case "--destinations": destinations = try arguments.count(min: 1)
            case "--several-every": severalEvery = try arguments.count(min: 0)
            case "--churn": churnPerSecond = try arguments.number(min: 0)
            case "--seconds": seconds = try arguments.number(min: 1)
            case "--collection-interval": collectionInterval = try arguments.value()
            case "--tenant-uid": tenantUID = try arguments.count(min: 1)
            case "--memory-read-after": memoryReadAfter = try arguments.number(min: 0)
            case "--watch-after": watchAfter = try arguments.number(min: 0)
            case "--ci":
                namespaces = 20; destinations = 20; seconds = 8; collectionInterval = "1s"; memoryReadAfter = 10
            case "--prefix": prefix = try arguments.value()
            case "--bin-dir": binDir = try arguments.value()
            case "--results": results = try arguments.value()
            case "--doc": doc = try arguments.value()
            case "--command": command = try arguments.value()
            case "-h", "--help": arguments.help()
            default: throw arguments.unknown
            }
        }
    }

    /// What one scrape showed, and the agent process at that moment.
    struct Scrape {
        var seconds: Double
        var samples: Int
        var bytes: Int
        var rootGroup: Double?
        var listed: Int
        var summed: Int
        var failed: Int
        var sessions: Int
        var collectionSeconds: Double?
        var collectionAge: Double?
        var descriptors: Int?
        var rssKiB: Int?
        /// RSS's anonymous part (the agent's own memory) and file-backed part (its code and libraries).
        var rssAnonKiB: Int? = nil
        var rssFileKiB: Int? = nil
        var tenantListed: Int
        /// `portbudget_alert_instances` summed over its states, and `portbudget_alert_trend_series`.
        var alertInstances: Int?
        var trendSeries: Int?
        /// `portbudget_heap_bytes`: malloc's bytes in use and free after the collection answered from.
        var heapInUse: Double?
        var heapFree: Double?
        /// Seconds after the tenant left, for scrapes taken after it did.
        var sinceGone: Double? = nil
        /// When the collection it answered from started (this process's
        /// monotonic seconds): the age is read after the request was sent, so
        /// this is never later than the true start.
        var asked: Double

        var collectionStarted: Double? {
            guard let collectionAge, let collectionSeconds else { return nil }
            return asked - collectionAge - collectionSeconds
        }

        /// Descriptors beside the kept sessions (other namespaces on a shared
        /// machine may add sessions, never this remainder).
        var remainder: Int? { descriptors.map { $0 - FloodBench.descriptorsPerSession * sessions } }
    }

    // MARK: run

    func run() throws {
        guard geteuid() == 0 else { throw BenchError("needs root: it makes network namespaces and runs a tenant as another uid") }
        let portbudget = binDir + "/portbudget", loadgen = binDir + "/portbudget-loadgen"
        for binary in [portbudget, loadgen] where access(binary, X_OK) != 0 {
            throw BenchError("\(binary) not found (build with `swift build -c release`)")
        }
        NetnsRegistry.prepare()
        let homeName = prefix + "-home"
        let homePath = "/run/netns/" + homeName
        try Namespace.create(homeName)  // the agent's own namespace; this process's main thread lives there
        let homeFD = open(homePath, O_RDONLY | O_CLOEXEC)
        guard homeFD >= 0 else { throw BenchError("open \(homePath): errno \(errno)") }
        let rootOwned = Fleet(prefix: prefix + "-root", loadgen: loadgen, connections: Self.rootHeld, hostFD: homeFD,
                              range: Self.rootRange, port: Self.rootPort)
        let agentLog = "/tmp/portbudget-flood-\(getpid()).log"
        var serve: ScrapeTarget? = nil
        var tenant: Child? = nil
        defer {
            tenant?.finish(timeout: 60)
            serve?.stop()
            rootOwned.removeAll()
            terminateChildren()
            Namespace.delete()
            close(homeFD)
            unlink(agentLog)
        }
        let root = try rootOwned.add()
        let group = "portbudget_tcp_group_ports_used{netns=\"\(root.name)\",local_ip=\"127.0.0.1\",peer_ip=\"127.0.0.1\",peer_port=\"\(Self.rootPort)\"} "

        // The agent as a deployment runs it: root, defaults but the port and (in --ci) the interval.
        let child = try Child.spawn(["nsenter", "--net=" + homePath, portbudget, "serve", "--all-namespaces",
                                     "--listen", "127.0.0.1:\(Self.servePort)", "--collection-interval", collectionInterval],
                                    stderrFile: agentLog)
        serve = ScrapeTarget(child: child, port: Self.servePort)
        guard HTTP.waitReady(port: Self.servePort, path: "/metrics", timeout: 60) else {
            throw BenchError("portbudget serve --all-namespaces did not answer on 127.0.0.1:\(Self.servePort)")
        }
        var scrapes: [(phase: String, scrape: Scrape)] = []
        func take(_ phase: String) throws -> Scrape {
            let s = try scrape(serve!, group: group)
            scrapes.append((phase, s))
            return s
        }

        // Baseline: a collection that started after everything before the tenant was there.
        _ = try serve!.freshCollection(since: monotonicSeconds())
        var baseline: [Scrape] = []
        for _ in 0..<3 { baseline.append(try take("before")); usleep(Self.scrapeInterval) }
        let before = baseline.last!
        log("baseline: \(before.samples) samples, \(before.listed) namespaces listed, \(before.descriptors ?? -1) descriptors, "
            + "RSS \(Format.mib(before.rssKiB.map { Double($0) / 1024 })) MB")

        // The tenant: an unprivileged uid making its namespaces.
        var start = monotonicSeconds()
        tenant = try Child.spawn(["setpriv", "--reuid=\(tenantUID)", "--regid=\(tenantUID)", "--clear-groups", "--",
                                  loadgen, "tenants", "--namespaces", "\(namespaces)", "--range", "40000-40001",
                                  "--destinations", "\(destinations)", "--several-every", "\(severalEvery)",
                                  "--churn", "\(churnPerSecond)"],
                                 stdinPipe: true, stdout: .pipe)
        // Scrapes go on while the tenant builds: the agent must hold its goals throughout.
        var made: String? = nil
        while made == nil {
            if let line = tenant!.readLine(timeout: 1) { made = line; break }
            guard monotonicSeconds() - start < Self.buildTimeout, kill(tenant!.pid, 0) == 0 else { break }
            _ = try take("building")
        }
        guard let made, made.contains("\"error\":null"), Population.made(made) == namespaces else {
            throw BenchError("the tenant did not make its \(namespaces) namespaces: \(made ?? "no answer")")
        }
        let buildSeconds = monotonicSeconds() - start
        log("tenant uid \(tenantUID): \(namespaces) namespaces in \(Format.fixed(buildSeconds, 1)) s")

        // Until a collection that started after the flood was complete.
        start = monotonicSeconds()
        var sawFlood: Scrape? = nil
        while sawFlood == nil {
            let s = try take("waiting")
            if let started = s.collectionStarted, started >= start {
                sawFlood = s
            } else if monotonicSeconds() - start > Self.buildTimeout {
                break
            } else {
                usleep(Self.scrapeInterval)
            }
        }
        let firstCollection = monotonicSeconds() - start
        var counted = 0
        if let sawFlood {
            counted = sawFlood.listed + sawFlood.summed + sawFlood.failed
            log("serve --all-namespaces sees the flood: \(counted) namespaces (\(sawFlood.listed) listed, \(sawFlood.summed) summed, "
                + "\(sawFlood.failed) unmeasured) in a collection of \(Format.fixed(sawFlood.collectionSeconds ?? 0, 1)) s")
            if counted < namespaces {
                log("serve --all-namespaces counts \(counted) namespaces; the tenant holds \(namespaces)")
            }
        } else {
            log("serve --all-namespaces completed no collection of the flood within \(Int(Self.buildTimeout)) s")
        }
        start = monotonicSeconds()
        while sawFlood != nil && monotonicSeconds() - start < seconds {
            usleep(Self.scrapeInterval)
            _ = try take("flood")
        }
        let floodScrapes = scrapes.filter { $0.phase == "flood" }.map(\.scrape)
        log("flood: \(floodScrapes.count) scrapes, median \(Format.ms(median(floodScrapes.map(\.seconds)))) ms, "
            + "collection \(Format.fixed(median(floodScrapes.compactMap(\.collectionSeconds)) ?? 0, 2)) s")

        // The tenant leaves; the agent must come back to its baseline.
        tenant!.release()
        let replacedLine = tenant!.readLine(timeout: 120) ?? ""
        tenant!.finish(timeout: 60)
        tenant = nil
        let replaced = Int(replacedLine.drop { !$0.isNumber }.prefix { $0.isNumber }) ?? 0
        let goneAt = monotonicSeconds()
        var after: Scrape? = nil
        while monotonicSeconds() - goneAt < Self.goneTimeout {
            let s = try take("after")
            if let started = s.collectionStarted, started >= goneAt, s.tenantListed == 0, s.summed <= before.summed {
                after = s
                break
            }
            usleep(Self.scrapeInterval)
        }
        if after != nil {
            for _ in 0..<3 { usleep(Self.scrapeInterval); after = try take("after") }
        }
        let backSeconds = monotonicSeconds() - goneAt
        // Memory: read at `memoryReadAfter`, and followed until `watchAfter`.
        var memory: Scrape? = nil
        while after != nil {
            let since = monotonicSeconds() - goneAt
            if since >= memoryReadAfter && memory == nil { memory = try take("settled") }
            if since >= max(memoryReadAfter, watchAfter) { break }
            usleep(Self.scrapeInterval)
            if since < memoryReadAfter { _ = try take("settling") } else if since < watchAfter { _ = try take("watching") }
        }
        for index in scrapes.indices where ["after", "settling", "settled", "watching"].contains(scrapes[index].phase) {
            scrapes[index].scrape.sinceGone = scrapes[index].scrape.asked - goneAt
        }
        if let memory {
            log("memory \(Format.fixed(memory.asked - goneAt, 1)) s after the tenant left: RSS \(Format.mib(memory.rssKiB.map { Double($0) / 1024 })) MB "
                + "(anonymous \(Format.mib(memory.rssAnonKiB.map { Double($0) / 1024 }))) against \(Format.mib(before.rssKiB.map { Double($0) / 1024 })) MB "
                + "(anonymous \(Format.mib(before.rssAnonKiB.map { Double($0) / 1024 }))) before; alert instances \(memory.alertInstances ?? -1) "
                + "against \(before.alertInstances ?? -1)")
        }
        let agentErrors = readFile(agentLog) ?? ""
        let emfile = agentErrors.split(separator: "\n").filter { $0.contains("EMFILE") || $0.contains("Too many open files") }.count
        guard kill(serve!.child.pid, 0) == 0 else { throw BenchError("serve --all-namespaces died:\n\(agentErrors.suffix(2000))") }

        let report = FloodBenchReport(bench: self, scrapes: scrapes, buildSeconds: buildSeconds, firstCollection: firstCollection,
                                      sawFlood: sawFlood != nil && counted >= namespaces, replaced: replaced, after: after, backSeconds: backSeconds,
                                      memory: memory.map { m in var m = m; m.sinceGone = m.asked - goneAt; return m },
                                      baseline: before, emfileLines: emfile, peakRSSKiB: serve!.child.peakRSSKiB,
                                      rootName: root.name)
        let text = report.markdown
        writeAll(1, "\n" + text)
        let dir = String(results[..<(results.lastIndex(of: "/") ?? results.startIndex)])
        if !dir.isEmpty { mkdir(dir, 0o755) }
        try writeFile(results, text)
        if let doc { try updateDoc(doc, text, marker: Self.marker) }
    }

    /// One timed GET /metrics, read with the agent's descriptors and RSS at that moment.
    func scrape(_ serve: ScrapeTarget, group: String) throws -> Scrape {
        let t0 = monotonicSeconds()
        let (status, body) = try HTTP.get(port: serve.port, path: "/metrics")
        let seconds = monotonicSeconds() - t0
        guard status == 200 else { throw BenchError("scrape answered \(status)") }
        var s = Scrape(seconds: seconds, samples: 0, bytes: body.utf8.count, rootGroup: nil, listed: 0, summed: 0, failed: 0,
                       sessions: 0, collectionSeconds: nil, collectionAge: nil,
                       descriptors: NamespacesBench.descriptorCount(serve.child.pid), rssKiB: serve.child.rssKiB, tenantListed: 0,
                       alertInstances: nil, trendSeries: nil, heapInUse: nil, heapFree: nil, asked: t0)
        func value(_ line: Substring) -> Double? { line.split(separator: " ").last.flatMap { Double($0) } }
        let owner = "owner_uid=\"\(tenantUID)\""
        for line in body.split(separator: "\n") where !line.hasPrefix("#") {
            s.samples += 1
            if line.hasPrefix(group) { s.rootGroup = value(line) }
            else if line.hasPrefix("portbudget_namespaces{state=\"exported\"") { s.listed = Int(value(line) ?? 0) }
            else if line.hasPrefix("portbudget_namespaces{state=\"summed\"") { s.summed = Int(value(line) ?? 0) }
            else if line.hasPrefix("portbudget_namespaces{state=\"failed\"") { s.failed += Int(value(line) ?? 0) }
            else if line.hasPrefix("portbudget_namespace_sessions ") { s.sessions = Int(value(line) ?? 0) }
            else if line.hasPrefix("portbudget_collection_duration_seconds ") { s.collectionSeconds = value(line) }
            else if line.hasPrefix("portbudget_collection_age_seconds ") { s.collectionAge = value(line) }
            else if line.hasPrefix("portbudget_netns_info{"), line.contains(owner) { s.tenantListed += 1 }
            else if line.hasPrefix("portbudget_alert_instances{") { s.alertInstances = (s.alertInstances ?? 0) + Int(value(line) ?? 0) }
            else if line.hasPrefix("portbudget_alert_trend_series ") { s.trendSeries = Int(value(line) ?? 0) }
            else if line.hasPrefix("portbudget_heap_bytes{state=\"in_use\"}") { s.heapInUse = value(line) }
            else if line.hasPrefix("portbudget_heap_bytes{state=\"free\"}") { s.heapFree = value(line) }
        }
        s.rssAnonKiB = serve.child.rssAnonKiB
        s.rssFileKiB = serve.child.rssFileKiB
        return s
    }
}

import Glibc

/// `portbudget-bench soak`: runs `portbudget serve` (with the alert
/// evaluator ticking every second and an Alertmanager that refuses every
/// delivery) against a held socket population in the private namespace,
/// scrapes it back to back, and adds an abuse burst each period — silent
/// connections past the connection cap, and a client that pipelines
/// requests and never reads. Every period it records the server's RSS, open
/// descriptors and scrape times, read from /proc, and at the end it holds
/// them to flatness: what grows with time is a leak.
struct Soak {
    struct Settings {
        var seconds = 3600.0
        var period = 60.0
        var sockets = 10_000
        var binDir: String
        var doc: String? = nil
        var netns = "pbsoak-\(getpid())"
        var command: String

        static let usage = """
            usage: portbudget-bench soak [--seconds N] [--period N] [--sockets N] [--bin-dir DIR] [--doc FILE] [--netns NAME]
            Defaults: an hour, a row every 60 s, 10,000 sockets. Needs root (a private network namespace).
            """

        init(_ args: [String]) throws {
            binDir = executableDirectory()
            command = "portbudget-bench soak " + args.joined(separator: " ")
            var arguments = BenchArguments(args, usage: Settings.usage)
            func number(_ flag: String) throws -> Double {
                guard let v = Double((try? arguments.value()) ?? ""), v > 0 else {
                    throw BenchError("\(flag) takes a number above 0\n" + Settings.usage)
                }
                return v
            }
            while let flag = arguments.next() {
                switch flag {
                case "--seconds": seconds = try number(flag)
                case "--period": period = try number(flag)
                case "--sockets": sockets = Int(try number(flag))
                case "--bin-dir": binDir = try arguments.value()
                case "--doc": doc = try arguments.value()
                case "--netns": netns = try arguments.value()
                case "--command": command = try arguments.value()
                case "-h", "--help": arguments.help()
                default: throw arguments.unknown
                }
            }
            guard period <= seconds else { throw BenchError("--period must not exceed --seconds") }
        }
    }

    /// One row of the report: the server as it stood at the end of a period.
    struct Row {
        var elapsed: Double
        var rssKiB: Int
        var fds: Int
        var scrapes: Int
        /// Scrapes that got no 200: the abuse must never lock a scraper out.
        var failed: Int
        var p50: Double
        var p99: Double
    }

    /// Flatness limits: RSS may grow this much after the first period (the
    /// allocator settles, TIME_WAIT churn varies), descriptors this many, and
    /// the median scrape of the second half of the periods this factor of
    /// the first half's, plus a small absolute slack.
    static let rssGrowthLimitKiB = 16 * 1024
    static let fdGrowthLimit = 4
    static let scrapeSlowdownLimit = 1.5
    static let scrapeSlackSeconds = 0.005
    /// The abuse burst: more silent connections than the cap, and one
    /// pipelining client that never reads, for a few seconds each period.
    static let silentConnections = 80
    static let pipelinedRequests = 2_000
    static let port: UInt16 = 19958

    static func main(_ arguments: [String]) throws {
        let options = try Settings(arguments)
        guard geteuid() == 0 else { throw BenchError("needs root: it makes a private network namespace") }
        let portbudget = options.binDir + "/portbudget", loadgen = options.binDir + "/portbudget-loadgen"
        for binary in [portbudget, loadgen] where access(binary, X_OK) != 0 {
            throw BenchError("\(binary) not found (build with `swift build -c release`)")
        }
        try Namespace.create(options.netns)
        try Namespace.sysctl("net.core.somaxconn", "65535")
        var population: Population? = nil
        var serve: Child? = nil
        let config = "/tmp/portbudget-soak-\(getpid()).yml"
        defer {
            serve?.terminate()
            _ = try? serve?.wait()
            population?.shutdown()
            terminateChildren()
            Namespace.delete()
            unlink(config)
        }
        population = try Population(loadgen: loadgen)
        try population!.grow(to: options.sockets)
        log("soak: \(population!.connections) connections and \(population!.udp) UDP sockets held")
        // Port 1 refuses at once: every tick's delivery fails and retries, which is what should not leak.
        try writeFile(config, """
            evaluation_interval: 1s
            alertmanagers:
              - url: http://127.0.0.1:1
                timeout: 2s
            rules:
              - alert: SoakAlwaysFiring
                when: udp_sockets_in_use
                above: -1

            """)
        serve = try Child.spawn([portbudget, "serve", "--listen", "127.0.0.1:\(port)", "--config", config,
                                 "--max-connections", "64", "--log-level", "critical"])
        guard HTTP.waitReady(port: port, path: "/metrics", timeout: 30) else {
            throw BenchError("portbudget serve did not answer on 127.0.0.1:\(port)")
        }
        var rows: [Row] = []
        let start = monotonicSeconds()
        var periodEnd = start + options.period
        var times: [Double] = []
        var failed = 0
        var abused = false
        while true {
            let now = monotonicSeconds()
            if now >= periodEnd {
                guard let rss = serve!.rssKiB else { throw BenchError("portbudget serve exited during the soak") }
                let sorted = times.sorted()
                rows.append(Row(elapsed: now - start, rssKiB: rss, fds: Self.openDescriptors(serve!.pid),
                                scrapes: times.count, failed: failed, p50: Self.quantile(sorted, 0.5), p99: Self.quantile(sorted, 0.99)))
                log("soak: \(Format.fixed(now - start, 0)) s: RSS \(Format.mib(Double(rss) / 1024)) MB, "
                    + "\(rows.last!.fds) fds, \(times.count) scrapes (\(failed) failed), p50 \(Format.ms(rows.last!.p50)) ms")
                times = []
                failed = 0
                abused = false
                if now - start >= options.seconds { break }
                periodEnd += options.period
            }
            if !abused && now >= periodEnd - options.period / 2 {
                // Midway through each period, so the period's last figures show memory given back.
                try Self.abuse()
                abused = true
                continue
            }
            let t0 = monotonicSeconds()
            if let (status, _) = try? HTTP.get(port: port, path: "/metrics", timeout: 30), status == 200 {
                times.append(monotonicSeconds() - t0)
            } else {
                failed += 1
                usleep(100_000)
            }
        }
        let report = Self.markdown(rows, options: options, connections: population!.connections, udp: population!.udp)
        writeAll(1, "\n" + report.text)
        if let doc = options.doc { try updateDoc(doc, report.text, marker: "portbudget-soak") }
        if !report.failures.isEmpty { throw BenchError("soak: not flat: " + report.failures.joined(separator: "; ")) }
    }

    /// Silent connections past the cap and a pipeliner that never reads, held
    /// for 3 s; then a scrape must still get through.
    static func abuse() throws {
        var fds: [Int32] = []
        defer { fds.forEach { close($0) } }
        for _ in 0..<silentConnections { if let fd = HTTP.openIdle(port: port) { fds.append(fd) } }
        if let fd = HTTP.openIdle(port: port) {
            fds.append(fd)
            var flags = fcntl(fd, F_GETFL)
            flags |= O_NONBLOCK
            _ = fcntl(fd, F_SETFL, flags)
            let request = Array("GET /metrics HTTP/1.1\r\nHost: soak\r\n\r\n".utf8)
            // Non-blocking: once the server stops reading, the kernel buffers fill and sends fail.
            for _ in 0..<pipelinedRequests where request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) > 0 {}
        }
        usleep(3_000_000)
    }

    static func openDescriptors(_ pid: pid_t) -> Int {
        guard let dir = opendir("/proc/\(pid)/fd") else { return -1 }
        defer { closedir(dir) }
        var count = 0
        // Only the name's first byte, read in place: a dirent is d_reclen bytes, not sizeof(dirent).
        let nameOffset = MemoryLayout<dirent>.offset(of: \dirent.d_name)!
        while let entry = readdir(dir) {
            if UnsafeRawPointer(entry).load(fromByteOffset: nameOffset, as: UInt8.self) != UInt8(ascii: ".") { count += 1 }
        }
        return count
    }

    static func quantile(_ sorted: [Double], _ q: Double) -> Double {
        guard !sorted.isEmpty else { return .nan }
        return sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * q).rounded()))]
    }

    static func markdown(_ rows: [Row], options: Settings, connections: Int, udp: Int) -> (text: String, failures: [String]) {
        var text = "### Soak: \(Format.fixed(options.seconds / 60, 1)) minutes of back-to-back scrapes\n\n"
        text += "`\(options.command)` on \(machineDescription()), \(utcDate()). `portbudget serve` with the evaluator "
        text += "every 1 s and an Alertmanager that refuses, \(Format.thousands(connections)) connections and "
        text += "\(Format.thousands(udp)) UDP sockets held; each period one abuse burst (\(silentConnections) silent "
        text += "connections, one client pipelining \(pipelinedRequests) requests and never reading, for 3 s).\n\n"
        text += "| elapsed s | RSS MB | fds | scrapes | failed | p50 ms | p99 ms |\n|---:|---:|---:|---:|---:|---:|---:|\n"
        for row in rows {
            text += "| \(Format.fixed(row.elapsed, 0)) | \(Format.mib(Double(row.rssKiB) / 1024)) | \(row.fds) | "
                + "\(row.scrapes) | \(row.failed) | \(Format.ms(row.p50)) | \(Format.ms(row.p99)) |\n"
        }
        var failures: [String] = []
        let failedScrapes = rows.reduce(0) { $0 + $1.failed }
        if failedScrapes > 0 { failures.append("\(failedScrapes) scrapes got no answer") }
        if let first = rows.first, let last = rows.last, rows.count >= 2 {
            let peak = rows.dropFirst().map(\.rssKiB).max() ?? last.rssKiB
            if peak - first.rssKiB > rssGrowthLimitKiB {
                failures.append("RSS grew \((peak - first.rssKiB) / 1024) MB after the first period (limit \(rssGrowthLimitKiB / 1024) MB)")
            }
            if last.fds - first.fds > fdGrowthLimit { failures.append("descriptors grew from \(first.fds) to \(last.fds)") }
            // Halves, not single periods: one period's median moves with whatever else the machine runs.
            let early = median(rows.prefix(rows.count / 2).map(\.p50)) ?? first.p50
            let late = median(rows.suffix(rows.count / 2).map(\.p50)) ?? last.p50
            if late > early * scrapeSlowdownLimit + scrapeSlackSeconds {
                failures.append("median scrape went from \(Format.ms(early)) to \(Format.ms(late)) ms (first half to second)")
            }
            text += "\nAfter the first period: RSS \(peak >= first.rssKiB ? "+" : "")\(Format.mib(Double(peak - first.rssKiB) / 1024)) MB at most "
                + "(limit \(rssGrowthLimitKiB / 1024) MB), descriptors \(first.fds) → \(last.fds), median scrape "
                + "\(Format.ms(early)) → \(Format.ms(late)) ms (first half to second). "
                + (failures.isEmpty ? "Flat.\n" : "NOT FLAT: \(failures.joined(separator: "; ")).\n")
        } else {
            failures.append("fewer than two periods: nothing to compare")
        }
        return (text, failures)
    }
}

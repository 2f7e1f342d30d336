import Glibc

/// The floor's cost at one namespace count, one value per round.
struct WalkRow {
    var namespaces: Int
    var memberSeconds: [Double] = []
    var hostSeconds: [Double] = []
    var allSeconds: [Double] = []
    var tcpSockets: [Double] = []
    /// TCP sockets in the host-wide hash (every namespace's).
    var hashSockets: [Double] = []
}

/// One churn round: namespaces replaced, then scraped.
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

/// The Markdown that `portbudget-bench namespaces` prints and writes into
/// docs/benchmarks.md: the timing table, the goals, the hash walk and the churn.
struct NamespacesBenchReport {
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
    /// serve collected in the background: its figures are its collections' own durations.
    var background: Bool
    var memberHashes: String
    /// Per round, each TCP table walk alone, averaged over the member namespaces.
    var walkSeconds: [TCPWalk: [Double]] = [:]

    func wall(_ t: NamespacesBench.Tool) -> Double? { median(samples[t, default: []].map(\.wall)) }
    func cpu(_ t: NamespacesBench.Tool) -> Double? { median(samples[t, default: []].compactMap(\.cpu)) }
    func rss(_ t: NamespacesBench.Tool) -> Double? {
        samples[t, default: []].compactMap(\.rssKiB).max().map { Double($0) / 1024 }
    }

    static func verdict(_ ok: Bool) -> String { ok ? "PASS" : "MISS" }
    /// The r² below which the hash-walk fit is not extrapolated.
    static let extrapolationFit = 0.9

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
            (.checkTable, "`check --all-namespaces`: whole process, printing its table", agentCount),
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
        out += background
            ? "serve collects in the background (every \(ScrapeTarget.backgroundInterval) here) and answers scrapes from its latest collection: "
                + "its row is one collection that started after the round's turn came, timed by portbudget_collection_duration_seconds "
                + "and read from the scrape that served it; its CPU is not told apart from the collections around it. "
            : "CPU of a scrape is the serve process's own (/proc/PID/stat); "
        out += "the floor's wall and CPU are its own dump loop's; "
        out += "peak RSS is VmHWM for serve and the floor, wait4's for the processes (the largest process of the ss loop); "
        out += "a child started with posix_spawn (vfork) begins its wait4 peak at the benchmark's own, "
        out += "\(Format.mib(Child.statusField(getpid(), "VmHWM:").map { Double($0) / 1024 })) MB here.\n\n"

        let agent: NamespacesBench.Tool = checkOnly ? .check : .serve
        let agentName = checkOnly ? "check --all-namespaces (serve --all-namespaces not in this build)" : "serve --all-namespaces scrape"
        out += "Goals, \(agentName):\n\n"
        let goalSS = checkOnly ? NamespacesBench.goalCheckSS : NamespacesBench.goalServeSS
        if let a = wall(agent), let s = wall(.ssLoop), let f = wall(.floor) {
            out += "- / the ss loop: \(Format.fixed(a / s, 3))× (goal ≤ \(goalSS)×) — \(Self.verdict(a / s <= goalSS))\n"
            out += "- / the floor: \(Format.fixed(a / f, 2))× (goal ≤ \(NamespacesBench.goalFloor)×) — \(Self.verdict(a / f <= NamespacesBench.goalFloor))\n"
        }
        if let r = rss(agent) {
            out += "- peak RSS: \(Format.mib(r)) MB (goal ≤ \(Int(NamespacesBench.goalRSSMiB)) MB) — \(Self.verdict(r <= NamespacesBench.goalRSSMiB))\n"
        }
        if !checkOnly, let s = wall(.ssLoop) {
            for (tool, how) in [(NamespacesBench.Tool.checkTable, ""), (.check, " --json")] {
                guard let c = wall(tool) else { continue }
                out += "- check --all-namespaces\(how), whole process / the ss loop: \(Format.fixed(c / s, 3))× "
                out += "(goal ≤ \(NamespacesBench.goalCheckSS)×, set at 45 small namespaces) — \(Self.verdict(c / s <= NamespacesBench.goalCheckSS))\n"
            }
        }
        let steady = phases.first.flatMap { median($0.scrapes) }
        let churned = phases.dropFirst().flatMap(\.scrapes)
        if let steady, let last = median(churned) {
            let ratio = last / steady
            out += "- under churn: median \(Format.ms(last)) ms against \(Format.ms(steady)) ms before "
            out += "(\(Format.fixed(ratio, 2))×; flat if ≤ \(NamespacesBench.goalChurn)×) — \(Self.verdict(ratio <= NamespacesBench.goalChurn))\n"
        }

        out += exactCensusSection

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
        if let fit = linearFit(points), fit.b <= 0 || fit.r2 < Self.extrapolationFit {
            out += "\nNo extrapolation: the per-member cost did not grow steadily with the hash here (slope "
            out += "\(Format.fixed(fit.b * 100_000, 3)) ms per 100,000 sockets, r² \(Format.fixed(fit.r2, 2))); "
            out += "at this size the table walk's fixed cost and the machine's noise outweigh the sockets added.\n"
        } else if let fit = linearFit(points) {
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
        out += "as many new ones, then scrapes \(bench.scrapesPerRound) times; after each round the agent must list exactly the namespaces there are."
        out += background ? " Each scrape figure is a fresh background collection's duration.\n\n" : "\n\n"
        out += "| round | replaced so far | \(checkOnly ? "check" : "scrape") median ms | p90 ms | RSS MB | peak RSS MB | descriptors | namespaces the agent lists |\n"
        out += "|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        for p in phases {
            out += "| \(p.round) | \(p.replacedSoFar) | \(Format.ms(median(p.scrapes))) | \(Format.ms(percentile(p.scrapes, 0.9))) "
            out += "| \(Format.mib(p.rssKiB.map { Double($0) / 1024 })) | \(Format.mib(p.peakRSSKiB.map { Double($0) / 1024 })) "
            out += "| \(p.descriptors.map(String.init) ?? "–") | \(p.seen) |\n"
        }
        return out
    }

    /// The kernel's share of a census that tells bind() from connect(): the
    /// requests it makes (one where the namespace's counters prove no
    /// explicitly bound connection left out, two by the kernel's filter
    /// otherwise), timed alone, and the best any agent could then do on this
    /// machine's CPUs against the ss loop.
    var exactCensusSection: String {
        guard let listeners = median(walkSeconds[.listeners] ?? []), let established = median(walkSeconds[.established] ?? []),
              let bind = median(walkSeconds[.bind] ?? []) else { return "" }
        var out = "\n### What an exact census must ask of this kernel\n\n"
        out += "Each TCP table walk timed alone in every member namespace (one TCPDIAG_GETSOCK request for both families, counting "
        out += "messages only), averaged over the members, median of \(walkSeconds[.bind]?.count ?? 0) rounds:\n\n"
        out += "| request (states asked) | tables the kernel walks | ms per member namespace |\n|---|---|---:|\n"
        out += "| LISTEN | listener hash | \(Format.fixed(listeners * 1000, 3)) |\n"
        out += "| every connected state | established hash | \(Format.fixed(established * 1000, 3)) |\n"
        out += "| bound-only | bind table, then the established hash too | \(Format.fixed(bind * 1000, 3)) |\n\n"
        let twoWalks = listeners + bind + established
        let oneWalk = listeners + bind
        out += "The kernel's only sign that bind() gave a connected socket its port is a filter (INET_DIAG_BC_AUTO) that selects "
        out += "sockets and does not label them, so a census that tells bind() from connect() by it would make two requests: "
        out += "\(Format.fixed(twoWalks * 1000, 2)) ms of kernel time per member namespace, timed alone, before any user-space work. "
        out += "portbudget makes one, for every socket but explicitly bound connected ones, and proves from the namespace's "
        out += "counters (sockstat's inuse, snmp's opens) that it left out none; a second only where one exists, which no member "
        out += "here holds. With the failure programs watching, `serve`'s later censuses make one unfiltered request and label "
        out += "the sockets from the first census and the programs (docs/failures.md). One request: "
        out += "\(Format.fixed(oneWalk * 1000, 2)) ms"
        let cpus = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        if let loop = wall(.ssLoop) {
            func spread(_ seconds: Double) -> String {
                let total = seconds * Double(bench.namespaces) / Double(cpus)
                return "\(Format.ms(total)) ms (\(Format.fixed(total / loop, 2))× the ss loop)"
            }
            out += ". Spread over \(cpus) CPUs, the \(bench.namespaces) members' walks take about \(spread(oneWalk)) with one "
            out += "request (check's goal: ≤ \(NamespacesBench.goalCheckSS)×, \(Format.ms(NamespacesBench.goalCheckSS * loop)) ms; "
            out += "serve's: ≤ \(NamespacesBench.goalServeSS)×, \(Format.ms(NamespacesBench.goalServeSS * loop)) ms) and "
            out += "\(spread(twoWalks)) with two. Estimates, not bounds: walks running side by side may find the "
            out += "tables in cache and take less than alone.\n"
        } else {
            out += ".\n"
        }
        return out
    }
}

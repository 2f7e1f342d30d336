import Glibc

/// The Markdown that `portbudget-bench namespaces --flood` prints and writes
/// into docs/benchmarks.md: the scrapes of each phase, and every goal with
/// its verdict.
struct FloodBenchReport {
    var bench: FloodBench
    var scrapes: [(phase: String, scrape: FloodBench.Scrape)]
    var buildSeconds: Double
    var firstCollection: Double
    var sawFlood: Bool
    var replaced: Int
    var after: FloodBench.Scrape?
    var backSeconds: Double
    /// The scrape memory is judged by, `memoryReadAfter` seconds after the tenant left.
    var memory: FloodBench.Scrape?
    var baseline: FloodBench.Scrape
    var emfileLines: Int
    var peakRSSKiB: Int?
    var rootName: String

    static func verdict(_ ok: Bool) -> String { ok ? "PASS" : "FAIL" }
    static func mib(_ kib: Int?) -> Double? { kib.map { Double($0) / 1024 } }

    /// RSS, the heap and the evaluator's state before, at its peak, and every 10 s after the tenant left.
    var timeline: String {
        let all = scrapes.map(\.scrape)
        let left = all.filter { $0.sinceGone != nil }
        guard !left.isEmpty else { return "" }
        var out = "| when | RSS MB | anonymous / file-backed MB | heap in use / free MB | alert instances | trend series |\n|---|---:|---:|---:|---:|---:|\n"
        func row(_ when: String, _ s: FloodBench.Scrape) -> String {
            "| \(when) | \(Format.mib(Self.mib(s.rssKiB))) | \(Format.mib(Self.mib(s.rssAnonKiB))) / \(Format.mib(Self.mib(s.rssFileKiB))) "
                + "| \(Format.mib(s.heapInUse.map { $0 / 1_048_576 })) / "
                + "\(Format.mib(s.heapFree.map { $0 / 1_048_576 })) | \(s.alertInstances.map(Format.thousands) ?? "–") "
                + "| \(s.trendSeries.map(Format.thousands) ?? "–") |\n"
        }
        out += row("before the tenant", baseline)
        if let most = all.max(by: { ($0.alertInstances ?? 0) < ($1.alertInstances ?? 0) }) {
            out += row("most alert instances (\(Format.mib(Self.mib(all.compactMap(\.rssKiB).max()))) MB RSS at most)", most)
        }
        var next = 0.0
        for s in left where (s.sinceGone ?? 0) >= next {
            out += row("\(Format.fixed(s.sinceGone ?? 0, 0)) s after it left", s)
            next = ((s.sinceGone ?? 0) / 10).rounded(.down) * 10 + 10
        }
        return out + "\n"
    }

    var markdown: String {
        let all = scrapes.map(\.scrape)
        let several = bench.severalEvery > 0 ? bench.namespaces / bench.severalEvery : 0
        var out = "Measured \(utcDate()) on \(machineDescription()).\n"
        out += "Command: `\(bench.command)`\n\n"
        out += "Tenant: uid \(bench.tenantUID) (setpriv, no capability) runs `portbudget-loadgen tenants`: \(Format.thousands(bench.namespaces)) "
        out += "user + network namespaces, each held by a process of its own, with a 2-port `ip_local_port_range` drained by 2 loopback "
        out += "connections per destination; \(several) of them with \(bench.destinations) destinations; \(Format.fixed(bench.churnPerSecond, 1)) "
        out += "replaced per second (\(replaced) in all). Made in \(Format.fixed(buildSeconds, 1)) s; the first collection over all of them "
        out += "completed \(Format.fixed(firstCollection, 1)) s later. Beside it, `\(rootName)` (`ip netns add`, root-owned) holds "
        out += "\(FloodBench.rootHeld) of its \(FloodBench.rootRange.high - FloodBench.rootRange.low + 1) ports. `serve --all-namespaces` "
        out += "runs as root in a namespace of its own, collecting every \(bench.collectionInterval), scraped every second.\n\n"

        out += "| phase | scrapes | scrape ms median / max | samples max | bytes max | collection s median / max | namespaces listed / summed / unmeasured (last) | descriptors max | RSS MB max | 9-of-10 group in every scrape |\n"
        out += "|---|---:|---:|---:|---:|---:|---|---:|---:|---|\n"
        for phase in ["before", "building", "waiting", "flood", "after", "settling", "settled", "watching"] {
            let s = scrapes.filter { $0.phase == phase }.map(\.scrape)
            guard let last = s.last else { continue }
            out += "| \(phase) | \(s.count) | \(Format.ms(median(s.map(\.seconds)))) / \(Format.ms(s.map(\.seconds).max())) "
            out += "| \(Format.thousands(s.map(\.samples).max() ?? 0)) | \(Format.thousands(s.map(\.bytes).max() ?? 0)) "
            let collections = s.compactMap(\.collectionSeconds)
            out += "| \(Format.fixed(median(collections) ?? 0, 2)) / \(Format.fixed(collections.max() ?? 0, 2)) "
            out += "| \(last.listed) / \(last.summed) / \(last.failed) "
            out += "| \(s.compactMap(\.descriptors).max().map(String.init) ?? "–") | \(Format.mib(Self.mib(s.compactMap(\.rssKiB).max()))) "
            out += "| \(s.allSatisfy { $0.rootGroup == Double(FloodBench.rootHeld) } ? "yes" : "no") |\n"
        }
        out += "\nPhases: before the tenant; while it makes its namespaces; waiting for the first collection that started after it "
        out += "had made them all; \(Int(bench.seconds)) s of scrapes after that; after it left, until a collection without it and 3 more; "
        out += "then settling until \(Int(bench.memoryReadAfter)) s after it left, when memory is read (settled)\(bench.watchAfter > bench.memoryReadAfter ? ", and watching until \(Int(bench.watchAfter)) s" : ""). "
        out += "Scrape figures are one `GET /metrics` each (HTTP/1.0, no gzip), answered from the latest complete background "
        out += "collection; collection seconds are the agent's own `portbudget_collection_duration_seconds`; descriptors and RSS are "
        out += "/proc/PID/fd and VmRSS of the agent read at each scrape.\n\n"
        out += timeline

        out += "Goals:\n\n"
        let slowest = all.map(\.seconds).max() ?? 0
        let flood = scrapes.filter { $0.phase == "flood" }.map(\.scrape)
        out += "- the tenant's namespaces counted: \(sawFlood ? "every one, in the first collection after they were made" : "not all, in the first collection after they were made") "
        out += "— \(Self.verdict(sawFlood))\n"
        if !flood.isEmpty {
            out += "  (while flooded, unmeasured per collection: median \(Int(median(flood.map { Double($0.failed) }) ?? 0)), "
            out += "at most \(flood.map(\.failed).max() ?? 0); summed median \(Int(median(flood.map { Double($0.summed) }) ?? 0)))\n"
        }
        out += "- every scrape ≤ \(Format.fixed(FloodBench.goalScrapeSeconds, 0)) s: slowest \(Format.ms(slowest)) ms "
        out += "— \(Self.verdict(slowest <= FloodBench.goalScrapeSeconds))\n"
        let samples = all.map(\.samples).max() ?? 0, bytes = all.map(\.bytes).max() ?? 0
        out += "- ≤ \(Format.thousands(FloodBench.goalSamples)) samples per scrape: at most \(Format.thousands(samples)) "
        out += "— \(Self.verdict(samples <= FloodBench.goalSamples))\n"
        out += "- ≤ 4 MB per scrape: at most \(Format.fixed(Double(bytes) / 1_048_576, 2)) MB — \(Self.verdict(bytes <= FloodBench.goalBytes))\n"
        let descriptors = all.compactMap(\.descriptors).max() ?? .max
        out += "- descriptors ≤ \(Format.thousands(FloodBench.goalDescriptors)): at most \(Format.thousands(descriptors)) "
        out += "— \(Self.verdict(descriptors <= FloodBench.goalDescriptors))\n"
        let rss = Self.mib(all.compactMap(\.rssKiB).max()) ?? .infinity
        out += "- RSS ≤ \(Int(FloodBench.goalRSSMiB)) MB: at most \(Format.mib(rss)) MB (peak \(Format.mib(Self.mib(peakRSSKiB))) MB) "
        out += "— \(Self.verdict(rss <= FloodBench.goalRSSMiB && (Self.mib(peakRSSKiB) ?? 0) <= FloodBench.goalRSSMiB))\n"
        out += "- no EMFILE in the agent's log: \(emfileLines) line\(emfileLines == 1 ? "" : "s") — \(Self.verdict(emfileLines == 0))\n"
        let missing = all.filter { $0.rootGroup != Double(FloodBench.rootHeld) }.count
        out += "- the root-owned namespace's 9-of-10 group in every scrape: missing or wrong in \(missing) of \(all.count) "
        out += "— \(Self.verdict(missing == 0))\n"
        if let after {
            out += "- back to baseline \(Format.fixed(backSeconds, 1)) s after the tenant left "
            let seriesOK = after.tenantListed == 0 && after.summed <= baseline.summed
            out += "(a collection without it, then 3 scrapes):\n"
            out += "  - series: \(Format.thousands(after.samples)) samples against \(Format.thousands(baseline.samples)), "
            out += "\(after.summed) summed against \(baseline.summed), \(after.tenantListed) of the tenant's listed "
            out += "— \(Self.verdict(seriesOK))\n"
            let descriptorsOK = (after.remainder ?? .max) <= (baseline.remainder ?? 0) + FloodBench.baselineDescriptorSlack
            out += "  - descriptors: \(after.descriptors.map(String.init) ?? "–") against \(baseline.descriptors.map(String.init) ?? "–") "
            out += "(beside the kept sessions: \(after.remainder.map(String.init) ?? "–") against \(baseline.remainder.map(String.init) ?? "–"), "
            out += "allowed +\(FloodBench.baselineDescriptorSlack)) — \(Self.verdict(descriptorsOK))\n"
            if let memory {
                let anonAfter = Self.mib(memory.rssAnonKiB) ?? .infinity, anonBefore = Self.mib(baseline.rssAnonKiB) ?? 0
                out += "  - memory \(Format.fixed(memory.sinceGone ?? 0, 1)) s after the tenant left: anonymous RSS \(Format.mib(anonAfter)) MB "
                out += "against \(Format.mib(anonBefore)) MB before, allowed +\(Int(FloodBench.baselineRSSSlackMiB)) MB (RSS \(Format.mib(Self.mib(memory.rssKiB)))"
                out += " against \(Format.mib(Self.mib(baseline.rssKiB))) MB, file-backed \(Format.mib(Self.mib(memory.rssFileKiB))) against "
                out += "\(Format.mib(Self.mib(baseline.rssFileKiB))) MB; peak RSS \(Format.mib(Self.mib(peakRSSKiB))) MB) "
                out += "— \(Self.verdict(anonAfter <= anonBefore + FloodBench.baselineRSSSlackMiB))\n"
                let instancesOK = memory.alertInstances != nil && memory.alertInstances == baseline.alertInstances
                out += "  - the evaluator's alert instances: \(memory.alertInstances.map(Format.thousands) ?? "–") against "
                out += "\(baseline.alertInstances.map(Format.thousands) ?? "–") before (trend series \(memory.trendSeries.map(Format.thousands) ?? "–") "
                out += "against \(baseline.trendSeries.map(Format.thousands) ?? "–")) — \(Self.verdict(instancesOK))\n"
            } else {
                out += "  - memory: not read — FAIL\n"
            }
        } else {
            out += "- back to baseline: no collection without the tenant within \(Int(FloodBench.goneTimeout)) s — FAIL\n"
        }
        return out
    }
}

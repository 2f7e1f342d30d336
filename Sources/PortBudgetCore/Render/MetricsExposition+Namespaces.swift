/// Every network namespace in one exposition (`--all-namespaces`): each
/// namespace's families carry a `netns` label first, `--top` bounds the
/// group series across all namespaces together, and every namespace keeps
/// its aggregates (usable ports, bound ports, group counts, utilizations).
extension MetricsExposition {
    /// Who lives in each namespace, and how many there are.
    static func writeNamespaceFamilies(_ collection: CollectionResult, into w: inout ExpositionWriter) {
        let namespaces = collection.namespaces
        w.family("portbudget_netns_info", .gauge,
                 help: "Always 1, one series per network namespace: its inode and who lives in it (first pid, its comm, unit, container, pod).",
                 namespaces.map { .init(infoLabels($0.netns), 1) })
        w.single("portbudget_namespaces", .gauge,
                 help: "Network namespaces in this collection, measured or not (see portbudget_scrape_collector_success).",
                 namespaces.count)
        w.single("portbudget_namespace_unreadable_processes", .gauge,
                 help: "Processes whose network namespace the agent could not open (another user's without CAP_SYS_PTRACE, or hidden).",
                 collection.unreadableProcesses)
    }

    static func infoLabels(_ n: NetnsInfo) -> [(name: String, value: String)] {
        [("netns", n.name), ("inode", String(n.inode)), ("pid", n.pids.first.map(String.init) ?? ""),
         ("comm", n.comm ?? ""), ("unit", n.unit ?? ""), ("container_id", n.containerID ?? ""),
         ("pod_uid", n.podUID ?? ""), ("pod", n.pod ?? "")]
    }

    /// How many of each namespace's TCP and SNAT groups (each list worst
    /// first) fall in the `top` most utilized across all namespaces (0: all).
    static func topShares(_ reports: [PortBudgetReport?], top: Int) -> [(tcp: Int, snat: Int)] {
        func shares(_ lists: [[(utilization: Double, used: Int)]]) -> [Int] {
            guard top > 0 else { return lists.map(\.count) }
            var all: [(utilization: Double, used: Int, owner: Int)] = []
            for (owner, list) in lists.enumerated() {
                // Beyond its own first `top`, no group of a namespace can be in the top overall.
                for g in list.prefix(top) { all.append((g.utilization, g.used, owner)) }
            }
            all.sort { a, b in
                if a.utilization != b.utilization { return a.utilization > b.utilization }
                if a.used != b.used { return a.used > b.used }
                return a.owner < b.owner
            }
            var counts = [Int](repeating: 0, count: lists.count)
            for g in all.prefix(top) { counts[g.owner] += 1 }
            return counts
        }
        let tcp = shares(reports.map { $0?.tcp.groups.map { ($0.utilization, $0.used) } ?? [] })
        let snat = shares(reports.map { $0?.snat?.groups.map { ($0.utilization, $0.used) } ?? [] })
        return zip(tcp, snat).map { ($0, $1) }
    }
}

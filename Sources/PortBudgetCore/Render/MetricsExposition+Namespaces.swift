/// Every network namespace in one exposition (`--all-namespaces`): each
/// namespace's families carry a `netns` label first, `--top` bounds the
/// group series across all namespaces together, and every namespace keeps
/// its aggregates (usable ports, bound ports, group counts, utilizations).
extension MetricsExposition {
    /// Who lives in each listed namespace; how many namespaces there are,
    /// listed, summed or failed; the summed ones' worst utilizations; and
    /// what watching them costs in descriptors.
    static func writeNamespaceFamilies(_ collection: CollectionResult, split: NamespaceBudget.Split,
                                       into w: inout ExpositionWriter) {
        let namespaces = collection.namespaces
        w.family("portbudget_netns_info", .gauge,
                 help: "Always 1, one series per network namespace listed: its inode, who lives in it (first pid, its comm, unit, container, pod), and the uid owning its user namespace when that is not the host's.",
                 split.listed.map { .init(infoLabels(namespaces[$0].netns), 1) })
        var states: [ExpositionWriter.Sample] = [
            .init([("state", "exported"), ("reason", "")], Double(split.listed.count)),
            .init([("state", "summed"), ("reason", "")], Double(split.summed.count)),
        ]
        var reasons: [String: Int] = [:]
        for index in split.failed {
            reasons[NamespaceBudget.reason(namespaces[index].missingReportReason ?? "no report"), default: 0] += 1
        }
        for (reason, count) in reasons.sorted(by: { $0.key < $1.key }) {
            states.append(.init([("state", "failed"), ("reason", reason)], Double(count)))
        }
        w.family("portbudget_namespaces", .gauge,
                 help: "Network namespaces in this collection: exported one by one (measured or not), summed (measured, beyond the namespace budget), failed (not measured, beyond the budget, by reason).",
                 states)
        if !split.summed.isEmpty {
            let reports = split.summed.compactMap { namespaces[$0].report }
            w.family("portbudget_summed_namespaces_max_utilization_ratio", .gauge,
                     help: "The worst utilization (0-1) of each limit over the namespaces beyond the namespace budget, which are not listed one by one.",
                     [.init([("limit", "tcp_group")], reports.map(\.tcp.maxGroupUtilization).max() ?? 0),
                      .init([("limit", "tcp_bind")], reports.map(\.tcp.bindUtilization).max() ?? 0),
                      .init([("limit", "udp")], reports.map(\.udp.utilization).max() ?? 0)])
        }
        w.single("portbudget_namespace_unreadable_processes", .gauge,
                 help: "Processes whose network namespace the agent could not open (another user's without CAP_SYS_PTRACE, or hidden).",
                 collection.unreadableProcesses)
        if let descriptors = collection.openDescriptors {
            w.single("portbudget_open_descriptors", .gauge,
                     help: "Descriptors the agent held when the collection ended: namespace sessions kept open are most of them, bounded by the session capacity.",
                     descriptors)
        }
        if let sessions = collection.keptSessions {
            w.single("portbudget_namespace_sessions", .gauge,
                     help: "Namespaces whose sockets and files the agent keeps open between collections; the others are entered again each time.",
                     sessions)
        }
    }

    static func infoLabels(_ n: NetnsInfo) -> [(name: String, value: String)] {
        [("netns", n.name), ("inode", String(n.inode)), ("pid", n.pids.first.map(String.init) ?? ""),
         ("comm", n.comm ?? ""), ("unit", n.unit ?? ""), ("container_id", n.containerID ?? ""),
         ("pod_uid", n.podUID ?? ""), ("pod", n.pod ?? ""),
         ("owner_uid", n.unprivilegedOwnerUID.map(String.init) ?? "")]
    }

    /// How many of each namespace's TCP and SNAT groups (each list worst
    /// first) fall in the `top` most utilized across all namespaces (0: all):
    /// those of host-owned namespaces first, as the namespace budget ranks
    /// them, so a tenant's drained namespaces cannot push a host
    /// namespace's groups out of the exposition.
    static func topShares(_ reports: [PortBudgetReport?], hostOwned: [Bool], top: Int) -> [(tcp: Int, snat: Int)] {
        func shares(_ lists: [[(utilization: Double, used: Int)]]) -> [Int] {
            guard top > 0 else { return lists.map(\.count) }
            var all: [(utilization: Double, used: Int, owner: Int)] = []
            for (owner, list) in lists.enumerated() {
                // Beyond its own first `top`, no group of a namespace can be in the top overall.
                for g in list.prefix(top) { all.append((g.utilization, g.used, owner)) }
            }
            all.sort { a, b in
                if hostOwned[a.owner] != hostOwned[b.owner] { return hostOwned[a.owner] }
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

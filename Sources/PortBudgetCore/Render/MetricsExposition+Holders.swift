/// Who holds the ports, in the exposition. Cardinality is bounded: at most
/// `holdersPerGroup` series for each exported (top N) group, and
/// `holdersHostWide` per protocol host-wide. Absent when the report names no
/// holders (no cgroup v2 hierarchy), never invented.
extension MetricsExposition {
    /// Holder series per exported destination group.
    public static let holdersPerGroup = 3
    /// Holder series per protocol for the host-wide budgets; also how many
    /// holders `serve` and `textfile` ask the census to name.
    public static let holdersHostWide = 10

    static func writeHolders(_ r: PortBudgetReport, into w: inout ExpositionWriter) {
        let groups = r.tcp.groups
        guard groups.contains(where: { $0.holders != nil }) || r.tcp.holders != nil else { return }
        w.family("portbudget_tcp_group_holder_ports", .gauge,
                 help: "Ports of a destination group held by one cgroup (unit, container, pod), for the exported groups' \(holdersPerGroup) biggest holders. TIME_WAIT belongs to nobody.",
                 groups.flatMap { g in
                     (g.holders ?? []).prefix(holdersPerGroup).map { holder in
                         ExpositionWriter.Sample([("local_ip", g.localIP), ("peer_ip", g.peerIP), ("peer_port", String(g.peerPort))]
                                                 + labels(holder), holder.ports)
                     }
                 })
        let hostWide = [("tcp", r.tcp.holders), ("udp", r.udp.holders)].flatMap { protocolName, holders in
            (holders ?? []).prefix(holdersHostWide).map { ExpositionWriter.Sample([("protocol", protocolName)] + labels($0), $0.ports) }
        }
        w.family("portbudget_cgroup_bound_ports", .gauge,
                 help: "Usable ports a cgroup holds host-wide (what bind(addr, 0) and UDP autobind compete for), for the \(holdersHostWide) biggest holders per protocol.",
                 hostWide)
    }

    /// A gone cgroup keeps its id in `cgroup` ("deleted:ID"), so its series stays its own.
    static func labels(_ holder: Holder) -> [(name: String, value: String)] {
        [("cgroup", holder.cgroup ?? (holder.gone ? "deleted:\(holder.cgroupID)" : "other")),
         ("unit", holder.unit ?? ""), ("container_id", holder.containerID ?? ""), ("pod_uid", holder.podUID ?? "")]
    }
}

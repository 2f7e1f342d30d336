/// The NAT's port budget and the conntrack table in the exposition.
/// Absent, not zero, when the conntrack collector failed.
extension MetricsExposition {
    static func writeSNAT(_ r: PortBudgetReport, into w: inout ExpositionWriter) {
        if let snat = r.snat {
            let groups = snat.groups
            func labels(_ g: PortBudgetReport.SNATGroup) -> [(name: String, value: String)] {
                [("protocol", g.protocol), ("source_ip", g.sourceIP), ("peer_ip", g.peerIP), ("peer_port", String(g.peerPort))]
            }
            w.single("portbudget_snat_port_range_low", .gauge,
                     help: "Lowest source port the NAT hands out (--snat-port-range, or the kernel's 1024).", snat.portRange.low)
            w.single("portbudget_snat_port_range_high", .gauge,
                     help: "Highest source port the NAT hands out (inclusive).", snat.portRange.high)
            w.single("portbudget_snat_groups", .gauge,
                     help: "SNAT groups (protocol, NAT source IP, peer IP, peer port), all of them, before the --top bound.",
                     snat.groupCount)
            w.single("portbudget_snat_max_group_utilization_ratio", .gauge,
                     help: "Utilization (0-1) of the most utilized SNAT group; 0 when there is none.",
                     snat.maxGroupUtilization)
            w.family("portbudget_snat_group_ports_used", .gauge,
                     help: "Distinct translated source ports conntrack holds towards this peer for this NAT source. Top groups only.",
                     groups.map { .init(labels($0), $0.used) })
            w.family("portbudget_snat_group_ports_capacity", .gauge,
                     help: "Ports of the NAT range; at used = capacity the NAT drops new connections to this peer (insert_failed). Top groups only.",
                     groups.map { .init(labels($0), $0.capacity) })
        }
        guard let t = r.conntrack else { return }
        w.single("portbudget_conntrack_entries", .gauge,
                 help: "Entries in this network namespace's conntrack table.", Double(t.entries))
        if t.limit > 0 {
            w.single("portbudget_conntrack_entries_limit", .gauge,
                     help: "nf_conntrack_max: at this many entries new connections are dropped.", Double(t.limit))
        }
        w.single("portbudget_conntrack_insert_failed_total", .counter,
                 help: "Conntrack entries that could not be inserted, summed over CPUs; a full SNAT group makes it rise.",
                 Double(t.insertFailed))
        w.single("portbudget_conntrack_drop_total", .counter,
                 help: "Packets conntrack dropped, summed over CPUs.", Double(t.drop))
        w.single("portbudget_conntrack_early_drop_total", .counter,
                 help: "Entries evicted early to make room in a full table, summed over CPUs.", Double(t.earlyDrop))
        w.single("portbudget_conntrack_search_restart_total", .counter,
                 help: "Conntrack hash lookups restarted, summed over CPUs.", Double(t.searchRestart))
        w.single("portbudget_conntrack_clash_resolve_total", .counter,
                 help: "Insertion clashes conntrack resolved, summed over CPUs.", Double(t.clashResolve))
    }
}

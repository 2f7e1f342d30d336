/// Failed port allocations counted in the kernel by the failure collector
/// (docs/failures.md). Absent when the collector did not run or failed:
/// then `portbudget_scrape_collector_success{collector="failures"}` says so.
extension MetricsExposition {
    static func writeFailures(_ failures: PortAllocationFailures?, into w: inout ExpositionWriter) {
        guard let failures else { return }
        w.family("portbudget_port_allocation_failures_total", .counter,
                 help: "Port allocations the kernel refused since the agent loaded its programs: connect() EADDRNOTAVAIL, bind(addr, 0)/listen() EADDRINUSE, UDP autobind EAGAIN. Above zero, applications are already failing.",
                 failures.totals.map { .init(kindLabels($0.kind), Double($0.count)) })
        w.family("portbudget_cgroup_port_allocation_failures_total", .counter,
                 help: "Failed port allocations by the cgroup (unit, container, pod) of the failing thread, for the \(PortAllocationFailures.holdersExported) biggest counts per namespace.",
                 failures.holders.map { h in
                     .init(kindLabels(h.kind) + [
                         ("cgroup", h.cgroup ?? "deleted:\(h.cgroupID)"), ("unit", h.unit ?? ""),
                         ("container_id", h.containerID ?? ""), ("pod_uid", h.podUID ?? ""),
                     ], Double(h.count))
                 })
        w.family("portbudget_port_allocation_failure_drops_total", .counter,
                 help: "Failures the kernel side could not count (count_keys: its counter map was full) or hand to `portbudget trace` (events: ring full; pending: too many calls in flight), sockets bound before connect() a namespace's full map could not remember (bound_sockets), and namespaces given no such map (bound_namespaces: the tenants' share or the table of maps was full). Host-wide.",
                 (failures.drops ?? [:]).sorted { $0.key < $1.key }.map { .init([("reason", $0.key)], Double($0.value)) })
        if let remembered = failures.boundSocketsRemembered {
            w.single("portbudget_failure_collector_bound_sockets", .gauge,
                     help: "TCP sockets the failure programs remember as bound before connect(), host-wide, as of each namespace's last collection: each namespace has a map of its own, sized by its allowance (a full one counts drops_total{reason=\"bound_sockets\"}); the agent forgets closed ones as it collects their namespace.",
                     remembered)
        }
        if let once = failures.namespacesWalkedOnce {
            w.single("portbudget_failure_collector_namespaces_walked_once", .gauge,
                     help: "Namespaces whose last census asked the kernel for their TCP sockets once, unfiltered, labelling them from an earlier census and the sockets the failure programs remember, host-wide; the others (a first census, a map that refused a socket, or no map) went through the kernel's bind filter, once where the namespace's counters prove no explicitly bound connection was left out, twice otherwise.",
                     once)
        }
    }

    static func kindLabels(_ kind: FailureKind) -> [(name: String, value: String)] {
        [("protocol", kind.protocolName), ("call", kind.call.name), ("errno", kind.errnoName)]
    }
}

/// The exporter's metric contract: turns one collection into exposition
/// families. Pure, so the golden test and both `serve` and `textfile` share it.
///
/// When the census failed (no report), only build info and the per-collector
/// duration and success gauges are written: a failed collector shows as
/// `portbudget_scrape_collector_success 0`, and no port number is invented or
/// carried over from an earlier collection.
public enum MetricsExposition {
    public static let prefix = "portbudget_"

    /// The whole exposition of one collection, ending with a newline.
    /// `top` bounds the per-group series to the most utilized groups (0: all);
    /// aggregates always describe every group. Across namespaces, `budget`
    /// bounds the namespaces listed one by one; the rest are summed.
    public static func render(_ collection: CollectionResult, top: Int, version: String,
                              budget: NamespaceBudget = NamespaceBudget()) -> String {
        var writer = ExpositionWriter()
        write(collection, top: top, version: version, budget: budget, into: &writer)
        return writer.text
    }

    /// The same, then whatever each of `observers` adds, in order: what
    /// `serve` answers and `textfile` writes.
    public static func render(_ collection: CollectionResult, top: Int, version: String, budget: NamespaceBudget,
                              observers: [any CollectionObserver]) async -> String {
        var writer = ExpositionWriter()
        write(collection, top: top, version: version, budget: budget, into: &writer)
        for observer in observers { await observer.collected(collection, writer: &writer) }
        return writer.text
    }

    public static func write(_ collection: CollectionResult, top: Int, version: String,
                             budget: NamespaceBudget = NamespaceBudget(), into w: inout ExpositionWriter) {
        w.single("portbudget_build_info", .gauge,
                 help: "Always 1; the version label says which portbudget produced these metrics.",
                 1.0, labels: [("version", version)])
        let split = collection.acrossNamespaces ? budget.split(collection.namespaces)
            : NamespaceBudget.Split(listed: Array(collection.namespaces.indices), summed: [], failed: [])
        let listed = split.listed.map { collection.namespaces[$0] }
        let shares = topShares(listed.map(\.report), hostOwned: listed.map(\.netns.ownedByHost), top: top)
        for (position, namespace) in listed.enumerated() {
            w.commonLabels = collection.acrossNamespaces ? [("netns", namespace.netns.name)] : []
            writeCollectors(namespace.outcomes, into: &w)
            guard let report = namespace.report else { continue }
            let share = shares[position]
            writeReport(report, exported: report.keepingGroups(tcp: share.tcp, snat: share.snat), into: &w)
        }
        w.commonLabels = []
        if collection.acrossNamespaces {
            writeNamespaceFamilies(collection, split: split, into: &w)
        }
    }

    /// One namespace's port budget. `exported` is `report` listing only the
    /// groups to export as series; aggregates and findings describe every group.
    static func writeReport(_ report: PortBudgetReport, exported: PortBudgetReport, into w: inout ExpositionWriter) {
        writeRange(exported, into: &w)
        writeTCP(exported, into: &w)
        writeUDP(exported, into: &w)
        writeHolders(exported, into: &w)
        writeSysctls(exported, into: &w)
        writeCounters(exported.counters, into: &w)
        writeSNAT(exported, into: &w)
        writeFailures(exported.failures, into: &w)
        writeFindings(report.findings, into: &w)
    }

    /// One series per current finding (see `Diagnosis`), most severe first;
    /// the family is left out when there is none. Destination findings carry
    /// the group's labels; `fix` is the one-line action, free of measured
    /// counts so a series lasts as long as its cause.
    static func writeFindings(_ findings: [Finding], into w: inout ExpositionWriter) {
        w.family("portbudget_finding", .gauge,
                 help: "1 for each cause of port pressure the agent names now (id, severity, scope), with its fix; see docs/runbook.md#<id>.",
                 findings.map { f in
                     var labels: [(name: String, value: String)] = [
                         ("id", f.id.rawValue), ("severity", f.severity.rawValue), ("scope", f.scope.kind.rawValue)]
                     if f.scope.kind == .tcpDestination {
                         labels += [("local_ip", f.scope.localIP ?? ""), ("peer_ip", f.scope.peerIP ?? ""),
                                    ("peer_port", f.scope.peerPort.map(String.init) ?? "")]
                     }
                     labels.append(("fix", f.action))
                     return .init(labels, 1)
                 })
    }

    /// In the order the collectors ran, which is the registry's.
    static func writeCollectors(_ outcomes: [CollectorOutcome], into w: inout ExpositionWriter) {
        w.family("portbudget_scrape_collector_duration_seconds", .gauge,
                 help: "How long each collector took in this collection.",
                 outcomes.map { .init([("collector", $0.name)], $0.seconds) })
        w.family("portbudget_scrape_collector_success", .gauge,
                 help: "1 when the collector succeeded in this collection, 0 when it failed; the metrics it feeds are then absent.",
                 outcomes.map { .init([("collector", $0.name)], $0.success ? 1 : 0) })
    }

    static func writeRange(_ r: PortBudgetReport, into w: inout ExpositionWriter) {
        w.single("portbudget_port_range_low", .gauge,
                 help: "Lowest port of net.ipv4.ip_local_port_range, shared by TCP and UDP, IPv4 and IPv6.",
                 r.portRange.low)
        w.single("portbudget_port_range_high", .gauge,
                 help: "Highest port of net.ipv4.ip_local_port_range (inclusive).", r.portRange.high)
        w.single("portbudget_ports_reserved", .gauge,
                 help: "Ports of the range listed in net.ipv4.ip_local_reserved_ports, which autobind skips.",
                 r.portRange.reserved)
        w.single("portbudget_ports_usable", .gauge,
                 help: "Ports autobind may hand out: the range minus reserved ports.", r.portRange.usable)
    }

    /// `r` lists the groups to export; its aggregates describe every group.
    static func writeTCP(_ r: PortBudgetReport, into w: inout ExpositionWriter) {
        let groups = r.tcp.groups
        func labels(_ g: PortBudgetReport.Group) -> [(name: String, value: String)] {
            [("local_ip", g.localIP), ("peer_ip", g.peerIP), ("peer_port", String(g.peerPort))]
        }
        w.single("portbudget_tcp_groups", .gauge,
                 help: "TCP destination groups (local IP, peer IP, peer port), all of them, before the --top bound.",
                 r.tcp.groupCount)
        w.single("portbudget_tcp_max_group_utilization_ratio", .gauge,
                 help: "Utilization (0-1) of the most utilized TCP destination group; 0 when there is none.",
                 r.tcp.maxGroupUtilization)
        w.family("portbudget_tcp_group_ports_used", .gauge,
                 help: "Usable ports a new connect() to this destination may not take: held towards it, TIME_WAIT entries the kernel would not reuse included. Top groups only.",
                 groups.map { .init(labels($0), $0.used) })
        w.family("portbudget_tcp_group_ports_capacity", .gauge,
                 help: "Ports a connect() to this destination can use at most: usable ports minus explicitly bound TCP ports. Top groups only.",
                 groups.map { .init(labels($0), $0.capacity) })
        w.family("portbudget_tcp_group_ports_time_wait", .gauge,
                 help: "TIME_WAIT entries towards this destination, reusable or not. Top groups only.",
                 groups.map { .init(labels($0), $0.timeWait) })
        w.family("portbudget_tcp_group_ports_fin_wait2", .gauge,
                 help: "FIN_WAIT2 sockets towards this destination; they always hold their port. Top groups only.",
                 groups.map { .init(labels($0), $0.finWait2) })
        w.family("portbudget_tcp_group_utilization_ratio", .gauge,
                 help: "Used over capacity (0-1) for this destination; at 1 connect() fails with EADDRNOTAVAIL. Top groups only.",
                 groups.map { .init(labels($0), $0.utilization) })
        w.single("portbudget_tcp_bound_ports", .gauge,
                 help: "Distinct usable ports held by any TCP socket: what bind(addr, 0) competes for.",
                 r.tcp.boundPorts)
        w.single("portbudget_tcp_bind_utilization_ratio", .gauge,
                 help: "TCP bound ports over usable ports (0-1); at 1 bind(addr, 0) fails with EADDRINUSE.",
                 r.tcp.bindUtilization)
        w.single("portbudget_tcp_explicit_bound_ports", .gauge,
                 help: "Usable ports held by explicit TCP binds, listeners included: lost to every connect().",
                 r.tcp.explicitBoundPorts)
        w.family("portbudget_tcp_bound_before_connect_ports", .gauge,
                 help: "Ports of connected sockets taken with bind() before connect(), lost to every other destination, by how they are known: explicit_port (SOCK_DIAG shows the bind lock), socket_cookie (the failure collector saw connect() begin on a bound port), inferred (single-connection ports over several destinations: a lower bound).",
                 [("explicit_port", r.tcp.explicitConnectedPorts - (r.tcp.bindTracking?.boundBeforeConnectPorts ?? 0)),
                  ("socket_cookie", r.tcp.bindTracking?.boundBeforeConnectPorts ?? 0),
                  ("inferred", r.inferredBindBeforeConnectPorts)].map { .init([("evidence", $0.0)], $0.1) })
        w.single("portbudget_tcp_destination_capacity_exact", .gauge,
                 help: "1 when the failure collector saw every connected socket begin connect(), so each destination's capacity is what the kernel will allow; 0 when some port origins are inferred (no collector, or sockets older than it): then, with inferred bind-before-connect ports above 0, capacities are upper bounds.",
                 r.tcp.bindTracking?.exact == true ? 1 : 0)
        w.single("portbudget_tcp_listener_ports_in_range", .gauge,
                 help: "TCP listeners on ports inside the usable range.", r.tcp.listenerPortsInRange.count)
        w.family("portbudget_tcp_sockets", .gauge,
                 help: "TCP sockets on usable ports, by state.",
                 r.tcp.socketsByState.sorted { $0.key < $1.key }.map { .init([("state", $0.key)], $0.value) })
    }

    static func writeUDP(_ r: PortBudgetReport, into w: inout ExpositionWriter) {
        w.single("portbudget_udp_bound_ports", .gauge,
                 help: "Distinct usable ports held by UDP sockets, IPv4 and IPv6 together; each association costs one host-wide.",
                 r.udp.boundPorts)
        w.single("portbudget_udp_utilization_ratio", .gauge,
                 help: "UDP bound ports over usable ports (0-1); at 1 autobind fails with EAGAIN.", r.udp.utilization)
        w.single("portbudget_udp_sockets", .gauge, help: "UDP sockets on usable ports.", r.udp.sockets)
        guard let lite = r.udplite else { return }
        w.single("portbudget_udplite_bound_ports", .gauge,
                 help: "Distinct usable ports held by UDP-Lite sockets, which have their own port table.",
                 lite.boundPorts)
        w.single("portbudget_udplite_utilization_ratio", .gauge,
                 help: "UDP-Lite bound ports over usable ports (0-1).", lite.utilization)
        w.single("portbudget_udplite_sockets", .gauge, help: "UDP-Lite sockets on usable ports.", lite.sockets)
    }

    static func writeSysctls(_ r: PortBudgetReport, into w: inout ExpositionWriter) {
        let t = r.timeWaitReuse
        w.single("portbudget_tcp_tw_reuse", .gauge,
                 help: "net.ipv4.tcp_tw_reuse: 0 off, 1 on, 2 loopback only.", t.tcpTwReuse)
        w.single("portbudget_tcp_timestamps", .gauge,
                 help: "net.ipv4.tcp_timestamps; TIME_WAIT reuse needs it non-zero.", t.tcpTimestamps)
        w.single("portbudget_tcp_tw_reuse_delay_seconds", .gauge,
                 help: "Age a TIME_WAIT entry must reach before connect() may reuse it.",
                 Double(t.reuseDelayMs) / 1000)
        w.single("portbudget_tcp_fin_timeout_seconds", .gauge,
                 help: "net.ipv4.tcp_fin_timeout: how long an orphaned FIN_WAIT2 socket holds its port.",
                 t.finTimeoutSeconds)
    }

    /// In `KernelCounter.all` order; a counter the kernel did not show is left out.
    static func writeCounters(_ values: [String: Int64], into w: inout ExpositionWriter) {
        for counter in KernelCounter.all {
            guard let value = values[counter.metric] else { continue }
            w.single(prefix + counter.metric, counter.kind == .counter ? .counter : .gauge,
                     help: counter.help, Double(value))
        }
    }
}

extension ExpositionWriter {
    /// A family with one labeled sample.
    mutating func single(_ name: String, _ type: MetricType, help: String, _ value: Double,
                         labels: [(name: String, value: String)]) {
        family(name, type, help: help, [Sample(labels, value)])
    }
}

/// The value of one quantity for one label set at one evaluation.
public struct AlertSample: Sendable, Equatable {
    public var labels: [String: String]
    public var value: Double
    /// What `{{ $fix }}` renders to: the one-line fixes of the warning or
    /// critical findings that explain this limit, or "" when none does. Not
    /// a label, so an alert keeps its identity while the diagnosis changes.
    public var fix: String
    /// What `{{ $holder }}` renders to: " Most held by nginx.service 62%." for
    /// the limit's biggest holder (cgroup), or "" when none is known.
    public var holder: String

    public init(labels: [String: String] = [:], value: Double, fix: String = "", holder: String = "") {
        self.labels = labels
        self.value = value
        self.fix = fix
        self.holder = holder
    }
}

/// Everything one evaluation looks at: the report of every group (not only
/// an exported top N), counter rates between evaluations, and projections.
public struct AlertInputs: Sendable {
    public var report: PortBudgetReport
    /// ICMP destination-unreachable messages sent per second since the last evaluation.
    public var icmpUnreachablePerSecond: Double?
    /// Failed port allocations per second since the last evaluation; nil
    /// without the failure collector or before a second evaluation.
    public var failuresPerSecond: Double?
    public var projections: [(series: ExhaustionProjector.Series, seconds: Double)]
    /// The report's diagnosis, warning or worse only: what alerts explain themselves with.
    public let findings: [Finding]
    /// Labels on every sample: `netns` when the agent watches every namespace.
    public var labels: [String: String]

    public init(report: PortBudgetReport, icmpUnreachablePerSecond: Double?,
                projections: [(series: ExhaustionProjector.Series, seconds: Double)], labels: [String: String] = [:]) {
        self.report = report
        self.labels = labels
        self.icmpUnreachablePerSecond = icmpUnreachablePerSecond
        self.projections = projections
        findings = report.findings.filter { $0.severity != .info }
        var holders: [String: String] = [:]
        for g in report.tcp.groups {
            guard let top = g.holders, !top.isEmpty else { continue }
            holders[Self.groupKey(g.localIP, g.peerIP, String(g.peerPort))] =
                CheckReportRenderer.topHolder(top, nil, of: g.used, prefix: "")
        }
        groupHolders = holders
    }

    /// Each group's biggest holder, computed once: rules over every group look it up per sample.
    private let groupHolders: [String: String]

    static func groupKey(_ local: String, _ peer: String, _ port: String) -> String { local + "|" + peer + "|" + port }

    /// The findings that explain one limit, as `{{ $fix }}` renders them:
    /// " Cause: time_wait — sysctl …; hot_destination — pool …." or "".
    /// A narrow range explains every limit; the others their own scope.
    func fix(kind: Finding.Scope.Kind, group: (local: String, peer: String, port: Int)? = nil) -> String {
        let matching = findings.filter { f in
            if f.id == .narrowRange { return true }
            guard f.scope.kind == kind else { return false }
            guard let group else { return true }
            return f.scope.localIP == group.local && f.scope.peerIP == group.peer && f.scope.peerPort == group.port
        }
        guard !matching.isEmpty else { return "" }
        return " Cause: " + matching.map { "\($0.id.rawValue) — \($0.action)" }.joined(separator: "; ")
            + ". See docs/runbook.md#\(matching[0].id.rawValue)."
    }

    static func groupLabels(_ local: String, _ peer: String, _ port: Int) -> [String: String] {
        ["local_ip": local, "peer_ip": peer, "peer_port": String(port)]
    }

    /// The biggest holder of a limit, as `{{ $holder }}` renders it.
    func holder(labels: [String: String], scope: Finding.Scope.Kind?) -> String {
        let text: String
        if let peer = labels["peer_ip"], let local = labels["local_ip"], let port = labels["peer_port"] {
            text = groupHolders[Self.groupKey(local, peer, port)] ?? ""
        } else if scope == .tcpBind {
            text = CheckReportRenderer.topHolder(report.tcp.holders, nil, of: report.tcp.boundPorts, prefix: "")
        } else if scope == .udp {
            text = CheckReportRenderer.topHolder(report.udp.holders, nil, of: report.udp.boundPorts, prefix: "")
        } else {
            return ""
        }
        return text.isEmpty ? "" : " Most held by \(text)."
    }

    public func samples(_ quantity: AlertRule.Quantity) -> [AlertSample] {
        let scope: Finding.Scope.Kind? = switch quantity {
        case .tcpBindUtilization, .tcpBindUtilizationSpent: .tcpBind
        case .udpUtilization, .udpSocketsInUse: .udp
        default: nil
        }
        return unattributedSamples(quantity).map { sample in
            var sample = sample
            let projected = sample.labels["scope"].map { $0 == "udp" ? Finding.Scope.Kind.udp : .tcpBind }
            sample.holder = holder(labels: sample.labels, scope: scope ?? (quantity == .secondsToExhaustion ? projected : nil))
            if !labels.isEmpty { sample.labels.merge(labels) { own, _ in own } }
            return sample
        }
    }

    func unattributedSamples(_ quantity: AlertRule.Quantity) -> [AlertSample] {
        switch quantity {
        case .tcpGroupUtilization:
            return report.tcp.groups.map {
                AlertSample(labels: Self.groupLabels($0.localIP, $0.peerIP, $0.peerPort), value: $0.utilization,
                            fix: fix(kind: .tcpDestination, group: ($0.localIP, $0.peerIP, $0.peerPort)))
            }
        case .tcpBindUtilization:
            return [AlertSample(value: report.tcp.bindUtilization, fix: fix(kind: .tcpBind))]
        case .tcpBindUtilizationSpent:
            guard report.tcpBindSpentHere else { return [] }
            return [AlertSample(value: report.tcp.bindUtilization, fix: fix(kind: .tcpBind))]
        case .udpUtilization:
            return [AlertSample(value: report.udp.utilization, fix: fix(kind: .udp))]
        case .udpSocketsInUse:
            // Every UDP socket of the namespace (sockstat), not only those on ephemeral ports.
            let v4 = report.counters["sockstat_udp_inuse"], v6 = report.counters["sockstat_udp6_inuse"]
            guard v4 != nil || v6 != nil else { return [] }
            return [AlertSample(value: Double((v4 ?? 0) + (v6 ?? 0)), fix: fix(kind: .udp))]
        case .icmpPortUnreachablePerSecond:
            return icmpUnreachablePerSecond.map { [AlertSample(value: $0)] } ?? []
        case .portAllocationFailuresPerSecond:
            return failuresPerSecond.map { [AlertSample(value: $0)] } ?? []
        case .snatGroupUtilization:
            return report.snat?.groups.map {
                AlertSample(labels: ["protocol": $0.protocol, "source_ip": $0.sourceIP, "peer_ip": $0.peerIP,
                                     "peer_port": String($0.peerPort)], value: $0.utilization)
            } ?? []
        case .conntrackUtilization:
            guard let table = report.conntrack, table.limit > 0 else { return [] }
            return [AlertSample(value: table.utilization)]
        case .secondsToExhaustion:
            return projections.map { entry in
                var labels = ["scope": entry.series.scope]
                var explained = ""
                if let g = entry.series.group {
                    labels.merge(Self.groupLabels(g.localIP, g.peerIP, g.peerPort)) { a, _ in a }
                    explained = fix(kind: .tcpDestination, group: (g.localIP, g.peerIP, g.peerPort))
                } else {
                    explained = fix(kind: entry.series.scope == "udp" ? .udp : .tcpBind)
                }
                return AlertSample(labels: labels, value: entry.seconds, fix: explained)
            }
        }
    }
}

/// Turns consecutive readings of a monotonically increasing counter into a
/// per-second rate; nil after a reset or on the first reading.
public struct CounterRate: Sendable {
    private var last: (time: Double, value: Int64)?

    public init() {}

    public mutating func update(_ value: Int64?, at time: Double) -> Double? {
        defer { last = value.map { (time, $0) } }
        guard let value, let last, time > last.time, value >= last.value else { return nil }
        return Double(value - last.value) / (time - last.time)
    }
}

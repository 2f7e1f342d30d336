/// One alerting rule of the in-agent evaluator, as read from the config.
public struct AlertRule: Sendable, Equatable {
    /// What a rule watches. Per-group quantities yield one alert per
    /// destination group, labelled local_ip, peer_ip, peer_port.
    public enum Quantity: String, Sendable, CaseIterable {
        case tcpGroupUtilization = "tcp_group_utilization"
        case tcpBindUtilization = "tcp_bind_utilization"
        /// The same, only where this host's traffic spends the limit
        /// (`PortBudgetReport.tcpBindSpentHere`): what pages.
        case tcpBindUtilizationSpent = "tcp_bind_utilization_spent"
        case udpUtilization = "udp_utilization"
        case udpSocketsInUse = "udp_sockets_in_use"
        case icmpPortUnreachablePerSecond = "icmp_port_unreachable_per_second"
        case secondsToExhaustion = "seconds_to_exhaustion"
        // Per SNAT group (labels protocol, source_ip, peer_ip, peer_port), and the conntrack table.
        case snatGroupUtilization = "snat_group_utilization"
        case conntrackUtilization = "conntrack_utilization"
        /// Port allocations the kernel refused per second since the last
        /// evaluation (the failure collector, docs/failures.md), per namespace.
        case portAllocationFailuresPerSecond = "port_allocation_failures_per_second"

        /// The comparison a rule uses when the config names only a threshold's value.
        public var naturalComparisonIsBelow: Bool { self == .secondsToExhaustion }
    }

    public enum Comparison: Sendable, Equatable {
        case above(Double)
        case below(Double)

        public func holds(_ value: Double) -> Bool {
            switch self {
            case let .above(threshold): return value > threshold
            case let .below(threshold): return value < threshold
            }
        }
    }

    public var name: String
    public var quantity: Quantity
    public var comparison: Comparison
    /// Seconds the condition must hold before the alert fires (pending until then).
    public var forSeconds: Double
    public var severity: String
    public var labels: [String: String]
    public var annotations: [String: AlertTemplate]

    public init(name: String, quantity: Quantity, comparison: Comparison, forSeconds: Double = 0,
                severity: String = "warning", labels: [String: String] = [:],
                annotations: [String: AlertTemplate] = [:]) {
        self.name = name
        self.quantity = quantity
        self.comparison = comparison
        self.forSeconds = forSeconds
        self.severity = severity
        self.labels = labels
        self.annotations = annotations
    }

    /// The rules that apply without a config file (documented in docs/alerting.md).
    public static let defaults: [AlertRule] = {
        func t(_ s: String) -> AlertTemplate { try! AlertTemplate(s) }
        let group = "{{ $labels.local_ip }} → {{ $labels.peer_ip }}:{{ $labels.peer_port }}"
        return [
            AlertRule(name: "PortBudgetTCPDestinationPortsNearlyExhausted", quantity: .tcpGroupUtilization,
                      comparison: .above(0.95), forSeconds: 30, severity: "critical", annotations: [
                          "summary": t("Ephemeral ports towards one destination are nearly exhausted{{ $netns }}."),
                          "description": t("\(group) uses {{ $value | humanizePercentage }} of its ports; new connect() calls to it fail with EADDRNOTAVAIL at 100%.{{ $holder }}{{ $fix }}"),
                      ]),
            AlertRule(name: "PortBudgetTCPDestinationPortsLow", quantity: .tcpGroupUtilization,
                      comparison: .above(0.8), forSeconds: 120, severity: "warning", annotations: [
                          "summary": t("Ephemeral ports towards one destination are running low{{ $netns }}."),
                          "description": t("\(group) uses {{ $value | humanizePercentage }} of its ports.{{ $holder }}{{ $fix }}"),
                      ]),
            // A table full of ports connect() chose stops no connect() to a new
            // destination: it pages only where this host spends it, else warns.
            AlertRule(name: "PortBudgetTCPBindPortsLow", quantity: .tcpBindUtilization,
                      comparison: .above(0.95), forSeconds: 120, severity: "warning", annotations: [
                          "summary": t("Host-wide TCP bind headroom is running low{{ $netns }}."),
                          "description": t("TCP sockets hold {{ $value | humanizePercentage }} of the usable ports; bind(addr, 0) fails with EADDRINUSE at 100%.{{ $holder }}{{ $fix }}"),
                      ]),
            AlertRule(name: "PortBudgetTCPBindPortsNearlyExhausted", quantity: .tcpBindUtilizationSpent,
                      comparison: .above(0.95), forSeconds: 30, severity: "critical", annotations: [
                          "summary": t("Host-wide TCP bind headroom is nearly exhausted{{ $netns }}."),
                          "description": t("TCP sockets hold {{ $value | humanizePercentage }} of the usable ports; bind(addr, 0) fails with EADDRINUSE at 100%.{{ $holder }}{{ $fix }}"),
                      ]),
            AlertRule(name: "PortBudgetUDPPortsNearlyExhausted", quantity: .udpUtilization,
                      comparison: .above(0.95), forSeconds: 30, severity: "critical", annotations: [
                          "summary": t("UDP ephemeral ports are nearly exhausted{{ $netns }}."),
                          "description": t("UDP sockets hold {{ $value | humanizePercentage }} of the usable ports; autobind fails with EAGAIN at 100%.{{ $holder }}{{ $fix }}"),
                      ]),
            AlertRule(name: "PortBudgetPortsExhaustingSoon", quantity: .secondsToExhaustion,
                      comparison: .below(3600), forSeconds: 300, severity: "warning", annotations: [
                          "summary": t("Ephemeral ports will run out within the hour at the current trend{{ $netns }}."),
                          "description": t("{{ $labels.scope }} {{ $labels.peer_ip }} runs out in about {{ $value | humanizeDuration }}.{{ $holder }}{{ $fix }}"),
                      ]),
        ] + snatDefaults + failureDefaults
    }()

    /// Failures already happening: no threshold, any rate above zero pages.
    static let failureDefaults: [AlertRule] = {
        func t(_ s: String) -> AlertTemplate { try! AlertTemplate(s) }
        return [
            AlertRule(name: "PortBudgetPortAllocationFailures", quantity: .portAllocationFailuresPerSecond,
                      comparison: .above(0), forSeconds: 0, severity: "critical", annotations: [
                          "summary": t("The kernel is refusing local ports to applications now{{ $netns }}."),
                          "description": t("{{ $value | humanize }} connect(), bind(), listen() or UDP send calls per second fail for want of a local port (EADDRNOTAVAIL, EADDRINUSE, EAGAIN); `portbudget trace` shows each one."),
                      ]),
        ]
    }()

    /// The NAT's port budget and the conntrack table. 0.9 for NAT
    /// groups because the kernel's bounded port search fails some
    /// connections before a group is full (docs/model.md).
    static let snatDefaults: [AlertRule] = {
        func t(_ s: String) -> AlertTemplate { try! AlertTemplate(s) }
        return [
            AlertRule(name: "PortBudgetSNATPortsNearlyExhausted", quantity: .snatGroupUtilization,
                      comparison: .above(0.9), forSeconds: 30, severity: "critical", annotations: [
                          "summary": t("The NAT's source ports towards one destination are nearly exhausted{{ $netns }}."),
                          "description": t("{{ $labels.protocol }} NATed to {{ $labels.source_ip }} towards {{ $labels.peer_ip }}:{{ $labels.peer_port }} uses {{ $value | humanizePercentage }} of the NAT's ports; the NAT drops new connections to it at 100% (insert_failed)."),
                      ]),
            AlertRule(name: "PortBudgetConntrackTableNearlyFull", quantity: .conntrackUtilization,
                      comparison: .above(0.9), forSeconds: 60, severity: "critical", annotations: [
                          "summary": t("The conntrack table is nearly full{{ $netns }}."),
                          "description": t("The conntrack table holds {{ $value | humanizePercentage }} of nf_conntrack_max; new connections are dropped when it is full."),
                      ]),
        ]
    }()
}

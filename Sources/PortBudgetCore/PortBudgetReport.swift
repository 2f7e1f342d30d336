/// Warning and critical levels, applied to every utilization: each group, bind, UDP.
public struct Thresholds: Sendable, Equatable, Codable {
    public var warning: Double
    public var critical: Double

    public init(warning: Double = 0.8, critical: Double = 0.95) {
        self.warning = warning
        self.critical = critical
    }

    /// Nil when valid; otherwise what is wrong, in one line.
    public var problem: String? {
        guard warning.isFinite, critical.isFinite, warning > 0, warning <= 1, critical > 0, critical <= 1 else {
            return "--warning and --critical must be ratios in (0, 1], got \(warning) and \(critical)"
        }
        guard warning <= critical else { return "--warning \(warning) is above --critical \(critical)" }
        return nil
    }

    public func status(_ utilization: Double) -> Status {
        utilization >= critical ? .critical : utilization >= warning ? .warning : .ok
    }
}

/// Nagios-style status; the raw value is the plugin exit code.
public enum Status: String, Codable, Sendable, Comparable {
    case ok, warning, critical

    public var exitCode: Int32 { self == .ok ? 0 : self == .warning ? 1 : 2 }

    public static func < (a: Status, b: Status) -> Bool { a.exitCode < b.exitCode }
}

/// The accounting of one network namespace at one moment. Encodes to the
/// `check --json` contract; the exposition is written from the same values.
public struct PortBudgetReport: Sendable, Codable, Equatable {
    public struct PortRange: Sendable, Codable, Equatable {
        public var low: Int
        public var high: Int
        /// Reserved ports inside the range.
        public var reserved: Int
        /// Ports autobind may hand out: the range minus reserved ports.
        public var usable: Int
    }

    public struct TimeWaitReuse: Sendable, Codable, Equatable {
        public var tcpTwReuse: Int
        public var tcpTimestamps: Int
        public var reuseDelayMs: Int
        public var finTimeoutSeconds: Int

        enum CodingKeys: String, CodingKey {
            case tcpTwReuse = "tcp_tw_reuse", tcpTimestamps = "tcp_timestamps"
            case reuseDelayMs = "reuse_delay_ms", finTimeoutSeconds = "fin_timeout_seconds"
        }
    }

    public struct Group: Sendable, Codable, Equatable {
        public var localIP: String
        public var peerIP: String
        public var peerPort: Int
        /// Distinct usable ports a new connect() to this destination may not take.
        public var used: Int
        public var timeWait: Int
        public var finWait2: Int
        /// Usable ports minus those explicit binds hold.
        public var capacity: Int
        public var utilization: Double
        public var free: Int { max(0, capacity - used) }

        public init(localIP: String, peerIP: String, peerPort: Int, used: Int, timeWait: Int, finWait2: Int,
                    capacity: Int, utilization: Double) {
            self.localIP = localIP
            self.peerIP = peerIP
            self.peerPort = peerPort
            self.used = used
            self.timeWait = timeWait
            self.finWait2 = finWait2
            self.capacity = capacity
            self.utilization = utilization
        }

        enum CodingKeys: String, CodingKey {
            case localIP = "local_ip", peerIP = "peer_ip", peerPort = "peer_port", used
            case timeWait = "time_wait", finWait2 = "fin_wait2", capacity, utilization, free
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            localIP = try c.decode(String.self, forKey: .localIP)
            peerIP = try c.decode(String.self, forKey: .peerIP)
            peerPort = try c.decode(Int.self, forKey: .peerPort)
            used = try c.decode(Int.self, forKey: .used)
            timeWait = try c.decode(Int.self, forKey: .timeWait)
            finWait2 = try c.decode(Int.self, forKey: .finWait2)
            capacity = try c.decode(Int.self, forKey: .capacity)
            utilization = try c.decode(Double.self, forKey: .utilization)
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(localIP, forKey: .localIP)
            try c.encode(peerIP, forKey: .peerIP)
            try c.encode(peerPort, forKey: .peerPort)
            try c.encode(used, forKey: .used)
            try c.encode(timeWait, forKey: .timeWait)
            try c.encode(finWait2, forKey: .finWait2)
            try c.encode(capacity, forKey: .capacity)
            try c.encode(free, forKey: .free)
            try c.encode(utilization, forKey: .utilization)
        }
    }

    public struct TCP: Sendable, Codable, Equatable {
        /// Distinct usable ports held by any TCP socket: what bind(addr, 0) competes for.
        public var boundPorts: Int
        public var bindUtilization: Double
        /// Usable ports held by explicit binds (listeners included): lost to every connect().
        public var explicitBoundPorts: Int
        public var listenerPortsInRange: [Int]
        /// Every group, before any --top bound.
        public var groupCount: Int
        public var maxGroupUtilization: Double
        /// Sockets on usable ports, by TCP state.
        public var socketsByState: [String: Int]
        public var groups: [Group]

        enum CodingKeys: String, CodingKey {
            case boundPorts = "bound_ports", bindUtilization = "bind_utilization"
            case explicitBoundPorts = "explicit_bound_ports", listenerPortsInRange = "listener_ports_in_range"
            case groupCount = "group_count", maxGroupUtilization = "max_group_utilization"
            case socketsByState = "sockets_by_state", groups
        }
    }

    public struct UDP: Sendable, Codable, Equatable {
        /// Distinct usable ports held by UDP sockets, IPv4 and IPv6 together.
        public var boundPorts: Int
        public var utilization: Double
        /// Sockets on usable ports.
        public var sockets: Int

        enum CodingKeys: String, CodingKey { case boundPorts = "bound_ports", utilization, sockets }
    }

    public var portRange: PortRange
    public var timeWaitReuse: TimeWaitReuse
    public var tcp: TCP
    public var udp: UDP
    /// Present when the kernel can dump UDP-Lite; it has its own port table.
    public var udplite: UDP?
    public var thresholds: Thresholds
    /// Kernel counters, keyed by metric name without prefix; filled by the collector.
    public var counters: [String: Int64] = [:]
    // issue 11: present when the conntrack collector succeeded.
    /// Source-NAT port budgets from the conntrack table.
    public var snat: SNAT?
    /// The conntrack table's fill and the kernel's drop statistics.
    public var conntrack: Conntrack?

    public init(portRange: PortRange, timeWaitReuse: TimeWaitReuse, tcp: TCP, udp: UDP, udplite: UDP?,
                thresholds: Thresholds) {
        self.portRange = portRange
        self.timeWaitReuse = timeWaitReuse
        self.tcp = tcp
        self.udp = udp
        self.udplite = udplite
        self.thresholds = thresholds
    }

    /// The limit closest to exhaustion, with what fails when it is reached.
    public struct Limit: Sendable, Equatable {
        public enum Kind: Sendable, Equatable { case group(Group), tcpBind, udp, snatGroup(SNATGroup), conntrackTable }
        public var kind: Kind
        public var utilization: Double
        public var used: Int
        public var capacity: Int

        public var failure: String {
            switch kind {
            case .group: return "connect() fails with EADDRNOTAVAIL"
            case .tcpBind: return "bind(addr, 0) fails with EADDRINUSE, then connect() to new destinations with EADDRNOTAVAIL"
            case .udp: return "UDP connect()/sendto() autobind fails with EAGAIN, bind() with EADDRINUSE"
            case .snatGroup: return "the NAT drops new connections to it (conntrack insert_failed rises)"
            case .conntrackTable: return "new connections are dropped (\"nf_conntrack: table full\")"
            }
        }

        public var name: String {
            switch kind {
            case let .group(g): return "TCP \(g.localIP) → \(Self.hostPort(g.peerIP, g.peerPort))"
            case .tcpBind: return "TCP host-wide bind"
            case .udp: return "UDP host-wide"
            case let .snatGroup(g): return "SNAT \(g.protocol.uppercased()) \(g.sourceIP) → \(Self.hostPort(g.peerIP, g.peerPort))"
            case .conntrackTable: return "conntrack table"
            }
        }

        /// What `used` and `capacity` count.
        public var unit: String { kind == .conntrackTable ? "entries" : "ports" }

        static func hostPort(_ ip: String, _ port: Int) -> String { ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)" }
    }

    /// Every limit, worst first: by status level, then by fewest ports left
    /// (what fails first); a destination before the host-wide limits on a
    /// tie, since it is the more specific answer.
    public var limits: [Limit] {
        var out: [Limit] = []
        if let worst = tcp.groups.first {
            out.append(Limit(kind: .group(worst), utilization: worst.utilization, used: worst.used, capacity: worst.capacity))
        }
        out.append(Limit(kind: .tcpBind, utilization: tcp.bindUtilization, used: tcp.boundPorts, capacity: portRange.usable))
        out.append(Limit(kind: .udp, utilization: udp.utilization, used: udp.boundPorts, capacity: portRange.usable))
        if let worst = snat?.groups.first {
            out.append(Limit(kind: .snatGroup(worst), utilization: worst.utilization, used: worst.used, capacity: worst.capacity))
        }
        if let table = conntrack, table.limit > 0 {
            out.append(Limit(kind: .conntrackTable, utilization: table.utilization, used: Int(table.entries),
                             capacity: Int(table.limit)))
        }
        func key(_ l: Limit) -> (Int32, Int) { (-thresholds.status(l.utilization).exitCode, l.capacity - l.used) }
        return out.enumerated().sorted { a, b in
            let (ka, kb) = (key(a.element), key(b.element))
            return ka != kb ? ka < kb : a.offset < b.offset
        }.map(\.element)
    }

    /// The worst status over every group (not only the listed ones), bind and UDP.
    public var status: Status {
        thresholds.status(max(tcp.maxGroupUtilization, tcp.bindUtilization, udp.utilization,
                              snat?.maxGroupUtilization ?? 0, conntrack?.utilization ?? 0))
    }

    /// The one-line verdict of `check`.
    public var verdict: String {
        let worst = limits[0]
        let left = max(0, worst.capacity - worst.used)
        let percent = Self.percent(worst.utilization)
        switch status {
        case .ok:
            return "OK: closest limit is \(worst.name) at \(percent) (\(left) of \(worst.capacity) \(worst.unit) left)"
        case .warning, .critical:
            return "\(status.rawValue.uppercased()): \(worst.name) at \(percent), \(left) of \(worst.capacity) \(worst.unit) left; at 0, \(worst.failure)"
        }
    }

    public static func percent(_ ratio: Double) -> String {
        let tenths = (ratio * 1000).rounded() / 10
        return tenths == tenths.rounded() ? "\(Int(tenths))%" : "\(tenths)%"
    }

    enum CodingKeys: String, CodingKey {
        case portRange = "port_range", timeWaitReuse = "time_wait_reuse", tcp, udp, udplite, thresholds, counters
        case status, verdict
        case snat, conntrack
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        portRange = try c.decode(PortRange.self, forKey: .portRange)
        timeWaitReuse = try c.decode(TimeWaitReuse.self, forKey: .timeWaitReuse)
        tcp = try c.decode(TCP.self, forKey: .tcp)
        udp = try c.decode(UDP.self, forKey: .udp)
        udplite = try c.decodeIfPresent(UDP.self, forKey: .udplite)
        thresholds = try c.decode(Thresholds.self, forKey: .thresholds)
        counters = try c.decodeIfPresent([String: Int64].self, forKey: .counters) ?? [:]
        snat = try c.decodeIfPresent(SNAT.self, forKey: .snat)
        conntrack = try c.decodeIfPresent(Conntrack.self, forKey: .conntrack)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(portRange, forKey: .portRange)
        try c.encode(tcp, forKey: .tcp)
        try c.encode(udp, forKey: .udp)
        try c.encodeIfPresent(udplite, forKey: .udplite)
        try c.encode(timeWaitReuse, forKey: .timeWaitReuse)
        try c.encode(counters, forKey: .counters)
        try c.encode(thresholds, forKey: .thresholds)
        try c.encode(status, forKey: .status)
        try c.encode(verdict, forKey: .verdict)
        try c.encodeIfPresent(snat, forKey: .snat)
        try c.encodeIfPresent(conntrack, forKey: .conntrack)
    }

    /// A copy listing only the `top` most utilized groups (0 keeps all);
    /// aggregates still describe every group.
    public func limitingGroups(to top: Int) -> PortBudgetReport {
        guard top > 0 else { return self }
        var copy = self
        if tcp.groups.count > top { copy.tcp.groups = Array(tcp.groups.prefix(top)) }
        if let groups = snat?.groups, groups.count > top { copy.snat?.groups = Array(groups.prefix(top)) }
        return copy
    }
}

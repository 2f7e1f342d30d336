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
        /// `ip_local_reserved_ports` as written ("40000-40009,40090"), inside
        /// the range or not: a fix that sets the sysctl must keep these.
        public var reservedList: String = ""

        enum CodingKeys: String, CodingKey { case low, high, reserved, usable, reservedList = "reserved_list" }

        public init(low: Int, high: Int, reserved: Int, usable: Int, reservedList: String = "") {
            self.low = low
            self.high = high
            self.reserved = reserved
            self.usable = usable
            self.reservedList = reservedList
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            low = try c.decode(Int.self, forKey: .low)
            high = try c.decode(Int.self, forKey: .high)
            reserved = try c.decode(Int.self, forKey: .reserved)
            usable = try c.decode(Int.self, forKey: .usable)
            reservedList = try c.decodeIfPresent(String.self, forKey: .reservedList) ?? ""
        }

        /// Ports in `ip_local_port_range`, reserved or not.
        public var size: Int { high - low + 1 }
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
        /// Cgroups holding the most of its ports (nil: attribution not available).
        public var holders: [Holder]? = nil
        /// Processes holding the most of its ports (`check --processes`).
        public var processes: [ProcessHolder]? = nil
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
            case timeWait = "time_wait", finWait2 = "fin_wait2", capacity, utilization, free, holders, processes
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
            holders = try c.decodeIfPresent([Holder].self, forKey: .holders)
            processes = try c.decodeIfPresent([ProcessHolder].self, forKey: .processes)
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
            try c.encodeIfPresent(holders, forKey: .holders)
            try c.encodeIfPresent(processes, forKey: .processes)
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
        /// Ports of connected sockets whose port was chosen explicitly
        /// (bind(addr, port) then connect()), listeners' ports left out.
        public var explicitConnectedPorts: Int = 0
        /// Connected sockets that look auto-bound (every state but LISTEN),
        /// and the distinct ports they hold.
        public var autoConnections: Int = 0
        public var autoConnectionPorts: Int = 0
        /// Of those ports, the ones carrying exactly one connection. Plain
        /// connect() shares a port between destinations; bind(addr, 0) before
        /// connect() never does.
        public var singleConnectionPorts: Int = 0
        /// What the failure collector saw of bind() before connect(), by
        /// socket cookie; nil without it (then bind(addr, 0) is inferred).
        public var bindTracking: BindTracking? = nil
        /// Cgroups and processes holding the most TCP ports host-wide.
        public var holders: [Holder]? = nil
        public var processes: [ProcessHolder]? = nil

        public init(boundPorts: Int, bindUtilization: Double, explicitBoundPorts: Int, listenerPortsInRange: [Int],
                    groupCount: Int, maxGroupUtilization: Double, socketsByState: [String: Int], groups: [Group],
                    explicitConnectedPorts: Int = 0, autoConnections: Int = 0, autoConnectionPorts: Int = 0,
                    singleConnectionPorts: Int = 0) {
            self.boundPorts = boundPorts
            self.bindUtilization = bindUtilization
            self.explicitBoundPorts = explicitBoundPorts
            self.listenerPortsInRange = listenerPortsInRange
            self.groupCount = groupCount
            self.maxGroupUtilization = maxGroupUtilization
            self.socketsByState = socketsByState
            self.groups = groups
            self.explicitConnectedPorts = explicitConnectedPorts
            self.autoConnections = autoConnections
            self.autoConnectionPorts = autoConnectionPorts
            self.singleConnectionPorts = singleConnectionPorts
        }

        enum CodingKeys: String, CodingKey {
            case boundPorts = "bound_ports", bindUtilization = "bind_utilization"
            case explicitBoundPorts = "explicit_bound_ports", listenerPortsInRange = "listener_ports_in_range"
            case groupCount = "group_count", maxGroupUtilization = "max_group_utilization"
            case socketsByState = "sockets_by_state", groups
            case explicitConnectedPorts = "explicit_connected_ports", autoConnections = "auto_connections"
            case autoConnectionPorts = "auto_connection_ports", singleConnectionPorts = "single_connection_ports"
            case bindTracking = "bind_tracking", holders, processes
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            boundPorts = try c.decode(Int.self, forKey: .boundPorts)
            bindUtilization = try c.decode(Double.self, forKey: .bindUtilization)
            explicitBoundPorts = try c.decode(Int.self, forKey: .explicitBoundPorts)
            listenerPortsInRange = try c.decode([Int].self, forKey: .listenerPortsInRange)
            groupCount = try c.decode(Int.self, forKey: .groupCount)
            maxGroupUtilization = try c.decode(Double.self, forKey: .maxGroupUtilization)
            socketsByState = try c.decode([String: Int].self, forKey: .socketsByState)
            groups = try c.decode([Group].self, forKey: .groups)
            explicitConnectedPorts = try c.decodeIfPresent(Int.self, forKey: .explicitConnectedPorts) ?? 0
            autoConnections = try c.decodeIfPresent(Int.self, forKey: .autoConnections) ?? 0
            autoConnectionPorts = try c.decodeIfPresent(Int.self, forKey: .autoConnectionPorts) ?? 0
            singleConnectionPorts = try c.decodeIfPresent(Int.self, forKey: .singleConnectionPorts) ?? 0
            bindTracking = try c.decodeIfPresent(BindTracking.self, forKey: .bindTracking)
            holders = try c.decodeIfPresent([Holder].self, forKey: .holders)
            processes = try c.decodeIfPresent([ProcessHolder].self, forKey: .processes)
        }
    }

    /// Which connected sockets took their port with bind() before connect(),
    /// as the failure collector saw each connect() begin. SOCK_DIAG alone
    /// cannot tell bind(addr, 0) from a port connect() chose.
    public struct BindTracking: Sendable, Codable, Equatable {
        /// Ports of connected sockets seen to start connect() with a port
        /// bind(addr, 0) took: counted with the explicit binds, lost to every destination.
        public var boundBeforeConnectPorts: Int
        /// Connected sockets that began connect() before the collector
        /// watched: for them bind-before-connect stays inferred.
        public var untrackedSockets: Int
        /// Every connected socket's port origin is known: destination
        /// capacities and free ports are what the kernel will allow.
        public var exact: Bool { untrackedSockets == 0 }

        public init(boundBeforeConnectPorts: Int, untrackedSockets: Int) {
            self.boundBeforeConnectPorts = boundBeforeConnectPorts
            self.untrackedSockets = untrackedSockets
        }

        enum CodingKeys: String, CodingKey {
            case boundBeforeConnectPorts = "bound_before_connect_ports", untrackedSockets = "untracked_sockets", exact
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            boundBeforeConnectPorts = try c.decode(Int.self, forKey: .boundBeforeConnectPorts)
            untrackedSockets = try c.decode(Int.self, forKey: .untrackedSockets)
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(boundBeforeConnectPorts, forKey: .boundBeforeConnectPorts)
            try c.encode(untrackedSockets, forKey: .untrackedSockets)
            try c.encode(exact, forKey: .exact)
        }
    }

    public struct UDP: Sendable, Codable, Equatable {
        /// Distinct usable ports held by UDP sockets, IPv4 and IPv6 together.
        public var boundPorts: Int
        public var utilization: Double
        /// Sockets on usable ports.
        public var sockets: Int
        /// Cgroups and processes holding the most UDP ports.
        public var holders: [Holder]? = nil
        public var processes: [ProcessHolder]? = nil

        public init(boundPorts: Int, utilization: Double, sockets: Int) {
            self.boundPorts = boundPorts
            self.utilization = utilization
            self.sockets = sockets
        }

        enum CodingKeys: String, CodingKey { case boundPorts = "bound_ports", utilization, sockets, holders, processes }
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
    /// Why ports go and what fixes it, most severe first: diagnosed once,
    /// when the census makes the report (before any --top cut), and
    /// encoded as the top-level `findings` of `check --json`.
    public var findings: [Finding] = []
    /// How holders were named, or why there are none (nil: not asked).
    public var attribution: AttributionNote?
    /// Source-NAT port budgets from the conntrack table; present when the
    /// conntrack collector succeeded.
    public var snat: SNAT?
    /// The conntrack table's fill and the kernel's drop statistics.
    public var conntrack: Conntrack?
    /// Failed port allocations counted in the kernel; present when the
    /// failure collector ran and succeeded (docs/failures.md).
    public var failures: PortAllocationFailures?

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
        /// Its status for this host's traffic (see `PortBudgetReport.tcpBindStatus`).
        public var status: Status = .ok
        /// Host-wide bind only: the ports bound before connect() fill the
        /// range, so a connect() to a destination nothing uses yet fails too.
        public var newDestinationsBlocked = false

        /// What the kernel refuses at 0 left, and nothing it still allows:
        /// ports chosen by connect() and TIME_WAIT entries do not stop a
        /// connect() to a new destination, only explicitly bound ones do.
        public var failure: String {
            switch kind {
            case .group: return "connect() to it fails with EADDRNOTAVAIL"
            case .tcpBind:
                return "bind(addr, 0) and listen() without a port fail with EADDRINUSE"
                    + (newDestinationsBlocked ? ", and connect() to any new destination with EADDRNOTAVAIL (every port is bound before connect())" : "")
            case .udp: return "a UDP socket's autobind (connect(), sendto()) fails with EAGAIN, bind(addr, 0) with EADDRINUSE"
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

    /// Ports the busiest destination holds, from the aggregates (so it
    /// survives a --top cut): every group has the same capacity.
    public var busiestGroupPorts: Int {
        Int((tcp.maxGroupUtilization * Double(max(0, portRange.usable - tcp.explicitBoundPorts))).rounded())
    }

    /// Ports taken by bind(addr, 0) before connect(), inferred: plain
    /// connect() shares a port between destinations and bind(addr, 0) never
    /// does, so single-connection ports beyond what the busiest destination
    /// alone explains were bound first. A lower bound; 0 with one destination,
    /// and 0 when the failure collector saw every connect() begin (then
    /// `tcp.bindTracking` counts them instead).
    public var inferredBindBeforeConnectPorts: Int {
        if tcp.bindTracking?.exact == true { return 0 }
        return tcp.groupCount > 1 ? max(0, tcp.singleConnectionPorts - busiestGroupPorts) : 0
    }

    /// Whether the destinations' capacity and free ports are only upper
    /// bounds: bind-before-connect is suspected, and some of the ports
    /// bind() took may be counted as shareable because SOCK_DIAG shows
    /// them as connect()'s (no failure collector, or sockets older than it).
    public var destinationFreeIsUpperBound: Bool {
        tcp.bindTracking?.exact != true && inferredBindBeforeConnectPorts > 0
    }

    /// Ports bound before connect(), seen (an explicit port) or inferred:
    /// the evidence that something on this host spends host-wide bind headroom.
    public var bindBeforeConnectPorts: Int { tcp.explicitConnectedPorts + inferredBindBeforeConnectPorts }

    /// Ports a connect() to a new destination may not take: explicit binds,
    /// and, once bind-before-connect is seen, every port carrying a single
    /// connection (its bucket is bound; the kernel keeps it from connect()).
    public var portsClosedToNewDestinations: Int {
        min(portRange.usable, tcp.explicitBoundPorts + (inferredBindBeforeConnectPorts > 0 ? tcp.singleConnectionPorts : 0))
    }

    /// The host-wide bind limit's status for this host's traffic. Only
    /// bind(addr, 0) and listen() without a port fail when it is full, so it
    /// pages (critical) only when something here spends it: binds before
    /// connect(), or — with the failure collector — a TCP bind() or listen()
    /// seen failing. Otherwise (ports taken by connect(), TIME_WAIT) it is at
    /// most a warning.
    public var tcpBindStatus: Status {
        let raw = thresholds.status(tcp.bindUtilization)
        return tcpBindSpentHere ? raw : min(raw, .warning)
    }

    /// Whether this host's traffic spends the host-wide bind limit: it
    /// binds before connect(), the failure collector saw a TCP bind() or
    /// listen() fail, or no port is usable at all.
    public var tcpBindSpentHere: Bool {
        let bindsSeenFailing = failures?.totals.contains {
            $0.kind.protocolName == "tcp" && [.bind, .listen].contains($0.kind.call) && $0.count > 0
        } ?? false
        return bindBeforeConnectPorts > 0 || bindsSeenFailing || portRange.usable == 0
    }

    /// Every limit, worst first: by status level, then by fewest ports left
    /// (what fails first); a destination before the host-wide limits on a
    /// tie, since it is the more specific answer.
    public var limits: [Limit] {
        var out: [Limit] = []
        if let worst = tcp.groups.first {
            out.append(Limit(kind: .group(worst), utilization: worst.utilization, used: worst.used, capacity: worst.capacity,
                             status: thresholds.status(worst.utilization)))
        }
        out.append(Limit(kind: .tcpBind, utilization: tcp.bindUtilization, used: tcp.boundPorts, capacity: portRange.usable,
                         status: tcpBindStatus, newDestinationsBlocked: portsClosedToNewDestinations >= portRange.usable))
        out.append(Limit(kind: .udp, utilization: udp.utilization, used: udp.boundPorts, capacity: portRange.usable,
                         status: thresholds.status(udp.utilization)))
        if let worst = snat?.groups.first {
            out.append(Limit(kind: .snatGroup(worst), utilization: worst.utilization, used: worst.used, capacity: worst.capacity,
                             status: thresholds.status(worst.utilization)))
        }
        if let table = conntrack, table.limit > 0 {
            out.append(Limit(kind: .conntrackTable, utilization: table.utilization, used: Int(table.entries),
                             capacity: Int(table.limit), status: thresholds.status(table.utilization)))
        }
        func key(_ l: Limit) -> (Int32, Int) { (-l.status.exitCode, l.capacity - l.used) }
        return out.enumerated().sorted { a, b in
            let (ka, kb) = (key(a.element), key(b.element))
            return ka != kb ? ka < kb : a.offset < b.offset
        }.map(\.element)
    }

    /// The worst status over every group (not only the listed ones), bind and UDP.
    public var status: Status {
        max(thresholds.status(max(tcp.maxGroupUtilization, udp.utilization, snat?.maxGroupUtilization ?? 0,
                                  conntrack?.utilization ?? 0)),
            tcpBindStatus)
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
        case status, verdict, attribution, findings
        case snat, conntrack, failures
        case destinationFreeIsUpperBound = "destination_free_is_upper_bound"
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
        findings = try c.decodeIfPresent([Finding].self, forKey: .findings) ?? []
        attribution = try c.decodeIfPresent(AttributionNote.self, forKey: .attribution)
        snat = try c.decodeIfPresent(SNAT.self, forKey: .snat)
        conntrack = try c.decodeIfPresent(Conntrack.self, forKey: .conntrack)
        failures = try c.decodeIfPresent(PortAllocationFailures.self, forKey: .failures)
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
        try c.encode(destinationFreeIsUpperBound, forKey: .destinationFreeIsUpperBound)
        try c.encodeIfPresent(snat, forKey: .snat)
        try c.encodeIfPresent(conntrack, forKey: .conntrack)
        try c.encodeIfPresent(failures, forKey: .failures)
        try c.encode(findings, forKey: .findings)
        try c.encodeIfPresent(attribution, forKey: .attribution)
    }

    /// A copy diagnosed again (see `Diagnosis`): for a report changed after
    /// the census made it, as tests do.
    public func diagnosed() -> PortBudgetReport {
        var copy = self
        copy.findings = Diagnosis.findings(for: self)
        return copy
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

    /// A copy listing exactly the first `tcp` TCP and `snat` SNAT groups
    /// (0 lists none): one namespace's share of a top N taken across namespaces.
    public func keepingGroups(tcp: Int, snat: Int) -> PortBudgetReport {
        var copy = self
        copy.tcp.groups = Array(self.tcp.groups.prefix(tcp))
        if let groups = self.snat?.groups { copy.snat?.groups = Array(groups.prefix(snat)) }
        return copy
    }
}

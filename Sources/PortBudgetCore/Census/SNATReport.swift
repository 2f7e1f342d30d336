/// The NAT's port budget and the conntrack table, as `check --json` reports
/// them under `snat` and `conntrack`.
extension PortBudgetReport {
    /// Source-NAT port budgets, per NAT tuple space.
    public struct SNAT: Sendable, Codable, Equatable {
        /// The range every group's capacity comes from.
        public var portRange: SNATPortRange
        /// Every group, before any --top bound.
        public var groupCount: Int
        public var maxGroupUtilization: Double
        /// NATed entries counted into groups.
        public var entries: Int
        /// NATed entries whose translated port lies outside `portRange`
        /// (low source ports the kernel maps below 1024, or another rule's range).
        public var entriesOutsideRange: Int
        public var groups: [SNATGroup]

        public init(portRange: SNATPortRange, groupCount: Int, maxGroupUtilization: Double, entries: Int,
                    entriesOutsideRange: Int, groups: [SNATGroup]) {
            self.portRange = portRange
            self.groupCount = groupCount
            self.maxGroupUtilization = maxGroupUtilization
            self.entries = entries
            self.entriesOutsideRange = entriesOutsideRange
            self.groups = groups
        }

        enum CodingKeys: String, CodingKey {
            case portRange = "port_range", groupCount = "group_count", maxGroupUtilization = "max_group_utilization"
            case entries, entriesOutsideRange = "entries_outside_range", groups
        }
    }

    /// One NAT tuple space: (protocol, translated source IP, peer IP, peer port).
    public struct SNATGroup: Sendable, Codable, Equatable {
        public var `protocol`: String
        /// The address the NAT gives connections' sources.
        public var sourceIP: String
        public var peerIP: String
        public var peerPort: Int
        /// Distinct translated source ports in use towards this peer.
        public var used: Int
        /// Ports of the NAT range.
        public var capacity: Int
        public var utilization: Double
        public var free: Int { max(0, capacity - used) }

        public init(protocol: String, sourceIP: String, peerIP: String, peerPort: Int, used: Int, capacity: Int,
                    utilization: Double) {
            self.protocol = `protocol`
            self.sourceIP = sourceIP
            self.peerIP = peerIP
            self.peerPort = peerPort
            self.used = used
            self.capacity = capacity
            self.utilization = utilization
        }

        enum CodingKeys: String, CodingKey {
            case `protocol`, sourceIP = "source_ip", peerIP = "peer_ip", peerPort = "peer_port", used, capacity, free
            case utilization
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.init(protocol: try c.decode(String.self, forKey: .protocol),
                      sourceIP: try c.decode(String.self, forKey: .sourceIP),
                      peerIP: try c.decode(String.self, forKey: .peerIP),
                      peerPort: try c.decode(Int.self, forKey: .peerPort),
                      used: try c.decode(Int.self, forKey: .used),
                      capacity: try c.decode(Int.self, forKey: .capacity),
                      utilization: try c.decode(Double.self, forKey: .utilization))
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(self.protocol, forKey: .protocol)
            try c.encode(sourceIP, forKey: .sourceIP)
            try c.encode(peerIP, forKey: .peerIP)
            try c.encode(peerPort, forKey: .peerPort)
            try c.encode(used, forKey: .used)
            try c.encode(capacity, forKey: .capacity)
            try c.encode(free, forKey: .free)
            try c.encode(utilization, forKey: .utilization)
        }
    }

    /// The conntrack table of the namespace and the kernel's statistics, summed over CPUs.
    public struct Conntrack: Sendable, Codable, Equatable {
        public var entries: Int64
        /// `nf_conntrack_max`; 0 when the kernel did not say (then utilization is 0).
        public var limit: Int64
        public var utilization: Double
        public var insertFailed: Int64
        public var drop: Int64
        public var earlyDrop: Int64
        public var searchRestart: Int64
        public var clashResolve: Int64

        public init(entries: Int64, limit: Int64, statistics s: ConntrackStatistics) {
            self.entries = entries
            self.limit = limit
            utilization = limit > 0 ? min(1, Double(entries) / Double(limit)) : 0
            insertFailed = s.insertFailed
            drop = s.drop
            earlyDrop = s.earlyDrop
            searchRestart = s.searchRestart
            clashResolve = s.clashResolve
        }

        enum CodingKeys: String, CodingKey {
            case entries, limit, utilization, insertFailed = "insert_failed", drop, earlyDrop = "early_drop"
            case searchRestart = "search_restart", clashResolve = "clash_resolve"
        }
    }
}

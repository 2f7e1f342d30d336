/// The source ports a NAT rule may hand out: `masquerade to :LOW-HIGH`,
/// `--to-ports`, or the kernel's default when the rule names none.
public struct SNATPortRange: Sendable, Equatable, Codable, CustomStringConvertible {
    public var low: Int
    public var high: Int

    /// What nf_nat picks from when the rule gives no range and the original
    /// source port is 1024 or above (`nf_nat_l4proto_unique_tuple`):
    /// 1024–65535, 64,512 ports. Sources below 1024 are mapped into 1–511 or
    /// 600–1023 instead; those entries are not counted (see docs/model.md).
    public static let kernelDefault = SNATPortRange(uncheckedLow: 1024, high: 65535)

    public var capacity: Int { high - low + 1 }
    public var description: String { "\(low)-\(high)" }

    init(uncheckedLow low: Int, high: Int) {
        self.low = low
        self.high = high
    }

    /// Parses `LOW-HIGH` (both 1–65535, LOW ≤ HIGH; one port as `P-P`).
    /// The error is one line naming what is wrong.
    public init(parsing text: String) throws(SNATPortRangeError) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let low = Int(parts[0]), let high = Int(parts[1]),
              parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) })
        else {
            throw SNATPortRangeError("\"\(text)\" is not LOW-HIGH (two port numbers, e.g. 1024-65535)")
        }
        guard (1...65535).contains(low), (1...65535).contains(high) else {
            throw SNATPortRangeError("\"\(text)\" is out of 1-65535")
        }
        guard low <= high else { throw SNATPortRangeError("\"\(text)\" is reversed: \(low) is above \(high)") }
        self.init(uncheckedLow: low, high: high)
    }

    enum CodingKeys: String, CodingKey { case low, high }
}

/// A `--snat-port-range` or `snat_port_range` value that is not a port range.
public struct SNATPortRangeError: Error, Equatable, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// One NAT tuple space: connections of `proto` that the NAT gave the source
/// `source` towards `peer:peerPort` must each get a different source port
/// (the reply tuple must be unique in the conntrack table).
public struct SNATGroupKey: Hashable, Sendable {
    public var proto: UInt8
    public var source: IPAddress
    public var peer: IPAddress
    public var peerPort: UInt16

    public init(proto: UInt8, source: IPAddress, peer: IPAddress, peerPort: UInt16) {
        self.proto = proto
        self.source = source
        self.peer = peer
        self.peerPort = peerPort
    }

    /// Hashed once per NATed entry: three words for IPv4 keys.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(source.low)
        hasher.combine(peer.low)
        hasher.combine(UInt64(peerPort) | UInt64(proto) << 16 | UInt64(source.family.rawValue) << 24
                       | UInt64(peer.family.rawValue) << 32)
        if source.high != 0 || peer.high != 0 {
            hasher.combine(source.high)
            hasher.combine(peer.high)
        }
    }
}

/// Folds conntrack entries into per-group NAT port budgets, one entry at a
/// time, so memory grows with the number of groups, not of entries.
///
/// An entry counts when the kernel applied source NAT to it (`IPS_SRC_NAT`)
/// and its protocol has ports the NAT rewrites (TCP, UDP, UDP-Lite, SCTP,
/// DCCP). Its group is read from the reply tuple, which the NAT keeps
/// unique: (protocol, reply destination = the translated source, reply
/// source = the peer the packets really go to, reply source port); its used
/// port is the reply destination port, the translated source port. For plain
/// SNAT the peer is the original destination; where DNAT applied too
/// (a Kubernetes service), it is the chosen endpoint.
public struct SNATCensus: Sendable {
    public let range: SNATPortRange
    private var groups: [SNATGroupKey: GroupPortSet] = [:]
    /// NATed entries whose translated port lies outside `range`.
    public private(set) var entriesOutsideRange = 0
    /// NATed entries counted into a group.
    public private(set) var entriesCounted = 0

    public init(range: SNATPortRange) {
        self.range = range
    }

    /// Layer-4 protocols whose source port nf_nat rewrites, with their label.
    public static let protocolNames: [UInt8: String] = [6: "tcp", 17: "udp", 136: "udplite", 132: "sctp", 33: "dccp"]

    public mutating func add(_ entry: ConntrackEntry) {
        guard entry.isSourceNATed, Self.protocolNames[entry.proto] != nil else { return }
        let port = entry.reply.destinationPort
        guard Int(port) >= range.low, Int(port) <= range.high else {
            entriesOutsideRange += 1
            return
        }
        entriesCounted += 1
        let key = SNATGroupKey(proto: entry.proto, source: entry.reply.destination, peer: entry.reply.source,
                               peerPort: entry.reply.sourcePort)
        let bounds = (low: UInt16(range.low), high: UInt16(range.high))
        groups[key, default: GroupPortSet()].insert(port, range: bounds)
    }

    /// Every group, worst first (by utilization, then used ports, then key).
    public func report() -> PortBudgetReport.SNAT {
        let capacity = range.capacity
        let none = PortBitmap(low: UInt16(range.low), high: UInt16(range.high))
        var out: [PortBudgetReport.SNATGroup] = []
        out.reserveCapacity(groups.count)
        for (key, ports) in groups {
            let used = ports.distinctCount(excluding: none)
            out.append(.init(protocol: Self.protocolNames[key.proto] ?? String(key.proto),
                             sourceIP: key.source.description, peerIP: key.peer.description,
                             peerPort: Int(key.peerPort), used: used, capacity: capacity,
                             utilization: PortCensus.ratio(used, capacity)))
        }
        out.sort { a, b in
            if a.utilization != b.utilization { return a.utilization > b.utilization }
            if a.used != b.used { return a.used > b.used }
            return (a.protocol, a.sourceIP, a.peerIP, a.peerPort) < (b.protocol, b.sourceIP, b.peerIP, b.peerPort)
        }
        return PortBudgetReport.SNAT(portRange: range, groupCount: out.count,
                                     maxGroupUtilization: out.first?.utilization ?? 0,
                                     entries: entriesCounted, entriesOutsideRange: entriesOutsideRange, groups: out)
    }
}

/// One direction of a conntrack entry, as ctnetlink reports it
/// (CTA_TUPLE_ORIG or CTA_TUPLE_REPLY). For ICMP the ports are 0 and
/// `icmpID` holds the echo identifier.
public struct ConntrackTuple: Sendable, Equatable {
    public var source: IPAddress
    public var destination: IPAddress
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var icmpID: UInt16

    public init(source: IPAddress, destination: IPAddress, sourcePort: UInt16 = 0, destinationPort: UInt16 = 0,
                icmpID: UInt16 = 0) {
        self.source = source
        self.destination = destination
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.icmpID = icmpID
    }
}

/// One conntrack entry: what the SNAT census needs of it.
public struct ConntrackEntry: Sendable, Equatable {
    public var family: IPAddress.Family
    /// The layer-4 protocol number (6 TCP, 17 UDP, ...).
    public var proto: UInt8
    /// The `IPS_*` status bits (CTA_STATUS).
    public var status: UInt32
    public var original: ConntrackTuple
    public var reply: ConntrackTuple
    /// CTA_TUPLE_ZONE of the original tuple; 0 when absent.
    public var zone: UInt16

    public init(family: IPAddress.Family, proto: UInt8, status: UInt32, original: ConntrackTuple,
                reply: ConntrackTuple, zone: UInt16 = 0) {
        self.family = family
        self.proto = proto
        self.status = status
        self.original = original
        self.reply = reply
        self.zone = zone
    }

    /// `IPS_SRC_NAT`: the kernel rewrote the source of this connection.
    public static let sourceNATStatus: UInt32 = 1 << 4
    public var isSourceNATed: Bool { status & Self.sourceNATStatus != 0 }
}

/// The kernel's conntrack statistics, summed over CPUs where they are per CPU.
public struct ConntrackStatistics: Sendable, Equatable {
    public var found: Int64 = 0
    public var invalid: Int64 = 0
    public var insert: Int64 = 0
    /// Entries that could not be inserted: for a NAT, a tuple clash it could not resolve (no port left).
    public var insertFailed: Int64 = 0
    public var drop: Int64 = 0
    public var earlyDrop: Int64 = 0
    public var error: Int64 = 0
    public var searchRestart: Int64 = 0
    public var clashResolve: Int64 = 0
    public var chainTooLong: Int64 = 0

    public init() {}

    public static func + (a: Self, b: Self) -> Self {
        var s = Self()
        s.found = a.found &+ b.found
        s.invalid = a.invalid &+ b.invalid
        s.insert = a.insert &+ b.insert
        s.insertFailed = a.insertFailed &+ b.insertFailed
        s.drop = a.drop &+ b.drop
        s.earlyDrop = a.earlyDrop &+ b.earlyDrop
        s.error = a.error &+ b.error
        s.searchRestart = a.searchRestart &+ b.searchRestart
        s.clashResolve = a.clashResolve &+ b.clashResolve
        s.chainTooLong = a.chainTooLong &+ b.chainTooLong
        return s
    }
}

/// Decodes ctnetlink replies (NETLINK_NETFILTER, subsystem
/// NFNL_SUBSYS_CTNETLINK): conntrack entries of an IPCTNL_MSG_CT_GET dump,
/// the per-CPU statistics of IPCTNL_MSG_CT_GET_STATS_CPU, and the table's
/// size of IPCTNL_MSG_CT_GET_STATS. Pure: it reads a buffer, never a
/// socket, so tests feed it synthetic, truncated and hostile bytes. Every
/// length is checked against its container before a byte is read.
public enum ConntrackDecoder {
    /// nlmsghdr (16) + nfgenmsg (4).
    public static let messageHeaderSize = 20
    public static let ctnetlinkSubsystem: UInt16 = 1
    public static let msgNew: UInt8 = 0
    public static let msgGet: UInt8 = 1
    public static let msgGetStatsCPU: UInt8 = 4
    public static let msgGetStats: UInt8 = 5

    /// Top-level attributes (enum ctattr_type).
    public enum Attribute {
        public static let tupleOrig: UInt16 = 1, tupleReply: UInt16 = 2, status: UInt16 = 3
    }
    /// Inside a tuple (enum ctattr_tuple).
    public enum TupleAttribute {
        public static let ip: UInt16 = 1, proto: UInt16 = 2, zone: UInt16 = 3
    }
    /// Inside CTA_TUPLE_IP (enum ctattr_ip).
    public enum IPAttribute {
        public static let v4Source: UInt16 = 1, v4Destination: UInt16 = 2
        public static let v6Source: UInt16 = 3, v6Destination: UInt16 = 4
    }
    /// Inside CTA_TUPLE_PROTO (enum ctattr_l4proto).
    public enum ProtoAttribute {
        public static let number: UInt16 = 1, sourcePort: UInt16 = 2, destinationPort: UInt16 = 3
        public static let icmpID: UInt16 = 4, icmpv6ID: UInt16 = 7
    }
    /// IPCTNL_MSG_CT_GET_STATS_CPU attributes (enum ctattr_stats_cpu).
    public enum StatsAttribute {
        public static let found: UInt16 = 2, invalid: UInt16 = 4, insert: UInt16 = 8, insertFailed: UInt16 = 9
        public static let drop: UInt16 = 10, earlyDrop: UInt16 = 11, error: UInt16 = 12
        public static let searchRestart: UInt16 = 13, clashResolve: UInt16 = 14, chainTooLong: UInt16 = 15
    }
    /// IPCTNL_MSG_CT_GET_STATS attributes (enum ctattr_stats_global).
    public enum GlobalStatsAttribute {
        public static let entries: UInt16 = 1, maxEntries: UInt16 = 2
    }
    /// The attribute type bits; the top two are NLA_F_NESTED and NLA_F_NET_BYTEORDER.
    static let attributeTypeMask: UInt16 = 0x3fff
    static let attributeHeaderSize = 4

    public enum Message: Sendable, Equatable {
        case entry(ConntrackEntry)
        /// One CPU's counters; `cpu` is the nfgenmsg res_id.
        case cpuStatistics(cpu: Int, ConntrackStatistics)
        /// Entries in this namespace's table and `nf_conntrack_max` (absent before Linux 4.19's MAX_ENTRIES).
        case tableSize(entries: Int64, limit: Int64?)
    }

    public enum DecodeError: Error, Equatable, Sendable, CustomStringConvertible {
        case badMessageLength(offset: Int, length: Int, available: Int)
        /// A ctnetlink message shorter than its nfgenmsg.
        case shortMessage(offset: Int, length: Int)
        /// An attribute whose length is below its header or runs past its container.
        case badAttribute(offset: Int, length: Int, available: Int)
        /// An attribute of the wrong size for its type (an address, a port, a counter).
        case badAttributeSize(offset: Int, type: UInt16, length: Int)
        /// An entry without a part the kernel always sends.
        case incompleteEntry(offset: Int, missing: String)
        case unknownFamily(offset: Int, family: UInt8)
        case kernelError(errno: Int32)
        case overrun

        public var description: String {
            switch self {
            case let .badMessageLength(offset, length, available):
                return "netlink message at byte \(offset) claims \(length) bytes, \(available) available"
            case let .shortMessage(offset, length):
                return "ctnetlink message at byte \(offset) is \(length) bytes, needs \(ConntrackDecoder.messageHeaderSize)"
            case let .badAttribute(offset, length, available):
                return "netlink attribute at byte \(offset) claims \(length) bytes, \(available) available"
            case let .badAttributeSize(offset, type, length):
                return "netlink attribute \(type) at byte \(offset) has \(length) payload bytes"
            case let .incompleteEntry(offset, missing):
                return "conntrack entry at byte \(offset) has no \(missing)"
            case let .unknownFamily(offset, family):
                return "conntrack entry at byte \(offset) has address family \(family)"
            case let .kernelError(errno):
                return "kernel answered with errno \(errno)"
            case .overrun:
                return "netlink reported a buffer overrun"
            }
        }
    }

    /// Walks every netlink message in `buffer`, calling `body` for each
    /// ctnetlink message it knows. Messages whose sequence number is not
    /// `sequence` are stale and skipped. `.done` after NLMSG_DONE or an ACK
    /// (NLMSG_ERROR with code 0), which closes a request sent with NLM_F_ACK.
    public static func decode(_ buffer: UnsafeRawBufferPointer, sequence: UInt32? = nil,
                              _ body: (Message) throws -> Void) throws -> NetlinkDumpDecoder.Progress {
        let headerSize = NetlinkDumpDecoder.headerSize
        var offset = 0
        while buffer.count - offset >= headerSize {
            let length = Int(buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
            let type = buffer.loadUnaligned(fromByteOffset: offset + 4, as: UInt16.self)
            let seq = buffer.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self)
            guard length >= headerSize, length <= buffer.count - offset else {
                throw DecodeError.badMessageLength(offset: offset, length: length, available: buffer.count - offset)
            }
            let stale = sequence.map { $0 != seq } ?? false
            let payload = offset + headerSize
            let payloadLength = length - headerSize
            switch type {
            case NetlinkDumpDecoder.nlmsgDone where !stale:
                if payloadLength >= 4 {
                    let code = buffer.loadUnaligned(fromByteOffset: payload, as: Int32.self)
                    if code < 0 { throw DecodeError.kernelError(errno: -code) }
                }
                return .done
            case NetlinkDumpDecoder.nlmsgError where !stale:
                guard payloadLength >= 4 else { throw DecodeError.shortMessage(offset: offset, length: length) }
                let code = buffer.loadUnaligned(fromByteOffset: payload, as: Int32.self)
                if code != 0 { throw DecodeError.kernelError(errno: code < 0 ? -code : code) }
                return .done
            case NetlinkDumpDecoder.nlmsgOverrun:
                throw DecodeError.overrun
            case _ where !stale && type >> 8 == ctnetlinkSubsystem:
                guard length >= messageHeaderSize else { throw DecodeError.shortMessage(offset: offset, length: length) }
                let end = offset + length
                switch UInt8(truncatingIfNeeded: type) {
                case msgNew, msgGet:
                    try body(.entry(try entry(buffer, message: offset, end: end)))
                case msgGetStatsCPU:
                    let cpu = Int(UInt16(bigEndian: buffer.loadUnaligned(fromByteOffset: payload + 2, as: UInt16.self)))
                    try body(.cpuStatistics(cpu: cpu, try statistics(buffer, from: offset + messageHeaderSize, to: end)))
                case msgGetStats:
                    try body(try tableSize(buffer, from: offset + messageHeaderSize, to: end))
                default:
                    break
                }
            default:
                break  // NOOP, stale replies, other subsystems.
            }
            offset += (length + 3) & ~3  // NLMSG_ALIGN
        }
        if offset < buffer.count {
            throw DecodeError.badMessageLength(offset: offset, length: buffer.count - offset, available: buffer.count - offset)
        }
        return .more
    }

    /// Calls `body(type, payloadStart, payloadLength)` for each attribute in
    /// [start, end), after checking its length against the container.
    @inline(__always)
    static func forEachAttribute(_ p: UnsafeRawBufferPointer, from start: Int, to end: Int,
                                 _ body: (UInt16, Int, Int) throws -> Void) throws {
        var at = start
        while end - at >= attributeHeaderSize {
            let length = Int(p.loadUnaligned(fromByteOffset: at, as: UInt16.self))
            guard length >= attributeHeaderSize, length <= end - at else {
                throw DecodeError.badAttribute(offset: at, length: length, available: end - at)
            }
            let type = p.loadUnaligned(fromByteOffset: at + 2, as: UInt16.self) & attributeTypeMask
            try body(type, at + attributeHeaderSize, length - attributeHeaderSize)
            at += (length + 3) & ~3  // NLA_ALIGN; may step past `end` by the final padding
        }
    }

    static func bigEndian16(_ p: UnsafeRawBufferPointer, _ at: Int, _ length: Int, type: UInt16) throws -> UInt16 {
        guard length >= 2 else { throw DecodeError.badAttributeSize(offset: at - attributeHeaderSize, type: type, length: length) }
        return UInt16(bigEndian: p.loadUnaligned(fromByteOffset: at, as: UInt16.self))
    }

    /// A counter: the kernel sends u32 (stats) or u64 values, big-endian.
    static func bigEndianCounter(_ p: UnsafeRawBufferPointer, _ at: Int, _ length: Int, type: UInt16) throws -> Int64 {
        switch length {
        case 4: return Int64(UInt32(bigEndian: p.loadUnaligned(fromByteOffset: at, as: UInt32.self)))
        case 8: return Int64(truncatingIfNeeded: UInt64(bigEndian: p.loadUnaligned(fromByteOffset: at, as: UInt64.self)))
        default: throw DecodeError.badAttributeSize(offset: at - attributeHeaderSize, type: type, length: length)
        }
    }

    static func entry(_ p: UnsafeRawBufferPointer, message: Int, end: Int) throws -> ConntrackEntry {
        let rawFamily = p[message + NetlinkDumpDecoder.headerSize]
        guard let family = IPAddress.Family(rawValue: rawFamily) else {
            throw DecodeError.unknownFamily(offset: message, family: rawFamily)
        }
        var original: ConntrackTuple?, reply: ConntrackTuple?, status: UInt32?
        var proto: UInt8 = 0, zone: UInt16 = 0
        try forEachAttribute(p, from: message + messageHeaderSize, to: end) { type, at, length in
            switch type {
            case Attribute.tupleOrig:
                let t = try tuple(p, from: at, to: at + length, family: family)
                original = t.tuple
                proto = t.proto
                zone = t.zone
            case Attribute.tupleReply:
                reply = try tuple(p, from: at, to: at + length, family: family).tuple
            case Attribute.status:
                guard length == 4 else { throw DecodeError.badAttributeSize(offset: at - 4, type: type, length: length) }
                status = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: at, as: UInt32.self))
            default:
                break
            }
        }
        guard let original else { throw DecodeError.incompleteEntry(offset: message, missing: "CTA_TUPLE_ORIG") }
        guard let reply else { throw DecodeError.incompleteEntry(offset: message, missing: "CTA_TUPLE_REPLY") }
        guard let status else { throw DecodeError.incompleteEntry(offset: message, missing: "CTA_STATUS") }
        return ConntrackEntry(family: family, proto: proto, status: status, original: original, reply: reply, zone: zone)
    }

    static func tuple(_ p: UnsafeRawBufferPointer, from start: Int, to end: Int, family: IPAddress.Family) throws
        -> (tuple: ConntrackTuple, proto: UInt8, zone: UInt16)
    {
        var source: IPAddress?, destination: IPAddress?
        var proto: UInt8?, sourcePort: UInt16 = 0, destinationPort: UInt16 = 0, icmpID: UInt16 = 0, zone: UInt16 = 0
        try forEachAttribute(p, from: start, to: end) { type, at, length in
            switch type {
            case TupleAttribute.ip:
                try forEachAttribute(p, from: at, to: at + length) { ipType, ipAt, ipLength in
                    let v4 = ipType == IPAttribute.v4Source || ipType == IPAttribute.v4Destination
                    let v6 = ipType == IPAttribute.v6Source || ipType == IPAttribute.v6Destination
                    guard v4 || v6 else { return }
                    guard ipLength == (v4 ? 4 : 16), (v4 ? IPAddress.Family.v4 : .v6) == family else {
                        throw DecodeError.badAttributeSize(offset: ipAt - 4, type: ipType, length: ipLength)
                    }
                    let address = IPAddress(diagBytes: p, offset: ipAt, family: family)
                    if ipType == IPAttribute.v4Source || ipType == IPAttribute.v6Source {
                        source = address
                    } else {
                        destination = address
                    }
                }
            case TupleAttribute.proto:
                try forEachAttribute(p, from: at, to: at + length) { pType, pAt, pLength in
                    switch pType {
                    case ProtoAttribute.number:
                        guard pLength >= 1 else { throw DecodeError.badAttributeSize(offset: pAt - 4, type: pType, length: pLength) }
                        proto = p[pAt]
                    case ProtoAttribute.sourcePort: sourcePort = try bigEndian16(p, pAt, pLength, type: pType)
                    case ProtoAttribute.destinationPort: destinationPort = try bigEndian16(p, pAt, pLength, type: pType)
                    case ProtoAttribute.icmpID, ProtoAttribute.icmpv6ID: icmpID = try bigEndian16(p, pAt, pLength, type: pType)
                    default: break
                    }
                }
            case TupleAttribute.zone:
                zone = try bigEndian16(p, at, length, type: type)
            default:
                break
            }
        }
        let offset = start - attributeHeaderSize
        guard let source, let destination else { throw DecodeError.incompleteEntry(offset: offset, missing: "CTA_TUPLE_IP address") }
        guard let proto else { throw DecodeError.incompleteEntry(offset: offset, missing: "CTA_PROTO_NUM") }
        return (ConntrackTuple(source: source, destination: destination, sourcePort: sourcePort,
                               destinationPort: destinationPort, icmpID: icmpID), proto, zone)
    }

    static func statistics(_ p: UnsafeRawBufferPointer, from start: Int, to end: Int) throws -> ConntrackStatistics {
        var s = ConntrackStatistics()
        try forEachAttribute(p, from: start, to: end) { type, at, length in
            switch type {
            case StatsAttribute.found: s.found = try bigEndianCounter(p, at, length, type: type)
            case StatsAttribute.invalid: s.invalid = try bigEndianCounter(p, at, length, type: type)
            case StatsAttribute.insert: s.insert = try bigEndianCounter(p, at, length, type: type)
            case StatsAttribute.insertFailed: s.insertFailed = try bigEndianCounter(p, at, length, type: type)
            case StatsAttribute.drop: s.drop = try bigEndianCounter(p, at, length, type: type)
            case StatsAttribute.earlyDrop: s.earlyDrop = try bigEndianCounter(p, at, length, type: type)
            case StatsAttribute.error: s.error = try bigEndianCounter(p, at, length, type: type)
            case StatsAttribute.searchRestart: s.searchRestart = try bigEndianCounter(p, at, length, type: type)
            case StatsAttribute.clashResolve: s.clashResolve = try bigEndianCounter(p, at, length, type: type)
            case StatsAttribute.chainTooLong: s.chainTooLong = try bigEndianCounter(p, at, length, type: type)
            default: break
            }
        }
        return s
    }

    static func tableSize(_ p: UnsafeRawBufferPointer, from start: Int, to end: Int) throws -> Message {
        var entries: Int64?, limit: Int64?
        try forEachAttribute(p, from: start, to: end) { type, at, length in
            switch type {
            case GlobalStatsAttribute.entries: entries = try bigEndianCounter(p, at, length, type: type)
            case GlobalStatsAttribute.maxEntries: limit = try bigEndianCounter(p, at, length, type: type)
            default: break
            }
        }
        guard let entries else {
            throw DecodeError.incompleteEntry(offset: start - messageHeaderSize, missing: "CTA_STATS_GLOBAL_ENTRIES")
        }
        return .tableSize(entries: entries, limit: limit)
    }
}

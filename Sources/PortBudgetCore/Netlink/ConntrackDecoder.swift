/// Decodes ctnetlink replies (NETLINK_NETFILTER, subsystem
/// NFNL_SUBSYS_CTNETLINK): conntrack entries of an IPCTNL_MSG_CT_GET dump,
/// the per-CPU statistics of IPCTNL_MSG_CT_GET_STATS_CPU, and the table's
/// size of IPCTNL_MSG_CT_GET_STATS. The messages around them are
/// `NetlinkFrameDecoder`'s. Pure: it reads a buffer, never a socket, so
/// tests feed it synthetic, truncated and hostile bytes. Every length is
/// checked against its container before a byte is read.
public enum ConntrackDecoder {
    /// sizeof(struct nfgenmsg), the fixed part of every ctnetlink payload.
    public static let nfgenmsgSize = 4
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

    public enum Message: Sendable, Equatable {
        case entry(ConntrackEntry)
        /// One CPU's counters; `cpu` is the nfgenmsg res_id.
        case cpuStatistics(cpu: Int, ConntrackStatistics)
        /// Entries in this namespace's table and `nf_conntrack_max` (absent before Linux 4.19's MAX_ENTRIES).
        case tableSize(entries: Int64, limit: Int64?)
    }

    /// Walks every message in `buffer` (see `NetlinkFrameDecoder.decode`),
    /// calling `body` for each ctnetlink message it knows.
    public static func decode(_ buffer: UnsafeRawBufferPointer, sequence: UInt32? = nil, portID: UInt32? = nil,
                              _ body: (Message) throws -> Void) throws -> NetlinkFrameDecoder.Progress {
        try NetlinkFrameDecoder.decode(buffer, sequence: sequence, portID: portID) { netlink in
            if let decoded = try message(in: netlink) { try body(decoded) }
        }
    }

    /// What `netlink` says; nil for a message of another subsystem or
    /// a ctnetlink type this decoder does not know.
    public static func message(in netlink: NetlinkMessage) throws -> Message? {
        guard netlink.type >> 8 == ctnetlinkSubsystem else { return nil }
        guard netlink.payloadLength >= nfgenmsgSize else {
            throw NetlinkDecodeError.shortMessage(offset: netlink.offset, length: netlink.payloadLength, needs: nfgenmsgSize)
        }
        let p = netlink.bytes
        let attributes = netlink.payloadOffset + nfgenmsgSize
        switch UInt8(truncatingIfNeeded: netlink.type) {
        case msgNew, msgGet:
            return .entry(try entry(p, message: netlink.offset, end: netlink.end))
        case msgGetStatsCPU:
            let cpu = Int(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: netlink.payloadOffset + 2, as: UInt16.self)))
            return .cpuStatistics(cpu: cpu, try statistics(p, from: attributes, to: netlink.end))
        case msgGetStats:
            return try tableSize(p, from: attributes, to: netlink.end)
        default:
            return nil
        }
    }

    static func bigEndian16(_ p: UnsafeRawBufferPointer, _ at: Int, _ length: Int, type: UInt16) throws -> UInt16 {
        guard length >= 2 else {
            throw NetlinkDecodeError.badAttributeSize(offset: at - NetlinkAttributes.headerSize, type: type, length: length)
        }
        return UInt16(bigEndian: p.loadUnaligned(fromByteOffset: at, as: UInt16.self))
    }

    /// A counter: the kernel sends u32 (stats) or u64 values, big-endian.
    static func bigEndianCounter(_ p: UnsafeRawBufferPointer, _ at: Int, _ length: Int, type: UInt16) throws -> Int64 {
        switch length {
        case 4: return Int64(UInt32(bigEndian: p.loadUnaligned(fromByteOffset: at, as: UInt32.self)))
        case 8: return Int64(truncatingIfNeeded: UInt64(bigEndian: p.loadUnaligned(fromByteOffset: at, as: UInt64.self)))
        default: throw NetlinkDecodeError.badAttributeSize(offset: at - NetlinkAttributes.headerSize, type: type, length: length)
        }
    }

    static func entry(_ p: UnsafeRawBufferPointer, message: Int, end: Int) throws -> ConntrackEntry {
        let rawFamily = p[message + NetlinkFrameDecoder.headerSize]
        guard let family = IPAddress.Family(rawValue: rawFamily) else {
            throw NetlinkDecodeError.unknownFamily(offset: message, family: rawFamily)
        }
        var original: ConntrackTuple?, reply: ConntrackTuple?, status: UInt32?
        var proto: UInt8 = 0, zone: UInt16 = 0
        try NetlinkAttributes.forEach(in: p, from: message + NetlinkFrameDecoder.headerSize + nfgenmsgSize, to: end) { type, at, length in
            switch type {
            case Attribute.tupleOrig:
                let t = try tuple(p, from: at, to: at + length, family: family)
                original = t.tuple
                proto = t.proto
                zone = t.zone
            case Attribute.tupleReply:
                reply = try tuple(p, from: at, to: at + length, family: family).tuple
            case Attribute.status:
                guard length == 4 else { throw NetlinkDecodeError.badAttributeSize(offset: at - 4, type: type, length: length) }
                status = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: at, as: UInt32.self))
            default:
                break
            }
        }
        guard let original else { throw NetlinkDecodeError.missingAttribute(offset: message, name: "CTA_TUPLE_ORIG") }
        guard let reply else { throw NetlinkDecodeError.missingAttribute(offset: message, name: "CTA_TUPLE_REPLY") }
        guard let status else { throw NetlinkDecodeError.missingAttribute(offset: message, name: "CTA_STATUS") }
        return ConntrackEntry(family: family, proto: proto, status: status, original: original, reply: reply, zone: zone)
    }

    static func tuple(_ p: UnsafeRawBufferPointer, from start: Int, to end: Int, family: IPAddress.Family) throws
        -> (tuple: ConntrackTuple, proto: UInt8, zone: UInt16)
    {
        var source: IPAddress?, destination: IPAddress?
        var proto: UInt8?, sourcePort: UInt16 = 0, destinationPort: UInt16 = 0, icmpID: UInt16 = 0, zone: UInt16 = 0
        try NetlinkAttributes.forEach(in: p, from: start, to: end) { type, at, length in
            switch type {
            case TupleAttribute.ip:
                try NetlinkAttributes.forEach(in: p, from: at, to: at + length) { ipType, ipAt, ipLength in
                    let v4 = ipType == IPAttribute.v4Source || ipType == IPAttribute.v4Destination
                    let v6 = ipType == IPAttribute.v6Source || ipType == IPAttribute.v6Destination
                    guard v4 || v6 else { return }
                    guard ipLength == (v4 ? 4 : 16), (v4 ? IPAddress.Family.v4 : .v6) == family else {
                        throw NetlinkDecodeError.badAttributeSize(offset: ipAt - 4, type: ipType, length: ipLength)
                    }
                    let address = IPAddress(diagBytes: p, offset: ipAt, family: family)
                    if ipType == IPAttribute.v4Source || ipType == IPAttribute.v6Source {
                        source = address
                    } else {
                        destination = address
                    }
                }
            case TupleAttribute.proto:
                try NetlinkAttributes.forEach(in: p, from: at, to: at + length) { pType, pAt, pLength in
                    switch pType {
                    case ProtoAttribute.number:
                        guard pLength >= 1 else { throw NetlinkDecodeError.badAttributeSize(offset: pAt - 4, type: pType, length: pLength) }
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
        let offset = start - NetlinkAttributes.headerSize
        guard let source, let destination else { throw NetlinkDecodeError.missingAttribute(offset: offset, name: "CTA_TUPLE_IP address") }
        guard let proto else { throw NetlinkDecodeError.missingAttribute(offset: offset, name: "CTA_PROTO_NUM") }
        return (ConntrackTuple(source: source, destination: destination, sourcePort: sourcePort,
                               destinationPort: destinationPort, icmpID: icmpID), proto, zone)
    }

    static func statistics(_ p: UnsafeRawBufferPointer, from start: Int, to end: Int) throws -> ConntrackStatistics {
        var s = ConntrackStatistics()
        try NetlinkAttributes.forEach(in: p, from: start, to: end) { type, at, length in
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
        try NetlinkAttributes.forEach(in: p, from: start, to: end) { type, at, length in
            switch type {
            case GlobalStatsAttribute.entries: entries = try bigEndianCounter(p, at, length, type: type)
            case GlobalStatsAttribute.maxEntries: limit = try bigEndianCounter(p, at, length, type: type)
            default: break
            }
        }
        guard let entries else {
            let message = start - NetlinkFrameDecoder.headerSize - nfgenmsgSize
            throw NetlinkDecodeError.missingAttribute(offset: message, name: "CTA_STATS_GLOBAL_ENTRIES")
        }
        return .tableSize(entries: entries, limit: limit)
    }
}

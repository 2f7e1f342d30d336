import PortBudgetCore

extension NetlinkReplyEncoder {
    /// NLA_F_NESTED: ctnetlink flags every attribute that holds attributes.
    static let nested: UInt16 = 0x8000

    /// Appends one IPCTNL_MSG_CT_NEW message (what a dump answers with) for `entry`.
    public mutating func append(_ entry: ConntrackEntry) {
        var payload = Self.nfgenmsg(family: entry.family.rawValue, resID: 0)
        Self.attribute(&payload, ConntrackDecoder.Attribute.tupleOrig | Self.nested,
                       Self.tuple(entry.original, entry: entry, zone: entry.zone))
        Self.attribute(&payload, ConntrackDecoder.Attribute.tupleReply | Self.nested,
                       Self.tuple(entry.reply, entry: entry, zone: entry.zone))
        Self.attribute(&payload, ConntrackDecoder.Attribute.status, Self.be(entry.status))
        appendMessage(type: ConntrackDecoder.ctnetlinkSubsystem << 8 | UInt16(ConntrackDecoder.msgNew), payload: payload)
    }

    /// Appends one IPCTNL_MSG_CT_GET_STATS_CPU message.
    public mutating func append(cpu: Int, _ s: ConntrackStatistics) {
        var payload = Self.nfgenmsg(family: 0, resID: UInt16(cpu))
        typealias A = ConntrackDecoder.StatsAttribute
        for (type, value) in [(A.found, s.found), (A.invalid, s.invalid), (A.insert, s.insert),
                              (A.insertFailed, s.insertFailed), (A.drop, s.drop), (A.earlyDrop, s.earlyDrop),
                              (A.error, s.error), (A.searchRestart, s.searchRestart),
                              (A.clashResolve, s.clashResolve), (A.chainTooLong, s.chainTooLong)] {
            Self.attribute(&payload, type, Self.be(UInt32(truncatingIfNeeded: value)))
        }
        appendMessage(type: ConntrackDecoder.ctnetlinkSubsystem << 8 | UInt16(ConntrackDecoder.msgGetStatsCPU),
                      payload: payload)
    }

    /// Appends one IPCTNL_MSG_CT_GET_STATS message.
    public mutating func appendTableSize(entries: UInt32, limit: UInt32?) {
        var payload = Self.nfgenmsg(family: 0, resID: 0)
        Self.attribute(&payload, ConntrackDecoder.GlobalStatsAttribute.entries, Self.be(entries))
        if let limit { Self.attribute(&payload, ConntrackDecoder.GlobalStatsAttribute.maxEntries, Self.be(limit)) }
        appendMessage(type: ConntrackDecoder.ctnetlinkSubsystem << 8 | UInt16(ConntrackDecoder.msgGetStats),
                      payload: payload)
    }

    private static func tuple(_ t: ConntrackTuple, entry: ConntrackEntry, zone: UInt16) -> [UInt8] {
        var ip: [UInt8] = []
        let v4 = entry.family == .v4
        attribute(&ip, v4 ? ConntrackDecoder.IPAttribute.v4Source : ConntrackDecoder.IPAttribute.v6Source,
                  address(t.source, v4: v4))
        attribute(&ip, v4 ? ConntrackDecoder.IPAttribute.v4Destination : ConntrackDecoder.IPAttribute.v6Destination,
                  address(t.destination, v4: v4))
        var proto: [UInt8] = []
        attribute(&proto, ConntrackDecoder.ProtoAttribute.number, [entry.proto])
        if entry.proto == 1 || entry.proto == 58 {
            attribute(&proto, entry.proto == 1 ? ConntrackDecoder.ProtoAttribute.icmpID : ConntrackDecoder.ProtoAttribute.icmpv6ID,
                      be(t.icmpID))
        } else {
            attribute(&proto, ConntrackDecoder.ProtoAttribute.sourcePort, be(t.sourcePort))
            attribute(&proto, ConntrackDecoder.ProtoAttribute.destinationPort, be(t.destinationPort))
        }
        var out: [UInt8] = []
        attribute(&out, ConntrackDecoder.TupleAttribute.ip | nested, ip)
        attribute(&out, ConntrackDecoder.TupleAttribute.proto | nested, proto)
        if zone != 0 { attribute(&out, ConntrackDecoder.TupleAttribute.zone, be(zone)) }
        return out
    }

    private static func nfgenmsg(family: UInt8, resID: UInt16) -> [UInt8] { [family, 0] + be(resID) }

    private static func address(_ a: IPAddress, v4: Bool) -> [UInt8] {
        if v4 { return be(UInt32(truncatingIfNeeded: a.low)) }
        if a.family == .v4 { return be(UInt64(0)) + be(UInt64(0xffff) << 32 | a.low) }
        return be(a.high) + be(a.low)
    }
}

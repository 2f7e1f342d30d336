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

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

import PortBudgetCore

/// Protocol counters (ICMP unreachables, UDP errors) from /proc/net/snmp.
public struct SnmpCollector: Collector {
    public static let name = "snmp"

    public init() {}

    public func update(_ collection: inout CollectionInProgress) throws {
        collection.counterTables[.snmp] = try collection.context.procfs.netTable(.snmp)
    }
}

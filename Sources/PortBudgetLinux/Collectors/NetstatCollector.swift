import PortBudgetCore

/// Extended TCP counters (TIME_WAIT recycling, listen drops) from /proc/net/netstat.
public struct NetstatCollector: Collector {
    public static let name = "netstat"

    public init() {}

    public func update(_ collection: inout CollectionInProgress) throws {
        collection.counterTables[.netstat] = try collection.context.procfs.netTable(.netstat)
    }
}

import PortBudgetCore

/// Socket counts by protocol from /proc/net/sockstat and sockstat6.
public struct SockstatCollector: Collector {
    public static let name = "sockstat"

    public init() {}

    public func update(_ collection: inout CollectionInProgress) throws {
        let procfs = collection.context.procfs
        let (v4, v6) = try (procfs.netTable(.sockstat), procfs.netTable(.sockstat6))
        collection.counterTables[.sockstat] = v4
        collection.counterTables[.sockstat6] = v6
    }
}

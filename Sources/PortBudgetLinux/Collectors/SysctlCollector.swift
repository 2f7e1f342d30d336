import PortBudgetCore

/// The port range, reserved ports and TIME_WAIT sysctls of the namespace.
public struct SysctlCollector: Collector {
    public static let name = "sysctl"

    public init() {}

    public func update(_ collection: inout CollectionInProgress) throws {
        collection.sysctls = try collection.context.procfs.portSysctls()
    }
}

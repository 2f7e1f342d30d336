import Logging
import PortBudgetCore

/// One source of a namespace's port budget, in the manner of
/// node_exporter's collectors: each reads one thing and adds it to the
/// collection in progress. `CollectorSet` runs them in order, times each and
/// turns a thrown error into that collector's failed outcome, so a new
/// collector is one new file plus its line in `CollectorSet.standard`.
public protocol Collector: Sendable {
    /// What metrics (`collector="…"`), logs and `check`'s messages call it.
    static var name: String { get }
    /// Whether it has anything to do in this collection; one that has not
    /// reports no outcome (the SNAT census without a port census, say).
    func applies(to collection: CollectionInProgress) -> Bool
    /// Reads what it measures into `collection`; throws when it cannot.
    func update(_ collection: inout CollectionInProgress) throws
}

extension Collector {
    public func applies(to collection: CollectionInProgress) -> Bool { true }
    public var name: String { Self.name }
}

/// Where one namespace's collectors read from: its procfs view and, with
/// `--all-namespaces`, the netlink sockets opened inside it.
public struct CollectionContext: Sendable {
    public var procfs: ProcFS
    /// Netlink sockets kept for one namespace across collections; nil opens
    /// fresh ones in the calling thread's namespace.
    public var sockets: NamespaceSockets?
    public var logger: Logger

    public init(procfs: ProcFS, sockets: NamespaceSockets? = nil, logger: Logger) {
        self.procfs = procfs
        self.sockets = sockets
        self.logger = logger
    }
}

/// One namespace's collection as the collectors fill it in.
public struct CollectionInProgress {
    public let context: CollectionContext
    /// The port sysctls: the range and the TIME_WAIT settings every census needs.
    public var sysctls: PortSysctls?
    /// The port budget, once the census made it.
    public var report: PortBudgetReport?
    /// /proc/net tables read for the kernel counters.
    public var counterTables: [KernelCounter.Source: ProcNetParser.Table] = [:]
    /// Which namespace this is (inode 0: the agent's own, not looked up).
    public var netns: NetnsInfo = .own

    public init(context: CollectionContext) {
        self.context = context
    }
}

/// A collector that could not run because one before it failed: its
/// outcome is failed with this reason, and it is not logged again.
public struct CollectorSkipped: Error, CustomStringConvertible {
    public let description: String
    public init(_ reason: String) { description = "skipped: " + reason }
}

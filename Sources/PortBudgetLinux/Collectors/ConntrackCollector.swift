import Glibc
import PortBudgetCore

/// The NAT's port budget (SNAT groups against the NAT range) and the
/// conntrack table's fill, from a ctnetlink dump. Needs CAP_NET_ADMIN; runs
/// only when the census made a report to add them to.
public struct ConntrackCollector: Collector {
    public static let name = "conntrack"

    /// The file whose presence says conntrack is loaded in this namespace.
    /// Checked first so that a host without conntrack is told so plainly, and
    /// so the agent never makes the kernel load nf_conntrack_netlink (a
    /// ctnetlink request for a missing subsystem triggers a module load).
    public static let presenceFile = "sys/net/netfilter/nf_conntrack_max"

    /// The NAT range SNAT groups are measured against: the kernel's default
    /// unless `--snat-port-range` or the alerting config names one.
    public let snatPortRange: SNATPortRange

    public init(snatPortRange: SNATPortRange = .kernelDefault) {
        self.snatPortRange = snatPortRange
    }

    /// Whether conntrack is loaded: the module is global, so its sysctl
    /// shows in every namespace's view at once.
    public static func loaded(procfs: ProcFS) -> Bool { access(procfs.path(presenceFile), F_OK) == 0 }

    public func applies(to collection: CollectionInProgress) -> Bool { collection.report != nil }

    public func update(_ collection: inout CollectionInProgress) throws {
        let snapshot = try self.snapshot(collection.context)
        collection.report?.snat = snapshot.snat
        collection.report?.conntrack = snapshot.table
    }

    /// The SNAT census and the conntrack table of the calling thread's
    /// namespace, or of the namespace the context's sockets were opened in.
    func snapshot(_ context: CollectionContext) throws -> ConntrackSnapshot {
        guard Self.loaded(procfs: context.procfs) else {
            throw ConntrackError(unavailable: "conntrack is not loaded in this network namespace (no \(context.procfs.path(Self.presenceFile)))")
        }
        if let sockets = context.sockets {
            guard let kept = sockets.conntrack else {
                throw ConntrackError(unavailable: "conntrack was loaded after this namespace was first seen; measured from the next collection")
            }
            return try kept.snapshot(range: snatPortRange)
        }
        return try ConntrackDumper().snapshot(range: snatPortRange)
    }
}

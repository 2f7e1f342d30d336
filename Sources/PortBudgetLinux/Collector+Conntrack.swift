import Glibc
import PortBudgetCore

extension Collector {
    /// The file whose presence says conntrack is loaded in this namespace.
    /// Checked first so that a host without conntrack is told so plainly, and
    /// so the agent never makes the kernel load nf_conntrack_netlink (a
    /// ctnetlink request for a missing subsystem triggers a module load).
    public static let conntrackPresenceFile = "sys/net/netfilter/nf_conntrack_max"

    /// Whether conntrack is loaded: the module is global, so its sysctl
    /// shows in every namespace's view at once.
    public var conntrackLoaded: Bool { access(procfs.path(Self.conntrackPresenceFile), F_OK) == 0 }

    /// The SNAT census and the conntrack table of the calling thread's
    /// namespace, or of the namespace `sockets` were opened in.
    public func conntrackSnapshot() throws -> ConntrackSnapshot {
        let presence = procfs.path(Self.conntrackPresenceFile)
        guard conntrackLoaded else {
            throw ConntrackError(unavailable: "conntrack is not loaded in this network namespace (no \(presence))")
        }
        if let sockets {
            guard let kept = sockets.conntrack else {
                throw ConntrackError(unavailable: "conntrack was loaded after this namespace was first seen; measured from the next collection")
            }
            return try kept.snapshot(range: snatPortRange)
        }
        return try ConntrackDumper().snapshot(range: snatPortRange)
    }
}

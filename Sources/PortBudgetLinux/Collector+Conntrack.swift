import Glibc
import PortBudgetCore

extension Collector {
    /// The file whose presence says conntrack is loaded in this namespace.
    /// Checked first so that a host without conntrack is told so plainly, and
    /// so the agent never makes the kernel load nf_conntrack_netlink (a
    /// ctnetlink request for a missing subsystem triggers a module load).
    public static let conntrackPresenceFile = "sys/net/netfilter/nf_conntrack_max"

    /// The SNAT census and the conntrack table of the calling thread's namespace.
    public func conntrackSnapshot() throws -> ConntrackSnapshot {
        let presence = procfs.path(Self.conntrackPresenceFile)
        guard access(presence, F_OK) == 0 else {
            throw ConntrackError(unavailable: "conntrack is not loaded in this network namespace (no \(presence))")
        }
        return try ConntrackDumper().snapshot(range: snatPortRange)
    }
}

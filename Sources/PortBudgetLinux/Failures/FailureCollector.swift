import Glibc
import PortBudgetCore

/// The collector named "failures": the kernel's failure counts for one
/// network namespace, cgroups named. It loads the programs once, when made;
/// if that fails, every collection fails with the same one-line reason (the
/// collection's failure log prints it once), and every other collector
/// carries on.
public final class FailureCollector: Sendable {
    public static let name = "failures"

    let programs: Result<FailurePrograms, FailureProgramsUnavailable>
    let cgroups: CgroupResolver
    /// The agent's own namespace: the one that carries the host-wide drop counters.
    public let ownNetnsInode: UInt64?

    public init(options: FailurePrograms.Options = .init(), cgroups: CgroupResolver, procfs: ProcFS) {
        do throws(FailureProgramsUnavailable) {
            programs = .success(try FailurePrograms(options: options))
        } catch {
            programs = .failure(error)
        }
        self.cgroups = cgroups
        ownNetnsInode = Self.inode(procfs.root + "/thread-self/ns/net")
    }

    /// The loaded programs, or why there are none.
    public var loaded: FailurePrograms? { try? programs.get() }

    /// The failures in the namespace with inode `netnsInode` (the agent's own when nil).
    public func collect(netnsInode: UInt64?) throws -> PortAllocationFailures {
        let programs = try programs.get()
        guard let inode = netnsInode ?? ownNetnsInode else {
            throw FailureProgramsUnavailable(description: "the agent's own network namespace could not be identified")
        }
        let counts = try programs.counts()
        var owners: [UInt64: CgroupOwner] = [:]
        let ids = Set(counts.keys.lazy.filter { $0.netnsInode == inode }.map(\.cgroupID))
        for (id, resolution) in cgroups.resolve(ids) {
            if case let .owner(owner) = resolution { owners[id] = owner }
        }
        return PortAllocationFailures(counts: counts, netnsInode: inode, watched: programs.watched, owners: owners,
                                      drops: inode == ownNetnsInode ? programs.drops() : nil)
    }

    static func inode(_ path: String) -> UInt64? {
        var status = stat()
        return stat(path, &status) == 0 ? UInt64(status.st_ino) : nil
    }
}

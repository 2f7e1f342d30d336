import Glibc
import PortBudgetCore

/// The collector named "failures": the kernel's failure counts for one
/// network namespace, cgroups named (docs/failures.md). It loads the
/// programs once, when made; if that fails, every collection fails with the
/// same one-line reason (logged at most hourly), and every other collector
/// carries on. It adds to the census's report, so runs only when there is one.
public final class FailureCollector: Collector {
    public static let name = "failures"

    let programs: Result<FailurePrograms, FailureProgramsUnavailable>
    let cgroups: CgroupResolver
    /// The agent's own namespace: the one that carries the host-wide drop counters.
    public let ownNetnsInode: UInt64?
    /// What the programs saw of bind() before connect(), for the census; nil when they did not load.
    public let boundSockets: BoundSocketTracker?

    public init(options: FailurePrograms.Options = .init(), cgroups: CgroupResolver, procfs: ProcFS) {
        do throws(FailureProgramsUnavailable) {
            programs = .success(try FailurePrograms(options: options))
        } catch {
            programs = .failure(error)
        }
        self.cgroups = cgroups
        let own = Self.inode(procfs.root + "/thread-self/ns/net")
        ownNetnsInode = own
        boundSockets = (try? programs.get()).map { BoundSocketTracker(programs: $0, ownNetnsInode: own) }
    }

    /// The loaded programs, or why there are none.
    public var loaded: FailurePrograms? { try? programs.get() }

    public func applies(to collection: CollectionInProgress) -> Bool { collection.report != nil }

    public func update(_ collection: inout CollectionInProgress) throws {
        let inode = collection.netns.inode
        collection.report?.failures = try collect(netnsInode: inode == 0 ? nil : inode)
    }

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
        let own = inode == ownNetnsInode
        var drops: [String: UInt64]?
        if own {
            // The kernel's refusals, and the namespaces the tracker gave no map.
            drops = programs.drops().merging(boundSockets?.drops() ?? [:]) { $0 + $1 }
        }
        return PortAllocationFailures(counts: counts, netnsInode: inode, watched: programs.watched, owners: owners,
                                      drops: drops, boundSocketsRemembered: own ? boundSockets?.remembered() : nil,
                                      namespacesWalkedOnce: own ? boundSockets?.namespacesWalkedOnce() : nil)
    }

    static func inode(_ path: String) -> UInt64? {
        var status = stat()
        return stat(path, &status) == 0 ? UInt64(status.st_ino) : nil
    }
}

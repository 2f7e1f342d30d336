/// The call a failed port allocation came from, as the failure programs
/// number it (`enum pb_call`). `send` covers sendto, sendmsg and sendmmsg:
/// the kernel hook that sees the failure lies below all three.
public enum FailureCall: UInt8, Sendable, Codable, CaseIterable {
    case connect = 1, bind = 2, listen = 3, send = 4

    public var name: String {
        switch self {
        case .connect: "connect"
        case .bind: "bind"
        case .listen: "listen"
        case .send: "send"
        }
    }
}

/// Symbolic names for the errnos a port allocation fails with (Linux numbers,
/// the same on every architecture the agent runs on).
public enum FailureErrno {
    public static let eagain: UInt16 = 11
    public static let eaddrinuse: UInt16 = 98
    public static let eaddrnotavail: UInt16 = 99

    public static func name(_ number: UInt16) -> String {
        switch number {
        case eagain: "EAGAIN"
        case eaddrinuse: "EADDRINUSE"
        case eaddrnotavail: "EADDRNOTAVAIL"
        default: "errno \(number)"
        }
    }
}

/// The protocol label of an IP protocol number.
public enum FailureProtocol {
    public static func name(_ number: UInt8) -> String {
        switch number {
        case 6: "tcp"
        case 17: "udp"
        case 136: "udplite"
        default: "ipproto \(number)"
        }
    }
}

/// One kind of failure: what the exposition labels a count with.
public struct FailureKind: Sendable, Hashable, Codable, Comparable {
    public var protocolNumber: UInt8
    public var call: FailureCall
    public var errno: UInt16

    public init(protocolNumber: UInt8, call: FailureCall, errno: UInt16) {
        self.protocolNumber = protocolNumber
        self.call = call
        self.errno = errno
    }

    enum CodingKeys: String, CodingKey { case protocolNumber = "protocol_number", call, errno }

    public var protocolName: String { FailureProtocol.name(protocolNumber) }
    public var errnoName: String { FailureErrno.name(errno) }

    public static func < (a: FailureKind, b: FailureKind) -> Bool {
        (a.protocolName, a.call.rawValue, a.errno) < (b.protocolName, b.call.rawValue, b.errno)
    }

    /// What the always-loaded programs count.
    public static let alwaysWatched: [FailureKind] = [
        FailureKind(protocolNumber: 6, call: .connect, errno: FailureErrno.eaddrnotavail),
        FailureKind(protocolNumber: 6, call: .listen, errno: FailureErrno.eaddrinuse),
        FailureKind(protocolNumber: 17, call: .send, errno: FailureErrno.eagain),
    ]
    /// What the opt-in syscall programs add.
    public static let watchedThroughSyscalls: [FailureKind] = [
        FailureKind(protocolNumber: 6, call: .bind, errno: FailureErrno.eaddrinuse),
        FailureKind(protocolNumber: 17, call: .bind, errno: FailureErrno.eaddrinuse),
        FailureKind(protocolNumber: 17, call: .connect, errno: FailureErrno.eagain),
    ]
}

/// One counter the kernel keeps: a kind of failure in one network namespace
/// made by threads of one cgroup.
public struct FailureCountKey: Sendable, Hashable {
    public var netnsInode: UInt64
    public var kind: FailureKind
    public var cgroupID: UInt64

    public init(netnsInode: UInt64, kind: FailureKind, cgroupID: UInt64) {
        self.netnsInode = netnsInode
        self.kind = kind
        self.cgroupID = cgroupID
    }
}

/// Failed port allocations in one network namespace since the agent loaded
/// its programs: totals per kind (every watched kind listed, zero or not, so
/// a rate sees the first failure), the cgroups that failed most, and what
/// the kernel side could not count.
public struct PortAllocationFailures: Sendable, Codable, Equatable {
    public struct Total: Sendable, Codable, Equatable {
        public var kind: FailureKind
        public var count: UInt64
    }

    /// One cgroup's failures of one kind.
    public struct HolderTotal: Sendable, Codable, Equatable {
        public var kind: FailureKind
        public var cgroupID: UInt64
        /// The cgroup's path below the v2 root; nil when it is gone (or unnamed).
        public var cgroup: String?
        public var unit: String?
        public var containerID: String?
        public var podUID: String?
        public var count: UInt64

        enum CodingKeys: String, CodingKey {
            case kind, cgroupID = "cgroup_id", cgroup, unit, containerID = "container_id", podUID = "pod_uid", count
        }

        init(kind: FailureKind, cgroupID: UInt64, owner: CgroupOwner?, count: UInt64) {
            self.kind = kind
            self.cgroupID = cgroupID
            cgroup = owner?.path
            unit = owner?.unit
            containerID = owner?.containerID
            podUID = owner?.podUID
            self.count = count
        }
    }

    /// Cgroup series exported per namespace: the biggest counts first.
    public static let holdersExported = 10

    public var totals: [Total]
    public var holders: [HolderTotal]
    /// Failures the kernel side could not count or report, by reason
    /// (`count_keys`, `events`, `pending`); host-wide, so only the agent's
    /// own namespace carries them.
    public var drops: [String: UInt64]?
    /// Sockets the programs remember as bound before connect(), host-wide
    /// like `drops` (the agent forgets closed ones as it collects).
    public var boundSocketsRemembered: Int?
    /// Namespaces whose last census walked the kernel's TCP tables once,
    /// labelling sockets from an earlier census and the programs; host-wide.
    public var namespacesWalkedOnce: Int?

    /// Folds the kernel's counters into one namespace's totals. `owners`
    /// names the cgroups (absent: gone); `watched` lists the kinds counted.
    public init(counts: [FailureCountKey: UInt64], netnsInode: UInt64, watched: [FailureKind],
                owners: [UInt64: CgroupOwner], drops: [String: UInt64]? = nil, boundSocketsRemembered: Int? = nil,
                namespacesWalkedOnce: Int? = nil) {
        var byKind: [FailureKind: UInt64] = Dictionary(uniqueKeysWithValues: watched.map { ($0, 0) })
        var byHolder: [(key: FailureCountKey, count: UInt64)] = []
        for (key, count) in counts where key.netnsInode == netnsInode {
            byKind[key.kind, default: 0] += count
            byHolder.append((key, count))
        }
        totals = byKind.sorted { $0.key < $1.key }.map { Total(kind: $0.key, count: $0.value) }
        byHolder.sort { a, b in
            a.count != b.count ? a.count > b.count
                : (a.key.kind, a.key.cgroupID) < (b.key.kind, b.key.cgroupID)
        }
        holders = byHolder.prefix(Self.holdersExported).map { entry in
            HolderTotal(kind: entry.key.kind, cgroupID: entry.key.cgroupID, owner: owners[entry.key.cgroupID],
                        count: entry.count)
        }
        self.drops = drops
        self.boundSocketsRemembered = boundSocketsRemembered
        self.namespacesWalkedOnce = namespacesWalkedOnce
    }

    enum CodingKeys: String, CodingKey {
        case totals, holders, drops, boundSocketsRemembered = "bound_sockets_remembered"
        case namespacesWalkedOnce = "namespaces_walked_once"
    }

    /// Every failure counted in this namespace.
    public var total: UInt64 { totals.reduce(0) { $0 + $1.count } }
}

/// Who holds ports, folded per socket next to the census: by cgroup id
/// always, by socket inode when processes were asked for. TIME_WAIT and
/// request sockets carry no cgroup and no inode; they are nobody's.

/// Sockets per cgroup id within one destination group. Most groups have
/// one holder, so the first id is kept inline and a dictionary appears only
/// for a second one.
struct GroupHolderTally: Sendable {
    private var firstID: UInt64 = 0
    private var firstCount = 0
    private var others: [UInt64: Int]? = nil

    mutating func add(_ id: UInt64) {
        if id == firstID || firstCount == 0 {
            firstID = id
            firstCount += 1
        } else {
            var rest = others ?? [:]
            others = nil  // keep the dictionary uniquely referenced while it changes
            rest[id, default: 0] += 1
            others = rest
        }
    }

    var counts: [(id: UInt64, ports: Int)] {
        guard firstCount > 0 else { return [] }
        return [(firstID, firstCount)] + (others ?? [:]).map { ($0.key, $0.value) }
    }
}

/// Distinct ports per cgroup id, host-wide (what bind() and UDP autobind
/// compete for). A bitmap over the range per cgroup; past
/// `maxTracked` cgroups the rest fold into `HostWideHolders.otherID`.
struct HostWideHolders: Sendable {
    /// A bound on memory: 1,024 bitmaps of a default range are 3.5 MiB.
    static let maxTracked = 1024
    /// Stands for every cgroup past `maxTracked`.
    static let otherID = UInt64.max

    private let low: UInt16, high: UInt16
    private var index: [UInt64: Int] = [:]
    private(set) var ids: [UInt64] = []
    private var bitmaps: [PortBitmap] = []
    // Consecutive sockets mostly come from one process: skip the lookup.
    private var lastID: UInt64 = 0
    private var lastIndex = -1

    init(low: UInt16, high: UInt16) {
        self.low = low
        self.high = high
    }

    mutating func insert(_ id: UInt64, port: UInt16) {
        if id != lastID || lastIndex < 0 {
            lastID = id
            if let i = index[id] {
                lastIndex = i
            } else if ids.count < Self.maxTracked || id == Self.otherID {
                lastIndex = ids.count
                index[id] = lastIndex
                ids.append(id)
                bitmaps.append(PortBitmap(low: low, high: high))
            } else {
                insert(Self.otherID, port: port)
                lastID = 0
                lastIndex = -1
                return
            }
        }
        bitmaps[lastIndex].insert(port)
    }

    /// Ports per cgroup, most first.
    var counts: [(id: UInt64, ports: Int)] {
        zip(ids, bitmaps).map { ($0, $1.count) }.sorted { $0.ports != $1.ports ? $0.ports > $1.ports : $0.id < $1.id }
    }
}

/// A process, as `/proc/PID/comm` names it.
public struct ProcessRef: Sendable, Hashable {
    public var pid: Int32
    public var comm: String

    public init(pid: Int32, comm: String) {
        self.pid = pid
        self.comm = comm
    }
}

/// What the census needs to name holders: the cgroup path of each id seen
/// (an id absent here is a cgroup that is gone) when a cgroup v2 hierarchy
/// exists, how many to list, and, for `check --processes`, the owner of
/// each socket inode.
public struct HolderNaming: Sendable {
    /// The v2 mount point; nil when there is none (then no cgroup holders).
    public var cgroupRoot: String?
    public var owners: [UInt64: CgroupOwner]
    /// Holders listed per budget; 0 lists all.
    public var top: Int
    public var processes: [UInt32: ProcessRef]?

    public init(cgroupRoot: String?, owners: [UInt64: CgroupOwner], top: Int, processes: [UInt32: ProcessRef]? = nil) {
        self.cgroupRoot = cgroupRoot
        self.owners = owners
        self.top = top
        self.processes = processes
    }

    /// Said once when there are no cgroup holders.
    public static let noCgroupV2 = "no cgroup v2 hierarchy is mounted, so every socket would name the root cgroup: no holders are reported"
}

/// One holder of a budget's ports, as `check --json` lists it.
public struct Holder: Sendable, Codable, Equatable {
    /// The cgroup's path below the v2 root; nil when the cgroup is gone.
    public var cgroup: String?
    public var cgroupID: UInt64
    public var ports: Int
    public var unit: String?
    public var containerID: String?
    public var podUID: String?
    /// The cgroup no longer exists (its sockets outlived it); the id stays.
    public var gone: Bool

    public init(id: UInt64, ports: Int, owner: CgroupOwner?) {
        cgroupID = id
        self.ports = ports
        cgroup = owner?.path
        unit = owner?.unit
        containerID = owner?.containerID
        podUID = owner?.podUID
        gone = owner == nil && id != HostWideHolders.otherID
    }

    /// For a person: the container, unit or path; "other cgroups" for the
    /// overflow; a gone cgroup by its id.
    public var shortName: String {
        if cgroupID == HostWideHolders.otherID { return "other cgroups" }
        guard let cgroup else { return "deleted cgroup \(cgroupID)" }
        return CgroupOwner(path: cgroup).shortName
    }

    enum CodingKeys: String, CodingKey {
        case cgroup, cgroupID = "cgroup_id", ports, unit, containerID = "container_id", podUID = "pod_uid", gone
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        cgroup = try c.decodeIfPresent(String.self, forKey: .cgroup)
        cgroupID = try c.decode(UInt64.self, forKey: .cgroupID)
        ports = try c.decode(Int.self, forKey: .ports)
        unit = try c.decodeIfPresent(String.self, forKey: .unit)
        containerID = try c.decodeIfPresent(String.self, forKey: .containerID)
        podUID = try c.decodeIfPresent(String.self, forKey: .podUID)
        gone = try c.decodeIfPresent(Bool.self, forKey: .gone) ?? false
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(cgroup, forKey: .cgroup)  // null when gone: the key is always there
        try c.encode(cgroupID, forKey: .cgroupID)
        try c.encode(ports, forKey: .ports)
        try c.encodeIfPresent(unit, forKey: .unit)
        try c.encodeIfPresent(containerID, forKey: .containerID)
        try c.encodeIfPresent(podUID, forKey: .podUID)
        if gone { try c.encode(true, forKey: .gone) }
    }
}

/// One process holding a budget's ports (`check --processes`).
public struct ProcessHolder: Sendable, Codable, Equatable {
    public var pid: Int32
    public var comm: String
    public var ports: Int
    /// On the first of a list only: how many processes hold as many ports
    /// as it does (itself included), when more than one does — then naming
    /// it alone would claim what its peers hold.
    public var tiedProcesses: Int? = nil

    public init(pid: Int32, comm: String, ports: Int, tiedProcesses: Int? = nil) {
        self.pid = pid
        self.comm = comm
        self.ports = ports
        self.tiedProcesses = tiedProcesses
    }

    enum CodingKeys: String, CodingKey { case pid, comm, ports, tiedProcesses = "tied_processes" }
}

/// How holders were found, said once per report: where the cgroup v2 root
/// is, or why there are no holders.
public struct AttributionNote: Sendable, Codable, Equatable {
    public var cgroupRoot: String?
    public var unavailable: String?
    /// Port-holding sockets with no owner to name: TIME_WAIT and request
    /// sockets carry no cgroup and no inode.
    public var unattributedTimeWait: Int?

    public init(cgroupRoot: String? = nil, unavailable: String? = nil) {
        self.cgroupRoot = cgroupRoot
        self.unavailable = unavailable
    }

    enum CodingKeys: String, CodingKey {
        case cgroupRoot = "cgroup_root", unavailable, unattributedTimeWait = "time_wait_unattributed"
    }
}

extension PortCensus {
    /// Holders of a set of counts, most ports first, named and cut to `top`.
    static func named(_ counts: [(id: UInt64, ports: Int)], _ naming: HolderNaming) -> [Holder] {
        let sorted = counts.sorted { $0.ports != $1.ports ? $0.ports > $1.ports : $0.id < $1.id }
        let kept = naming.top > 0 ? Array(sorted.prefix(naming.top)) : sorted
        return kept.map { Holder(id: $0.id, ports: $0.ports, owner: naming.owners[$0.id]) }
    }

    static func processes(_ tally: [ProcessRef: Set<UInt16>], top: Int) -> [ProcessHolder] {
        var sorted = tally.map { ProcessHolder(pid: $0.key.pid, comm: $0.key.comm, ports: $0.value.count) }
            .sorted { $0.ports != $1.ports ? $0.ports > $1.ports : $0.pid < $1.pid }
        if let most = sorted.first?.ports {
            let tied = sorted.prefix { $0.ports == most }.count
            if tied > 1 { sorted[0].tiedProcesses = tied }
        }
        return top > 0 ? Array(sorted.prefix(top)) : sorted
    }
}

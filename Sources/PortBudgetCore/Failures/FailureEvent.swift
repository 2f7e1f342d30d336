/// One failed port allocation as `portbudget trace` prints it.
public struct FailureEvent: Sendable, Equatable {
    /// Seconds since the Unix epoch.
    public var time: Double
    public var netnsInode: UInt64
    /// The namespace's name (`host`, `ip netns` name, pod:…, unit:…); nil when unknown.
    public var netnsName: String?
    public var pid: Int32
    public var tid: Int32
    public var comm: String
    public var cgroupID: UInt64
    /// Nil when the cgroup could not be named (gone, or no v2 hierarchy).
    public var owner: CgroupOwner?
    public var kind: FailureKind
    /// For connect(): the destination, as "ADDR" and port.
    public var destination: (address: String, port: Int)?

    public init(time: Double, netnsInode: UInt64, netnsName: String?, pid: Int32, tid: Int32, comm: String,
                cgroupID: UInt64, owner: CgroupOwner?, kind: FailureKind, destination: (address: String, port: Int)?) {
        self.time = time
        self.netnsInode = netnsInode
        self.netnsName = netnsName
        self.pid = pid
        self.tid = tid
        self.comm = comm
        self.cgroupID = cgroupID
        self.owner = owner
        self.kind = kind
        self.destination = destination
    }

    public static func == (a: FailureEvent, b: FailureEvent) -> Bool {
        a.time == b.time && a.netnsInode == b.netnsInode && a.netnsName == b.netnsName && a.pid == b.pid
            && a.tid == b.tid && a.comm == b.comm && a.cgroupID == b.cgroupID && a.owner == b.owner
            && a.kind == b.kind && a.destination?.address == b.destination?.address
            && a.destination?.port == b.destination?.port
    }
}

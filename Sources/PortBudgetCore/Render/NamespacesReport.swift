/// Who a network namespace is: its name, its inode, and the processes in it.
public struct NetnsInfo: Sendable, Codable, Equatable {
    /// `host` for the agent's own namespace; the `ip netns` (or Docker) name
    /// when one is bound; else the pod, container or unit of its first
    /// process; else `pid:PID (comm)`.
    public var name: String
    public var inode: UInt64
    /// The name of the namespace the agent itself runs in.
    public static let ownName = "host"
    /// A few pids in it (the first ones found), none for a namespace only a bind mount holds.
    public var pids: [Int32]
    public var comm: String?
    public var cgroup: String?
    public var unit: String?
    public var containerID: String?
    public var podUID: String?
    /// The pod's name: the UTS host name of a process in it, which
    /// Kubernetes sets to the pod name.
    public var pod: String?
    /// The uid that created the user namespace owning this network
    /// namespace, when that is not the agent's own (the host's): a namespace
    /// any unprivileged user can make. Such namespaces rank after the
    /// host-owned ones, so a tenant cannot crowd those out.
    public var unprivilegedOwnerUID: UInt32?
    /// Owned by the agent's user namespace: the host's, pods' and
    /// containers' of a root runtime, `ip netns add`'s.
    public var ownedByHost: Bool { unprivilegedOwnerUID == nil }

    public init(name: String, inode: UInt64, pids: [Int32] = [], comm: String? = nil, owner: CgroupOwner? = nil) {
        self.name = name
        self.inode = inode
        self.pids = pids
        self.comm = comm
        cgroup = owner?.path
        unit = owner?.unit
        containerID = owner?.containerID
        podUID = owner?.podUID
    }

    enum CodingKeys: String, CodingKey {
        case name, inode, pids, comm, cgroup, unit, containerID = "container_id", podUID = "pod_uid", pod
        case unprivilegedOwnerUID = "unprivileged_owner_uid"
    }

    /// What the namespaces table shows in its WHO column.
    public var who: String {
        // The agent's own namespace is the host's: its first process is pid 1
        // or a kernel thread, neither of which says anything.
        if name == Self.ownName { return "the host" }
        if let pod { return "pod \(pod)" + (containerID.map { " container \($0.prefix(12))" } ?? "") }
        if let containerID { return podUID.map { "pod \($0.prefix(8))… container \(containerID.prefix(12))" } ?? "container \(containerID.prefix(12))" }
        if let podUID { return "pod \(podUID.prefix(8))…" }
        let owner = unprivilegedOwnerUID.map { " [userns of uid \($0)]" } ?? ""
        if let comm, let pid = pids.first { return (unit.map { "\($0) " } ?? "") + "pid \(pid) (\(comm))" + owner }
        return (unit ?? "-") + owner
    }
}

/// One namespace's collection: its report, or why there is none.
public struct NamespaceReport: Sendable, Encodable {
    public var netns: NetnsInfo
    public var report: PortBudgetReport?
    public var error: String?

    public init(netns: NetnsInfo, report: PortBudgetReport?, error: String? = nil) {
        self.netns = netns
        self.report = report
        self.error = error
    }

    enum CodingKeys: String, CodingKey { case netns, error }

    /// The keys of plain `check --json` for this namespace, plus `netns`.
    public func encode(to encoder: Encoder) throws {
        try report?.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(netns, forKey: .netns)
        try c.encodeIfPresent(error, forKey: .error)
    }
}

/// `check --all-namespaces`: one verdict over every namespace, naming the
/// namespace whose limit fails first.
public struct NamespacesReport: Sendable, Encodable {
    public var namespaces: [NamespaceReport]

    public init(namespaces: [NamespaceReport]) {
        // Host-owned before those any user can make, then worst first, as
        // every list in a report is: no tenant crowds a host namespace out.
        // Each key once, and indices sorted: a report's limits are computed, and reports are large to move.
        let keys = namespaces.map { ($0.netns.ownedByHost, $0.report?.status ?? .ok, $0.worstUtilization) }
        let order = namespaces.indices.sorted { i, j in
            let (a, b) = (keys[i], keys[j])
            if a.0 != b.0 { return a.0 }
            if a.1 != b.1 { return a.1 > b.1 }
            if a.2 != b.2 { return a.2 > b.2 }
            return namespaces[i].netns.name < namespaces[j].netns.name
        }
        self.namespaces = order.map { namespaces[$0] }
    }

    /// The worst status over the namespaces measured; one that could not be
    /// measured is listed with its error (and counted in `unmeasured`).
    public var status: Status { namespaces.compactMap { $0.report?.status }.max() ?? .ok }

    public var unmeasured: [NamespaceReport] { namespaces.filter { $0.report == nil } }

    public var verdict: String {
        guard let worst = namespaces.first(where: { $0.report != nil }), let report = worst.report else {
            return "UNKNOWN: no namespace could be measured"
        }
        let measured = namespaces.count - unmeasured.count
        return "\(report.verdict) [netns \(worst.netns.name)] (\(measured) namespace\(measured == 1 ? "" : "s") measured"
            + (unmeasured.isEmpty ? ")" : ", \(unmeasured.count) could not be)")
    }

    enum CodingKeys: String, CodingKey { case status, verdict, namespaces }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(status, forKey: .status)
        try c.encode(verdict, forKey: .verdict)
        try c.encode(namespaces, forKey: .namespaces)
    }

    /// A copy whose namespaces list at most `top` groups each (0: all).
    public func limitingGroups(to top: Int) -> NamespacesReport {
        var copy = self
        copy.namespaces = namespaces.map { ns in
            var ns = ns
            ns.report = ns.report?.limitingGroups(to: top)
            return ns
        }
        return copy
    }

    /// The text report: the verdict, the namespaces, then the worst TCP
    /// destinations across all of them.
    /// `budget` bounds the namespaces the table lists one by one; the rest
    /// are one line.
    public func render(top: Int, budget: NamespaceBudget = NamespaceBudget()) -> String {
        var out = verdict + "\n\n"
        var table: [[String]] = [["NETNS", "INODE", "WHO", "USABLE", "WORST LIMIT", "UTIL", "STATUS"]]
        let listed = namespaces.prefix(max(0, budget.listed)), rest = namespaces.dropFirst(listed.count)
        for ns in listed {
            guard let r = ns.report, let worst = r.limits.first else {
                // The error itself goes to stderr, one line per namespace: it is too long for a cell.
                table.append([ns.netns.name, "\(ns.netns.inode)", ns.netns.who, "-", "not measured", "-", "unknown"])
                continue
            }
            table.append([ns.netns.name, "\(ns.netns.inode)", ns.netns.who, "\(r.portRange.usable)", worst.name,
                          PortBudgetReport.percent(worst.utilization), r.status.rawValue])
        }
        out += "Network namespaces (\(namespaces.count), host-owned first, worst first)\n" + CheckReportRenderer.columns(table)
        if !rest.isEmpty {
            let unprivileged = rest.filter { !$0.netns.ownedByHost }.count
            let worst = rest.filter { $0.report != nil }.max { $0.worstUtilization < $1.worstUtilization }
            out += "… and \(rest.count) more not listed (\(unprivileged) in user namespaces of unprivileged users, "
                + "\(rest.count - rest.filter { $0.report != nil }.count) not measured)"
                + (worst.map { "; the worst of them \($0.netns.name) at \(PortBudgetReport.percent($0.worstUtilization))" } ?? "")
                + "\n"
        }
        out += "\n"
        var groups: [(NamespaceReport, PortBudgetReport.Group)] = []
        for ns in listed {
            for g in ns.report?.tcp.groups ?? [] { groups.append((ns, g)) }
        }
        // Host-owned first, as in the exposition: a tenant's drained groups must not hide a host namespace's.
        groups.sort { a, b in
            if a.0.netns.ownedByHost != b.0.netns.ownedByHost { return a.0.netns.ownedByHost }
            if a.1.utilization != b.1.utilization { return a.1.utilization > b.1.utilization }
            return a.1.used > b.1.used
        }
        let shown = top > 0 ? Array(groups.prefix(top)) : groups
        guard !shown.isEmpty else { return out + "No outgoing TCP connections on usable ports in any namespace.\n" }
        out += "TCP destinations across namespaces (top \(shown.count) of \(groups.count), host-owned first, worst first)\n"
        var rows: [[String]] = [["NETNS", "LOCAL", "PEER", "USED/CAPACITY", "UTIL", "FREE", "TIME_WAIT", "STATUS"]]
        for (ns, g) in shown {
            let peer = PortBudgetReport.Limit.hostPort(g.peerIP, g.peerPort)
            let status = (ns.report?.thresholds ?? Thresholds()).status(g.utilization).rawValue
            let row: [String] = [ns.netns.name, g.localIP, peer, "\(g.used)/\(g.capacity)",
                                 PortBudgetReport.percent(g.utilization), "\(g.free)", "\(g.timeWait)", status]
            rows.append(row)
        }
        return out + CheckReportRenderer.columns(rows)
    }
}

extension NamespaceReport {
    var worstUtilization: Double { report?.limits.first?.utilization ?? 0 }
}

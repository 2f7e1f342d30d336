/// One destination as the kernel's connect() sees it: a new connection from
/// `local` to `peer:peerPort` may reuse any port not already used towards
/// exactly that destination (`__inet_check_established`).
public struct GroupKey: Hashable, Sendable, Comparable {
    public var local: IPAddress
    public var peer: IPAddress
    public var peerPort: UInt16

    public init(local: IPAddress, peer: IPAddress, peerPort: UInt16) {
        self.local = local
        self.peer = peer
        self.peerPort = peerPort
    }

    public static func < (a: GroupKey, b: GroupKey) -> Bool {
        (a.local, a.peer, a.peerPort) < (b.local, b.peer, b.peerPort)
    }

    /// Hashed once per TCP socket in a census: three 64-bit words for IPv4
    /// keys instead of the synthesized conformance's seven values.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(local.low)
        hasher.combine(peer.low)
        hasher.combine(UInt64(peerPort) | UInt64(local.family.rawValue) << 16 | UInt64(peer.family.rawValue) << 24)
        if local.high != 0 || peer.high != 0 {
            hasher.combine(local.high)
            hasher.combine(peer.high)
        }
    }
}

/// What the failure collector knows of one namespace's connected sockets
/// before a census: which took their port with bind() before connect(), and
/// which began connect() before it watched.
public struct BoundSocketKnowledge: Sendable {
    /// Which connected sockets began connect() before the programs watched.
    public enum Predating: Sendable, Equatable {
        /// Not known yet: the namespace's first census takes every connected
        /// socket it meets as such.
        case firstCensus
        /// These, by cookie.
        case cookies(Set<UInt64>)
        /// Every socket whose cookie is at most this: there were more than
        /// `PortCensus.predatingCookiesKept`, so only the highest was kept.
        /// The kernel hands cookies out in per-CPU batches, so a few newer
        /// sockets fall at or below it too: counted as older, never as exact.
        case atOrBelow(UInt64)
    }

    /// Cookies of sockets seen to start connect() with a port already bound.
    public var boundCookies: Set<UInt64>
    public var predating: Predating

    public init(boundCookies: Set<UInt64>, predating: Predating) {
        self.boundCookies = boundCookies
        self.predating = predating
    }
}

/// Folds SOCK_DIAG records into the port accounting model, one record at a
/// time, so memory grows with the number of groups, not of sockets (beside
/// a bounded set of older sockets' cookies when the failure programs run). The rules
/// are the kernel's (see docs/model.md):
/// - a TCP port held by an explicit bind (listener, bind(addr, port), bound-only
///   socket) is lost to every connect(): it lowers every group's capacity;
/// - any other TCP socket holds its port only towards its own destination,
///   TIME_WAIT included unless tcp_tw_reuse would hand it out again;
/// - every TCP socket, and every UDP socket, holds its port host-wide for bind().
public struct PortCensus: Sendable {
    public let sysctls: PortSysctls
    /// How old (ms) a TIME_WAIT entry must be before the kernel reuses it.
    private let reuseDelayMs: UInt32
    private let reserved: PortBitmap
    private var explicitTCP: PortBitmap
    private var listenerPorts: PortBitmap
    private var tcpBound: PortBitmap
    private var udpBound: PortBitmap
    private var udpliteBound: PortBitmap
    /// Ports of connected sockets with an explicitly chosen port (from the
    /// explicit dump, not listening): bind(addr, port) before connect(), or a
    /// listener's accepted children, told apart at report time by port.
    private var explicitConnected: PortBitmap
    /// Connections on each port among sockets that look auto-bound, by
    /// `port − rangeLow`, saturating. Plain connect() shares ports between
    /// destinations; a port carrying exactly one connection while the host is
    /// short of ports points at bind(addr, 0) before connect() (see Diagnosis).
    private var autoConnectionsPerPort: [UInt16]
    /// `autoConnectionsPerPort` summed (saturated counts), its ports in use,
    /// and those with exactly one connection, kept as sockets are folded:
    /// the report would otherwise scan the whole range in every namespace.
    private var autoConnections = 0, autoPorts = 0, singleConnectionPorts = 0
    private var groups: [GroupKey: GroupAccumulator] = [:]
    private var boundKnowledge: BoundSocketKnowledge?
    /// Ports of sockets that look auto-bound but were seen starting
    /// connect() with a bound port: bind(addr, 0) before connect().
    private var trackedBoundConnected: PortBitmap
    /// Of `boundKnowledge`'s cookies, those this census met (the rest are closed).
    public private(set) var boundCookiesSeen: Set<UInt64> = []
    /// Connected auto-bound-looking sockets older than the programs' watch:
    /// how many, their cookies (up to `predatingCookiesKept`), the highest.
    private var predatingCount = 0
    private var predatingCookies: Set<UInt64> = []
    private var predatingOverflow = false
    private var highestPredatingCookie: UInt64 = 0
    /// Sockets whose port origin the collector learnt only while the dumps ran.
    private var lateBoundSockets = 0
    /// A single walk's labels (`useLabels`): cookies of connected sockets
    /// an earlier census saw explicitly bound. Nil when the kernel's filter labels.
    private var rememberedExplicit: Set<UInt64>?
    /// Cookies of explicitly bound connected sockets this census met, their
    /// port not a listener's; nil unless kept (`keepConnectionLabels`) or
    /// beyond `labelledCookiesKept`.
    public private(set) var connectionLabels: Set<UInt64>?
    /// An earlier census's `listenerChildren` (`useListenerChildren`).
    private var earlierChildren: [UInt16: Set<UInt64>] = [:]
    /// Cookies of the sockets on each listener's port (accepted ones, and
    /// their TIME_WAITs), and on each port such sockets hold after their
    /// listener closed; nil unless kept (`keepConnectionLabels`) or beyond
    /// `labelledCookiesKept` in all.
    public private(set) var listenerChildren: [UInt16: Set<UInt64>]?
    private var listenerChildrenKept = 0
    private var tcpStates = [Int](repeating: 0, count: 16)
    private var udpSockets = 0
    private var udpliteSockets = 0
    public private(set) var udpliteSeen = false

    struct GroupAccumulator: Sendable {
        var ports = GroupPortSet()
        var timeWait = 0
        var finWait2 = 0
        var holders = GroupHolderTally()
    }

    /// One socket that holds a port, for naming its process later
    /// (`check --processes` only: this grows with sockets).
    struct HeldSocket: Sendable {
        var inode: UInt32
        var port: UInt16
        /// The destination group it counts in; nil for host-wide only.
        var group: GroupKey?
        var udp: Bool
    }

    private var tcpHolders: HostWideHolders
    private var udpHolders: HostWideHolders
    private var heldSockets: [HeldSocket]?

    public init(sysctls: PortSysctls) {
        self.sysctls = sysctls
        reuseDelayMs = UInt32(clamping: sysctls.effectiveTwReuseDelayMs)
        reserved = sysctls.reservedInRange
        let empty = PortBitmap(low: sysctls.rangeLow, high: sysctls.rangeHigh)
        explicitTCP = empty
        listenerPorts = empty
        tcpBound = empty
        udpBound = empty
        udpliteBound = empty
        tcpHolders = HostWideHolders(low: sysctls.rangeLow, high: sysctls.rangeHigh)
        udpHolders = HostWideHolders(low: sysctls.rangeLow, high: sysctls.rangeHigh)
        explicitConnected = empty
        trackedBoundConnected = empty
        autoConnectionsPerPort = [UInt16](repeating: 0, count: Int(sysctls.rangeHigh) - Int(sysctls.rangeLow) + 1)
    }

    /// The filter for TCP dumps: ports in the range (the kernel cannot skip
    /// reserved ones cheaply; the census does). `explicit` picks the dump of
    /// explicitly bound sockets, otherwise the auto-bound ones.
    public static func tcpFilter(_ sysctls: PortSysctls, explicit: Bool) -> InetDiagFilter {
        .and(.sourcePorts(sysctls.rangeLow, sysctls.rangeHigh), explicit ? .not(.autoBound) : .autoBound)
    }

    /// Every state of a socket in the kernel's established hash: all but
    /// LISTEN and the bound-only pseudo-state. A dump asking for neither
    /// skips the kernel's walks of the listener and bind tables (the bind
    /// table walk visits every bound socket, connected ones included).
    public static let connectedStates: UInt32 =
        TCPState.allStates & ~TCPState.mask(TCPState.listen, TCPState.boundInactive)

    /// The filter of the first of two TCP dumps that together see every
    /// socket once: local port in the range, and either an explicit bind
    /// (`¬auto`) or no peer (`dport ≤ 0`: listeners and bound-only sockets,
    /// whose port connect() may not share however it was chosen). The second
    /// dump is `tcpFilter(explicit: false)` over `connectedStates`: every
    /// socket there has a peer, so none is seen twice.
    public static func tcpExplicitOrUnconnectedFilter(_ sysctls: PortSysctls) -> InetDiagFilter {
        .and(.sourcePorts(sysctls.rangeLow, sysctls.rangeHigh), .or(.not(.autoBound), .destinationPortAtMost(0)))
    }

    /// The filter of a dump that leaves out only what the filter of
    /// `tcpExplicitConnectedFilter` picks — explicitly bound connected
    /// sockets in the range — and takes every other socket, out-of-range
    /// ones too, so `HashedSocketTally` can prove from the namespace's
    /// counters that it left out none and no second dump is needed. Without
    /// `outOfRange`, where nothing is to be proved, the kernel drops those
    /// too, as the census would.
    public static func tcpAllButExplicitConnectedFilter(_ sysctls: PortSysctls, outOfRange: Bool = true) -> InetDiagFilter {
        let range = InetDiagFilter.sourcePorts(sysctls.rangeLow, sysctls.rangeHigh)
        let rest = InetDiagFilter.or(.autoBound, .destinationPortAtMost(0))
        return outOfRange ? .or(.not(range), rest) : .and(range, rest)
    }

    /// Explicitly bound connected sockets in the range: the second dump
    /// after `tcpAllButExplicitConnectedFilter`'s, over `connectedStates`.
    public static func tcpExplicitConnectedFilter(_ sysctls: PortSysctls) -> InetDiagFilter {
        .and(.sourcePorts(sysctls.rangeLow, sysctls.rangeHigh), .and(.not(.autoBound), .not(.destinationPortAtMost(0))))
    }

    /// The filter of a single walk (`useLabels`): every socket in the range.
    public static func tcpOneWalkFilter(_ sysctls: PortSysctls) -> InetDiagFilter {
        .sourcePorts(sysctls.rangeLow, sysctls.rangeHigh)
    }

    public static func udpFilter(_ sysctls: PortSysctls) -> InetDiagFilter {
        .sourcePorts(sysctls.rangeLow, sysctls.rangeHigh)
    }

    func isUsable(_ port: UInt16) -> Bool { tcpBound.covers(port) && !reserved.contains(port) }

    /// Cookies of explicitly bound connected sockets kept for the next
    /// census's single walk; beyond it, that namespace is walked twice.
    public static let labelledCookiesKept = 65_536

    /// Folds one walk of every TCP socket (no bind filter): a connected
    /// socket counts as explicitly bound when `explicitCookies` (an
    /// earlier census's `connectionLabels`) holds it, when it sits on a
    /// listener's port (as with the filter: `addTCP` says why), or when the
    /// failure programs saw it bound. The caller vouches that no other
    /// socket can hold the kernel's bind flag: every newer one that does
    /// is one the programs know. Call before folding.
    public mutating func useLabels(_ explicitCookies: Set<UInt64>) {
        rememberedExplicit = explicitCookies
        keepConnectionLabels()
    }

    /// Keeps `connectionLabels` and `listenerChildren` for a later census:
    /// only where something keeps them (the failure programs' tracker),
    /// since they grow with sockets. Call before folding.
    public mutating func keepConnectionLabels() {
        connectionLabels = connectionLabels ?? []
        listenerChildren = listenerChildren ?? [:]
    }

    /// Accepted sockets an earlier census met on listeners' ports. One that
    /// outlives its listener still holds the port bind() took, which
    /// connect() may not share while it lives (nor its TIME_WAIT), though
    /// nothing in the dump says so: met on a port no listener holds, it
    /// keeps the port out of every destination's capacity. Call before folding.
    public mutating func useListenerChildren(_ children: [UInt16: Set<UInt64>]) { earlierChildren = children }

    private mutating func noteListenerChild(_ cookie: UInt64, port: UInt16) {
        guard var kept = listenerChildren else { return }
        listenerChildren = nil  // not two references to one dictionary: no copy on insert
        guard listenerChildrenKept < Self.labelledCookiesKept else { return }
        if kept[port, default: []].insert(cookie).inserted { listenerChildrenKept += 1 }
        listenerChildren = kept
    }

    /// Uses what the failure collector saw of bind() before connect(). Call before folding.
    public mutating func use(_ knowledge: BoundSocketKnowledge) { boundKnowledge = knowledge }

    /// Counts sockets the collector saw begin connect() on a bound port
    /// while the dumps ran: they may have been folded as connect()'s, so the
    /// report calls the destinations inferred, not exact.
    public mutating func noteLateBoundSockets(_ count: Int) { lateBoundSockets += count }

    /// Cookies of older sockets kept per namespace; beyond it, only the
    /// highest (`BoundSocketKnowledge.Predating.atOrBelow`), so memory stays
    /// bounded however many connections a namespace had when the programs loaded.
    public static let predatingCookiesKept = 65_536

    private mutating func notePredating(_ cookie: UInt64) {
        predatingCount += 1
        highestPredatingCookie = max(highestPredatingCookie, cookie)
        guard !predatingOverflow else { return }
        if predatingCookies.count < Self.predatingCookiesKept {
            predatingCookies.insert(cookie)
        } else {
            predatingOverflow = true
            predatingCookies = []
        }
    }

    /// What the next census of this namespace takes for older sockets: those
    /// this one met (an older socket never comes back once closed).
    public var predatingAfter: BoundSocketKnowledge.Predating {
        if case let .atOrBelow(highest)? = boundKnowledge?.predating {
            return predatingCount == 0 ? .cookies([]) : .atOrBelow(highest)
        }
        return predatingOverflow ? .atOrBelow(highestPredatingCookie) : .cookies(predatingCookies)
    }

    /// Whether some socket on `port` was folded as holding a port connect() chose.
    public func holdsConnectChosen(port: UInt16) -> Bool {
        guard port >= sysctls.rangeLow, port <= sysctls.rangeHigh else { return false }
        return autoConnectionsPerPort[Int(port &- sysctls.rangeLow)] > 0
    }

    /// Folds one TCP socket. `explicitlyBound` says which dump it came from.
    public mutating func addTCP(_ r: InetDiagRecord, explicitlyBound: Bool) {
        let port = r.localPort
        guard isUsable(port) else { return }
        tcpStates[Int(r.state & 15)] += 1
        tcpBound.insert(port)
        if r.cgroupID != 0 { tcpHolders.insert(r.cgroupID, port: port) }
        // Bound-only sockets (dumped since 6.5 in state CLOSE) hold their bind
        // bucket like listeners do, even when bind(addr, 0) picked the port.
        let peerless = r.state == TCPState.listen || r.state == TCPState.close || r.state == TCPState.boundInactive
        var explicitlyBound = explicitlyBound
        if !peerless, r.state != TCPState.newSynRecv {
            let onListenersPort = listenerPorts.contains(port)
            let orphaned = !onListenersPort && earlierChildren[port]?.contains(r.cookie) == true
            if onListenersPort || orphaned { noteListenerChild(r.cookie, port: port) }
            if orphaned {
                // Its listener closed: the port stays bind()'s while it lives.
                explicitTCP.insert(port)
                if r.state != TCPState.timeWait { explicitlyBound = true }
            }
            // A TIME_WAIT or request socket carries no bind flag: the kernel's
            // filter takes it for connect()'s, and so does a single walk.
            if r.state != TCPState.timeWait {
                if !explicitlyBound, let remembered = rememberedExplicit, remembered.contains(r.cookie) { explicitlyBound = true }
                if onListenersPort {
                    // An accepted socket (the kernel's filter takes it for
                    // connect()'s: it does not inherit the bind flag), or one
                    // bound beside the listener: either way the port's bucket is
                    // bind()'s, which connect() never shares (unless SO_REUSEADDR
                    // let a listener join a bucket connect() made). Listeners
                    // come first in every walk.
                    explicitlyBound = true
                } else if explicitlyBound, var labels = connectionLabels, !labels.contains(r.cookie) {
                    connectionLabels = nil  // not two references to one set: no copy on insert
                    if labels.count < Self.labelledCookiesKept {
                        labels.insert(r.cookie)
                        connectionLabels = labels
                    }
                }
            }
        }
        if let knowledge = boundKnowledge, !peerless {
            if knowledge.boundCookies.contains(r.cookie) {
                // bind(addr, 0) took it: the kernel keeps it from every destination.
                boundCookiesSeen.insert(r.cookie)
                if !explicitlyBound {
                    trackedBoundConnected.insert(port)
                    // Listed as a destination, though its own ports count against every one.
                    modifyGroup(GroupKey(local: r.local, peer: r.remote, peerPort: r.remotePort)) { _ in }
                }
                explicitlyBound = true
            } else if !explicitlyBound {
                switch knowledge.predating {
                case .firstCensus: notePredating(r.cookie)
                case let .cookies(older): if older.contains(r.cookie) { notePredating(r.cookie) }
                case let .atOrBelow(highest): if r.cookie <= highest { notePredating(r.cookie) }
                }
            }
        }
        if explicitlyBound || peerless {
            // bind() gave this port a bucket connect() may not share.
            explicitTCP.insert(port)
            if r.state == TCPState.listen { listenerPorts.insert(port) }
            if !peerless { explicitConnected.insert(port) }
            if r.inode != 0 { heldSockets?.append(HeldSocket(inode: r.inode, port: port, group: nil, udp: false)) }
            return
        }
        let slot = Int(port &- sysctls.rangeLow)
        switch autoConnectionsPerPort[slot] {
        case .max: break
        case let before:
            autoConnectionsPerPort[slot] = before + 1
            autoConnections += 1
            if before == 0 { autoPorts += 1; singleConnectionPorts += 1 }
            if before == 1 { singleConnectionPorts -= 1 }
        }
        let key = GroupKey(local: r.local, peer: r.remote, peerPort: r.remotePort)
        let range = (low: sysctls.rangeLow, high: sysctls.rangeHigh)
        let reusable = r.state == TCPState.timeWait && timeWaitIsReusable(r)
        let state = r.state
        let cgroupID = r.cgroupID
        modifyGroup(key) { group in
            if state == TCPState.timeWait { group.timeWait += 1 }
            if state == TCPState.finWait2 { group.finWait2 += 1 }
            if !reusable { group.ports.insert(port, range: range) }
            if !reusable && cgroupID != 0 { group.holders.add(cgroupID) }
        }
        if r.inode != 0 && !reusable { heldSockets?.append(HeldSocket(inode: r.inode, port: port, group: key, udp: false)) }
    }

    private mutating func modifyGroup(_ key: GroupKey, _ body: (inout GroupAccumulator) -> Void) {
        body(&groups[key, default: GroupAccumulator()])
    }

    /// Folds one UDP (or UDP-Lite, which has its own port table) socket.
    public mutating func addUDP(_ r: InetDiagRecord, lite: Bool = false) {
        let port = r.localPort
        guard isUsable(port) else { return }
        if lite {
            udpliteSeen = true
            udpliteSockets += 1
            udpliteBound.insert(port)
        } else {
            udpSockets += 1
            udpBound.insert(port)
            if r.cgroupID != 0 { udpHolders.insert(r.cgroupID, port: port) }
            if r.inode != 0 { heldSockets?.append(HeldSocket(inode: r.inode, port: port, group: nil, udp: true)) }
        }
    }

    /// Keeps each port-holding socket's inode, so the report can name the
    /// processes holding each budget (`check --processes`). Call before folding.
    public mutating func trackSocketInodes() { heldSockets = heldSockets ?? [] }

    /// Inodes of the sockets kept by `trackSocketInodes`.
    public var socketInodes: Set<UInt32> { Set((heldSockets ?? []).map(\.inode)) }

    /// Every cgroup id a port-holding socket reported.
    public var cgroupIDs: Set<UInt64> { Set(tcpHolders.ids).union(udpHolders.ids).subtracting([HostWideHolders.otherID]) }

    /// Marks that UDP-Lite was dumped (even if it held no sockets).
    public mutating func noteUDPLiteDumped() { udpliteSeen = true }

    /// `tcp_twsk_unique`: would a connect() to this TIME_WAIT entry's 4-tuple
    /// take it over instead of failing?
    public func timeWaitIsReusable(_ r: InetDiagRecord) -> Bool {
        var reuse = sysctls.tcpTwReuse
        if reuse == 2 {
            let loopback = r.interface == 1 || r.local.isLoopback || r.remote.isLoopback
            if !loopback { reuse = 0 }
        }
        guard reuse != 0, sysctls.tcpTimestamps != 0 else { return false }
        // TIME_WAIT lasts TCP_TIMEWAIT_LEN (60 s); expires counts down what is left.
        let ageMs = 60_000 &- min(r.expiresMs, 60_000)
        return ageMs > reuseDelayMs
    }

    /// The finished accounting. Pure function of what was folded.
    /// With `naming`, every budget lists its top holders (cgroups, and
    /// processes when inodes were tracked and their owners found).
    public func report(thresholds: Thresholds, naming: HolderNaming? = nil) -> PortBudgetReport {
        let processTally = naming?.processes.map { processTallies($0) }
        let rangeSize = Int(sysctls.rangeHigh) - Int(sysctls.rangeLow) + 1
        let usable = rangeSize - reserved.count
        let capacity = usable - explicitTCP.count
        var groupReports: [PortBudgetReport.Group] = []
        groupReports.reserveCapacity(groups.count)
        for (key, group) in groups {
            let used = group.ports.distinctCount(excluding: explicitTCP)
            var report = PortBudgetReport.Group(
                localIP: key.local.description, peerIP: key.peer.description, peerPort: Int(key.peerPort),
                used: used, timeWait: group.timeWait, finWait2: group.finWait2, capacity: capacity,
                utilization: Self.ratio(used, capacity))
            if let naming {
                if naming.cgroupRoot != nil { report.holders = Self.named(group.holders.counts, naming) }
                report.processes = processTally.map { Self.processes($0.groups[key] ?? [:], top: naming.top) }
            }
            groupReports.append(report)
        }
        groupReports.sort { a, b in
            if a.utilization != b.utilization { return a.utilization > b.utilization }
            if a.used != b.used { return a.used > b.used }
            return (a.localIP, a.peerIP, a.peerPort) < (b.localIP, b.peerIP, b.peerPort)
        }
        var states: [String: Int] = [:]
        for (state, count) in tcpStates.enumerated() where count > 0 { states[TCPState.name(UInt8(state))] = count }

        var tcp = PortBudgetReport.TCP(
            boundPorts: tcpBound.count, bindUtilization: Self.ratio(tcpBound.count, usable),
            explicitBoundPorts: explicitTCP.count, listenerPortsInRange: listenerPorts.ports.map(Int.init),
            groupCount: groupReports.count, maxGroupUtilization: groupReports.first?.utilization ?? 0,
            socketsByState: states, groups: groupReports,
            // Accepted children share their listener's port: not bind-before-connect.
            explicitConnectedPorts: explicitConnected.countExcluding(listenerPorts),
            autoConnections: autoConnections, autoConnectionPorts: autoPorts,
            singleConnectionPorts: singleConnectionPorts)
        if boundKnowledge != nil {
            tcp.bindTracking = .init(boundBeforeConnectPorts: trackedBoundConnected.countExcluding(listenerPorts),
                                     untrackedSockets: predatingCount + lateBoundSockets)
        }
        var udp = PortBudgetReport.UDP(
            boundPorts: udpBound.count, utilization: Self.ratio(udpBound.count, usable), sockets: udpSockets)
        var attribution: AttributionNote? = nil
        if let naming {
            if naming.cgroupRoot != nil {
                tcp.holders = Self.named(tcpHolders.counts, naming)
                udp.holders = Self.named(udpHolders.counts, naming)
                attribution = AttributionNote(cgroupRoot: naming.cgroupRoot)
            } else {
                attribution = AttributionNote(unavailable: HolderNaming.noCgroupV2)
            }
            tcp.processes = processTally.map { Self.processes($0.tcp, top: naming.top) }
            udp.processes = processTally.map { Self.processes($0.udp, top: naming.top) }
            attribution?.unattributedTimeWait = tcpStates[Int(TCPState.timeWait)]
        }
        let udplite = udpliteSeen
            ? PortBudgetReport.UDP(boundPorts: udpliteBound.count, utilization: Self.ratio(udpliteBound.count, usable),
                                   sockets: udpliteSockets)
            : nil
        var report = PortBudgetReport(
            portRange: .init(low: Int(sysctls.rangeLow), high: Int(sysctls.rangeHigh), reserved: reserved.count,
                             usable: usable, reservedList: Self.listText(sysctls.reserved)),
            timeWaitReuse: .init(tcpTwReuse: sysctls.tcpTwReuse, tcpTimestamps: sysctls.tcpTimestamps,
                                 reuseDelayMs: sysctls.effectiveTwReuseDelayMs,
                                 finTimeoutSeconds: sysctls.tcpFinTimeoutSeconds),
            tcp: tcp, udp: udp, udplite: udplite, thresholds: thresholds)
        report.attribution = attribution
        // Diagnosed here, once, from every group: nothing later in a
        // collection (counters, SNAT) feeds a finding.
        report.findings = Diagnosis.findings(for: report)
        return report
    }

    /// Distinct ports per process for every budget, from the tracked inodes.
    private func processTallies(_ owners: [UInt32: ProcessRef])
        -> (groups: [GroupKey: [ProcessRef: Set<UInt16>]], tcp: [ProcessRef: Set<UInt16>], udp: [ProcessRef: Set<UInt16>]) {
        var groups: [GroupKey: [ProcessRef: Set<UInt16>]] = [:]
        var tcp: [ProcessRef: Set<UInt16>] = [:], udp: [ProcessRef: Set<UInt16>] = [:]
        for socket in heldSockets ?? [] {
            guard let owner = owners[socket.inode] else { continue }
            if socket.udp {
                udp[owner, default: []].insert(socket.port)
                continue
            }
            tcp[owner, default: []].insert(socket.port)
            if let key = socket.group { groups[key, default: [:]][owner, default: []].insert(socket.port) }
        }
        return (groups, tcp, udp)
    }

    /// Port ranges in `ip_local_reserved_ports` syntax ("40000-40009,40090"),
    /// all of them, in or out of the range: a command that sets the sysctl
    /// replaces the list, so it must write them back.
    static func listText(_ ranges: [ClosedRange<UInt16>]) -> String {
        ranges.map { $0.lowerBound == $0.upperBound ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound)" }
            .joined(separator: ",")
    }

    /// used / capacity; a destination with no capacity at all is fully used.
    static func ratio(_ used: Int, _ capacity: Int) -> Double {
        capacity <= 0 ? 1 : min(1, Double(used) / Double(capacity))
    }
}

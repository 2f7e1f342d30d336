import Glibc
import Logging
import PortBudgetCore

/// The port census: every TCP, UDP and UDP-Lite socket of the namespace from
/// SOCK_DIAG dumps, folded into groups against the range, with their holders
/// named when asked. Needs the sysctls; makes the report, diagnosed. Dumps
/// the namespace's own counters prove empty are not made (`SocketPresence`).
public struct SockDiagCollector: Collector {
    public static let name = "sockdiag"

    /// How the TCP census asks the kernel: one TCPDIAG_GETSOCK walk per dump
    /// for both families (the default), or SOCK_DIAG_BY_FAMILY per family —
    /// the fallback for kernels that refuse the first, selectable so tests
    /// hold both to the kernel.
    public enum TCPDumps: String, Sendable, CaseIterable { case bothFamilies = "both-families", perFamily = "per-family" }

    /// Who holds the ports: cgroups always (where a v2 hierarchy exists),
    /// processes on demand.
    public struct Attribution: Sendable {
        public var cgroups: CgroupResolver
        /// Holders listed per budget; 0 lists all.
        public var top: Int
        /// Scan /proc/PID/fd for each socket's process: `check --processes`, once per run.
        public var processes: Bool

        public init(cgroups: CgroupResolver, top: Int, processes: Bool = false) {
            self.cgroups = cgroups
            self.top = top
            self.processes = processes
        }
    }

    public let tcpDumps: TCPDumps
    public let attribution: Attribution?
    /// The failure programs' record of bind() before connect(); nil without them.
    public let boundSockets: BoundSocketTracker?
    /// What statuses and findings are judged against (`check --warning/--critical`).
    public let thresholds: Thresholds

    public init(tcpDumps: TCPDumps = .bothFamilies, attribution: Attribution?, thresholds: Thresholds,
                boundSockets: BoundSocketTracker? = nil) {
        self.tcpDumps = tcpDumps
        self.attribution = attribution
        self.boundSockets = boundSockets
        self.thresholds = thresholds
    }

    public func update(_ collection: inout CollectionInProgress) throws {
        guard let sysctls = collection.sysctls else { throw CollectorSkipped("port sysctls unreadable") }
        let tables = collection.counterTables
        let presence = SocketPresence(sockstat: tables[.sockstat], sockstat6: tables[.sockstat6],
                                      agentSockets: collection.context.sockets?.count)
        let counters = HashedTCPCounters(sockstat: tables[.sockstat], sockstat6: tables[.sockstat6], snmp: tables[.snmp])
        collection.report = try attributedReport(sysctls, presence: presence, counters: counters, context: collection.context,
                                                 netnsInode: collection.netns.inode, ownedByHost: collection.netns.ownedByHost)
    }

    /// The census's report, its budgets naming their holders when asked.
    func attributedReport(_ sysctls: PortSysctls, presence: SocketPresence, counters: HashedTCPCounters?,
                          context: CollectionContext, netnsInode: UInt64, ownedByHost: Bool) throws -> PortBudgetReport {
        guard let attribution else {
            return try census(sysctls, presence: presence, counters: counters, context: context, netnsInode: netnsInode,
                              ownedByHost: ownedByHost).report(thresholds: thresholds)
        }
        let census = try census(sysctls, presence: presence, counters: counters, context: context, netnsInode: netnsInode,
                                ownedByHost: ownedByHost, trackingInodes: attribution.processes)
        var naming = HolderNaming(cgroupRoot: attribution.cgroups.root, owners: [:], top: attribution.top)
        for (id, resolution) in attribution.cgroups.resolve(census.cgroupIDs) {
            if case let .owner(owner) = resolution { naming.owners[id] = owner }
        }
        if attribution.processes {
            let scan = SocketOwners.scan(procfs: context.procfs, wanted: census.socketInodes)
            if scan.unreadable > 0 {
                context.logger.warning("some processes' descriptors could not be read; their sockets name no process",
                                       metadata: ["processes": "\(scan.unreadable)"])
            }
            naming.processes = scan.owners
        }
        return census.report(thresholds: thresholds, naming: naming)
    }

    /// Streams the TCP and UDP dumps of both families into a census, leaving
    /// out the dumps `presence` proves empty (all of TCP's when the namespace
    /// holds no socket but the agent's). `counters`, read before the census,
    /// let one TCP dump prove a second one needless (`HashedSocketTally`).
    /// `netnsInode` (0: the agent's own) picks what the failure programs
    /// saw of bind() before connect(); `ownedByHost` is false for a namespace
    /// of an unprivileged user's user namespace, which gets a smaller
    /// allowance (`BoundSocketAllowance`).
    public func census(_ sysctls: PortSysctls, presence: SocketPresence = .unknown, counters: HashedTCPCounters? = nil,
                       context: CollectionContext, netnsInode: UInt64 = 0, ownedByHost: Bool = true,
                       trackingInodes: Bool = false) throws -> PortCensus {
        let dumper = try context.sockets?.sockDiag ?? SockDiagDumper()
        var census = PortCensus(sysctls: sysctls)
        if trackingInodes { census.trackSocketInodes() }
        var tracked: BoundSocketTracker.Census?
        if let boundSockets, let inode = netnsInode == 0 ? boundSockets.ownNetnsInode : netnsInode {
            do {
                tracked = try boundSockets.begin(netnsInode: inode, ownedByHost: ownedByHost)
            } catch {
                // The census goes on inferring bind(addr, 0), as without the programs.
                context.logger.debug("bound sockets unreadable", metadata: ["error": "\(error)"])
            }
            if let tracked {
                census.use(tracked.knowledge)
                if tracked.watched {
                    census.keepConnectionLabels()
                    census.useListenerChildren(tracked.listenerChildren)
                }
            }
        }
        // A first census with the failure programs dumps regardless: its
        // counters were read before the namespace's map existed, and a socket
        // that connected in between must be seen to be counted as older.
        let firstTracked = tracked.map { $0.watched && $0.knowledge.predating == .firstCensus } ?? false
        let dumpedTCP = presence.tcpHashed || presence.tcpUnhashed || firstTracked
        let hashed = presence.tcpHashed || firstTracked
        var walkedOnce = false
        if !dumpedTCP {
            // The namespace holds no TCP socket at all.
        } else if tcpDumps == .bothFamilies, hashed, let labels = tracked?.labels,
                  let once = try tcpOneWalk(dumper, census, labels: labels) {
            census = once
            walkedOnce = true
        } else if tcpDumps == .bothFamilies,
                  let folded = try tcpBothFamilies(dumper, census, hashed: hashed, counters: counters, context: context) {
            census = folded
        } else {
            let explicit = PortCensus.tcpFilter(sysctls, explicit: true)
            let auto = PortCensus.tcpFilter(sysctls, explicit: false)
            for family in [IPAddress.Family.v4, .v6] {
                try dumper.dump(family: family, proto: .tcp, filter: explicit) { census.addTCP($0, explicitlyBound: true) }
                try dumper.dump(family: family, proto: .tcp, filter: auto) { census.addTCP($0, explicitlyBound: false) }
            }
        }
        if let boundSockets, let tracked {
            census.noteLateBoundSockets(boundSockets.finish(tracked, census: census, dumpedTCP: dumpedTCP, walkedOnce: walkedOnce))
        }
        let udp = PortCensus.udpFilter(sysctls)
        for (family, present) in [(IPAddress.Family.v4, presence.udp), (.v6, presence.udp6)] where present {
            try dumper.dump(family: family, proto: .udp, filter: udp) { census.addUDP($0) }
        }
        // UDP-Lite has its own port table; kernels without it answer ENOENT or similar.
        do {
            for (family, present) in [(IPAddress.Family.v4, presence.udplite), (.v6, presence.udplite6)] where present {
                try dumper.dump(family: family, proto: .udplite, filter: udp) { census.addUDP($0, lite: true) }
            }
            census.noteUDPLiteDumped()
        } catch let error as SockDiagError where Self.notSupported.contains(error.errno) {
            context.logger.debug("UDP-Lite not dumpable", metadata: ["error": "\(error)"])
        }
        return census
    }

    /// Errors by which a kernel says it does not take a request at all.
    static let notSupported: Set<Int32> = [ENOENT, EINVAL, EOPNOTSUPP, EPROTONOSUPPORT]

    /// Folds TCP with one dump of every socket in the range, both families:
    /// one walk of the kernel's tables, its connected sockets labelled by an
    /// earlier census and the failure programs (`PortCensus.useLabels`)
    /// rather than by the kernel's bind filter. Nil, with nothing folded,
    /// when the kernel does not take the request.
    func tcpOneWalk(_ dumper: SockDiagDumper, _ start: PortCensus, labels: Set<UInt64>) throws -> PortCensus? {
        var census = start
        census.useLabels(labels)
        do {
            try dumper.dumpTCPAllFamilies(states: TCPState.allStates, filter: PortCensus.tcpOneWalkFilter(census.sysctls)) {
                census.addTCP($0, explicitlyBound: false)
            }
        } catch let error as SockDiagError where Self.notSupported.contains(error.errno) {
            return nil
        }
        return census
    }

    /// Folds TCP with dumps that each cover both address families. The
    /// first takes every socket but explicitly bound connected ones in the
    /// range, in every state; when the namespace's counters prove it left
    /// out none (`HashedSocketTally`), that is all, otherwise a second dump
    /// of the established hash takes those. Each dump walks the kernel's
    /// tables — whatever the namespace holds, the host-wide established hash
    /// — and is most of a census's cost; the kernel's only sign of an
    /// explicit bind is a filter that selects sockets without labelling them,
    /// hence a second dump where one may exist. When nothing of the
    /// namespace is `hashed` (no TCP socket in use or in TIME_WAIT), only
    /// bound-only sockets can exist: one dump asks for those alone. Nil,
    /// with nothing folded, when the kernel does not take the request (then
    /// the caller dumps per family).
    func tcpBothFamilies(_ dumper: SockDiagDumper, _ start: PortCensus, hashed: Bool, counters: HashedTCPCounters?,
                         context: CollectionContext) throws -> PortCensus? {
        var census = start
        let sysctls = census.sysctls
        var tally = HashedSocketTally()
        // Only the counters, for no more sockets than the tally keeps, can
        // prove the second dump empty; otherwise the first dump need not
        // carry the sockets outside the range that the proof counts.
        let provable = counters.map { $0.inUse <= Int64(HashedSocketTally.cookiesKept) } ?? false
        do {
            if hashed {
                try dumper.dumpTCPAllFamilies(states: TCPState.allStates,
                                              filter: PortCensus.tcpAllButExplicitConnectedFilter(sysctls, outOfRange: provable)) {
                    if provable { tally.add($0) }
                    census.addTCP($0, explicitlyBound: false)
                }
            } else {
                try dumper.dumpTCPAllFamilies(states: TCPState.mask(TCPState.boundInactive),
                                              filter: PortCensus.tcpExplicitOrUnconnectedFilter(sysctls)) {
                    census.addTCP($0, explicitlyBound: true)
                }
            }
        } catch let error as SockDiagError where Self.notSupported.contains(error.errno) {
            context.logger.debug("TCPDIAG_GETSOCK not taken, dumping per family", metadata: ["error": "\(error)"])
            return nil
        }
        guard hashed else { return census }
        if provable, let before = counters, tally.counted == before.inUse, let after = Self.hashedCounters(context.procfs),
           tally.provesNoneLeftOut(before: before, after: after) {
            return census
        }
        try dumper.dumpTCPAllFamilies(states: PortCensus.connectedStates, filter: PortCensus.tcpExplicitConnectedFilter(sysctls)) {
            census.addTCP($0, explicitlyBound: true)
        }
        return census
    }

    /// The namespace's counters now, for `HashedSocketTally`; nil when
    /// unreadable. Read in the order the proof needs: inUse, then opens.
    static func hashedCounters(_ procfs: ProcFS) -> HashedTCPCounters? {
        guard let v4 = try? procfs.netText(.sockstat), let v6 = try? procfs.netText(.sockstat6),
              let snmp = try? procfs.netText(.snmp) else { return nil }
        return HashedTCPCounters(sockstatText: v4, sockstat6Text: v6, snmpText: snmp)
    }
}

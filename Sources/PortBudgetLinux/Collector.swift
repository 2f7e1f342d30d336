import Foundation
import Glibc
import Logging
import PortBudgetCore

/// Runs the collectors — sysctls, SOCK_DIAG census, sockstat, snmp, netstat —
/// against the network namespace of the calling thread. It opens its netlink
/// socket per collection, so the same collector can later run once per
/// namespace after a setns().
public struct Collector: Sendable {
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

    public var procfs: ProcFS
    public let logger: Logger
    public let tcpDumps: TCPDumps
    public let attribution: Attribution?
    /// The NAT range SNAT groups are measured against (issue 11); the
    /// kernel's default unless `--snat-port-range` or the config names one.
    public var snatPortRange: SNATPortRange = .kernelDefault
    /// Netlink sockets kept for one namespace across collections
    /// (`--all-namespaces`); nil opens fresh ones in the calling thread's namespace.
    public var sockets: NamespaceSockets?
    /// Shared by every copy (one per namespace with `--all-namespaces`), so
    /// a lasting failure — conntrack without CAP_NET_ADMIN — is logged once,
    /// not on every scrape of every namespace.
    let failureLog = FailureLog()
    /// Failed port allocations counted in the kernel (`serve`, `textfile`);
    /// nil where they are not watched.
    public var failures: FailureCollector?
    /// The namespace this copy collects (`--all-namespaces`); nil: the agent's own.
    public var netnsInode: UInt64?

    public init(procfs: ProcFS, logger: Logger = Logger(label: "portbudget.collector"), tcpDumps: TCPDumps = .bothFamilies,
                attribution: Attribution? = nil) {
        self.procfs = procfs
        self.logger = logger
        self.tcpDumps = tcpDumps
        self.attribution = attribution
    }

    /// Runs every collector in `CollectionResult.collectorNames` order,
    /// telling `CollectionProgressReporting.current` (when bound) which one
    /// is at work, so a caller with a deadline can name a stuck one.
    public func collect(thresholds: Thresholds) -> CollectionResult {
        let progress = CollectionProgressReporting.current
        var outcomes: [CollectorOutcome] = []
        func record(_ outcome: CollectorOutcome) {
            outcomes.append(outcome)
            progress?.collectorFinished(outcome)
        }
        func timed<T>(_ name: String, _ body: () throws -> T) -> T? {
            progress?.collectorStarted(name)
            let start = Self.monotonicSeconds()
            do {
                let value = try body()
                record(CollectorOutcome(name: name, seconds: Self.monotonicSeconds() - start, error: nil))
                return value
            } catch {
                if failureLog.shouldLog(collector: name, error: "\(error)") {
                    logger.warning("collector failed; the same failure is logged again at most hourly",
                                   metadata: ["collector": "\(name)", "error": "\(error)"])
                }
                record(CollectorOutcome(name: name, seconds: Self.monotonicSeconds() - start, error: "\(error)"))
                return nil
            }
        }

        let sysctls = timed("sysctl") { try procfs.portSysctls() }
        var report: PortBudgetReport? = nil
        if let sysctls {
            report = timed("sockdiag") { try attributedReport(sysctls, thresholds: thresholds) }
        } else {
            record(CollectorOutcome(name: "sockdiag", seconds: 0, error: "skipped: port sysctls unreadable"))
        }
        var tables: [KernelCounter.Source: ProcNetParser.Table] = [:]
        if let sockstat = timed("sockstat", { try (procfs.netTable(.sockstat), procfs.netTable(.sockstat6)) }) {
            tables[.sockstat] = sockstat.0
            tables[.sockstat6] = sockstat.1
        }
        tables[.snmp] = timed("snmp") { try procfs.netTable(.snmp) }
        tables[.netstat] = timed("netstat") { try procfs.netTable(.netstat) }
        report?.counters = KernelCounterValues(tables: tables).values
        // issue 11: the NAT's port budget and the conntrack table; absent, with the collector failed, when unreadable.
        if report != nil, let conntrack = timed("conntrack", { try conntrackSnapshot() }) {
            report?.snat = conntrack.snat
            report?.conntrack = conntrack.table
        }
        if report != nil, let failures {
            report?.failures = timed(FailureCollector.name) { try failures.collect(netnsInode: netnsInode) }
        }
        return CollectionResult(report: report, outcomes: outcomes)
    }

    /// The census's report, its budgets naming their holders when asked.
    func attributedReport(_ sysctls: PortSysctls, thresholds: Thresholds) throws -> PortBudgetReport {
        guard let attribution else { return try census(sysctls).report(thresholds: thresholds) }
        let census = try census(sysctls, trackingInodes: attribution.processes)
        var naming = HolderNaming(cgroupRoot: attribution.cgroups.root, owners: [:], top: attribution.top)
        for (id, resolution) in attribution.cgroups.resolve(census.cgroupIDs) {
            if case let .owner(owner) = resolution { naming.owners[id] = owner }
        }
        if attribution.processes {
            let scan = SocketOwners.scan(procfs: procfs, wanted: census.socketInodes)
            if scan.unreadable > 0 {
                logger.warning("some processes' descriptors could not be read; their sockets name no process",
                               metadata: ["processes": "\(scan.unreadable)"])
            }
            naming.processes = scan.owners
        }
        return census.report(thresholds: thresholds, naming: naming)
    }

    /// Streams the TCP and UDP dumps of both families into a census.
    public func census(_ sysctls: PortSysctls, trackingInodes: Bool = false) throws -> PortCensus {
        let dumper = try sockets?.sockDiag ?? SockDiagDumper()
        var census = PortCensus(sysctls: sysctls)
        if trackingInodes { census.trackSocketInodes() }
        if tcpDumps == .bothFamilies, let folded = try tcpBothFamilies(dumper, census) {
            census = folded
        } else {
            let explicit = PortCensus.tcpFilter(sysctls, explicit: true)
            let auto = PortCensus.tcpFilter(sysctls, explicit: false)
            for family in [IPAddress.Family.v4, .v6] {
                try dumper.dump(family: family, proto: .tcp, filter: explicit) { census.addTCP($0, explicitlyBound: true) }
                try dumper.dump(family: family, proto: .tcp, filter: auto) { census.addTCP($0, explicitlyBound: false) }
            }
        }
        let udp = PortCensus.udpFilter(sysctls)
        for family in [IPAddress.Family.v4, .v6] {
            try dumper.dump(family: family, proto: .udp, filter: udp) { census.addUDP($0) }
        }
        // UDP-Lite has its own port table; kernels without it answer ENOENT or similar.
        do {
            for family in [IPAddress.Family.v4, .v6] {
                try dumper.dump(family: family, proto: .udplite, filter: udp) { census.addUDP($0, lite: true) }
            }
            census.noteUDPLiteDumped()
        } catch let error as SockDiagError where [ENOENT, EINVAL, EOPNOTSUPP, EPROTONOSUPPORT].contains(error.errno) {
            logger.debug("UDP-Lite not dumpable", metadata: ["error": "\(error)"])
        }
        return census
    }

    /// Folds TCP with two dumps that each cover both address families, so
    /// the kernel walks its socket tables twice rather than four times: (1)
    /// explicitly bound or peerless sockets (listeners, bound-only) in every
    /// state, (2) auto-bound sockets in the established hash only, which
    /// also skips a second walk of the bind table. Each walk visits every TCP
    /// socket of the namespace, wanted or not, and is most of a census's cost.
    /// Nil, with nothing folded, when the kernel does not take the request
    /// (then the caller dumps per family).
    func tcpBothFamilies(_ dumper: SockDiagDumper, _ start: PortCensus) throws -> PortCensus? {
        var census = start
        let sysctls = census.sysctls
        do {
            try dumper.dumpTCPAllFamilies(states: TCPState.allStates,
                                          filter: PortCensus.tcpExplicitOrUnconnectedFilter(sysctls)) {
                census.addTCP($0, explicitlyBound: true)
            }
        } catch let error as SockDiagError where [ENOENT, EINVAL, EOPNOTSUPP, EPROTONOSUPPORT].contains(error.errno) {
            logger.debug("TCPDIAG_GETSOCK not taken, dumping per family", metadata: ["error": "\(error)"])
            return nil
        }
        try dumper.dumpTCPAllFamilies(states: PortCensus.connectedStates,
                                      filter: PortCensus.tcpFilter(sysctls, explicit: false)) {
            census.addTCP($0, explicitlyBound: false)
        }
        return census
    }

    static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// Remembers which collector failures were logged, so each distinct one is
/// logged at most once per `interval`; the exposition reports every one.
final class FailureLog: @unchecked Sendable {
    /// How often the same failure is logged again.
    static let interval: Double = 3600
    /// Distinct failures remembered; beyond it the memory starts over.
    static let capacity = 256

    private let lock = NSLock()
    private var logged: [String: Double] = [:]

    func shouldLog(collector: String, error: String) -> Bool {
        let key = collector + "\u{0}" + error, now = Collector.monotonicSeconds()
        return lock.withLock {
            if let last = logged[key], now - last < Self.interval { return false }
            if logged.count >= Self.capacity { logged = [:] }
            logged[key] = now
            return true
        }
    }
}

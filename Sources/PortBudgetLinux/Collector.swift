import Glibc
import Logging
import PortBudgetCore

/// How one collector fared in one collection: what the exposition reports
/// as `portbudget_scrape_collector_{duration_seconds,success}`.
public struct CollectorOutcome: Sendable, Equatable {
    public let name: String
    public let seconds: Double
    public let error: String?
    public var success: Bool { error == nil }
}

/// One collection of one network namespace.
public struct Collection: Sendable {
    /// Nil when the census itself failed: then nothing may be reported as measured.
    public let report: PortBudgetReport?
    public let outcomes: [CollectorOutcome]

    /// The first failure among the collectors the port budget depends on.
    public var fatalError: String? {
        outcomes.first { !$0.success && Collector.essential.contains($0.name) }?.error
    }
}

/// Runs the collectors — sysctls, SOCK_DIAG census, sockstat, snmp, netstat —
/// against the network namespace of the calling thread. It opens its netlink
/// socket per collection, so the same collector can later run once per
/// namespace after a setns().
public struct Collector: Sendable {
    public static let essential: Set<String> = ["sysctl", "sockdiag"]
    public static let names = ["sysctl", "sockdiag", "sockstat", "snmp", "netstat"]

    public let procfs: ProcFS
    public let logger: Logger

    public init(procfs: ProcFS, logger: Logger = Logger(label: "portbudget.collector")) {
        self.procfs = procfs
        self.logger = logger
    }

    public func collect(thresholds: Thresholds) -> Collection {
        var outcomes: [CollectorOutcome] = []
        func timed<T>(_ name: String, _ body: () throws -> T) -> T? {
            let start = Self.monotonicSeconds()
            do {
                let value = try body()
                outcomes.append(CollectorOutcome(name: name, seconds: Self.monotonicSeconds() - start, error: nil))
                return value
            } catch {
                logger.warning("collector failed", metadata: ["collector": "\(name)", "error": "\(error)"])
                outcomes.append(CollectorOutcome(name: name, seconds: Self.monotonicSeconds() - start,
                                                 error: "\(error)"))
                return nil
            }
        }

        let sysctls = timed("sysctl") { try procfs.portSysctls() }
        var report: PortBudgetReport? = nil
        if let sysctls {
            report = timed("sockdiag") { try census(sysctls).report(thresholds: thresholds) }
        } else {
            outcomes.append(CollectorOutcome(name: "sockdiag", seconds: 0, error: "skipped: port sysctls unreadable"))
        }
        var tables: [KernelCounter.Source: ProcNetParser.Table] = [:]
        if let sockstat = timed("sockstat", { try (procfs.netTable(.sockstat), procfs.netTable(.sockstat6)) }) {
            tables[.sockstat] = sockstat.0
            tables[.sockstat6] = sockstat.1
        }
        tables[.snmp] = timed("snmp") { try procfs.netTable(.snmp) }
        tables[.netstat] = timed("netstat") { try procfs.netTable(.netstat) }
        report?.counters = KernelCounterValues(tables: tables).values
        return Collection(report: report, outcomes: outcomes)
    }

    /// Streams the TCP and UDP dumps of both families into a census.
    public func census(_ sysctls: PortSysctls) throws -> PortCensus {
        let dumper = try SockDiagDumper()
        var census = PortCensus(sysctls: sysctls)
        let explicit = PortCensus.tcpFilter(sysctls, explicit: true)
        let auto = PortCensus.tcpFilter(sysctls, explicit: false)
        let udp = PortCensus.udpFilter(sysctls)
        for family in [IPAddress.Family.v4, .v6] {
            try dumper.dump(family: family, proto: .tcp, filter: explicit) { census.addTCP($0, explicitlyBound: true) }
            try dumper.dump(family: family, proto: .tcp, filter: auto) { census.addTCP($0, explicitlyBound: false) }
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

    static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

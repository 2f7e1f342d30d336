import Foundation
import Glibc
import Logging
import PortBudgetCore

/// The registered collectors and the one piece of code that runs them in a
/// namespace: each in order, timed, its error turned into its failed outcome
/// (logged once an hour at most), and the collection's progress told to
/// whoever waits on it with a deadline.
public struct CollectorSet: Sendable {
    public let collectors: [any Collector]
    /// Shared by every namespace's collection, so a lasting failure —
    /// conntrack without CAP_NET_ADMIN — is logged once, not on every
    /// scrape of every namespace.
    let failureLog = FailureLog()

    public init(_ collectors: [any Collector]) {
        self.collectors = collectors
    }

    /// Every collector the agent has, in the order they run: the census
    /// needs the sysctls, skips the dumps sockstat's counts prove empty, and
    /// with snmp's opens as well makes one TCP dump where it can (`HashedSocketTally`;
    /// snmp first: a connect() counts its open after its socket is hashed);
    /// SNAT needs the census; the failure counts, when loaded, go into its report.
    /// Without `extendedCounters` /proc/net/netstat is not read: only its two
    /// TIME_WAIT counters come from it, and the kernel sums every one of its
    /// hundred-odd fields over the CPUs to write it, the costliest procfs
    /// read of a small namespace.
    public static func standard(census: SockDiagCollector, snatPortRange: SNATPortRange,
                                failures: FailureCollector? = nil, extendedCounters: Bool = true) -> CollectorSet {
        CollectorSet([SysctlCollector(), SnmpCollector(), SockstatCollector(), census]
                     + (extendedCounters ? [NetstatCollector()] : [])
                     + [ConntrackCollector(snatPortRange: snatPortRange)] + (failures.map { [$0] } ?? []))
    }

    /// The names metrics, logs and messages use, in running order.
    public var names: [String] { collectors.map(\.name) }

    /// The files of `ProcFS.namespaceFiles` these collectors read: a
    /// namespace's session opens no other (without a netstat collector,
    /// not /proc/net/netstat).
    public var namespaceFiles: [String] {
        let netstat = ProcFS.relative(.netstat)
        return collectors.contains { $0 is NetstatCollector } ? ProcFS.namespaceFiles
            : ProcFS.namespaceFiles.filter { $0 != netstat }
    }

    /// One namespace's collection, through `context`, telling
    /// `CollectionProgressReporting.current` (when bound) which collector is
    /// at work, so a caller with a deadline can name a stuck one.
    public func collect(_ context: CollectionContext, netns: NetnsInfo = .own) -> NamespaceCollection {
        let progress = CollectionProgressReporting.current
        var collection = CollectionInProgress(context: context)
        collection.netns = netns
        var outcomes: [CollectorOutcome] = []
        for collector in collectors where collector.applies(to: collection) {
            progress?.collectorStarted(collector.name)
            let start = Self.monotonicSeconds()
            var seconds: Double { Self.monotonicSeconds() - start }
            var outcome: CollectorOutcome
            do {
                try collector.update(&collection)
                outcome = CollectorOutcome(name: collector.name, seconds: seconds, error: nil)
            } catch let skipped as CollectorSkipped {
                // Not run, so no time spent and nothing new to log.
                outcome = CollectorOutcome(name: collector.name, seconds: 0, error: skipped.description)
            } catch let failure {
                outcome = CollectorOutcome(name: collector.name, seconds: seconds, error: "\(failure)")
                if failureLog.shouldLog(collector: collector.name, error: "\(failure)") {
                    context.logger.warning("collector failed; the same failure is logged again at most hourly",
                                           metadata: ["collector": "\(collector.name)", "error": "\(failure)"])
                }
            }
            outcomes.append(outcome)
            progress?.collectorFinished(outcome)
        }
        collection.report?.counters = KernelCounterValues(tables: collection.counterTables).values
        return NamespaceCollection(netns: netns, report: collection.report, outcomes: outcomes)
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
        let key = collector + "\u{0}" + error, now = CollectorSet.monotonicSeconds()
        return lock.withLock {
            if let last = logged[key], now - last < Self.interval { return false }
            if logged.count >= Self.capacity { logged = [:] }
            logged[key] = now
            return true
        }
    }
}

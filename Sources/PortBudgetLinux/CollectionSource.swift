import Logging
import PortBudgetCore

/// What `check`, `serve` and `textfile` collect, built in one place: which
/// namespaces they watch, the registered collectors each one runs, and how
/// long a collection may take.
public final class CollectionSource: Sendable {
    /// Which network namespaces a command watches.
    public enum Scope: Sendable {
        /// The namespace the agent runs in.
        case own
        /// Others, each held open since start and entered in turn by the
        /// collecting thread (`--netns`, repeatable): one namespace is
        /// reported as the agent's own is; several as `--all-namespaces`
        /// does, each series with its netns label.
        case netns([(handle: NetworkNamespaceHandle, name: String)])
        /// Every namespace on the host (`--all-namespaces`).
        case all
    }

    /// Everything a command decides about its collections.
    public struct Configuration: Sendable {
        public var procfs: String
        public var scope: Scope
        public var snatPortRange: SNATPortRange
        /// Holders named per budget (0: all); nil names none (the benchmark prices attribution with it).
        public var holders: Int?
        /// Name processes as well as cgroups (`check --processes`).
        public var processes: Bool
        public var tcpDumps: SockDiagCollector.TCPDumps
        /// What statuses and findings are judged against; `serve` and
        /// `textfile` export raw ratios and use the defaults.
        public var thresholds: Thresholds
        /// The failure collector's programs (`serve`, `textfile`); nil: not loaded.
        public var failures: FailurePrograms.Options? = nil
        /// Whether `--all-namespaces` keeps namespaces' sessions open for the
        /// next collection. A one-shot `check` makes no next one: it closes
        /// each as it finishes, so its descriptors stay few and the kernel
        /// never grows its descriptor table under the collecting threads
        /// (each growth waits out an RCU grace period, milliseconds, while
        /// every thread opening a file waits with it).
        public var keepsSessions = true
        /// Whether /proc/net/netstat's counters (TIME_WAIT recycling and
        /// overflow) are read: `serve` and `textfile` export them and
        /// `check --json` reports them; `check`'s table shows no counter.
        public var extendedCounters = true
        /// `--all-namespaces`: the CPU seconds after which a collection
        /// starts no further namespace outside the host-owned ones
        /// (`CollectionPacing.allowance`; `serve` and `textfile` with a CPU
        /// budget); nil: only the time budget bounds them.
        public var cpuAllowance: Double? = nil

        public init(procfs: String = "/proc", scope: Scope = .own, snatPortRange: SNATPortRange = .kernelDefault,
                    holders: Int? = MetricsExposition.holdersHostWide, processes: Bool = false,
                    tcpDumps: SockDiagCollector.TCPDumps = .bothFamilies, thresholds: Thresholds = Thresholds()) {
            self.procfs = procfs
            self.scope = scope
            self.snatPortRange = snatPortRange
            self.holders = holders
            self.processes = processes
            self.tcpDumps = tcpDumps
            self.thresholds = thresholds
        }
    }

    public let collectors: CollectorSet
    /// How long one collection may take before it is given up on.
    public let deadline: Duration
    private let watching: Watching
    private let procfs: ProcFS
    private let cgroups: CgroupResolver
    private let logger: Logger

    /// The scope, with what collecting it keeps across collections.
    private enum Watching {
        case own
        case netns([(handle: NetworkNamespaceHandle, name: String)])
        case all(AllNamespacesCollector)
    }

    public init(_ configuration: Configuration, logger: Logger) {
        let procfs = ProcFS(root: configuration.procfs)
        let cgroups = CgroupResolver(procfs: procfs)
        let failures = configuration.failures.map { FailureCollector(options: $0, cgroups: cgroups, procfs: procfs) }
        let census = SockDiagCollector(
            tcpDumps: configuration.tcpDumps,
            attribution: configuration.holders.map { .init(cgroups: cgroups, top: $0, processes: configuration.processes) },
            thresholds: configuration.thresholds, boundSockets: failures?.boundSockets)
        collectors = CollectorSet.standard(census: census, snatPortRange: configuration.snatPortRange, failures: failures,
                                           extendedCounters: configuration.extendedCounters)
        self.procfs = procfs
        self.cgroups = cgroups
        self.logger = logger
        switch configuration.scope {
        case .own: watching = .own
        case let .netns(namespaces): watching = .netns(namespaces)
        case .all:
            watching = .all(AllNamespacesCollector(collectors: collectors, procfs: procfs, cgroups: cgroups, logger: logger,
                                                   cpuAllowance: configuration.cpuAllowance,
                                                   keepsSessions: configuration.keepsSessions))
        }
        if case .all = configuration.scope { deadline = AllNamespacesCollector.deadline } else { deadline = CollectionResult.deadline }
    }

    /// The failure collector's programs, when it is registered and they loaded.
    public var loadedFailurePrograms: FailurePrograms? {
        collectors.collectors.lazy.compactMap { ($0 as? FailureCollector)?.loaded }.first
    }

    /// One collection. Blocking: run it on a thread of its own
    /// (`CollectionRunner`) — with `--netns` that thread enters the namespace.
    public func collect() -> CollectionResult {
        cgroups.startCollection()
        switch watching {
        case .own:
            return CollectionResult(namespaces: [collectors.collect(CollectionContext(procfs: procfs, logger: logger))],
                                    acrossNamespaces: false)
        case let .netns(namespaces) where namespaces.count == 1:
            let (handle, name) = namespaces[0]
            do { try handle.enterOnThisThread() } catch { return .notEntered("\(error)") }
            let context = CollectionContext(procfs: ProcFS(root: procfs.root, netOfCallingThread: true), logger: logger)
            return CollectionResult(namespaces: [collectors.collect(context, netns: NetnsInfo(name: name, inode: handle.inode))],
                                    acrossNamespaces: false)
        case let .netns(namespaces):
            // One after another on this thread; one that cannot be entered is
            // listed with why, the others are still measured.
            let context = CollectionContext(procfs: ProcFS(root: procfs.root, netOfCallingThread: true), logger: logger)
            let collected = namespaces.map { handle, name -> NamespaceCollection in
                let info = NetnsInfo(name: name, inode: handle.inode)
                do { try handle.enterOnThisThread() } catch {
                    return NamespaceCollection(netns: info, report: nil, outcomes: [
                        CollectorOutcome(name: NetnsInfo.enteringCollector, seconds: 0, error: "\(error)")])
                }
                return collectors.collect(context, netns: info)
            }
            return CollectionResult(namespaces: collected, acrossNamespaces: true)
        case let .all(every):
            return every.collect()
        }
    }
}

import Foundation
import Glibc
import Logging
import PortBudgetCore

/// `--all-namespaces` (`check`, `serve`, `textfile`): every network
/// namespace on the host in one collection. Each collection rescans (one stat per bind mount,
/// one readlink per process), opens a `NamespaceSession` for each namespace
/// seen for the first time, drops the sessions of namespaces no longer seen
/// (releasing them to the kernel), and runs the collector through each
/// session's kept sockets and files — entering no namespace on the way.
///
/// A namespace that cannot be opened (no CAP_SYS_ADMIN, out of descriptors)
/// is reported unmeasured, with its `netns` collector failed, and retried
/// after `retryInterval`; a session whose dump fails is reopened at the next
/// collection. Collections must not overlap (`CollectionRunner` ensures it).
public final class AllNamespacesCollector: @unchecked Sendable {
    /// How long a collection over every namespace may take before a scrape
    /// is answered without it (instead of `CollectionResult.deadline`): each
    /// namespace's dump walks the kernel's host-wide socket hash, so the
    /// whole takes namespaces × host sockets (docs/benchmarks.md) — seconds
    /// on a node with a hundred pods and a few hundred thousand sockets.
    /// Prometheus' `scrape_timeout` for such a target should match it.
    public static let deadline: Duration = .seconds(30)
    /// How long a namespace that could not be opened waits before the next try.
    public static let retryInterval: Double = 30
    /// Namespaces collected at once: at most this many, and no more than
    /// the machine has cores. Each is one thread walking the kernel's hash.
    public static let parallelism = min(4, max(1, ProcessInfo.processInfo.activeProcessorCount))

    enum Slot {
        case session(NamespaceSession)
        case unmeasured(NamespaceCollection)
    }

    /// The collections filled in by the workers, each at its own index.
    final class CollectedSlots: @unchecked Sendable {
        private let lock = NSLock()
        private var entries: [NamespaceCollection?]
        init(count: Int) { entries = Array(repeating: nil, count: count) }
        subscript(index: Int) -> NamespaceCollection? {
            get { lock.withLock { entries[index] } }
            set { lock.withLock { entries[index] = newValue } }
        }
    }

    private let collector: Collector
    private let cgroups: CgroupResolver?
    private let logger: Logger
    private let lock = NSLock()
    private var sessions: [UInt64: NamespaceSession] = [:]
    private var failures: [UInt64: (info: NetnsInfo, error: String, at: Double)] = [:]
    /// Failure reasons already logged, so a host full of pods logs a missing
    /// privilege once, not once per pod and scrape.
    private var loggedReasons: Set<String> = []
    private var loggedUnreadable = false

    /// `collector` is the configured collector (attribution, SNAT range);
    /// each namespace runs a copy reading through its own session.
    public init(collector: Collector, cgroups: CgroupResolver?, logger: Logger) {
        self.collector = collector
        self.cgroups = cgroups
        self.logger = logger
    }

    public func collect(thresholds: Thresholds) -> CollectionResult {
        lock.withLock { collectLocked(thresholds: thresholds) }
    }

    private func collectLocked(thresholds: Thresholds) -> CollectionResult {
        let procfs = collector.procfs
        let progress = CollectionProgressReporting.current
        progress?.collectorStarted("netns discovery")
        let scan = NamespaceDiscovery.scan(procfs: procfs)
        let now = Self.monotonicSeconds()
        let seen = Set(scan.sightings.map(\.inode))
        // Gone: closing the session's descriptors lets the kernel free the namespace.
        sessions = sessions.filter { seen.contains($0.key) }
        failures = failures.filter { seen.contains($0.key) }
        let conntrackLoaded = collector.conntrackLoaded
        let unreadable = scan.unreadable
        // First, in order: each namespace's session, or why it has none.
        var slots: [Slot] = []
        for sighting in scan.sightings {
            if let failed = failures[sighting.inode], now - failed.at < Self.retryInterval {
                slots.append(.unmeasured(Self.unmeasured(failed.info, failed.error)))
                continue
            }
            if let session = sessions[sighting.inode] {
                slots.append(.session(session))
                continue
            }
            progress?.collectorStarted("netns opening \(sighting.name ?? sighting.path)")
            guard var found = NamespaceDiscovery.open(sighting, procfs: procfs, cgroups: cgroups) else {
                // Gone since the scan, or a pid reused: left out of this collection.
                continue
            }
            let taken = Set(sessions.values.map(\.info.name)).union(failures.values.map(\.info.name))
            found.info.name = NamespaceDiscovery.unique(found.info, taken: taken)
            do {
                let session = try NamespaceSession.open(found, procfs: procfs.root, conntrack: conntrackLoaded)
                sessions[sighting.inode] = session
                failures[sighting.inode] = nil
                slots.append(.session(session))
            } catch {
                let reason = "\(error)"
                failures[sighting.inode] = (found.info, reason, now)
                logOnce(reason, netns: found.info.name)
                slots.append(.unmeasured(Self.unmeasured(found.info, reason)))
            }
        }
        // Then the namespaces' collections, several at once: each walks the
        // kernel's host-wide socket hash, so wall time grows with namespaces
        // times sockets, and spreading the walks over cores divides it.
        let collected = CollectedSlots(count: slots.count)
        let sessionSlots: [(index: Int, session: NamespaceSession)] = slots.enumerated().compactMap {
            if case let .session(session) = $0.element { ($0.offset, session) } else { nil }
        }
        let width = max(1, min(Self.parallelism, sessionSlots.count))
        DispatchQueue.concurrentPerform(iterations: width) { worker in
            for position in stride(from: worker, to: sessionSlots.count, by: width) {
                let (index, session) = sessionSlots[position]
                var namespaced = collector
                namespaced.procfs = ProcFS(root: procfs.root, netOfCallingThread: true, pinned: session.files)
                namespaced.sockets = session.sockets
                namespaced.netnsInode = session.info.inode
                // A deadline missed here names the namespace as well as the collector.
                let named = progress.map { NamedProgress(outer: $0, netns: session.info.name) }
                collected[index] = CollectionProgressReporting.$current.withValue(named) {
                    NamespaceCollection(netns: session.info, collection: namespaced.collect(thresholds: thresholds))
                }
            }
        }
        var results: [NamespaceCollection] = []
        for (index, slot) in slots.enumerated() {
            switch slot {
            case let .unmeasured(entry): results.append(entry)
            case let .session(session):
                guard let entry = collected[index] else { continue }
                // A socket left mid-dump may hold stale replies: start afresh next time.
                let broken = entry.collection.outcomes.contains { !$0.success && ["sockdiag", "conntrack"].contains($0.name) }
                if broken || (conntrackLoaded && session.sockets.conntrack == nil) { sessions[session.handle.inode] = nil }
                results.append(entry)
            }
        }
        if unreadable > 0, !loggedUnreadable {
            loggedUnreadable = true
            logger.warning("some processes' network namespaces cannot be opened (another user's process needs CAP_SYS_PTRACE; some sandboxes hide pid 1); every other namespace is measured",
                           metadata: ["processes": "\(unreadable)"])
        }
        return CollectionResult(namespaces: results, unreadableProcesses: unreadable)
    }

    static func unmeasured(_ info: NetnsInfo, _ error: String) -> NamespaceCollection {
        NamespaceCollection(netns: info, collection: .notEntered(error))
    }

    /// One warning per distinct reason (the path stripped), naming the first namespace it hit.
    private func logOnce(_ reason: String, netns: String) {
        let kind = reason.split(separator: ":").last.map(String.init) ?? reason
        guard loggedReasons.insert(kind).inserted else {
            logger.debug("network namespace not measured", metadata: ["netns": "\(netns)", "error": "\(reason)"])
            return
        }
        logger.warning("network namespace not measured; others with the same cause are not logged again",
                       metadata: ["netns": "\(netns)", "error": "\(reason)"])
    }

    static func monotonicSeconds() -> Double { Collector.monotonicSeconds() }
}

/// Tells whoever waits with a deadline which collector of which namespace
/// is at work. Finished outcomes are not passed on: they repeat for every
/// namespace, and a collection given up on reports none of them.
struct NamedProgress: CollectionProgress {
    let outer: any CollectionProgress
    let netns: String

    func collectorStarted(_ name: String) { outer.collectorStarted("\(name) in netns \(netns)") }
    func collectorFinished(_ outcome: CollectorOutcome) {}
}

/// The open-files limit, raised for `--all-namespaces`, which keeps
/// `NamespaceSession.descriptorsPerNamespace` descriptors per namespace.
public enum OpenFilesLimit {
    /// Raises the soft RLIMIT_NOFILE to the hard limit (as Go programs and
    /// systemd's own advice do: the soft limit of 1024 exists for select()),
    /// and returns the limit now in force.
    @discardableResult
    public static func raiseToHard() -> UInt64 {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &raised) == 0 { return UInt64(raised.rlim_cur) }
        }
        return UInt64(limit.rlim_cur)
    }
}

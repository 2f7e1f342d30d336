import Foundation
import Glibc
import Logging
import PortBudgetCore

/// `--all-namespaces` (`check`, `serve`, `textfile`): every network
/// namespace on the host in one collection. Each collection rescans (one
/// stat per bind mount, one readlink per process) and collects every
/// namespace through a `NamespaceSession`: its sockets and files, opened from
/// inside it. Sessions of up to `sessionCapacity` namespaces — the best
/// ranked (`NamespaceBudget.ranked`): the host's own, then host-owned ones,
/// then the worst — stay open between collections; any other namespace is
/// entered again, collected and closed, so the descriptors held stay bounded
/// however many namespaces a tenant creates. Sessions of namespaces no
/// longer seen are closed, which lets the kernel free them.
///
/// A namespace that cannot be opened (no CAP_SYS_ADMIN, out of descriptors)
/// is reported unmeasured, with its `netns` collector failed, and retried
/// after `retryInterval`; a session whose dump fails is reopened at the next
/// collection. Collections must not overlap (`CollectionRunner` ensures it).
public final class AllNamespacesCollector: @unchecked Sendable {
    /// How long a collection over every namespace may take before it is
    /// given up on (instead of `CollectionResult.deadline`): each
    /// namespace's dump walks the kernel's host-wide socket hash, so the
    /// whole takes namespaces × host sockets (docs/benchmarks.md) — seconds
    /// on a node with a hundred pods and a few hundred thousand sockets.
    public static let deadline: Duration = .seconds(30)
    /// How long a namespace that could not be opened waits before the next try.
    public static let retryInterval: Double = 30
    /// Seconds into a collection after which no further namespace that is
    /// not known to be host-owned is started; those are reported unmeasured.
    /// Well inside `deadline`, so a collection over a tenant's thousands of
    /// namespaces still completes, with every host-owned one (collected
    /// first, never left out) in it, instead of being given up on whole.
    /// The namespaces left out go first among their peers next time.
    public static let timeBudget: Double = 20
    /// The unmeasured reason of a namespace left out for `timeBudget`.
    public static let outOfTime = "not collected: the collection's time budget ran out (collected first next time)"
    /// The unmeasured reason of a namespace left out for the CPU allowance.
    public static let outOfCPU = "not collected: the collection's CPU allowance ran out (collected first next time)"
    /// Namespaces outside the host-owned ones that a collection starts
    /// whatever its CPU allowance, so they are still measured in turn,
    /// longest uncollected first, when the host-owned ones alone spend it.
    public static let startedPastAllowance = 16

    /// Namespaces collected at once, whatever the cores, when walks are long.
    /// Each is one thread whose dump walks the kernel's host-wide socket
    /// hash; walks that run side by side, time-sliced over the same cores,
    /// move through that hash together and find in the cache what the
    /// others just read. Measured on 2 CPUs (Intel Xeon), 100 namespaces ×
    /// 1,000 connections beside 85,000 sockets, one collection: 2 workers
    /// 2.8 s, 4 2.1 s, 8 1.6 s, 16 1.35 s, every CPU busy in each case and
    /// peak RSS within 1 MB.
    public static let parallelism = 16
    /// Namespaces collected at once when the host's TCP sockets are fewer
    /// than `longWalkSockets`: each walk is then mostly the hash's empty
    /// buckets (under 2 ms), and a worker's two threads cost more than
    /// sharing the cache saves. Over 45 small namespaces beside 2,000
    /// sockets (2 CPUs, AMD EPYC), `check` took 72 ms with 8 against 76
    /// with 16, and 7 ms less CPU.
    public static let parallelismForShortWalks = 8
    /// TCP sockets on the host (sockstat's `alloc`, counted across every
    /// namespace) from which walks count as long.
    public static let longWalkSockets: Int64 = 20_000

    /// Namespaces to collect at once, given the agent's own namespace's
    /// sockstat (its TCP `alloc` is host-wide); long walks when unreadable.
    static func parallelism(sockstat: String?) -> Int {
        guard let sockstat, let sockets = ProcNetParser.sockstatValue(sockstat, section: "TCP", field: "alloc"),
              sockets < longWalkSockets else { return parallelism }
        return parallelismForShortWalks
    }
    /// Namespaces whose sessions stay open between collections, at most:
    /// 128 × `NamespaceSession.descriptorsPerNamespace` (13) is 1,664
    /// descriptors, which with the agent's own and the sessions being
    /// opened by the workers (16 × 13) stays under 2,048. Fewer when the
    /// open-files limit is lower (see `capacity(openFilesLimit:)`).
    public static let sessionCapacity = 128
    /// Descriptors left for everything but kept sessions: the server's
    /// connections, the sessions the workers open and close, libraries.
    public static let descriptorReserve = 256

    /// The sessions the open-files limit leaves room for, up to `sessionCapacity`.
    public static func capacity(openFilesLimit: UInt64) -> Int {
        let room = Int(min(openFilesLimit, UInt64(Int.max))) - descriptorReserve
            - parallelism * NamespaceSession.descriptorsPerNamespace
        return max(0, min(sessionCapacity, room / NamespaceSession.descriptorsPerNamespace))
    }

    /// What the workers do for each namespace, in the scan's order.
    enum Slot {
        /// Collect through a session kept open.
        case kept(NamespaceSession)
        /// Open a session, collect, and keep it only if room is left.
        case open(NamespaceDiscovery.Sighting)
        /// Report without collecting.
        case unmeasured(NamespaceCollection)
    }

    /// What the workers fill in, each at its own index, and the sessions they
    /// opened and kept.
    final class Results: @unchecked Sendable {
        private let lock = NSLock()
        private var entries: [NamespaceCollection?]
        private(set) var opened: [UInt64: NamespaceSession] = [:]
        private(set) var failed: [UInt64: (info: NetnsInfo, error: String)] = [:]
        private var room: Int
        init(count: Int, room: Int) {
            entries = Array(repeating: nil, count: count)
            self.room = room
        }
        subscript(index: Int) -> NamespaceCollection? {
            get { lock.withLock { entries[index] } }
            set { lock.withLock { entries[index] = newValue } }
        }
        /// Keeps `session` if it is wanted and there is room for one more.
        func keep(_ session: NamespaceSession, wanted: Bool) -> Bool {
            lock.withLock {
                guard wanted, room > 0 else { return false }
                room -= 1
                opened[session.handle.inode] = session
                return true
            }
        }
        func fail(_ inode: UInt64, _ info: NetnsInfo, _ error: String) { lock.withLock { failed[inode] = (info, error) } }
        private var taken = 0
        private var othersStarted = 0
        /// Whether one more namespace outside the host-owned ones may start,
        /// counting it if so: always the first `startedPastAllowance`,
        /// then only while the CPU allowance is not spent.
        func startOther(allowanceSpent: Bool) -> Bool {
            lock.withLock {
                guard !allowanceSpent || othersStarted < AllNamespacesCollector.startedPastAllowance else { return false }
                othersStarted += 1
                return true
            }
        }
        /// The next position in the collection's order for a worker to take.
        func next() -> Int { lock.withLock { taken += 1; return taken - 1 } }
    }

    private let collectors: CollectorSet
    /// What each namespace's session opens: the files `collectors` read.
    private let files: [String]
    private let procfs: ProcFS
    private let cgroups: CgroupResolver?
    private let logger: Logger
    private let capacity: Int
    private let budget: Double
    private let cpuAllowance: Double?
    private let agentUserNamespace: UInt64?
    private let lock = NSLock()
    private var sessions: [UInt64: NamespaceSession] = [:]
    /// Who each namespace seen is, named once: a name must not change
    /// between collections, and naming reads several files.
    private var known: [UInt64: NetnsInfo] = [:]
    /// The namespaces whose sessions should be kept, best ranked first, from the last collection.
    private var preferred: Set<UInt64> = []
    private var failures: [UInt64: (info: NetnsInfo, error: String, at: Double)] = [:]
    /// When each namespace was last collected, and first seen, so those
    /// outside the host-owned ones take turns: the longest unmeasured first,
    /// a new one after those waiting before it.
    private var lastCollected: [UInt64: Double] = [:]
    private var firstSeen: [UInt64: Double] = [:]
    /// Failure reasons already logged, so a host full of pods logs a missing
    /// privilege once, not once per pod and scrape.
    private var loggedReasons: Set<String> = []
    private var loggedUnreadable = false

    /// Each namespace runs `collectors` through its own session.
    /// `openFilesLimit` (the soft RLIMIT_NOFILE) bounds the sessions kept,
    /// and without `keepsSessions` none is kept (one collection only);
    /// `timeBudget` is `AllNamespacesCollector.timeBudget` but in tests.
    /// With `cpuAllowance` (CPU seconds of the whole process, the pacing's
    /// `CollectionPacing.allowance`), a collection that has spent it starts
    /// no further namespace outside the host-owned ones past the first
    /// `startedPastAllowance`: the rest are listed unmeasured and go first
    /// next time.
    public init(collectors: CollectorSet, procfs: ProcFS, cgroups: CgroupResolver?, logger: Logger,
                openFilesLimit: UInt64 = OpenFilesLimit.current, timeBudget: Double = AllNamespacesCollector.timeBudget,
                cpuAllowance: Double? = nil, keepsSessions: Bool = true) {
        self.collectors = collectors
        files = collectors.namespaceFiles
        budget = timeBudget
        self.cpuAllowance = cpuAllowance
        self.procfs = procfs
        self.cgroups = cgroups
        self.logger = logger
        capacity = keepsSessions ? Self.capacity(openFilesLimit: openFilesLimit) : 0
        agentUserNamespace = NetworkNamespaceHandle.ownUserNamespace(procfs: procfs.root)
    }

    public func collect() -> CollectionResult {
        lock.withLock { collectLocked() }
    }

    private func collectLocked() -> CollectionResult {
        let progress = CollectionProgressReporting.current
        progress?.collectorStarted("netns discovery")
        let cpuAtStart = ProcessCPUClock.seconds()
        let scan = NamespaceDiscovery.scan(procfs: procfs)
        let now = Self.monotonicSeconds()
        let seen = Set(scan.sightings.map(\.inode))
        // Gone: closing the session's descriptors lets the kernel free the namespace.
        sessions = sessions.filter { seen.contains($0.key) && preferred.contains($0.key) }
        failures = failures.filter { seen.contains($0.key) }
        known = known.filter { seen.contains($0.key) }
        lastCollected = lastCollected.filter { seen.contains($0.key) }
        firstSeen = firstSeen.filter { seen.contains($0.key) }
        for inode in seen where firstSeen[inode] == nil { firstSeen[inode] = now }
        let conntrackLoaded = ConntrackCollector.loaded(procfs: procfs)
        var slots: [Slot] = []
        for sighting in scan.sightings {
            if let failed = failures[sighting.inode], now - failed.at < Self.retryInterval {
                slots.append(.unmeasured(Self.unmeasured(failed.info, failed.error)))
            } else if let session = sessions[sighting.inode] {
                slots.append(.kept(session))
            } else {
                slots.append(.open(sighting))
            }
        }
        // The namespaces' collections, several at once: each walks the
        // kernel's host-wide socket hash, so wall time grows with namespaces
        // times sockets, and spreading the walks over cores divides it.
        let results = Results(count: slots.count, room: capacity - sessions.count)
        let names = NameBook(known: known, taken: Set(known.values.map(\.name)))
        let width = max(1, min(Self.parallelism(sockstat: try? procfs.netText(.sockstat)), slots.count))
        let work = slots
        let (order, hostOwned) = collectionOrder(scan.sightings)
        Self.onThreads(width) { [self] in
            // Made when this worker first opens a namespace: with every session kept, never.
            var opener: NamespaceOpener?
            defer { opener?.close() }
            while case let position = results.next(), position < order.count {
                let index = order[position]
                // Once per namespace about to start (nil counts it as started);
                // a host-owned one always starts.
                func late() -> String? {
                    position < hostOwned ? nil : lateReason(started: now, cpuAtStart: cpuAtStart, results: results)
                }
                switch work[index] {
                case let .unmeasured(entry): results[index] = entry
                case let .kept(session):
                    results[index] = late().map { Self.unmeasured(session.info, $0, leftOut: true) }
                        ?? collect(session, progress: progress)
                case let .open(sighting):
                    if let late = late() {
                        results[index] = identify(sighting, names: names).map { Self.unmeasured($0, late, leftOut: true) }
                        continue
                    }
                    let usable = opener.flatMap { $0.isUsable ? $0 : nil } ?? NamespaceOpener()
                    opener = usable
                    results[index] = open(sighting, names: names, conntrack: conntrackLoaded, results: results,
                                          opener: usable, progress: progress)
                }
            }
        }
        known = names.known
        for (inode, session) in results.opened { sessions[inode] = session }
        for (inode, failed) in results.failed {
            failures[inode] = (failed.info, failed.error, now)
            logOnce(failed.error, netns: failed.info.name)
        }
        var collected: [NamespaceCollection] = []
        for index in slots.indices {
            guard let entry = results[index] else { continue }
            // A socket left mid-dump may hold stale replies: start afresh next time.
            let broken = entry.outcomes.contains {
                !$0.success && [SockDiagCollector.name, ConntrackCollector.name].contains($0.name)
            }
            if broken || (conntrackLoaded && sessions[entry.netns.inode]?.sockets.conntrack == nil) {
                sessions[entry.netns.inode] = nil
            }
            if entry.report != nil { lastCollected[entry.netns.inode] = now }
            collected.append(entry)
        }
        // Next time, keep the sessions of the best ranked namespaces.
        preferred = capacity == 0 ? [] : Set(NamespaceBudget.ranked(collected).prefix(capacity).map { collected[$0].netns.inode })
        if scan.unreadable > 0, !loggedUnreadable {
            loggedUnreadable = true
            logger.warning("some processes' network namespaces cannot be opened (another user's process needs CAP_SYS_PTRACE; some sandboxes hide pid 1); every other namespace is measured",
                           metadata: ["processes": "\(scan.unreadable)"])
        }
        var result = CollectionResult(namespaces: collected, acrossNamespaces: true, unreadableProcesses: scan.unreadable)
        result.keptSessions = sessions.count
        result.openDescriptors = OpenFilesLimit.openDescriptors(procfs: procfs)
        return result
    }

    /// Why a namespace outside the host-owned ones is not started, or nil
    /// (then it counts as started): not past the time budget, nor past the
    /// CPU allowance once `startedPastAllowance` of them have started (an
    /// unreadable clock spends none).
    private func lateReason(started: Double, cpuAtStart: Double, results: Results) -> String? {
        if Self.monotonicSeconds() - started > budget { return Self.outOfTime }
        let spent = cpuAllowance.map { ProcessCPUClock.seconds() - cpuAtStart > $0 } ?? false
        return results.startOther(allowanceSpent: spent) ? nil : Self.outOfCPU
    }

    /// The order namespaces are collected in, so the time budget and the
    /// CPU allowance leave out a tenant's rather than the host's: the
    /// agent's own and host-owned ones first (bound ones are made by root
    /// tools), the longest uncollected first; then every other, those not
    /// yet named and those in unprivileged users' user namespaces, in turn:
    /// by when each was last collected or, never collected, first seen (and
    /// then before one collected at that time), so a tenant's new namespaces
    /// wait behind its older ones rather than keep them out. Returns the
    /// order and how many at its head are host-owned.
    private func collectionOrder(_ sightings: [NamespaceDiscovery.Sighting]) -> (order: [Int], hostOwned: Int) {
        func hostOwned(_ sighting: NamespaceDiscovery.Sighting) -> Bool {
            sighting.name != nil || known[sighting.inode]?.ownedByHost == true
        }
        let keys = sightings.map { sighting -> (Int, Double, Int) in
            let last = lastCollected[sighting.inode]
            return hostOwned(sighting) ? (0, last ?? 0, 0)
                : (1, last ?? firstSeen[sighting.inode] ?? 0, last == nil ? 0 : 1)
        }
        let order = sightings.indices.sorted { a, b in
            if keys[a] != keys[b] { return keys[a] < keys[b] }
            return a < b
        }
        return (order, keys.filter { $0.0 == 0 }.count)
    }

    /// Who a namespace is, without collecting it (left out for the time
    /// budget); nil when it is gone since the scan.
    private func identify(_ sighting: NamespaceDiscovery.Sighting, names: NameBook) -> NetnsInfo? {
        if let info = names.info(sighting.inode) { return info }
        guard let found = NamespaceDiscovery.open(sighting, procfs: procfs, cgroups: cgroups,
                                                  agentUserNamespace: agentUserNamespace) else { return nil }
        return names.name(found.info)
    }

    /// One namespace's collection through its session's sockets and files.
    private func collect(_ session: NamespaceSession, progress: (any CollectionProgress)?) -> NamespaceCollection {
        let context = CollectionContext(
            procfs: ProcFS(root: procfs.root, netOfCallingThread: true, pinned: session.files),
            sockets: session.sockets, logger: logger)
        // A deadline missed here names the namespace as well as the collector.
        let named = progress.map { NamedProgress(outer: $0, netns: session.info.name) }
        return CollectionProgressReporting.$current.withValue(named) {
            collectors.collect(context, netns: session.info)
        }
    }

    /// Opens a namespace not kept open, collects it, and keeps its session
    /// if there is room; nil when it is gone since the scan.
    private func open(_ sighting: NamespaceDiscovery.Sighting, names: NameBook, conntrack: Bool, results: Results,
                      opener: NamespaceOpener, progress: (any CollectionProgress)?) -> NamespaceCollection? {
        progress?.collectorStarted("netns opening \(sighting.name ?? sighting.path)")
        guard let found = NamespaceDiscovery.open(sighting, procfs: procfs, cgroups: cgroups,
                                                  agentUserNamespace: agentUserNamespace,
                                                  known: names.info(sighting.inode)) else { return nil }
        let info = names.name(found.info)
        do {
            let session = try NamespaceSession.open(found, info: info, procfs: procfs.root, conntrack: conntrack,
                                                    files: files,
                                                    opener: opener)
            let entry = collect(session, progress: progress)
            // The first collection keeps whatever fits; later ones the best ranked.
            _ = results.keep(session, wanted: preferred.isEmpty || preferred.contains(sighting.inode))
            return entry
        } catch {
            results.fail(sighting.inode, info, "\(error)")
            return Self.unmeasured(info, "\(error)")
        }
    }

    /// `leftOut`: not collected this time for the time budget or the CPU allowance.
    static func unmeasured(_ info: NetnsInfo, _ error: String, leftOut: Bool = false) -> NamespaceCollection {
        NamespaceCollection(netns: info, report: nil,
                            outcomes: [CollectorOutcome(name: NetnsInfo.enteringCollector, seconds: 0, error: error)],
                            leftOut: leftOut)
    }

    /// One warning per distinct reason (the path stripped), naming the first namespace it hit.
    private func logOnce(_ reason: String, netns: String) {
        guard loggedReasons.insert(NamespaceBudget.reason(reason)).inserted else {
            logger.debug("network namespace not measured", metadata: ["netns": "\(netns)", "error": "\(reason)"])
            return
        }
        logger.warning("network namespace not measured; others with the same cause are not logged again",
                       metadata: ["netns": "\(netns)", "error": "\(reason)"])
    }

    static func monotonicSeconds() -> Double { CollectorSet.monotonicSeconds() }

    /// Runs `body` on `count` threads of its own and waits for all. Not
    /// Dispatch's concurrentPerform, which runs no more at once than there
    /// are cores: `parallelism` wants more, so that a core is not left idle
    /// while one worker waits.
    static func onThreads(_ count: Int, _ body: @escaping @Sendable () -> Void) {
        let done = DispatchGroup()
        for _ in 0..<count {
            done.enter()
            let thread = Thread {
                body()
                done.leave()
            }
            thread.name = "portbudget-netns-worker"
            thread.start()
        }
        done.wait()
    }

    /// The namespaces' names, shared by the workers: each new one is made
    /// unique once and remembered.
    final class NameBook: @unchecked Sendable {
        private let lock = NSLock()
        private(set) var known: [UInt64: NetnsInfo]
        private(set) var taken: Set<String>
        init(known: [UInt64: NetnsInfo], taken: Set<String>) {
            self.known = known
            self.taken = taken
        }
        func info(_ inode: UInt64) -> NetnsInfo? { lock.withLock { known[inode] } }
        func name(_ found: NetnsInfo) -> NetnsInfo {
            lock.withLock {
                if let named = known[found.inode] { return named }
                var info = found
                info.name = NamespaceDiscovery.unique(found, taken: taken)
                taken.insert(info.name)
                known[found.inode] = info
                return info
            }
        }
    }
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

    /// The soft RLIMIT_NOFILE in force.
    public static var current: UInt64 {
        var limit = rlimit()
        return getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 ? UInt64(limit.rlim_cur) : 1024
    }

    /// Descriptors this process holds now (entries of /proc/self/fd), or nil when unreadable.
    public static func openDescriptors(procfs: ProcFS) -> Int? {
        DirectoryEntries.list(procfs.root + "/self/fd").map { $0.count }
    }
}

import Logging
import PortBudgetCore
import ServiceLifecycle

/// `portbudget textfile`: collects and rewrites DIR/portbudget.prom every
/// interval until graceful shutdown. A write in progress when SIGTERM
/// arrives finishes first; the file is never left half-written.
///
/// A collection that misses its deadline (`CollectionRunner`) skips that
/// write with a logged error, and the interval keeps its rhythm; while it
/// stays stuck, each tick skips at once without starting another. SIGTERM
/// does not wait for a stuck collection. A write whose collection cost more
/// CPU than `pacing` allows starts the next one later, and says so once.
public struct TextfileService: Service {
    public typealias Collect = @Sendable () -> CollectionResult

    private let writer: TextfileWriter
    private let interval: Duration
    /// Nil: every interval, and the file says nothing of what a collection cost.
    private let pacing: CollectionPacing?
    private let top: Int
    private let version: String
    private let budget: NamespaceBudget
    private let logger: Logger
    private let runner: CollectionRunner
    private let observers: [any CollectionObserver]

    /// `deadline`: how long a collection may take before its write is
    /// skipped (`CollectionResult.deadline`; tests shorten it). `observers`
    /// learn each collection and may add families to the file, as they do
    /// to `serve`'s exposition. `pacing` (`--all-namespaces`): collections
    /// spaced to fit its CPU budget, and the file says what each cost.
    public init(writer: TextfileWriter, interval: Duration, pacing: CollectionPacing? = nil, top: Int, version: String,
                budget: NamespaceBudget = NamespaceBudget(), deadline: Duration = CollectionResult.deadline,
                collectorNames: [String] = [], observers: [any CollectionObserver] = [], logger: Logger,
                collect: @escaping Collect) {
        self.writer = writer
        self.observers = observers
        self.interval = interval
        self.pacing = pacing
        self.top = top
        self.version = version
        self.budget = budget
        self.logger = logger
        self.runner = CollectionRunner(deadline: deadline, collectorNames: collectorNames, collect: collect)
    }

    /// One collection written out. Throws `TextfileError` when the file could
    /// not be written, `CollectionRunner.Overdue` (nothing written) when the
    /// collection missed its deadline, `CancellationError` on shutdown.
    public func writeOnce() async throws {
        _ = try await write(cpuAtStart: nil)
    }

    /// Writes one collection. Given the process's CPU clock at its start
    /// (`run`'s paced writes, with `--all-namespaces`), the file also says
    /// what the collection cost and when the next starts; that CPU is returned.
    private func write(cpuAtStart: Double?) async throws -> Double? {
        let started = ContinuousClock.now
        let collection: CollectionResult
        switch try await runner.run() {
        case .finished(let finished): collection = finished
        case .overdue(_, let overdue): throw overdue
        }
        // The agent's own namespace's failures; other namespaces' are in the file and logged once by the collectors.
        for namespace in collection.namespaces where !collection.acrossNamespaces || namespace.netns.name == NetnsInfo.ownName {
            for failed in namespace.outcomes where !failed.success {
                logger.warning("collector failed", metadata: ["collector": "\(failed.name)", "error": "\(failed.error ?? "")"])
            }
        }
        var text = await MetricsExposition.render(collection, top: top, version: version, budget: budget, observers: observers)
        guard let cpuAtStart, let pacing else {
            try writer.write(text)
            return nil
        }
        let cpu = ProcessCPUClock.seconds() - cpuAtStart
        let gap = pacing.gap(interval: interval.inSeconds, cpuSeconds: cpu)
        var gauges = ExpositionWriter()
        gauges.pacing(cpuSeconds: cpu, intervalSeconds: max(gap, (ContinuousClock.now - started).inSeconds))
        text += gauges.text
        try writer.write(text)
        return cpu
    }

    public func run() async throws {
        logger.info("writing textfile", metadata: ["path": "\(writer.path)", "interval": "\(interval)"])
        let clock = ContinuousClock()
        try await cancelWhenGracefulShutdown { [self] in
            do {
                var spacedOut = false
                while true {
                    let start = clock.now
                    let cpuAtStart = ProcessCPUClock.seconds()
                    var measured: Double?
                    do {
                        measured = try await write(cpuAtStart: cpuAtStart)
                    } catch let error as TextfileError {
                        // Keep going: a full disk may clear up. node_exporter's
                        // node_textfile_mtime_seconds shows the file going stale.
                        logger.error("textfile not written", metadata: ["error": "\(error)"])
                    } catch let error as CollectionRunner.Overdue {
                        // The old file stays; its mtime shows it going stale.
                        logger.error("textfile not written", metadata: ["error": "\(error)"])
                    }
                    // A write that failed still cost its collection's CPU.
                    let cpu = measured ?? ProcessCPUClock.seconds() - cpuAtStart
                    let next = (pacing ?? .unbounded).gap(interval: interval.inSeconds, cpuSeconds: cpu)
                    if (next > interval.inSeconds) != spacedOut {
                        spacedOut.toggle()
                        logger.notice(spacedOut ? "writes spaced out: a collection costs more CPU than --collection-cpu-budget allows"
                                                : "writes back to every interval",
                                      metadata: ["cpu_seconds": "\(cpu)", "next_in_seconds": "\(next)"])
                    }
                    try await Task.sleep(until: start + .seconds(next), clock: clock)
                }
            } catch is CancellationError {
                return
            }
        }
        logger.info("stopped")
    }
}

import PortBudgetCore
import ServiceLifecycle

/// Collects one collection at a time: a scrape that arrives while a
/// collection runs waits for it and gets the same result, so concurrent
/// scrapers never multiply the SOCK_DIAG dumps.
///
/// `.perScrape` (one namespace): there is no timer and no cache — a scrape
/// that arrives after a collection finished starts a new one, so nothing
/// served is older than the request. `.background` (every namespace, where
/// a collection can take seconds): the coordinator, run as a service,
/// collects on its own interval and a scrape answers at once from the
/// latest complete collection, with its age and duration — what the
/// exporter guidelines allow when a collection is too expensive for a scrape.
///
/// The blocking collection runs on a thread of its own (`CollectionRunner`),
/// never on an event loop, and is waited for at most `deadline`: then the
/// scrape is answered with the stuck collector failed. While that collection
/// is still stuck, every scrape gets the same answer at once and no second
/// collection starts. Nothing waits for a stuck collection at shutdown.
public actor ScrapeCoordinator: Service {
    public typealias Collect = @Sendable () -> CollectionResult

    /// When collections run.
    public enum Freshness: Sendable, Equatable {
        /// One per scrape (shared by scrapes that overlap).
        case perScrape
        /// One every `interval`, from the start of one to the start of the
        /// next, or right after one that took longer; further apart when
        /// one costs more CPU than `pacing` allows.
        case background(interval: Duration, pacing: CollectionPacing = .unbounded)
    }

    private let runner: CollectionRunner
    private let top: Int
    private let version: String
    private let observers: [any CollectionObserver]
    private let budget: NamespaceBudget
    public let freshness: Freshness
    private var inFlight: Task<Scrape, any Error>?
    /// The answer given when the deadline passed, repeated while that collection is still stuck.
    private var overdueAnswer: Scrape?

    /// The most recent collection, for services that run beside the server.
    public private(set) var latest: Scrape?
    /// How many collections ran (an answer repeated for a stuck collection is not a new one).
    public private(set) var collections = 0
    /// When the latest collection finished, how long it took, and the
    /// agent's CPU time meanwhile (which sets the gap to the next).
    private var latestTiming: (finished: ContinuousClock.Instant, seconds: Double, cpuSeconds: Double)?

    /// `deadline`: how long a collection may take before the scrape is
    /// answered without it (`CollectionResult.deadline`; tests shorten it).
    /// `observers` learn each collection and may add families to its exposition.
    public init(top: Int, version: String, observers: [any CollectionObserver] = [],
                deadline: Duration = CollectionResult.deadline, collectorNames: [String] = [],
                freshness: Freshness = .perScrape, budget: NamespaceBudget = NamespaceBudget(),
                collect: @escaping Collect) {
        self.top = top
        self.version = version
        self.observers = observers
        self.freshness = freshness
        self.budget = budget
        self.runner = CollectionRunner(deadline: deadline, collectorNames: collectorNames, collect: collect)
    }

    /// The collection in flight, or a new one; in the background, the
    /// latest complete one (the first is waited for). Throws only when the
    /// calling task is cancelled or its service group shuts down (the process
    /// is stopping); the collection itself is never waited for past the deadline.
    public func scrape() async throws -> Scrape {
        if case .background = freshness, let latest {
            return aged(latest)
        }
        let scrape = try await OneShot.value(of: collectionTask())
        if case .background = freshness { return aged(scrape) }
        return scrape
    }

    /// Runs the background collections until graceful shutdown; returns at
    /// once for `.perScrape`, which needs no service.
    public func run() async throws {
        guard case let .background(interval, pacing) = freshness else { return }
        let clock = ContinuousClock()
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                let start = clock.now
                _ = try await OneShot.value(of: self.collectionTask())
                let cpu = await self.latestTiming?.cpuSeconds ?? 0
                try await Task.sleep(until: start + .seconds(pacing.gap(interval: interval.inSeconds, cpuSeconds: cpu)), clock: clock)
            }
        }
    }

    /// The collection in flight, or a new one started.
    private func collectionTask() -> Task<Scrape, any Error> {
        if let inFlight { return inFlight }
        // Detached, so it does not inherit the first caller's graceful
        // shutdown: the scrapers sharing it each stop waiting on their own.
        // It runs on this actor, which is busy until `inFlight` is set.
        let task = Task.detached { try await self.collectAndRender() }
        inFlight = task
        return task
    }

    /// A background answer with how old its collection is now, and how long it took.
    private func aged(_ scrape: Scrape) -> Scrape {
        guard let timing = latestTiming, case let .background(interval, pacing) = freshness else { return scrape }
        var writer = ExpositionWriter()
        writer.single("portbudget_collection_age_seconds", .gauge,
                      help: "Seconds since the collection served here finished: across every namespace, collections run in the background every --collection-interval and a scrape answers from the latest complete one, as collecting per scrape would be too slow.",
                      (ContinuousClock.now - timing.finished).inSeconds)
        writer.single("portbudget_collection_duration_seconds", .gauge,
                      help: "How long the collection served here took.", timing.seconds)
        let gap = pacing.gap(interval: interval.inSeconds, cpuSeconds: timing.cpuSeconds)
        writer.pacing(cpuSeconds: timing.cpuSeconds, intervalSeconds: max(gap, timing.seconds))
        return Scrape(collection: scrape.collection, exposition: scrape.exposition + writer.text, sequence: scrape.sequence)
    }

    private func collectAndRender() async throws -> Scrape {
        defer { inFlight = nil }
        let started = ContinuousClock.now
        let cpuAtStart = ProcessCPUClock.seconds()
        let outcome = try await runner.run()
        if case .overdue(_, let overdue) = outcome, overdue.earlierStillRunning, let overdueAnswer {
            return overdueAnswer
        }
        let collection = outcome.collection
        collections += 1
        let exposition = await MetricsExposition.render(collection, top: top, version: version, budget: budget,
                                                        observers: observers)
        let scrape = Scrape(collection: collection, exposition: exposition, sequence: collections)
        latest = scrape
        let took = ContinuousClock.now - started
        latestTiming = (ContinuousClock.now, took.inSeconds, ProcessCPUClock.seconds() - cpuAtStart)
        if case .overdue = outcome { overdueAnswer = scrape } else { overdueAnswer = nil }
        return scrape
    }
}

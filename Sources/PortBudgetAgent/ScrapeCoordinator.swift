import PortBudgetCore

/// Collects on demand, one collection at a time: a scrape that arrives while
/// a collection runs waits for it and gets the same result, so concurrent
/// scrapers never multiply the SOCK_DIAG dumps. There is no timer and no
/// cache: a scrape that arrives after a collection finished starts a new one,
/// so nothing served is older than the request.
///
/// The blocking collection runs on a thread of its own (`CollectionRunner`),
/// never on an event loop, and is waited for at most `deadline`: then the
/// scrape is answered with the stuck collector failed. While that collection
/// is still stuck, every scrape gets the same answer at once and no second
/// collection starts. Nothing waits for a stuck collection at shutdown.
public actor ScrapeCoordinator {
    public typealias Collect = @Sendable () -> CollectionResult

    private let runner: CollectionRunner
    private let top: Int
    private let version: String
    private let observers: [any CollectionObserver]
    private var inFlight: Task<Scrape, any Error>?
    /// The answer given when the deadline passed, repeated while that collection is still stuck.
    private var overdueAnswer: Scrape?

    /// The most recent collection, for services that run beside the server.
    public private(set) var latest: Scrape?
    /// How many collections ran (an answer repeated for a stuck collection is not a new one).
    public private(set) var collections = 0

    /// `deadline`: how long a collection may take before the scrape is
    /// answered without it (`CollectionResult.deadline`; tests shorten it).
    /// `observers` learn each collection and may add families to its exposition.
    public init(top: Int, version: String, observers: [any CollectionObserver] = [],
                deadline: Duration = CollectionResult.deadline, collectorNames: [String] = [],
                collect: @escaping Collect) {
        self.top = top
        self.version = version
        self.observers = observers
        self.runner = CollectionRunner(deadline: deadline, collectorNames: collectorNames, collect: collect)
    }

    /// The collection in flight, or a new one. Throws only when the calling
    /// task is cancelled or its service group shuts down (the process is
    /// stopping); the collection itself is never waited for past the deadline.
    public func scrape() async throws -> Scrape {
        let task: Task<Scrape, any Error>
        if let inFlight {
            task = inFlight
        } else {
            // Detached, so it does not inherit the first caller's graceful
            // shutdown: the scrapers sharing it each stop waiting on their own.
            // It runs on this actor, which is busy until `inFlight` is set.
            task = Task.detached { try await self.collectAndRender() }
            inFlight = task
        }
        return try await OneShot.value(of: task)
    }

    private func collectAndRender() async throws -> Scrape {
        defer { inFlight = nil }
        let outcome = try await runner.run()
        if case .overdue(_, let overdue) = outcome, overdue.earlierStillRunning, let overdueAnswer {
            return overdueAnswer
        }
        let collection = outcome.collection
        collections += 1
        var writer = ExpositionWriter()
        MetricsExposition.write(collection, top: top, version: version, into: &writer)
        for observer in observers { await observer.collected(collection, writer: &writer) }
        let scrape = Scrape(collection: collection, exposition: writer.text, sequence: collections)
        latest = scrape
        if case .overdue = outcome { overdueAnswer = scrape } else { overdueAnswer = nil }
        return scrape
    }
}

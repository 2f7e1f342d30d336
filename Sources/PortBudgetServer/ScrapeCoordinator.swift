import NIOPosix
import PortBudgetCore

/// Collects on demand, one collection at a time: a scrape that arrives while
/// a collection runs waits for it and gets the same result, so concurrent
/// scrapers never multiply the SOCK_DIAG dumps. There is no timer and no
/// cache: a scrape that arrives after a collection finished starts a new one,
/// so nothing served is older than the request.
///
/// The blocking collection runs on a thread pool, never on an event loop.
public actor ScrapeCoordinator {
    public typealias Collect = @Sendable () -> CollectionResult

    private let collect: Collect
    private let top: Int
    private let version: String
    private let hooks: [any CollectionHook]
    private let threadPool: NIOThreadPool
    private var inFlight: Task<Scrape, any Error>?

    /// The most recent collection, for services that run beside the server.
    public private(set) var latest: Scrape?
    /// How many collections ran.
    public private(set) var collections = 0

    public init(top: Int, version: String, hooks: [any CollectionHook] = [],
                threadPool: NIOThreadPool = .singleton, collect: @escaping Collect) {
        self.top = top
        self.version = version
        self.hooks = hooks
        self.threadPool = threadPool
        self.collect = collect
    }

    /// The collection in flight, or a new one. Throws only when the thread
    /// pool is shut down (the process is stopping).
    public func scrape() async throws -> Scrape {
        if let inFlight { return try await inFlight.value }
        // The task inherits this actor, so `inFlight` is set before it can run.
        let task = Task { try await self.collectAndRender() }
        inFlight = task
        return try await task.value
    }

    private func collectAndRender() async throws -> Scrape {
        defer { inFlight = nil }
        let collection = try await threadPool.runIfActive(collect)
        collections += 1
        var writer = ExpositionWriter()
        MetricsExposition.write(collection, top: top, version: version, into: &writer)
        for hook in hooks { await hook.collected(collection, writer: &writer) }
        let scrape = Scrape(collection: collection, exposition: writer.text, sequence: collections)
        latest = scrape
        return scrape
    }
}

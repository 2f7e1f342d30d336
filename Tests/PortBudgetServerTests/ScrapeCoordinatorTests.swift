import Foundation
import Glibc
import Logging
import PortBudgetAgent
import PortBudgetCore
import PortBudgetServer
import ServiceLifecycle
import XCTest
#if canImport(Glibc)
#endif

final class ScrapeCoordinatorTests: XCTestCase {
    func testConcurrentScrapesShareOneCollection() async throws {
        let collector = SyntheticCollector(delay: 0.5)
        let coordinator = ScrapeCoordinator(top: 20, version: "test") { collector.collect() }
        let scrapes = try await withThrowingTaskGroup(of: Scrape.self) { group in
            for _ in 0..<50 { group.addTask { try await coordinator.scrape() } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        XCTAssertEqual(scrapes.count, 50)
        XCTAssertLessThan(collector.collections, 50)
        XCTAssertLessThanOrEqual(collector.collections, 5, "50 scrapes arriving within one 0.5 s collection")
        XCTAssertEqual(Set(scrapes.map(\.sequence)).count, collector.collections)
        let expected = MetricsExposition.render(SyntheticCollector.collection(), top: 20, version: "test")
        XCTAssertTrue(scrapes.allSatisfy { $0.exposition == expected })
    }

    /// No cache: each scrape after the last one finished measures again.
    func testSequentialScrapesCollectEachTime() async throws {
        let collector = SyntheticCollector()
        let coordinator = ScrapeCoordinator(top: 20, version: "test") { collector.collect() }
        for expected in 1...3 {
            let scrape = try await coordinator.scrape()
            XCTAssertEqual(scrape.sequence, expected)
        }
        XCTAssertEqual(collector.collections, 3)
        let latest = await coordinator.latest
        XCTAssertEqual(latest?.sequence, 3)
    }

    /// The extension point for the alert evaluator: one call per collection,
    /// and its families land in the exposition after the standard ones.
    func testHooksSeeEachCollectionOnceAndAddFamilies() async throws {
        final class Hook: CollectionObserver, @unchecked Sendable {
            let lock = NSLock()
            var calls = 0
            func collected(_ collection: CollectionResult, writer: inout ExpositionWriter) async {
                let n = lock.withLock { calls += 1; return calls }
                XCTAssertTrue(writer.familyNames.contains("portbudget_tcp_groups"))
                writer.family("portbudget_test_hook_calls", .counter, help: "Hook calls.", [.init([], n)])
            }
        }
        let hook = Hook()
        let collector = SyntheticCollector(delay: 0.2)
        let coordinator = ScrapeCoordinator(top: 20, version: "test", observers: [hook]) { collector.collect() }
        async let a = coordinator.scrape()
        async let b = coordinator.scrape()
        let (first, second) = try await (a, b)
        XCTAssertEqual(hook.calls, collector.collections)
        XCTAssertTrue(first.exposition.hasSuffix("portbudget_test_hook_calls \(first.sequence)\n"))
        XCTAssertTrue(second.exposition.hasSuffix("portbudget_test_hook_calls \(second.sequence)\n"))
    }
}

/// Background collections against the CPU budget, with collections that
/// really spend CPU: spaced out when they cost more than it allows, every
/// interval without it, and the scrape says how far apart and at what cost.
final class CollectionPacingCoordinatorTests: XCTestCase {
    /// A collection that spins on its thread for `cpu` seconds of CPU time.
    final class SpinningCollector: @unchecked Sendable {
        private let lock = NSLock()
        private var count = 0
        let cpu: Double
        init(cpu: Double) { self.cpu = cpu }
        var collections: Int { lock.withLock { count } }

        func collect() -> CollectionResult {
            lock.withLock { count += 1 }
            let start = Self.threadCPU()
            while Self.threadCPU() - start < cpu {}
            return SyntheticCollector.collection()
        }

        static func threadCPU() -> Double {
            var now = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
            return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
        }
    }

    /// Collections in `seconds` of background running, and the last scrape.
    func run(_ pacing: CollectionPacing, cpu: Double, seconds: Double) async throws -> (collections: Int, scrape: Scrape) {
        let collector = SpinningCollector(cpu: cpu)
        let coordinator = ScrapeCoordinator(top: 20, version: "test",
                                            freshness: .background(interval: .milliseconds(10), pacing: pacing)) {
            collector.collect()
        }
        let background = Task { try await coordinator.run() }
        try await Task.sleep(for: .seconds(seconds))
        background.cancel()
        let scrape = try await coordinator.scrape()
        return (collector.collections, scrape)
    }

    func value(_ text: String, _ name: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ")[1]) }
    }

    func testCostlyCollectionsAreSpacedToFitTheBudget() async throws {
        // 50 ms of CPU each against a tenth of a CPU: one every 0.5 s at most.
        let (collections, scrape) = try await run(CollectionPacing(cpuBudget: 0.1), cpu: 0.05, seconds: 1.6)
        XCTAssertGreaterThanOrEqual(collections, 2, "the first collection and the one after its gap")
        XCTAssertLessThanOrEqual(collections, 4, "1.6 s at one collection per 0.5 s or more")
        let cpu = try XCTUnwrap(value(scrape.exposition, "portbudget_collection_cpu_seconds"))
        let gap = try XCTUnwrap(value(scrape.exposition, "portbudget_collection_interval_seconds"))
        XCTAssertGreaterThanOrEqual(cpu, 0.05)
        XCTAssertEqual(gap, cpu / 0.1, accuracy: 1e-6, "the gap is the collection's CPU over the budget")
        XCTAssertNotNil(value(scrape.exposition, "portbudget_collection_duration_seconds"))
    }

    /// The textfile loop under the same budget: writes spaced out, a line
    /// logged once when they are, and every interval without a budget.
    func testTextfileWritesAreSpacedToFitTheBudget() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pbpaced-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        func writes(_ pacing: CollectionPacing) async throws -> (collections: Int, log: [String]) {
            let collector = SpinningCollector(cpu: 0.05)
            let log = CapturedLog()
            let logger = log.logger
            let service = TextfileService(writer: TextfileWriter(directory: directory.path), interval: .milliseconds(10),
                                          pacing: pacing, top: 20, version: "test", logger: logger) { collector.collect() }
            let group = ServiceGroup(configuration: .init(services: [service], logger: logger))
            let run = Task { try await group.run() }
            try await Task.sleep(for: .seconds(1.6))
            await group.triggerGracefulShutdown()
            try await run.value
            return (collector.collections, log.lines.map(\.message))
        }
        let paced = try await writes(CollectionPacing(cpuBudget: 0.1))
        XCTAssertGreaterThanOrEqual(paced.collections, 2)
        XCTAssertLessThanOrEqual(paced.collections, 4, "1.6 s at one write per 0.5 s or more")
        XCTAssertEqual(paced.log.filter { $0.hasPrefix("writes spaced out") }.count, 1, paced.log.joined(separator: "\n"))
        let file = try String(contentsOfFile: TextfileWriter(directory: directory.path).path, encoding: .utf8)
        XCTAssertGreaterThanOrEqual(value(file, "portbudget_collection_interval_seconds") ?? 0, 0.5,
                                    "the file says when the next write comes")
        XCTAssertGreaterThanOrEqual(value(file, "portbudget_collection_cpu_seconds") ?? 0, 0.05)
        let unpaced = try await writes(.unbounded)
        XCTAssertGreaterThanOrEqual(unpaced.collections, 5)
        XCTAssertFalse(unpaced.log.contains { $0.hasPrefix("writes spaced out") })
    }

    func testWithoutABudgetCollectionsKeepTheInterval() async throws {
        let (collections, scrape) = try await run(.unbounded, cpu: 0.05, seconds: 1.6)
        XCTAssertGreaterThanOrEqual(collections, 5, "one every 50 ms of spinning, back to back")
        let took = try XCTUnwrap(value(scrape.exposition, "portbudget_collection_duration_seconds"))
        XCTAssertEqual(value(scrape.exposition, "portbudget_collection_interval_seconds"), max(0.01, took),
                       "back to back: each collection's own duration")
    }
}

/// A collection that really blocks — the way a read on a hung mount does —
/// in the sockdiag collector, after sysctl succeeded, until released.
final class StuckCollector: @unchecked Sendable {
    /// The agent's collectors in their order, as `serve` hands them to the coordinator.
    static let collectorNames = ["sysctl", "sockdiag", "sockstat", "snmp", "netstat", "conntrack"]

    private let lock = NSLock()
    private var count = 0
    private var released = false
    private let gate = DispatchSemaphore(value: 0)

    var collections: Int { lock.withLock { count } }

    func collect() -> CollectionResult {
        let stick = lock.withLock { count += 1; return !released }
        let progress = CollectionProgressReporting.current
        progress?.collectorStarted("sysctl")
        progress?.collectorFinished(CollectorOutcome(name: "sysctl", seconds: 0.001, error: nil))
        progress?.collectorStarted("sockdiag")
        if stick { gate.wait() }
        return SyntheticCollector.collection()
    }

    /// Lets the stuck collection finish; later ones do not block.
    func release() {
        let wasStuck = lock.withLock { defer { released = true }; return !released }
        if wasStuck { gate.signal() }
    }
}

/// The collection deadline: a stuck collection answers at the deadline,
/// never piles up threads, and never holds shutdown. Each test takes a few seconds.
final class CollectionDeadlineTests: XCTestCase {
    let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    func testAStuckCollectionIsAnsweredAtTheDeadlineAndNotStartedTwice() async throws {
        let stuck = StuckCollector()
        defer { stuck.release() }
        let coordinator = ScrapeCoordinator(top: 20, version: "test", deadline: .seconds(1),
                                            collectorNames: StuckCollector.collectorNames) { stuck.collect() }
        var started = Date()
        let first = try await coordinator.scrape()
        let waited = Date().timeIntervalSince(started)
        XCTAssertGreaterThanOrEqual(waited, 0.9, "answered before the deadline")
        XCTAssertLessThan(waited, 3, "not answered at the deadline")
        XCTAssertNil(first.collection.namespaces[0].report)
        XCTAssertTrue(first.exposition.contains("portbudget_build_info{version=\"test\"} 1\n"), first.exposition)
        XCTAssertTrue(first.exposition.contains("portbudget_scrape_collector_success{collector=\"sysctl\"} 1\n"))
        XCTAssertTrue(first.exposition.contains("portbudget_scrape_collector_success{collector=\"sockdiag\"} 0\n"),
                      first.exposition)
        XCTAssertTrue(first.exposition.contains("portbudget_scrape_collector_success{collector=\"netstat\"} 0\n"),
                      "not reached, so its metrics are absent too")
        XCTAssertFalse(first.exposition.contains("portbudget_tcp_groups"), "no census may be claimed")
        XCTAssertEqual(first.collection.namespaces[0].outcomes.first { $0.name == "sockdiag" }?.error, "did not finish within 1 s")

        // Still stuck: answered at once, the same failure, and no second collection.
        for _ in 0..<3 {
            started = Date()
            let again = try await coordinator.scrape()
            XCTAssertLessThan(Date().timeIntervalSince(started), 0.5)
            XCTAssertEqual(again.exposition, first.exposition)
            XCTAssertEqual(again.sequence, first.sequence)
        }
        XCTAssertEqual(stuck.collections, 1, "a second collection started beside the stuck one")

        // Once it finishes, the next scrape measures again.
        stuck.release()
        let deadline = Date().addingTimeInterval(5)
        var fresh = try await coordinator.scrape()
        while fresh.collection.namespaces[0].report == nil && Date() < deadline {
            try await Task.sleep(for: .milliseconds(50))
            fresh = try await coordinator.scrape()
        }
        XCTAssertNotNil(fresh.collection.namespaces[0].report)
        XCTAssertEqual(stuck.collections, 2)
        XCTAssertTrue(fresh.exposition.contains("portbudget_scrape_collector_success{collector=\"sockdiag\"} 1\n"))
    }

    /// The alert evaluator scrapes from its service: SIGTERM (graceful
    /// shutdown) must not wait for the stuck read, however long the deadline.
    func testGracefulShutdownDoesNotWaitForAStuckCollection() async throws {
        struct Scraper: Service {
            let coordinator: ScrapeCoordinator
            let scraping: AsyncStream<Void>.Continuation
            func run() async throws {
                scraping.yield()
                _ = try? await coordinator.scrape()
            }
        }
        let stuck = StuckCollector()
        defer { stuck.release() }
        let coordinator = ScrapeCoordinator(top: 20, version: "test", deadline: .seconds(60)) { stuck.collect() }
        let (scraping, signal) = AsyncStream<Void>.makeStream()
        let group = ServiceGroup(configuration: .init(
            services: [Scraper(coordinator: coordinator, scraping: signal)], logger: logger))
        let run = Task { try await group.run() }
        var iterator = scraping.makeAsyncIterator()
        _ = await iterator.next()
        try await Task.sleep(for: .milliseconds(200))
        XCTAssertEqual(stuck.collections, 1)
        let started = Date()
        await group.triggerGracefulShutdown()
        try await run.value
        XCTAssertLessThan(Date().timeIntervalSince(started), 2, "shutdown waited for the stuck collection")
    }

    /// `serve` as a whole: a /metrics request waiting on a stuck collection
    /// and the evaluator-like scraper do not hold SIGTERM past the server's grace.
    func testServeStopsWithinItsGraceWhileAScrapeIsStuck() async throws {
        struct Scraper: Service {
            let coordinator: ScrapeCoordinator
            /// Like the alert evaluator: a scrape that throws (shutdown) ends the loop.
            func run() async throws {
                while !Task.isShuttingDownGracefully {
                    do { _ = try await coordinator.scrape() } catch { return }
                }
            }
        }
        let stuck = StuckCollector()
        defer { stuck.release() }
        let coordinator = ScrapeCoordinator(top: 20, version: "test", deadline: .seconds(60)) { stuck.collect() }
        var configuration = MetricsServer.Configuration(listen: ListenAddress(host: "127.0.0.1", port: 0))
        configuration.shutdownGrace = .seconds(1)
        let server = try await MetricsServer.bind(configuration, coordinator: coordinator, logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: [server, Scraper(coordinator: coordinator)], logger: logger))
        let run = Task { try await group.run() }
        let client = RawHTTPClient(port: server.localAddress.port!)
        let waiting = try client.connect()
        defer { close(waiting) }
        try RawHTTPClient.send(waiting, RawHTTPClient.request("GET", "/metrics"))
        try await Task.sleep(for: .milliseconds(300))
        XCTAssertEqual(stuck.collections, 1, "the request and the scraper share the one stuck collection")
        let started = Date()
        await group.triggerGracefulShutdown()
        try await run.value
        XCTAssertLessThan(Date().timeIntervalSince(started), 3, "shutdown waited for the stuck collection")
    }

    func testACancelledScraperStopsWaitingAtOnce() async throws {
        let stuck = StuckCollector()
        defer { stuck.release() }
        let coordinator = ScrapeCoordinator(top: 20, version: "test", deadline: .seconds(60)) { stuck.collect() }
        let scraper = Task { try await coordinator.scrape() }
        try await Task.sleep(for: .milliseconds(200))
        let started = Date()
        scraper.cancel()
        let result = await scraper.result
        XCTAssertLessThan(Date().timeIntervalSince(started), 1)
        XCTAssertThrowsError(try result.get()) { XCTAssertTrue($0 is CancellationError, "\($0)") }
    }

    func testTextfileSkipsWritesWhileStuckKeepsItsIntervalAndStopsOnShutdown() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pbstuck-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let writer = TextfileWriter(directory: directory.path)
        let stuck = StuckCollector()
        defer { stuck.release() }
        let service = TextfileService(writer: writer, interval: .milliseconds(500), top: 20, version: "test",
                                      deadline: .milliseconds(300), logger: logger) { stuck.collect() }

        // --once: the stuck collection is an error naming the collector, and nothing is written.
        var started = Date()
        do {
            try await service.writeOnce()
            XCTFail("a stuck collection was written")
        } catch let overdue as CollectionRunner.Overdue {
            XCTAssertEqual("\(overdue)", "collection did not finish within 0.3 s (stuck in sockdiag)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 2)
        XCTAssertFalse(FileManager.default.fileExists(atPath: writer.path))

        // The loop keeps ticking without starting a second collection, then writes once it is unstuck.
        let group = ServiceGroup(configuration: .init(services: [service], logger: logger))
        let run = Task { try await group.run() }
        try await Task.sleep(for: .milliseconds(1200))
        XCTAssertEqual(stuck.collections, 1, "a second collection started beside the stuck one")
        XCTAssertFalse(FileManager.default.fileExists(atPath: writer.path))
        stuck.release()
        let deadline = Date().addingTimeInterval(5)
        while !FileManager.default.fileExists(atPath: writer.path) && Date() < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        let text = try String(contentsOfFile: writer.path, encoding: .utf8)
        XCTAssertTrue(text.contains("portbudget_scrape_collector_success{collector=\"sockdiag\"} 1\n"), text)
        started = Date()
        await group.triggerGracefulShutdown()
        try await run.value
        XCTAssertLessThan(Date().timeIntervalSince(started), 2)
    }

    func testShutdownOfTextfileDoesNotWaitForAStuckCollection() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pbstuck-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let stuck = StuckCollector()
        defer { stuck.release() }
        let service = TextfileService(writer: TextfileWriter(directory: directory.path), interval: .seconds(15),
                                      top: 20, version: "test", deadline: .seconds(60), logger: logger) {
            stuck.collect()
        }
        let group = ServiceGroup(configuration: .init(services: [service], logger: logger))
        let run = Task { try await group.run() }
        try await Task.sleep(for: .milliseconds(300))
        XCTAssertEqual(stuck.collections, 1)
        let started = Date()
        await group.triggerGracefulShutdown()
        try await run.value
        XCTAssertLessThan(Date().timeIntervalSince(started), 2, "shutdown waited for the stuck collection")
    }
}

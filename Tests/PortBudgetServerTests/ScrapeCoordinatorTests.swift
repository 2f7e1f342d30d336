import PortBudgetCore
import PortBudgetServer
import XCTest

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
        final class Hook: CollectionHook, @unchecked Sendable {
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
        let coordinator = ScrapeCoordinator(top: 20, version: "test", hooks: [hook]) { collector.collect() }
        async let a = coordinator.scrape()
        async let b = coordinator.scrape()
        let (first, second) = try await (a, b)
        XCTAssertEqual(hook.calls, collector.collections)
        XCTAssertTrue(first.exposition.hasSuffix("portbudget_test_hook_calls \(first.sequence)\n"))
        XCTAssertTrue(second.exposition.hasSuffix("portbudget_test_hook_calls \(second.sequence)\n"))
    }
}

import PortBudgetCore
@testable import PortBudgetLinux
import XCTest

/// How many namespaces `--all-namespaces` collects at once follows the
/// host's TCP sockets, read from the agent's own sockstat: fewer workers
/// while walks are short, all of them once walks are long or unknown.
final class NamespaceParallelismTests: XCTestCase {
    func sockstat(alloc: Int) -> String {
        "sockets: used 12\nTCP: inuse 3 orphan 0 tw 1 alloc \(alloc) mem 4\nUDP: inuse 0 mem 0\n"
    }

    func testFewHostSocketsCollectFewerAtOnce() {
        XCTAssertEqual(AllNamespacesCollector.parallelism(sockstat: sockstat(alloc: 917)),
                       AllNamespacesCollector.parallelismForShortWalks)
        XCTAssertEqual(AllNamespacesCollector.parallelism(sockstat: sockstat(alloc: 19_999)),
                       AllNamespacesCollector.parallelismForShortWalks)
    }

    func testManyHostSocketsCollectAllAtOnce() {
        XCTAssertEqual(AllNamespacesCollector.parallelism(sockstat: sockstat(alloc: 20_000)), AllNamespacesCollector.parallelism)
        XCTAssertEqual(AllNamespacesCollector.parallelism(sockstat: sockstat(alloc: 295_000)), AllNamespacesCollector.parallelism)
    }

    func testUnreadableOrCutShortSockstatCollectsAllAtOnce() {
        XCTAssertEqual(AllNamespacesCollector.parallelism(sockstat: nil), AllNamespacesCollector.parallelism)
        XCTAssertEqual(AllNamespacesCollector.parallelism(sockstat: "sockets: used 12\nTCP: inuse 3 orphan 0 tw 1 alloc 9"),
                       AllNamespacesCollector.parallelism)
        XCTAssertEqual(AllNamespacesCollector.parallelism(sockstat: "sockets: used 12\nUDP: inuse 0 mem 0\n"),
                       AllNamespacesCollector.parallelism)
        XCTAssertGreaterThan(AllNamespacesCollector.parallelism, AllNamespacesCollector.parallelismForShortWalks)
    }
}

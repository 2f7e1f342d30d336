import PortBudgetCore
import XCTest

final class CollectionPacingTests: XCTestCase {
    func testACheapCollectionKeepsTheInterval() {
        let pacing = CollectionPacing(cpuBudget: 0.1)
        XCTAssertEqual(pacing.gap(interval: 15, cpuSeconds: 0.2), 15)
        XCTAssertEqual(pacing.gap(interval: 15, cpuSeconds: 1.5), 15, "exactly the budget")
    }

    func testACostlyCollectionSpacesTheNextOneToFitTheBudget() {
        let pacing = CollectionPacing(cpuBudget: 0.1)
        XCTAssertEqual(pacing.gap(interval: 15, cpuSeconds: 10), 100, accuracy: 1e-9)
        XCTAssertEqual(CollectionPacing(cpuBudget: 0.5).gap(interval: 1, cpuSeconds: 3), 6, accuracy: 1e-9)
    }

    func testZeroNegativeOrNonFiniteBudgetsMeanNoBound() {
        for budget in [0, -1, Double.nan, Double.infinity] {
            let pacing = CollectionPacing(cpuBudget: budget)
            XCTAssertNil(pacing.cpuBudget, "\(budget)")
            XCTAssertEqual(pacing.gap(interval: 1, cpuSeconds: 50), 1)
        }
        XCTAssertEqual(CollectionPacing.unbounded.gap(interval: 0.25, cpuSeconds: 1000), 0.25)
    }

    /// However small the budget, the next collection comes within a day,
    /// and a gap stays a number a `Duration` can hold.
    func testATinyBudgetStillCollectsDaily() {
        let pacing = CollectionPacing(cpuBudget: 1e-300)
        XCTAssertNotNil(pacing.cpuBudget)
        XCTAssertEqual(pacing.gap(interval: 15, cpuSeconds: 10), CollectionPacing.longestGap)
        XCTAssertEqual(pacing.gap(interval: 2 * 86_400, cpuSeconds: 10), 2 * 86_400, "a longer interval is kept")
        XCTAssertEqual(Duration.seconds(pacing.gap(interval: 15, cpuSeconds: .greatestFiniteMagnitude)).inSeconds, 86_400)
    }

    func testAnUnreadableCPUTimeKeepsTheInterval() {
        let pacing = CollectionPacing(cpuBudget: 0.1)
        XCTAssertEqual(pacing.gap(interval: 15, cpuSeconds: .nan), 15)
        XCTAssertEqual(pacing.gap(interval: 15, cpuSeconds: -3), 15)
    }

    /// What a collection may spend and still be followed an interval later:
    /// spent exactly, the gap stays the interval.
    func testTheAllowanceIsWhatKeepsTheInterval() throws {
        let pacing = CollectionPacing(cpuBudget: 0.1)
        let allowance = try XCTUnwrap(pacing.allowance(interval: 15))
        XCTAssertEqual(allowance, 1.5, accuracy: 1e-9)
        XCTAssertEqual(pacing.gap(interval: 15, cpuSeconds: allowance), 15)
        XCTAssertGreaterThan(pacing.gap(interval: 15, cpuSeconds: allowance * 1.1), 15)
        XCTAssertNil(CollectionPacing.unbounded.allowance(interval: 15), "no budget, no allowance")
        XCTAssertNil(pacing.allowance(interval: 0))
        XCTAssertNil(pacing.allowance(interval: .infinity))
    }
}

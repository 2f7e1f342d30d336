import XCTest
@testable import PortBudgetCore

/// The built-in rule over failed port allocations: no threshold, fires at
/// the first evaluation that sees a failure, resolves when none come.
final class FailureAlertTests: XCTestCase {
    func report() -> PortBudgetReport {
        PortCensus(sysctls: PortSysctls(rangeLow: 40000, rangeHigh: 40099)).report(thresholds: Thresholds())
    }

    func inputs(failuresPerSecond: Double?) -> AlertInputs {
        var inputs = AlertInputs(report: report(), icmpUnreachablePerSecond: nil, projections: [], labels: ["netns": "pod:web-1"])
        inputs.failuresPerSecond = failuresPerSecond
        return inputs
    }

    func testAnyFailureFiresAtOnceAndNoneResolves() {
        var machine = AlertStateMachine(rules: AlertRule.defaults, externalLabels: [:], evaluationInterval: 10)
        machine.evaluate(inputs(failuresPerSecond: nil), at: 0)  // first evaluation: no rate yet
        machine.evaluate(inputs(failuresPerSecond: 0), at: 10)
        XCTAssertTrue(machine.active.isEmpty)
        machine.evaluate(inputs(failuresPerSecond: 0.1), at: 20)
        let firing = machine.active.filter { $0.state == .firing }
        XCTAssertEqual(firing.map(\.rule), ["PortBudgetPortAllocationFailures"])
        XCTAssertEqual(firing.first?.labels["severity"], "critical")
        XCTAssertEqual(firing.first?.labels["netns"], "pod:web-1")
        XCTAssertEqual(firing.first?.annotations["summary"], "The kernel is refusing local ports to applications now in netns pod:web-1.")
        machine.evaluate(inputs(failuresPerSecond: 0), at: 30)
        XCTAssertTrue(machine.active.filter { $0.state == .firing }.isEmpty)
    }

    func testConfigNamesTheQuantity() throws {
        XCTAssertEqual(AlertRule.Quantity(rawValue: "port_allocation_failures_per_second"), .portAllocationFailuresPerSecond)
    }

    func testRateFromTheCounters() {
        var rate = CounterRate()
        XCTAssertNil(rate.update(5, at: 0))
        XCTAssertEqual(rate.update(8, at: 10), 0.3)
        XCTAssertNil(rate.update(2, at: 20), "a restarted agent's counters start over: no negative rate")
    }
}

import XCTest
@testable import PortBudgetCore

/// What the evaluator keeps of namespaces beyond the namespace budget is
/// bounded and goes when they do: a tenant's thousands of namespaces must
/// leave nothing behind, while listed namespaces keep Alertmanager's
/// semantics (resolved notifications for sent alerts, for-durations, resend).
final class UnlistedAlertBoundsTests: XCTestCase {
    /// `groups` destination groups (peer ports 1000…), each with `used` of 10 ports.
    func report(groups: Int, used: Int = 10) -> PortBudgetReport {
        var census = PortCensus(sysctls: PortSysctls(rangeLow: 40000, rangeHigh: 40009))
        let local = IPAddress("10.0.0.1")!, peer = IPAddress("10.0.0.2")!
        for g in 0..<groups {
            for i in 0..<used {
                census.addTCP(InetDiagRecord(family: .v4, state: TCPState.established, localPort: UInt16(40000 + i),
                                             remotePort: UInt16(1000 + g), local: local, remote: peer),
                              explicitlyBound: false)
            }
        }
        return census.report(thresholds: Thresholds())
    }

    func inputs(_ netns: String, groups: Int, used: Int = 10) -> AlertInputs {
        AlertInputs(report: report(groups: groups, used: used), icmpUnreachablePerSecond: nil, projections: [],
                    labels: ["netns": netns])
    }

    let exhausted = AlertRule(name: "Exhausted", quantity: .tcpGroupUtilization, comparison: .above(0.95), forSeconds: 0,
                              severity: "critical", annotations: ["summary": try! AlertTemplate("{{ $labels.peer_port }} out{{ $netns }}.")])

    func states(_ machine: AlertStateMachine) -> [String: Alert.State] {
        Dictionary(uniqueKeysWithValues: machine.alerts.values.map { ($0.labels["netns"]!, $0.state) })
    }

    func testANeverSentAlertBeyondTheBudgetIsForgottenWhenItResolves() {
        var machine = AlertStateMachine(rules: [exhausted])
        machine.evaluate([inputs("host", groups: 1), inputs("tenant", groups: 1)], listed: ["host"], at: 0)
        XCTAssertEqual(states(machine), ["host": .firing, "tenant": .firing], "judged alike")
        // Both namespaces recover: Alertmanager never heard of either.
        machine.evaluate([inputs("host", groups: 1, used: 1), inputs("tenant", groups: 1, used: 1)], listed: ["host"], at: 15)
        XCTAssertEqual(states(machine), ["host": .resolved], "the listed one keeps its resolved retention, as before")
        XCTAssertEqual(machine.due(at: 15).map { $0.labels["netns"] }, ["host"])
    }

    func testAResolvedAlertNeverSentIsForgottenWhenItsNamespaceLeavesTheBudget() {
        var machine = AlertStateMachine(rules: [exhausted])
        machine.evaluate([inputs("pod", groups: 1)], listed: ["pod"], at: 0)
        machine.evaluate([inputs("pod", groups: 1, used: 1)], listed: ["pod"], at: 15)
        XCTAssertEqual(states(machine), ["pod": .resolved], "listed: kept its retention")
        // Another namespace takes its place in the budget, or it goes.
        machine.evaluate([inputs("pod", groups: 1, used: 1)], listed: [], at: 30)
        XCTAssertTrue(machine.alerts.isEmpty, "never sent, and no longer listed: nothing to keep")
    }

    func testASentAlertBeyondTheBudgetIsForgottenOnceAlertmanagerHasItsResolution() {
        var machine = AlertStateMachine(rules: [exhausted])
        machine.evaluate([inputs("host", groups: 1), inputs("tenant", groups: 1)], listed: ["host"], at: 0)
        machine.markSent(machine.due(at: 0), at: 0)
        XCTAssertTrue(machine.alerts.values.allSatisfy(\.sentFiring))
        // The tenant's namespace is gone, the host's recovers: both resolve and are due as resolved.
        machine.evaluate([inputs("host", groups: 1, used: 1)], listed: ["host"], at: 15)
        let resolved = machine.due(at: 15)
        XCTAssertEqual(Set(resolved.compactMap { $0.labels["netns"] }), ["host", "tenant"], "sent alerts are resolved in Alertmanager")
        XCTAssertTrue(resolved.allSatisfy { $0.state == .resolved })
        machine.markSent(resolved, at: 15)
        XCTAssertEqual(states(machine), ["host": .resolved], "the tenant's goes once accepted; the host's stays its retention")
        XCTAssertEqual(machine.due(at: 75).map { $0.labels["netns"] }, ["host"], "the listed one is re-sent as before")
        machine.evaluate([inputs("host", groups: 1, used: 1)], listed: ["host"], at: 15 + 301)
        XCTAssertTrue(machine.alerts.isEmpty)
    }

    func testAResolutionAlertmanagerNeverTakesIsKeptNoLongerThanTheRetention() {
        var machine = AlertStateMachine(rules: [exhausted], resolvedRetention: 300)
        machine.evaluate([inputs("tenant", groups: 1)], listed: [], at: 0)
        machine.markSent(machine.due(at: 0), at: 0)
        machine.evaluate([], listed: [], at: 15)
        XCTAssertEqual(states(machine), ["tenant": .resolved], "due until Alertmanager takes it")
        machine.evaluate([], listed: [], at: 15 + 301)
        XCTAssertTrue(machine.alerts.isEmpty)
    }

    func testInstancesBeyondTheBudgetAreCappedAndTheRestCounted() {
        var machine = AlertStateMachine(rules: [exhausted], unlistedCapacity: 10)
        // 30 tenant namespaces, each with one full group, beside the host with 20.
        let flood = (0..<30).map { inputs("tenant-\($0)", groups: 1) }
        machine.evaluate(flood + [inputs("host", groups: 20)], listed: ["host"], at: 0)
        let kept = machine.alerts.values.filter { $0.labels["netns"] != "host" }.count
        XCTAssertEqual(kept, 10, "at most the capacity of unlisted instances")
        XCTAssertEqual(machine.alerts.values.filter { $0.labels["netns"] == "host" }.count, 20, "listed ones are never refused")
        XCTAssertEqual(machine.refused, 20)
        XCTAssertEqual(machine.refusedTotal, 20)
        // Those kept stay kept (and keep their activeAt); the others stay counted.
        machine.evaluate(flood + [inputs("host", groups: 20)], listed: ["host"], at: 15)
        XCTAssertEqual(machine.alerts.values.filter { $0.labels["netns"] != "host" }.count, 10)
        XCTAssertTrue(machine.alerts.values.allSatisfy { $0.activeAt == 0 })
        XCTAssertEqual(machine.refusedTotal, 40, "counted every evaluation")
        // Room made by namespaces that went is taken by those still there.
        machine.evaluate(Array(flood[10...]) + [inputs("host", groups: 20)], listed: ["host"], at: 30)
        XCTAssertEqual(machine.alerts.values.filter { $0.labels["netns"] != "host" }.count, 10)
        XCTAssertEqual(machine.refused, 10)
    }

    func testAPendingAlertBeyondTheBudgetStillWaitsItsForDuration() {
        var rule = exhausted
        rule.forSeconds = 30
        var machine = AlertStateMachine(rules: [rule])
        machine.evaluate([inputs("tenant", groups: 1)], listed: [], at: 0)
        XCTAssertEqual(states(machine), ["tenant": .pending])
        machine.evaluate([inputs("tenant", groups: 1)], listed: [], at: 30)
        XCTAssertEqual(states(machine), ["tenant": .firing], "judged as any namespace is")
    }

    /// The flood's shape in small: many unlisted namespaces with many full
    /// groups fire, some are sent; once they are gone the machine holds what
    /// it held before, in storage sized for that, not for the flood.
    func testAFloodsAlertsGoWithItAndTheirStorageIsGivenBack() {
        var machine = AlertStateMachine(rules: [exhausted])
        machine.evaluate([inputs("host", groups: 1)], listed: ["host"], at: 0)
        let baseline = machine.alerts.count
        let baselineStorage = machine.storageCapacity
        let flood = (0..<40).map { inputs("tenant-\($0)", groups: 25) }
        machine.evaluate(flood + [inputs("host", groups: 1)], listed: ["host"], at: 15)
        XCTAssertEqual(machine.alerts.count, baseline + 1_000)
        XCTAssertGreaterThanOrEqual(machine.storageCapacity, 1_000)
        // Alertmanager took 200 of them, then the tenant left.
        machine.markSent(Array(machine.due(at: 15).filter { $0.labels["netns"] != "host" }.prefix(200)), at: 15)
        machine.evaluate([inputs("host", groups: 1)], listed: ["host"], at: 30)
        XCTAssertEqual(machine.alerts.count, baseline + 200, "only sent ones wait to be resolved in Alertmanager")
        machine.markSent(machine.due(at: 30).filter { $0.labels["netns"] != "host" }, at: 30)
        XCTAssertEqual(machine.alerts.count, baseline)
        XCTAssertLessThanOrEqual(machine.storageCapacity, max(baselineStorage, AlertStateMachine.smallestRebuiltCapacity),
                                 "the storage is rebuilt for what is left")
    }

    func testTrendsOfGoneOrLongUnmeasuredNamespacesAreForgotten() {
        var trends = NamespaceTrends(sampleSpacing: 13.5)
        for netns in ["host", "a", "b"] { _ = trends.inputs(report(groups: 3), netns: netns, at: 0) }
        XCTAssertEqual(trends.seriesCount, 3 * (3 + 2), "3 groups and the 2 host-wide series each")
        trends.keep(present: ["host", "a"], at: 0)
        XCTAssertEqual(Set(trends.byNamespace.keys), ["host", "a"], "a namespace that is gone loses its trend")
        // "a" stays but goes unmeasured (time budget) for longer than the projection window.
        _ = trends.inputs(report(groups: 3), netns: "host", at: 601)
        trends.keep(present: ["host", "a"], at: 601)
        XCTAssertEqual(Set(trends.byNamespace.keys), ["host"])
        XCTAssertEqual(trends.seriesCount, 5)
    }

    func testATrendWithinTheWindowIsKeptWhileUnmeasured() {
        var trends = NamespaceTrends(sampleSpacing: 13.5)
        _ = trends.inputs(report(groups: 1), netns: "a", at: 0)
        trends.keep(present: ["a"], at: 600)
        XCTAssertEqual(Set(trends.byNamespace.keys), ["a"], "unmeasured for a while, not for a whole window")
    }

    func testAProjectorGivesBackTheStorageOfGroupsThatDroppedOut() {
        var projector = ExhaustionProjector(window: 600)
        projector.observe(report(groups: 300, used: 5), at: 0)
        XCTAssertEqual(projector.seriesCount, 302)
        projector.observe(report(groups: 1, used: 5), at: 15)
        XCTAssertEqual(projector.seriesCount, 3)
        XCTAssertLessThan(projector.storageCapacity, 300 / 4, "rebuilt for the groups left")
    }
}

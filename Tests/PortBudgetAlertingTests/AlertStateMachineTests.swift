import XCTest
@testable import PortBudgetCore

final class AlertStateMachineTests: XCTestCase {
    func report(groups: [(peerPort: Int, used: Int)], bound: Int = 0, udp: Int = 0, capacity: Int = 100) -> PortBudgetReport {
        var census = PortCensus(sysctls: PortSysctls(rangeLow: 40000, rangeHigh: UInt16(40000 + capacity - 1)))
        let local = IPAddress("10.0.0.1")!, peer = IPAddress("10.0.0.2")!
        for g in groups {
            for i in 0..<g.used {
                census.addTCP(InetDiagRecord(family: .v4, state: TCPState.established, localPort: UInt16(40000 + i),
                                             remotePort: UInt16(g.peerPort), local: local, remote: peer),
                              explicitlyBound: false)
            }
        }
        for i in 0..<udp {
            census.addUDP(InetDiagRecord(family: .v4, state: 7, localPort: UInt16(40000 + i), remotePort: 0,
                                         local: local, remote: IPAddress("0.0.0.0")!))
        }
        return census.report(thresholds: Thresholds())
    }

    func inputs(_ r: PortBudgetReport, icmp: Double? = nil) -> AlertInputs {
        AlertInputs(report: r, icmpUnreachablePerSecond: icmp, projections: [])
    }

    let critical = AlertRule(name: "Exhausted", quantity: .tcpGroupUtilization, comparison: .above(0.95), forSeconds: 30,
                             severity: "critical", labels: ["team": "edge"],
                             annotations: ["summary": try! AlertTemplate("{{ $labels.peer_ip }}:{{ $labels.peer_port }} at {{ $value | humanizePercentage }}")])

    func testPendingThenFiringThenResolvedPerGroup() {
        var machine = AlertStateMachine(rules: [critical], externalLabels: ["instance": "h:9958"], evaluationInterval: 10)
        machine.evaluate(inputs(report(groups: [(80, 97), (443, 10)])), at: 1000)
        XCTAssertEqual(machine.active.map(\.state), [.pending])
        XCTAssertEqual(machine.due(at: 1000), [], "pending alerts are not sent")

        machine.evaluate(inputs(report(groups: [(80, 98), (443, 10)])), at: 1029)
        XCTAssertEqual(machine.active.map(\.state), [.pending], "for: 30s not yet over")
        machine.evaluate(inputs(report(groups: [(80, 99), (443, 10)])), at: 1030)
        let firing = machine.active
        XCTAssertEqual(firing.map(\.state), [.firing])
        XCTAssertEqual(firing[0].labels, ["alertname": "Exhausted", "severity": "critical", "team": "edge",
                                          "instance": "h:9958", "local_ip": "10.0.0.1", "peer_ip": "10.0.0.2",
                                          "peer_port": "80"])
        XCTAssertEqual(firing[0].annotations["summary"], "10.0.0.2:80 at 99%")
        XCTAssertEqual(firing[0].activeAt, 1000)

        let due = machine.due(at: 1030)
        XCTAssertEqual(due.count, 1)
        let postable = machine.postable(due, at: 1030, generatorURL: "http://h:9958/metrics")
        XCTAssertEqual(postable[0].startsAt, "1970-01-01T00:16:40.000Z")
        XCTAssertEqual(postable[0].endsAt, RFC3339.format(1030 + 240), "firing: endsAt 4 resend intervals ahead")
        machine.markSent(due, at: 1030)
        XCTAssertEqual(machine.due(at: 1060), [], "not re-sent before the resend interval")
        XCTAssertEqual(machine.due(at: 1090).count, 1, "re-sent so Alertmanager keeps it")

        machine.evaluate(inputs(report(groups: [(80, 50), (443, 10)])), at: 1100)
        XCTAssertEqual(machine.active, [])
        let resolved = machine.due(at: 1100)
        XCTAssertEqual(resolved.map(\.state), [.resolved])
        XCTAssertEqual(machine.postable(resolved, at: 1100, generatorURL: nil)[0].endsAt, RFC3339.format(1100))
        machine.markSent(resolved, at: 1100)
        machine.evaluate(inputs(report(groups: [(80, 50)])), at: 1500)
        XCTAssertEqual(machine.alerts.count, 0, "resolved alerts are forgotten after their retention")
    }

    func testRulesSharingANameKeepTheirOwnSendState() {
        let warning = AlertRule(name: "Ports", quantity: .tcpGroupUtilization, comparison: .above(0.5), severity: "warning")
        let critical = AlertRule(name: "Ports", quantity: .tcpGroupUtilization, comparison: .above(0.9), severity: "critical")
        var machine = AlertStateMachine(rules: [warning, critical])
        machine.evaluate(inputs(report(groups: [(80, 97)])), at: 0)
        let due = machine.due(at: 0)
        XCTAssertEqual(Set(due.compactMap { $0.labels["severity"] }), ["warning", "critical"])
        machine.markSent(due, at: 0)
        XCTAssertEqual(machine.due(at: 1), [], "both marked sent, neither re-sent at once")
    }

    func testPendingAlertThatClearsIsDroppedWithoutASend() {
        var machine = AlertStateMachine(rules: [critical])
        machine.evaluate(inputs(report(groups: [(80, 97)])), at: 0)
        machine.evaluate(inputs(report(groups: [(80, 10)])), at: 10)
        XCTAssertEqual(machine.alerts.count, 0)
        XCTAssertEqual(machine.due(at: 10), [])
    }

    func testForZeroFiresAtOnceAndEachGroupIsItsOwnAlert() {
        var rule = critical
        rule.forSeconds = 0
        var machine = AlertStateMachine(rules: [rule])
        machine.evaluate(inputs(report(groups: [(80, 97), (443, 99), (8080, 20)])), at: 0)
        XCTAssertEqual(machine.active.map(\.state), [.firing, .firing])
        XCTAssertEqual(Set(machine.active.compactMap { $0.labels["peer_port"] }), ["80", "443"])
    }

    func testHostWideQuantitiesAndBelowComparisons() {
        let rules = [
            AlertRule(name: "Bind", quantity: .tcpBindUtilization, comparison: .above(0.5)),
            AlertRule(name: "UDP", quantity: .udpUtilization, comparison: .above(0.5)),
            AlertRule(name: "UDPSockets", quantity: .udpSocketsInUse, comparison: .above(100)),
            AlertRule(name: "ICMP", quantity: .icmpPortUnreachablePerSecond, comparison: .above(5)),
            AlertRule(name: "Soon", quantity: .secondsToExhaustion, comparison: .below(3600)),
        ]
        var machine = AlertStateMachine(rules: rules)
        var r = report(groups: [(80, 60)], udp: 70)
        r.counters["sockstat_udp_inuse"] = 90
        r.counters["sockstat_udp6_inuse"] = 20
        let projections = [(series: ExhaustionProjector.Series(scope: "tcp_bind", group: nil), seconds: 1200.0),
                           (series: ExhaustionProjector.Series(scope: "udp", group: nil), seconds: Double.infinity)]
        machine.evaluate(AlertInputs(report: r, icmpUnreachablePerSecond: 7, projections: projections), at: 0)
        XCTAssertEqual(Set(machine.active.map(\.rule)), ["Bind", "UDP", "UDPSockets", "ICMP", "Soon"])
        XCTAssertEqual(machine.active.first { $0.rule == "Soon" }?.labels["scope"], "tcp_bind")
        XCTAssertEqual(machine.active.first { $0.rule == "UDPSockets" }?.value, 110)
    }

    func testProjectorFitsTheTrend() {
        var projector = ExhaustionProjector(window: 600)
        // A group gaining 1 port a second, 10 samples over 180 s.
        for step in 0..<10 {
            projector.observe(report(groups: [(80, 10 + step * 2)], bound: 0), at: Double(step) * 20)
        }
        let group = projector.projections.first { $0.series.scope == "tcp_group" }
        // used 28 of 100 at t=180, slope 0.1 port/s → 720 s left.
        XCTAssertEqual(group?.seconds ?? 0, 720, accuracy: 1e-6)
        XCTAssertEqual(projector.projections.first { $0.series.scope == "udp" }?.seconds, .infinity, "flat: never")
        projector.observe(report(groups: [(80, 100)]), at: 200)
        XCTAssertEqual(projector.projections.first { $0.series.scope == "tcp_group" }?.seconds, 0, "full: now")
        projector.observe(report(groups: []), at: 220)
        XCTAssertNil(projector.projections.first { $0.series.scope == "tcp_group" }, "a gone group loses its history")
    }

    func testProjectorNeedsEnoughHistory() {
        var projector = ExhaustionProjector(window: 600)
        projector.observe(report(groups: [(80, 10)]), at: 0)
        projector.observe(report(groups: [(80, 20)]), at: 10)
        projector.observe(report(groups: [(80, 30)]), at: 20)
        XCTAssertEqual(projector.projections.first { $0.series.scope == "tcp_group" }?.seconds, .infinity,
                       "20 s of history is too little for a 10-minute window")
    }

    /// Back-to-back scrapes must not grow the projector: with a 15 s
    /// evaluation interval it keeps a sample every 13.5 s at most, so 10
    /// minutes of scrapes every 100 ms hold the same points as the ticks alone.
    func testProjectorMemoryIsBoundedBySpacingNotScrapeRate() {
        let spacing = 0.9 * 15
        var projector = ExhaustionProjector(window: 600, maxGroups: 50, sampleSpacing: spacing)
        let busy = report(groups: (0..<300).map { (8000 + $0, 10) })
        var kept = 0
        for step in 0..<6000 where projector.observe(busy, at: Double(step) * 0.1) { kept += 1 }
        let perSeries = Int((600 / spacing).rounded(.up)) + 1
        XCTAssertLessThanOrEqual(projector.pointCount, (50 + 2) * perSeries)
        XCTAssertEqual(kept, Int((599.9 / spacing).rounded(.down)) + 1, "one kept sample per spacing")
        XCTAssertFalse(projector.observe(busy, at: 599.95), "too soon after the last kept sample")
    }

    /// A reload keeps the state of unchanged rules (even when they move in the
    /// list), drops changed ones, and starts fresh when external labels change.
    func testReloadKeepsStatesOfUnchangedRules() {
        let slow = AlertRule(name: "Slow", quantity: .tcpGroupUtilization, comparison: .above(0.5), forSeconds: 60)
        let bind = AlertRule(name: "UDP", quantity: .udpUtilization, comparison: .above(0.5))
        var machine = AlertStateMachine(rules: [slow, bind], externalLabels: ["instance": "a"])
        let r = report(groups: [(80, 60)], udp: 60)
        machine.evaluate(AlertInputs(report: r, icmpUnreachablePerSecond: nil, projections: []), at: 0)
        XCTAssertEqual(Set(machine.active.map(\.rule)), ["Slow", "UDP"])
        machine.markSent(machine.due(at: 0), at: 0)
        var changedBind = bind
        changedBind.comparison = .above(0.9)
        var next = machine.reloaded(rules: [changedBind, slow], externalLabels: ["instance": "a"],
                                    evaluationInterval: 15, resendInterval: 60)
        XCTAssertEqual(next.active.map(\.rule), ["Slow"], "the changed rule's alert is dropped")
        XCTAssertEqual(next.active.first?.activeAt, 0, "pending since the start, not since the reload")
        next.evaluate(AlertInputs(report: r, icmpUnreachablePerSecond: nil, projections: []), at: 61)
        XCTAssertEqual(next.active.first { $0.rule == "Slow" }?.state, .firing, "for: counted across the reload")
        XCTAssertEqual(next.active.filter { $0.rule == "Slow" }.count, 1, "no duplicate under the new index")
        let relabelled = machine.reloaded(rules: [slow, bind], externalLabels: ["instance": "b"],
                                          evaluationInterval: 15, resendInterval: 60)
        XCTAssertTrue(relabelled.active.isEmpty)
    }

    func testCounterRate() {
        var rate = CounterRate()
        XCTAssertNil(rate.update(100, at: 0))
        XCTAssertEqual(rate.update(160, at: 10), 6)
        XCTAssertNil(rate.update(5, at: 20), "a reset is not a negative rate")
        XCTAssertNil(rate.update(nil, at: 30))
    }

    func testTemplates() throws {
        let t = try AlertTemplate("{{$labels.peer_ip}} {{ $value }} {{ $value | humanize }} {{ $value | humanizeDuration }}")
        XCTAssertEqual(t.render(labels: ["peer_ip": "::1"], value: 3725), "::1 3725 3725 1h 2m 5s")
        XCTAssertEqual(try AlertTemplate("{{ $value | humanizePercentage }}").render(labels: [:], value: 0.98765), "98.8%")
        XCTAssertEqual(try AlertTemplate("{{ $value | humanizeDuration }}").render(labels: [:], value: .infinity), "+Inf")
        XCTAssertThrowsError(try AlertTemplate("{{ .Labels.x }}"))
        XCTAssertThrowsError(try AlertTemplate("{{ $value | toUpper }}"))
        XCTAssertThrowsError(try AlertTemplate("{{ $labels.peer_ip"))
    }

    func testRFC3339() {
        XCTAssertEqual(RFC3339.format(0), "1970-01-01T00:00:00.000Z")
        XCTAssertEqual(RFC3339.format(1_795_283_520.25), "2026-11-21T17:52:00.250Z")
        XCTAssertEqual(RFC3339.format(951_782_400), "2000-02-29T00:00:00.000Z")
    }
}

import XCTest
@testable import PortBudgetAlerting
@testable import PortBudgetCore

/// The evaluator's SNAT and conntrack quantities: one alert per NAT group, labelled
/// like the exported series, and the conntrack table's fill.
final class SNATAlertTests: XCTestCase {
    func report(natUsed: Int, entries: Int64, limit: Int64) throws -> PortBudgetReport {
        var census = SNATCensus(range: try SNATPortRange(parsing: "40000-40009"))
        let nat = IPAddress("10.2.0.1")!, peer = IPAddress("10.2.0.2")!, client = IPAddress("10.1.0.2")!
        for i in 0..<natUsed {
            census.add(ConntrackEntry(
                family: .v4, proto: 6, status: ConntrackEntry.sourceNATStatus,
                original: ConntrackTuple(source: client, destination: peer, sourcePort: UInt16(50000 + i), destinationPort: 443),
                reply: ConntrackTuple(source: peer, destination: nat, sourcePort: 443, destinationPort: UInt16(40000 + i))))
        }
        var r = PortCensus(sysctls: PortSysctls(rangeLow: 40000, rangeHigh: 40099)).report(thresholds: Thresholds())
        r.snat = census.report()
        r.conntrack = .init(entries: entries, limit: limit, statistics: ConntrackStatistics())
        return r
    }

    func testSamplesAreLabelledPerNATGroupAndForTheTable() throws {
        let inputs = AlertInputs(report: try report(natUsed: 10, entries: 950, limit: 1000), icmpUnreachablePerSecond: nil,
                                 projections: [])
        XCTAssertEqual(inputs.samples(.snatGroupUtilization),
                       [AlertSample(labels: ["protocol": "tcp", "source_ip": "10.2.0.1", "peer_ip": "10.2.0.2", "peer_port": "443"],
                                    value: 1)])
        XCTAssertEqual(inputs.samples(.conntrackUtilization), [AlertSample(value: 0.95)])
        var absent = try report(natUsed: 0, entries: 1, limit: 0)
        absent.snat = nil
        let none = AlertInputs(report: absent, icmpUnreachablePerSecond: nil, projections: [])
        XCTAssertEqual(none.samples(.snatGroupUtilization), [], "no conntrack: nothing to alert on, not a zero")
        XCTAssertEqual(none.samples(.conntrackUtilization), [], "an unknown limit is not a fill of 0")
    }

    func testDefaultRulesFireForAFullNATGroup() throws {
        var machine = AlertStateMachine(rules: AlertRule.defaults, externalLabels: [:], evaluationInterval: 10)
        let full = AlertInputs(report: try report(natUsed: 10, entries: 10, limit: 1000), icmpUnreachablePerSecond: nil,
                               projections: [])
        machine.evaluate(full, at: 0)
        machine.evaluate(full, at: 30)
        let firing = machine.active.filter { $0.state == .firing }
        XCTAssertEqual(firing.map(\.rule), ["PortBudgetSNATPortsNearlyExhausted"])
        XCTAssertEqual(firing.first?.annotations["description"],
                       "tcp NATed to 10.2.0.1 towards 10.2.0.2:443 uses 100% of the NAT's ports; the NAT drops new connections to it at 100% (insert_failed).")
    }

    func testConfigNamesTheNewQuantitiesAndTheRange() throws {
        let config = try AlertConfig.parse("""
            snat_port_range: 40000-40009
            rules:
              - alert: NATFull
                when: snat_group_utilization
                above: 0.5
              - alert: TableFull
                when: conntrack_utilization
                above: 0.8
            """, file: "t.yml")
        XCTAssertEqual(config.snatPortRange, try SNATPortRange(parsing: "40000-40009"))
        XCTAssertEqual(config.rules.map(\.quantity), [.snatGroupUtilization, .conntrackUtilization])
        XCTAssertThrowsError(try AlertConfig.parse("snat_port_range: 9-1\n", file: "t.yml")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix("t.yml:") && text.hasSuffix(#"snat_port_range: "9-1" is reversed: 9 is above 1"#), text)
        }
    }
}

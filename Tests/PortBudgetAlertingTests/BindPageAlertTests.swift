import XCTest
@testable import PortBudgetCore

/// The built-in host-wide bind rules: a full table pages only where this
/// host's traffic spends it; one filled by ports connect() chose warns.
final class BindPageAlertTests: XCTestCase {
    /// 100 ports, 97 of them held: with `explicit` 0, each by two connections
    /// connect() chose the port for (to :443 and :5432, as a proxy setting
    /// IP_BIND_ADDRESS_NO_PORT does); else the first `explicit` bound before connect().
    func report(explicit: Int) -> PortBudgetReport {
        var census = PortCensus(sysctls: PortSysctls(rangeLow: 40000, rangeHigh: 40099))
        for i in 0..<97 {
            for peerPort: UInt16 in i < explicit ? [443] : [443, 5432] {
                census.addTCP(InetDiagRecord(family: .v4, state: TCPState.established, localPort: 40000 + UInt16(i),
                                             remotePort: peerPort, local: IPAddress("10.0.0.1")!,
                                             remote: IPAddress("10.0.0.2")!), explicitlyBound: i < explicit)
            }
        }
        return census.report(thresholds: Thresholds())
    }

    func alerts(_ report: PortBudgetReport) -> [String: String] {
        var machine = AlertStateMachine(rules: AlertRule.defaults.filter { $0.name.hasPrefix("PortBudgetTCPBindPorts") })
        for t in [0.0, 60, 150] {
            machine.evaluate(AlertInputs(report: report, icmpUnreachablePerSecond: nil, projections: []), at: t)
        }
        var out: [String: String] = [:]
        for alert in machine.active where alert.state == .firing { out[alert.rule] = alert.labels["severity"] }
        return out
    }

    func testATableFilledByConnectChosenPortsWarnsWithoutPaging() {
        let filled = report(explicit: 0)
        XCTAssertEqual(filled.tcp.bindUtilization, 0.97)
        XCTAssertFalse(filled.tcpBindSpentHere)
        XCTAssertEqual(alerts(filled), ["PortBudgetTCPBindPortsLow": "warning"])
    }

    func testBindBeforeConnectPages() {
        let spent = report(explicit: 60)
        XCTAssertTrue(spent.tcpBindSpentHere)
        XCTAssertEqual(alerts(spent), ["PortBudgetTCPBindPortsLow": "warning", "PortBudgetTCPBindPortsNearlyExhausted": "critical"])
    }
}

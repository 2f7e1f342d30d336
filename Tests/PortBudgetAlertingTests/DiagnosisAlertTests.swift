import XCTest
@testable import PortBudgetCore

/// The in-agent alerts carry the fix of the finding that explains them.
final class DiagnosisAlertTests: XCTestCase {
    func timeWaitReport() -> PortBudgetReport {
        var sysctls = PortSysctls(rangeLow: 40000, rangeHigh: 40099)
        sysctls.tcpTwReuse = 2
        var census = PortCensus(sysctls: sysctls)
        for port in UInt16(40000)..<40097 {
            census.addTCP(InetDiagRecord(family: .v4, state: TCPState.timeWait, localPort: port, remotePort: 443,
                                         local: IPAddress("10.0.0.1")!, remote: IPAddress("10.0.0.2")!, interface: 0,
                                         expiresMs: 30_000), explicitlyBound: false)
        }
        return census.report(thresholds: Thresholds())
    }

    func testTheDefaultDestinationAlertDescribesTheFix() throws {
        let rules = AlertRule.defaults.filter { $0.name == "PortBudgetTCPDestinationPortsNearlyExhausted" }
        var machine = AlertStateMachine(rules: rules)
        machine.evaluate(AlertInputs(report: timeWaitReport(), icmpUnreachablePerSecond: nil, projections: []), at: 0)
        let description = try XCTUnwrap(machine.active.first?.annotations["description"])
        XCTAssertEqual(description,
                       "10.0.0.1 → 10.0.0.2:443 uses 97% of its ports; new connect() calls to it fail with EADDRNOTAVAIL "
                       + "at 100%. Cause: narrow_range — sysctl -w net.ipv4.ip_local_port_range=\"32768 60999\"; "
                       + "time_wait — sysctl -w net.ipv4.tcp_tw_reuse=1; keep connections alive (never "
                       + "tcp_tw_recycle); hot_destination — pool or keep alive connections to 10.0.0.2:443; each added "
                       + "destination IP or port, or source IP, adds 100 ports (1.67 new connections/s). "
                       + "See docs/runbook.md#narrow_range.")
        // The fix is not a label: the alert keeps its identity as the diagnosis moves.
        XCTAssertNil(machine.active.first?.labels["fix"])
    }

    func testNoFindingRendersNothing() throws {
        let template = try AlertTemplate("at {{ $value | humanizePercentage }}.{{ $fix }}")
        XCTAssertEqual(template.render(labels: [:], value: 0.5), "at 50%.")
        let inputs = AlertInputs(report: PortCensus(sysctls: PortSysctls(rangeLow: 32768, rangeHigh: 60999))
            .report(thresholds: Thresholds()), icmpUnreachablePerSecond: nil, projections: [])
        XCTAssertEqual(inputs.samples(.tcpBindUtilization).map(\.fix), [""])
        XCTAssertEqual(inputs.samples(.udpUtilization).map(\.fix), [""])
    }

    func testUnknownTemplateNamesStillFailAtLoad() {
        XCTAssertThrowsError(try AlertTemplate("{{ $fixes }}")) { error in
            XCTAssertTrue("\(error)".contains("$fix"), "\(error)")
        }
    }

    func testUDPAlertsCarryUDPPressure() {
        var census = PortCensus(sysctls: PortSysctls(rangeLow: 40000, rangeHigh: 40099))
        for port in UInt16(40000)..<40090 {
            census.addUDP(InetDiagRecord(family: .v4, state: 7, localPort: port, remotePort: 0,
                                         local: IPAddress("0.0.0.0")!, remote: IPAddress("0.0.0.0")!))
        }
        let inputs = AlertInputs(report: census.report(thresholds: Thresholds()), icmpUnreachablePerSecond: nil,
                                 projections: [])
        let fix = inputs.samples(.udpUtilization)[0].fix
        // The narrow range is the root cause, so it comes first.
        XCTAssertTrue(fix.hasPrefix(" Cause: narrow_range — sysctl -w net.ipv4.ip_local_port_range"), fix)
        XCTAssertTrue(fix.contains("udp_pressure — shorter idle timeouts"), fix)
        XCTAssertFalse(fix.contains("hot_destination"), fix)
    }
}

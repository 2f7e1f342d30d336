import Foundation
import XCTest
@testable import PortBudgetCore

/// `portbudget_finding` in /metrics: one series per current finding.
final class DiagnosisExpositionTests: XCTestCase {
    func findingLines(_ report: PortBudgetReport) -> [String] {
        MetricsExposition.render(CollectionResult(report: report, outcomes: []), top: 1, version: "1")
            .split(separator: "\n").map(String.init).filter { $0.hasPrefix("portbudget_finding") }
    }

    func testOneSeriesPerFindingWithTheGroupLabelsAndTheFix() {
        var sysctls = PortSysctls(rangeLow: 40000, rangeHigh: 40099)
        sysctls.tcpTwReuse = 0
        var census = PortCensus(sysctls: sysctls)
        let local = IPAddress("10.0.0.1")!, peer = IPAddress("10.0.0.2")!
        for port in UInt16(40000)..<40096 {
            census.addTCP(InetDiagRecord(family: .v4, state: TCPState.timeWait, localPort: port, remotePort: 443,
                                         local: local, remote: peer, interface: 0, expiresMs: 30_000),
                          explicitlyBound: false)
        }
        // A second, quieter destination is cut by --top 1 from the group series, not from the findings.
        for port in UInt16(40000)..<40090 {
            census.addTCP(InetDiagRecord(family: .v4, state: TCPState.established, localPort: port, remotePort: 80,
                                         local: local, remote: peer, interface: 0, expiresMs: 0),
                          explicitlyBound: false)
        }
        let lines = findingLines(census.report(thresholds: Thresholds()))
        XCTAssertEqual(lines, [
            #"portbudget_finding{id="narrow_range",severity="critical",scope="range",fix="sysctl -w net.ipv4.ip_local_port_range=\"32768 60999\""} 1"#,
            #"portbudget_finding{id="time_wait",severity="critical",scope="tcp_destination",local_ip="10.0.0.1",peer_ip="10.0.0.2",peer_port="443",fix="sysctl -w net.ipv4.tcp_tw_reuse=1; keep connections alive (never tcp_tw_recycle)"} 1"#,
            #"portbudget_finding{id="hot_destination",severity="critical",scope="tcp_destination",local_ip="10.0.0.1",peer_ip="10.0.0.2",peer_port="443",fix="pool or keep alive connections to 10.0.0.2:443; each added destination IP or port, or source IP, adds 100 ports (1.67 new connections/s)"} 1"#,
            #"portbudget_finding{id="hot_destination",severity="warning",scope="tcp_destination",local_ip="10.0.0.1",peer_ip="10.0.0.2",peer_port="80",fix="spread the connections to 10.0.0.2:80 over more destination IPs or ports, or more source IPs: each adds 100 ports"} 1"#,
        ])
    }

    func testAHealthyReportHasNoFindingFamily() {
        let census = PortCensus(sysctls: PortSysctls(rangeLow: 32768, rangeHigh: 60999))
        let text = MetricsExposition.render(CollectionResult(report: census.report(thresholds: Thresholds()), outcomes: []),
                                            top: 1, version: "1")
        XCTAssertFalse(text.contains("portbudget_finding"), text)
    }
}

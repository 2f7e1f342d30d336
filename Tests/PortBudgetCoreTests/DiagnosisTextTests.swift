import Foundation
import XCTest
@testable import PortBudgetCore

/// The "Why, and what to do" section of `check`, compared byte for byte with
/// golden files. Regenerate them after an intended change with
/// PORTBUDGET_UPDATE_GOLDEN=1 and review the diff.
final class DiagnosisTextTests: XCTestCase {
    static let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/diagnosis")

    func assertGolden(_ text: String, _ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        if ProcessInfo.processInfo.environment["PORTBUDGET_UPDATE_GOLDEN"] == "1" {
            try text.write(to: Self.sources.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        XCTAssertEqual(text, try Fixture.text("diagnosis/" + name), "differs from Fixtures/diagnosis/\(name)",
                       file: file, line: line)
    }

    /// TIME_WAIT off loopback fills one destination, UDP runs high, a
    /// listener sits in a narrow range that already reserves a few ports.
    func mixedReport() -> PortBudgetReport {
        let sysctls = PortSysctls(rangeLow: 40000, rangeHigh: 40099, reserved: [40090...40091, 50000...50000],
                                  tcpTwReuse: 2)
        var census = PortCensus(sysctls: sysctls)
        let local = IPAddress("10.0.0.1")!, backend = IPAddress("10.0.0.2")!, any = IPAddress("0.0.0.0")!
        census.addTCP(InetDiagRecord(family: .v4, state: TCPState.listen, localPort: 40010, remotePort: 0, local: any,
                                     remote: any, interface: 0, expiresMs: 0), explicitlyBound: true)
        for port in UInt16(40011)...40089 {
            census.addTCP(InetDiagRecord(family: .v4, state: TCPState.timeWait, localPort: port, remotePort: 443,
                                         local: local, remote: backend, interface: 0, expiresMs: 30_000),
                          explicitlyBound: false)
        }
        for port in UInt16(40000)...40079 {
            census.addUDP(InetDiagRecord(family: .v4, state: 7, localPort: port, remotePort: 0, local: any, remote: any,
                                         interface: 0, expiresMs: 0))
        }
        return census.report(thresholds: Thresholds())
    }

    func testMixedCausesGolden() throws {
        let report = mixedReport()
        XCTAssertEqual(report.status, .warning)
        try assertGolden(CheckReportRenderer.render(report, top: 5), "check-mixed.txt")
    }

    func testTheSectionSitsUnderTheVerdict() {
        let lines = CheckReportRenderer.render(mixedReport(), top: 5).split(separator: "\n", omittingEmptySubsequences: false)
        XCTAssertTrue(lines[0].hasPrefix("WARNING: "), String(lines[0]))
        XCTAssertEqual(lines[1], "")
        XCTAssertEqual(String(lines[2]), CheckReportRenderer.findingsHeading)
    }

    func testAHealthyReportHasNoSection() {
        var census = PortCensus(sysctls: PortSysctls(rangeLow: 32768, rangeHigh: 60999))
        for port in UInt16(40000)..<40100 {
            census.addTCP(InetDiagRecord(family: .v4, state: TCPState.established, localPort: port, remotePort: 443,
                                         local: IPAddress("10.0.0.1")!, remote: IPAddress("10.0.0.2")!, interface: 0,
                                         expiresMs: 0), explicitlyBound: false)
        }
        let text = CheckReportRenderer.render(census.report(thresholds: Thresholds()), top: 5)
        XCTAssertFalse(text.contains(CheckReportRenderer.findingsHeading), text)
        XCTAssertEqual(CheckReportRenderer.renderFindings([]), "")
    }

    func testLongWordsAreNotBrokenAndLinesStayNarrow() {
        let text = CheckReportRenderer.wrap(String(repeating: "word ", count: 60) + String(repeating: "x", count: 120),
                                            indent: "  ")
        let lines = text.split(separator: "\n")
        XCTAssertTrue(lines.dropLast().allSatisfy { $0.count <= 100 && $0.hasPrefix("  ") })
        XCTAssertEqual(lines.last, "  " + String(repeating: "x", count: 120))
        let command = "sysctl -w net.ipv4.ip_local_port_range=\"32768 60999\""
        let kept = CheckReportRenderer.wrap(String(repeating: "word ", count: 17) + command + " and `ss -Htuln 'sport >= :1'` too",
                                            indent: "  ", width: 40, keepingWhole: [command])
        XCTAssertTrue(kept.contains(command), kept)
        XCTAssertTrue(kept.contains("`ss -Htuln 'sport >= :1'`"), kept)
    }
}

import Foundation
import XCTest
import PortBudgetCore

/// `portbudget check` as a Nagios plugin: exit statuses, one-line errors,
/// and `--procfs` rooted reads. Needs no privilege.
final class CheckCommandTests: XCTestCase {
    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("PortBudgetCoreTests/Fixtures").path

    func check(_ arguments: [String]) -> Command.Output {
        Command.run([Binaries.portbudget, "check"] + arguments, timeout: 30)
    }

    func testUnreadableProcfsIsUnknownWithOneLineNamingThePath() {
        let output = check(["--procfs", "/nonexistent-procfs", "--json"])
        XCTAssertEqual(output.status, 3)
        XCTAssertEqual(output.stdout, "", "no JSON may claim anything")
        XCTAssertEqual(output.stderr.split(separator: "\n").count, 1, output.stderr)
        XCTAssertTrue(output.stderr.contains("/nonexistent-procfs/sys/net/ipv4/ip_local_port_range"), output.stderr)
        XCTAssertTrue(output.stderr.hasPrefix("UNKNOWN"), output.stderr)
    }

    func testMalformedSysctlIsUnknownNamingTheFile() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("pb-procfs-\(getpid())")
        defer { try? FileManager.default.removeItem(at: root) }
        try? FileManager.default.removeItem(at: root)
        try FileManager.default.copyItem(atPath: fixtures + "/procfs-busy", toPath: root.path)
        try "60999 32768\n".write(to: root.appendingPathComponent("sys/net/ipv4/ip_local_port_range"),
                                  atomically: true, encoding: .utf8)
        let output = check(["--procfs", root.path])
        XCTAssertEqual(output.status, 3)
        XCTAssertTrue(output.stderr.contains("ip_local_port_range: low port 60999 is above high port 32768"), output.stderr)
        XCTAssertEqual(output.stderr.split(separator: "\n").count, 1, output.stderr)
    }

    func testProcfsRootsEveryRead() throws {
        let output = check(["--procfs", fixtures + "/procfs-busy", "--json"])
        XCTAssertTrue([0, 1, 2].contains(output.status), output.stderr)
        let report = try JSONDecoder().decode(PortBudgetReport.self, from: Data(output.stdout.utf8))
        XCTAssertEqual(report.portRange.low, 40000)
        XCTAssertEqual(report.portRange.high, 40099)
        XCTAssertEqual(report.portRange.reserved, 11)
        XCTAssertEqual(report.portRange.usable, 89)
        XCTAssertEqual(report.timeWaitReuse.tcpTwReuse, 0)
        XCTAssertEqual(report.timeWaitReuse.reuseDelayMs, 1000, "no tcp_tw_reuse_delay: the pre-6.13 fixed second")
        XCTAssertEqual(report.counters["icmp_out_dest_unreachs_total"], 812)
        XCTAssertEqual(report.counters["tcp_tw_recycled_total"], 42)
        XCTAssertEqual(report.counters["sockstat_tcp_tw"], 4100)
    }

    func testMissingCounterFilesDegradeWithoutHidingTheBudget() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("pb-procfs-nosnmp-\(getpid())")
        defer { try? FileManager.default.removeItem(at: root) }
        try? FileManager.default.removeItem(at: root)
        try FileManager.default.copyItem(atPath: fixtures + "/procfs-busy", toPath: root.path)
        try FileManager.default.removeItem(at: root.appendingPathComponent("net/snmp"))
        let output = check(["--procfs", root.path, "--json"])
        XCTAssertTrue([0, 1, 2].contains(output.status), output.stderr)
        XCTAssertTrue(output.stderr.contains("snmp collector failed"), output.stderr)
        let report = try JSONDecoder().decode(PortBudgetReport.self, from: Data(output.stdout.utf8))
        XCTAssertNil(report.counters["icmp_out_dest_unreachs_total"], "absent, never a made-up zero")
        XCTAssertEqual(report.counters["tcp_tw_recycled_total"], 42)
    }

    func testBadArgumentsAreUnknownWithOneLine() {
        for arguments in [["--warning", "0.9", "--critical", "0.5"], ["--top", "-1"], ["--warning", "abc"],
                          ["--critical", "2"], ["--no-such-flag"]] {
            let output = check(arguments)
            XCTAssertEqual(output.status, 3, "\(arguments): \(output.stderr)")
            XCTAssertEqual(output.stderr.split(separator: "\n").count, 1, "\(arguments): \(output.stderr)")
            XCTAssertEqual(output.stdout, "")
        }
    }

    func testHelpExitsZero() {
        let output = check(["--help"])
        XCTAssertEqual(output.status, 0)
        XCTAssertTrue(output.stdout.contains("--warning"), output.stdout)
    }

    func testHumanOutputStartsWithTheVerdict() {
        let output = check(["--procfs", fixtures + "/procfs-default"])
        XCTAssertTrue([0, 1, 2].contains(output.status), output.stderr)
        let first = output.stdout.split(separator: "\n").first ?? ""
        XCTAssertTrue(first.hasPrefix("OK:") || first.hasPrefix("WARNING:") || first.hasPrefix("CRITICAL:"), String(first))
        XCTAssertTrue(output.stdout.contains("Port range"), output.stdout)
    }
}

import Foundation
import PortBudgetCore
import XCTest

/// The exposition of a fixture procfs plus synthetic SOCK_DIAG records,
/// compared byte for byte with a golden file. Regenerate it after an
/// intended change with PORTBUDGET_UPDATE_GOLDEN=1 and review the diff.
final class ExpositionTests: XCTestCase {
    static let fixtures = Bundle.module.resourceURL!.appendingPathComponent("Fixtures/exposition")
    static let goldenSource = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/exposition/golden.prom")

    /// A version with every character the label escaping must handle.
    static let oddVersion = "1.0.0-\"rc\"\\build\nline2"

    func procfs(_ relative: String) throws -> String {
        try String(contentsOf: Self.fixtures.appendingPathComponent("procfs/" + relative), encoding: .utf8)
    }

    func fixtureSysctls() throws -> PortSysctls {
        let range = try SysctlParser.portRange(try procfs("sys/net/ipv4/ip_local_port_range"))
        return PortSysctls(
            rangeLow: range.low, rangeHigh: range.high,
            reserved: try SysctlParser.reservedPorts(try procfs("sys/net/ipv4/ip_local_reserved_ports")),
            tcpTwReuse: try SysctlParser.integer(try procfs("sys/net/ipv4/tcp_tw_reuse"), file: "tcp_tw_reuse"),
            tcpTimestamps: try SysctlParser.integer(try procfs("sys/net/ipv4/tcp_timestamps"), file: "tcp_timestamps"),
            tcpFinTimeoutSeconds: try SysctlParser.integer(try procfs("sys/net/ipv4/tcp_fin_timeout"), file: "tcp_fin_timeout"),
            tcpTwReuseDelayMs: try SysctlParser.integer(try procfs("sys/net/ipv4/tcp_tw_reuse_delay"), file: "tcp_tw_reuse_delay"))
    }

    static func v4(_ text: String) -> IPAddress { IPAddress(text)! }

    static func tcp(_ local: String, _ port: UInt16, _ remote: String, _ remotePort: UInt16,
                    state: UInt8 = TCPState.established, expiresMs: UInt32 = 0) -> InetDiagRecord {
        let l = IPAddress(local)!, r = IPAddress(remote)!
        return InetDiagRecord(family: local.contains(":") ? .v6 : .v4, state: state, localPort: port,
                              remotePort: remotePort, local: l, remote: r, expiresMs: expiresMs)
    }

    /// The fixture collection: a listener inside the range, 30 loopback
    /// connections to one backend, unreusable TIME_WAIT off loopback, IPv6
    /// connections with a FIN_WAIT2, IPv4-mapped IPv6 folded to IPv4, UDP,
    /// a socket on a reserved port (ignored), and a netstat collector failure.
    func fixtureCollection(census censusOK: Bool = true) throws -> CollectionResult {
        var census = PortCensus(sysctls: try fixtureSysctls())
        census.addTCP(Self.tcp("127.0.0.1", 40050, "0.0.0.0", 0, state: TCPState.listen), explicitlyBound: true)
        for p in UInt16(40000)..<40030 { census.addTCP(Self.tcp("127.0.0.1", p, "127.0.0.1", 8080), explicitlyBound: false) }
        for p in UInt16(40030)..<40033 {
            census.addTCP(Self.tcp("10.77.0.1", p, "10.77.0.9", 443, state: TCPState.timeWait, expiresMs: 50_000),
                          explicitlyBound: false)
        }
        for p in UInt16(40040)..<40045 { census.addTCP(Self.tcp("fd77::1", p, "2001:db8::1", 443), explicitlyBound: false) }
        census.addTCP(Self.tcp("fd77::1", 40045, "2001:db8::1", 443, state: TCPState.finWait2), explicitlyBound: false)
        for p in UInt16(40046)..<40048 {
            census.addTCP(Self.tcp("::ffff:10.77.0.1", p, "::ffff:192.0.2.7", 5432), explicitlyBound: false)
        }
        census.addTCP(Self.tcp("127.0.0.1", 40090, "127.0.0.1", 8080), explicitlyBound: false)
        for p in UInt16(40060)..<40062 {
            census.addUDP(InetDiagRecord(family: .v4, state: 7, localPort: p, remotePort: 0,
                                         local: Self.v4("0.0.0.0"), remote: Self.v4("0.0.0.0")))
        }
        census.addUDP(InetDiagRecord(family: .v6, state: 1, localPort: 40062, remotePort: 53,
                                     local: IPAddress("fd77::1")!, remote: IPAddress("2001:db8::53")!))

        var report = census.report(thresholds: Thresholds())
        let tables: [KernelCounter.Source: ProcNetParser.Table] = [
            .sockstat: try ProcNetParser.sockstat(try procfs("net/sockstat"), file: "net/sockstat"),
            .sockstat6: try ProcNetParser.sockstat(try procfs("net/sockstat6"), file: "net/sockstat6"),
            .snmp: try ProcNetParser.pairedTable(try procfs("net/snmp"), file: "net/snmp"),
        ]
        report.counters = KernelCounterValues(tables: tables).values
        let outcomes = [
            CollectorOutcome(name: "sysctl", seconds: 0.00125, error: nil),
            CollectorOutcome(name: "sockdiag", seconds: 0.0345, error: censusOK ? nil : "netlink: Operation not permitted"),
            CollectorOutcome(name: "sockstat", seconds: 0.0003, error: nil),
            CollectorOutcome(name: "snmp", seconds: 0.0004, error: nil),
            CollectorOutcome(name: "netstat", seconds: 0.0001, error: "cannot read /proc/net/netstat: No such file or directory"),
        ]
        return CollectionResult(report: censusOK ? report : nil, outcomes: outcomes)
    }

    func testGoldenExposition() throws {
        let text = MetricsExposition.render(try fixtureCollection(), top: 3, version: Self.oddVersion)
        if ProcessInfo.processInfo.environment["PORTBUDGET_UPDATE_GOLDEN"] == "1" {
            try text.write(to: Self.goldenSource, atomically: true, encoding: .utf8)
        }
        let golden = try String(contentsOf: Self.fixtures.appendingPathComponent("golden.prom"), encoding: .utf8)
        XCTAssertEqual(text, golden, "exposition differs from Fixtures/exposition/golden.prom")
    }

    func testLabelsAreEscapedAndIPv6LabelsWrittenCanonically() throws {
        let text = MetricsExposition.render(try fixtureCollection(), top: 0, version: Self.oddVersion)
        XCTAssertTrue(text.contains(#"portbudget_build_info{version="1.0.0-\"rc\"\\build\nline2"} 1"#))
        XCTAssertTrue(text.contains(
            #"portbudget_tcp_group_ports_used{local_ip="fd77::1",peer_ip="2001:db8::1",peer_port="443"} 6"#))
        // IPv4-mapped addresses are folded into IPv4, as the kernel hashes them.
        XCTAssertTrue(text.contains(
            #"portbudget_tcp_group_ports_used{local_ip="10.77.0.1",peer_ip="192.0.2.7",peer_port="5432"} 2"#))
        XCTAssertFalse(text.contains("::ffff:"))
    }

    func testTopBoundsGroupSeriesButNotAggregates() throws {
        let text = MetricsExposition.render(try fixtureCollection(), top: 1, version: "1")
        let used = text.split(separator: "\n").filter { $0.hasPrefix("portbudget_tcp_group_ports_used{") }
        XCTAssertEqual(used, [#"portbudget_tcp_group_ports_used{local_ip="127.0.0.1",peer_ip="127.0.0.1",peer_port="8080"} 30"#])
        XCTAssertTrue(text.contains("\nportbudget_tcp_groups 4\n"))
        XCTAssertTrue(text.contains("\nportbudget_tcp_max_group_utilization_ratio 0.30612244897959184\n"))
    }

    func testFailedCensusExportsOnlyCollectorHealthAndBuildInfo() throws {
        let text = MetricsExposition.render(try fixtureCollection(census: false), top: 20, version: "1")
        let families = Set(text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }
            .map { String($0.split(separator: " ")[2]) })
        XCTAssertEqual(families, ["portbudget_build_info", "portbudget_scrape_collector_duration_seconds",
                                  "portbudget_scrape_collector_success"])
        XCTAssertTrue(text.contains(#"portbudget_scrape_collector_success{collector="sockdiag"} 0"#))
        XCTAssertTrue(text.contains(#"portbudget_scrape_collector_success{collector="sysctl"} 1"#))
    }

    /// HELP and TYPE once per family, right before its samples, which stay
    /// together; counters end in _total; every family has the prefix.
    func testEveryFamilyIsWellFormed() throws {
        let text = MetricsExposition.render(try fixtureCollection(), top: 0, version: Self.oddVersion)
        XCTAssertTrue(text.hasSuffix("\n"))
        var seen: Set<String> = []
        var current: String?
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        while let line = lines.popFirst() {
            if line.hasPrefix("# HELP ") {
                let name = String(line.split(separator: " ")[2])
                XCTAssertFalse(seen.contains(name), "\(name) appears twice")
                XCTAssertTrue(name.hasPrefix("portbudget_"), name)
                let type = try XCTUnwrap(lines.popFirst())
                XCTAssertTrue(type.hasPrefix("# TYPE \(name) "), "TYPE must follow HELP for \(name)")
                if type.hasSuffix(" counter") { XCTAssertTrue(name.hasSuffix("_total"), name) }
                seen.insert(name)
                current = name
            } else {
                let name = line.prefix { $0 != "{" && $0 != " " }
                XCTAssertEqual(String(name), current, "sample outside its family: \(line)")
            }
        }
        for counter in KernelCounter.all where counter.source != .netstat {
            XCTAssertTrue(seen.contains("portbudget_" + counter.metric), counter.metric)
        }
        XCTAssertFalse(seen.contains("portbudget_tcp_tw_recycled_total"), "a failed collector's counters are absent")
    }

    func testNumbersAndSpecialValues() {
        XCTAssertEqual(ExpositionWriter.format(30), "30")
        XCTAssertEqual(ExpositionWriter.format(0.3), "0.3")
        XCTAssertEqual(ExpositionWriter.format(1e-05), "1e-05")
        XCTAssertEqual(ExpositionWriter.format(.nan), "NaN")
        XCTAssertEqual(ExpositionWriter.format(.infinity), "+Inf")
        XCTAssertEqual(ExpositionWriter.format(-.infinity), "-Inf")
        XCTAssertEqual(ExpositionWriter.escapeHelp("a\\b\nc\"d"), "a\\\\b\\nc\"d")
        XCTAssertEqual(ExpositionWriter.escapeLabelValue("a\\b\nc\"d"), "a\\\\b\\nc\\\"d")
    }

    func testEmptyFamiliesAreLeftOut() {
        var writer = ExpositionWriter()
        writer.family("portbudget_x", .gauge, help: "x", [])
        XCTAssertEqual(writer.text, "")
        XCTAssertFalse(writer.familyNames.contains("portbudget_x"))
    }
}

import XCTest
@testable import PortBudgetCore

final class ProcParserTests: XCTestCase {
    func testPortRangeAcceptsTabsAndSpaces() throws {
        XCTAssertTrue(try SysctlParser.portRange("32768\t60999\n") == (32768, 60999))
        XCTAssertTrue(try SysctlParser.portRange("  1024 65535 ") == (1024, 65535))
        XCTAssertTrue(try SysctlParser.portRange("40000 40000") == (40000, 40000))
    }

    func testPortRangeRejectsNonsenseNamingTheFile() {
        for bad in ["", "32768", "1 2 3", "a b", "0 100", "60999 32768", "1 70000", "-1 5"] {
            XCTAssertThrowsError(try SysctlParser.portRange(bad, file: "/x/ip_local_port_range"), bad) { error in
                XCTAssertEqual((error as? ParseError)?.file, "/x/ip_local_port_range", bad)
            }
        }
    }

    func testReservedPortsList() throws {
        XCTAssertEqual(try SysctlParser.reservedPorts("\n"), [])
        XCTAssertEqual(try SysctlParser.reservedPorts("8080\n"), [8080...8080])
        XCTAssertEqual(try SysctlParser.reservedPorts("40000-40009,40090,50000\n"), [40000...40009, 40090...40090, 50000...50000])
        for bad in ["a", "1-", "5-1", "1,,2", "1-2-3", "70000"] {
            XCTAssertThrowsError(try SysctlParser.reservedPorts(bad), bad)
        }
    }

    func testReservedInRangeCountsOnlyPortsInsideTheRange() {
        let sysctls = PortSysctls(rangeLow: 40000, rangeHigh: 40099, reserved: [39990...40004, 40090...40090, 50000...50000])
        XCTAssertEqual(sysctls.reservedInRange.count, 6)
        XCTAssertEqual(sysctls.reservedInRange.ports, [40000, 40001, 40002, 40003, 40004, 40090])
    }

    func testSockstatFromThisMachine() throws {
        let table = try ProcNetParser.sockstat(try Fixture.text("procfs-busy/net/sockstat"), file: "sockstat")
        XCTAssertEqual(table["TCP"]?["tw"], 4100)
        XCTAssertEqual(table["TCP"]?["orphan"], 12)
        XCTAssertEqual(table["UDP"]?["inuse"], 300)
        XCTAssertEqual(table["FRAG"]?["memory"], 0)
        XCTAssertEqual(table["sockets"]?["used"], 31415)
    }

    func testPairedTablesFromThisMachine() throws {
        let snmp = try ProcNetParser.pairedTable(try Fixture.text("procfs-busy/net/snmp"), file: "snmp")
        XCTAssertEqual(snmp["Icmp"]?["OutDestUnreachs"], 812)
        XCTAssertEqual(snmp["IcmpMsg"]?["OutType3"], 812)
        XCTAssertEqual(snmp["Tcp"]?["MaxConn"], -1)
        XCTAssertEqual(snmp["Udp"]?["NoPorts"], 800)
        let netstat = try ProcNetParser.pairedTable(try Fixture.text("procfs-busy/net/netstat"), file: "netstat")
        XCTAssertEqual(netstat["TcpExt"]?["TWRecycled"], 42)
        XCTAssertEqual(netstat["TcpExt"]?["TCPTimeWaitOverflow"], 9)
    }

    func testMalformedStatisticsFilesAreErrorsNamingFileAndLine() throws {
        let cases: [(String, (String, String) throws -> ProcNetParser.Table, String)] = [
            ("malformed/snmp-short-row", ProcNetParser.pairedTable, "line 2"),
            ("malformed/snmp-mismatched", ProcNetParser.pairedTable, "line 1"),
            ("malformed/snmp-unpaired", ProcNetParser.pairedTable, "do not pair"),
            ("malformed/sockstat-odd", ProcNetParser.sockstat, "line 1"),
            ("malformed/sockstat-nonnumeric", ProcNetParser.sockstat, "not an integer"),
        ]
        for (path, parse, expected) in cases {
            XCTAssertThrowsError(try parse(try Fixture.text(path), path), path) { error in
                let parseError = error as? ParseError
                XCTAssertEqual(parseError?.file, path)
                XCTAssertTrue(parseError?.reason.contains(expected) ?? false, "\(path): \(error)")
                XCTAssertFalse("\(error)".contains("\n"), "one line: \(error)")
            }
        }
    }

    func testKernelCounterValuesPickTheDocumentedFields() throws {
        let tables: [KernelCounter.Source: ProcNetParser.Table] = [
            .sockstat: try ProcNetParser.sockstat(try Fixture.text("procfs-busy/net/sockstat"), file: "s"),
            .sockstat6: try ProcNetParser.sockstat(try Fixture.text("procfs-busy/net/sockstat6"), file: "s6"),
            .snmp: try ProcNetParser.pairedTable(try Fixture.text("procfs-busy/net/snmp"), file: "snmp"),
            .netstat: try ProcNetParser.pairedTable(try Fixture.text("procfs-busy/net/netstat"), file: "netstat"),
        ]
        let values = KernelCounterValues(tables: tables)
        XCTAssertEqual(values["icmp_out_dest_unreachs_total"], 812)
        XCTAssertEqual(values["icmp_out_type3_total"], 812)
        XCTAssertEqual(values["udp_no_ports_total"], 800)
        XCTAssertEqual(values["tcp_attempt_fails_total"], 77)
        XCTAssertEqual(values["tcp_tw_recycled_total"], 42)
        XCTAssertEqual(values["sockstat_tcp6_inuse"], 150)
        XCTAssertEqual(values.values.count, KernelCounter.all.count)
        // A section the kernel did not print stays absent rather than zero.
        XCTAssertNil(KernelCounterValues(tables: [:])["icmp_out_type3_total"])
        for counter in KernelCounter.all where counter.kind == .counter {
            XCTAssertTrue(counter.metric.hasSuffix("_total"), counter.metric)
        }
    }
}

import XCTest
@testable import PortBudgetCore

final class ProcParserTests: XCTestCase {
    func testPortRangeAcceptsTabsAndSpaces() throws {
        XCTAssertTrue(try SysctlParser.portRange("32768\t60999\n") == (32768, 60999))
        XCTAssertTrue(try SysctlParser.portRange("  1024 65535 \n") == (1024, 65535))
        XCTAssertTrue(try SysctlParser.portRange("40000 40000\n") == (40000, 40000))
    }

    func testPortRangeRejectsNonsenseNamingTheFile() {
        for bad in ["", "32768\n", "1 2 3\n", "a b\n", "0 100\n", "60999 32768\n", "1 70000\n", "-1 5\n"] {
            XCTAssertThrowsError(try SysctlParser.portRange(bad, file: "/x/ip_local_port_range"), bad) { error in
                XCTAssertEqual((error as? ParseError)?.file, "/x/ip_local_port_range", bad)
            }
        }
    }

    func testReservedPortsList() throws {
        XCTAssertEqual(try SysctlParser.reservedPorts("\n"), [])
        XCTAssertEqual(try SysctlParser.reservedPorts("8080\n"), [8080...8080])
        XCTAssertEqual(try SysctlParser.reservedPorts("40000-40009,40090,50000\n"), [40000...40009, 40090...40090, 50000...50000])
        for bad in ["a\n", "1-\n", "5-1\n", "1,,2\n", "1-2-3\n", "70000\n"] {
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
            ("malformed/snmp-short-row", { try ProcNetParser.pairedTable($0, file: $1) }, "line 2"),
            ("malformed/snmp-mismatched", { try ProcNetParser.pairedTable($0, file: $1) }, "line 1"),
            ("malformed/snmp-unpaired", { try ProcNetParser.pairedTable($0, file: $1) }, "do not pair"),
            ("malformed/sockstat-odd", { try ProcNetParser.sockstat($0, file: $1) }, "line 1"),
            ("malformed/sockstat-nonnumeric", { try ProcNetParser.sockstat($0, file: $1) }, "not an integer"),
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
    // MARK: cut-short files

    /// Every /proc file the agent reads and the parser it goes through.
    static let kernelFiles: [(file: String, parse: @Sendable (String, String) throws -> Void)] = [
        ("net/sockstat", { _ = try ProcNetParser.table(.sockstat, $0, file: $1) }),
        ("net/sockstat6", { _ = try ProcNetParser.table(.sockstat6, $0, file: $1) }),
        ("net/snmp", { _ = try ProcNetParser.table(.snmp, $0, file: $1) }),
        ("net/netstat", { _ = try ProcNetParser.table(.netstat, $0, file: $1) }),
        ("sys/net/ipv4/ip_local_port_range", { _ = try SysctlParser.portRange($0, file: $1) }),
        ("sys/net/ipv4/ip_local_reserved_ports", { _ = try SysctlParser.reservedPorts($0, file: $1) }),
        ("sys/net/ipv4/tcp_tw_reuse", { _ = try SysctlParser.integer($0, file: $1) }),
        ("sys/net/ipv4/tcp_timestamps", { _ = try SysctlParser.integer($0, file: $1) }),
        ("sys/net/ipv4/tcp_fin_timeout", { _ = try SysctlParser.integer($0, file: $1) }),
        ("sys/net/ipv4/tcp_tw_reuse_delay", { _ = try SysctlParser.integer($0, file: $1) }),
    ]

    func assertParseError(_ body: () throws -> Void, file: String, reason: String,
                          line: UInt = #line) {
        XCTAssertThrowsError(try body(), "\(file) should fail: \(reason)", line: line) { error in
            XCTAssertEqual(error as? ParseError, ParseError(file: file, reason), line: line)
            XCTAssertEqual("\(error)", "\(file): \(reason)", line: line)
        }
    }

    func testEveryKernelFileOfTheFixturesStillParses() throws {
        for (file, parse) in Self.kernelFiles {
            XCTAssertNoThrow(try parse(try Fixture.text("procfs-default/" + file), file), file)
        }
    }

    func testAnEmptyKernelFileIsAnErrorNamingIt() {
        for (file, parse) in Self.kernelFiles {
            assertParseError({ try parse("", "/p/" + file) }, file: "/p/" + file, reason: "empty")
        }
    }

    /// A read cut short mid-line: the fixture without the tail of its last line.
    func testAKernelFileWithoutItsFinalNewlineIsTruncated() throws {
        for (file, parse) in Self.kernelFiles {
            let whole = try Fixture.text("procfs-default/" + file)
            XCTAssertTrue(whole.hasSuffix("\n"), file)
            for cut in [whole.dropLast(), whole.dropLast(2)] where !cut.isEmpty {
                assertParseError({ try parse(String(cut), "/p/" + file) }, file: "/p/" + file,
                                 reason: "truncated: last line has no newline")
            }
        }
        // "32768\t609" would otherwise pass for a port range, "1" for tcp_fin_timeout 10.
        assertParseError({ _ = try SysctlParser.portRange("32768\t609", file: "r") }, file: "r",
                         reason: "truncated: last line has no newline")
    }

    func testAKernelFileMissingASectionTheAgentReadsIsAnError() throws {
        let cases: [(KernelCounter.Source, String)] = [
            (.sockstat, "TCP"), (.sockstat, "UDP"), (.sockstat6, "TCP6"), (.sockstat6, "UDP6"),
            (.snmp, "Tcp"), (.snmp, "Udp"), (.snmp, "Icmp"), (.netstat, "TcpExt"),
        ]
        for (source, section) in cases {
            let whole = try Fixture.text("procfs-default/net/" + source.rawValue)
            let without = whole.split(separator: "\n").filter { !$0.hasPrefix(section + ":") }
            XCTAssertLessThan(without.count, whole.split(separator: "\n").count, "\(source) has \(section)")
            let file = "/p/net/" + source.rawValue
            assertParseError({ _ = try ProcNetParser.table(source, without.joined(separator: "\n") + "\n", file: file) },
                             file: file, reason: "no \(section) section")
        }
    }

    /// The kernel prints IcmpMsg only once an ICMP message was counted: a
    /// fresh namespace's snmp lacks it, and that is no failure.
    func testSnmpWithoutIcmpMsgParses() throws {
        let whole = try Fixture.text("procfs-busy/net/snmp")
        let without = whole.split(separator: "\n").filter { !$0.hasPrefix("IcmpMsg:") }
        XCTAssertEqual(without.count + 2, whole.split(separator: "\n").count)
        let table = try ProcNetParser.table(.snmp, without.joined(separator: "\n") + "\n", file: "snmp")
        XCTAssertNil(table["IcmpMsg"])
        XCTAssertEqual(table["Icmp"]?["OutDestUnreachs"], 812)
    }

    /// A fresh network namespace's files, as `ip netns exec NS cat` showed them on kernel 6.x.
    func testAFreshNamespacesFilesParse() throws {
        let sockstat = "sockets: used 3\nTCP: inuse 0 orphan 0 tw 0 alloc 0 mem 0\nUDP: inuse 0 mem 0\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n"
        XCTAssertEqual(try ProcNetParser.table(.sockstat, sockstat, file: "s")["TCP"]?["tw"], 0)
        XCTAssertEqual(try SysctlParser.reservedPorts("\n", file: "r"), [], "no reserved ports is one newline")
    }

    /// The agent's parse keeps only the counters it reads, yet the values it
    /// keeps are what a plain split of the same file says, on every fixture.
    func testKeptCountersAgreeWithAPlainReadingOfTheFile() throws {
        for fixture in ["procfs-busy", "procfs-default"] {
            for source in [KernelCounter.Source.snmp, .netstat] {
                let text = try Fixture.text("\(fixture)/net/\(source.rawValue)")
                var plain: [String: [String: Int64]] = [:]
                let lines = text.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
                for pair in stride(from: 0, to: lines.count, by: 2) {
                    let section = String(lines[pair][0].dropLast())
                    for (name, value) in zip(lines[pair].dropFirst(), lines[pair + 1].dropFirst()) {
                        plain[section, default: [:]][name] = Int64(value) ?? Int64(bitPattern: UInt64(value)!)
                    }
                }
                let full = try ProcNetParser.pairedTable(text, file: source.rawValue)
                XCTAssertEqual(full, plain, "\(fixture) \(source): every field")
                let kept = try ProcNetParser.table(source, text, file: source.rawValue)
                for (section, fields) in KernelCounter.fieldsRead[source]! {
                    XCTAssertEqual(kept[section].map { Set($0.keys) } ?? [], fields.intersection(plain[section].map { Set($0.keys) } ?? []))
                    for field in fields { XCTAssertEqual(kept[section]?[field], plain[section]?[field], "\(section) \(field)") }
                }
                XCTAssertEqual(Set(kept.values.flatMap(\.keys)).isSubset(of: Set(KernelCounter.all.map(\.field)).union(["PassiveOpens"])), true,
                               "only the exported counters and the census's PassiveOpens")
            }
        }
    }

    /// Fields the agent does not keep are still checked: a file with a bad
    /// value anywhere is refused, naming the field.
    func testUnkeptFieldsAreStillChecked() throws {
        let text = "Tcp: RtoAlgorithm ActiveOpens\nTcp: 1x 5\nUdp: NoPorts\nUdp: 3\nIcmp: OutDestUnreachs\nIcmp: 0\n"
        assertParseError({ _ = try ProcNetParser.table(.snmp, text, file: "snmp") }, file: "snmp",
                         reason: "line 2: RtoAlgorithm value \"1x\" is not an integer")
    }

    /// Counters are signed (Tcp MaxConn is -1) or wrap as unsigned; beyond 64 bits is an error.
    func testCounterValuesAtTheirLimits() throws {
        let values: [(String, Int64?)] = [
            ("-1", -1), ("0", 0), ("+7", 7), ("9223372036854775807", .max), ("9223372036854775808", .min),
            ("18446744073709551615", -1), ("-9223372036854775808", .min),
            ("18446744073709551616", nil), ("-9223372036854775809", nil), ("-", nil), ("1-", nil), ("0x10", nil),
        ]
        for (raw, expected) in values {
            let text = "TcpExt: TWRecycled\nTcpExt: \(raw)\n"
            if let expected {
                XCTAssertEqual(try ProcNetParser.table(.netstat, text, file: "n")["TcpExt"]?["TWRecycled"], expected, raw)
            } else {
                XCTAssertThrowsError(try ProcNetParser.table(.netstat, text, file: "n"), raw)
            }
        }
    }
}

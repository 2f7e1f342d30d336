import Foundation
import XCTest
@testable import PortBudgetCore

/// Diagnosis over synthetic censuses: each cause alone, the healthy host,
/// the counter-examples that must not be blamed, and the ranking of mixed
/// causes. The kernel scenarios (DiagnosisKernelTests) build the same causes
/// with real sockets.
final class DiagnosisTests: XCTestCase {
    let client = IPAddress("10.0.0.1")!
    let backend = IPAddress("10.0.0.2")!
    let loopback = IPAddress("127.0.0.1")!
    let small = PortSysctls(rangeLow: 40000, rangeHigh: 40099)

    func tcp(_ port: UInt16, to peer: IPAddress? = nil, _ peerPort: UInt16 = 80, state: UInt8 = TCPState.established,
             expiresMs: UInt32 = 0, from local: IPAddress? = nil) -> InetDiagRecord {
        let local = local ?? client
        return InetDiagRecord(family: local.family, state: state, localPort: port, remotePort: peerPort, local: local,
                              remote: peer ?? backend, interface: 0, expiresMs: expiresMs)
    }

    func listener(_ port: UInt16) -> InetDiagRecord {
        tcp(port, to: IPAddress("0.0.0.0")!, 0, state: TCPState.listen)
    }

    func udp(_ port: UInt16) -> InetDiagRecord {
        InetDiagRecord(family: .v4, state: 7, localPort: port, remotePort: 0, local: IPAddress("0.0.0.0")!,
                       remote: IPAddress("0.0.0.0")!, interface: 0, expiresMs: 0)
    }

    func report(_ sysctls: PortSysctls? = nil, _ build: (inout PortCensus) -> Void) -> PortBudgetReport {
        var census = PortCensus(sysctls: sysctls ?? small)
        build(&census)
        return census.report(thresholds: Thresholds())
    }

    func only(_ findings: [Finding], _ id: Finding.ID, file: StaticString = #filePath, line: UInt = #line) throws -> Finding {
        let matching = findings.filter { $0.id == id }
        XCTAssertEqual(matching.count, 1, "\(id) in \(findings.map(\.id))", file: file, line: line)
        return try XCTUnwrap(matching.first, file: file, line: line)
    }

    func ports(_ range: Range<Int>) -> [UInt16] { range.map { UInt16($0) } }

    // MARK: - Healthy

    func testAHealthyHostHasNoFinding() {
        let r = report { c in
            for p in ports(40000..<40030) { c.addTCP(tcp(p), explicitlyBound: false) }
            for p in ports(40050..<40060) { c.addUDP(udp(p)) }
        }
        XCTAssertEqual(Diagnosis.findings(for: r), [])
    }

    func testAListenerInRangeIsInfoWhileNothingIsNearALimit() throws {
        let r = report { c in
            c.addTCP(listener(40010), explicitlyBound: true)
            c.addTCP(listener(40011), explicitlyBound: true)
            c.addTCP(listener(40020), explicitlyBound: true)
            for p in ports(40030..<40070) { c.addTCP(tcp(p), explicitlyBound: false) }
        }
        let findings = Diagnosis.findings(for: r)
        XCTAssertEqual(findings.map(\.id), [.listenerInRange])
        let f = try only(findings, .listenerInRange)
        XCTAssertEqual(f.severity, .info)
        XCTAssertEqual(f.scope.kind, .range)
        XCTAssertEqual(f.ports, [40010, 40011, 40020])
        XCTAssertEqual(f.evidence["listener_ports_in_range"], 3)
        XCTAssertEqual(f.commands, ["sysctl -w net.ipv4.ip_local_reserved_ports=40010-40011,40020"])
        XCTAssertTrue(f.cause.contains("40010-40011, 40020"), f.cause)
    }

    func testTheReserveCommandKeepsWhatIsReservedAlready() throws {
        var sysctls = small
        sysctls.reserved = [40090...40095, 50000...50000]
        let r = report(sysctls) { c in c.addTCP(listener(40010), explicitlyBound: true) }
        XCTAssertEqual(r.portRange.reservedList, "40090-40095,50000")
        XCTAssertEqual(try only(Diagnosis.findings(for: r), .listenerInRange).commands,
                       ["sysctl -w net.ipv4.ip_local_reserved_ports=40090-40095,50000,40010"])
    }

    func testAListenerInRangeWarnsOnceBindHeadroomIsLow() throws {
        let r = report { c in
            c.addTCP(listener(40010), explicitlyBound: true)
            // Plain connects to many destinations sharing ports: bind at 90%, no group hot.
            for (i, p) in ports(40011..<40100).enumerated() {
                for peerPort in UInt16(1)...3 { c.addTCP(tcp(p, 8000 + peerPort + UInt16(i % 7) * 10), explicitlyBound: false) }
            }
        }
        XCTAssertEqual(r.thresholds.status(r.tcp.bindUtilization), .warning)
        XCTAssertEqual(try only(Diagnosis.findings(for: r), .listenerInRange).severity, .warning)
    }

    // MARK: - One cause each

    /// Churn (most ports in TIME_WAIT): the fix carries the reuse arithmetic.
    func testAHotDestinationCarriesTheArithmetic() throws {
        var sysctls = small
        sysctls.tcpTwReuse = 0
        let r = report(sysctls) { c in
            for p in ports(40000..<40090) { c.addTCP(tcp(p, state: TCPState.timeWait, expiresMs: 30_000), explicitlyBound: false) }
        }
        let f = try only(Diagnosis.findings(for: r), .hotDestination)
        XCTAssertEqual(f.severity, .warning)
        XCTAssertEqual(f.scope, Finding.Scope(r.tcp.groups[0]))
        XCTAssertEqual(f.scope.name, "TCP 10.0.0.1 → 10.0.0.2:80")
        XCTAssertEqual(f.evidence["used"], 90)
        XCTAssertEqual(f.evidence["capacity"], 100)
        XCTAssertEqual(try XCTUnwrap(f.evidence["sustainable_connects_per_second"]), 100.0 / 60, accuracy: 1e-9)
        XCTAssertEqual(f.portsLeft, 10)
        XCTAssertTrue(f.fix.contains("100 ports ÷ 60 s = 1.67 new connections per second"), f.fix)
    }

    func testANarrowRangeSuggestsTheDefaultRangeAndTheProjectedLoad() throws {
        let r = report { c in
            c.addTCP(listener(40010), explicitlyBound: true)
            for p in ports(40011..<40091) { c.addTCP(tcp(p), explicitlyBound: false) }
        }
        let f = try only(Diagnosis.findings(for: r), .narrowRange)
        XCTAssertEqual(f.severity, .warning)
        XCTAssertEqual(f.evidence["range_size"], 100)
        XCTAssertEqual(f.evidence["kernel_default_size"], 28232)
        XCTAssertEqual(f.evidence["suggested_low"], 32768)
        XCTAssertEqual(f.evidence["suggested_high"], 60999)
        // The destination, 80 used of 99, is the worst limit; widening adds 28132 ports.
        XCTAssertEqual(f.evidence["limit_utilization"], 80.0 / 99)
        XCTAssertEqual(try XCTUnwrap(f.evidence["projected_utilization"]), 80.0 / (99 + 28132), accuracy: 1e-12)
        XCTAssertEqual(f.ports, [40010])
        XCTAssertEqual(f.commands, ["sysctl -w net.ipv4.ip_local_reserved_ports=40010",
                                    "sysctl -w net.ipv4.ip_local_port_range=\"32768 60999\""])
    }

    func testARangeOutsideTheDefaultIsWidenedToCoverBoth() throws {
        let r = report(PortSysctls(rangeLow: 61000, rangeHigh: 61099)) { c in
            for p in ports(61000..<61096) { c.addTCP(tcp(p), explicitlyBound: false) }
        }
        let f = try only(Diagnosis.findings(for: r), .narrowRange)
        XCTAssertEqual(f.severity, .critical)
        XCTAssertEqual(f.commands, ["sysctl -w net.ipv4.ip_local_port_range=\"32768 61099\""])
    }

    func testNoNarrowRangeAtTheDefaultRange() {
        let r = report(PortSysctls(rangeLow: 32768, rangeHigh: 60999)) { c in
            for p in ports(32768..<(32768 + 27000)) { c.addTCP(tcp(p), explicitlyBound: false) }
        }
        XCTAssertEqual(Diagnosis.findings(for: r).map(\.id), [.hotDestination])
    }

    func testTimeWaitOffLoopbackWithReuseTwoSuggestsReuseOne() throws {
        var sysctls = small
        sysctls.tcpTwReuse = 2
        let r = report(sysctls) { c in
            for p in ports(40000..<40090) {
                c.addTCP(tcp(p, state: TCPState.timeWait, expiresMs: 30_000), explicitlyBound: false)
            }
        }
        let f = try only(Diagnosis.findings(for: r), .timeWait)
        XCTAssertEqual(f.severity, .warning)
        XCTAssertEqual(f.evidence["time_wait"], 90)
        XCTAssertEqual(f.evidence["used"], 90)
        XCTAssertEqual(f.evidence["tcp_tw_reuse"], 2)
        XCTAssertEqual(f.evidence["loopback"], 0)
        XCTAssertEqual(f.commands, ["sysctl -w net.ipv4.tcp_tw_reuse=1"])
        XCTAssertTrue(f.cause.contains("only for loopback"), f.cause)
        XCTAssertTrue(f.fix.contains("Never tcp_tw_recycle"), f.fix)
        XCTAssertFalse(f.commands.joined().contains("recycle"))
    }

    func testTimeWaitOnLoopbackWithReuseOffSuggestsTheDefaultTwo() throws {
        var sysctls = small
        sysctls.tcpTwReuse = 0
        let r = report(sysctls) { c in
            for p in ports(40000..<40096) {
                c.addTCP(tcp(p, to: loopback, state: TCPState.timeWait, expiresMs: 30_000, from: loopback),
                         explicitlyBound: false)
            }
        }
        let f = try only(Diagnosis.findings(for: r), .timeWait)
        XCTAssertEqual(f.severity, .critical)
        XCTAssertEqual(f.evidence["loopback"], 1)
        XCTAssertEqual(f.commands, ["sysctl -w net.ipv4.tcp_tw_reuse=2"])
    }

    func testTimeWaitWithoutTimestampsAsksForTimestamps() throws {
        var sysctls = small
        sysctls.tcpTwReuse = 1
        sysctls.tcpTimestamps = 0
        let r = report(sysctls) { c in
            for p in ports(40000..<40090) {
                c.addTCP(tcp(p, state: TCPState.timeWait, expiresMs: 30_000), explicitlyBound: false)
            }
        }
        let f = try only(Diagnosis.findings(for: r), .timeWait)
        XCTAssertEqual(f.commands, ["sysctl -w net.ipv4.tcp_timestamps=1"])

        sysctls.tcpTwReuse = 0
        let both = report(sysctls) { c in
            for p in ports(40000..<40090) {
                c.addTCP(tcp(p, state: TCPState.timeWait, expiresMs: 30_000), explicitlyBound: false)
            }
        }
        let g = try only(Diagnosis.findings(for: both), .timeWait)
        XCTAssertEqual(g.commands, ["sysctl -w net.ipv4.tcp_tw_reuse=1", "sysctl -w net.ipv4.tcp_timestamps=1"])
        XCTAssertTrue(g.cause.contains("tcp_tw_reuse=0 (off); tcp_timestamps=0, and reuse needs TCP timestamps"), g.cause)
    }

    /// Reused TIME_WAIT frees the destination, not bind(): its entries still
    /// hold their ports against bind(addr, 0), so only that limit is named.
    func testTimeWaitTheKernelReusesIsNoTimeWaitFinding() {
        var sysctls = small
        sysctls.tcpTwReuse = 1
        let r = report(sysctls) { c in
            for p in ports(40000..<40090) {
                c.addTCP(tcp(p, state: TCPState.timeWait, expiresMs: 30_000), explicitlyBound: false)
            }
        }
        XCTAssertEqual(r.tcp.groups[0].used, 0)
        let findings = Diagnosis.findings(for: r)
        XCTAssertEqual(findings.map(\.id), [.narrowRange])
        XCTAssertTrue(findings[0].cause.contains("TCP host-wide bind is at 90%"), findings[0].cause)
    }

    func testTimeWaitUnderHalfOfAHotGroupIsNotTheCause() {
        var sysctls = small
        sysctls.tcpTwReuse = 0
        let r = report(sysctls) { c in
            for p in ports(40000..<40050) { c.addTCP(tcp(p), explicitlyBound: false) }
            for p in ports(40050..<40090) {
                c.addTCP(tcp(p, state: TCPState.timeWait, expiresMs: 30_000), explicitlyBound: false)
            }
        }
        XCTAssertEqual(Set(Diagnosis.findings(for: r).map(\.id)), [.hotDestination, .narrowRange])
    }

    func testFinWait2NamesThePeerAndTheTimeout() throws {
        let r = report { c in
            for p in ports(40000..<40090) { c.addTCP(tcp(p, state: TCPState.finWait2), explicitlyBound: false) }
        }
        let f = try only(Diagnosis.findings(for: r), .finWait2)
        XCTAssertEqual(f.severity, .warning)
        XCTAssertEqual(f.evidence["fin_wait2"], 90)
        XCTAssertEqual(f.evidence["fin_timeout_seconds"], 60)
        XCTAssertEqual(f.commands, ["sysctl -w net.ipv4.tcp_fin_timeout=15"])
        XCTAssertTrue(f.cause.contains("10.0.0.2 never closed its side"), f.cause)

        var short = small
        short.tcpFinTimeoutSeconds = 10
        let r2 = report(short) { c in
            for p in ports(40000..<40090) { c.addTCP(tcp(p, state: TCPState.finWait2), explicitlyBound: false) }
        }
        XCTAssertEqual(try only(Diagnosis.findings(for: r2), .finWait2).commands, [])
    }

    /// Cloudflare's case: bind(addr, 0) + connect() over ten backends, nine
    /// each — every group at 9%, yet bind() has 10 ports left.
    func testBindBeforeConnectIsInferredFromPortsCarryingOneConnection() throws {
        let r = report { c in
            for (i, p) in ports(40000..<40090).enumerated() {
                c.addTCP(tcp(p, to: loopback, 8081 + UInt16(i / 9), from: loopback), explicitlyBound: false)
            }
        }
        XCTAssertEqual(r.tcp.singleConnectionPorts, 90)
        XCTAssertEqual(r.tcp.autoConnections, 90)
        let findings = Diagnosis.findings(for: r)
        // The narrow range is the root cause and leads.
        XCTAssertEqual(findings.map(\.id), [.narrowRange, .bindBeforeConnect])
        let f = findings[1]
        XCTAssertEqual(f.severity, .warning)
        XCTAssertEqual(f.scope.kind, .tcpBind)
        XCTAssertEqual(f.evidence["bound_ports"], 90)
        XCTAssertEqual(f.evidence["single_connection_ports"], 90)
        XCTAssertEqual(f.evidence["destinations"], 10)
        XCTAssertEqual(f.evidence["busiest_destination_ports"], 9)
        XCTAssertEqual(f.evidence["bind_before_connect_ports"], 81)
        XCTAssertEqual(f.portsLeft, 10)
        XCTAssertTrue(f.fix.contains("IP_BIND_ADDRESS_NO_PORT"), f.fix)
    }

    /// Plain connect() shares ports between destinations: the same bind
    /// pressure with every port carrying several connections is no bind().
    func testSharedPortsAreNotBlamedOnBindBeforeConnect() {
        let r = report { c in
            for p in ports(40000..<40090) {
                for peerPort in UInt16(8081)...8090 { c.addTCP(tcp(p, to: loopback, peerPort, from: loopback), explicitlyBound: false) }
            }
        }
        XCTAssertEqual(r.tcp.singleConnectionPorts, 0)
        XCTAssertFalse(Diagnosis.findings(for: r).contains { $0.id == .bindBeforeConnect })
    }

    func testOneBusyDestinationIsNotBindBeforeConnect() {
        let r = report { c in for p in ports(40000..<40090) { c.addTCP(tcp(p), explicitlyBound: false) } }
        XCTAssertFalse(Diagnosis.findings(for: r).contains { $0.id == .bindBeforeConnect })
    }

    func testExplicitPortsBeforeConnectAreCountedPerSocket() throws {
        let r = report { c in
            for (i, p) in ports(40000..<40060).enumerated() {
                c.addTCP(tcp(p, 9000 + UInt16(i)), explicitlyBound: true)
            }
            for p in ports(40060..<40095) { c.addTCP(tcp(p), explicitlyBound: false) }
        }
        XCTAssertEqual(r.tcp.explicitConnectedPorts, 60)
        XCTAssertEqual(r.tcp.groups[0].capacity, 40)
        let f = try only(Diagnosis.findings(for: r), .bindBeforeConnect)
        XCTAssertEqual(f.severity, .critical)  // bind at 95%
        XCTAssertEqual(f.evidence["explicit_connected_ports"], 60)
        XCTAssertEqual(f.portsLeft, 5)
    }

    func testAcceptedConnectionsOfAListenerInRangeAreNotBindBeforeConnect() {
        let r = report { c in
            c.addTCP(listener(40050), explicitlyBound: true)
            for peerPort in UInt16(30000)..<30200 { c.addTCP(tcp(40050, peerPort), explicitlyBound: true) }
        }
        XCTAssertEqual(r.tcp.explicitConnectedPorts, 0)
        XCTAssertEqual(Diagnosis.findings(for: r).map(\.id), [.listenerInRange])
    }

    func testUDPPressureSaysWhatFailsNext() throws {
        let r = report { c in for p in ports(40000..<40085) { c.addUDP(udp(p)) } }
        let findings = Diagnosis.findings(for: r)
        XCTAssertEqual(findings.map(\.id), [.narrowRange, .udpPressure])
        let f = findings[1]
        XCTAssertEqual(f.severity, .warning)
        XCTAssertEqual(f.scope.kind, .udp)
        XCTAssertEqual(f.evidence["bound_ports"], 85)
        XCTAssertEqual(f.evidence["sockets"], 85)
        XCTAssertTrue(f.cause.contains("DNS lookups and NTP are what fail next"), f.cause)
    }

    // MARK: - Ranking, thresholds, contract

    /// Critical before warning; within a severity, the root cause (a narrow
    /// range) first, then the finding whose limit has fewest ports left (the
    /// listener's restart risk rides on TCP bind, 3 left, before UDP's 18);
    /// on a tie, the specific cause first.
    func testMixedCausesRankBySeverityThenWhatFailsFirst() {
        var sysctls = small
        sysctls.tcpTwReuse = 0
        let r = report(sysctls) { c in
            c.addTCP(listener(40099), explicitlyBound: true)
            for p in ports(40000..<40096) {
                c.addTCP(tcp(p, state: TCPState.timeWait, expiresMs: 30_000), explicitlyBound: false)
            }
            for p in ports(40000..<40082) { c.addUDP(udp(p)) }
        }
        let findings = Diagnosis.findings(for: r)
        XCTAssertEqual(findings.map(\.id), [.narrowRange, .timeWait, .hotDestination, .listenerInRange, .udpPressure])
        XCTAssertEqual(findings.map(\.severity), [.critical, .critical, .critical, .warning, .warning])
    }

    func testTheReportThresholdsDecide() {
        var r = report { c in for p in ports(40000..<40070) { c.addTCP(tcp(p), explicitlyBound: false) } }
        XCTAssertEqual(Diagnosis.findings(for: r), [])
        r.thresholds = Thresholds(warning: 0.6, critical: 0.9)
        XCTAssertEqual(Diagnosis.findings(for: r).map(\.id), [.narrowRange, .hotDestination])
    }

    func testPerDestinationFindingsAreBounded() {
        var sysctls = small
        sysctls.tcpTwReuse = 0
        let r = report(sysctls) { c in
            for p in ports(40000..<40090) {
                for peerPort in UInt16(1)...20 {
                    c.addTCP(tcp(p, peerPort, state: TCPState.timeWait, expiresMs: 30_000), explicitlyBound: false)
                }
            }
        }
        let findings = Diagnosis.findings(for: r)
        XCTAssertEqual(findings.filter { $0.id == .hotDestination }.count, Diagnosis.maxDestinationsPerCause)
        XCTAssertEqual(findings.filter { $0.id == .timeWait }.count, Diagnosis.maxDestinationsPerCause)
        // check diagnoses before its --top cut: one listed group, five destinations named.
        let cut = r.diagnosed().limitingGroups(to: 1)
        XCTAssertEqual(cut.tcp.groups.count, 1)
        XCTAssertEqual(cut.findings, findings)
    }

    func testFindingsAreTheTopLevelJSONListAndRoundTrip() throws {
        let r = report { c in
            c.addTCP(listener(40010), explicitlyBound: true)
            for p in ports(40011..<40091) { c.addTCP(tcp(p), explicitlyBound: false) }
        }.diagnosed()
        let data = try JSONEncoder().encode(r)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        let list = try XCTUnwrap(object["findings"] as? [[String: Any]])
        XCTAssertEqual(list.map { $0["id"] as? String }, ["narrow_range", "hot_destination", "listener_in_range"])
        XCTAssertEqual(list[1]["runbook"] as? String, "docs/runbook.md#hot_destination")
        XCTAssertEqual((list[1]["scope"] as? [String: Any])?["peer_port"] as? Int, 80)
        XCTAssertEqual(try JSONDecoder().decode(PortBudgetReport.self, from: data), r)
    }

    /// Every id's `runbook` anchor has its section in docs/runbook.md.
    func testEveryFindingHasARunbookSection() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let runbook = try String(contentsOf: root.appendingPathComponent("docs/runbook.md"), encoding: .utf8)
        let headings = Set(runbook.split(separator: "\n").filter { $0.hasPrefix("#") }
            .map { $0.drop { $0 == "#" }.trimmingSpaces() })
        for id in Finding.ID.allCases {
            XCTAssertTrue(headings.contains(id.rawValue), "docs/runbook.md has no section \(id.rawValue)")
        }
    }
}

import Foundation
import XCTest
import PortBudgetCore

/// Each cause built with real sockets in a private namespace with a 100-port
/// range (40000-40099), then `portbudget check --json` must name it, with its
/// evidence and its fix; where the fix is a sysctl, the test applies the
/// command exactly as printed and the finding must go away.
final class DiagnosisKernelTests: XCTestCase {
    func findings(_ ns: NetworkNamespace, file: StaticString = #filePath, line: UInt = #line) throws -> [Finding] {
        try XCTUnwrap(try ns.check().report.findings, "check --json has no findings list", file: file, line: line)
    }

    func only(_ findings: [Finding], _ id: Finding.ID, file: StaticString = #filePath, line: UInt = #line) throws -> Finding {
        let matching = findings.filter { $0.id == id }
        XCTAssertEqual(matching.count, 1, "\(id) in \(findings.map(\.id))", file: file, line: line)
        return try XCTUnwrap(matching.first, file: file, line: line)
    }

    /// Runs a fix's `sysctl -w key=value` command inside the namespace, as printed.
    func apply(_ command: String, in ns: NetworkNamespace, file: StaticString = #filePath, line: UInt = #line) throws {
        let prefix = "sysctl -w "
        guard command.hasPrefix(prefix), let eq = command.firstIndex(of: "=") else {
            XCTFail("not a sysctl command: \(command)", file: file, line: line)
            return
        }
        let key = String(command[command.index(command.startIndex, offsetBy: prefix.count)..<eq])
        var value = String(command[command.index(after: eq)...])
        if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = String(value.dropFirst().dropLast()) }
        try ns.sysctl(key, value)
    }

    func assertNothingAboveInfo(_ findings: [Finding], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(findings.filter { $0.severity != .info }.map(\.id), [], "\(findings.map(\.cause))",
                       file: file, line: line)
    }

    func testAHealthyNamespaceHasNoFinding() throws {
        let ns = try NetworkNamespace()
        try ns.hold(["listen", "--at", "127.0.0.1:8080", "--at", "10.77.0.1:8081"])
        try ns.hold(["connect", "--to", "127.0.0.1:8080", "--count", "30", "--hold"])
        try ns.hold(["connect", "--to", "10.77.0.1:8081", "--count", "20", "--bind", "10.77.0.1:0", "--hold"])
        try ns.hold(["udp", "--to", "127.0.0.1:5353", "--count", "30", "--hold"])
        let (report, status) = try ns.check()
        XCTAssertEqual(status, 0)
        XCTAssertEqual(report.findings, [])
    }

    func testListenerInRangeIsInfoAndItsReserveCommandWorks() throws {
        let ns = try NetworkNamespace(reserved: "40090-40091")
        try ns.hold(["listen", "--at", "127.0.0.1:8080", "--at", "127.0.0.1:40010", "--at", "127.0.0.1:40011",
                     "--at", "[::1]:40020"])
        try ns.hold(["connect", "--to", "127.0.0.1:8080", "--count", "30", "--hold"])

        let f = try only(try findings(ns), .listenerInRange)
        XCTAssertEqual(try findings(ns).map(\.id), [.listenerInRange])
        XCTAssertEqual(f.severity, .info)
        XCTAssertEqual(f.ports, [40010, 40011, 40020])
        XCTAssertEqual(f.evidence["listener_ports_in_range"], 3)
        XCTAssertEqual(f.commands, ["sysctl -w net.ipv4.ip_local_reserved_ports=40090-40091,40010-40011,40020"])

        try apply(f.commands[0], in: ns)
        let (after, status) = try ns.check()
        XCTAssertEqual(after.findings, [])
        XCTAssertEqual(after.portRange.usable, 95)
        XCTAssertEqual(status, 0)
    }

    func testTimeWaitOffLoopbackAndTheReuseItAsksFor() throws {
        let ns = try NetworkNamespace(twReuse: 2)
        try ns.hold(["listen", "--at", "10.77.0.1:8080", "--accept", "close"])
        let built = try ns.churnTimeWait(to: "10.77.0.1:8080", count: 90)
        XCTAssertGreaterThanOrEqual(built, 80, "TIME_WAIT entries to diagnose")
        guard built >= 80 else { return }

        let all = try findings(ns)
        let f = try only(all, .timeWait)
        // The 100-port range is the root cause and leads; the destination's cause comes next.
        XCTAssertEqual(all.prefix(2).map(\.id), [.narrowRange, .timeWait], "\(all.map(\.id))")
        XCTAssertEqual(f.severity, .warning)
        XCTAssertEqual(f.scope.peerIP, "10.77.0.1")
        XCTAssertEqual(f.scope.peerPort, 8080)
        XCTAssertEqual(f.evidence["time_wait"], Double(built))
        XCTAssertEqual(f.evidence["used"], Double(built))
        XCTAssertEqual(f.evidence["capacity"], 100)
        XCTAssertEqual(f.evidence["tcp_tw_reuse"], 2)
        XCTAssertEqual(f.evidence["loopback"], 0)
        XCTAssertEqual(f.commands, ["sysctl -w net.ipv4.tcp_tw_reuse=1"])
        let hot = try only(all, .hotDestination)
        XCTAssertEqual(try XCTUnwrap(hot.evidence["sustainable_connects_per_second"]), 100.0 / 60, accuracy: 1e-9)

        try apply(f.commands[0], in: ns)
        usleep(1_200_000)  // older than tcp_tw_reuse_delay
        let after = try findings(ns)
        XCTAssertFalse(after.contains { $0.scope.kind == .tcpDestination }, "\(after.map(\.id))")
        // The kernel agrees: every port is open to this destination again.
        XCTAssertEqual(try ns.probeConnects(to: "10.77.0.1:8080").made, 100)
    }

    func testFinWait2NamesThePeerThatDoesNotClose() throws {
        let ns = try NetworkNamespace(twReuse: 1)
        try ns.hold(["listen", "--at", "127.0.0.1:8080", "--accept", "hold"])
        XCTAssertEqual(try ns.load(["connect", "--to", "127.0.0.1:8080", "--count", "90", "--churn"]).made, 90)
        let built = try ns.settledSockets(state: "fin-wait-2", expected: 90)
        XCTAssertGreaterThanOrEqual(built, 80, "FIN_WAIT2 sockets to diagnose")
        guard built >= 80 else { return }

        let all = try findings(ns)
        let f = try only(all, .finWait2)
        XCTAssertEqual(all.prefix(2).map(\.id), [.narrowRange, .finWait2], "\(all.map(\.id))")
        XCTAssertEqual(f.severity, .warning)
        XCTAssertEqual(f.scope.peerIP, "127.0.0.1")
        XCTAssertEqual(f.evidence["fin_wait2"], Double(built))
        XCTAssertEqual(f.evidence["used"], Double(built))
        XCTAssertEqual(f.evidence["fin_timeout_seconds"], 60)
        XCTAssertEqual(f.commands, ["sysctl -w net.ipv4.tcp_fin_timeout=15"])
        XCTAssertTrue(f.cause.contains("127.0.0.1 never closed its side"), f.cause)
        // tcp_tw_reuse=1 does nothing for FIN_WAIT2: no time_wait finding.
        XCTAssertFalse(all.contains { $0.id == .timeWait })
    }

    /// Cloudflare's case: bind(127.0.0.1, 0) then connect() to ten backends,
    /// nine each. Every destination is at 9%; bind() has 10 ports left.
    func testBindBeforeConnectIsNamedFromOneConnectionPerPort() throws {
        let ns = try NetworkNamespace()
        try ns.hold(["listen", "--at", "127.0.0.1:8081-8090"])
        XCTAssertEqual(try ns.hold(["connect", "--to", "127.0.0.1:8081-8090", "--count", "9", "--bind", "127.0.0.1:0",
                                    "--hold"]).made, 90)

        let all = try findings(ns)
        XCTAssertEqual(all.map(\.id), [.narrowRange, .bindBeforeConnect])
        let f = all[1]
        XCTAssertEqual(f.severity, .warning)
        XCTAssertEqual(f.scope.kind, .tcpBind)
        XCTAssertEqual(f.evidence["bound_ports"], 90)
        XCTAssertEqual(f.evidence["single_connection_ports"], 90)
        XCTAssertEqual(f.evidence["destinations"], 10)
        XCTAssertEqual(f.evidence["busiest_destination_ports"], 9)
        XCTAssertEqual(f.evidence["bind_before_connect_ports"], 81)
        XCTAssertEqual(f.portsLeft, 10)
        XCTAssertTrue(f.fix.contains("IP_BIND_ADDRESS_NO_PORT"), f.fix)

        let text = ns.run([Binaries.portbudget, "check"])
        XCTAssertEqual(text.status, 1)
        XCTAssertTrue(text.stdout.contains("Why, and what to do\n\nWARNING narrow_range (port range)"), text.stdout)
        XCTAssertTrue(text.stdout.contains("\nWARNING bind_before_connect (TCP host-wide bind)"), text.stdout)
    }

    /// The same bind pressure from plain connect()s: the kernel shares ports
    /// between destinations, so nothing is blamed on bind().
    func testPlainConnectsSharingPortsAreNotBindBeforeConnect() throws {
        let ns = try NetworkNamespace()
        try ns.hold(["listen", "--at", "127.0.0.1:8081-8090"])
        XCTAssertEqual(try ns.hold(["connect", "--to", "127.0.0.1:8081-8090", "--count", "85", "--hold"]).made, 850)

        let (report, _) = try ns.check()
        XCTAssertGreaterThan(report.tcp.autoConnections, report.tcp.autoConnectionPorts)
        let all = try XCTUnwrap(report.findings)
        XCTAssertFalse(all.contains { $0.id == .bindBeforeConnect }, "\(all.map(\.cause))")
        XCTAssertEqual(all.filter { $0.id == .hotDestination }.count, Diagnosis.maxDestinationsPerCause)
    }

    func testHotDestinationInANarrowRangeAndTheWiderRangeFixesIt() throws {
        let ns = try NetworkNamespace()
        try ns.hold(["listen", "--at", "127.0.0.1:8080", "--at", "127.0.0.1:40050"])
        XCTAssertEqual(try ns.hold(["connect", "--to", "127.0.0.1:8080", "--count", "90", "--hold"]).made, 90)

        let all = try findings(ns)
        XCTAssertEqual(all.map(\.id), [.narrowRange, .hotDestination, .listenerInRange])
        XCTAssertEqual(all.map(\.severity), [.warning, .warning, .warning])
        let hot = all[1]
        XCTAssertEqual(hot.evidence["used"], 90)
        XCTAssertEqual(hot.evidence["capacity"], 99)
        XCTAssertEqual(try XCTUnwrap(hot.evidence["sustainable_connects_per_second"]), 99.0 / 60, accuracy: 1e-9)
        // 90 live connections, no TIME_WAIT: concurrency, so more budgets lead, not keep-alive.
        XCTAssertTrue(hot.fix.hasPrefix("Each added destination IP or port, or source IP, is a budget of its own of 99 ports"),
                      hot.fix)
        let narrow = all[0]
        XCTAssertEqual(narrow.evidence["suggested_low"], 32768)
        XCTAssertEqual(narrow.evidence["suggested_high"], 60999)
        XCTAssertEqual(narrow.ports, [40050])
        XCTAssertEqual(narrow.commands, ["sysctl -w net.ipv4.ip_local_reserved_ports=40050",
                                         "sysctl -w net.ipv4.ip_local_port_range=\"32768 60999\""])

        for command in narrow.commands { try apply(command, in: ns) }
        let (after, status) = try ns.check()
        XCTAssertEqual(status, 0)
        XCTAssertEqual(after.findings, [])
        XCTAssertEqual(after.portRange.usable, 28231)
        XCTAssertEqual(after.tcp.groups.first?.capacity, 28231)
    }

    func testUDPPressureAndTheWiderRange() throws {
        let ns = try NetworkNamespace()
        XCTAssertEqual(try ns.hold(["udp", "--to", "127.0.0.1:5353", "--count", "60", "--hold"]).made, 60)
        XCTAssertEqual(try ns.hold(["udp", "--bind", "[::]:0", "--count", "30", "--hold"]).made, 30)

        let all = try findings(ns)
        XCTAssertEqual(all.map(\.id), [.narrowRange, .udpPressure])
        let f = all[1]
        XCTAssertEqual(f.severity, .warning)
        XCTAssertEqual(f.evidence["bound_ports"], 90)
        XCTAssertEqual(f.evidence["sockets"], 90)
        XCTAssertEqual(f.portsLeft, 10)
        XCTAssertTrue(f.cause.contains("DNS lookups and NTP are what fail next"), f.cause)

        for command in all[0].commands { try apply(command, in: ns) }
        assertNothingAboveInfo(try findings(ns))
    }

    /// Loopback TIME_WAIT with reuse off fills one destination (critical),
    /// UDP runs high (warning), a listener sits in the range: the TIME_WAIT
    /// cause comes first, the listener's restart risk and UDP after.
    func testMixedCausesAreRankedAndFixedOneByOne() throws {
        let ns = try NetworkNamespace(twReuse: 0)
        try ns.hold(["listen", "--at", "127.0.0.1:8080", "--at", "127.0.0.1:40099", "--accept", "close"])
        XCTAssertEqual(try ns.hold(["udp", "--to", "127.0.0.1:5353", "--count", "82", "--hold"]).made, 82)
        let built = try ns.churnTimeWait(to: "127.0.0.1:8080", count: 96)
        XCTAssertGreaterThanOrEqual(built, 95, "TIME_WAIT entries for a critical destination")
        guard built >= 95 else { return }

        let all = try findings(ns)
        XCTAssertEqual(all.map(\.id), [.narrowRange, .timeWait, .hotDestination, .listenerInRange, .udpPressure])
        XCTAssertEqual(all.map(\.severity), [.critical, .critical, .critical, .warning, .warning])
        XCTAssertEqual(all[1].commands, ["sysctl -w net.ipv4.tcp_tw_reuse=2"])
        XCTAssertEqual(all[1].evidence["loopback"], 1)

        try apply(all[1].commands[0], in: ns)
        usleep(1_200_000)
        let after = try findings(ns)
        XCTAssertFalse(after.contains { $0.scope.kind == .tcpDestination }, "\(after.map(\.id))")
        XCTAssertTrue(after.contains { $0.id == .udpPressure })
    }

    /// `serve` exports the same findings as `portbudget_finding` series.
    func testMetricsCarryTheFindings() throws {
        let ns = try NetworkNamespace()
        try ns.hold(["listen", "--at", "127.0.0.1:8080", "--at", "127.0.0.1:40050"])
        XCTAssertEqual(try ns.hold(["connect", "--to", "127.0.0.1:8080", "--count", "90", "--hold"]).made, 90)

        let serve = try ExporterProcess([Binaries.portbudget, "serve", "--listen", "127.0.0.1:9958"], in: ns)
        let text = try serve.await("answer on /metrics") { ns.httpGet("http://127.0.0.1:9958/metrics") }
        let series = text.split(separator: "\n").filter { $0.hasPrefix("portbudget_finding{") }.map(String.init)
        XCTAssertEqual(series, [
            #"portbudget_finding{id="narrow_range",severity="warning",scope="range",fix="sysctl -w net.ipv4.ip_local_reserved_ports=40050; sysctl -w net.ipv4.ip_local_port_range=\"32768 60999\""} 1"#,
            #"portbudget_finding{id="hot_destination",severity="warning",scope="tcp_destination",local_ip="127.0.0.1",peer_ip="127.0.0.1",peer_port="8080",fix="spread the connections to 127.0.0.1:8080 over more destination IPs or ports, or more source IPs: each adds 99 ports"} 1"#,
            #"portbudget_finding{id="listener_in_range",severity="warning",scope="range",fix="sysctl -w net.ipv4.ip_local_reserved_ports=40050, or move the listeners out of the range"} 1"#,
        ])
        _ = serve.stop()
    }

    /// bind(addr, port) then connect(): seen per socket in the explicit dump.
    /// A listener's accepted connections share its port and are not counted.
    func testExplicitPortsBeforeConnectAreCountedPerSocket() throws {
        let ns = try NetworkNamespace()
        try ns.hold(["listen", "--at", "127.0.0.1:8080", "--at", "127.0.0.1:8081"])
        try ns.hold(["listen", "--at", "127.0.0.1:40050", "--accept", "hold"])
        for port in 40000..<40045 {
            try ns.hold(["connect", "--to", "127.0.0.1:8081", "--bind", "127.0.0.1:\(port)", "--hold"])
        }
        XCTAssertEqual(try ns.hold(["connect", "--to", "127.0.0.1:40050", "--count", "5", "--hold"]).made, 5)
        XCTAssertEqual(try ns.hold(["connect", "--to", "127.0.0.1:8080", "--count", "35", "--hold"]).made, 35)

        let (report, _) = try ns.check()
        XCTAssertEqual(report.tcp.explicitConnectedPorts, 45)
        // The listener's 5 clients use plain connect(): they may share ports with the 35.
        XCTAssertTrue((81...86).contains(report.tcp.boundPorts), "\(report.tcp.boundPorts)")
        let all = try XCTUnwrap(report.findings)
        XCTAssertEqual(all.map(\.id), [.narrowRange, .bindBeforeConnect, .listenerInRange])
        let f = all[1]
        XCTAssertEqual(f.severity, .warning)
        XCTAssertEqual(f.evidence["explicit_connected_ports"], 45)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(f.evidence["bind_before_connect_ports"]), 45)
        XCTAssertTrue(f.cause.contains("45 connected sockets chose their port with bind(addr, port)"), f.cause)
    }
}

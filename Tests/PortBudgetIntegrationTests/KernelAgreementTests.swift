import XCTest
import PortBudgetCore

/// Builds exact exhaustion states with real sockets in a private network
/// namespace with a 100-port range, then holds the agent against the kernel:
/// its numbers equal what was built, and `capacity − used` equals the number
/// of further connect()s the kernel accepts before EADDRNOTAVAIL.
final class KernelAgreementTests: XCTestCase {
    func group(_ report: PortBudgetReport, _ local: String, _ peer: String, _ port: Int,
               file: StaticString = #filePath, line: UInt = #line) throws -> PortBudgetReport.Group {
        try XCTUnwrap(report.tcp.groups.first { $0.localIP == local && $0.peerIP == peer && $0.peerPort == port },
                      "no group \(local) → \(peer):\(port) in \(report.tcp.groups)", file: file, line: line)
    }

    /// The kernel accepts exactly `usable − bound_ports` more wildcard
    /// bind(0.0.0.0, 0) calls — the address that overlaps every socket; a
    /// bind to one specific address may find more. The probe exits
    /// afterwards, so its binds are released.
    func assertBindHeadroom(_ ns: NetworkNamespace, _ report: PortBudgetReport,
                            file: StaticString = #filePath, line: UInt = #line) throws {
        let binds = try ns.load(["bind", "--at", "0.0.0.0:0", "--count", "70000", "--until-fail"])
        XCTAssertEqual(binds, LoadOutcome(made: report.portRange.usable - report.tcp.boundPorts, error: "EADDRINUSE"),
                       "bind headroom", file: file, line: line)
    }

    func testConnectsToOneBackend() throws {
        let ns = try NetworkNamespace()
        try ns.hold(["listen", "--at", "127.0.0.1:8080"])
        XCTAssertEqual(try ns.hold(["connect", "--to", "127.0.0.1:8080", "--count", "30", "--hold"]).made, 30)

        let (report, status) = try ns.check()
        XCTAssertEqual(report.portRange.low, 40000)
        XCTAssertEqual(report.portRange.high, 40099)
        XCTAssertEqual(report.portRange.usable, 100)
        XCTAssertEqual(report.tcp.groupCount, 1)
        let g = try group(report, "127.0.0.1", "127.0.0.1", 8080)
        XCTAssertEqual(g.used, 30)
        XCTAssertEqual(g.capacity, 100)
        XCTAssertEqual(g.utilization, 0.3, accuracy: 1e-9)
        XCTAssertEqual(report.tcp.boundPorts, 30)
        XCTAssertEqual(status, 0)

        XCTAssertEqual(try ns.probeConnects(to: "127.0.0.1:8080"), LoadOutcome(made: g.capacity - g.used, error: "EADDRNOTAVAIL"))
        let (full, fullStatus) = try ns.check()
        XCTAssertEqual(try group(full, "127.0.0.1", "127.0.0.1", 8080).used, 100)
        XCTAssertEqual(full.status, .critical)
        XCTAssertEqual(fullStatus, 2)
    }

    func testListenerAndExplicitBindInsideTheRangeTakeAPortFromEveryGroup() throws {
        let ns = try NetworkNamespace()
        try ns.hold(["listen", "--at", "127.0.0.1:8080", "--at", "127.0.0.1:8081", "--at", "127.0.0.1:40050"])
        try ns.hold(["connect", "--to", "127.0.0.1:8080", "--bind", "127.0.0.1:40010", "--reuseaddr", "--hold"])
        try ns.hold(["connect", "--to", "127.0.0.1:8080", "--count", "10", "--hold"])

        let (report, _) = try ns.check()
        XCTAssertEqual(report.tcp.listenerPortsInRange, [40050])
        XCTAssertEqual(report.tcp.explicitBoundPorts, 2)
        let g = try group(report, "127.0.0.1", "127.0.0.1", 8080)
        XCTAssertEqual(g.capacity, 98)
        XCTAssertEqual(g.used, 10)
        XCTAssertEqual(report.tcp.boundPorts, 12)

        XCTAssertEqual(try ns.probeConnects(to: "127.0.0.1:8080").made, 88)
        // A destination nobody talked to yet still loses the two explicit ports.
        XCTAssertEqual(try ns.probeConnects(to: "127.0.0.1:8081").made, 98)
    }

    func testReservedPortsLeaveTheUsableRange() throws {
        let ns = try NetworkNamespace(reserved: "40000-40009,40090,50000")
        try ns.hold(["listen", "--at", "127.0.0.1:8080"])
        try ns.hold(["connect", "--to", "127.0.0.1:8080", "--count", "20", "--hold"])

        let (report, _) = try ns.check()
        XCTAssertEqual(report.portRange.reserved, 11)
        XCTAssertEqual(report.portRange.usable, 89)
        let g = try group(report, "127.0.0.1", "127.0.0.1", 8080)
        XCTAssertEqual(g.capacity, 89)
        XCTAssertEqual(g.used, 20)
        XCTAssertEqual(try ns.probeConnects(to: "127.0.0.1:8080").made, 69)
    }

    func testTimeWaitBlocksWithoutReuse() throws {
        let ns = try NetworkNamespace(twReuse: 0)
        try ns.hold(["listen", "--at", "127.0.0.1:8080", "--accept", "close"])
        // Topped up: on a loaded machine a slow churn reuses its own older TIME_WAIT entries.
        let built = try ns.churnTimeWait(to: "127.0.0.1:8080", count: 60)

        let (report, _) = try ns.check()
        let g = try group(report, "127.0.0.1", "127.0.0.1", 8080)
        XCTAssertEqual(g.timeWait, built)
        XCTAssertEqual(g.used, built)
        XCTAssertEqual(report.timeWaitReuse.tcpTwReuse, 0)
        XCTAssertEqual(try ns.probeConnects(to: "127.0.0.1:8080").made, 100 - built)
    }

    func testTimeWaitOnLoopbackIsReusedWithReuseTwo() throws {
        let ns = try NetworkNamespace(twReuse: 2)
        try ns.hold(["listen", "--at", "127.0.0.1:8080", "--accept", "close"])
        // Topped up: on a loaded machine a slow churn reuses its own older TIME_WAIT entries.
        let built = try ns.churnTimeWait(to: "127.0.0.1:8080", count: 60)
        usleep(1_500_000)  // older than tcp_tw_reuse_delay (1 s)

        let (report, _) = try ns.check()
        let g = try group(report, "127.0.0.1", "127.0.0.1", 8080)
        XCTAssertEqual(g.timeWait, built)
        XCTAssertEqual(g.used, 0)
        XCTAssertEqual(try ns.probeConnects(to: "127.0.0.1:8080").made, 100)
    }

    func testTimeWaitYoungerThanTheReuseDelayStillBlocks() throws {
        let ns = try NetworkNamespace(twReuse: 2)
        try ns.sysctl("net.ipv4.tcp_tw_reuse_delay", "30000")
        try ns.hold(["listen", "--at", "127.0.0.1:8080", "--accept", "close"])
        // Topped up: on a loaded machine a slow churn reuses its own older TIME_WAIT entries.
        let built = try ns.churnTimeWait(to: "127.0.0.1:8080", count: 60)

        let (report, _) = try ns.check()
        XCTAssertEqual(report.timeWaitReuse.reuseDelayMs, 30000)
        let g = try group(report, "127.0.0.1", "127.0.0.1", 8080)
        XCTAssertEqual(g.timeWait, built)
        XCTAssertEqual(g.used, built)
        XCTAssertEqual(try ns.probeConnects(to: "127.0.0.1:8080").made, 100 - built)
    }

    func testTimeWaitOffLoopbackIsNotReusedWithReuseTwo() throws {
        let ns = try NetworkNamespace(twReuse: 2)
        try ns.hold(["listen", "--at", "10.77.0.1:8080", "--accept", "close"])
        XCTAssertEqual(try ns.load(["churn", "--to", "10.77.0.1:8080", "--count", "60"]).made, 60)
        let built = try ns.settledSockets(state: "time-wait", expected: 60)
        usleep(1_500_000)

        let (report, _) = try ns.check()
        let g = try group(report, "10.77.0.1", "10.77.0.1", 8080)
        XCTAssertEqual(g.timeWait, built)
        XCTAssertEqual(g.used, built)
        XCTAssertEqual(try ns.probeConnects(to: "10.77.0.1:8080").made, 100 - built)
    }

    func testFinWait2AlwaysBlocks() throws {
        let ns = try NetworkNamespace(twReuse: 1)
        // The server accepts and never closes: clients that close sit in FIN_WAIT2.
        try ns.hold(["listen", "--at", "127.0.0.1:8080", "--accept", "hold"])
        XCTAssertEqual(try ns.load(["connect", "--to", "127.0.0.1:8080", "--count", "60", "--churn"]).made, 60)
        let built = try ns.settledSockets(state: "fin-wait-2", expected: 60)
        usleep(1_200_000)  // older than the reuse delay: FIN_WAIT2 must block anyway

        let (report, _) = try ns.check()
        let g = try group(report, "127.0.0.1", "127.0.0.1", 8080)
        XCTAssertEqual(g.finWait2, built)
        XCTAssertEqual(g.used, built)
        XCTAssertEqual(try ns.probeConnects(to: "127.0.0.1:8080").made, 100 - built)
    }

    /// Cloudflare's case: bind(ip, 0) before connect() over many backends.
    /// No group is full, but the host-wide bind headroom is: it is the number
    /// of further bind(ip, 0) calls the kernel accepts.
    func testBindBeforeConnectOverManyBackendsShowsInBindHeadroom() throws {
        let ns = try NetworkNamespace()
        try ns.hold(["listen", "--at", "127.0.0.1:8081-8090"])
        XCTAssertEqual(try ns.hold(["connect", "--to", "127.0.0.1:8081-8090", "--count", "9", "--bind", "127.0.0.1:0",
                                    "--hold"]).made, 90)

        let (report, status) = try ns.check()
        XCTAssertEqual(report.tcp.groupCount, 10)
        XCTAssertTrue(report.tcp.groups.allSatisfy { $0.used == 9 })
        XCTAssertEqual(report.tcp.boundPorts, 90)
        XCTAssertEqual(report.tcp.bindUtilization, 0.9, accuracy: 1e-9)
        XCTAssertEqual(report.status, .warning)
        XCTAssertEqual(status, 1)
        XCTAssertTrue(report.verdict.contains("bind"), report.verdict)

        let binds = try ns.hold(["bind", "--at", "127.0.0.1:0", "--count", "1000", "--until-fail", "--hold"])
        XCTAssertEqual(binds, LoadOutcome(made: report.portRange.usable - report.tcp.boundPorts, error: "EADDRINUSE"))
        let (full, _) = try ns.check()
        XCTAssertEqual(full.tcp.boundPorts, 100)
        XCTAssertEqual(full.status, .critical)
        // Every port now has a bind bucket: even a plain connect() to a new destination fails.
        XCTAssertEqual(try ns.probeConnects(to: "127.0.0.1:8081").made, 0)
    }

    func testUDPConnectedAndBoundOverBothFamiliesShareOneTable() throws {
        let ns = try NetworkNamespace()
        XCTAssertEqual(try ns.hold(["udp", "--to", "127.0.0.1:5353", "--count", "70", "--hold"]).made, 70)
        XCTAssertEqual(try ns.hold(["udp", "--bind", "[::]:0", "--count", "20", "--hold"]).made, 20)

        let (report, _) = try ns.check()
        XCTAssertEqual(report.udp.boundPorts, 90)
        XCTAssertEqual(report.udp.sockets, 90)
        XCTAssertEqual(report.udp.utilization, 0.9, accuracy: 1e-9)
        XCTAssertEqual(report.tcp.boundPorts, 0)
        XCTAssertEqual(report.status, .warning)

        let more = try ns.hold(["udp", "--to", "[::1]:5353", "--count", "1000", "--until-fail", "--hold"])
        XCTAssertEqual(more, LoadOutcome(made: report.portRange.usable - report.udp.boundPorts, error: "EAGAIN"))
        let (full, _) = try ns.check()
        XCTAssertEqual(full.udp.boundPorts, 100)
        XCTAssertEqual(full.status, .critical)
    }

    func testIPv6AndIPv4MappedFoldIntoTheRightGroups() throws {
        let ns = try NetworkNamespace()
        try ns.hold(["listen", "--at", "[::]:8080"])
        try ns.hold(["connect", "--to", "127.0.0.1:8080", "--count", "20", "--hold"])
        try ns.hold(["connect", "--to", "[::ffff:127.0.0.1]:8080", "--count", "20", "--hold"])
        try ns.hold(["connect", "--to", "[::1]:8080", "--count", "30", "--hold"])
        try ns.hold(["connect", "--to", "[fd77::1]:8080", "--count", "5", "--hold"])

        let (report, _) = try ns.check()
        XCTAssertEqual(report.tcp.groupCount, 3)
        XCTAssertEqual(try group(report, "127.0.0.1", "127.0.0.1", 8080).used, 40)
        XCTAssertEqual(try group(report, "::1", "::1", 8080).used, 30)
        XCTAssertEqual(try group(report, "fd77::1", "fd77::1", 8080).used, 5)
        XCTAssertGreaterThanOrEqual(report.tcp.boundPorts, 40)
        try assertBindHeadroom(ns, report)

        XCTAssertEqual(try ns.probeConnects(to: "[::ffff:127.0.0.1]:8080").made, 60)
        XCTAssertEqual(try ns.probeConnects(to: "[::1]:8080").made, 70)
    }

    func testHundredsOfGroups() throws {
        let ns = try NetworkNamespace()
        try ns.hold(["listen", "--at", "127.0.0.1:8000-8299"])
        XCTAssertEqual(try ns.hold(["connect", "--to", "127.0.0.1:8000-8299", "--count", "3", "--hold"]).made, 900)
        XCTAssertEqual(try ns.hold(["connect", "--to", "127.0.0.1:8007", "--count", "40", "--hold"]).made, 40)

        let (report, _) = try ns.check()
        XCTAssertEqual(report.tcp.groupCount, 300)
        XCTAssertEqual(report.tcp.groups.count, 300)
        XCTAssertEqual(report.tcp.groups.first?.peerPort, 8007)
        XCTAssertEqual(report.tcp.groups.first?.used, 43)
        XCTAssertEqual(report.tcp.groups.dropFirst().map(\.used), Array(repeating: 3, count: 299))
        XCTAssertEqual(report.tcp.maxGroupUtilization, 0.43, accuracy: 1e-9)
        // Ports are shared across destinations; bound_ports is their union,
        // exactly the headroom the kernel leaves for bind(addr, 0).
        XCTAssertGreaterThanOrEqual(report.tcp.boundPorts, 43)
        try assertBindHeadroom(ns, report)
        XCTAssertEqual(try ns.probeConnects(to: "127.0.0.1:8007").made, 57)
        XCTAssertEqual(try ns.probeConnects(to: "127.0.0.1:8100").made, 97)

        let limited = ns.run([Binaries.portbudget, "check", "--json", "--top", "5"])
        let top = try JSONDecoder().decode(PortBudgetReport.self, from: Data(limited.stdout.utf8))
        XCTAssertEqual(top.tcp.groups.count, 5)
        XCTAssertEqual(top.tcp.groupCount, 300)
    }

    func testBoundOnlySocketsCountAsExplicitBinds() throws {
        let ns = try NetworkNamespace()
        try ns.hold(["listen", "--at", "127.0.0.1:8080"])
        XCTAssertEqual(try ns.hold(["bind", "--at", "127.0.0.1:0", "--count", "5", "--hold"]).made, 5)

        let (report, _) = try ns.check()
        XCTAssertEqual(report.tcp.explicitBoundPorts, 5)
        XCTAssertEqual(report.tcp.boundPorts, 5)
        XCTAssertEqual(try ns.probeConnects(to: "127.0.0.1:8080").made, 95)
    }

    /// The per-family fallback (for kernels that refuse TCPDIAG_GETSOCK) must
    /// give the same report as the default two-dump census, on a namespace
    /// with every kind of TCP socket the model tells apart.
    func testPerFamilyFallbackCensusAgreesWithTheDefault() throws {
        let ns = try NetworkNamespace(twReuse: 0)
        try ns.hold(["listen", "--at", "127.0.0.1:8080", "--at", "[::]:8081", "--at", "127.0.0.1:40050",
                     "--at", "127.0.0.1:9000", "--accept", "close"])
        try ns.hold(["connect", "--to", "127.0.0.1:8080", "--bind", "127.0.0.1:40010", "--reuseaddr", "--hold"])
        try ns.hold(["connect", "--to", "127.0.0.1:8080", "--count", "20", "--hold"])
        try ns.hold(["connect", "--to", "[::1]:8081", "--count", "15", "--hold"])
        try ns.hold(["connect", "--to", "127.0.0.1:8081", "--count", "5", "--bind", "127.0.0.1:0", "--hold"])
        try ns.hold(["bind", "--at", "127.0.0.1:0", "--count", "3", "--hold"])
        XCTAssertEqual(try ns.load(["churn", "--to", "127.0.0.1:9000", "--count", "10"]).made, 10)
        try ns.settledSockets(state: "time-wait", expected: 10)

        func report(_ extra: [String]) throws -> PortBudgetReport {
            var r = try ns.check(extra).report
            r.counters = [:]  // kernel counters move between runs; the census must not
            return r
        }
        let byDefault = try report([])
        let perFamily = try report(["--tcp-dumps", "per-family"])
        XCTAssertEqual(perFamily, byDefault)
        XCTAssertEqual(byDefault.tcp.explicitBoundPorts, 5, "listener 40050, explicit 40010, three bound-only")
        XCTAssertEqual(byDefault.tcp.groupCount, 4)
    }
}

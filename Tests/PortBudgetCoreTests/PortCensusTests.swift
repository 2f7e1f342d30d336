import XCTest
@testable import PortBudgetCore

final class PortCensusTests: XCTestCase {
    let client = IPAddress("10.0.0.1")!
    let backend = IPAddress("10.0.0.2")!
    let range = PortSysctls(rangeLow: 40000, rangeHigh: 40099)

    func tcp(_ port: UInt16, to peer: IPAddress? = nil, _ peerPort: UInt16 = 80, state: UInt8 = TCPState.established,
             expiresMs: UInt32 = 0, from local: IPAddress? = nil, interface: UInt32 = 0) -> InetDiagRecord {
        let local = local ?? client
        return InetDiagRecord(family: local.family, state: state, localPort: port, remotePort: peerPort, local: local,
                              remote: peer ?? backend, interface: interface, expiresMs: expiresMs)
    }

    func report(_ sysctls: PortSysctls? = nil, _ build: (inout PortCensus) -> Void) -> PortBudgetReport {
        var census = PortCensus(sysctls: sysctls ?? range)
        build(&census)
        return census.report(thresholds: Thresholds())
    }

    func testGroupsCountDistinctPortsPerDestination() {
        let r = report { c in
            for p in UInt16(40000)..<40030 { c.addTCP(tcp(p), explicitlyBound: false) }
            for p in UInt16(40000)..<40010 { c.addTCP(tcp(p, 443), explicitlyBound: false) }
            c.addTCP(tcp(40001), explicitlyBound: false)  // a dump can show a socket twice
        }
        XCTAssertEqual(r.tcp.groupCount, 2)
        XCTAssertEqual(r.tcp.groups.map(\.used), [30, 10])
        XCTAssertEqual(r.tcp.groups.map(\.capacity), [100, 100])
        XCTAssertEqual(r.tcp.groups[0].utilization, 0.3)
        XCTAssertEqual(r.tcp.boundPorts, 30)
        XCTAssertEqual(r.tcp.bindUtilization, 0.3)
        XCTAssertEqual(r.status, .ok)
    }

    func testExplicitBindsAndListenersLowerEveryGroupsCapacity() {
        let r = report { c in
            c.addTCP(tcp(40050, to: IPAddress("0.0.0.0")!, 0, state: TCPState.listen), explicitlyBound: true)
            c.addTCP(tcp(40010), explicitlyBound: true)
            c.addTCP(tcp(40020, state: TCPState.close), explicitlyBound: false)  // bound-only, bind(addr, 0)
            for p in UInt16(40000)..<40005 { c.addTCP(tcp(p), explicitlyBound: false) }
        }
        XCTAssertEqual(r.tcp.explicitBoundPorts, 3)
        XCTAssertEqual(r.tcp.listenerPortsInRange, [40050])
        XCTAssertEqual(r.tcp.groupCount, 1)
        XCTAssertEqual(r.tcp.groups[0].capacity, 97)
        XCTAssertEqual(r.tcp.groups[0].used, 5)
        XCTAssertEqual(r.tcp.boundPorts, 8)
    }

    func testAPortHeldByAnExplicitBindIsNotCountedTwice() {
        // SO_REUSEADDR lets an auto-bound socket share a port with an explicit
        // bind; that port is already out of the capacity, so not in `used`.
        let r = report { c in
            c.addTCP(tcp(40003), explicitlyBound: false)
            c.addTCP(tcp(40003, 443), explicitlyBound: true)
        }
        XCTAssertEqual(r.tcp.groups[0].used, 0)
        XCTAssertEqual(r.tcp.groups[0].capacity, 99)
    }

    func testReservedAndOutOfRangePortsAreIgnored() {
        let sysctls = PortSysctls(rangeLow: 40000, rangeHigh: 40099, reserved: [40000...40009, 50000...50000])
        let r = report(sysctls) { c in
            c.addTCP(tcp(40005), explicitlyBound: false)
            c.addTCP(tcp(39999), explicitlyBound: false)
            c.addTCP(tcp(40100), explicitlyBound: false)
            c.addTCP(tcp(40010), explicitlyBound: false)
            c.addUDP(tcp(40001))
        }
        XCTAssertEqual(r.portRange.reserved, 10)
        XCTAssertEqual(r.portRange.usable, 90)
        XCTAssertEqual(r.tcp.groups[0].used, 1)
        XCTAssertEqual(r.tcp.groups[0].capacity, 90)
        XCTAssertEqual(r.udp.boundPorts, 0)
    }

    func timeWaitUsed(reuse: Int, timestamps: Int = 1, delayMs: Int? = nil, ageMs: UInt32,
                      local: IPAddress? = nil, peer: IPAddress? = nil, interface: UInt32 = 0) -> Int {
        let sysctls = PortSysctls(rangeLow: 40000, rangeHigh: 40099, tcpTwReuse: reuse, tcpTimestamps: timestamps,
                                  tcpTwReuseDelayMs: delayMs)
        let r = report(sysctls) { c in
            c.addTCP(tcp(40001, to: peer, state: TCPState.timeWait, expiresMs: 60_000 - ageMs, from: local,
                         interface: interface), explicitlyBound: false)
        }
        XCTAssertEqual(r.tcp.groups[0].timeWait, 1)
        return r.tcp.groups[0].used
    }

    func testTimeWaitReuseFollowsTheKernelRules() {
        let loop = IPAddress("127.0.0.1")!
        XCTAssertEqual(timeWaitUsed(reuse: 0, ageMs: 30_000, local: loop, peer: loop), 1, "reuse off")
        XCTAssertEqual(timeWaitUsed(reuse: 1, ageMs: 30_000), 0, "reuse on, any address")
        XCTAssertEqual(timeWaitUsed(reuse: 2, ageMs: 30_000), 1, "loopback-only reuse, remote peer")
        XCTAssertEqual(timeWaitUsed(reuse: 2, ageMs: 30_000, local: loop, peer: loop), 0, "loopback")
        XCTAssertEqual(timeWaitUsed(reuse: 2, ageMs: 30_000, peer: loop), 0, "loopback peer only")
        XCTAssertEqual(timeWaitUsed(reuse: 2, ageMs: 30_000, interface: 1), 0, "bound to lo")
        XCTAssertEqual(timeWaitUsed(reuse: 2, ageMs: 30_000, local: IPAddress("::1")!, peer: IPAddress("::1")!), 0)
        XCTAssertEqual(timeWaitUsed(reuse: 1, timestamps: 0, ageMs: 30_000), 1, "no timestamps")
        XCTAssertEqual(timeWaitUsed(reuse: 1, ageMs: 500), 1, "younger than the default 1 s delay")
        XCTAssertEqual(timeWaitUsed(reuse: 1, delayMs: 5000, ageMs: 3000), 1, "younger than tcp_tw_reuse_delay")
        XCTAssertEqual(timeWaitUsed(reuse: 1, delayMs: 5000, ageMs: 6000), 0)
    }

    func testFinWait2AlwaysBlocks() {
        let sysctls = PortSysctls(rangeLow: 40000, rangeHigh: 40099, tcpTwReuse: 1)
        let r = report(sysctls) { c in
            c.addTCP(tcp(40001, state: TCPState.finWait2, expiresMs: 1000), explicitlyBound: false)
        }
        XCTAssertEqual(r.tcp.groups[0].finWait2, 1)
        XCTAssertEqual(r.tcp.groups[0].used, 1)
    }

    func testUDPSharesOnePortTableAcrossFamiliesAndIgnoresDestinations() {
        let r = report { c in
            for p in UInt16(40000)..<40070 { c.addUDP(tcp(p, 53 + p % 5)) }
            for p in UInt16(40060)..<40090 {
                c.addUDP(InetDiagRecord(family: .v6, state: 7, localPort: p, remotePort: 0, local: IPAddress("::")!,
                                        remote: IPAddress("::")!))
            }
            c.addUDP(tcp(40095), lite: true)
        }
        XCTAssertEqual(r.udp.boundPorts, 90)
        XCTAssertEqual(r.udp.sockets, 100)
        XCTAssertEqual(r.udp.utilization, 0.9)
        XCTAssertEqual(r.udplite?.boundPorts, 1)
        XCTAssertEqual(r.status, .warning)
        XCTAssertTrue(r.verdict.hasPrefix("WARNING: UDP host-wide at 90%"), r.verdict)
        XCTAssertTrue(r.verdict.contains("EAGAIN"), r.verdict)
    }

    func testStatusAndVerdictFollowTheWorstLimit() {
        let r = report { c in
            for p in UInt16(40000)..<40096 { c.addTCP(tcp(p), explicitlyBound: false) }
            c.addTCP(tcp(40099, state: TCPState.listen), explicitlyBound: true)
        }
        XCTAssertEqual(r.tcp.groups[0].used, 96)
        XCTAssertEqual(r.tcp.groups[0].capacity, 99)
        XCTAssertEqual(r.tcp.groups[0].free, 3)
        XCTAssertEqual(r.status, .critical)
        XCTAssertEqual(r.verdict, "CRITICAL: TCP 10.0.0.1 → 10.0.0.2:80 at 97%, 3 of 99 ports left; at 0, connect() to it fails with EADDRNOTAVAIL")
        XCTAssertEqual(r.status.exitCode, 2)
    }

    func testGroupsAreSortedWorstFirstAndTopKeepsAggregates() {
        let r = report { c in
            for peerPort in UInt16(1)...50 {
                for p in 0..<peerPort { c.addTCP(tcp(40000 + p, peerPort), explicitlyBound: false) }
            }
        }
        XCTAssertEqual(r.tcp.groupCount, 50)
        XCTAssertEqual(r.tcp.groups.map(\.peerPort), Array((1...50).reversed()))
        let top = r.limitingGroups(to: 5)
        XCTAssertEqual(top.tcp.groups.map(\.peerPort), [50, 49, 48, 47, 46])
        XCTAssertEqual(top.tcp.groupCount, 50)
        XCTAssertEqual(top.tcp.maxGroupUtilization, 0.5)
        XCTAssertEqual(r.limitingGroups(to: 0).tcp.groups.count, 50)
    }

    func testLargeGroupsSwitchToBitmapsAndStayExact() {
        let sysctls = PortSysctls(rangeLow: 32768, rangeHigh: 60999)
        let r = report(sysctls) { c in
            for p in UInt16(32768)...60999 { c.addTCP(tcp(p), explicitlyBound: false) }
            for p in stride(from: UInt16(32768), through: 60999, by: 2) { c.addTCP(tcp(p), explicitlyBound: false) }
            c.addTCP(tcp(40000, state: TCPState.listen), explicitlyBound: true)
        }
        XCTAssertEqual(r.tcp.groups[0].used, 28231)
        XCTAssertEqual(r.tcp.groups[0].capacity, 28231)
        XCTAssertEqual(r.tcp.groups[0].utilization, 1)
    }

    func testNoCapacityMeansFullyUsed() {
        let tiny = PortSysctls(rangeLow: 40000, rangeHigh: 40000)
        let r = report(tiny) { c in
            c.addTCP(tcp(40000, state: TCPState.listen), explicitlyBound: true)
        }
        XCTAssertEqual(r.portRange.usable, 1)
        XCTAssertEqual(r.tcp.bindUtilization, 1)
        // Full, but nothing binds before connect(): bind(addr, 0) would fail, yet nothing here calls it.
        XCTAssertEqual(r.status, .warning)
        let allReserved = report(PortSysctls(rangeLow: 40000, rangeHigh: 40001, reserved: [40000...40001])) { _ in }
        XCTAssertEqual(allReserved.portRange.usable, 0)
        XCTAssertEqual(allReserved.tcp.bindUtilization, 1)
    }

    func testThresholdValidation() {
        XCTAssertNil(Thresholds().problem)
        XCTAssertNotNil(Thresholds(warning: 0.9, critical: 0.8).problem)
        XCTAssertNotNil(Thresholds(warning: 0, critical: 0.8).problem)
        XCTAssertNotNil(Thresholds(warning: 0.5, critical: 1.5).problem)
        XCTAssertNotNil(Thresholds(warning: .nan, critical: 0.9).problem)
    }

    func testJSONCarriesTheContractKeys() throws {
        let r = report { c in c.addTCP(tcp(40001), explicitlyBound: false) }
        let object = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(r)) as! [String: Any]
        let portRange = object["port_range"] as! [String: Any]
        XCTAssertEqual(Set(portRange.keys), ["low", "high", "reserved", "usable", "reserved_list"])
        let tcpObject = object["tcp"] as! [String: Any]
        for key in ["bound_ports", "bind_utilization", "listener_ports_in_range", "groups", "explicit_connected_ports",
                    "auto_connections", "auto_connection_ports", "single_connection_ports"] {
            XCTAssertNotNil(tcpObject[key], key)
        }
        let group = (tcpObject["groups"] as! [[String: Any]])[0]
        for key in ["local_ip", "peer_ip", "peer_port", "used", "time_wait", "capacity", "utilization"] {
            XCTAssertNotNil(group[key], key)
        }
        XCTAssertEqual(group["local_ip"] as? String, "10.0.0.1")
        XCTAssertEqual(group["peer_port"] as? Int, 80)
        let udp = object["udp"] as! [String: Any]
        XCTAssertNotNil(udp["bound_ports"])
        XCTAssertNotNil(udp["utilization"])
        XCTAssertEqual(object["status"] as? String, "ok")
        XCTAssertEqual(try JSONDecoder().decode(PortBudgetReport.self, from: try JSONEncoder().encode(r)), r)
    }

    func testHumanReportNamesTheWorstGroupAndHeadroom() {
        let r = report { c in
            for p in UInt16(40000)..<40090 { c.addTCP(tcp(p, to: IPAddress("2001:db8::9")!, 443, from: IPAddress("2001:db8::1")!), explicitlyBound: false) }
        }
        let text = CheckReportRenderer.render(r, top: 20)
        XCTAssertTrue(text.hasPrefix("WARNING: TCP 2001:db8::1 → [2001:db8::9]:443 at 90%"), text)
        XCTAssertTrue(text.contains("40000-40099"), text)
        XCTAssertTrue(text.contains("90/100"), text)
        XCTAssertTrue(text.contains("EADDRINUSE"), text)
    }
}

extension PortCensusTests {
    /// What the diagnosis reads from the census: connections per port among
    /// auto-bound sockets, and explicit ports of connected sockets.
    func testConnectionsPerPortAndExplicitConnectedPorts() {
        let r = report { c in
            for p in UInt16(40000)..<40010 { c.addTCP(tcp(p), explicitlyBound: false) }
            for p in UInt16(40000)..<40005 { c.addTCP(tcp(p, 443), explicitlyBound: false) }  // shared with :80
            c.addTCP(tcp(40020, 8443), explicitlyBound: true)  // bind(addr, 40020) + connect()
            c.addTCP(tcp(40030, to: IPAddress("0.0.0.0")!, 0, state: TCPState.listen), explicitlyBound: true)
            c.addTCP(tcp(40030, 50000), explicitlyBound: true)  // an accepted child shares the listener's port
        }
        XCTAssertEqual(r.tcp.autoConnections, 15)
        XCTAssertEqual(r.tcp.autoConnectionPorts, 10)
        XCTAssertEqual(r.tcp.singleConnectionPorts, 5)
        XCTAssertEqual(r.tcp.explicitConnectedPorts, 1)
    }

    func testAReportFromBeforeTheDiagnosisFieldsStillDecodes() throws {
        let r = report { c in c.addTCP(tcp(40001), explicitlyBound: false) }
        var object = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(r)) as! [String: Any]
        var tcpObject = object["tcp"] as! [String: Any]
        for key in ["explicit_connected_ports", "auto_connections", "auto_connection_ports", "single_connection_ports"] {
            tcpObject[key] = nil
        }
        object["tcp"] = tcpObject
        var range = object["port_range"] as! [String: Any]
        range["reserved_list"] = nil
        object["port_range"] = range
        let decoded = try JSONDecoder().decode(PortBudgetReport.self, from: try JSONSerialization.data(withJSONObject: object))
        XCTAssertEqual(decoded.tcp.singleConnectionPorts, 0)
        XCTAssertEqual(decoded.portRange.reservedList, "")
        XCTAssertEqual(decoded.findings, [], "an old report decodes with no findings")
    }
}

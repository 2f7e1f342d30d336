import XCTest
@testable import PortBudgetCore

/// A census that walks the kernel's TCP tables once labels each connected
/// socket from an earlier census's labels, the listener ports of this walk
/// and the failure programs' cookies; it must fold exactly what the two
/// filtered walks fold.
final class SingleWalkLabelsTests: XCTestCase {
    let local = IPAddress("127.0.0.1")!
    let range = PortSysctls(rangeLow: 40000, rangeHigh: 40099)

    func tcp(_ port: UInt16, _ peerPort: UInt16, state: UInt8 = TCPState.established, cookie: UInt64) -> InetDiagRecord {
        InetDiagRecord(family: .v4, state: state, localPort: port, remotePort: peerPort, local: local, remote: local,
                       cookie: cookie)
    }

    /// A listener on 40090 with two accepted sockets (their clients' ends
    /// connect()-chosen), one client bound to 40050 explicitly, three plain
    /// clients of :9001, a TIME_WAIT on the listener's port.
    func sockets() -> [(record: InetDiagRecord, explicitByFilter: Bool)] {
        [(tcp(40090, 0, state: TCPState.listen, cookie: 1), true),
         (tcp(40090, 40001, cookie: 2), true), (tcp(40090, 40002, cookie: 3), true),
         (tcp(40001, 40090, cookie: 4), false), (tcp(40002, 40090, cookie: 5), false),
         (tcp(40050, 9001, cookie: 6), true),
         (tcp(40010, 9001, cookie: 7), false), (tcp(40011, 9001, cookie: 8), false), (tcp(40012, 9001, cookie: 9), false),
         (tcp(40090, 40003, state: TCPState.timeWait, cookie: 10), false)]
    }

    func filtered() -> PortCensus {
        var census = PortCensus(sysctls: range)
        census.keepConnectionLabels()
        for (record, explicit) in sockets() where explicit { census.addTCP(record, explicitlyBound: true) }
        for (record, explicit) in sockets() where !explicit { census.addTCP(record, explicitlyBound: false) }
        return census
    }

    func testOneWalkWithTheLabelsFoldsWhatTheFilteredWalksFold() throws {
        let twice = filtered()
        XCTAssertEqual(twice.connectionLabels, [6], "accepted sockets are known by their listener's port, not kept")
        var once = PortCensus(sysctls: range)
        once.useLabels(try XCTUnwrap(twice.connectionLabels))
        for (record, _) in sockets() { once.addTCP(record, explicitlyBound: false) }
        XCTAssertEqual(once.report(thresholds: Thresholds()), twice.report(thresholds: Thresholds()))
        XCTAssertEqual(once.connectionLabels, [6], "labels carry on while their sockets live")
        let report = once.report(thresholds: Thresholds())
        XCTAssertEqual(report.tcp.explicitConnectedPorts, 1)
        XCTAssertEqual(report.tcp.groups.first { $0.peerPort == 9001 }?.used, 3)
        XCTAssertEqual(report.tcp.groups.first { $0.peerPort == 9001 }?.capacity, 98, "40050 and the listener's 40090 are bind()'s")
    }

    func testWithoutItsLabelAnExplicitlyBoundSocketIsTakenForConnects() {
        var once = PortCensus(sysctls: range)
        once.useLabels([])
        for (record, _) in sockets() { once.addTCP(record, explicitlyBound: false) }
        let report = once.report(thresholds: Thresholds())
        XCTAssertEqual(report.tcp.groups.first { $0.peerPort == 9001 }?.used, 4, "why labels must be complete")
        XCTAssertNotEqual(report, filtered().report(thresholds: Thresholds()))
    }

    func testAnAcceptedSocketOnAListenersPortIsBindsWhateverTheFilterSaid() {
        // A listener that listen() bound to an ephemeral port holds no bind
        // flag, and neither do its accepted sockets: the port is still bind()'s.
        var census = PortCensus(sysctls: range)
        census.keepConnectionLabels()
        census.addTCP(tcp(40090, 0, state: TCPState.listen, cookie: 1), explicitlyBound: false)
        census.addTCP(tcp(40090, 40001, cookie: 2), explicitlyBound: false)
        let report = census.report(thresholds: Thresholds())
        XCTAssertEqual(report.tcp.autoConnections, 0)
        XCTAssertEqual(report.tcp.groupCount, 0)
        XCTAssertEqual(census.connectionLabels, [])
    }

    func testLabelsBeyondTheirBoundAreDropped() {
        var census = PortCensus(sysctls: PortSysctls(rangeLow: 1024, rangeHigh: 65535))
        census.keepConnectionLabels()
        for cookie in 0...UInt64(PortCensus.labelledCookiesKept) {
            let port = UInt16(1024 + cookie % 64_000)
            census.addTCP(InetDiagRecord(family: .v4, state: TCPState.established, localPort: port,
                                         remotePort: UInt16(1 + cookie / 64_000), local: local, remote: local,
                                         cookie: cookie), explicitlyBound: true)
        }
        XCTAssertNil(census.connectionLabels, "more than kept: the namespace is walked twice from then on")
    }

    func testAcceptedSocketsOutlivingTheirListenerKeepItsPort() throws {
        var before = PortCensus(sysctls: range)
        before.keepConnectionLabels()
        before.addTCP(tcp(40090, 0, state: TCPState.listen, cookie: 1), explicitlyBound: true)
        before.addTCP(tcp(40090, 40001, cookie: 2), explicitlyBound: false)
        before.addTCP(tcp(40090, 40002, cookie: 3), explicitlyBound: false)
        before.addTCP(tcp(40010, 9001, cookie: 4), explicitlyBound: false)
        XCTAssertEqual(before.listenerChildren, [40090: [2, 3]])

        // The listener is gone; one accepted socket is in TIME_WAIT.
        var after = PortCensus(sysctls: range)
        after.keepConnectionLabels()
        after.useListenerChildren(try XCTUnwrap(before.listenerChildren))
        after.addTCP(tcp(40090, 40001, cookie: 2), explicitlyBound: false)
        after.addTCP(tcp(40090, 40002, state: TCPState.timeWait, cookie: 3), explicitlyBound: false)
        after.addTCP(tcp(40010, 9001, cookie: 4), explicitlyBound: false)
        let report = after.report(thresholds: Thresholds())
        XCTAssertEqual(report.tcp.groups.first { $0.peerPort == 9001 }?.capacity, 99, "40090 is still bind()'s")
        XCTAssertEqual(report.tcp.explicitConnectedPorts, 1)
        XCTAssertEqual(after.listenerChildren, [40090: [2, 3]], "kept while they live")

        // Once they are gone, a socket on that port is connect()'s.
        var later = PortCensus(sysctls: range)
        later.keepConnectionLabels()
        later.useListenerChildren(try XCTUnwrap(after.listenerChildren))
        later.addTCP(tcp(40090, 9001, cookie: 9), explicitlyBound: false)
        XCTAssertEqual(later.report(thresholds: Thresholds()).tcp.groups.first { $0.peerPort == 9001 }?.capacity, 100)
        XCTAssertEqual(later.listenerChildren, [:])
    }

    func testLabelsAreKeptOnlyWhenAsked() {
        var census = PortCensus(sysctls: range)
        census.addTCP(tcp(40050, 9001, cookie: 6), explicitlyBound: true)
        XCTAssertNil(census.connectionLabels, "without the failure programs nothing would use them")
    }
}

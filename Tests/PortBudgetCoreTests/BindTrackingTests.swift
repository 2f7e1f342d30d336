import XCTest
@testable import PortBudgetCore

/// The census with what the failure collector saw of bind() before
/// connect(): sockets known by cookie count as explicit binds, sockets older
/// than the collector stay inferred, and the report says which it is.
final class BindTrackingTests: XCTestCase {
    let local = IPAddress("10.77.0.1")!
    let range = PortSysctls(rangeLow: 40000, rangeHigh: 40049)

    func connected(_ port: UInt16, to peerPort: UInt16, cookie: UInt64) -> InetDiagRecord {
        InetDiagRecord(family: .v4, state: TCPState.established, localPort: port, remotePort: peerPort,
                       local: local, remote: local, cookie: cookie)
    }

    /// The netcat shape: 40 of 50 ports bound before connect(), 8 towards each of 5 destinations.
    func netcat(_ census: inout PortCensus) {
        for i in 0..<40 { census.addTCP(connected(UInt16(40000 + i), to: UInt16(9001 + i % 5), cookie: UInt64(1000 + i)),
                                        explicitlyBound: false) }
    }

    func testSocketsSeenBindingBeforeConnectCountAgainstEveryDestination() {
        var census = PortCensus(sysctls: range)
        census.use(BoundSocketKnowledge(boundCookies: Set((0..<40).map { UInt64(1000 + $0) }), predating: .cookies([])))
        netcat(&census)
        let report = census.report(thresholds: Thresholds())
        XCTAssertEqual(report.tcp.groupCount, 5, "each destination is still listed")
        XCTAssertEqual(report.tcp.groups.map(\.capacity), [10, 10, 10, 10, 10])
        XCTAssertEqual(report.tcp.groups.map(\.free), [10, 10, 10, 10, 10])
        XCTAssertEqual(report.tcp.explicitBoundPorts, 40)
        XCTAssertEqual(report.tcp.bindTracking, .init(boundBeforeConnectPorts: 40, untrackedSockets: 0))
        XCTAssertEqual(report.inferredBindBeforeConnectPorts, 0)
        XCTAssertFalse(report.destinationFreeIsUpperBound)
        XCTAssertEqual(census.boundCookiesSeen.count, 40)
        let finding = try? XCTUnwrap(report.findings.first { $0.id == .bindBeforeConnect })
        XCTAssertTrue(finding?.cause.contains("40 connected sockets took their port with bind(addr, 0) before connect()") ?? false,
                      finding?.cause ?? "no bind_before_connect finding")
        XCTAssertFalse(finding?.cause.contains("bind(addr, port)") ?? true)
        XCTAssertEqual(finding?.evidence["socket_cookie_ports"], 40)

        let text = CheckReportRenderer.render(report, top: 0)
        XCTAssertTrue(text.contains("FREE is exact"), text)
        XCTAssertFalse(text.contains("≤"), text)
    }

    func testWithoutTheCollectorTheRowsSayTheyAreAnUpperBound() throws {
        var census = PortCensus(sysctls: range)
        netcat(&census)
        let report = census.report(thresholds: Thresholds())
        XCTAssertNil(report.tcp.bindTracking)
        XCTAssertEqual(report.tcp.groups.map(\.free), [42, 42, 42, 42, 42])
        XCTAssertEqual(report.inferredBindBeforeConnectPorts, 32)
        XCTAssertTrue(report.destinationFreeIsUpperBound)
        let text = CheckReportRenderer.render(report, top: 0)
        XCTAssertTrue(text.contains("FREE is an upper bound"), text)
        XCTAssertTrue(text.contains("≤42"), text)
        let json = String(decoding: try JSONEncoder().encode(report), as: UTF8.self)
        XCTAssertTrue(json.contains(#""destination_free_is_upper_bound":true"#), json)
    }

    func testTheFirstCensusTakesEveryConnectedSocketAsOlderThanTheCollector() {
        // First look: nothing known yet, so every connected socket is untracked.
        var first = PortCensus(sysctls: range)
        first.use(BoundSocketKnowledge(boundCookies: [], predating: .firstCensus))
        netcat(&first)
        let firstReport = first.report(thresholds: Thresholds())
        XCTAssertEqual(firstReport.tcp.bindTracking, .init(boundBeforeConnectPorts: 0, untrackedSockets: 40))
        XCTAssertTrue(firstReport.destinationFreeIsUpperBound, "inferred, as without the collector")
        XCTAssertEqual(first.predatingAfter, .cookies(Set((0..<40).map { UInt64(1000 + $0) })))

        // Later: 30 of the old sockets closed; a new one was seen binding first.
        var later = PortCensus(sysctls: range)
        later.use(BoundSocketKnowledge(boundCookies: [5000], predating: first.predatingAfter))
        for i in 30..<40 { later.addTCP(connected(UInt16(40000 + i), to: UInt16(9001 + i % 5), cookie: UInt64(1000 + i)),
                                        explicitlyBound: false) }
        later.addTCP(connected(40045, to: 9001, cookie: 5000), explicitlyBound: false)
        later.addTCP(connected(40046, to: 9001, cookie: 6000), explicitlyBound: false)  // connect() chose it, seen
        let laterReport = later.report(thresholds: Thresholds())
        XCTAssertEqual(laterReport.tcp.bindTracking, .init(boundBeforeConnectPorts: 1, untrackedSockets: 10))
        XCTAssertFalse(laterReport.tcp.bindTracking?.exact ?? true)
        XCTAssertEqual(later.predatingAfter, .cookies(Set((30..<40).map { UInt64(1000 + $0) })))
    }

    func testSocketsLearntDuringTheDumpsKeepTheReportInferred() {
        var census = PortCensus(sysctls: range)
        census.use(BoundSocketKnowledge(boundCookies: [], predating: .cookies([])))
        census.addTCP(connected(40001, to: 9001, cookie: 7), explicitlyBound: false)
        XCTAssertTrue(census.holdsConnectChosen(port: 40001))
        XCTAssertFalse(census.holdsConnectChosen(port: 40002))
        XCTAssertFalse(census.holdsConnectChosen(port: 50000))
        census.noteLateBoundSockets(1)
        XCTAssertEqual(census.report(thresholds: Thresholds()).tcp.bindTracking?.untrackedSockets, 1)
    }

    func testTheTrackingRoundTripsThroughJSON() throws {
        var census = PortCensus(sysctls: range)
        census.use(BoundSocketKnowledge(boundCookies: [1000], predating: .cookies([1001])))
        netcat(&census)
        let report = census.report(thresholds: Thresholds())
        let data = try JSONEncoder().encode(report)
        XCTAssertTrue(String(decoding: data, as: UTF8.self).contains(#""exact":false"#))
        XCTAssertEqual(try JSONDecoder().decode(PortBudgetReport.self, from: data).tcp.bindTracking, report.tcp.bindTracking)
    }

    func testBeyondTheKeptCookiesOnlyTheHighestIsKeptAndStillNeverClaimsExact() {
        let wide = PortSysctls(rangeLow: 1024, rangeHigh: 65535)
        let many = PortCensus.predatingCookiesKept + 10
        func socket(_ i: Int, cookie: UInt64) -> InetDiagRecord {
            // Spread over ports and destinations as connect() would.
            InetDiagRecord(family: .v4, state: TCPState.established, localPort: UInt16(1024 + i % 64_000),
                           remotePort: UInt16(1 + i / 64_000), local: local, remote: local, cookie: cookie)
        }
        var first = PortCensus(sysctls: wide)
        first.use(BoundSocketKnowledge(boundCookies: [], predating: .firstCensus))
        for i in 0..<many { first.addTCP(socket(i, cookie: UInt64(10 + i)), explicitlyBound: false) }
        XCTAssertEqual(first.report(thresholds: Thresholds()).tcp.bindTracking?.untrackedSockets, many)
        XCTAssertEqual(first.predatingAfter, .atOrBelow(UInt64(10 + many - 1)))

        // One old socket left, and a newer one above the mark: only the old counts.
        var later = PortCensus(sysctls: wide)
        later.use(BoundSocketKnowledge(boundCookies: [], predating: first.predatingAfter))
        later.addTCP(socket(5, cookie: 15), explicitlyBound: false)
        later.addTCP(socket(6, cookie: UInt64(10 + many)), explicitlyBound: false)
        XCTAssertEqual(later.report(thresholds: Thresholds()).tcp.bindTracking?.untrackedSockets, 1)
        XCTAssertEqual(later.predatingAfter, .atOrBelow(UInt64(10 + many - 1)))

        // Once none is left, the mark goes: exact from then on.
        var last = PortCensus(sysctls: wide)
        last.use(BoundSocketKnowledge(boundCookies: [], predating: later.predatingAfter))
        last.addTCP(socket(6, cookie: UInt64(10 + many)), explicitlyBound: false)
        XCTAssertEqual(last.report(thresholds: Thresholds()).tcp.bindTracking?.exact, true)
        XCTAssertEqual(last.predatingAfter, .cookies([]))
    }
}

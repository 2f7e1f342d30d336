import PortBudgetCore
import XCTest

/// When one TCP dump may stand for two: the sockets it counts against the
/// namespace's `inuse`, and the counters that must not move around it.
final class HashedSocketTallyTests: XCTestCase {
    var nextCookie: UInt64 = 1

    func record(_ state: UInt8, timer: UInt8 = 0, port: UInt16 = 40001, peerPort: UInt16 = 8080,
                cookie: UInt64? = nil) -> InetDiagRecord {
        defer { nextCookie += 1 }
        return InetDiagRecord(family: .v4, state: state, timer: timer, localPort: port, remotePort: peerPort,
                              local: IPAddress(v4: 0x7f00_0001), remote: IPAddress(v4: 0x7f00_0001),
                              cookie: cookie ?? nextCookie)
    }

    func testCountsWhatInuseCounts() {
        var tally = HashedSocketTally()
        for state in [TCPState.listen, TCPState.established, TCPState.synSent, TCPState.finWait1, TCPState.finWait2,
                      TCPState.closeWait, TCPState.lastAck, TCPState.closing] {
            tally.add(record(state))
        }
        XCTAssertEqual(tally.counted, 8)
        // TIME_WAIT entries (also when reported with their FIN_WAIT2 substate),
        // request sockets and bound-only sockets are not in inuse.
        tally.add(record(TCPState.timeWait, timer: HashedSocketTally.timeWaitTimer))
        tally.add(record(TCPState.finWait2, timer: HashedSocketTally.timeWaitTimer))
        tally.add(record(TCPState.synRecv, timer: 1))
        tally.add(record(TCPState.newSynRecv))
        tally.add(record(TCPState.close, peerPort: 0))
        XCTAssertEqual(tally.counted, 8)
    }

    func testProvesOnlyWithUnmovedCountersMatchingTheDump() {
        var tally = HashedSocketTally()
        for _ in 0..<7 { tally.add(record(TCPState.established)) }
        let counters = HashedTCPCounters(inUse: 7, opens: 12)
        XCTAssertTrue(tally.provesNoneLeftOut(before: counters, after: counters))
        // One socket more than the dump met: an explicitly bound connection left out.
        XCTAssertFalse(tally.provesNoneLeftOut(before: HashedTCPCounters(inUse: 8, opens: 12),
                                               after: HashedTCPCounters(inUse: 8, opens: 12)))
        // A socket connected and another closed during the dump: the equal count proves nothing.
        XCTAssertFalse(tally.provesNoneLeftOut(before: counters, after: HashedTCPCounters(inUse: 7, opens: 13)))
        XCTAssertFalse(tally.provesNoneLeftOut(before: HashedTCPCounters(inUse: 6, opens: 12), after: counters))
    }

    func testCountersNeedEveryField() {
        let v4: ProcNetParser.Table = ["TCP": ["inuse": 3]]
        let v6: ProcNetParser.Table = ["TCP6": ["inuse": 2]]
        let snmp: ProcNetParser.Table = ["Tcp": ["ActiveOpens": 5, "PassiveOpens": 4]]
        XCTAssertEqual(HashedTCPCounters(sockstat: v4, sockstat6: v6, snmp: snmp), HashedTCPCounters(inUse: 5, opens: 9))
        XCTAssertNil(HashedTCPCounters(sockstat: v4, sockstat6: nil, snmp: snmp))
        XCTAssertNil(HashedTCPCounters(sockstat: v4, sockstat6: v6, snmp: ["Tcp": ["ActiveOpens": 5]]))
    }

    /// Read in place after the dump, the counts are those the full parsers
    /// give, on both fixture hosts; a file cut short, a missing line or field,
    /// or a line whose keys and values do not pair proves nothing.
    func testCountersReadInPlaceAgreeWithTheTables() throws {
        for host in ["procfs-busy", "procfs-default"] {
            let v4 = try Fixture.text("\(host)/net/sockstat"), v6 = try Fixture.text("\(host)/net/sockstat6")
            let snmp = try Fixture.text("\(host)/net/snmp")
            let tables = HashedTCPCounters(sockstat: try ProcNetParser.table(.sockstat, v4, file: "sockstat"),
                                           sockstat6: try ProcNetParser.table(.sockstat6, v6, file: "sockstat6"),
                                           snmp: try ProcNetParser.table(.snmp, snmp, file: "snmp"))
            XCTAssertNotNil(tables, host)
            XCTAssertEqual(HashedTCPCounters(sockstatText: v4, sockstat6Text: v6, snmpText: snmp), tables, host)
            XCTAssertNil(HashedTCPCounters(sockstatText: String(v4.dropLast()), sockstat6Text: v6, snmpText: snmp), host)
            XCTAssertNil(HashedTCPCounters(sockstatText: v4, sockstat6Text: v6, snmpText: String(snmp.dropLast())), host)
        }
        let v6 = "TCP6: inuse 2\n", snmp = "Tcp: RtoAlgorithm ActiveOpens PassiveOpens\nTcp: 1 5 4\n"
        XCTAssertEqual(HashedTCPCounters(sockstatText: "sockets: used 9\nTCP: inuse 3 orphan 0 tw 7\n", sockstat6Text: v6,
                                         snmpText: snmp), HashedTCPCounters(inUse: 5, opens: 9))
        // TCP6's line is not TCP's, nor is the header a value.
        XCTAssertNil(HashedTCPCounters(sockstatText: "TCP6: inuse 3\n", sockstat6Text: v6, snmpText: snmp))
        XCTAssertNil(HashedTCPCounters(sockstatText: "TCP: inuse 3 orphan\n", sockstat6Text: v6, snmpText: snmp))
        XCTAssertNil(HashedTCPCounters(sockstatText: "TCP: inuse x\n", sockstat6Text: v6, snmpText: snmp))
        XCTAssertNil(HashedTCPCounters(sockstatText: "TCP: inuse 3\n", sockstat6Text: v6,
                                       snmpText: "Tcp: RtoAlgorithm ActiveOpens PassiveOpens\n"))
        XCTAssertNil(HashedTCPCounters(sockstatText: "TCP: inuse 3\n", sockstat6Text: v6,
                                       snmpText: "Tcp: RtoAlgorithm ActiveOpens\nTcp: 1 5\n"))
        XCTAssertNil(HashedTCPCounters(sockstatText: "TCP: inuse 3\n", sockstat6Text: v6,
                                       snmpText: "Tcp: RtoAlgorithm ActiveOpens PassiveOpens\nTcp: 1 5\n"))
    }

    /// The snmp parser keeps PassiveOpens, which no exported counter reads.
    func testSnmpKeepsPassiveOpens() throws {
        let text = "Tcp: RtoAlgorithm ActiveOpens PassiveOpens CurrEstab\nTcp: 1 5 4 2\n"
            + "Udp: InDatagrams NoPorts\nUdp: 0 0\nIcmp: InMsgs\nIcmp: 0\n"
        let table = try ProcNetParser.table(.snmp, text, file: "snmp")
        XCTAssertEqual(table["Tcp"]?["PassiveOpens"], 4)
        XCTAssertEqual(table["Tcp"]?["ActiveOpens"], 5)
    }

    /// A socket the dump met twice (a bucket resumed by position after a
    /// request socket was added) counts once: otherwise it could stand in
    /// for a connection the filter left out.
    func testASocketMetTwiceCountsOnce() {
        var tally = HashedSocketTally()
        tally.add(record(TCPState.established, cookie: 7))
        tally.add(record(TCPState.established, cookie: 7))
        XCTAssertEqual(tally.counted, 1)
        let counters = HashedTCPCounters(inUse: 2, opens: 0)
        XCTAssertFalse(tally.provesNoneLeftOut(before: counters, after: counters))
    }

    /// Beyond `cookiesKept` sockets nothing is proved: the census dumps twice.
    func testBeyondTheCookieBoundNothingIsProved() {
        var tally = HashedSocketTally()
        let n = HashedSocketTally.cookiesKept + 1
        for i in 0..<n { tally.add(record(TCPState.established, cookie: UInt64(i + 1))) }
        let counters = HashedTCPCounters(inUse: Int64(n), opens: 0)
        XCTAssertFalse(tally.provesNoneLeftOut(before: counters, after: counters))
    }
}

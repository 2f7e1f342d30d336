import PortBudgetCore
import XCTest

/// What a namespace's own counters prove absent, from synthetic sockstat tables.
final class SocketPresenceTests: XCTestCase {
    func table(used: Int64, tcpInuse: Int64 = 0, tw: Int64 = 0, udpInuse: Int64 = 0) -> ProcNetParser.Table {
        ["sockets": ["used": used], "TCP": ["inuse": tcpInuse, "tw": tw], "UDP": ["inuse": udpInuse], "UDPLITE": ["inuse": 0]]
    }
    let v6: ProcNetParser.Table = ["TCP6": ["inuse": 0], "UDP6": ["inuse": 0], "UDPLITE6": ["inuse": 0]]

    func testOnlyTheAgentsSocketsMeansNoTCPSocketAtAll() {
        let presence = SocketPresence(sockstat: table(used: 2), sockstat6: v6, agentSockets: 2)
        XCTAssertFalse(presence.tcpHashed)
        XCTAssertFalse(presence.tcpUnhashed)
        XCTAssertFalse(presence.udp)
    }

    func testOneSocketMoreMayBeABoundOnlyTCPSocket() {
        let presence = SocketPresence(sockstat: table(used: 3), sockstat6: v6, agentSockets: 2)
        XCTAssertFalse(presence.tcpHashed, "inuse does not count a bound-only socket")
        XCTAssertTrue(presence.tcpUnhashed)
    }

    /// Without knowing the agent's own sockets there (its own namespace, a
    /// one-shot census) or without the count, nothing is proved.
    func testUnknownCountsProveNothing() {
        XCTAssertTrue(SocketPresence(sockstat: table(used: 0), sockstat6: v6).tcpUnhashed)
        XCTAssertTrue(SocketPresence(sockstat: ["TCP": ["inuse": 0, "tw": 0]], sockstat6: v6, agentSockets: 2).tcpUnhashed)
        XCTAssertTrue(SocketPresence(sockstat: nil, sockstat6: nil, agentSockets: 2).tcpUnhashed)
        XCTAssertEqual(SocketPresence(sockstat: nil, sockstat6: nil), .unknown)
    }

    func testHashedSocketsAreSeenAsBefore() {
        XCTAssertTrue(SocketPresence(sockstat: table(used: 3, tcpInuse: 1), sockstat6: v6, agentSockets: 2).tcpHashed)
        XCTAssertTrue(SocketPresence(sockstat: table(used: 2, tw: 4), sockstat6: v6, agentSockets: 2).tcpHashed)
        XCTAssertTrue(SocketPresence(sockstat: table(used: 3, udpInuse: 1), sockstat6: v6, agentSockets: 2).udp)
    }
}

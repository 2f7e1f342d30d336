import Foundation
import XCTest
@testable import PortBudgetCore

final class SNATCensusTests: XCTestCase {
    let nat = IPAddress("10.2.0.1")!
    let client = IPAddress("10.1.0.2")!
    let server = IPAddress("10.2.0.2")!

    func entry(proto: UInt8 = 6, clientPort: UInt16, natPort: UInt16, peerPort: UInt16 = 8080,
               status: UInt32 = ConntrackEntry.sourceNATStatus, peer: IPAddress? = nil) -> ConntrackEntry {
        let peer = peer ?? server
        return ConntrackEntry(
            family: .v4, proto: proto, status: status,
            original: ConntrackTuple(source: client, destination: peer, sourcePort: clientPort, destinationPort: peerPort),
            reply: ConntrackTuple(source: peer, destination: nat, sourcePort: peerPort, destinationPort: natPort))
    }

    func testGroupsByProtocolTranslatedSourceAndPeer() throws {
        var census = SNATCensus(range: try SNATPortRange(parsing: "40000-40009"))
        for i in 0..<10 { census.add(entry(clientPort: 50000 + UInt16(i), natPort: 40000 + UInt16(i))) }
        // The same translated port twice towards one peer is one port.
        census.add(entry(clientPort: 51000, natPort: 40003))
        for i in 0..<3 { census.add(entry(clientPort: 52000 + UInt16(i), natPort: 40000 + UInt16(i), peerPort: 9090)) }
        for i in 0..<2 { census.add(entry(proto: 17, clientPort: 53000 + UInt16(i), natPort: 40000 + UInt16(i), peerPort: 53)) }
        // Not source-NATed, ICMP, or outside the range: not counted into groups.
        census.add(entry(clientPort: 54000, natPort: 40005, peerPort: 7070, status: 0x8))
        census.add(entry(proto: 1, clientPort: 0, natPort: 0))
        census.add(entry(clientPort: 55000, natPort: 55000, peerPort: 6060))
        let r = census.report()
        XCTAssertEqual(r.portRange, try SNATPortRange(parsing: "40000-40009"))
        XCTAssertEqual(r.groupCount, 3)
        XCTAssertEqual(r.entriesOutsideRange, 1)
        XCTAssertEqual(r.entries, 16)
        XCTAssertEqual(r.maxGroupUtilization, 1)
        XCTAssertEqual(r.groups.map { "\($0.protocol) \($0.sourceIP) \($0.peerIP):\($0.peerPort) \($0.used)/\($0.capacity)" },
                       ["tcp 10.2.0.1 10.2.0.2:8080 10/10", "tcp 10.2.0.1 10.2.0.2:9090 3/10", "udp 10.2.0.1 10.2.0.2:53 2/10"])
        XCTAssertEqual(r.groups[0].free, 0)
        XCTAssertEqual(r.groups[1].utilization, 0.3, accuracy: 1e-9)
    }

    /// With DNAT too (a Kubernetes service), the NAT keeps the reply tuple
    /// unique: the group's peer is the endpoint, not the service address.
    func testPeerIsTheReplySourceWhenDNATAppliedToo() throws {
        var census = SNATCensus(range: .kernelDefault)
        let endpoint = IPAddress("10.244.1.5")!
        var e = entry(clientPort: 40000, natPort: 40000, peerPort: 443)
        e.original.destination = IPAddress("10.96.0.10")!
        e.reply.source = endpoint
        e.reply.sourcePort = 8443
        census.add(e)
        let g = try XCTUnwrap(census.report().groups.first)
        XCTAssertEqual([g.peerIP, String(g.peerPort), String(g.capacity)], ["10.244.1.5", "8443", "64512"])
    }

    func testPortRangeParsingNamesWhatIsWrong() throws {
        XCTAssertEqual(try SNATPortRange(parsing: "1024-65535"), .kernelDefault)
        XCTAssertEqual(try SNATPortRange(parsing: "40000-40000").capacity, 1)
        for (bad, says) in [("40009-40000", "reversed"), ("0-100", "out of 1-65535"), ("1-65536", "out of 1-65535"),
                            ("abc", "not LOW-HIGH"), ("1024", "not LOW-HIGH"), ("-5-10", "not LOW-HIGH"),
                            ("1024-", "not LOW-HIGH"), ("+1-5", "not LOW-HIGH"), (" 1-5", "not LOW-HIGH"),
                            ("1-2-3", "not LOW-HIGH"), ("", "not LOW-HIGH")] {
            XCTAssertThrowsError(try SNATPortRange(parsing: bad), bad) { error in
                let text = (error as? SNATPortRangeError)?.description ?? ""
                XCTAssertTrue(text.contains(says) && !text.contains("\n"), "\(bad): \(text)")
            }
        }
    }

    func testReportVerdictStatusJSONAndTopIncludeSNATAndTheTable() throws {
        var census = SNATCensus(range: try SNATPortRange(parsing: "40000-40009"))
        for i in 0..<10 { census.add(entry(clientPort: 50000 + UInt16(i), natPort: 40000 + UInt16(i))) }
        for i in 0..<2 { census.add(entry(clientPort: 52000 + UInt16(i), natPort: 40000 + UInt16(i), peerPort: 9090)) }
        var report = PortBudgetReport(
            portRange: .init(low: 32768, high: 60999, reserved: 0, usable: 28232),
            timeWaitReuse: .init(tcpTwReuse: 2, tcpTimestamps: 1, reuseDelayMs: 1000, finTimeoutSeconds: 60),
            tcp: .init(boundPorts: 0, bindUtilization: 0, explicitBoundPorts: 0, listenerPortsInRange: [], groupCount: 0,
                       maxGroupUtilization: 0, socketsByState: [:], groups: []),
            udp: .init(boundPorts: 0, utilization: 0, sockets: 0), udplite: nil, thresholds: Thresholds())
        XCTAssertEqual(report.status, .ok)
        var stats = ConntrackStatistics()
        stats.insertFailed = 4
        report.conntrack = .init(entries: 12, limit: 262_144, statistics: stats)
        report.snat = census.report()
        XCTAssertEqual(report.status, .critical)
        XCTAssertEqual(report.verdict,
                       "CRITICAL: SNAT TCP 10.2.0.1 → 10.2.0.2:8080 at 100%, 0 of 10 ports left; at 0, the NAT drops new connections to it (conntrack insert_failed rises)")

        let top = report.limitingGroups(to: 1)
        XCTAssertEqual(top.snat?.groups.count, 1)
        XCTAssertEqual(top.snat?.groupCount, 2)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = try JSONSerialization.jsonObject(with: encoder.encode(top)) as! [String: Any]
        let snat = try XCTUnwrap(json["snat"] as? [String: Any])
        XCTAssertEqual(snat["port_range"] as? [String: Int], ["low": 40000, "high": 40009])
        let group = try XCTUnwrap((snat["groups"] as? [[String: Any]])?.first)
        XCTAssertEqual(Set(group.keys), ["protocol", "source_ip", "peer_ip", "peer_port", "used", "capacity", "free", "utilization"])
        XCTAssertEqual(group["free"] as? Int, 0)
        let table = try XCTUnwrap(json["conntrack"] as? [String: Any])
        XCTAssertEqual(Set(table.keys), ["entries", "limit", "utilization", "insert_failed", "drop", "early_drop",
                                         "search_restart", "clash_resolve"])
        XCTAssertEqual(table["insert_failed"] as? Int, 4)
        let back = try JSONDecoder().decode(PortBudgetReport.self, from: encoder.encode(report))
        XCTAssertEqual(back, report)

        // A table nearly full is a limit of its own, counted in entries.
        report.snat = nil
        report.conntrack = .init(entries: 255_000, limit: 262_144, statistics: stats)
        XCTAssertEqual(report.status, .critical)
        XCTAssertTrue(report.verdict.hasPrefix("CRITICAL: conntrack table at 97.3%, 7144 of 262144 entries left"),
                      report.verdict)
    }
}

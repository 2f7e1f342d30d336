import XCTest
@testable import PortBudgetCore

/// Holders folded by the census from synthetic records: per group and host-wide,
/// named, cut to the top K, deleted cgroups kept by id, TIME_WAIT nobody's, and
/// no holders at all (said once) without a cgroup v2 hierarchy.
final class PortHoldersTests: XCTestCase {
    let local = IPAddress("10.0.0.1")!, peer = IPAddress("10.0.0.2")!

    func census(_ sockets: [(port: UInt16, cgroup: UInt64, state: UInt8)], udp: [(UInt16, UInt64)] = []) -> PortCensus {
        var census = PortCensus(sysctls: PortSysctls(rangeLow: 40000, rangeHigh: 40099))
        for s in sockets {
            census.addTCP(InetDiagRecord(family: .v4, state: s.state, localPort: s.port, remotePort: 443,
                                         local: local, remote: peer, inode: UInt32(s.port), cgroupID: s.cgroup),
                          explicitlyBound: false)
        }
        for (port, cgroup) in udp {
            census.addUDP(InetDiagRecord(family: .v4, state: 7, localPort: port, remotePort: 53, local: local,
                                         remote: peer, inode: UInt32(port) + 1000, cgroupID: cgroup))
        }
        return census
    }

    func testHoldersPerGroupAndHostWideAreNamedAndCut() throws {
        var sockets: [(UInt16, UInt64, UInt8)] = []
        for i in 0..<30 { sockets.append((40000 + UInt16(i), 11, TCPState.established)) }
        for i in 30..<50 { sockets.append((40000 + UInt16(i), 22, TCPState.established)) }
        for i in 50..<55 { sockets.append((40000 + UInt16(i), 33, TCPState.established)) }
        for i in 55..<65 { sockets.append((40000 + UInt16(i), 0, TCPState.timeWait)) }  // no cgroup: nobody's
        let c = census(sockets, udp: [(40070, 44), (40071, 44)])
        XCTAssertEqual(c.cgroupIDs, [11, 22, 33, 44])
        let naming = HolderNaming(cgroupRoot: "/sys/fs/cgroup", owners: [
            11: CgroupOwner(path: "/system.slice/alpha.service"), 22: CgroupOwner(path: "/system.slice/beta.service"),
            44: CgroupOwner(path: "/system.slice/relay.service"),
        ], top: 2)
        let report = c.report(thresholds: Thresholds(), naming: naming)
        let group = try XCTUnwrap(report.tcp.groups.first)
        XCTAssertEqual(group.used, 65)
        XCTAssertEqual(group.holders?.map(\.ports), [30, 20], "top 2, most first; TIME_WAIT is nobody's")
        XCTAssertEqual(group.holders?.map(\.unit), ["alpha.service", "beta.service"])
        XCTAssertNil(group.processes, "no processes unless asked")
        XCTAssertEqual(report.tcp.holders?.map(\.cgroupID), [11, 22])
        XCTAssertEqual(report.udp.holders?.first?.cgroup, "/system.slice/relay.service")
        XCTAssertEqual(report.udp.holders?.first?.ports, 2)
        XCTAssertEqual(report.attribution?.cgroupRoot, "/sys/fs/cgroup")
        XCTAssertEqual(report.attribution?.unattributedTimeWait, 10)

        // All holders, and a cgroup that is gone keeps its id.
        var all = naming
        all.top = 0
        let every = c.report(thresholds: Thresholds(), naming: all).tcp.groups[0].holders ?? []
        XCTAssertEqual(every.map(\.cgroupID), [11, 22, 33])
        XCTAssertEqual(every.last?.gone, true)
        XCTAssertNil(every.last?.cgroup)
        XCTAssertEqual(every.last?.shortName, "deleted cgroup 33")
        let json = String(decoding: try JSONEncoder().encode(every.last), as: UTF8.self)
        XCTAssertTrue(json.contains(#""cgroup":null"#) && json.contains(#""gone":true"#) && json.contains(#""cgroup_id":33"#), json)
    }

    func testProcessesFromInodes() throws {
        var c = PortCensus(sysctls: PortSysctls(rangeLow: 40000, rangeHigh: 40099))
        c.trackSocketInodes()
        for i in 0..<6 {
            c.addTCP(InetDiagRecord(family: .v4, state: TCPState.established, localPort: 40000 + UInt16(i), remotePort: 443,
                                    local: local, remote: peer, inode: 500 + UInt32(i), cgroupID: 11), explicitlyBound: false)
        }
        XCTAssertEqual(c.socketInodes, Set(500..<506))
        let nginx = ProcessRef(pid: 10, comm: "nginx"), curl = ProcessRef(pid: 20, comm: "curl")
        let owners: [UInt32: ProcessRef] = [500: nginx, 501: nginx, 502: nginx, 503: nginx, 504: curl]
        let report = c.report(thresholds: Thresholds(), naming: HolderNaming(cgroupRoot: nil, owners: [:], top: 3, processes: owners))
        XCTAssertEqual(report.tcp.groups[0].processes?.map(\.pid), [10, 20])
        XCTAssertEqual(report.tcp.groups[0].processes?.map(\.ports), [4, 1])
        XCTAssertEqual(report.tcp.processes?.map(\.ports), [4, 1])
        XCTAssertNil(report.tcp.groups[0].holders, "no cgroup v2: no cgroup holders")
        XCTAssertEqual(report.attribution?.unavailable, HolderNaming.noCgroupV2)
    }

    func testOverflowCgroupsFoldIntoOther() {
        var holders = HostWideHolders(low: 40000, high: 40099)
        for id in 1...UInt64(HostWideHolders.maxTracked + 5) { holders.insert(id, port: 40000 + UInt16(id % 100)) }
        XCTAssertEqual(holders.ids.count, HostWideHolders.maxTracked + 1)
        XCTAssertEqual(holders.counts.first { $0.id == HostWideHolders.otherID }?.ports, 5)
        XCTAssertEqual(Holder(id: HostWideHolders.otherID, ports: 5, owner: nil).shortName, "other cgroups")
    }
}

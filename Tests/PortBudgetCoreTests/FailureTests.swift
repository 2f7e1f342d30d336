import XCTest
@testable import PortBudgetCore

final class FailureTests: XCTestCase {
    let connect = FailureKind(protocolNumber: 6, call: .connect, errno: FailureErrno.eaddrnotavail)
    let send = FailureKind(protocolNumber: 17, call: .send, errno: FailureErrno.eagain)

    func testFoldKeepsOneNamespaceListsEveryWatchedKindAndBoundsHolders() {
        var counts: [FailureCountKey: UInt64] = [
            FailureCountKey(netnsInode: 1, kind: connect, cgroupID: 10): 5,
            FailureCountKey(netnsInode: 1, kind: connect, cgroupID: 11): 2,
            FailureCountKey(netnsInode: 2, kind: connect, cgroupID: 10): 100,  // another namespace
        ]
        for id in 100..<120 { counts[FailureCountKey(netnsInode: 1, kind: send, cgroupID: UInt64(id))] = 1 }
        let owners = [UInt64(10): CgroupOwner(path: "/system.slice/api.service")]
        let failures = PortAllocationFailures(counts: counts, netnsInode: 1, watched: FailureKind.alwaysWatched,
                                              owners: owners)
        XCTAssertEqual(failures.totals.map(\.count), [7, 0, 20])  // tcp connect, tcp listen, udp send
        XCTAssertEqual(failures.totals.map(\.kind.call), [.connect, .listen, .send])
        XCTAssertEqual(failures.total, 27)
        XCTAssertEqual(failures.holders.count, PortAllocationFailures.holdersExported)
        XCTAssertEqual(failures.holders[0].count, 5)
        XCTAssertEqual(failures.holders[0].unit, "api.service")
        XCTAssertEqual(failures.holders[1].cgroupID, 11)
        XCTAssertNil(failures.holders[1].cgroup, "an unnamed cgroup is not invented")
    }

    func testExpositionNamesErrnoSymbolicallyAndMarksGoneCgroups() {
        let failures = PortAllocationFailures(
            counts: [FailureCountKey(netnsInode: 1, kind: connect, cgroupID: 42): 3], netnsInode: 1,
            watched: [connect], owners: [:], drops: ["count_keys": 0, "events": 2])
        var w = ExpositionWriter()
        MetricsExposition.writeFailures(failures, into: &w)
        let text = w.text
        XCTAssertTrue(text.contains(#"portbudget_port_allocation_failures_total{protocol="tcp",call="connect",errno="EADDRNOTAVAIL"} 3"#), text)
        XCTAssertTrue(text.contains(#"# TYPE portbudget_port_allocation_failures_total counter"#), text)
        XCTAssertTrue(text.contains(#"portbudget_cgroup_port_allocation_failures_total{protocol="tcp",call="connect",errno="EADDRNOTAVAIL",cgroup="deleted:42",unit="",container_id="",pod_uid=""} 3"#), text)
        XCTAssertTrue(text.contains(#"portbudget_port_allocation_failure_drops_total{reason="events"} 2"#), text)
    }

    func testNoFailuresMeansNoFamilies() {
        var w = ExpositionWriter()
        MetricsExposition.writeFailures(nil, into: &w)
        XCTAssertEqual(w.text, "")
    }

    func testErrnoAndProtocolNames() {
        XCTAssertEqual(FailureErrno.name(98), "EADDRINUSE")
        XCTAssertEqual(FailureErrno.name(99), "EADDRNOTAVAIL")
        XCTAssertEqual(FailureErrno.name(11), "EAGAIN")
        XCTAssertEqual(FailureErrno.name(5), "errno 5")
        XCTAssertEqual(FailureProtocol.name(136), "udplite")
    }

    func testTraceLines() {
        let owner = CgroupOwner(path: "/kubepods/besteffort/pod0f6b1a4e-1c11-4c7c-9d0e-8b1c2f3a4b5c/" + String(repeating: "ab", count: 32))
        let event = FailureEvent(time: 1_765_053_601.25, netnsInode: 4026532000, netnsName: "pod:web-1", pid: 812, tid: 813,
                                 comm: "cu\"rl", cgroupID: 7, owner: owner, kind: connect,
                                 destination: (address: "fd77::1", port: 443))
        XCTAssertEqual(FailureEventRenderer.text(event),
                       "2025-12-06T20:40:01.250000Z pod:web-1 pid=812 comm=cu\"rl cgroup=\(owner.path) container=abababababab pod=0f6b1a4e-1c11-4c7c-9d0e-8b1c2f3a4b5c tcp connect EADDRNOTAVAIL dst=[fd77::1]:443")
        let json = FailureEventRenderer.json(event)
        XCTAssertTrue(json.hasPrefix(#"{"time":"2025-12-06T20:40:01.250000Z","netns":"pod:web-1","netns_inode":4026532000,"pid":812,"tid":813,"comm":"cu\"rl","#), json)
        XCTAssertTrue(json.hasSuffix(#""protocol":"tcp","call":"connect","errno":"EADDRNOTAVAIL","destination_ip":"fd77::1","destination_port":443}"#), json)
        var unnamed = event
        unnamed.owner = nil
        unnamed.netnsName = nil
        unnamed.destination = nil
        XCTAssertTrue(FailureEventRenderer.json(unnamed).contains(#""netns":null"#))
        XCTAssertTrue(FailureEventRenderer.text(unnamed).contains("netns:4026532000 pid=812 comm=cu\"rl cgroup=id:7 tcp"))
    }

    func testTimestampsAcrossDateBoundaries() {
        XCTAssertEqual(FailureEventRenderer.timestamp(0), "1970-01-01T00:00:00.000000Z")
        XCTAssertEqual(FailureEventRenderer.timestamp(951_782_400), "2000-02-29T00:00:00.000000Z")
        XCTAssertEqual(FailureEventRenderer.timestamp(4_102_444_799.5), "2099-12-31T23:59:59.500000Z")
    }

    func testCheckWatchLineAndStatus() {
        let failures = PortAllocationFailures(
            counts: [FailureCountKey(netnsInode: 1, kind: connect, cgroupID: 9): 5,
                     FailureCountKey(netnsInode: 1, kind: send, cgroupID: 9): 1],
            netnsInode: 1, watched: FailureKind.alwaysWatched, owners: [9: CgroupOwner(path: "/system.slice/api.service")])
        XCTAssertEqual(FailureSummary.text(failures, seconds: 10),
                       "CRITICAL: 6 failed port allocations in 10 s: tcp connect EADDRNOTAVAIL 5, udp send EAGAIN 1; most by api.service (5).")
        XCTAssertEqual(FailureSummary.exitCode(0, failures: failures), 2)
        XCTAssertEqual(FailureSummary.exitCode(3, failures: failures), 3)
        let none = PortAllocationFailures(counts: [:], netnsInode: 1, watched: FailureKind.alwaysWatched, owners: [:])
        XCTAssertEqual(FailureSummary.text(none, seconds: 2.5), "Failed port allocations in 2.5 s: none.")
        XCTAssertEqual(FailureSummary.exitCode(1, failures: none), 1)
        XCTAssertEqual(FailureSummary.exitCode(0, failures: nil), 0)
    }
}

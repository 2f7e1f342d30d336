import Foundation
import XCTest
@testable import PortBudgetCore

/// `serve`/`textfile --all-namespaces`: several namespaces in one valid
/// exposition, each family once with a `netns` label first, `--top` taken
/// across namespaces, aggregates for every namespace, and who each one is.
final class NamespacesExpositionTests: XCTestCase {
    func report(used: Int, peerPort: UInt16, range: ClosedRange<UInt16> = 40000...40099) -> PortBudgetReport {
        var census = PortCensus(sysctls: PortSysctls(rangeLow: range.lowerBound, rangeHigh: range.upperBound))
        for i in 0..<used {
            census.addTCP(InetDiagRecord(family: .v4, state: TCPState.established, localPort: range.lowerBound + UInt16(i),
                                         remotePort: peerPort, local: IPAddress("10.0.0.1")!, remote: IPAddress("10.0.0.2")!),
                          explicitlyBound: false)
        }
        return census.report(thresholds: Thresholds())
    }

    func entry(_ netns: NetnsInfo, _ report: PortBudgetReport?, failing: String? = nil) -> NamespaceCollection {
        NamespaceCollection(netns: netns, report: report,
                            outcomes: [CollectorOutcome(name: failing ?? "sockdiag", seconds: 0.001, error: failing.map { "\($0) failed" })])
    }

    var namespaces: CollectionResult {
        var host = report(used: 10, peerPort: 80)
        host.tcp.groups += report(used: 5, peerPort: 81).tcp.groups
        host.tcp.groupCount = 2
        let pod = NetnsInfo(name: "pod:web-1", inode: 4026532001, pids: [4242], comm: "nginx",
                            owner: CgroupOwner(path: "/kubepods.slice/kubepods-pod0a1b2c3d_4e5f_6a7b_8c9d_0e1f2a3b4c5d.slice/cri-containerd-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope"))
        var named = pod
        named.pod = "web-1"
        return CollectionResult(namespaces: [
            entry(NetnsInfo(name: "host", inode: 4026531840, pids: [2], comm: "kthreadd"), host),
            entry(named, report(used: 20, peerPort: 5432, range: 41000...41019)),
            entry(NetnsInfo(name: "blue", inode: 4026532002), nil, failing: "netns"),
        ], acrossNamespaces: true, unreadableProcesses: 1)
    }

    func samples(_ text: String, _ family: String) -> [String] {
        text.split(separator: "\n").filter { $0.hasPrefix(family + "{") || $0.hasPrefix(family + " ") }.map(String.init)
    }

    func testEveryFamilyOnceAndEverySampleWithinIt() {
        let text = MetricsExposition.render(namespaces, top: 0, version: "1")
        var seen: Set<String> = []
        var current = ""
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# HELP ") {
                current = String(line.split(separator: " ")[2])
                XCTAssertTrue(seen.insert(current).inserted, "\(current) appears twice")
            } else if !line.hasPrefix("# ") {
                XCTAssertEqual(String(line.prefix { $0 != "{" && $0 != " " }), current, "sample outside its family: \(line)")
            }
        }
        let unlabeled: Set<String> = ["portbudget_build_info", "portbudget_netns_info", "portbudget_namespaces",
                                      "portbudget_namespace_unreadable_processes"]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let family = String(line.prefix { $0 != "{" && $0 != " " })
            if unlabeled.contains(family) { continue }
            XCTAssertTrue(line.dropFirst(family.count).hasPrefix("{netns=\""), "netns label first: \(line)")
        }
    }

    func testTopIsTakenAcrossNamespacesAndAggregatesStayForEach() {
        let text = MetricsExposition.render(namespaces, top: 2, version: "1")
        XCTAssertEqual(samples(text, "portbudget_tcp_group_ports_used"), [
            #"portbudget_tcp_group_ports_used{netns="host",local_ip="10.0.0.1",peer_ip="10.0.0.2",peer_port="80"} 10"#,
            #"portbudget_tcp_group_ports_used{netns="pod:web-1",local_ip="10.0.0.1",peer_ip="10.0.0.2",peer_port="5432"} 20"#,
        ])
        XCTAssertEqual(samples(text, "portbudget_tcp_groups"),
                       [#"portbudget_tcp_groups{netns="host"} 2"#, #"portbudget_tcp_groups{netns="pod:web-1"} 1"#])
        XCTAssertEqual(samples(text, "portbudget_ports_usable"),
                       [#"portbudget_ports_usable{netns="host"} 100"#, #"portbudget_ports_usable{netns="pod:web-1"} 20"#])
        XCTAssertEqual(samples(text, "portbudget_tcp_max_group_utilization_ratio").last,
                       #"portbudget_tcp_max_group_utilization_ratio{netns="pod:web-1"} 1"#)
        let one = MetricsExposition.render(namespaces, top: 1, version: "1")
        XCTAssertEqual(samples(one, "portbudget_tcp_group_ports_used").count, 1)
        XCTAssertTrue(samples(one, "portbudget_tcp_group_ports_used")[0].contains("pod:web-1"), "the worst group overall")
    }

    func testWhoEachNamespaceIsAndAnUnmeasuredOne() {
        let text = MetricsExposition.render(namespaces, top: 20, version: "1")
        XCTAssertEqual(samples(text, "portbudget_netns_info"), [
            #"portbudget_netns_info{netns="host",inode="4026531840",pid="2",comm="kthreadd",unit="",container_id="",pod_uid="",pod="",owner_uid=""} 1"#,
            #"portbudget_netns_info{netns="pod:web-1",inode="4026532001",pid="4242",comm="nginx",unit="cri-containerd-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope",container_id="0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",pod_uid="0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",pod="web-1",owner_uid=""} 1"#,
            #"portbudget_netns_info{netns="blue",inode="4026532002",pid="",comm="",unit="",container_id="",pod_uid="",pod="",owner_uid=""} 1"#,
        ])
        XCTAssertEqual(samples(text, "portbudget_namespaces"), [#"portbudget_namespaces{state="exported",reason=""} 3"#,
                                                                #"portbudget_namespaces{state="summed",reason=""} 0"#])
        XCTAssertEqual(samples(text, "portbudget_namespace_unreadable_processes"), ["portbudget_namespace_unreadable_processes 1"])
        XCTAssertTrue(text.contains(#"portbudget_scrape_collector_success{netns="blue",collector="netns"} 0"#))
        XCTAssertFalse(text.contains(#"portbudget_ports_usable{netns="blue"}"#), "no number for an unmeasured namespace")
    }

    func testOneNamespaceIsExactlyAsBefore() {
        let single = CollectionResult(report: report(used: 10, peerPort: 80), outcomes: [])
        XCTAssertFalse(MetricsExposition.render(single, top: 20, version: "1").contains("netns"))
    }
}

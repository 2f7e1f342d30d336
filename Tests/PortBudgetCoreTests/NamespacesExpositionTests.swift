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

    /// A tenant's drained namespaces rank after every host-owned one for
    /// `--top`, as they do for the namespace budget: the host's 90% group
    /// stays in the exposition however many 100% groups a tenant makes.
    func testTopKeepsHostOwnedGroupsBeforeATenantsDrainedOnes() {
        var tenants: [NamespaceCollection] = []
        for i in 0..<3 {
            var info = NetnsInfo(name: "pid:\(100 + i) (tenant)", inode: 4026533000 + UInt64(i))
            info.unprivilegedOwnerUID = 4242
            tenants.append(entry(info, report(used: 2, peerPort: 9000, range: 40000...40001)))
        }
        let host = entry(NetnsInfo(name: "root-owned", inode: 4026532100), report(used: 9, peerPort: 7000, range: 46000...46009))
        let collection = CollectionResult(namespaces: tenants + [host], acrossNamespaces: true, unreadableProcesses: 0)
        let one = samples(MetricsExposition.render(collection, top: 1, version: "1"), "portbudget_tcp_group_ports_used")
        XCTAssertEqual(one, [#"portbudget_tcp_group_ports_used{netns="root-owned",local_ip="10.0.0.1",peer_ip="10.0.0.2",peer_port="7000"} 9"#])
        let three = samples(MetricsExposition.render(collection, top: 3, version: "1"), "portbudget_tcp_group_ports_used")
        XCTAssertEqual(three.count, 3)
        XCTAssertEqual(three.filter { $0.contains("(tenant)") }.count, 2, "the rest of the bound goes worst first")
        let text = NamespacesReport(namespaces: collection.namespaces.map { NamespaceReport(netns: $0.netns, report: $0.report) }).render(top: 1)
        XCTAssertTrue(text.split(separator: "\n").last?.hasPrefix("root-owned ") ?? false, text)
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

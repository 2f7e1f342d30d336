import Foundation
import XCTest
@testable import PortBudgetCore

/// Beyond the namespace budget, namespaces are summed and counted, and
/// namespaces any user can make never crowd out the host's.
final class NamespaceBudgetTests: XCTestCase {
    /// `used` of 10 ports toward one destination.
    func report(used: Int) -> PortBudgetReport {
        var census = PortCensus(sysctls: PortSysctls(rangeLow: 40000, rangeHigh: 40009))
        for i in 0..<used {
            census.addTCP(InetDiagRecord(family: .v4, state: TCPState.established, localPort: 40000 + UInt16(i),
                                         remotePort: 80, local: IPAddress("10.0.0.1")!, remote: IPAddress("10.0.0.2")!),
                          explicitlyBound: false)
        }
        return census.report(thresholds: Thresholds())
    }

    func entry(_ name: String, used: Int?, tenant: UInt32? = nil) -> NamespaceCollection {
        var info = NetnsInfo(name: name, inode: UInt64(abs(name.hashValue) % 1_000_000))
        info.unprivilegedOwnerUID = tenant
        return NamespaceCollection(netns: info, report: used.map(report(used:)),
                                   outcomes: [CollectorOutcome(name: used == nil ? "netns" : "sockdiag", seconds: 0,
                                                               error: used == nil ? "/proc/9/ns/net: Permission denied" : nil)])
    }

    /// The host, two host-owned namespaces at 50% and 90%, and a tenant's
    /// namespaces, all drained (100%), one of them not enterable.
    var flooded: CollectionResult {
        var namespaces = [entry("host", used: 1), entry("quiet", used: 5)]
        for i in 0..<6 { namespaces.append(entry("tenant-\(i)", used: 10, tenant: 1000)) }
        namespaces.append(entry("tenant-gone", used: nil, tenant: 1000))
        namespaces.append(entry("busy", used: 9))
        return CollectionResult(namespaces: namespaces, acrossNamespaces: true)
    }

    func testHostOwnedNamespacesClaimTheBudgetBeforeTenantsHoweverWorse() {
        let split = NamespaceBudget(listed: 4).split(flooded.namespaces)
        let names = split.listed.map { flooded.namespaces[$0].netns.name }
        XCTAssertEqual(names, ["host", "quiet", "tenant-gone", "busy"],
                       "host first, then host-owned, then the tenant's unmeasured one before its measured ones")
        XCTAssertEqual(split.summed.count, 6)
        XCTAssertEqual(split.failed.count, 0)
        let tight = NamespaceBudget(listed: 3).split(flooded.namespaces)
        XCTAssertEqual(tight.listed.map { flooded.namespaces[$0].netns.name }, ["host", "quiet", "busy"])
        XCTAssertEqual(tight.failed.map { flooded.namespaces[$0].netns.name }, ["tenant-gone"])
    }

    /// A tenant's namespaces left out for the collection's budget rank after
    /// its measured ones: a flood measured in turn does not fill the list
    /// with namespaces nothing is known of this time, nor push its drained
    /// ones out of it.
    func testNamespacesLeftOutRankAfterMeasuredOnes() {
        var namespaces = flooded.namespaces
        for i in 0..<5 {
            var left = entry("tenant-later-\(i)", used: nil, tenant: 1000)
            left.leftOut = true
            namespaces.insert(left, at: 2)
        }
        let split = NamespaceBudget(listed: 6).split(namespaces)
        XCTAssertEqual(Set(split.listed.map { namespaces[$0].netns.name }),
                       ["host", "quiet", "busy", "tenant-gone", "tenant-0", "tenant-1"],
                       "a failed one first, then the measured, the left-out ones last")
        XCTAssertEqual(split.failed.count, 5, "the left-out ones are counted, not listed")
        XCTAssertTrue(split.failed.allSatisfy { namespaces[$0].leftOut })
    }

    func testTheExpositionListsTheBudgetAndSumsTheRest() {
        let text = MetricsExposition.render(flooded, top: 20, version: "1", budget: NamespaceBudget(listed: 3))
        let info = text.split(separator: "\n").filter { $0.hasPrefix("portbudget_netns_info{") }
        XCTAssertEqual(info.count, 3)
        XCTAssertFalse(text.contains(#"netns="tenant-0""#), "a summed namespace has no series of its own")
        XCTAssertTrue(text.contains(#"portbudget_ports_usable{netns="busy"} 10"#))
        XCTAssertTrue(text.contains(#"portbudget_namespaces{state="exported",reason=""} 3"#), text)
        XCTAssertTrue(text.contains(#"portbudget_namespaces{state="summed",reason=""} 6"#))
        XCTAssertTrue(text.contains(#"portbudget_namespaces{state="failed",reason="Permission denied"} 1"#))
        XCTAssertTrue(text.contains(#"portbudget_summed_namespaces_max_utilization_ratio{limit="tcp_group"} 1"#),
                      "the tenants' drained groups are not hidden, only summed")
    }

    func testCheckListsTheBudgetAndOneLineForTheRest() {
        let report = NamespacesReport(namespaces: flooded.namespaces.map {
            NamespaceReport(netns: $0.netns, report: $0.report, error: $0.missingReportReason)
        })
        XCTAssertEqual(report.namespaces.prefix(3).map(\.netns.name), ["busy", "quiet", "host"], "host-owned first, worst first")
        let text = report.render(top: 5, budget: NamespaceBudget(listed: 3))
        XCTAssertFalse(text.contains("tenant-3 "), text)
        XCTAssertTrue(text.contains("… and 7 more not listed (7 in user namespaces of unprivileged users, 1 not measured); the worst of them tenant-"),
                      text)
    }
}

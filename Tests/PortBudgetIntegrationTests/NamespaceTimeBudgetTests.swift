import Foundation
import Logging
import PortBudgetCore
import PortBudgetLinux
import XCTest

/// A collection over every namespace stops starting a tenant's namespaces
/// once its time budget is spent, never a host-owned one: with no budget
/// at all, the `ip netns add` namespace is still measured, the tenant's are
/// listed unmeasured with the reason, and with time enough all are measured.
final class NamespaceTimeBudgetTests: XCTestCase {
    static let tenantUID: UInt32 = 4244

    func testTheBudgetLeavesOutATenantsNamespacesNeverAHostOwnedOne() throws {
        guard geteuid() == 0 else {
            try NetworkNamespace.skip("needs root to enter namespaces and run a tenant as another uid", file: #filePath, line: #line)
            return
        }
        let host = try NetworkNamespace(range: (46100, 46109))
        try host.hold(["listen", "--at", "127.0.0.1:7000"])
        try host.hold(["connect", "--to", "127.0.0.1:7000", "--count", "3", "--hold"])
        let tenant = try HeldProcess(["setpriv", "--reuid=\(Self.tenantUID)", "--regid=\(Self.tenantUID)", "--clear-groups", "--",
                                      Binaries.loadgen, "tenants", "--namespaces", "2", "--range", "40000-40001"])
        defer { tenant.release() }
        let made = tenant.firstLine(timeout: 30) ?? ""
        XCTAssertTrue(made.contains(#""made":2,"error":null"#), made + tenant.stderrText())

        let collectors = CollectorSet.standard(census: SockDiagCollector(attribution: nil, thresholds: Thresholds()),
                                               snatPortRange: .kernelDefault)
        func collector(budget: Double) -> AllNamespacesCollector {
            AllNamespacesCollector(collectors: collectors, procfs: ProcFS(root: "/proc"), cgroups: nil,
                                   logger: Logger(label: "test"), timeBudget: budget)
        }
        func tenants(_ result: CollectionResult) -> [NamespaceCollection] {
            result.namespaces.filter { $0.netns.unprivilegedOwnerUID == Self.tenantUID }
        }

        let starved = collector(budget: 0)
        // The second time the tenant's namespaces are known to be its own, not just unidentified.
        for round in 0..<2 {
            let result = starved.collect()
            let ours = result.namespaces.first { $0.netns.name == host.name }
            XCTAssertEqual(ours?.report?.tcp.groups.first?.used, 3, "round \(round): the host-owned namespace is measured")
            XCTAssertEqual(tenants(result).count, 2, "round \(round): the tenant's namespaces are listed")
            for entry in tenants(result) {
                XCTAssertNil(entry.report, "round \(round): \(entry.netns.name) was left out")
                XCTAssertEqual(entry.outcomes.first?.error, AllNamespacesCollector.outOfTime)
            }
        }
        let ample = tenants(collector(budget: .infinity).collect())
        XCTAssertEqual(ample.count, 2)
        for entry in ample {
            XCTAssertEqual(entry.report?.tcp.groups.first?.used, 2, "\(entry.netns.name): its 2-port range drained")
        }
    }
}

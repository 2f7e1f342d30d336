import Foundation
import Logging
import PortBudgetCore
import PortBudgetLinux
import XCTest

/// A collection over every namespace stops starting a tenant's namespaces
/// once its time budget is spent, never a host-owned one: with no budget
/// at all, the `ip netns add` namespace is still measured, the tenant's are
/// listed unmeasured with the reason, and with time enough all are measured.
/// Its CPU allowance does the same past the first
/// `startedPastAllowance`, and the ones left out go first next time.
final class NamespaceTimeBudgetTests: XCTestCase {
    static let tenantUID: UInt32 = 4244

    /// A host-owned namespace with 3 connections in a 10-port range from
    /// `firstPort`, and the tenant's `count` namespaces, each with its 2-port
    /// range drained; nil (skipped) when not root.
    func hostAndTenant(firstPort: Int, count: Int) throws -> (host: NetworkNamespace, tenant: HeldProcess)? {
        guard geteuid() == 0 else {
            try NetworkNamespace.skip("needs root to enter namespaces and run a tenant as another uid", file: #filePath, line: #line)
            return nil
        }
        let host = try NetworkNamespace(range: (firstPort, firstPort + 9))
        try host.hold(["listen", "--at", "127.0.0.1:7000"])
        try host.hold(["connect", "--to", "127.0.0.1:7000", "--count", "3", "--hold"])
        let tenant = try HeldProcess(["setpriv", "--reuid=\(Self.tenantUID)", "--regid=\(Self.tenantUID)", "--clear-groups", "--",
                                      Binaries.loadgen, "tenants", "--namespaces", "\(count)", "--range", "40000-40001"])
        let made = tenant.firstLine(timeout: 60) ?? ""
        XCTAssertTrue(made.contains(#""made":\#(count),"error":null"#), made + tenant.stderrText())
        return (host, tenant)
    }

    let collectors = CollectorSet.standard(census: SockDiagCollector(attribution: nil, thresholds: Thresholds()),
                                           snatPortRange: .kernelDefault)

    func testTheBudgetLeavesOutATenantsNamespacesNeverAHostOwnedOne() throws {
        guard let (host, tenant) = try hostAndTenant(firstPort: 46100, count: 2) else { return }
        defer { tenant.release() }
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

    func testTheCPUAllowanceMeasuresATenantsNamespacesInTurn() throws {
        // More than one collection's share past the allowance, fewer than two.
        let share = AllNamespacesCollector.startedPastAllowance
        let count = share + 4
        guard let (host, tenant) = try hostAndTenant(firstPort: 46110, count: count) else { return }
        defer { tenant.release() }
        // No CPU at all allowed: only the first few past the host-owned ones start.
        let spent = AllNamespacesCollector(collectors: collectors, procfs: ProcFS(root: "/proc"), cgroups: nil,
                                           logger: Logger(label: "test"), timeBudget: .infinity, cpuAllowance: 0)
        var measured: Set<String> = []
        var rounds = 2
        var round = 0
        while round < rounds {
            let result = spent.collect()
            let ours = result.namespaces.first { $0.netns.name == host.name }
            XCTAssertEqual(ours?.report?.tcp.groups.first?.used, 3, "round \(round): the host-owned namespace is measured")
            let tenants = result.namespaces.filter { $0.netns.unprivilegedOwnerUID == Self.tenantUID }
            XCTAssertEqual(tenants.count, count, "round \(round): every one of the tenant's namespaces is listed")
            let started = result.namespaces.filter { !$0.netns.ownedByHost && !$0.leftOut }
            XCTAssertLessThanOrEqual(started.count, share, "round \(round): no more started than the allowance lets past")
            let collected = tenants.filter { $0.report != nil }
            for entry in collected {
                XCTAssertEqual(entry.report?.tcp.groups.first?.used, 2, "round \(round): \(entry.netns.name) drained")
            }
            for entry in tenants where entry.report == nil {
                XCTAssertTrue(entry.leftOut, "round \(round): \(entry.netns.name) was left out, not failed")
                XCTAssertEqual(entry.outcomes.first?.error, AllNamespacesCollector.outOfCPU, "round \(round): \(entry.netns.name)")
            }
            measured.formUnion(collected.map(\.netns.name))
            if round == 0 {
                // Other namespaces outside the host's (other users', or not
                // yet named) take turns too: every one has had its turn
                // once each has been offered a place.
                let others = result.namespaces.filter { !$0.netns.ownedByHost }.count
                rounds = (others + share - 1) / share + 1
            }
            if measured.count == count { break }
            round += 1
        }
        XCTAssertEqual(measured.count, count, "every tenant namespace was measured within \(rounds) collections")
    }
}

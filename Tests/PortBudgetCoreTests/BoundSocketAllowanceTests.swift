import XCTest
import PortBudgetCore

/// Which namespaces get a map of sockets bound before connect(), how big,
/// and when it grows: a tenant's namespaces never take the host's room.
final class BoundSocketAllowanceTests: XCTestCase {
    typealias Allowance = BoundSocketAllowance

    func testTheAgentsNamespaceStartsWithAWholeRangeOthersSmall() {
        XCTAssertEqual(Allowance.initialCapacity(.agent), 65_536)
        XCTAssertEqual(Allowance.initialCapacity(.host), 1_024)
        XCTAssertEqual(Allowance.initialCapacity(.tenant), 1_024)
    }

    func testAMapGrowsFourfoldOnceHalfFullUpToItsHoldersMaximum() {
        XCTAssertNil(Allowance.grownCapacity(1_024, remembered: 511, holder: .host))
        XCTAssertEqual(Allowance.grownCapacity(1_024, remembered: 512, holder: .host), 4_096)
        XCTAssertEqual(Allowance.grownCapacity(4_096, remembered: 4_096, holder: .host), 16_384)
        XCTAssertEqual(Allowance.grownCapacity(16_384, remembered: 9_000, holder: .host), 65_536)
        XCTAssertNil(Allowance.grownCapacity(65_536, remembered: 65_536, holder: .host), "a whole range is the most")
        XCTAssertEqual(Allowance.grownCapacity(1_024, remembered: 1_024, holder: .tenant), 4_096)
        XCTAssertNil(Allowance.grownCapacity(4_096, remembered: 4_096, holder: .tenant), "a tenant's namespace stops at 4,096")
        XCTAssertNil(Allowance.grownCapacity(65_536, remembered: 65_536, holder: .agent))
    }

    func testTenantsFillOnlyTheirShareOfTheTableOfMaps() {
        let limit = 4_096
        let share = Allowance.tenantNamespacesWatched
        XCTAssertTrue(Allowance.admits(.tenant, watched: share - 1, watchedTenants: share - 1, limit: limit))
        XCTAssertFalse(Allowance.admits(.tenant, watched: share, watchedTenants: share, limit: limit),
                       "the tenants' share is used up")
        // With every tenant slot taken, host-owned namespaces still get maps up to the table's end.
        XCTAssertTrue(Allowance.admits(.host, watched: share, watchedTenants: share, limit: limit))
        XCTAssertTrue(Allowance.admits(.host, watched: limit - 1, watchedTenants: share, limit: limit))
        XCTAssertTrue(Allowance.admits(.agent, watched: limit - 1, watchedTenants: share, limit: limit))
        XCTAssertFalse(Allowance.admits(.host, watched: limit, watchedTenants: share, limit: limit), "the table is full")
        XCTAssertLessThan(share, limit / 2, "tenants can never hold most of the table")
    }
}

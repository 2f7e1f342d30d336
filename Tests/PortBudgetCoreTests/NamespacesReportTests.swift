import XCTest
@testable import PortBudgetCore

/// The report over every namespace: worst first, one verdict naming the
/// namespace, unmeasured ones listed with why, each entry plain check's keys plus netns.
final class NamespacesReportTests: XCTestCase {
    func report(used: Int, capacity: Int = 100) -> PortBudgetReport {
        var census = PortCensus(sysctls: PortSysctls(rangeLow: 40000, rangeHigh: UInt16(40000 + capacity - 1)))
        for i in 0..<used {
            census.addTCP(InetDiagRecord(family: .v4, state: TCPState.established, localPort: UInt16(40000 + i), remotePort: 443,
                                         local: IPAddress("10.0.0.1")!, remote: IPAddress("10.0.0.2")!), explicitlyBound: false)
        }
        return census.report(thresholds: Thresholds())
    }

    func testWorstFirstVerdictNamesTheNamespaceAndKeysArePlainChecks() throws {
        let all = NamespacesReport(namespaces: [
            NamespaceReport(netns: NetnsInfo(name: "host", inode: 1), report: report(used: 10)),
            NamespaceReport(netns: NetnsInfo(name: "gone", inode: 3), report: nil, error: "cannot enter"),
            NamespaceReport(netns: NetnsInfo(name: "pod:abc", inode: 2, pids: [42], comm: "envoy"), report: report(used: 97)),
        ])
        XCTAssertEqual(all.namespaces.map(\.netns.name), ["pod:abc", "host", "gone"])
        XCTAssertEqual(all.status, .critical)
        XCTAssertTrue(all.verdict.hasPrefix("CRITICAL: TCP 10.0.0.1 → 10.0.0.2:443 at 97%"), all.verdict)
        XCTAssertTrue(all.verdict.hasSuffix("[netns pod:abc] (2 namespaces measured, 1 could not be)"), all.verdict)
        XCTAssertEqual(all.unmeasured.map(\.netns.name), ["gone"])

        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: JSONEncoder().encode(all)) as? [String: Any])
        XCTAssertEqual(Set(object.keys), ["status", "verdict", "namespaces"])
        let entries = try XCTUnwrap(object["namespaces"] as? [[String: Any]])
        let plain = try XCTUnwrap(JSONSerialization.jsonObject(with: JSONEncoder().encode(report(used: 97))) as? [String: Any])
        XCTAssertEqual(Set(entries[0].keys), Set(plain.keys).union(["netns"]), "plain check's keys plus netns")
        XCTAssertEqual((entries[0]["netns"] as? [String: Any])?["pids"] as? [Int], [42])
        XCTAssertEqual(Set(entries[2].keys), ["netns", "error"])

        let text = all.render(top: 5)
        XCTAssertTrue(text.contains("pod:abc") && text.contains("pid 42 (envoy)") && text.contains("not measured"), text)
        XCTAssertTrue(text.contains("TCP destinations across namespaces (top 2 of 2, host-owned first, worst first)"), text)
    }

    func testNothingMeasured() {
        let all = NamespacesReport(namespaces: [NamespaceReport(netns: NetnsInfo(name: "x", inode: 9), report: nil, error: "e")])
        XCTAssertEqual(all.verdict, "UNKNOWN: no namespace could be measured")
    }
}

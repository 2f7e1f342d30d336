import Foundation
import XCTest

/// The dashboard's SNAT and conntrack panels on live data: a real Prometheus
/// scrapes `portbudget serve` on a masquerading router (NATTopology) whose
/// 10-port NAT range towards one destination is 90% used, then full with a
/// dropped connection, and every target of those panels must parse and
/// return the numbers built.
final class SNATDashboardTests: XCTestCase {
    static let panelMetrics = ["portbudget_snat_", "portbudget_conntrack_"]

    func testSNATPanelsReturnTheNATGroupThatWasFilled() throws {
        for tool in ["/usr/bin/prometheus", "/usr/bin/curl"] { try ExporterProcess.require(tool) }
        let dashboard = try GrafanaDashboard(json: Data(contentsOf: URL(fileURLWithPath: DashboardTests.dashboardPath)))
        let panels = dashboard.panels.filter { panel in
            panel.targets.contains { t in Self.panelMetrics.contains { t.expr.contains($0) } }
        }
        XCTAssertEqual(Set(panels.map(\.type)), ["gauge", "table", "timeseries"], "a gauge, a table and time series")
        XCTAssertGreaterThanOrEqual(panels.count, 4)

        let nat = try NATTopology(ports: SNATKernelTests.smallRange)
        try nat.server.hold(["listen", "--at", "\(NATTopology.serverIP):8080", "--accept", "hold"])
        XCTAssertEqual(try nat.client.hold(["connect", "--to", "\(NATTopology.serverIP):8080", "--count", "9", "--hold"]).made, 9)

        let live = try LivePrometheus("pbsnatdash", in: nat.router)
        defer { withExtendedLifetime(live) {} }  // its deinit stops Prometheus and the agents
        let agent = "127.0.0.1:9958"
        try live.agent([Binaries.portbudget, "serve", "--listen", agent, "--snat-port-range", "40000-40009"], in: nat.router)
        let prometheus = try live.start(scraping: [agent])
        let api = live.api

        // A few samples at 90%, then the last port taken and one connection dropped.
        _ = try prometheus.await("samples of the 90% group") {
            let r = api.query([#"count_over_time(portbudget_snat_group_ports_used{peer_port="8080"}[1m]) >= 3"#])
            return r.first.map { $0.isSuccess && !$0.result.isEmpty } == true ? true : nil
        }
        let more = try nat.client.hold(["connect", "--to", "\(NATTopology.serverIP):8080", "--count", "2",
                                        "--until-fail", "--hold"])
        XCTAssertEqual(more.made, 1)
        _ = try prometheus.await("the full group and the failed insert") {
            let r = api.query([#"portbudget_snat_max_group_utilization_ratio == 1"#,
                               #"increase(portbudget_conntrack_insert_failed_total[1m]) > 0"#])
            return r.count == 2 && r.allSatisfy { $0.isSuccess && !$0.result.isEmpty } ? true : nil
        }

        // A single-namespace agent: no netns label, so the netns variable is All (.*).
        let values: [String: GrafanaDashboard.Selection] = ["job": .selected(["portbudget"]), "instance": .selected([agent]),
                                                            "netns": .all(".*")]
        let targets = panels.flatMap { panel in panel.targets.map { (panel, $0) } }
        let exprs = targets.map { GrafanaDashboard.interpolate($0.1.expr, values: values, rateInterval: "30s") }
        let now = Date().timeIntervalSince1970
        let instant = api.query(exprs)
        let ranged = api.queryRange(exprs, start: now - 20, end: now, step: 1)
        XCTAssertEqual(instant.count, exprs.count)
        XCTAssertEqual(ranged.count, exprs.count)
        var byRef: [String: PrometheusAPI.Response] = [:]
        for (index, ((panel, target), expr)) in zip(targets, exprs).enumerated() where index < min(instant.count, ranged.count) {
            XCTAssertFalse(expr.contains("$"), "\(panel.title) \(target.refId): unresolved variable in \(expr)")
            for (kind, answer) in [("instant", instant[index]), ("range", ranged[index])] {
                XCTAssert(answer.isSuccess, "[\(kind)] \(panel.title) \(target.refId): \(expr) → \(answer.summary)")
                XCTAssertFalse(answer.result.isEmpty, "[\(kind)] \(panel.title) \(target.refId): \(expr) returned no data")
            }
            byRef["\(panel.title)/\(target.refId)"] = instant[index]
        }

        // The numbers are the ones built.
        XCTAssertEqual(byRef["Worst SNAT group/A"]?.result.first?.value, 1)
        let table = byRef["Top SNAT groups/A"]?.result.first
        XCTAssertEqual(table?.labels["peer_port"], "8080")
        XCTAssertEqual(table?.labels["source_ip"], NATTopology.routerOutside)
        XCTAssertEqual(table?.value, 1)
        XCTAssertEqual(byRef["Top SNAT groups/B"]?.result.first?.value, 10, "used")
        XCTAssertEqual(byRef["Top SNAT groups/C"]?.result.first?.value, 10, "capacity")
        XCTAssertEqual(byRef["Top SNAT groups/D"]?.result.first?.value, 0, "free")
        XCTAssertGreaterThanOrEqual(byRef["Conntrack table/A"]?.result.first?.value ?? 0, 10, "entries")
        XCTAssertGreaterThan(byRef["Conntrack failures/A"]?.result.first?.value ?? 0, 0, "insert_failed rate")
    }
}

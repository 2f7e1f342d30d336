import Foundation
import XCTest

/// The dashboard's failure panels on live data: a real Prometheus scrapes two
/// agents — one counting failures in a namespace whose 4-port range
/// FailureMaker exhausts, one without capabilities — and every target of
/// those panels must return exactly what the kernel refused: per kind, per
/// cgroup, in total, and which collector is blind.
final class FailureDashboardTests: XCTestCase {
    static let panelTitles = ["Failed port allocations (5m)", "Failure collector", "Failure collector drops (15m)",
                              "Failed port allocations per second", "Who fails: top cgroups"]

    func testFailurePanelsShowExactlyTheFailuresMade() throws {
        for tool in ["/usr/bin/prometheus", "/usr/bin/curl", "/usr/bin/setpriv"] { try ExporterProcess.require(tool) }
        let dashboard = try GrafanaDashboard(json: Data(contentsOf: URL(fileURLWithPath: DashboardTests.dashboardPath)))
        let panels = dashboard.panels.filter { panel in
            panel.targets.contains { t in
                t.expr.contains("port_allocation_failure") || t.expr.contains(#"collector="failures""#)
            }
        }
        XCTAssertEqual(Set(panels.map(\.title)), Set(Self.panelTitles))

        // Prometheus and the blind agent live in `watch`; the failures happen
        // in `failing`, whose 4 ports nothing else spends: Prometheus reaches
        // the agent there over a veth, and accepted sockets take no local port.
        let watch = try NetworkNamespace()
        let failing = try NetworkNamespace(range: (40000, 40003))
        try failing.must(["ip", "link", "add", "pbfd1", "netns", failing.name, "type", "veth", "peer", "name", "pbfd0",
                          "netns", watch.name])
        try watch.must(["ip", "-n", watch.name, "addr", "add", "10.88.0.1/24", "dev", "pbfd0"])
        try failing.must(["ip", "-n", failing.name, "addr", "add", "10.88.0.2/24", "dev", "pbfd1"])
        try watch.must(["ip", "-n", watch.name, "link", "set", "pbfd0", "up"])
        try failing.must(["ip", "-n", failing.name, "link", "set", "pbfd1", "up"])
        let cgroup = try TestCgroup()

        let live = try LivePrometheus("pbfaildash", in: watch)
        defer { withExtendedLifetime(live) {} }  // its deinit stops Prometheus and the agents
        let counting = "10.88.0.2:9958", blind = "127.0.0.1:9959"
        // nsenter keeps the host's cgroup mount, so the agent names the cgroup.
        try live.agent(["nsenter", "--net=/run/netns/\(failing.name)", Binaries.portbudget, "serve", "--listen", counting])
        // uid 0 with every capability gone: bpf() is refused, as in the plain deploy files.
        try live.agent(["nsenter", "--net=/run/netns/\(watch.name)", "setpriv", "--inh-caps=-all", "--bounding-set=-all",
                        "--no-new-privs", Binaries.portbudget, "serve", "--listen", blind])
        let prometheus = try live.start(scraping: [counting, blind])
        let api = live.api

        // Zeros scraped first: the kinds are listed from zero, so the rate
        // and increase windows start at a sample of 0.
        let readiness = [
            #"count_over_time(portbudget_port_allocation_failures_total{instance="\#(counting)", protocol="tcp", call="connect"}[1m]) >= 3"#,
            #"portbudget_scrape_collector_success{instance="\#(blind)", collector="failures"} == 0"#,
        ]
        _ = try prometheus.await("zero counts scraped and the blind agent scraped") {
            let r = api.query(readiness)
            return r.count == readiness.count && r.allSatisfy({ $0.isSuccess && !$0.result.isEmpty }) ? true : nil
        }

        let made = try FailureMaker.run(in: failing, cgroup: cgroup)
        FailureKernelTests.assertMadeAsDesigned(made)
        let expected = FailureKernelTests.expectedDefault(made)
        let total = expected.values.reduce(0, +)
        XCTAssertEqual(total, 11, "5 connect, 2 listen, 4 send")
        _ = try prometheus.await("the failures scraped, twice") {
            let r = api.query([#"min_over_time(sum by (instance) (portbudget_port_allocation_failures_total{instance="\#(counting)"})[2s:1s]) == \#(total)"#])
            return r.first.map { $0.isSuccess && !$0.result.isEmpty } == true ? true : nil
        }
        // Evaluated at the instant of a scrape, so increase() and rate() over
        // a window that starts at a zero sample do not extrapolate: exact values.
        let stamp = try XCTUnwrap(api.query([#"timestamp(up{instance="\#(counting)"})"#]).first?.result.first?.value)

        let values: [String: GrafanaDashboard.Selection] = ["job": .selected(["portbudget"]),
                                                            "instance": .selected([counting, blind]), "netns": .all(".*")]
        var byPanel: [String: [PrometheusAPI.Series]] = [:]
        for answer in api.evaluate(panels, values: values, at: stamp) { byPanel[answer.panel.title] = answer.result }
        func kind(_ series: PrometheusAPI.Series) -> String {
            "protocol=\"\(series.labels["protocol"] ?? "")\",call=\"\(series.labels["call"] ?? "")\",errno=\"\(series.labels["errno"] ?? "")\""
        }

        // The alert's quantity: every failure, for the counting agent only.
        let fiveMinutes = byPanel["Failed port allocations (5m)"] ?? []
        XCTAssertEqual(fiveMinutes.map { $0.labels["instance"] }, [counting], "\(fiveMinutes)")
        XCTAssertEqual(fiveMinutes.first?.value ?? -1, Double(total), accuracy: 1e-9)

        // Counting on one, blind on the other.
        let state = Dictionary((byPanel["Failure collector"] ?? []).map { ($0.labels["instance"] ?? "", $0.value) },
                               uniquingKeysWith: { a, _ in a })
        XCTAssertEqual(state, [counting: 1, blind: 0])

        // Nothing dropped: every reason the alert watches, at exactly 0, and
        // none from the blind agent.
        let drops = byPanel["Failure collector drops (15m)"] ?? []
        XCTAssertEqual(Set(drops.map { "\($0.labels["instance"] ?? "") \($0.labels["reason"] ?? "")" }),
                       Set(["count_keys", "pending", "bound_sockets"].map { "\(counting) \($0)" }))
        XCTAssertTrue(drops.allSatisfy { $0.value == 0 }, "\(drops)")

        // Per kind: each count over the 30 s window; the other kinds watched at 0.
        let rates = (byPanel["Failed port allocations per second"] ?? []).filter { $0.labels["instance"] == counting }
        XCTAssertTrue(Set(expected.keys).isSubset(of: Set(rates.map(kind))), "\(rates.map(\.labels))")
        for series in rates {
            XCTAssertEqual(series.value ?? -1, Double(expected[kind(series)] ?? 0) / 30, accuracy: 1e-9, kind(series))
        }
        XCTAssertFalse((byPanel["Failed port allocations per second"] ?? []).contains { $0.labels["instance"] == blind },
                       "the blind agent exports no counts")

        // Who: the test's cgroup, each kind with its exact count.
        let rows = byPanel["Who fails: top cgroups"] ?? []
        XCTAssertEqual(rows.count, expected.count, "\(rows.map(\.labels))")
        for row in rows {
            XCTAssertEqual(row.labels["instance"], counting)
            XCTAssertEqual(row.labels["cgroup"], cgroup.relative)
            XCTAssertEqual(row.labels["unit"], cgroup.unit)
            XCTAssertEqual(row.value, expected[kind(row)].map(Double.init), kind(row))
        }
    }
}

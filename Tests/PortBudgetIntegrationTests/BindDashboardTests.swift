import Foundation
import XCTest

/// The dashboard's bind-before-connect panels on live data: `nc -s` holds 40
/// of a namespace's 50 ports, each taken by bind(addr, 0) before connect(),
/// 8 towards each of 5 destinations. A real Prometheus scrapes two agents
/// watching that namespace — one whose failure collector was loaded before
/// the sockets were made, one run with --no-failures — and every target of
/// those panels must return exactly what each agent can know: all 40 by
/// socket cookie and EXACT capacities, or 32 inferred and INFERRED ones.
final class BindDashboardTests: XCTestCase {
    static let panelTitles = ["Destination capacities", "Ports bound before connect() and the TCP bind budget"]

    func testBindPanelsShowEveryPortBoundBeforeConnectAndWhetherCapacitiesAreExact() throws {
        let started = Date()
        for tool in ["/usr/bin/prometheus", "/usr/bin/curl"] { try ExporterProcess.require(tool) }
        let dashboard = try GrafanaDashboard(json: Data(contentsOf: URL(fileURLWithPath: DashboardTests.dashboardPath)))
        let panels = dashboard.panels.filter { panel in
            panel.targets.contains { t in
                t.expr.contains("portbudget_tcp_bound_before_connect_ports") || t.expr.contains("portbudget_tcp_destination_capacity_exact")
            }
        }
        XCTAssertEqual(Set(panels.map(\.title)), Set(Self.panelTitles))
        let stat = try XCTUnwrap(panels.first { $0.title == "Destination capacities" })
        func shown(_ value: Double) -> String? {
            let defaults = (stat.raw["fieldConfig"] as? [String: Any])?["defaults"] as? [String: Any]
            let mappings = defaults?["mappings"] as? [[String: Any]] ?? []
            return mappings.lazy.compactMap { ($0["options"] as? [String: Any])?[String(Int(value))] as? [String: Any] }
                .first?["text"] as? String
        }

        let host = try ReplayHost(range: (40000, 40049), needs: ["/usr/bin/nc"])
        let listeners = try host.helper(["python3", "-c", ReplayScripts.acceptAll, "10.77.0.1",
                                         "9001", "9002", "9003", "9004", "9005"])
        XCTAssertEqual(listeners.firstLine(timeout: 10), "ready", listeners.stderrText())
        // Prometheus and both agents live in `watch`; the agents measure the
        // replay's namespace with --netns, so no scrape spends its 50 ports.
        let watch = try NetworkNamespace()

        let live = try LivePrometheus("pbbinddash", in: watch)
        defer { withExtendedLifetime(live) {} }  // its deinit stops Prometheus and the agents
        let tracking = "127.0.0.1:9971", inferring = "127.0.0.1:9972"
        try live.agent(["nsenter", "--net=/run/netns/\(watch.name)", Binaries.portbudget, "serve",
                        "--netns", host.ns.name, "--listen", tracking])
        try live.agent(["nsenter", "--net=/run/netns/\(watch.name)", Binaries.portbudget, "serve",
                        "--netns", host.ns.name, "--no-failures", "--listen", inferring])
        let prometheus = try live.start(scraping: [tracking, inferring])
        let api = live.api

        // The collector is loaded (and has collected) before any nc starts,
        // so every one of their connect()s is seen beginning.
        let loaded = [
            #"portbudget_scrape_collector_success{instance="\#(tracking)", collector="failures"} == 1"#,
            #"portbudget_ports_usable{instance="\#(inferring)"} == 50"#,
        ]
        _ = try prometheus.await("the collector loaded and both agents scraped") {
            let r = api.query(loaded)
            return r.count == loaded.count && r.allSatisfy({ $0.isSuccess && !$0.result.isEmpty }) ? true : nil
        }

        // 40 of the 50 ports, 8 towards each destination, each taken by bind(10.77.0.1, 0).
        var ncs: [HeldProcess] = []
        for i in 0..<40 {
            ncs.append(try host.start(unit: "pbbinddash-nc.service", ["nc", "-s", "10.77.0.1", "10.77.0.1", "\(9001 + i % 5)"]))
        }
        try host.wait("40 nc connections") { host.distinctLocalPorts("-t", 40000, 40049) == 40 }
        XCTAssertEqual(ncs.map { $0.stderrText() }.filter { !$0.isEmpty }, [])
        let connected = Date().timeIntervalSince1970

        // Both agents scraped after every connect() had begun, the collector's
        // count settled over two scrapes; then one instant to read them all at.
        let settled = [
            #"count(timestamp(up{instance=~"\#(tracking)|\#(inferring)"}) > \#(connected + 0.5)) == 2"#,
            #"min_over_time(portbudget_tcp_bound_before_connect_ports{instance="\#(tracking)", evidence="socket_cookie"}[2s:1s]) == 40"#,
        ]
        _ = try prometheus.await("both agents scraped after the connections") {
            let r = api.query(settled)
            return r.count == settled.count && r.allSatisfy({ $0.isSuccess && !$0.result.isEmpty }) ? true : nil
        }
        // The later of the two agents' last scrapes: at it, each agent's
        // latest sample is one taken after the connections.
        let stamps = api.query([#"timestamp(up{instance=~"\#(tracking)|\#(inferring)"})"#]).first?.result.compactMap(\.value) ?? []
        XCTAssertEqual(stamps.count, 2)
        let stamp = try XCTUnwrap(stamps.max())

        let values: [String: GrafanaDashboard.Selection] = ["job": .selected(["portbudget"]),
                                                            "instance": .selected([tracking, inferring]), "netns": .all(".*")]
        var byTarget: [String: [PrometheusAPI.Series]] = [:]
        for answer in api.evaluate(panels, values: values, at: stamp) {
            byTarget[answer.panel.title + " " + answer.target.refId] = answer.result
        }
        /// A target's values keyed by instance (and `label`'s value, when given).
        func byInstance(_ key: String, label: String? = nil) -> [String: Double] {
            var out: [String: Double] = [:]
            for series in byTarget[key] ?? [] {
                let name = [series.labels["instance"] ?? ""] + (label.map { [series.labels[$0] ?? ""] } ?? [])
                XCTAssertNil(out[name.joined(separator: " ")], "\(key): two series for \(name)")
                out[name.joined(separator: " ")] = series.value ?? -1
            }
            return out
        }

        // EXACT where the collector saw every connect() begin; INFERRED without it.
        let exact = byInstance("Destination capacities A")
        XCTAssertEqual(exact, [tracking: 1, inferring: 0])
        XCTAssertEqual(shown(exact[tracking] ?? -1), "EXACT")
        XCTAssertEqual(shown(exact[inferring] ?? -1), "INFERRED")

        // Every port by its evidence: all 40 by cookie; without the collector,
        // the 40 single-connection ports less the 8 the busiest destination
        // explains, a lower bound, so the INFERRED capacities are upper bounds.
        let title = "Ports bound before connect() and the TCP bind budget"
        XCTAssertEqual(byInstance(title + " A", label: "evidence"), [
            "\(tracking) explicit_port": 0, "\(tracking) socket_cookie": 40, "\(tracking) inferred": 0,
            "\(inferring) explicit_port": 0, "\(inferring) socket_cookie": 0, "\(inferring) inferred": 32,
        ])
        // Beside them, the budget they drain: the same 40 ports held of 50, whatever either agent knows.
        XCTAssertEqual(byInstance(title + " B"), [tracking: 40, inferring: 40])
        XCTAssertEqual(byInstance(title + " C"), [tracking: 50, inferring: 50])

        print("BindDashboardTests: \(byTarget.count) panel queries checked in \(Int(Date().timeIntervalSince(started))) s")
    }
}

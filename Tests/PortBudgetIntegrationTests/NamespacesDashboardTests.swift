import Foundation
import XCTest

/// The dashboard with an agent run as `serve --all-namespaces`: a real
/// Prometheus scrapes it while four namespaces built here hold known
/// sockets in tiny ranges — the agent's own ("host"), two bound with
/// `ip netns add` and one held only by an `unshare -n` process (a name with
/// a space and parentheses, which the netns variable must escape). Every
/// panel query must stay valid with several namespaces per instance (no
/// many-to-many join), the netns variable must list them, and the new
/// panels — namespaces by worst utilization and the fleet views — must
/// return the utilizations that were built.
final class NamespacesDashboardTests: XCTestCase {
    /// Panels that must return data for every namespace selected.
    static let perNamespacePanels = ["Worst TCP destination", "TCP bind (host-wide)", "UDP (host-wide)", "Ports usable",
                                     "TCP destination groups", "Namespaces by worst utilization", "Destination capacities",
                                     "Ports bound before connect() and the TCP bind budget"]
    static let newPanels = ["Namespaces by worst utilization", "Fleet: worst namespaces on every instance", "Fleet: worst hosts"]

    func testNamespacePanelsOnSeveralNamespaces() throws {
        for tool in ["/usr/bin/prometheus", "/usr/bin/curl"] { try ExporterProcess.require(tool) }
        let dashboard = try GrafanaDashboard(json: Data(contentsOf: URL(fileURLWithPath: DashboardTests.dashboardPath)))
        for title in Self.newPanels {
            XCTAssertNotNil(dashboard.panels.first { $0.title == title }, "no panel \(title)")
        }

        // own: where the agent and Prometheus run ("host"), 200 ports.
        // busy: 18 of 20 ports towards one destination (TCP and bind at 90%).
        // udp: 50 of 100 ports held by UDP sockets (50%), 10 TCP connections (10%).
        // held: an unshare -n process's namespace, 5 of 50 ports (10%).
        let own = try NetworkNamespace(range: (40000, 40199))
        let busy = try NetworkNamespace(range: (41000, 41019))
        let udp = try NetworkNamespace(range: (42000, 42099))
        try busy.hold(["listen", "--at", "127.0.0.1:9090"])
        XCTAssertEqual(try busy.hold(["connect", "--to", "127.0.0.1:9090", "--count", "18", "--hold"]).made, 18)
        try udp.hold(["listen", "--at", "127.0.0.1:9091"])
        XCTAssertEqual(try udp.hold(["connect", "--to", "127.0.0.1:9091", "--count", "10", "--hold"]).made, 10)
        XCTAssertEqual(try udp.hold(["udp", "--to", "127.0.0.1:5353", "--count", "50", "--hold"]).made, 50)
        let held = try HeldProcess.unsharedNamespace(range: (43000, 43049), port: 7070, connections: 5)
        defer { held.release() }
        let heldName = held.namespaceName
        let ours = ["host", busy.name, udp.name, heldName]

        let live = try LivePrometheus("pbnsdash", in: own)
        defer { withExtendedLifetime(live) {} }  // its deinit stops Prometheus and the agents
        // Every namespace on the machine is measured on each scrape, other
        // tests' included: 3 s leaves room for a busy one.
        let agent = "127.0.0.1:9958"
        try live.agent(["nsenter", "--net=/run/netns/\(own.name)", Binaries.portbudget, "serve", "--all-namespaces",
                        "--listen", agent])
        let prometheus = try live.start(scraping: [agent], interval: "3s", rules: [DashboardTests.rulesPath])
        let api = live.api

        // A few samples of every namespace of ours, and the 90% destination
        // turned into a pending alert by the project's rules, in its netns.
        let readiness = ours.map { #"count_over_time(portbudget_ports_usable{netns="\#($0)"}[1m]) >= 3"# }
            + [#"ALERTS{alertname="PortBudgetTCPDestinationPortsLow", netns="\#(busy.name)"}"#]
        _ = try prometheus.await("samples of every namespace and the pending alert", timeout: 60) {
            let answers = api.query(readiness)
            return answers.count == readiness.count && answers.allSatisfy({ $0.isSuccess && !$0.result.isEmpty }) ? true : nil
        }

        // The variables as Grafana resolves them.
        var resolved: [String: [String]] = [:]
        for variable in dashboard.variables where variable.type == "query" {
            let query = GrafanaDashboard.interpolate(try XCTUnwrap(variable.query), values: resolved.mapValues { .selected($0) },
                                                     rateInterval: "30s")
            resolved[variable.name] = try api.labelValues(query, regex: variable.regex)
        }
        XCTAssertEqual(resolved["instance"], [agent])
        XCTAssertTrue(Set(ours).isSubset(of: Set(resolved["netns"] ?? [])),
                      "the netns variable lists \(ours): \(resolved["netns"] ?? [])")

        // Our four namespaces picked in the variable, and All.
        var selected = resolved.mapValues { GrafanaDashboard.Selection.selected($0) }
        selected["netns"] = .selected(ours)
        let all = Dictionary(uniqueKeysWithValues: dashboard.variables.filter { $0.type == "query" }.map { v in
            (v.name, v.allValue.map(GrafanaDashboard.Selection.all) ?? .selected(resolved[v.name] ?? []))
        })
        let now = Date().timeIntervalSince1970
        var byPanel: [String: PrometheusAPI.Response] = [:]
        let targets = dashboard.panels.flatMap { panel in panel.targets.map { (panel, $0) } }
        for (scenario, values) in [("selected", selected), ("All", all)] {
            let exprs = targets.map { GrafanaDashboard.interpolate($0.1.expr, values: values, rateInterval: "30s") }
            let instant = api.query(exprs)
            let ranged = api.queryRange(exprs, start: now - 20, end: now, step: 1)
            XCTAssertEqual(instant.count, exprs.count)
            XCTAssertEqual(ranged.count, exprs.count)
            for (index, ((panel, target), expr)) in zip(targets, exprs).enumerated() where index < min(instant.count, ranged.count) {
                let mustHaveData = Self.perNamespacePanels.contains(panel.title) || Self.newPanels.contains(panel.title)
                for (kind, answer) in [("instant", instant[index]), ("range", ranged[index])] {
                    let place = "[\(scenario), \(kind)] \(panel.title) \(target.refId): \(expr)"
                    // Valid with several namespaces per instance: no many-to-many match, no parse error.
                    XCTAssert(answer.isSuccess, "\(place) → \(answer.summary)")
                    if mustHaveData { XCTAssertFalse(answer.result.isEmpty, "\(place) returned no data") }
                }
                if scenario == "selected" { byPanel["\(panel.title)/\(target.refId)"] = instant[index] }
            }
        }

        // Every per-namespace panel shows each selected namespace, and only those.
        for title in Self.perNamespacePanels {
            let answer = try XCTUnwrap(byPanel["\(title)/A"], title)
            XCTAssertEqual(Set(answer.result.compactMap { $0.labels["netns"] }), Set(ours), title)
        }

        // Namespaces by worst utilization: the numbers built.
        func value(_ panel: String, _ netns: String) -> Double? {
            byPanel[panel]?.result.first { $0.labels["netns"] == netns }?.value
        }
        let table = "Namespaces by worst utilization"
        XCTAssertEqual(value("\(table)/A", busy.name) ?? -1, 0.9, accuracy: 1e-9, "18 of 20 ports")
        XCTAssertEqual(value("\(table)/A", udp.name) ?? -1, 0.5, accuracy: 1e-9, "UDP 50 of 100")
        XCTAssertEqual(value("\(table)/A", heldName) ?? -1, 0.1, accuracy: 1e-9, "5 of 50")
        XCTAssertEqual(value("\(table)/B", busy.name) ?? -1, 0.9, accuracy: 1e-9, "TCP destination")
        XCTAssertEqual(value("\(table)/B", udp.name) ?? -1, 0.1, accuracy: 1e-9, "TCP destination")
        XCTAssertEqual(value("\(table)/C", busy.name) ?? -1, 0.9, accuracy: 1e-9, "TCP bind")
        XCTAssertEqual(value("\(table)/D", udp.name) ?? -1, 0.5, accuracy: 1e-9, "UDP")
        XCTAssertEqual(value("\(table)/D", busy.name), 0, "UDP")
        XCTAssertEqual(value("\(table)/E", busy.name), 20, "ports usable")
        XCTAssertEqual(value("\(table)/E", udp.name), 100, "ports usable")
        XCTAssertEqual(value("\(table)/E", heldName), 50, "ports usable")
        XCTAssertEqual(value("\(table)/E", "host"), 200, "ports usable")
        let rows = byPanel["\(table)/A"]?.result.map { $0.value ?? -1 } ?? []
        XCTAssertEqual(rows, rows.sorted(by: >), "worst first")

        // The fleet views ignore the instance and netns selection: every
        // namespace the agent measures on this machine (other tests' too)
        // competes, so ours are there unless 20 others are at least as full.
        let fleet = try XCTUnwrap(byPanel["Fleet: worst namespaces on every instance/A"]).result
        XCTAssertLessThanOrEqual(fleet.count, 20)
        for (name, utilization) in [(busy.name, 0.9), (udp.name, 0.5)] {
            if let row = fleet.first(where: { $0.labels["netns"] == name }) {
                XCTAssertEqual(row.value ?? -1, utilization, accuracy: 1e-9, name)
                XCTAssertEqual(row.labels["instance"], agent)
            } else {
                XCTAssertEqual(fleet.count, 20, "\(name) missing from a fleet table with room left: \(fleet.map(\.labels))")
                XCTAssert(fleet.allSatisfy { ($0.value ?? 0) >= utilization }, "\(name) at \(utilization) was left out of \(fleet)")
            }
        }
        let hosts = try XCTUnwrap(byPanel["Fleet: worst hosts/A"]).result
        XCTAssertEqual(hosts.map { $0.labels["instance"] }, [agent])
        XCTAssertGreaterThanOrEqual(hosts.first?.value ?? 0, 0.9, "the worst host is at least as full as its worst namespace of ours")

        // The alert table shows the alert with the namespace it fired in.
        let alerts = try XCTUnwrap(byPanel["PortBudget alerts now/A"]).result
        XCTAssert(alerts.contains { $0.labels["alertname"] == "PortBudgetTCPDestinationPortsLow" && $0.labels["netns"] == busy.name },
                  "the alert table shows the destination alert in \(busy.name): \(alerts.map(\.labels))")
    }
}

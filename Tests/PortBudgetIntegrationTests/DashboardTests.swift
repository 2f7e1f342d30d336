import Foundation
import XCTest

/// dashboards/portbudget.json: its model (uid, variables, one datasource
/// variable for every panel, no `__inputs`), the runbook anchors its links
/// point at, and — the point of it — that every panel query is valid PromQL
/// returning data from a real Prometheus 2.42 that scrapes a real
/// `portbudget serve` and a real node_exporter 1.5 during a test exhaustion,
/// with the project's alert rules loaded.
final class DashboardTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let dashboardPath = repository.appendingPathComponent("dashboards/portbudget.json").path
    static let rulesPath = repository.appendingPathComponent("alerts/portbudget.rules.yml").path
    static let runbookPath = repository.appendingPathComponent("docs/runbook.md").path

    /// Metric families a panel may query and get nothing back, and why. Every
    /// other target must return at least one series. Only the family named
    /// here is excused, and only from being empty: its queries must still parse.
    static let allowedEmpty: [String: String] = [
        "portbudget_seconds_to_exhaustion":
            "the panel is legitimately empty while no scraped agent exports the projection yet (serve's evaluator exports it)."
            + " When present, every series must carry scope tcp_group, tcp_bind or udp.",
        // This test's namespace has no NAT; SNATDashboardTests proves these panels on a masquerading router.
        "portbudget_snat_group_ports": "no NAT in this namespace, so no SNAT group; SNATDashboardTests fills one",
        // A cgroup is listed from its first failure; FailureDashboardTests makes failures.
        "portbudget_cgroup_port_allocation_failures_total": "no port allocation fails here, so no cgroup has failures",
    ]

    // MARK: the model

    func testDashboardModel() throws {
        let text = try String(contentsOfFile: Self.dashboardPath, encoding: .utf8)
        let dashboard = try GrafanaDashboard(json: Data(text.utf8))

        XCTAssertEqual(dashboard.uid, "portbudget-overview")
        XCTAssert((37...39).contains(dashboard.schemaVersion), "schemaVersion \(dashboard.schemaVersion)")
        XCTAssertNil(dashboard.raw["__inputs"], "file provisioning cannot resolve __inputs")
        XCTAssertFalse(text.contains("DS_PROMETHEUS"), "no ${DS_PROMETHEUS}-style input references")
        XCTAssertNil(dashboard.raw["__requires"])

        let datasource = try XCTUnwrap(dashboard.variable("datasource"))
        XCTAssertEqual(datasource.type, "datasource")
        XCTAssertEqual(datasource.raw["query"] as? String, "prometheus")

        let job = try XCTUnwrap(dashboard.variable("job"))
        XCTAssertEqual(job.type, "query")
        XCTAssertEqual(job.query, "label_values(portbudget_ports_usable, job)")
        let instance = try XCTUnwrap(dashboard.variable("instance"))
        XCTAssertEqual(instance.type, "query")
        XCTAssertEqual(instance.query, #"label_values(portbudget_ports_usable{job=~"$job"}, instance)"#)
        // --all-namespaces agents label every per-namespace series with netns;
        // All must be .* so that agents without the label still match.
        let netns = try XCTUnwrap(dashboard.variable("netns"))
        XCTAssertEqual(netns.query, #"label_values(portbudget_netns_info{job=~"$job", instance=~"$instance"}, netns)"#)
        XCTAssertEqual(netns.allValue, ".*")
        for variable in dashboard.variables where variable.type == "query" {
            XCTAssertEqual(variable.datasourceUID, "${datasource}", "variable \(variable.name)")
            XCTAssertTrue(variable.multi && variable.includeAll, "variable \(variable.name) is multi/all")
            XCTAssertNotNil(variable.query, "variable \(variable.name) has a query")
        }

        XCTAssertFalse(dashboard.panels.isEmpty)
        XCTAssertEqual(Set(dashboard.panels.map(\.id)).count, dashboard.panels.count, "panel ids are unique")
        let known = Set(dashboard.variables.map(\.name))
        for panel in dashboard.panels {
            XCTAssertEqual(panel.datasourceUID, "${datasource}", "panel \(panel.title)")
            XCTAssertFalse(panel.targets.isEmpty, "panel \(panel.title) has no target")
            XCTAssertFalse(panel.title.isEmpty)
            XCTAssertNotNil(panel.raw["gridPos"], "panel \(panel.title) has a gridPos")
            for target in panel.targets {
                XCTAssertFalse(target.expr.trimmingCharacters(in: .whitespaces).isEmpty, "\(panel.title) \(target.refId)")
                if let uid = target.datasourceUID {
                    XCTAssertEqual(uid, "${datasource}", "\(panel.title) \(target.refId)")
                }
                for name in GrafanaDashboard.variableReferences(in: target.expr) where !name.hasPrefix("__") {
                    XCTAssert(known.contains(name), "\(panel.title) \(target.refId) uses undefined $\(name)")
                }
            }
            // Units: ratios as percentunit, durations in seconds (tables set
            // them per column, checked below).
            let exprs = panel.targets.map(\.expr)
            if panel.type == "table" {
                continue
            } else if exprs.allSatisfy({ $0.contains("deriv(") || $0.contains("_seconds") }) {
                XCTAssertEqual(panel.unit, "s", "panel \(panel.title) shows durations")
            } else if exprs.allSatisfy({ $0.contains("_ratio") || $0.contains("predict_linear(") }) {
                XCTAssertEqual(panel.unit, "percentunit", "panel \(panel.title) shows ratios")
            }
        }
        let table = try XCTUnwrap(dashboard.panels.first { $0.type == "table" && $0.targets.contains { $0.expr.contains("topk(") } },
                                  "a table of the top groups")
        XCTAssert(table.targets.allSatisfy(\.instant), "the top-groups table uses instant queries")
        XCTAssert(table.raw.description.contains("percentunit"), "the table shows utilization in percent")

        // The required subjects each have a panel.
        let all = dashboard.panels.flatMap(\.targets).map(\.expr).joined(separator: "\n")
        for metric in ["portbudget_tcp_max_group_utilization_ratio", "portbudget_tcp_bind_utilization_ratio",
                       "portbudget_udp_utilization_ratio", "portbudget_ports_usable", "portbudget_tcp_groups",
                       "portbudget_tcp_group_ports_used", "portbudget_tcp_group_ports_capacity",
                       "portbudget_tcp_group_ports_time_wait", "portbudget_tcp_group_utilization_ratio",
                       "portbudget_sockstat_tcp_tw", "portbudget_icmp_out_dest_unreachs_total", "node_netstat_Udp_NoPorts",
                       "portbudget_sockstat_udp_inuse", "portbudget_sockstat_udp6_inuse", "node_sockstat_UDP_inuse",
                       "predict_linear(", "portbudget_seconds_to_exhaustion", "ALERTS{",
                       "portbudget_scrape_collector_success", "portbudget_scrape_collector_duration_seconds",
                       "portbudget_port_allocation_failures_total", "portbudget_cgroup_port_allocation_failures_total",
                       #"collector="failures""#, "portbudget_tcp_bound_before_connect_ports",
                       "portbudget_tcp_destination_capacity_exact"] {
            XCTAssert(all.contains(metric), "no panel queries \(metric)")
        }
    }

    /// Every runbook link in the dashboard points at a heading of docs/runbook.md.
    func testRunbookLinksResolve() throws {
        let text = try String(contentsOfFile: Self.dashboardPath, encoding: .utf8)
        let runbook = try String(contentsOfFile: Self.runbookPath, encoding: .utf8)
        let anchors = Set(runbook.split(separator: "\n").filter { $0.hasPrefix("#") }.map { line in
            githubAnchor(String(line.drop { $0 == "#" }))
        })
        let links = matches(of: #"runbook\.md#([A-Za-z0-9_-]+)"#, in: text)
        XCTAssertFalse(links.isEmpty, "the dashboard links to the runbook")
        for anchor in Set(links) {
            XCTAssert(anchors.contains(anchor), "runbook.md has no section #\(anchor)")
        }
    }

    // MARK: live

    func testEveryPanelQueryReturnsDataDuringAnExhaustion() throws {
        let started = Date()
        let dashboard = try GrafanaDashboard(json: Data(contentsOf: URL(fileURLWithPath: Self.dashboardPath)))
        // 200 usable ports: room for the exhaustion and for Prometheus' and curl's own connections.
        let ns = try NetworkNamespace(range: (40000, 40199))
        for tool in ["/usr/bin/prometheus", "/usr/bin/prometheus-node-exporter", "/usr/bin/curl"]
        where !FileManager.default.isExecutableFile(atPath: tool) {
            try NetworkNamespace.skip("\(tool) is missing (apt-get install prometheus prometheus-node-exporter curl)",
                                      file: #filePath, line: #line)
        }
        let serveHelp = Command.run([Binaries.portbudget, "serve", "--help"])
        guard serveHelp.status == 0 else {
            XCTFail("`portbudget serve` is not available (\(Binaries.portbudget)): \(serveHelp.stderr)")
            return
        }

        // The exhaustion: one destination at 90% (warning alerts go pending),
        // TIME_WAIT towards a second one, UDP sockets over IPv4 and IPv6.
        try ns.hold(["listen", "--at", "127.0.0.1:8080"])
        try ns.hold(["listen", "--at", "127.0.0.1:8081", "--accept", "close"])
        XCTAssertEqual(try ns.load(["churn", "--to", "127.0.0.1:8081", "--count", "12"]).made, 12)
        XCTAssertEqual(try ns.hold(["connect", "--to", "127.0.0.1:8080", "--count", "180", "--hold"]).made, 180)
        XCTAssertEqual(try ns.hold(["udp", "--to", "127.0.0.1:5353", "--count", "20", "--hold"]).made, 20)
        XCTAssertEqual(try ns.hold(["udp", "--to", "[::1]:5353", "--count", "5", "--hold"]).made, 5)

        let work = FileManager.default.temporaryDirectory.appendingPathComponent("pbdash-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        var servers: [ExporterProcess] = []
        defer {
            for server in servers { _ = server.stop(SIGTERM, timeout: 5) }
            try? FileManager.default.removeItem(at: work)
            withExtendedLifetime(ns) {}
        }
        let agent = "127.0.0.1:9958", node = "127.0.0.1:9100", prom = "127.0.0.1:9090"
        let config = """
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
              evaluation_interval: 1s
            rule_files:
              - \(Self.rulesPath)
            scrape_configs:
              - job_name: portbudget
                static_configs: [{targets: ["\(agent)"]}]
              - job_name: node
                static_configs: [{targets: ["\(node)"]}]
            """
        let configPath = work.appendingPathComponent("prometheus.yml").path
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)

        // nsenter enters only the network namespace: the agent keeps the cgroup mount
        // (which `ip netns exec` hides) and names who holds the ports.
        servers.append(try ExporterProcess(["nsenter", "--net=/run/netns/\(ns.name)", Binaries.portbudget, "serve",
                                            "--listen", agent]))
        servers.append(try ExporterProcess([
            "/usr/bin/prometheus-node-exporter", "--web.listen-address=\(node)",
            "--collector.disable-defaults", "--collector.sockstat", "--collector.netstat"], in: ns))
        servers.append(try ExporterProcess([
            "/usr/bin/prometheus", "--config.file=\(configPath)",
            "--storage.tsdb.path=\(work.appendingPathComponent("data").path)",
            "--web.listen-address=\(prom)", "--log.level=warn"], in: ns))
        let api = PrometheusAPI(ns: ns, base: "http://\(prom)")

        // Wait for a few samples of both targets and for the rules to turn
        // the exhaustion into a pending alert. Datagrams to a closed UDP port
        // meanwhile, so the ICMP port-unreachable rates have something to show.
        let readiness = [
            #"count_over_time(portbudget_ports_usable{job="portbudget"}[1m]) >= 5"#,
            #"count_over_time(node_sockstat_UDP_inuse{job="node"}[1m]) >= 5"#,
            #"ALERTS{alertname="PortBudgetTCPDestinationPortsLow", peer_port="8080"}"#,
        ]
        var ready = false
        var last: [PrometheusAPI.Response] = []
        let deadline = Date().addingTimeInterval(30)
        while !ready && Date() < deadline {
            _ = ns.run(["bash", "-c", "for i in $(seq 20); do echo x > /dev/udp/127.0.0.1/9; done 2>/dev/null; true"])
            usleep(500_000)
            last = api.query(readiness)
            ready = last.count == readiness.count && last.allSatisfy { $0.isSuccess && !$0.result.isEmpty }
            for server in servers where !server.process.isRunning {
                XCTFail("\(server.name) exited \(server.process.terminationStatus): \(server.stderrText)")
                return
            }
        }
        guard ready else {
            XCTFail("""
                Prometheus never had data for every readiness query in 30 s: \(zip(readiness, last).map { "\($0) → \($1.summary)" })
                targets: \(api.get("/api/v1/targets").prefix(3000))
                portbudget stderr: \(servers[0].stderrText.suffix(2000))
                prometheus stderr: \(servers[2].stderrText.suffix(2000))
                """)
            return
        }

        // Resolve the template variables the way Grafana does: run each
        // label_values() against Prometheus, apply the variable's regex, and
        // interpolate multi-value selections as escaped regex alternations.
        var resolved: [String: [String]] = [:]
        for variable in dashboard.variables where variable.type == "query" {
            let query = try XCTUnwrap(variable.query)
            let interpolated = GrafanaDashboard.interpolate(query, values: resolved.mapValues { .selected($0) },
                                                            rateInterval: "30s")
            let values = try api.labelValues(interpolated, regex: variable.regex)
            // An agent without --all-namespaces exports no portbudget_netns_info:
            // the netns variable is empty and Grafana selects All, its allValue.
            if variable.name == "netns" {
                XCTAssertEqual(values, [], "this agent watches one namespace: no netns label")
                continue
            }
            XCTAssertFalse(values.isEmpty, "variable \(variable.name): \(interpolated) found nothing")
            resolved[variable.name] = values
        }
        XCTAssertEqual(resolved["job"], ["portbudget"])
        XCTAssertEqual(resolved["instance"], [agent])
        XCTAssertEqual(resolved["host"], ["127.0.0.1"])

        // Two ways a user looks at it: the values picked one by one, and "All"
        // (the variable's allValue, or every value when it has none).
        let netnsAll = try XCTUnwrap(dashboard.variable("netns")?.allValue)
        let scenarios: [(String, [String: GrafanaDashboard.Selection])] = [
            ("selected", resolved.mapValues { GrafanaDashboard.Selection.selected($0) }.merging(["netns": .all(netnsAll)]) { a, _ in a }),
            ("All", Dictionary(uniqueKeysWithValues: dashboard.variables.filter { $0.type == "query" }.map { v in
                (v.name, v.allValue.map(GrafanaDashboard.Selection.all) ?? .selected(resolved[v.name] ?? []))
            })),
        ]
        var checked = 0
        var byExpr: [String: PrometheusAPI.Response] = [:]
        let now = Date().timeIntervalSince1970
        for (scenario, values) in scenarios {
            let targets = dashboard.panels.flatMap { panel in panel.targets.map { (panel, $0) } }
            let exprs = targets.map { GrafanaDashboard.interpolate($0.1.expr, values: values, rateInterval: "30s") }
            let instant = api.query(exprs)
            let ranged = api.queryRange(exprs, start: now - 20, end: now, step: 1)
            XCTAssertEqual(instant.count, exprs.count, "one answer per instant query")
            XCTAssertEqual(ranged.count, exprs.count, "one answer per range query")
            for (index, ((panel, target), expr)) in zip(targets, exprs).enumerated() {
                XCTAssertFalse(expr.contains("$"), "\(panel.title) \(target.refId): unresolved variable in \(expr)")
                let excused = Self.allowedEmpty.keys.first { expr.contains($0) }
                for (kind, answers) in [("instant", instant), ("range", ranged)] where index < answers.count {
                    let answer = answers[index]
                    let place = "[\(scenario), \(kind)] panel \"\(panel.title)\" \(target.refId): \(expr)"
                    XCTAssert(answer.isSuccess, "\(place) → \(answer.summary)")
                    if excused == nil {
                        XCTAssertFalse(answer.result.isEmpty, "\(place) returned no data")
                    } else if answer.result.isEmpty {
                        print("DashboardTests: allowed empty: \(place)")
                    } else if expr.contains("portbudget_seconds_to_exhaustion") {
                        for series in answer.result {
                            XCTAssert(["tcp_group", "tcp_bind", "udp"].contains(series.labels["scope"] ?? ""),
                                      "\(place): series without a known scope: \(series.labels)")
                        }
                    }
                    checked += 1
                }
                if scenario == "selected" && index < instant.count { byExpr[target.expr] = instant[index] }
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 2 * 2 * 40, "every target of every panel ran")

        // The numbers show the exhaustion that was built.
        func answer(_ prefix: String) -> PrometheusAPI.Response? {
            byExpr.first { $0.key.hasPrefix(prefix) }?.value
        }
        let worst = try XCTUnwrap(answer("portbudget_tcp_max_group_utilization_ratio"))
        XCTAssertEqual(worst.result.first?.value ?? 0, 0.9, accuracy: 0.03, "180 of 200 ports towards 127.0.0.1:8080")
        let top = try XCTUnwrap(answer("topk(20, portbudget_tcp_group_utilization_ratio"))
        XCTAssertEqual(top.result.first { $0.labels["peer_port"] == "8080" }?.labels["peer_ip"], "127.0.0.1",
                       "the top-groups table lists the filled destination: \(top.result.map(\.labels))")
        let alerts = try XCTUnwrap(answer("ALERTS{"))
        XCTAssert(alerts.result.contains { $0.labels["alertname"] == "PortBudgetTCPDestinationPortsLow" },
                  "the alert table shows the destination alert: \(alerts.result.map(\.labels))")
        let icmp = try XCTUnwrap(answer("rate(portbudget_icmp_out_dest_unreachs_total"))
        XCTAssertGreaterThan(icmp.result.first?.value ?? 0, 0, "ICMP port unreachable were sent")
        let noPorts = try XCTUnwrap(answer("rate(node_netstat_Udp_NoPorts"))
        XCTAssertGreaterThan(noPorts.result.first?.value ?? 0, 0, "node_exporter saw datagrams for closed ports")

        print("DashboardTests: \(checked) panel queries checked in \(Int(Date().timeIntervalSince(started))) s")
    }
}

// MARK: - Grafana's model, as far as the tests need it

struct GrafanaDashboard {
    struct Variable {
        let raw: [String: Any]
        var name: String { raw["name"] as? String ?? "" }
        var type: String { raw["type"] as? String ?? "" }
        var multi: Bool { raw["multi"] as? Bool ?? false }
        var includeAll: Bool { raw["includeAll"] as? Bool ?? false }
        var allValue: String? { (raw["allValue"] as? String).flatMap { $0.isEmpty ? nil : $0 } }
        var regex: String? { (raw["regex"] as? String).flatMap { $0.isEmpty ? nil : $0 } }
        var datasourceUID: String? { GrafanaDashboard.datasourceUID(raw["datasource"]) }
        /// The query as a string, or the `query` member of the editor's object form.
        var query: String? {
            if let q = raw["query"] as? String { return q }
            return (raw["query"] as? [String: Any])?["query"] as? String
        }
    }

    struct Target {
        let raw: [String: Any]
        var expr: String { raw["expr"] as? String ?? "" }
        var refId: String { raw["refId"] as? String ?? "?" }
        var instant: Bool { raw["instant"] as? Bool == true && raw["range"] as? Bool != true }
        var datasourceUID: String? { GrafanaDashboard.datasourceUID(raw["datasource"]) }
    }

    struct Panel {
        let raw: [String: Any]
        var id: Int { raw["id"] as? Int ?? -1 }
        var title: String { raw["title"] as? String ?? "" }
        var type: String { raw["type"] as? String ?? "" }
        var datasourceUID: String? { GrafanaDashboard.datasourceUID(raw["datasource"]) }
        var targets: [Target] { (raw["targets"] as? [[String: Any]] ?? []).map(Target.init) }
        var unit: String? { ((raw["fieldConfig"] as? [String: Any])?["defaults"] as? [String: Any])?["unit"] as? String }
    }

    enum Selection {
        case selected([String])
        case all(String)
    }

    let raw: [String: Any]

    init(json: Data) throws {
        guard let object = try JSONSerialization.jsonObject(with: json) as? [String: Any] else {
            throw Failure("the dashboard is not a JSON object")
        }
        raw = object
    }

    var uid: String? { raw["uid"] as? String }
    var schemaVersion: Int { raw["schemaVersion"] as? Int ?? 0 }
    var variables: [Variable] {
        ((raw["templating"] as? [String: Any])?["list"] as? [[String: Any]] ?? []).map(Variable.init)
    }
    func variable(_ name: String) -> Variable? { variables.first { $0.name == name } }

    /// Every panel; a row's nested panels (collapsed rows keep them inside)
    /// stand in for the row, which is a container with no query of its own.
    var panels: [Panel] {
        (raw["panels"] as? [[String: Any]] ?? []).flatMap { panel -> [Panel] in
            guard panel["type"] as? String == "row" else { return [Panel(raw: panel)] }
            return (panel["panels"] as? [[String: Any]] ?? []).map(Panel.init)
        }
    }

    /// `"${datasource}"` or `{"type": "prometheus", "uid": "${datasource}"}`.
    static func datasourceUID(_ value: Any?) -> String? {
        if let s = value as? String { return s }
        return (value as? [String: Any])?["uid"] as? String
    }

    /// Names used as `$name`, `${name}` or `${name:format}`.
    static func variableReferences(in expr: String) -> [String] {
        matches(of: #"\$\{?([A-Za-z_][A-Za-z0-9_]*)"#, in: expr)
    }

    /// Grafana's Prometheus interpolation: a multi/all variable becomes its
    /// values regex-escaped (`.` → `\\.` inside the PromQL string), joined
    /// as `(a|b)` when there are several; "All" with an allValue becomes the
    /// allValue verbatim. `$__rate_interval` and friends become `rateInterval`.
    static func interpolate(_ expr: String, values: [String: Selection], rateInterval: String) -> String {
        var out = expr
        for builtin in ["__rate_interval", "__interval", "__range"] {
            out = out.replacingOccurrences(of: "${\(builtin)}", with: rateInterval)
                .replacingOccurrences(of: "$\(builtin)", with: rateInterval)
        }
        // Longest names first, so $instance is not read as $inst + "ance".
        for (name, selection) in values.sorted(by: { $0.key.count > $1.key.count }) {
            let text: String
            switch selection {
            case .all(let allValue):
                text = allValue
            case .selected(let list):
                let escaped = list.map(regexEscape)
                text = escaped.count == 1 ? escaped[0] : "(" + escaped.joined(separator: "|") + ")"
            }
            out = out.replacingOccurrences(of: "${\(name)}", with: text)
            out = replaceVariable(name, in: out, with: text)
        }
        return out
    }

    /// `$name` not followed by another identifier character.
    private static func replaceVariable(_ name: String, in text: String, with value: String) -> String {
        let regex = try! NSRegularExpression(pattern: "\\$\(name)(?![A-Za-z0-9_])")
        return regex.stringByReplacingMatches(in: text, range: NSRange(text.startIndex..., in: text),
                                              withTemplate: NSRegularExpression.escapedTemplate(for: value))
    }

    /// Grafana's prometheusSpecialRegexEscape.
    static func regexEscape(_ value: String) -> String {
        var out = ""
        for character in value {
            if character == "\\" {
                out += #"\\\\"#
            } else if #"$^*{}[]'+?.()|"#.contains(character) {
                out += #"\\"# + String(character)
            } else {
                out.append(character)
            }
        }
        return out
    }
}

// MARK: - Prometheus' HTTP API, through curl inside the namespace

struct PrometheusAPI {
    struct Series {
        var labels: [String: String]
        /// The instant value, or the last value of a range.
        var value: Double?
    }

    struct Response {
        var status: String
        var error: String?
        var result: [Series]
        var raw: String

        var isSuccess: Bool { status == "success" }
        var summary: String {
            isSuccess ? "\(result.count) series" : "\(status): \(error ?? String(raw.prefix(300)))"
        }

        init(_ line: String) {
            raw = line
            let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
            status = object["status"] as? String ?? "unparsable"
            error = object["error"] as? String
            let data = object["data"] as? [String: Any]
            result = (data?["result"] as? [[String: Any]] ?? []).map { item in
                let sample = (item["value"] as? [Any]) ?? ((item["values"] as? [[Any]])?.last)
                return Series(labels: item["metric"] as? [String: String] ?? [:],
                              value: (sample?.last as? String).flatMap(Double.init))
            }
        }
    }

    let ns: NetworkNamespace
    let base: String

    /// One curl for all URLs: one connection, one port, however many queries.
    private func fetch(_ urls: [String]) -> [String] {
        guard !urls.isEmpty else { return [] }
        let output = ns.run(["curl", "-sS", "-g", "--max-time", "20", "-w", "\\n"] + urls, timeout: 30)
        return output.stdout.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
    }

    func get(_ path: String) -> String { fetch([base + path]).first ?? "" }

    /// Instant queries, at `time` (seconds since the epoch, millisecond precision) or now.
    func query(_ exprs: [String], at time: Double? = nil) -> [Response] {
        let at = time.map { String(format: "&time=%.3f", $0) } ?? ""
        return fetch(exprs.map { base + "/api/v1/query?query=" + Self.encode($0) + at }).map(Response.init)
    }

    func queryRange(_ exprs: [String], start: Double, end: Double, step: Double) -> [Response] {
        fetch(exprs.map {
            base + "/api/v1/query_range?query=\(Self.encode($0))&start=\(start)&end=\(end)&step=\(step)"
        }).map(Response.init)
    }

    /// `label_values(selector, label)` (or `label_values(label)`), then the
    /// variable's `/regex/`: its first capture group when it has one.
    func labelValues(_ definition: String, regex: String?) throws -> [String] {
        let parts = matchGroups(of: #"^\s*label_values\((?:(.*),)?\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$"#, in: definition)
        guard let parts, let label = parts[1] else { throw Failure("not a label_values() query: \(definition)") }
        var path = "/api/v1/label/\(label)/values"
        if let selector = parts[0] { path += "?match[]=" + Self.encode(selector.trimmingCharacters(in: .whitespaces)) }
        let response = get(path)
        guard let object = try JSONSerialization.jsonObject(with: Data(response.utf8)) as? [String: Any],
              object["status"] as? String == "success", let values = object["data"] as? [String] else {
            throw Failure("label values for \(definition): \(response)")
        }
        guard let regex else { return values }
        guard regex.hasPrefix("/"), let end = regex.lastIndex(of: "/"), end != regex.startIndex else {
            throw Failure("variable regex is not /…/: \(regex)")
        }
        let pattern = try NSRegularExpression(pattern: String(regex[regex.index(after: regex.startIndex)..<end]))
        var out: [String] = []
        for value in values {
            guard let match = pattern.firstMatch(in: value, range: NSRange(value.startIndex..., in: value)) else { continue }
            let range = match.numberOfRanges > 1 ? match.range(at: 1) : match.range
            if let r = Range(range, in: value), !out.contains(String(value[r])) { out.append(String(value[r])) }
        }
        return out.sorted()
    }

    static func encode(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? text
    }
}

// MARK: - servers inside the namespace

// MARK: - text helpers

/// The first capture group of every match.
private func matches(of pattern: String, in text: String) -> [String] {
    let regex = try! NSRegularExpression(pattern: pattern)
    return regex.matches(in: text, range: NSRange(text.startIndex..., in: text)).compactMap { match in
        Range(match.range(at: 1), in: text).map { String(text[$0]) }
    }
}

/// Every capture group of the first match (nil for a group that did not take part).
private func matchGroups(of pattern: String, in text: String) -> [String?]? {
    let regex = try! NSRegularExpression(pattern: pattern)
    guard let match = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) else { return nil }
    return (1..<match.numberOfRanges).map { Range(match.range(at: $0), in: text).map { String(text[$0]) } }
}

/// GitHub's heading anchor: lower-cased, punctuation other than `-` and `_`
/// dropped, spaces to hyphens.
private func githubAnchor(_ heading: String) -> String {
    let text = heading.trimmingCharacters(in: .whitespaces).lowercased()
    return String(text.compactMap { c -> Character? in
        if c == " " { return "-" }
        if c.isLetter || c.isNumber || c == "-" || c == "_" { return c }
        return nil
    })
}

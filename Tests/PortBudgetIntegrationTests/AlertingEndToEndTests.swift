import Foundation
import XCTest

/// The in-agent evaluator against a real Alertmanager 0.25 (and a real
/// Prometheus 2.42 loading the project's rules) in a private network
/// namespace with a 100-port range: healthy → nothing fires; one backend's
/// ports filled → a critical alert with the group's labels reaches
/// Alertmanager; every ephemeral port towards Alertmanager taken, its
/// connection lost and DNS gone → the page still arrives; ports back → the
/// alert resolves.
final class AlertingEndToEndTests: XCTestCase {
    /// Explicit local ports for the test's own curl calls, outside the range,
    /// so the test can still look when the namespace has no port left. With
    /// `Connection: close` the server closes first and keeps the TIME_WAIT.
    let curlPorts = "39000-39899"

    func curl(_ ns: NetworkNamespace, _ url: String) -> String? {
        let output = ns.run(["curl", "-sf", "--max-time", "3", "-H", "Connection: close", "--local-port", curlPorts, url],
                            timeout: 10)
        return output.status == 0 ? output.stdout : nil
    }

    /// Alertmanager's active alerts, as label dictionaries with endsAt.
    func alertmanagerAlerts(_ ns: NetworkNamespace) -> [(labels: [String: String], endsAt: String)]? {
        guard let body = curl(ns, "http://127.0.0.1:9093/api/v2/alerts"),
              let list = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [[String: Any]] else { return nil }
        return list.map { (($0["labels"] as? [String: String]) ?? [:], ($0["endsAt"] as? String) ?? "") }
    }

    func startAlertmanager(_ ns: NetworkNamespace, work: URL) throws -> ExporterProcess {
        let am = try ExporterProcess([
            "/usr/bin/prometheus-alertmanager", "--config.file=\(work.appendingPathComponent("am.yml").path)",
            "--storage.path=\(work.appendingPathComponent("am").path)", "--web.listen-address=127.0.0.1:9093",
            "--cluster.listen-address=", "--log.level=warn",
        ], in: ns)
        _ = try am.await("Alertmanager ready") { curl(ns, "http://127.0.0.1:9093/-/ready") }
        return am
    }

    func testPageReachesAlertmanagerEvenWithNoPortLeftAndResolves() throws {
        for program in ["/usr/bin/prometheus-alertmanager", "/usr/bin/prometheus", "/usr/bin/curl", "/usr/sbin/nft"] {
            try ExporterProcess.require(program)
        }
        let ns = try NetworkNamespace()
        // Name resolution inside the namespace: a hosts file we control, and a
        // resolver that answers nothing. `ip netns exec` mounts these over /etc.
        let etc = URL(fileURLWithPath: "/etc/netns/\(ns.name)")
        try FileManager.default.createDirectory(at: etc, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: etc) }
        let hosts = etc.appendingPathComponent("hosts")
        try "127.0.0.1 localhost alertmanager.pbtest\n".write(to: hosts, atomically: false, encoding: .utf8)
        try "nameserver 127.0.0.9\noptions timeout:1 attempts:1\n".write(to: etc.appendingPathComponent("resolv.conf"),
                                                                         atomically: false, encoding: .utf8)

        let work = FileManager.default.temporaryDirectory.appendingPathComponent("pbalert-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        try """
            route: {receiver: blackhole, group_wait: 1s, group_interval: 1s, repeat_interval: 1h}
            receivers: [{name: blackhole}]
            """.write(to: work.appendingPathComponent("am.yml"), atomically: true, encoding: .utf8)
        var alertmanager = try startAlertmanager(ns, work: work)

        let config = work.appendingPathComponent("portbudget.yml")
        try """
            evaluation_interval: 1s
            resend_interval: 2s
            external_labels: {cluster: pbtest}
            alertmanagers:
              - url: http://alertmanager.pbtest:9093
                timeout: 2s
            delivery:
              source_ports: 39990-39999
            rules:
              - alert: EphemeralPortsExhausted
                when: tcp_group_utilization
                above: 0.95
                for: 2s
                severity: critical
                annotations:
                  summary: "{{ $labels.peer_ip }}:{{ $labels.peer_port }} is out of ephemeral ports"
            """.write(to: config, atomically: true, encoding: .utf8)
        let serve = try ExporterProcess([Binaries.portbudget, "serve", "--listen", "127.0.0.1:9958",
                                         "--config", config.path, "--log-level", "info"], in: ns)
        _ = try serve.await("agent metrics") { curl(ns, "http://127.0.0.1:9958/metrics") }

        // Prometheus with the project's rules, beside the agent.
        let rules = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("alerts/portbudget.rules.yml").path
        try """
            global: {scrape_interval: 1s, evaluation_interval: 1s}
            rule_files: ['\(rules)']
            alerting: {alertmanagers: [{static_configs: [{targets: ['127.0.0.1:9093']}]}]}
            scrape_configs:
              - job_name: portbudget
                static_configs: [{targets: ['127.0.0.1:9958']}]
            """.write(to: work.appendingPathComponent("prometheus.yml"), atomically: true, encoding: .utf8)
        let prometheus = try ExporterProcess([
            "/usr/bin/prometheus", "--config.file=\(work.appendingPathComponent("prometheus.yml").path)",
            "--storage.tsdb.path=\(work.appendingPathComponent("prom").path)", "--web.listen-address=127.0.0.1:9090",
            "--log.level=warn",
        ], in: ns)
        let loaded = try prometheus.await("the project's rules loaded") { () -> Int? in
            guard let body = curl(ns, "http://127.0.0.1:9090/api/v1/rules"), body.contains("PortBudgetTCPDestinationPortsNearlyExhausted"),
                  !body.contains("\"health\":\"err\"") else { return nil }
            return body.components(separatedBy: "\"type\":\"alerting\"").count - 1
        }
        XCTAssertGreaterThan(loaded, 10)

        // 1. Healthy: heartbeats reach Alertmanager, nothing fires.
        _ = try serve.await("a heartbeat accepted by Alertmanager") { () -> Bool? in
            curl(ns, "http://127.0.0.1:9958/metrics")?.contains("portbudget_alertmanager_last_success_timestamp_seconds{") == true ? true : nil
        }
        sleep(3)
        XCTAssertEqual(alertmanagerAlerts(ns)?.count, 0, "nothing may fire on a healthy host")
        XCTAssertFalse(curl(ns, "http://127.0.0.1:9958/metrics")?.contains("portbudget_alerts{") ?? true)

        // 2. One backend's ports filled: a critical page with the group's labels.
        try ns.hold(["listen", "--at", "127.0.0.1:8080", "--at", "127.0.0.1:8081"])
        let fill = try ns.probeConnects(to: "127.0.0.1:8080")
        XCTAssertEqual(fill.error, "EADDRNOTAVAIL")
        let page: [String: String]
        do {
            page = try serve.await("the page in Alertmanager", timeout: 20) {
                alertmanagerAlerts(ns)?.first { $0.labels["peer_port"] == "8080" }?.labels
            }
        } catch {
            let metrics = curl(ns, "http://127.0.0.1:9958/metrics") ?? "no metrics"
            throw Failure("\(error)\nagent metrics:\n\(metrics.split(separator: "\n").filter { $0.contains("alert") || $0.contains("max_group") }.joined(separator: "\n"))")
        }
        XCTAssertEqual(page["alertname"], "EphemeralPortsExhausted")
        XCTAssertEqual(page["severity"], "critical")
        XCTAssertEqual(page["local_ip"], "127.0.0.1")
        XCTAssertEqual(page["peer_ip"], "127.0.0.1")
        XCTAssertEqual(page["cluster"], "pbtest")
        XCTAssertEqual(page["instance"].map { $0.hasSuffix(":9958") }, true)
        let metrics = curl(ns, "http://127.0.0.1:9958/metrics") ?? ""
        XCTAssertTrue(metrics.contains(#"portbudget_alerts{alertstate="firing",alertname="EphemeralPortsExhausted""#), metrics)
        // Prometheus, with the project's rules, sees the same group going bad.
        _ = try prometheus.await("Prometheus' own alert pending or firing") { () -> Bool? in
            curl(ns, "http://127.0.0.1:9090/api/v1/alerts")?.contains("PortBudgetTCPDestinationPortsNearlyExhausted") == true ? true : nil
        }

        // 3. No port left towards Alertmanager, its connection gone, DNS gone.
        try "127.0.0.1 localhost\n".write(to: hosts, atomically: false, encoding: .utf8)
        XCTAssertNotEqual(ns.run(["getent", "hosts", "alertmanager.pbtest"]).status, 0, "DNS must be down for this part")
        let toAlertmanager = try ns.probeConnects(to: "127.0.0.1:9093")
        XCTAssertEqual(toAlertmanager.error, "EADDRNOTAVAIL")
        // Restarting Alertmanager drops the agent's pooled connection (and
        // every alert it held); the filled sockets keep their ports in CLOSE_WAIT.
        // The agent's heartbeat could win the race for the port its dropped
        // connection frees before the probe below takes it: from now on no
        // connection from an ephemeral port reaches Alertmanager, so a page
        // can only leave from the pinned ports below the range.
        try ns.must(["nft", "add table inet pbtest; add chain inet pbtest input { type filter hook input priority 0; };"
                     + " add rule inet pbtest input tcp dport 9093 tcp sport 40000-40099 drop"], inside: true)
        XCTAssertNotNil(alertmanager.stop(SIGTERM, timeout: 10))
        alertmanager = try startAlertmanager(ns, work: work)
        XCTAssertEqual(alertmanagerAlerts(ns)?.count, 0)
        // The agent's own dropped connection freed its port: take that one too.
        XCTAssertEqual(try ns.probeConnects(to: "127.0.0.1:9093").error, "EADDRNOTAVAIL")
        XCTAssertEqual(try ns.probeConnects(to: "127.0.0.1:9093").made, 0, "no ephemeral port may be left towards Alertmanager")
        // A new group runs out while the host is in this state.
        XCTAssertEqual(try ns.probeConnects(to: "127.0.0.1:8081").error, "EADDRNOTAVAIL")
        let pages = try serve.await("both pages in Alertmanager with no ephemeral port", timeout: 30) { () -> Set<String>? in
            let ports = Set((alertmanagerAlerts(ns) ?? []).compactMap { $0.labels["peer_port"] })
            return ports.isSuperset(of: ["8080", "8081"]) ? ports : nil
        }
        XCTAssertTrue(pages.isSuperset(of: ["8080", "8081"]))
        let pinned = curl(ns, "http://127.0.0.1:9958/metrics") ?? ""
        XCTAssertNotNil(pinned.range(of: #"portbudget_alertmanager_pinned_port_deliveries_total\{alertmanager="[^"]+"\} [1-9]"#,
                                     options: .regularExpression), pinned)

        // 4. Ports back: the alerts resolve, explicitly (endsAt now), well
        // before a firing alert's endsAt would have lapsed on its own.
        try ns.must(["nft", "delete table inet pbtest"], inside: true)
        _ = ns.releaseHeld()
        let released = Date()
        _ = try serve.await("the alerts resolved in Alertmanager", timeout: 20) { () -> Bool? in
            (alertmanagerAlerts(ns) ?? [(["x": "y"], "")]).isEmpty ? true : nil
        }
        XCTAssertLessThan(Date().timeIntervalSince(released), 8, "resolution must be sent, not left to expire")
        XCTAssertFalse(curl(ns, "http://127.0.0.1:9958/metrics")?.contains("portbudget_alerts{") ?? true)
        XCTAssertTrue(serve.stderrText.contains("alert resolved"), serve.stderrText.suffix(2000).description)

        _ = prometheus.stop(SIGTERM, timeout: 10)
        XCTAssertEqual(serve.stop(SIGTERM, timeout: 5)?.status, 0)
        _ = alertmanager.stop(SIGTERM, timeout: 10)
    }

    func testBadConfigStopsServeAtStartWithFileLineAndKey() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("pb-bad-\(UUID().uuidString).yml")
        defer { try? FileManager.default.removeItem(at: file) }
        try """
            evaluation_interval: 15s
            rules:
              - alert: A
                when: tcp_group_utilization
                above: 0.9
                severty: critical
            """.write(to: file, atomically: true, encoding: .utf8)
        let output = Command.run([Binaries.portbudget, "serve", "--listen", "127.0.0.1:0", "--config", file.path], timeout: 20)
        XCTAssertEqual(output.status, 2, output.stderr)
        XCTAssertEqual(output.stderr.split(separator: "\n").count, 1, output.stderr)
        XCTAssertTrue(output.stderr.contains("\(file.path):6: unknown key \"severty\""), output.stderr)

        let missing = Command.run([Binaries.portbudget, "serve", "--config", "/nonexistent/pb.yml"], timeout: 20)
        XCTAssertEqual(missing.status, 2, missing.stderr)
        XCTAssertTrue(missing.stderr.contains("/nonexistent/pb.yml"), missing.stderr)
    }
}

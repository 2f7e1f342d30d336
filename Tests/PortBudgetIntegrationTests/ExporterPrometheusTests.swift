import Foundation
import XCTest

/// A real Prometheus scrapes `portbudget serve` on loopback inside a private
/// network namespace, and its query API returns the group gauges with the
/// values the load generator built.
final class ExporterPrometheusTests: XCTestCase {
    func testPrometheusScrapesServeAndQueriesTheGroupGauges() throws {
        for program in ["/usr/bin/prometheus", "/usr/bin/promtool", "/usr/bin/curl"] { try ExporterProcess.require(program) }
        let ns = try NetworkNamespace()
        try ns.hold(["listen", "--at", "127.0.0.1:8080"])
        XCTAssertEqual(try ns.hold(["connect", "--to", "127.0.0.1:8080", "--count", "30", "--hold"]).made, 30)

        let serve = try ExporterProcess([Binaries.portbudget, "serve", "--listen", "127.0.0.1:9958"], in: ns)
        let live = try serve.await("answer on /metrics") { ns.httpGet("http://127.0.0.1:9958/metrics") }
        try assertPromtoolAccepts(live)

        let work = FileManager.default.temporaryDirectory.appendingPathComponent("pbprom-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let config = work.appendingPathComponent("prometheus.yml")
        try """
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
            scrape_configs:
              - job_name: portbudget
                static_configs:
                  - targets: ['127.0.0.1:9958']
            """.write(to: config, atomically: true, encoding: .utf8)
        let prometheus = try ExporterProcess([
            "/usr/bin/prometheus", "--config.file=\(config.path)", "--storage.tsdb.path=\(work.appendingPathComponent("data").path)",
            "--web.listen-address=127.0.0.1:9090", "--log.level=warn",
        ], in: ns)

        let group = #"{local_ip="127.0.0.1",peer_ip="127.0.0.1",peer_port="8080"}"#
        func query(_ expression: String) throws -> String? {
            guard let body = ns.httpGet("http://127.0.0.1:9090/api/v1/query", query: ["query": expression]),
                  let json = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
                  let data = json["data"] as? [String: Any], let result = data["result"] as? [[String: Any]],
                  let first = result.first, let value = first["value"] as? [Any] else { return nil }
            return value[1] as? String
        }
        XCTAssertEqual(try prometheus.await("portbudget_tcp_group_ports_used in the query API") {
            try query("portbudget_tcp_group_ports_used\(group)")
        }, "30")
        XCTAssertEqual(try query("portbudget_tcp_group_ports_capacity\(group)"), "100")
        XCTAssertEqual(try query("portbudget_tcp_group_ports_time_wait\(group)"), "0")
        XCTAssertEqual(try query("portbudget_tcp_group_utilization_ratio\(group)"), "0.3")
        XCTAssertEqual(try query("portbudget_ports_usable"), "100")
        XCTAssertEqual(try query(#"up{job="portbudget"}"#), "1")
        XCTAssertEqual(try query(#"portbudget_scrape_collector_success{collector="sockdiag"}"#), "1")

        // SIGTERM while Prometheus keeps its keep-alive connection open.
        let stopped = try XCTUnwrap(serve.stop(SIGTERM, timeout: 5), "serve still running 5 s after SIGTERM")
        XCTAssertEqual(stopped.reason, .exit)
        XCTAssertEqual(stopped.status, 0, serve.stderrText)
        _ = prometheus.stop(SIGTERM, timeout: 10)
    }

    /// `promtool check metrics` prints nothing and exits 0 on a clean exposition.
    func assertPromtoolAccepts(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("pbmetrics-\(UUID().uuidString).prom")
        try text.write(to: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: path) }
        let output = Command.run(["sh", "-c", "promtool check metrics < '\(path.path)'"])
        XCTAssertEqual(output.status, 0, "promtool: \(output.stdout)\(output.stderr)", file: file, line: line)
        XCTAssertEqual(output.stdout + output.stderr, "", "promtool reported problems", file: file, line: line)
    }
}

import Foundation
import XCTest

/// node_exporter 1.5's textfile collector serves what `portbudget textfile`
/// wrote, without a scrape error.
final class ExporterNodeExporterTests: XCTestCase {
    func testNodeExporterServesTheTextfileOutput() throws {
        for program in ["/usr/bin/prometheus-node-exporter", "/usr/bin/curl"] { try ExporterProcess.require(program) }
        let ns = try NetworkNamespace()
        try ns.hold(["listen", "--at", "127.0.0.1:8080"])
        XCTAssertEqual(try ns.hold(["connect", "--to", "127.0.0.1:8080", "--count", "25", "--hold"]).made, 25)

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pbtextfile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let once = ns.run([Binaries.portbudget, "textfile", directory.path, "--once"])
        XCTAssertEqual(once.status, 0, once.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["portbudget.prom"])

        let nodeExporter = try ExporterProcess([
            "/usr/bin/prometheus-node-exporter", "--collector.disable-defaults", "--collector.textfile",
            "--collector.textfile.directory=\(directory.path)", "--web.listen-address=127.0.0.1:9100",
        ], in: ns)
        let metrics = try nodeExporter.await("node_exporter metrics") { ns.httpGet("http://127.0.0.1:9100/metrics") }
        let lines = Set(metrics.split(separator: "\n").map(String.init))
        XCTAssertTrue(lines.contains("node_textfile_scrape_error 0"), metrics)
        XCTAssertTrue(lines.contains(#"portbudget_tcp_group_ports_used{local_ip="127.0.0.1",peer_ip="127.0.0.1",peer_port="8080"} 25"#),
                      metrics)
        XCTAssertTrue(lines.contains("portbudget_ports_usable 100"))
        XCTAssertTrue(lines.contains { $0.hasPrefix(#"portbudget_heap_bytes{state="in_use"} "#) }, metrics)
        XCTAssertTrue(lines.contains { $0.hasPrefix("node_textfile_mtime_seconds{") && $0.contains("portbudget.prom") })
        _ = nodeExporter.stop()
    }
}

import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Debian's Prometheus scrapes `serve --web.config.file` with its own scrape
/// config (`scheme: https`, `tls_config`, `basic_auth`) inside a private
/// network namespace: the right credentials make the target up, the wrong
/// ones make it down with Prometheus's own reason.
final class ServeWebConfigPrometheusTests: XCTestCase {
    func testPrometheusScrapesOverTLSWithBasicAuthAndClientCertificates() throws {
        for program in ["/usr/bin/prometheus"] { try ExporterProcess.require(program) }
        let tls = try TLSMaterial()
        let ns = try NetworkNamespace()
        let hash = try TLSMaterial.bcrypt("scrape-secret", prefix2y: true)
        let passwordConfig = tls.path("web-password.yml")
        try """
            tls_server_config:
              cert_file: \(tls.path("server.crt"))
              key_file: \(tls.path("server.key"))
            basic_auth_users:
              prometheus: \(hash)

            """.write(toFile: passwordConfig, atomically: true, encoding: .utf8)
        let certificateConfig = tls.path("web-certificate.yml")
        try """
            tls_server_config:
              cert_file: \(tls.path("server.crt"))
              key_file: \(tls.path("server.key"))
              client_auth_type: RequireAndVerifyClientCert
              client_ca_file: \(tls.path("ca.crt"))

            """.write(toFile: certificateConfig, atomically: true, encoding: .utf8)
        let withPassword = try ExporterProcess([Binaries.portbudget, "serve", "--listen", "127.0.0.1:9958",
                                                "--web.config.file", passwordConfig], in: ns)
        let withCertificate = try ExporterProcess([Binaries.portbudget, "serve", "--listen", "127.0.0.1:9959",
                                                   "--web.config.file", certificateConfig], in: ns)
        for (server, port) in [(withPassword, 9958), (withCertificate, 9959)] {
            _ = try server.await("a TLS answer on /healthz") { () -> Int? in
                let output = ns.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2",
                                     "https://127.0.0.1:\(port)/healthz"], timeout: 5)
                return output.stdout == "401" || output.stdout == "200" || output.status == 56 || output.status == 35 ? port : nil
            }
        }

        let work = tls.directory.appendingPathComponent("prometheus")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        func job(_ name: String, port: Int, _ extra: String) -> String {
            """
              - job_name: \(name)
                scheme: https
                static_configs:
                  - targets: ['127.0.0.1:\(port)']
            \(extra)
            """
        }
        let ca = "      ca_file: \(tls.path("ca.crt"))"
        let config = work.appendingPathComponent("prometheus.yml")
        try """
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
            scrape_configs:
            \(job("password-right", port: 9958, "    tls_config:\n\(ca)\n    basic_auth:\n      username: prometheus\n      password: scrape-secret"))
            \(job("password-wrong", port: 9958, "    tls_config:\n\(ca)\n    basic_auth:\n      username: prometheus\n      password: guessed"))
            \(job("certificate-right", port: 9959, "    tls_config:\n\(ca)\n      cert_file: \(tls.path("client.crt"))\n      key_file: \(tls.path("client.key"))"))
            \(job("certificate-none", port: 9959, "    tls_config:\n\(ca)"))
            \(job("certificate-expired", port: 9959, "    tls_config:\n\(ca)\n      cert_file: \(tls.path("expired.crt"))\n      key_file: \(tls.path("expired.key"))"))

            """.write(to: config, atomically: true, encoding: .utf8)
        let prometheus = try ExporterProcess([
            "/usr/bin/prometheus", "--config.file=\(config.path)", "--storage.tsdb.path=\(work.appendingPathComponent("data").path)",
            "--web.listen-address=127.0.0.1:9090", "--log.level=warn",
        ], in: ns)

        /// job → (health, lastError), once every job has been scraped.
        func targets() throws -> [String: (health: String, error: String)]? {
            guard let body = ns.httpGet("http://127.0.0.1:9090/api/v1/targets"),
                  let json = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
                  let data = json["data"] as? [String: Any], let active = data["activeTargets"] as? [[String: Any]]
            else { return nil }
            var out: [String: (health: String, error: String)] = [:]
            for target in active {
                guard let labels = target["labels"] as? [String: String], let job = labels["job"],
                      let health = target["health"] as? String, health != "unknown" else { return nil }
                out[job] = (health, target["lastError"] as? String ?? "")
            }
            return out.count == 5 ? out : nil
        }
        let seen = try prometheus.await("every target scraped", timeout: 60) { try targets() }
        for (job, state) in seen.sorted(by: { $0.key < $1.key }) {
            print("prometheus target \(job): \(state.health) \(state.error.isEmpty ? "" : "— \(state.error)")")
        }
        XCTAssertEqual(seen["password-right"]?.health, "up", seen["password-right"]?.error ?? "")
        XCTAssertEqual(seen["certificate-right"]?.health, "up", seen["certificate-right"]?.error ?? "")
        XCTAssertEqual(seen["password-wrong"]?.health, "down")
        XCTAssertTrue(seen["password-wrong"]?.error.contains("401 Unauthorized") ?? false, seen["password-wrong"]?.error ?? "")
        for job in ["certificate-none", "certificate-expired"] {
            XCTAssertEqual(seen[job]?.health, "down", job)
            // Go's TLS client reports the server's alert: "remote error: tls: ...".
            XCTAssertTrue(seen[job]?.error.contains("tls:") ?? false, "\(job): \(seen[job]?.error ?? "")")
        }
        // A scraped series, to show the answer was the exposition.
        let up = ns.httpGet("http://127.0.0.1:9090/api/v1/query", query: ["query": #"portbudget_build_info{job="certificate-right"}"#])
        XCTAssertTrue(up?.contains("\"portbudget_build_info\"") ?? false, up ?? "no answer")

        _ = prometheus.stop(SIGTERM, timeout: 10)
        for server in [withPassword, withCertificate] {
            let stopped = try XCTUnwrap(server.stop(SIGTERM, timeout: 5))
            XCTAssertEqual(stopped.status, 0, server.stderrText)
        }
    }
}

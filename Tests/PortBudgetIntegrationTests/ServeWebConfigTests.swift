import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `serve --web.config.file` driven by real clients: curl for every
/// client_auth_type, basic auth, headers, SIGHUP and a certificate rotated on
/// disk; the built binary for bad configs.
final class ServeWebConfigTests: XCTestCase {
    func testEachClientAuthTypeAgainstCurl() throws {
        let tls = try TLSMaterial()
        let trusted = ["--cert", tls.path("client.crt"), "--key", tls.path("client.key")]
        let expired = ["--cert", tls.path("expired.crt"), "--key", tls.path("expired.key")]
        let stranger = ["--cert", tls.path("stranger.crt"), "--key", tls.path("stranger.key")]
        // What each type answers: no certificate, a trusted one, one from an unknown CA, an expired one.
        let expectations: [(type: String, none: Bool, trusted: Bool, stranger: Bool, expired: Bool)] = [
            ("NoClientCert", true, true, true, true),
            ("RequestClientCert", true, true, true, true),
            ("RequireAnyClientCert", false, true, true, true),
            ("VerifyClientCertIfGiven", true, true, false, false),
            ("RequireAndVerifyClientCert", false, true, false, false),
        ]
        for expectation in expectations {
            let ca = expectation.type.contains("Verify") ? "  client_ca_file: \(tls.path("ca.crt"))\n" : ""
            let serve = try SecuredServe(webConfig: """
                tls_server_config:
                  cert_file: \(tls.path("server.crt"))
                  key_file: \(tls.path("server.key"))
                  client_auth_type: \(expectation.type)
                \(ca)
                """, in: tls.directory)
            let url = "https://127.0.0.1:\(serve.port)/metrics"
            let base = ["--cacert", tls.path("ca.crt")]
            for (name, options, allowed) in [("no certificate", base, expectation.none),
                                             ("a trusted certificate", base + trusted, expectation.trusted),
                                             ("an unknown CA's certificate", base + stranger, expectation.stranger),
                                             ("an expired certificate", base + expired, expectation.expired)] {
                let answer = CurlResult.get(url, options: options)
                if allowed {
                    XCTAssertEqual(answer.status, 200, "\(expectation.type), \(name): \(answer.log.suffix(600))")
                    XCTAssertTrue(answer.body.contains("portbudget_build_info"), "\(expectation.type), \(name)")
                } else {
                    XCTAssertEqual(answer.status, 0, "\(expectation.type), \(name) was answered")
                    XCTAssertNotEqual(answer.exit, 0, "\(expectation.type), \(name)")
                }
            }
            // Plain HTTP to a TLS port gets no exposition.
            let plain = CurlResult.get("http://127.0.0.1:\(serve.port)/metrics")
            XCTAssertNotEqual(plain.status, 200, "\(expectation.type): plain HTTP answered")
            try serve.stop()
        }
    }

    func testBasicAuthHeadersHealthzReloadAndRotation() throws {
        let tls = try TLSMaterial()
        let aliceHash = try TLSMaterial.bcrypt("alice-secret", prefix2y: true)
        let bobHash = try TLSMaterial.bcrypt("bob-secret")
        func config(healthzWithoutAuth: Bool) -> String {
            """
            tls_server_config:
              cert_file: \(tls.path("server.crt"))
              key_file: \(tls.path("server.key"))
            http_server_config:
              headers:
                X-Frame-Options: deny
                X-Content-Type-Options: nosniff
                Strict-Transport-Security: max-age=31536000
            basic_auth_users:
              alice: \(aliceHash)
              bob: \(bobHash)
            portbudget_server_config:
              healthz_without_auth: \(healthzWithoutAuth)

            """
        }
        let serve = try SecuredServe(webConfig: config(healthzWithoutAuth: false), in: tls.directory)
        let base = "https://127.0.0.1:\(serve.port)"
        let ca = ["--cacert", tls.path("ca.crt")]

        let anonymous = CurlResult.get(base + "/metrics", options: ca)
        XCTAssertEqual(anonymous.status, 401)
        XCTAssertTrue(anonymous.headers.lowercased().contains("www-authenticate: basic"), anonymous.headers)
        XCTAssertFalse(anonymous.body.contains("portbudget_"), "an unauthorized answer carried metrics")
        XCTAssertEqual(CurlResult.get(base + "/metrics", options: ca + ["-u", "alice:wrong"]).status, 401)
        XCTAssertEqual(CurlResult.get(base + "/metrics", options: ca + ["-u", "mallory:alice-secret"]).status, 401)
        XCTAssertEqual(CurlResult.get(base + "/metrics", options: ca + ["-u", "bob:alice-secret"]).status, 401)
        XCTAssertEqual(CurlResult.get(base + "/healthz", options: ca).status, 401, "/healthz open though the file did not say so")

        // $2y$ (htpasswd's) and $2b$ hashes both verify.
        let alice = CurlResult.get(base + "/metrics", options: ca + ["-u", "alice:alice-secret"])
        XCTAssertEqual(alice.status, 200, alice.log.suffix(500).description)
        XCTAssertTrue(alice.body.contains("portbudget_web_config_last_reload_successful 1"))
        let bob = CurlResult.get(base + "/metrics", options: ca + ["-u", "bob:bob-secret"])
        XCTAssertEqual(bob.status, 200)
        for header in ["x-frame-options: deny", "x-content-type-options: nosniff", "strict-transport-security: max-age=31536000"] {
            XCTAssertTrue(bob.headers.lowercased().contains(header), "missing \(header): \(bob.headers)")
            XCTAssertTrue(anonymous.headers.lowercased().contains(header), "401 missing \(header)")
        }

        // SIGHUP with /healthz opened: reachable without credentials; /metrics never.
        try serve.reload(config(healthzWithoutAuth: true))
        XCTAssertEqual(try serve.process.await("/healthz open after SIGHUP") { () -> Int? in
            let status = CurlResult.get(base + "/healthz", options: ca).status
            return status == 200 ? status : nil
        }, 200)
        XCTAssertEqual(CurlResult.get(base + "/metrics", options: ca).status, 401)

        // A broken file on SIGHUP: the running config stays, the gauge says 0.
        try serve.reload("tls_server_config:\n  cert_file: \(tls.path("server.crt"))\n  key_file: \(tls.path("server.key"))\n  clent_auth_type: NoClientCert\n")
        let failed = try serve.process.await("the failed reload in the metrics") { () -> String? in
            let answer = CurlResult.get(base + "/metrics", options: ca + ["-u", "alice:alice-secret"])
            return answer.body.contains("portbudget_web_config_last_reload_successful 0") ? answer.body : nil
        }
        XCTAssertTrue(failed.contains("portbudget_web_config_last_reload_success_timestamp_seconds"))
        XCTAssertEqual(CurlResult.get(base + "/healthz", options: ca).status, 200, "the previous config did not stay")
        XCTAssertTrue(serve.process.stderrText.contains("clent_auth_type"), serve.process.stderrText)

        // The certificate rotated on disk (as a Secret update does): new connections get it, no restart.
        XCTAssertTrue(CurlResult.get(base + "/healthz", options: ca).log.contains("CN=portbudget-server"))
        try tls.issue("rotated", by: "ca", subject: "/CN=portbudget-rotated",
                      extensions: "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")
        let pidBefore = serve.pid
        try FileManager.default.removeItem(atPath: tls.path("server.key"))
        try FileManager.default.copyItem(atPath: tls.path("rotated.key"), toPath: tls.path("server.key"))
        try FileManager.default.removeItem(atPath: tls.path("server.crt"))
        try FileManager.default.copyItem(atPath: tls.path("rotated.crt"), toPath: tls.path("server.crt"))
        let rotated = CurlResult.get(base + "/healthz", options: ca)
        XCTAssertEqual(rotated.status, 200, rotated.log.suffix(500).description)
        XCTAssertTrue(rotated.log.contains("CN=portbudget-rotated"), rotated.log)
        XCTAssertEqual(serve.pid, pidBefore)
        XCTAssertTrue(serve.process.process.isRunning)
        try serve.stop()
    }

    func testBadWebConfigExitsTwoNamingFileLineAndKey() throws {
        let tls = try TLSMaterial()
        let cases: [(text: String, line: Int, mentions: String)] = [
            ("tls_server_config:\n  cert_file: \(tls.path("server.crt"))\n  key_file: \(tls.path("server.key"))\n  client_auth_type: Sometimes\n",
             4, "client_auth_type"),
            ("basic_auth_users:\n  alice: plaintext\n", 2, "basic_auth_users.alice"),
            ("http_server_config:\n  headers:\n    Server: portbudget\n", 3, "Server"),
            ("tls_server_config:\n  cert_file: \(tls.path("missing.crt"))\n  key_file: \(tls.path("server.key"))\n", 2, "cert_file"),
            ("tls_server_config:\n  cert_file: \(tls.path("server.crt"))\n  key_file: \(tls.path("client.key"))\n", 3, "key_file"),
            ("web:\n  listen: 1\n", 1, "web"),
        ]
        for (text, line, mentions) in cases {
            let file = tls.path("bad-\(line)-\(mentions).yml")
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            let output = Command.run([Binaries.portbudget, "serve", "--listen", "127.0.0.1:0", "--web.config.file", file], timeout: 20)
            XCTAssertEqual(output.status, 2, "\(mentions): \(output.stderr)")
            let lines = output.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, output.stderr)
            XCTAssertTrue(output.stderr.contains("\(file):\(line):"), "no file:line in \(output.stderr)")
            XCTAssertTrue(output.stderr.contains(mentions), "\(mentions) not named: \(output.stderr)")
        }
    }
}

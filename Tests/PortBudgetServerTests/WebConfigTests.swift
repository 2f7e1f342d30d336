import Foundation
@testable import PortBudgetServer
import XCTest

/// The web config parser: the toolkit's keys and meanings, every mistake one
/// line with the file, line and key.
final class WebConfigTests: XCTestCase {
    func testFullFileParses() throws {
        let config = try WebConfig.parse("""
            tls_server_config:
              cert_file: /etc/portbudget/tls.crt
              key_file: /etc/portbudget/tls.key
              client_auth_type: RequireAndVerifyClientCert
              client_ca_file: /etc/portbudget/ca.crt
              min_version: TLS13
              cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
              curve_preferences: [X25519, CurveP256]
              prefer_server_cipher_suites: true
            http_server_config:
              http2: false
              headers:
                X-Frame-Options: deny
                Content-Security-Policy: ""
            basic_auth_users:
              alice: $2y$10$4cHnmvHz9ziond1S/7X29OHVUG7NjBX167B/Jg.S/KUASbNcrjZLK
            portbudget_server_config:
              healthz_without_auth: true
            """, file: "web.yml")
        let tls = try XCTUnwrap(config.tls)
        XCTAssertEqual(tls.certificate, .file("/etc/portbudget/tls.crt"))
        XCTAssertEqual(tls.clientAuth, .requireAndVerifyClientCert)
        XCTAssertEqual(tls.clientCA, .file("/etc/portbudget/ca.crt"))
        XCTAssertEqual(tls.minVersion, .tls13)
        XCTAssertEqual(tls.maxVersion, .tls13)
        XCTAssertEqual(tls.cipherSuites, ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"])
        XCTAssertEqual(tls.lines["cert_file"], 2)
        // A blank header is unset, as in the toolkit.
        XCTAssertEqual(config.headers.map(\.name), ["X-Frame-Options"])
        XCTAssertEqual(config.basicAuthUsers.keys.sorted(), ["alice"])
        XCTAssertTrue(config.healthzWithoutAuth)
    }

    func testEmptyFileIsPlainHTTPWithoutAuth() throws {
        let config = try WebConfig.parse("", file: "web.yml")
        XCTAssertNil(config.tls)
        XCTAssertTrue(config.basicAuthUsers.isEmpty)
        XCTAssertFalse(config.healthzWithoutAuth)
    }

    func testMistakesNameFileLineAndKey() {
        let cases: [(String, String)] = [
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Maybe\n",
             "web.yml:4: tls_server_config.client_auth_type: \"Maybe\" is not one of"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  cert_flie: c\n", "web.yml:4: unknown key \"tls_server_config.cert_flie\""),
            ("tls_server_config:\n  key_file: b\n", "web.yml:2: tls_server_config: cert_file (or cert) is required"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
             "web.yml:4: tls_server_config.client_auth_type RequireAndVerifyClientCert needs client_ca_file"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n",
             "web.yml:4: tls_server_config: a client CA is given but client_auth_type is NoClientCert"),
            ("tls_server_config:\n  cert_file: a\n  cert: b\n  key_file: c\n", "web.yml:3: tls_server_config: cert and cert_file are mutually exclusive"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n  max_version: TLS12\n",
             "web.yml:4: tls_server_config: min_version TLS13 is above max_version TLS12"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites:\n    - TLS_AES_128_GCM_SHA256\n",
             "web.yml:5: tls_server_config.cipher_suites: \"TLS_AES_128_GCM_SHA256\" is not a TLS 1.2 cipher suite"),
            ("basic_auth_users:\n  alice: hunter2\n", "web.yml:2: basic_auth_users.alice is not a bcrypt hash"),
            ("basic_auth_users:\n  alice: $2y$31$4cHnmvHz9ziond1S/7X29OHVUG7NjBX167B/Jg.S/KUASbNcrjZLK\n",
             "web.yml:2: basic_auth_users.alice: bcrypt cost 31 is outside 4...16"),
            ("http_server_config:\n  headers:\n    Set-Cookie: x\n", "web.yml:3: http_server_config.headers: \"Set-Cookie\" cannot be set"),
            ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "web.yml:3: http_server_config.headers.X-Frame-Options: \"allow\" is not one of"),
            ("portbudget_server_config:\n  healthz_without_auth: yes please\n",
             "web.yml:2: portbudget_server_config.healthz_without_auth must be true or false"),
            ("rate_limit:\n  interval: 1s\n", "web.yml:1: rate_limit: not supported by portbudget"),
            ("tls_server_config: [a]\n", "web.yml:1: tls_server_config must be a mapping, got a list"),
            ("tls_server_config:\n  cert_file: [a\n", "web.yml:"),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try WebConfig.parse(text, file: "web.yml"), expected) { error in
                let message = "\(error)"
                XCTAssertTrue(message.hasPrefix(expected), "got: \(message)\nexpected: \(expected)")
                XCTAssertFalse(message.contains("\n"), message)
            }
        }
    }

    func testBasicAuthorizationHeaderParsing() {
        let parsed = BasicAuthChecker.credentials("Basic " + Data("alice:pa:ss".utf8).base64EncodedString())
        XCTAssertEqual(parsed.map { String(decoding: $0.user, as: UTF8.self) }, "alice")
        XCTAssertEqual(parsed.map { String(decoding: $0.password, as: UTF8.self) }, "pa:ss")
        XCTAssertNil(BasicAuthChecker.credentials(nil))
        XCTAssertNil(BasicAuthChecker.credentials("Bearer abc"))
        XCTAssertNil(BasicAuthChecker.credentials("Basic !!!"))
        XCTAssertNil(BasicAuthChecker.credentials("Basic " + Data("nocolon".utf8).base64EncodedString()))
    }

    func testBcryptVerifiesWith2bAnd2yAndRejectsTheRest() {
        // Made by Python's crypt (libxcrypt) for "portbudget-decoy"; $2y$ is the same hash under htpasswd's prefix.
        let hash = BasicAuthChecker.decoyHash
        XCTAssertTrue(BasicAuthChecker.bcryptMatches(password: Array("portbudget-decoy".utf8), hash: hash))
        XCTAssertTrue(BasicAuthChecker.bcryptMatches(password: Array("portbudget-decoy".utf8), hash: "$2y$" + hash.dropFirst(4)))
        XCTAssertFalse(BasicAuthChecker.bcryptMatches(password: Array("portbudget-decoy!".utf8), hash: hash))
        XCTAssertFalse(BasicAuthChecker.bcryptMatches(password: Array("portbudget-decoy\0x".utf8), hash: hash))
        XCTAssertFalse(BasicAuthChecker.bcryptMatches(password: [], hash: hash))
        XCTAssertTrue(BasicAuthChecker.constantTimeEqual([1, 2, 3], [1, 2, 3]))
        XCTAssertFalse(BasicAuthChecker.constantTimeEqual([1, 2, 3], [1, 2]))
        XCTAssertFalse(BasicAuthChecker.constantTimeEqual([1, 2, 3], [1, 2, 4]))
    }
}

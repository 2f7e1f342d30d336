import XCTest
import PortBudgetCore
@testable import PortBudgetAlerting
import PortBudgetYAML

final class AlertConfigTests: XCTestCase {
    let full = """
        evaluation_interval: 5s
        resend_interval: 30s
        external_labels: {cluster: edge-1}
        alertmanagers:
          - url: http://127.0.0.1:9093
          - url: https://am.example.org/prefix
            timeout: 3s
        delivery:
          source_ports: 32750-32759
        rules:
          - alert: EphemeralPortsExhausted
            when: tcp_group_utilization
            above: 0.95
            for: 30s
            severity: critical
            labels: {team: edge}
            annotations:
              summary: "{{ $labels.peer_ip }} nearly out of ports"
          - alert: SoonOut
            when: seconds_to_exhaustion
            below: 3600
        """

    func testFullExample() throws {
        let config = try AlertConfig.parse(full, file: "pb.yml")
        XCTAssertEqual(config.evaluationInterval, 5)
        XCTAssertEqual(config.resendInterval, 30)
        XCTAssertEqual(config.externalLabels, ["cluster": "edge-1"])
        XCTAssertEqual(config.alertmanagers.map(\.host), ["127.0.0.1", "am.example.org"])
        XCTAssertEqual(config.alertmanagers.map(\.port), [9093, 443])
        XCTAssertEqual(config.alertmanagers[1].timeout, 3)
        XCTAssertEqual(config.sourcePorts, 32750...32759)
        XCTAssertEqual(config.rules.count, 2)
        XCTAssertEqual(config.rules[0].comparison, .above(0.95))
        XCTAssertEqual(config.rules[0].forSeconds, 30)
        XCTAssertEqual(config.rules[0].labels, ["team": "edge"])
        XCTAssertEqual(config.rules[1].comparison, .below(3600))
        XCTAssertEqual(config.rules[1].severity, "warning")
    }

    func testDefaultsWithoutRules() throws {
        let config = try AlertConfig.parse("alertmanagers: []\n", file: "pb.yml")
        XCTAssertEqual(config.rules, AlertRule.defaults)
        XCTAssertEqual(config.evaluationInterval, 15)
    }

    func assertError(_ yaml: String, _ expected: String, line: Int?, file: StaticString = #filePath, at: UInt = #line) {
        XCTAssertThrowsError(try AlertConfig.parse(yaml, file: "/etc/pb.yml"), file: file, line: at) { error in
            let e = error as? ConfigError
            XCTAssertNotNil(e, "\(error)", file: file, line: at)
            XCTAssertEqual(e?.line, line, "\(error)", file: file, line: at)
            XCTAssertTrue("\(error)".contains(expected), "\(error)", file: file, line: at)
            XCTAssertTrue("\(error)".hasPrefix("/etc/pb.yml"), "\(error)", file: file, line: at)
            XCTAssertFalse("\(error)".contains("\n"), "one line: \(error)", file: file, line: at)
        }
    }

    func testBadConfigsNameFileLineAndKey() {
        assertError("evaluation_interval: 15s\nrulez: []\n", "unknown key \"rulez\"", line: 2)
        assertError("rules:\n  - alert: A\n    when: tcp_group_utilisation\n    above: 1\n", "tcp_group_utilisation", line: 3)
        assertError("rules:\n  - alert: A\n    when: udp_utilization\n    above: lots\n", "above must be a number", line: 4)
        assertError("rules:\n  - alert: A\n    when: udp_utilization\n", "needs above", line: 2)
        assertError("rules:\n  - alert: A\n    when: udp_utilization\n    above: 1\n    below: 2\n", "not both", line: 5)
        assertError("rules:\n  - alert: A\n    when: udp_utilization\n    above: 1\n    for: soon\n", "for:", line: 5)
        assertError("rules:\n  - alert: A\n    when: udp_utilization\n    above: 1\n    severity: page\n", "severity", line: 5)
        assertError("rules:\n  - alert: A\n    when: udp_utilization\n    above: 1\n    labels: {alertname: x}\n",
                    "may not set alertname", line: 2)
        assertError("rules:\n  - alert: A\n    when: udp_utilization\n    above: 1\n    annotations: {summary: \"{{ .x }}\"}\n",
                    "annotations.summary", line: 5)
        assertError("rules:\n  - alert: A\n    when: udp_utilization\n    above: 1\n    thresold: 2\n", "thresold", line: 5)
        assertError("alertmanagers:\n  - url: ftp://x\n", "not an http", line: 2)
        assertError("alertmanagers:\n  - uri: http://x\n", "unknown key \"uri\"", line: 2)
        assertError("evaluation_interval: 0s\n", "at least 1s, got 0s", line: 1)
        assertError("evaluation_interval: 1ms\n", "evaluation_interval must be at least 1s, got 1ms", line: 1)
        assertError("resend_interval: 500ms\n", "resend_interval must be at least 1s", line: 1)
        assertError("delivery:\n  source_ports: 9-3\n", "source_ports", line: 2)
        assertError("rules: [\n", "not valid YAML", line: 2)
        assertError("- a\n- b\n", "top level", line: 1)
    }

    func testUnreadableFilesAreErrorsNamingFileAndReason() throws {
        XCTAssertThrowsError(try AlertConfig.load(path: "/nonexistent/pb.yml")) { error in
            XCTAssertEqual("\(error)", "/nonexistent/pb.yml: cannot read the file: No such file or directory")
        }
        XCTAssertThrowsError(try AlertConfig.load(path: "/tmp")) { error in
            XCTAssertEqual("\(error)", "/tmp: cannot read the file: not a regular file")
        }
        // A FIFO with no writer would block a plain open() forever.
        let fifo = FileManager.default.temporaryDirectory.appendingPathComponent("pbfifo-\(UUID().uuidString)").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        defer { unlink(fifo) }
        XCTAssertThrowsError(try AlertConfig.load(path: fifo)) { error in
            XCTAssertEqual("\(error)", "\(fifo): cannot read the file: not a regular file")
        }
    }
}

import Foundation
import XCTest

/// The alert evaluator keeps its interval whatever Alertmanager does, and
/// SIGHUP reloads the config the way Prometheus does (or is harmless).
final class EvaluatorResilienceTests: XCTestCase {
    func metric(_ text: String, _ name: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") || line.hasPrefix(name + "{") {
            if let value = line.split(separator: " ").last.flatMap({ Double($0) }) { return value }
        }
        return nil
    }

    func writeConfig(_ text: String, in directory: URL) throws -> String {
        let path = directory.appendingPathComponent("portbudget.yml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func temporaryDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pbeval-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
        return directory
    }

    /// Alertmanager's address black-holed with nftables (SYNs dropped, so
    /// every connect waits for its timeout): with `evaluation_interval: 1s`
    /// the evaluator still ticks about once a second, a `for: 2s` rule fires
    /// from those ticks alone, and SIGTERM stops the agent at once although a
    /// delivery is stuck.
    func testEvaluatorTicksOnItsIntervalWhileAlertmanagerIsBlackHoled() throws {
        try ExporterProcess.require("/usr/sbin/nft")
        try ExporterProcess.require("/usr/bin/curl")
        let ns = try NetworkNamespace()
        try ns.must(["nft", "add table inet pbtest; add chain inet pbtest input { type filter hook input priority 0; };"
                     + " add rule inet pbtest input tcp dport 9093 drop"], inside: true)
        let work = try temporaryDirectory()
        let config = try writeConfig("""
            evaluation_interval: 1s
            alertmanagers:
              - url: http://127.0.0.1:9093
                timeout: 5s
            delivery:
              source_ports: 39990-39999
            rules:
              - alert: AlwaysOn
                when: udp_sockets_in_use
                above: -1
                for: 2s
            """, in: work)
        let serve = try ExporterProcess([Binaries.portbudget, "serve", "--listen", "127.0.0.1:9958", "--config", config,
                                         "--log-level", "debug"], in: ns)
        let first = try serve.await("the first scrape") { ns.httpGet("http://127.0.0.1:9958/metrics") }
        let start = Date()
        Thread.sleep(forTimeInterval: 8)
        let second = try XCTUnwrap(ns.httpGet("http://127.0.0.1:9958/metrics"))
        let elapsed = Date().timeIntervalSince(start)
        let ticks = try XCTUnwrap(metric(second, "portbudget_alert_evaluations_total"))
            - XCTUnwrap(metric(first, "portbudget_alert_evaluations_total")) - 1  // less the second scrape's own
        XCTAssertGreaterThanOrEqual(ticks, elapsed - 2, "evaluations in \(elapsed) s with Alertmanager black-holed")
        XCTAssertLessThanOrEqual(ticks, elapsed + 1)
        XCTAssertTrue(second.contains(#"portbudget_alerts{alertstate="firing",alertname="AlwaysOn""#),
                      "the for: 2s rule fired from the evaluator's own ticks:\n\(second.prefix(3000))")
        let stopped = try XCTUnwrap(serve.stop(SIGTERM, timeout: 6), "serve still running 6 s after SIGTERM: \(serve.stderrText.suffix(3000))")
        XCTAssertEqual(stopped.status, 0, serve.stderrText.suffix(2000).description)
        XCTAssertLessThan(stopped.seconds, 5, "a stuck delivery held the shutdown")
    }

    /// SIGHUP with a good file swaps the rules (the alert of an unchanged
    /// rule keeps firing); with a bad one the running rules stay, the error
    /// is logged and `portbudget_config_last_reload_successful` says 0.
    func testSighupReloadsAGoodConfigAndKeepsTheRulesOnABadOne() throws {
        try ExporterProcess.require("/usr/bin/curl")
        let work = try temporaryDirectory()
        let oneRule = """
            evaluation_interval: 1s
            rules:
              - alert: AlwaysOn
                when: udp_sockets_in_use
                above: -1
            """
        let config = try writeConfig(oneRule, in: work)
        let serve = try ExporterProcess([Binaries.portbudget, "serve", "--listen", "127.0.0.1:0", "--config", config])
        let port = try serve.await("the listening address in the log") { () -> String? in
            guard let range = serve.stderrText.range(of: #"127\.0\.0\.1:(\d+)"#, options: .regularExpression) else { return nil }
            return String(serve.stderrText[range].split(separator: ":")[1])
        }
        func scrape() -> String? {
            let output = Command.run(["curl", "-sf", "--max-time", "5", "http://127.0.0.1:\(port)/metrics"], timeout: 10)
            return output.status == 0 ? output.stdout : nil
        }
        _ = try serve.await("the alert evaluator") { serve.stderrText.contains("alert evaluator running") ? true : nil }
        XCTAssertEqual(metric(try XCTUnwrap(scrape()), "portbudget_alert_rules"), 1)

        _ = try writeConfig(oneRule + """

              - alert: SecondRule
                when: udp_sockets_in_use
                above: -1
            """, in: work)
        kill(serve.process.processIdentifier, SIGHUP)
        _ = try serve.await("the reload log") { serve.stderrText.contains("configuration reloaded") ? true : nil }
        var text = try XCTUnwrap(scrape())
        XCTAssertEqual(metric(text, "portbudget_alert_rules"), 2)
        XCTAssertEqual(metric(text, "portbudget_config_last_reload_successful"), 1)
        XCTAssertTrue(text.contains(#"alertname="AlwaysOn""#) && text.contains(#"alertname="SecondRule""#), text)

        _ = try writeConfig("evaluation_interval: 1ms\n", in: work)
        kill(serve.process.processIdentifier, SIGHUP)
        _ = try serve.await("the failed reload log") { serve.stderrText.contains("configuration not reloaded") ? true : nil }
        XCTAssertTrue(serve.stderrText.contains("evaluation_interval must be at least 1s"), serve.stderrText)
        text = try XCTUnwrap(scrape())
        XCTAssertEqual(metric(text, "portbudget_alert_rules"), 2, "the previous rules stay")
        XCTAssertEqual(metric(text, "portbudget_config_last_reload_successful"), 0)
        XCTAssertTrue(serve.process.isRunning)
        let stopped = try XCTUnwrap(serve.stop(SIGTERM), "serve still running 5 s after SIGTERM")
        XCTAssertEqual(stopped.status, 0)
    }

    /// Without --config, and for textfile, SIGHUP is logged and changes nothing.
    func testSighupIsHarmlessWithoutAConfig() throws {
        let work = try temporaryDirectory()
        let serve = try ExporterProcess([Binaries.portbudget, "serve", "--listen", "127.0.0.1:0"])
        let textfile = try ExporterProcess([Binaries.portbudget, "textfile", work.path, "--interval", "200ms"])
        for process in [serve, textfile] {
            _ = try process.await("the start log") {
                process.stderrText.contains("serving metrics") || process.stderrText.contains("writing textfile") ? true : nil
            }
            // The signal handler is installed as the services start; give it a moment after the first log line.
            Thread.sleep(forTimeInterval: 0.5)
            kill(process.process.processIdentifier, SIGHUP)
            _ = try process.await("the SIGHUP log") { process.stderrText.contains("SIGHUP") ? true : nil }
            Thread.sleep(forTimeInterval: 0.5)
            XCTAssertTrue(process.process.isRunning, "\(process.name) died of SIGHUP: \(process.stderrText)")
            let stopped = try XCTUnwrap(process.stop(SIGTERM), "still running 5 s after SIGTERM")
            XCTAssertEqual(stopped.status, 0)
        }
    }

    /// The smaller command-line defects: each a one-line error that says what is right.
    func testBadValuesGetOneLineErrorsThatSayWhatIsRight() throws {
        let cases: [([String], Int32, String)] = [
            (["check", "--top", "-1"], 3, "--top must be 0 or more, got -1"),
            (["serve", "--top", "-1"], 2, "--top must be 0 or more, got -1"),
            (["serve", "--log-level", "loud"], 2, "trace, debug, info, notice, warning, error, critical"),
            (["serve", "--config", "/nonexistent/pb.yml"], 2, "/nonexistent/pb.yml: cannot read the file: No such file or directory"),
            (["serve", "--config", "/tmp"], 2, "/tmp: cannot read the file: not a regular file"),
        ]
        for (arguments, status, message) in cases {
            let output = Command.run([Binaries.portbudget] + arguments, timeout: 10)
            XCTAssertEqual(output.status, status, "\(arguments): \(output.stderr)")
            XCTAssertEqual(output.stderr.split(separator: "\n").count, 1, "\(arguments): \(output.stderr)")
            XCTAssertTrue(output.stderr.contains(message), "\(arguments): \(output.stderr)")
        }
        let work = try temporaryDirectory()
        let fast = try writeConfig("evaluation_interval: 1ms\n", in: work)
        let output = Command.run([Binaries.portbudget, "serve", "--config", fast], timeout: 10)
        XCTAssertEqual(output.status, 2)
        XCTAssertEqual(output.stderr, "portbudget: \(fast):1: evaluation_interval must be at least 1s, got 1ms\n")
    }
}

import Foundation
import XCTest

/// `serve` and `textfile` as a shell or a service manager sees them: exit
/// statuses, one-line errors, signals, and what DIR ever contains. These run
/// in the test's own network namespace when possible, else in the host's
/// (no privilege needed to collect there).
final class ExporterCommandLineTests: XCTestCase {
    func testServeRejectsABadListenAddressWithExitTwo() {
        for bad in ["9958", "[::1:80", "127.0.0.1:70000"] {
            let output = Command.run([Binaries.portbudget, "serve", "--listen", bad])
            XCTAssertEqual(output.status, 2, bad)
            XCTAssertEqual(output.stderr.split(separator: "\n").count, 1, output.stderr)
            XCTAssertTrue(output.stderr.contains(bad), output.stderr)
        }
    }

    func testServeAndTextfileRejectABadCPUBudgetWithExitTwo() {
        for bad in ["-1", "abc", "nan", "inf"] {
            for command in [["serve"], ["textfile", "/tmp"]] {
                let output = Command.run([Binaries.portbudget] + command + ["--all-namespaces", "--collection-cpu-budget", bad])
                XCTAssertEqual(output.status, 2, bad)
                XCTAssertEqual(output.stderr.split(separator: "\n").count, 1, output.stderr)
                XCTAssertTrue(output.stderr.contains("--collection-cpu-budget"), output.stderr)
            }
        }
    }

    func testServeThatCannotBindExitsOneNamingTheAddress() throws {
        let first = try ExporterProcess([Binaries.portbudget, "serve", "--listen", "127.0.0.1:0"])
        let port = try first.await("the listening address in the log") { () -> String? in
            guard let range = first.stderrText.range(of: #"127\.0\.0\.1:(\d+)"#, options: .regularExpression) else { return nil }
            return String(first.stderrText[range].split(separator: ":")[1])
        }
        let second = Command.run([Binaries.portbudget, "serve", "--listen", "127.0.0.1:\(port)"], timeout: 10)
        XCTAssertEqual(second.status, 1)
        XCTAssertEqual(second.stderr, "portbudget: cannot listen on 127.0.0.1:\(port): Address already in use\n")
        let stopped = try XCTUnwrap(first.stop(SIGINT), "serve still running 5 s after SIGINT")
        XCTAssertEqual(stopped.status, 0)
    }

    func testTextfileRejectsAMissingDirectoryWithExitTwo() {
        let missing = "/nonexistent-\(UUID().uuidString)"
        let output = Command.run([Binaries.portbudget, "textfile", missing, "--once"])
        XCTAssertEqual(output.status, 2)
        XCTAssertEqual(output.stderr, "portbudget: cannot write \(missing): No such file or directory\n")
        let badInterval = Command.run([Binaries.portbudget, "textfile", "/tmp", "--interval", "15"])
        XCTAssertEqual(badInterval.status, 2)
        XCTAssertEqual(badInterval.stderr.split(separator: "\n").count, 1, badInterval.stderr)
    }

    /// SIGKILL at random moments of a fast write loop: DIR only ever holds the
    /// whole portbudget.prom and the hidden temporary file, and the .prom file
    /// is always a complete exposition. SIGTERM ends the loop with exit 0.
    func testKilledMidLoopLeavesOnlyWholePromFiles() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pbkill-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let prom = directory.appendingPathComponent("portbudget.prom")
        for round in 0..<12 {
            let writer = try ExporterProcess([Binaries.portbudget, "textfile", directory.path, "--interval", "1ms", "--top", "0"])
            usleep(useconds_t(30_000 + (round * 37_000) % 200_000))
            if round == 11 {
                // Signal handlers exist once the service group runs; it logs then.
                _ = try writer.await("the start log") { writer.stderrText.contains("writing textfile") ? true : nil }
                let stopped = try XCTUnwrap(writer.stop(SIGTERM), "textfile still running 5 s after SIGTERM")
                XCTAssertEqual(stopped.status, 0, writer.stderrText)
            } else {
                _ = writer.stop(SIGKILL)
            }
            let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            XCTAssertTrue(Set(names).isSubset(of: ["portbudget.prom", ".portbudget.prom.tmp"]), "round \(round): \(names)")
            XCTAssertEqual(names.filter { $0.hasSuffix(".prom") }, names.contains("portbudget.prom") ? ["portbudget.prom"] : [])
            if let text = try? String(contentsOf: prom, encoding: .utf8) {
                XCTAssertTrue(text.hasPrefix("# HELP portbudget_build_info"), "round \(round)")
                XCTAssertTrue(text.hasSuffix("\n"), "round \(round): truncated")
                XCTAssertTrue(text.contains("portbudget_scrape_collector_success"), "round \(round): truncated")
            }
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: prom.path), "no write completed in 12 rounds")
    }
}

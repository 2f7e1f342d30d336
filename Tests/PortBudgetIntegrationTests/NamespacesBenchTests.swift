import Foundation
import XCTest

/// The short version of `portbudget-bench namespaces` (the full one, 100
/// namespaces × 1,000 connections beside 100,000 host sockets, is run by
/// hand: docs/benchmarks.md). Five namespaces of 50 connections and a host
/// namespace of 2,000 sockets: the run must finish, the agent must list
/// every namespace of the run and every connection in each (the benchmark
/// checks that before timing and again after each churn round, and fails
/// otherwise), the tables must print, and nothing the run made may be left.
/// Timing goals are the benchmark's to report, not this test's to assert.
final class NamespacesBenchTests: XCTestCase {
    func testShortNamespacesBenchmarkCountsWhatItBuilt() throws {
        guard geteuid() == 0 else {
            try NetworkNamespace.skip("needs root to create network namespaces", file: #filePath, line: #line)
            return
        }
        let prefix = "pbnsb\(getpid())"
        let results = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix).md").path
        defer { try? FileManager.default.removeItem(atPath: results) }
        let output = Command.run([Binaries.directory + "/portbudget-bench", "namespaces", "--ci", "--prefix", prefix,
                                  "--results", results], timeout: 180)
        XCTAssertEqual(output.status, 0, output.stderr)

        // The agent against the population: 5 members and the host, each member's 50 connections.
        let agrees = output.stderr.split(separator: "\n").filter { $0.contains(" agrees: 6 namespaces of this run (host + 5), ") }
        XCTAssertFalse(agrees.isEmpty, output.stderr)
        for line in agrees where !line.contains("the ss loop") {
            XCTAssertTrue(line.contains("50 TCP ports bound and 50 established TCP sockets in each member"), String(line))
        }
        XCTAssertTrue(output.stderr.contains("the ss loop agrees: 505 TCP sockets in the 5 member namespaces"), output.stderr)
        for count in [1, 2, 5] {
            XCTAssertTrue(output.stderr.contains("floor at \(count) namespaces: "), output.stderr)
        }
        XCTAssertTrue(output.stderr.contains("churn round 2: 2 namespaces replaced so far"), output.stderr)
        // serve --all-namespaces and check --all-namespaces are both held to the population.
        XCTAssertTrue(agrees.contains { $0.contains("serve --all-namespaces agrees") }, output.stderr)
        XCTAssertTrue(agrees.contains { $0.contains("check --all-namespaces agrees") }, output.stderr)

        let table = (try? String(contentsOfFile: results, encoding: .utf8)) ?? ""
        XCTAssertEqual(output.stdout.trimmingCharacters(in: .whitespacesAndNewlines),
                       table.trimmingCharacters(in: .whitespacesAndNewlines), "the table printed is the one written")
        for expected in ["| at 5 namespaces |", "`ip netns exec NS ss -tanH` for each namespace", "floor: one SOCK_DIAG socket",
                         "`check --all-namespaces --json`", "`check --all-namespaces`: whole process, printing its table",
                         "- check --all-namespaces, whole process / the ss loop: ", "`serve --all-namespaces`: one /metrics scrape", "### Hash walk", "### Churn", "| 2 | 2 |", "Goals, serve --all-namespaces scrape:",
                         "### What an exact census must ask of this kernel", "| LISTEN | listener hash |",
                         "| every connected state | established hash |", "| bound-only | bind table, then the established hash too |",
                         "ms of kernel time per member namespace"] {
            XCTAssertTrue(table.contains(expected), "missing \(expected):\n\(table)")
        }

        // Everything the run made is gone: no namespace, no process left in one.
        let left = Command.run(["ip", "netns", "list"]).stdout
        XCTAssertFalse(left.contains(prefix), left)
        let netnsDirectory = (try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []
        XCTAssertFalse(netnsDirectory.contains { $0.hasPrefix(prefix) }, "\(netnsDirectory)")
    }

    /// The short version of `portbudget-bench namespaces --flood` (the full
    /// one, 1,500 tenant namespaces, is run by hand): 20 namespaces of an
    /// unprivileged uid beside a root-owned one at 90%. The run must finish,
    /// the agent must count every tenant namespace, and the goals that are
    /// not about time must hold; nothing of the tenant may be left.
    func testShortFloodBenchmarkSeesTheTenantAndLeavesNothing() throws {
        guard geteuid() == 0 else {
            try NetworkNamespace.skip("needs root to create network namespaces and run a tenant as another uid",
                                      file: #filePath, line: #line)
            return
        }
        let prefix = "pbflb\(getpid())", uid = 4243
        let results = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix).md").path
        defer { try? FileManager.default.removeItem(atPath: results) }
        let output = Command.run([Binaries.directory + "/portbudget-bench", "namespaces", "--flood", "--ci", "--prefix", prefix,
                                  "--tenant-uid", "\(uid)", "--results", results], timeout: 180)
        XCTAssertEqual(output.status, 0, output.stderr)
        XCTAssertTrue(output.stderr.contains("tenant uid \(uid): 20 namespaces in "), output.stderr)
        XCTAssertTrue(output.stderr.contains("serve --all-namespaces sees the flood: "), output.stderr)

        let table = (try? String(contentsOfFile: results, encoding: .utf8)) ?? ""
        XCTAssertEqual(output.stdout.trimmingCharacters(in: .whitespacesAndNewlines),
                       table.trimmingCharacters(in: .whitespacesAndNewlines), "the table printed is the one written")
        for row in ["| before |", "| flood |", "| after |"] { XCTAssertTrue(table.contains(row), "missing \(row):\n\(table)") }
        // Not about time, so they hold on any machine: the test's to assert.
        for goal in ["- the tenant's namespaces counted:", "- no EMFILE in the agent's log:",
                     "- the root-owned namespace's 9-of-10 group in every scrape:", "  - series:"] {
            let line = table.split(separator: "\n").first { $0.hasPrefix(goal) }
            XCTAssertTrue(line?.hasSuffix("— PASS") ?? false, "\(goal)\n\(table)")
        }

        // Nothing left: no namespace of the run, no process of the tenant's uid.
        let left = Command.run(["ip", "netns", "list"]).stdout
        XCTAssertFalse(left.contains(prefix), left)
        XCTAssertEqual(Command.run(["pgrep", "-u", "\(uid)"]).stdout, "", "the tenant's processes are gone")
    }
}

import Foundation
import XCTest

/// The short version of `portbudget-bench conntrack` (the full one is run by
/// hand, see docs/benchmarks.md): a few thousand masqueraded UDP flows, and
/// the benchmark's own agreement check — the agent, `conntrack -L | awk` and
/// a bare dump must each count exactly the flows built, in 8 NAT groups —
/// before anything is timed.
final class ConntrackBenchTests: XCTestCase {
    func testShortConntrackBenchmarkAgreesWithConntrackL() throws {
        guard geteuid() == 0 else {
            try NetworkNamespace.skip("needs root to create network namespaces", file: #filePath, line: #line)
            return
        }
        for tool in ["/usr/sbin/nft", "/usr/sbin/conntrack"] { try ExporterProcess.require(tool) }
        let results = FileManager.default.temporaryDirectory.appendingPathComponent("pbctbench-\(getpid()).md").path
        defer { try? FileManager.default.removeItem(atPath: results) }
        let output = Command.run([Binaries.directory + "/portbudget-bench", "conntrack", "--entries", "3000",
                                  "--rounds", "1", "--results", results, "--netns", "pbctb-\(getpid())"], timeout: 60)
        XCTAssertEqual(output.status, 0, output.stderr)
        XCTAssertTrue(output.stderr.contains("nf_conntrack_count 3000"), output.stderr)
        let table = (try? String(contentsOfFile: results, encoding: .utf8)) ?? ""
        XCTAssertTrue(table.contains("| 3,000 |"), table)
        XCTAssertTrue(table.contains("conntrack -L"), table)
    }
}

import Foundation
import XCTest

/// The soak's short mode (`scripts/soak` runs the hour): `serve` under
/// back-to-back scrapes, a failing Alertmanager and an abuse burst every
/// period, with RSS, descriptors and scrape time read from /proc and held
/// flat by the soak itself (it exits 1 naming what grew).
final class SoakTests: XCTestCase {
    func testShortSoakKeepsMemoryDescriptorsAndScrapeTimeFlat() throws {
        guard geteuid() == 0 else {
            try NetworkNamespace.skip("the soak needs root for its network namespace", file: #filePath, line: #line)
            return
        }
        let output = Command.run([Binaries.directory + "/portbudget-bench", "soak", "--seconds", "40", "--period", "10",
                                  "--sockets", "10000", "--netns", "pbsoak-test-\(getpid())"], timeout: 180)
        print(output.stdout)
        XCTAssertEqual(output.status, 0, "soak failed:\n\(output.stdout)\n\(output.stderr.suffix(3000))")
        XCTAssertTrue(output.stdout.contains("Flat."), output.stdout)
        let rows = output.stdout.split(separator: "\n").filter { $0.hasPrefix("| ") && !$0.hasPrefix("| elapsed") }
        XCTAssertEqual(rows.count, 4, "a row per 10 s period:\n\(output.stdout)")
    }
}

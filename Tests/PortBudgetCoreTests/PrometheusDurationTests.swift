import PortBudgetCore
import XCTest

final class PrometheusDurationTests: XCTestCase {
    func testParsesPrometheusDurations() throws {
        XCTAssertEqual(try PrometheusDuration(parsing: "500ms").milliseconds, 500)
        XCTAssertEqual(try PrometheusDuration(parsing: "15s").milliseconds, 15_000)
        XCTAssertEqual(try PrometheusDuration(parsing: "1m").milliseconds, 60_000)
        XCTAssertEqual(try PrometheusDuration(parsing: "1m30s").milliseconds, 90_000)
        XCTAssertEqual(try PrometheusDuration(parsing: "1h5m10s20ms").milliseconds, 3_910_020)
        XCTAssertEqual(try PrometheusDuration(parsing: "2d").milliseconds, 172_800_000)
        XCTAssertEqual(try PrometheusDuration(parsing: "0s").milliseconds, 0)
    }

    func testRejectsWhatPrometheusRejects() {
        for bad in ["", "15", "s", "1.5s", "15 s", "1s1m", "1s1s", "-1s", "1x", "10sec"] {
            XCTAssertThrowsError(try PrometheusDuration(parsing: bad), bad) { error in
                XCTAssertFalse("\(error)".contains("\n"), "one line: \(error)")
            }
        }
    }
}

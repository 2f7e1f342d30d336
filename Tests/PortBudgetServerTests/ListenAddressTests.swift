import PortBudgetServer
import XCTest

final class ListenAddressTests: XCTestCase {
    func testAcceptsTheNodeExporterForms() throws {
        XCTAssertEqual(try ListenAddress(parsing: ":9958"), ListenAddress(host: nil, port: 9958))
        XCTAssertEqual(try ListenAddress(parsing: "127.0.0.1:9958"), ListenAddress(host: "127.0.0.1", port: 9958))
        XCTAssertEqual(try ListenAddress(parsing: "[::1]:9958"), ListenAddress(host: "::1", port: 9958))
        XCTAssertEqual(try ListenAddress(parsing: "localhost:0"), ListenAddress(host: "localhost", port: 0))
        XCTAssertEqual(ListenAddress(host: "::1", port: 1).description, "[::1]:1")
        XCTAssertEqual(ListenAddress(host: nil, port: 9958).description, ":9958")
    }

    func testRejectsWithOneLineNamingTheProblem() {
        for bad in ["9958", "127.0.0.1", ":", ":99999", ":-1", "::1:9958", "[::1:9958", "[127.0.0.1]:80", "bad host:80", "host:80x"] {
            XCTAssertThrowsError(try ListenAddress(parsing: bad), bad) { error in
                XCTAssertFalse("\(error)".contains("\n"))
                XCTAssertTrue("\(error)".contains(bad), "names the value: \(error)")
            }
        }
    }
}

import XCTest
@testable import PortBudgetCore

final class IPAddressTests: XCTestCase {
    func testCanonicalText() {
        XCTAssertEqual(IPAddress("10.0.0.1")?.description, "10.0.0.1")
        XCTAssertEqual(IPAddress("2001:0db8:0000:0000:0000:0000:0000:0001")?.description, "2001:db8::1")
        XCTAssertEqual(IPAddress("2001:db8:0:1:0:0:0:1")?.description, "2001:db8:0:1::1")
        XCTAssertEqual(IPAddress("::")?.description, "::")
        XCTAssertEqual(IPAddress("FE80::A")?.description, "fe80::a")
        XCTAssertNil(IPAddress("10.0.0.256"))
        XCTAssertNil(IPAddress("not an address"))
    }

    func testMappedAddressesFoldToIPv4() {
        let mapped = IPAddress("::ffff:192.0.2.1")!
        XCTAssertEqual(mapped, IPAddress("192.0.2.1"))
        XCTAssertEqual(mapped.family, .v4)
        XCTAssertEqual(mapped.description, "192.0.2.1")
        XCTAssertEqual(IPAddress("::192.0.2.1")?.family, .v6)
    }

    func testLoopback() {
        XCTAssertTrue(IPAddress("127.0.0.1")!.isLoopback)
        XCTAssertTrue(IPAddress("127.8.9.10")!.isLoopback)
        XCTAssertTrue(IPAddress("::1")!.isLoopback)
        XCTAssertTrue(IPAddress("::ffff:127.0.0.1")!.isLoopback)
        XCTAssertFalse(IPAddress("128.0.0.1")!.isLoopback)
        XCTAssertFalse(IPAddress("::2")!.isLoopback)
    }
}

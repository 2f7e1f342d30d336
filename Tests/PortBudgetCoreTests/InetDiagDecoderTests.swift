import XCTest
@testable import PortBudgetCore
import PortBudgetTestSupport

final class InetDiagDecoderTests: XCTestCase {
    let v4Record = InetDiagRecord(
        family: .v4, state: TCPState.timeWait, timer: 3, localPort: 40001, remotePort: 443,
        local: IPAddress("10.0.0.1")!, remote: IPAddress("192.0.2.7")!, interface: 0, cookie: 0x1122_3344_5566_7788,
        expiresMs: 59_000, uid: 0, inode: 0)
    let v6Record = InetDiagRecord(
        family: .v6, state: TCPState.established, localPort: 40002, remotePort: 8080,
        local: IPAddress("2001:db8::1")!, remote: IPAddress("2001:db8::2")!, interface: 1, cookie: 9,
        uid: 1000, inode: 123_456)

    func decodeAll(_ bytes: [UInt8], sequence: UInt32? = nil) throws -> ([InetDiagRecord], NetlinkFrameDecoder.Progress) {
        var records: [InetDiagRecord] = []
        let progress = try bytes.withUnsafeBytes { raw in
            try InetDiagDecoder.decode(raw, sequence: sequence) { records.append($0) }
        }
        return (records, progress)
    }

    func testRoundTripsEveryFieldOfBothFamilies() throws {
        var encoder = NetlinkReplyEncoder()
        encoder.append(v4Record)
        encoder.append(v6Record)
        encoder.appendDone()
        let (records, progress) = try decodeAll(encoder.bytes)
        XCTAssertEqual(records, [v4Record, v6Record])
        XCTAssertEqual(progress, .done)
    }

    /// The cgroup id comes from the attributes after the message, wherever
    /// it stands among them; a message without one, or with a malformed
    /// attribute tail, still yields its socket, with id 0.
    func testCgroupIDAttributeIsReadAndAMalformedTailCostsOnlyTheAttribution() throws {
        var owned = v6Record
        owned.cgroupID = 0x0000_0001_0000_2a2a
        var encoder = NetlinkReplyEncoder()
        encoder.append(owned)
        encoder.append(v4Record)
        // Other attributes first (INET_DIAG_INFO-like, type 2, 8 bytes of payload), then the id.
        var body = Array(encoder.bytes[16..<(16 + 72)])
        body += [12, 0, 2, 0] + [UInt8](repeating: 0xee, count: 8)
        body += [12, 0, 21, 0] + withUnsafeBytes(of: UInt64(77).littleEndian, Array.init)
        encoder.appendMessage(type: InetDiagDecoder.sockDiagByFamily, payload: body)
        // A tail that claims more than the message holds.
        encoder.appendMessage(type: InetDiagDecoder.sockDiagByFamily,
                              payload: Array(encoder.bytes[16..<(16 + 72)]) + [200, 0, 21, 0, 1, 2, 3, 4])
        let (records, _) = try decodeAll(encoder.bytes)
        XCTAssertEqual(records.map(\.cgroupID), [0x0000_0001_0000_2a2a, 0, 77, 0])
        XCTAssertEqual(records.count, 4)
    }

    func testKnownBytesOfAnIPv4Record() throws {
        var encoder = NetlinkReplyEncoder()
        encoder.append(v4Record)
        let b = encoder.bytes
        XCTAssertEqual(b.count, 16 + 72)
        XCTAssertEqual(Array(b[0..<4]), [88, 0, 0, 0])  // nlmsg_len, little-endian
        XCTAssertEqual(Array(b[4..<6]), [20, 0])  // SOCK_DIAG_BY_FAMILY
        XCTAssertEqual(b[16], 2)  // AF_INET
        XCTAssertEqual(Array(b[20..<22]), [0x9c, 0x41])  // sport 40001, big-endian
        XCTAssertEqual(Array(b[24..<28]), [10, 0, 0, 1])
        XCTAssertEqual(Array(b[40..<44]), [192, 0, 2, 7])
    }

    func testIPv4MappedAddressesOfIPv6SocketsFoldToIPv4() throws {
        var mapped = v6Record
        mapped.local = IPAddress("127.0.0.1")!
        mapped.remote = IPAddress("127.0.0.1")!
        var encoder = NetlinkReplyEncoder()
        encoder.append(mapped)
        let (records, _) = try decodeAll(encoder.bytes)
        XCTAssertEqual(records.first?.local.description, "127.0.0.1")
        XCTAssertEqual(records.first?.local.family, .v4)
        XCTAssertEqual(records.first?.family, .v6)
    }

    func testBufferWithoutDoneAsksForMore() throws {
        var encoder = NetlinkReplyEncoder()
        encoder.append(v4Record)
        XCTAssertEqual(try decodeAll(encoder.bytes).1, .more)
        XCTAssertEqual(try decodeAll([]).1, .more)
    }

    func testTruncatedBuffersAreErrorsNeverCrashes() {
        var encoder = NetlinkReplyEncoder()
        encoder.append(v4Record)
        encoder.append(v6Record)
        encoder.appendDone()
        let full = encoder.bytes
        // Every cut of a valid stream either decodes a prefix or fails cleanly.
        for cut in 0..<full.count {
            let prefix = Array(full[0..<cut])
            do {
                let (records, progress) = try decodeAll(prefix)
                XCTAssertEqual(progress, .more, "cut \(cut)")
                XCTAssertTrue(records.count <= 2)
                XCTAssertTrue(cut % 88 == 0 || cut == 0, "cut \(cut) decoded without error")
            } catch {
                XCTAssertTrue(error is NetlinkDecodeError, "cut \(cut): \(error)")
            }
        }
    }

    func testHostileLengthsAndFamiliesAreRejected() {
        var encoder = NetlinkReplyEncoder()
        encoder.append(v4Record)
        var tooLong = encoder.bytes
        tooLong[0] = 0xff; tooLong[1] = 0xff  // claims 65535 bytes
        XCTAssertThrowsError(try decodeAll(tooLong)) {
            guard case .badMessageLength = $0 as? NetlinkDecodeError else { return XCTFail("\($0)") }
        }
        var tooShort = encoder.bytes
        tooShort[0] = 4; tooShort[1] = 0  // below the header size: would loop forever if accepted
        XCTAssertThrowsError(try decodeAll(tooShort))
        var shortRecord = NetlinkReplyEncoder()
        shortRecord.appendMessage(type: 20, payload: [UInt8](repeating: 2, count: 40))
        XCTAssertThrowsError(try decodeAll(shortRecord.bytes)) {
            guard case .shortMessage = $0 as? NetlinkDecodeError else { return XCTFail("\($0)") }
        }
        var badFamily = encoder.bytes
        badFamily[16] = 7
        XCTAssertThrowsError(try decodeAll(badFamily)) {
            XCTAssertEqual($0 as? NetlinkDecodeError, .unknownFamily(offset: 0, family: 7))
        }
    }

    func testRandomBytesNeverCrash() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let count = Int.random(in: 0..<400, using: &generator)
            var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if count >= 4 && Bool.random() {  // plausible lengths reach deeper paths
                let length = UInt32.random(in: 16...UInt32(max(16, count)))
                withUnsafeBytes(of: length) { for i in 0..<4 { bytes[i] = $0[i] } }
            }
            _ = try? decodeAll(bytes)
        }
    }

    func testUnknownMessageTypesAreSkipped() throws {
        var encoder = NetlinkReplyEncoder()
        encoder.appendMessage(type: 1, payload: [])  // NLMSG_NOOP
        encoder.appendMessage(type: 99, payload: [1, 2, 3])
        encoder.append(v4Record)
        encoder.appendDone()
        XCTAssertEqual(try decodeAll(encoder.bytes).0, [v4Record])
    }
}

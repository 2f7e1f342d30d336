import XCTest
@testable import PortBudgetCore
import PortBudgetTestSupport

final class ConntrackDecoderTests: XCTestCase {
    /// 10.1.0.2:37018 → 10.2.0.2:8080, masqueraded to 10.2.0.1:40006.
    let natTCP = ConntrackEntry(
        family: .v4, proto: 6, status: ConntrackEntry.sourceNATStatus | 0x8 | 0x2,
        original: ConntrackTuple(source: IPAddress("10.1.0.2")!, destination: IPAddress("10.2.0.2")!,
                                 sourcePort: 37018, destinationPort: 8080),
        reply: ConntrackTuple(source: IPAddress("10.2.0.2")!, destination: IPAddress("10.2.0.1")!,
                              sourcePort: 8080, destinationPort: 40006))
    let plainUDP6 = ConntrackEntry(
        family: .v6, proto: 17, status: 0x8,
        original: ConntrackTuple(source: IPAddress("2001:db8::1")!, destination: IPAddress("2001:db8::2")!,
                                 sourcePort: 5353, destinationPort: 53),
        reply: ConntrackTuple(source: IPAddress("2001:db8::2")!, destination: IPAddress("2001:db8::1")!,
                              sourcePort: 53, destinationPort: 5353), zone: 7)
    let icmp = ConntrackEntry(
        family: .v4, proto: 1, status: ConntrackEntry.sourceNATStatus,
        original: ConntrackTuple(source: IPAddress("10.1.0.2")!, destination: IPAddress("10.2.0.2")!, icmpID: 99),
        reply: ConntrackTuple(source: IPAddress("10.2.0.2")!, destination: IPAddress("10.2.0.1")!, icmpID: 99))

    func decodeAll(_ bytes: [UInt8], sequence: UInt32? = nil) throws
        -> ([ConntrackDecoder.Message], NetlinkFrameDecoder.Progress)
    {
        var messages: [ConntrackDecoder.Message] = []
        let progress = try bytes.withUnsafeBytes { raw in
            try ConntrackDecoder.decode(raw, sequence: sequence) { messages.append($0) }
        }
        return (messages, progress)
    }

    func testRoundTripsEntriesOfBothFamiliesAndICMP() throws {
        var encoder = NetlinkReplyEncoder()
        encoder.append(natTCP)
        encoder.append(plainUDP6)
        encoder.append(icmp)
        encoder.appendDone()
        let (messages, progress) = try decodeAll(encoder.bytes)
        XCTAssertEqual(messages, [.entry(natTCP), .entry(plainUDP6), .entry(icmp)])
        XCTAssertEqual(progress, .done)
        XCTAssertTrue(natTCP.isSourceNATed)
        XCTAssertFalse(plainUDP6.isSourceNATed)
    }

    /// The layout ctnetlink uses, byte for byte: nlmsghdr, nfgenmsg, then
    /// CTA_TUPLE_ORIG (nested) → CTA_TUPLE_IP (nested) → CTA_IP_V4_SRC.
    func testKnownBytesOfAnIPv4Entry() throws {
        var encoder = NetlinkReplyEncoder()
        encoder.append(natTCP)
        let b = encoder.bytes
        XCTAssertEqual(Array(b[4..<6]), [0x00, 0x01])  // (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW
        XCTAssertEqual(b[16], 2)  // nfgen_family AF_INET
        XCTAssertEqual(Array(b[22..<24]), [0x01, 0x80])  // CTA_TUPLE_ORIG | NLA_F_NESTED
        XCTAssertEqual(Array(b[26..<28]), [0x01, 0x80])  // CTA_TUPLE_IP | NLA_F_NESTED
        XCTAssertEqual(Array(b[28..<32]), [8, 0, 1, 0])  // CTA_IP_V4_SRC, 4 bytes
        XCTAssertEqual(Array(b[32..<36]), [10, 1, 0, 2])
        XCTAssertEqual(Int(b[0]) | Int(b[1]) << 8, b.count)
    }

    func testStatisticsAndTableSize() throws {
        var s0 = ConntrackStatistics(), s1 = ConntrackStatistics()
        s0.insertFailed = 4; s0.drop = 4; s0.searchRestart = 1
        s1.insertFailed = 3; s1.earlyDrop = 2; s1.clashResolve = 5; s1.found = 9
        var encoder = NetlinkReplyEncoder()
        encoder.append(cpu: 0, s0)
        encoder.append(cpu: 1, s1)
        encoder.appendDone()
        let (messages, progress) = try decodeAll(encoder.bytes)
        XCTAssertEqual(messages, [.cpuStatistics(cpu: 0, s0), .cpuStatistics(cpu: 1, s1)])
        XCTAssertEqual(progress, .done)
        let sum = s0 + s1
        XCTAssertEqual([sum.insertFailed, sum.drop, sum.earlyDrop, sum.searchRestart, sum.clashResolve], [7, 4, 2, 1, 5])

        var table = NetlinkReplyEncoder()
        table.appendTableSize(entries: 10, limit: 262_144)
        table.appendError(0)  // the ACK that closes a request sent with NLM_F_ACK
        let (sizes, end) = try decodeAll(table.bytes)
        XCTAssertEqual(sizes, [.tableSize(entries: 10, limit: 262_144)])
        XCTAssertEqual(end, .done)
        var old = NetlinkReplyEncoder()
        old.appendTableSize(entries: 3, limit: nil)
        XCTAssertEqual(try decodeAll(old.bytes).0, [.tableSize(entries: 3, limit: nil)])
    }

    func testStaleSequenceNumbersAndOtherSubsystemsAreSkipped() throws {
        var stale = NetlinkReplyEncoder(sequence: 6)
        stale.append(natTCP)
        stale.appendDone()
        var current = NetlinkReplyEncoder(sequence: 7)
        current.append(plainUDP6)
        current.appendMessage(type: 2 << 8 | 0, payload: [2, 0, 0, 0])  // NFNL_SUBSYS_CTNETLINK_EXP: not ours
        current.appendDone()
        let (messages, progress) = try decodeAll(stale.bytes + current.bytes, sequence: 7)
        XCTAssertEqual(messages, [.entry(plainUDP6)])
        XCTAssertEqual(progress, .done)
    }

    func testBufferWithoutDoneAsksForMore() throws {
        var encoder = NetlinkReplyEncoder()
        encoder.append(natTCP)
        XCTAssertEqual(try decodeAll(encoder.bytes).1, .more)
    }

    func testEveryTruncationIsAnErrorNeverACrash() {
        var encoder = NetlinkReplyEncoder()
        encoder.append(natTCP)
        encoder.append(plainUDP6)
        let whole = encoder.bytes
        let first = Int(whole[0]) | Int(whole[1]) << 8
        for cut in 1..<whole.count where cut != first {
            XCTAssertThrowsError(try decodeAll(Array(whole[0..<cut])), "cut at \(cut)")
        }
    }

    func testHostileLengthsAreRejected() {
        var encoder = NetlinkReplyEncoder()
        encoder.append(natTCP)
        let good = encoder.bytes
        func mutated(_ at: Int, _ bytes: [UInt8]) -> [UInt8] {
            var b = good
            for (i, v) in bytes.enumerated() { b[at + i] = v }
            return b
        }
        // The outer tuple attribute claims more than the message holds.
        XCTAssertThrowsError(try decodeAll(mutated(20, [0xff, 0x0f]))) {
            guard case .badAttribute = $0 as? NetlinkDecodeError else { return XCTFail("\($0)") }
        }
        // An attribute shorter than its own header.
        XCTAssertThrowsError(try decodeAll(mutated(24, [2, 0]))) {
            guard case .badAttribute = $0 as? NetlinkDecodeError else { return XCTFail("\($0)") }
        }
        // An IPv4 address attribute of 3 bytes, its padding kept.
        XCTAssertThrowsError(try decodeAll(mutated(28, [7, 0]))) {
            guard case .badAttributeSize = $0 as? NetlinkDecodeError else { return XCTFail("\($0)") }
        }
        // A message shorter than its nfgenmsg.
        XCTAssertThrowsError(try decodeAll([18, 0, 0, 0, 0, 1, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0])) {
            guard case .shortMessage = $0 as? NetlinkDecodeError else { return XCTFail("\($0)") }
        }
        // A family that is neither AF_INET nor AF_INET6.
        XCTAssertThrowsError(try decodeAll(mutated(16, [7]))) {
            XCTAssertEqual($0 as? NetlinkDecodeError, .unknownFamily(offset: 0, family: 7))
        }
        // An IPv6 address in an AF_INET entry.
        XCTAssertThrowsError(try decodeAll(mutated(30, [3]))) {
            guard case .badAttributeSize = $0 as? NetlinkDecodeError else { return XCTFail("\($0)") }
        }
    }

    func testEntriesMissingWhatTheKernelAlwaysSendsAreRejected() {
        var payload: [UInt8] = [2, 0, 0, 0]
        NetlinkReplyEncoder.attribute(&payload, ConntrackDecoder.Attribute.status, [0, 0, 0, 0x10])
        var encoder = NetlinkReplyEncoder()
        encoder.appendMessage(type: 0x100, payload: payload)
        XCTAssertThrowsError(try decodeAll(encoder.bytes)) {
            XCTAssertEqual($0 as? NetlinkDecodeError, .missingAttribute(offset: 0, name: "CTA_TUPLE_ORIG"))
        }
    }

    func testRandomBytesNeverCrash() {
        var generator = SystemRandomNumberGenerator()
        var encoder = NetlinkReplyEncoder()
        for _ in 0..<4 { encoder.append(natTCP); encoder.append(plainUDP6) }
        let seed = encoder.bytes
        for _ in 0..<3000 {
            var bytes = seed
            for _ in 0..<Int.random(in: 1...6, using: &generator) {
                bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            }
            if Bool.random(using: &generator) { bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &generator))) }
            _ = try? decodeAll(bytes)
        }
        for _ in 0..<500 {
            let bytes = (0..<Int.random(in: 0...256, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            _ = try? decodeAll(bytes)
        }
    }
}

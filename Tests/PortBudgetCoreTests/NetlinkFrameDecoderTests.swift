import XCTest
@testable import PortBudgetCore
import PortBudgetTestSupport

/// The framing every netlink answer goes through, whatever its payload:
/// each of netlink's own messages and each malformed frame, once here
/// rather than per decoder.
final class NetlinkFrameDecoderTests: XCTestCase {
    /// A message type of no protocol's: the framing must hand it on untouched.
    let dataType: UInt16 = 0x30

    struct Seen: Equatable {
        var type: UInt16
        var offset: Int
        var payload: [UInt8]
    }

    func decodeAll(_ bytes: [UInt8], sequence: UInt32? = nil, portID: UInt32? = nil) throws
        -> ([Seen], NetlinkFrameDecoder.Progress)
    {
        var seen: [Seen] = []
        let progress = try bytes.withUnsafeBytes { raw in
            try NetlinkFrameDecoder.decode(raw, sequence: sequence, portID: portID) { message in
                let payload = Array(message.bytes[message.payloadOffset..<message.end])
                seen.append(Seen(type: message.type, offset: message.offset, payload: payload))
            }
        }
        return (seen, progress)
    }

    func testDoneClosesTheAnswerAndEveryOtherMessageIsHandedOn() throws {
        var encoder = NetlinkReplyEncoder()
        encoder.appendMessage(type: dataType, payload: [1, 2, 3, 4])
        encoder.appendMessage(type: NetlinkFrameDecoder.noopType, payload: [])
        encoder.appendMessage(type: 99, payload: [5])
        encoder.appendDone()
        encoder.appendMessage(type: dataType, payload: [6, 6, 6, 6])  // after DONE: not this answer's
        let (seen, progress) = try decodeAll(encoder.bytes)
        XCTAssertEqual(seen, [Seen(type: dataType, offset: 0, payload: [1, 2, 3, 4]), Seen(type: 99, offset: 36, payload: [5])])
        XCTAssertEqual(progress, .done)
    }

    /// A message's fields as the header says, and the next message found
    /// after the padding that aligns it to 4 bytes.
    func testMessageFieldsAndAlignment() throws {
        var encoder = NetlinkReplyEncoder(sequence: 0x0102_0304, portID: 4242)
        encoder.appendMessage(type: dataType, payload: [9, 9, 9, 9, 9], flags: 0x22)
        encoder.appendMessage(type: dataType, payload: [])
        var fields: [[Int]] = []
        _ = try encoder.bytes.withUnsafeBytes { raw in
            try NetlinkFrameDecoder.decode(raw) { m in
                fields.append([Int(m.type), Int(m.flags), Int(m.sequence), Int(m.portID), m.offset, m.length,
                               m.payloadOffset, m.payloadLength, m.end])
            }
        }
        XCTAssertEqual(fields, [[0x30, 0x22, 0x0102_0304, 4242, 0, 21, 16, 5, 21],
                                [0x30, 2, 0x0102_0304, 4242, 24, 16, 40, 0, 40]])
    }

    func testAMultiPartDumpSpansReceivesUntilDone() throws {
        var first = NetlinkReplyEncoder(sequence: 7)
        first.appendMessage(type: dataType, payload: [1, 0, 0, 0])
        first.appendMessage(type: dataType, payload: [2, 0, 0, 0])
        var last = NetlinkReplyEncoder(sequence: 7)
        last.appendMessage(type: dataType, payload: [3, 0, 0, 0])
        last.appendDone()
        let (early, more) = try decodeAll(first.bytes, sequence: 7)
        XCTAssertEqual(early.map(\.payload), [[1, 0, 0, 0], [2, 0, 0, 0]])
        XCTAssertEqual(more, .more)
        XCTAssertEqual(try decodeAll([], sequence: 7).1, .more)
        let (rest, done) = try decodeAll(last.bytes, sequence: 7)
        XCTAssertEqual(rest.map(\.payload), [[3, 0, 0, 0]])
        XCTAssertEqual(done, .done)
    }

    func testKernelErrorsSurfaceWithErrno() throws {
        var error = NetlinkReplyEncoder()
        error.appendError(-2)
        XCTAssertThrowsError(try decodeAll(error.bytes)) {
            XCTAssertEqual($0 as? NetlinkDecodeError, .kernelError(errno: 2))
        }
        var denied = NetlinkReplyEncoder()
        denied.appendError(-1)  // EPERM: no CAP_NET_ADMIN
        XCTAssertThrowsError(try decodeAll(denied.bytes)) {
            XCTAssertEqual($0 as? NetlinkDecodeError, .kernelError(errno: 1))
        }
        // A dump that failed part-way: what came before DONE was handed on first.
        for code: Int32 in [-16, -4] {
            var failedDump = NetlinkReplyEncoder()
            failedDump.appendMessage(type: dataType, payload: [1, 0, 0, 0])
            failedDump.appendDone(error: code)
            var seen = 0
            XCTAssertThrowsError(try failedDump.bytes.withUnsafeBytes { raw in
                try NetlinkFrameDecoder.decode(raw) { _ in seen += 1 }
            }) {
                XCTAssertEqual($0 as? NetlinkDecodeError, .kernelError(errno: -code))
            }
            XCTAssertEqual(seen, 1)
        }
        // Hostile codes: a positive one is still an errno, and Int32.min cannot be negated.
        var positive = NetlinkReplyEncoder()
        positive.appendError(5)
        XCTAssertThrowsError(try decodeAll(positive.bytes)) {
            XCTAssertEqual($0 as? NetlinkDecodeError, .kernelError(errno: 5))
        }
        var extreme = NetlinkReplyEncoder()
        extreme.appendError(.min)
        XCTAssertThrowsError(try decodeAll(extreme.bytes)) {
            XCTAssertEqual($0 as? NetlinkDecodeError, .kernelError(errno: .max))
        }
        var extremeDone = NetlinkReplyEncoder()
        extremeDone.appendDone(error: .min)
        XCTAssertThrowsError(try decodeAll(extremeDone.bytes)) {
            XCTAssertEqual($0 as? NetlinkDecodeError, .kernelError(errno: .max))
        }
    }

    /// An ACK (NLMSG_ERROR with code 0) closes a request sent with
    /// NLM_F_ACK; a DONE that carries no code (older kernels) closes a dump.
    func testAnAckOrABareDoneClosesTheAnswer() throws {
        var ack = NetlinkReplyEncoder()
        ack.appendError(0)
        ack.appendDone()
        XCTAssertEqual(try? decodeAll(ack.bytes).1, .done)
        var answered = NetlinkReplyEncoder()
        answered.appendMessage(type: dataType, payload: [1, 0, 0, 0], flags: 0)
        answered.appendError(0)
        answered.appendMessage(type: dataType, payload: [2, 0, 0, 0])
        let (seen, progress) = try decodeAll(answered.bytes)
        XCTAssertEqual(seen.map(\.payload), [[1, 0, 0, 0]])
        XCTAssertEqual(progress, .done)
        var bare = NetlinkReplyEncoder()
        bare.appendMessage(type: NetlinkFrameDecoder.doneType, payload: [])
        XCTAssertEqual(try decodeAll(bare.bytes).1, .done)
    }

    func testOverrunIsAnErrorWhateverItsSequence() {
        var encoder = NetlinkReplyEncoder(sequence: 6)
        encoder.appendMessage(type: dataType, payload: [1, 0, 0, 0])
        encoder.appendOverrun()
        encoder.appendDone()
        XCTAssertThrowsError(try decodeAll(encoder.bytes)) { XCTAssertEqual($0 as? NetlinkDecodeError, .overrun) }
        XCTAssertThrowsError(try decodeAll(encoder.bytes, sequence: 7)) { XCTAssertEqual($0 as? NetlinkDecodeError, .overrun) }
    }

    /// What an earlier request left unread on the socket, its DONE and its
    /// errors included, is passed over.
    func testStaleSequenceNumbersAreSkipped() throws {
        var stale = NetlinkReplyEncoder(sequence: 6)
        stale.appendMessage(type: dataType, payload: [6, 0, 0, 0])
        stale.appendError(-1)
        stale.appendDone(error: -4)
        var current = NetlinkReplyEncoder(sequence: 7)
        current.appendMessage(type: dataType, payload: [7, 0, 0, 0])
        current.appendDone()
        let (seen, progress) = try decodeAll(stale.bytes + current.bytes, sequence: 7)
        XCTAssertEqual(seen.map(\.payload), [[7, 0, 0, 0]])
        XCTAssertEqual(progress, .done)
        // Without a sequence to check, the earlier request's error is taken for this one's.
        XCTAssertThrowsError(try decodeAll(stale.bytes + current.bytes)) {
            XCTAssertEqual($0 as? NetlinkDecodeError, .kernelError(errno: 1))
        }
    }

    /// The kernel addresses answers to the requesting socket's port (0 is
    /// its own); a message of this request to any other port is an error.
    func testMessagesToAnotherPortAreRejected() throws {
        var ours = NetlinkReplyEncoder(sequence: 7, portID: 4242)
        ours.appendMessage(type: dataType, payload: [1, 0, 0, 0])
        ours.portID = 0
        ours.appendMessage(type: dataType, payload: [2, 0, 0, 0])
        ours.portID = 4242
        ours.appendDone()
        XCTAssertEqual(try decodeAll(ours.bytes, sequence: 7, portID: 4242).0.count, 2)

        var foreign = NetlinkReplyEncoder(sequence: 7, portID: 4242)
        foreign.appendMessage(type: dataType, payload: [1, 0, 0, 0])
        foreign.portID = 99
        foreign.appendMessage(type: dataType, payload: [2, 0, 0, 0])
        foreign.appendDone()
        XCTAssertThrowsError(try decodeAll(foreign.bytes, sequence: 7, portID: 4242)) {
            XCTAssertEqual($0 as? NetlinkDecodeError, .foreignPortID(offset: 20, portID: 99, expected: 4242))
        }
        // A stale message is skipped before its port is looked at; without a port to check, any is taken.
        XCTAssertEqual(try decodeAll(foreign.bytes, sequence: 8, portID: 4242).1, .more)
        XCTAssertEqual(try decodeAll(foreign.bytes, sequence: 7).0.count, 2)
    }

    func testHostileLengthsAreRejected() {
        var encoder = NetlinkReplyEncoder()
        encoder.appendMessage(type: dataType, payload: [1, 2, 3, 4])
        let good = encoder.bytes
        var tooLong = good
        tooLong[0] = 0xff; tooLong[1] = 0xff  // claims 65535 bytes
        XCTAssertThrowsError(try decodeAll(tooLong)) {
            XCTAssertEqual($0 as? NetlinkDecodeError, .badMessageLength(offset: 0, length: 65535, available: 20))
        }
        var tooShort = good
        tooShort[0] = 4  // below the header size: would loop forever if accepted
        XCTAssertThrowsError(try decodeAll(tooShort)) {
            XCTAssertEqual($0 as? NetlinkDecodeError, .badMessageLength(offset: 0, length: 4, available: 20))
        }
        // The second message's fault is named at its own offset.
        var second = good + good
        second[20] = 0
        XCTAssertThrowsError(try decodeAll(second)) {
            XCTAssertEqual($0 as? NetlinkDecodeError, .badMessageLength(offset: 20, length: 0, available: 20))
        }
        // Bytes after the last message too few for a header.
        XCTAssertThrowsError(try decodeAll(good + [1, 2, 3, 4, 5])) {
            XCTAssertEqual($0 as? NetlinkDecodeError, .badMessageLength(offset: 20, length: 5, available: 5))
        }
        // An NLMSG_ERROR too short to hold its code.
        var shortError = NetlinkReplyEncoder()
        shortError.appendMessage(type: NetlinkFrameDecoder.errorType, payload: [0xfe, 0xff])
        XCTAssertThrowsError(try decodeAll(shortError.bytes)) {
            XCTAssertEqual($0 as? NetlinkDecodeError, .shortMessage(offset: 0, length: 2, needs: 4))
        }
    }

    func testEveryTruncationIsAnErrorOrAWholeMessagePrefix() {
        var encoder = NetlinkReplyEncoder()
        encoder.appendMessage(type: dataType, payload: [1, 2, 3, 4])
        encoder.appendMessage(type: dataType, payload: [5, 6, 7, 8, 9, 10, 11, 12])
        encoder.appendDone()
        let full = encoder.bytes
        for cut in 0..<full.count {
            do {
                let (seen, progress) = try decodeAll(Array(full[0..<cut]))
                XCTAssertEqual(progress, .more, "cut \(cut)")
                XCTAssertTrue([0, 20, 44].contains(cut), "cut \(cut) decoded without error")
                XCTAssertEqual(seen.count, [0: 0, 20: 1, 44: 2][cut], "cut \(cut)")
            } catch {
                XCTAssertTrue(error is NetlinkDecodeError, "cut \(cut): \(error)")
            }
        }
    }

    func testRandomBytesNeverCrash() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let count = Int.random(in: 0..<400, using: &generator)
            var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if count >= 16 && Bool.random(using: &generator) {  // plausible lengths and control types reach deeper paths
                let length = UInt32.random(in: 16...UInt32(count), using: &generator)
                withUnsafeBytes(of: length) { for i in 0..<4 { bytes[i] = $0[i] } }
                bytes[4] = UInt8.random(in: 1...4, using: &generator)
                bytes[5] = 0
            }
            _ = try? decodeAll(bytes, sequence: Bool.random(using: &generator) ? 7 : nil,
                               portID: Bool.random(using: &generator) ? 42 : nil)
        }
    }
}

/// Splits received netlink bytes into messages and acts on the ones that
/// belong to netlink itself (linux/netlink.h): NLMSG_DONE closes a dump,
/// NLMSG_ERROR is an ACK or the kernel's errno, NLMSG_OVERRUN says part of
/// the answer was lost. Every other message of the request is handed on,
/// to a payload decoder (`InetDiagDecoder`, `ConntrackDecoder`). A dump's
/// answer spans many receives: each buffer ends in `.more` until the one
/// that holds DONE. Pure: it reads a buffer, never a socket, so tests feed
/// it synthetic, truncated and hostile bytes; every length is checked
/// before a byte behind it is read.
public enum NetlinkFrameDecoder {
    /// sizeof(struct nlmsghdr).
    public static let headerSize = 16
    public static let noopType: UInt16 = 1
    public static let errorType: UInt16 = 2
    public static let doneType: UInt16 = 3
    public static let overrunType: UInt16 = 4

    public enum Progress: Equatable, Sendable {
        /// The buffer ended before the request's answer did; more will come in the next receive.
        case more
        /// NLMSG_DONE or the ACK arrived: the answer is complete.
        case done
    }

    /// Walks every message in `buffer`, calling `body` for each that is not
    /// netlink's own. With `sequence`, messages of another sequence number
    /// are skipped: replies to an earlier request on the same socket that
    /// stopped before reading all of its answer. With `portID`, a message
    /// of this request addressed to another port (0 is the kernel's, and
    /// accepted) is an error. `.done` after NLMSG_DONE or an ACK (NLMSG_ERROR
    /// with code 0, which closes a request sent with NLM_F_ACK; a dump is
    /// closed by DONE and never acked).
    public static func decode(_ buffer: UnsafeRawBufferPointer, sequence: UInt32? = nil, portID: UInt32? = nil,
                              _ body: (NetlinkMessage) throws -> Void) throws -> Progress {
        var offset = 0
        while buffer.count - offset >= headerSize {
            let length = Int(buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
            guard length >= headerSize, length <= buffer.count - offset else {
                throw NetlinkDecodeError.badMessageLength(offset: offset, length: length, available: buffer.count - offset)
            }
            let message = NetlinkMessage(
                bytes: buffer, offset: offset, length: length,
                type: buffer.loadUnaligned(fromByteOffset: offset + 4, as: UInt16.self),
                flags: buffer.loadUnaligned(fromByteOffset: offset + 6, as: UInt16.self),
                sequence: buffer.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self),
                portID: buffer.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
            offset += (length + 3) & ~3  // NLMSG_ALIGN
            if message.type == overrunType { throw NetlinkDecodeError.overrun }
            if let sequence, message.sequence != sequence { continue }
            if let portID, message.portID != 0, message.portID != portID {
                throw NetlinkDecodeError.foreignPortID(offset: message.offset, portID: message.portID, expected: portID)
            }
            switch message.type {
            case doneType:
                // A dump that failed part-way reports the errno in DONE's payload.
                if message.payloadLength >= 4 {
                    let code = buffer.loadUnaligned(fromByteOffset: message.payloadOffset, as: Int32.self)
                    if code < 0 { throw NetlinkDecodeError.kernelError(errno: positiveErrno(code)) }
                }
                return .done
            case errorType:
                guard message.payloadLength >= 4 else {
                    throw NetlinkDecodeError.shortMessage(offset: message.offset, length: message.payloadLength, needs: 4)
                }
                let code = buffer.loadUnaligned(fromByteOffset: message.payloadOffset, as: Int32.self)
                if code != 0 { throw NetlinkDecodeError.kernelError(errno: positiveErrno(code)) }
                return .done
            case noopType:
                continue
            default:
                try body(message)
            }
        }
        if offset < buffer.count {
            throw NetlinkDecodeError.badMessageLength(offset: offset, length: buffer.count - offset,
                                                      available: buffer.count - offset)
        }
        return .more
    }

    /// The errno of an error code the kernel sends negated; hostile bytes may
    /// hold Int32.min, whose negation does not fit.
    static func positiveErrno(_ code: Int32) -> Int32 {
        Int32(clamping: code < 0 ? -Int64(code) : Int64(code))
    }
}

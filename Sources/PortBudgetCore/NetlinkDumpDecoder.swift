/// Decodes the bytes of a SOCK_DIAG dump reply: a stream of netlink
/// messages, each an `inet_diag_msg` (type SOCK_DIAG_BY_FAMILY, or
/// TCPDIAG_GETSOCK when the request used that older type), closed by
/// NLMSG_DONE or NLMSG_ERROR. Pure: it reads a buffer, never a socket, so
/// tests feed it synthetic, truncated and hostile bytes.
public enum NetlinkDumpDecoder {
    public static let headerSize = 16
    public static let inetDiagMsgSize = 72
    public static let sockDiagByFamily: UInt16 = 20
    /// The older request type: one TCP dump of every address family at once.
    /// The kernel answers it with records of the same type.
    public static let tcpDiagGetSock: UInt16 = 18
    static let nlmsgNoop: UInt16 = 1
    static let nlmsgError: UInt16 = 2
    static let nlmsgDone: UInt16 = 3
    static let nlmsgOverrun: UInt16 = 4
    /// `INET_DIAG_CGROUP_ID` (linux/inet_diag.h), a u64 attribute.
    public static let inetDiagCgroupID: UInt16 = 21

    public enum Progress: Equatable, Sendable {
        /// The buffer held only records; more will come in the next receive.
        case more
        /// NLMSG_DONE arrived: the dump is complete.
        case done
    }

    public enum DecodeError: Error, Equatable, Sendable, CustomStringConvertible {
        /// A message's length field is below the header size or runs past the buffer.
        case badMessageLength(offset: Int, length: Int, available: Int)
        /// A SOCK_DIAG_BY_FAMILY message too short for an inet_diag_msg.
        case shortRecord(offset: Int, length: Int)
        /// An address family other than AF_INET or AF_INET6.
        case unknownFamily(offset: Int, family: UInt8)
        /// The kernel answered the dump with an error (a negative errno).
        case kernelError(errno: Int32)
        case overrun

        public var description: String {
            switch self {
            case let .badMessageLength(offset, length, available):
                return "netlink message at byte \(offset) claims \(length) bytes, \(available) available"
            case let .shortRecord(offset, length):
                return "inet_diag_msg at byte \(offset) is \(length) bytes, needs \(NetlinkDumpDecoder.inetDiagMsgSize)"
            case let .unknownFamily(offset, family):
                return "inet_diag_msg at byte \(offset) has address family \(family)"
            case let .kernelError(errno):
                return "kernel answered the dump with errno \(errno)"
            case .overrun:
                return "netlink reported a buffer overrun"
            }
        }
    }

    /// Walks every message in `buffer`, calling `body` for each socket.
    /// Messages whose sequence number is not `sequence` are stale replies and are skipped.
    public static func decode(_ buffer: UnsafeRawBufferPointer, sequence: UInt32? = nil,
                              _ body: (InetDiagRecord) throws -> Void) throws -> Progress {
        var offset = 0
        while buffer.count - offset >= headerSize {
            let length = Int(buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
            let type = buffer.loadUnaligned(fromByteOffset: offset + 4, as: UInt16.self)
            let seq = buffer.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self)
            guard length >= headerSize, length <= buffer.count - offset else {
                throw DecodeError.badMessageLength(offset: offset, length: length, available: buffer.count - offset)
            }
            let payload = offset + headerSize
            let payloadLength = length - headerSize
            let stale = sequence.map { $0 != seq } ?? false
            switch type {
            case sockDiagByFamily where !stale, tcpDiagGetSock where !stale:
                guard payloadLength >= inetDiagMsgSize else {
                    throw DecodeError.shortRecord(offset: offset, length: payloadLength)
                }
                var socket = try record(buffer, at: payload)
                socket.cgroupID = cgroupID(buffer, from: payload + inetDiagMsgSize, to: payload + payloadLength)
                try body(socket)
            case nlmsgDone where !stale:
                // A dump that failed part-way reports the errno in DONE's payload.
                if payloadLength >= 4 {
                    let code = buffer.loadUnaligned(fromByteOffset: payload, as: Int32.self)
                    if code < 0 { throw DecodeError.kernelError(errno: -code) }
                }
                return .done
            case nlmsgError where !stale:
                guard payloadLength >= 4 else { throw DecodeError.shortRecord(offset: offset, length: payloadLength) }
                let code = buffer.loadUnaligned(fromByteOffset: payload, as: Int32.self)
                if code != 0 { throw DecodeError.kernelError(errno: code < 0 ? -code : code) }
            case nlmsgOverrun:
                throw DecodeError.overrun
            default:
                break  // NOOP, stale replies, and types this decoder does not know.
            }
            offset += (length + 3) & ~3  // NLMSG_ALIGN
        }
        if offset < buffer.count {
            throw DecodeError.badMessageLength(offset: offset, length: buffer.count - offset, available: buffer.count - offset)
        }
        return .more
    }

    /// `INET_DIAG_CGROUP_ID` among the attributes that follow the message, 0
    /// when absent. Attributes that overrun the message end the walk: a
    /// malformed tail costs the attribution, never the socket.
    static func cgroupID(_ p: UnsafeRawBufferPointer, from start: Int, to end: Int) -> UInt64 {
        var offset = start
        while end - offset >= 4 {
            let length = Int(p.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
            let type = p.loadUnaligned(fromByteOffset: offset + 2, as: UInt16.self) & 0x3fff  // less NLA_F_* flags
            guard length >= 4, length <= end - offset else { return 0 }
            if type == inetDiagCgroupID && length == 12 {
                return p.loadUnaligned(fromByteOffset: offset + 4, as: UInt64.self)
            }
            offset += (length + 3) & ~3  // NLA_ALIGN
        }
        return 0
    }

    /// Reads one `inet_diag_msg` at `base`.
    public static func record(_ p: UnsafeRawBufferPointer, at base: Int) throws -> InetDiagRecord {
        let rawFamily = p[base]
        guard let family = IPAddress.Family(rawValue: rawFamily) else {
            throw DecodeError.unknownFamily(offset: base - headerSize, family: rawFamily)
        }
        return InetDiagRecord(
            family: family,
            state: p[base + 1],
            timer: p[base + 2],
            localPort: UInt16(bigEndian: p.loadUnaligned(fromByteOffset: base + 4, as: UInt16.self)),
            remotePort: UInt16(bigEndian: p.loadUnaligned(fromByteOffset: base + 6, as: UInt16.self)),
            local: IPAddress(diagBytes: p, offset: base + 8, family: family),
            remote: IPAddress(diagBytes: p, offset: base + 24, family: family),
            interface: p.loadUnaligned(fromByteOffset: base + 40, as: UInt32.self),
            cookie: UInt64(p.loadUnaligned(fromByteOffset: base + 44, as: UInt32.self))
                | UInt64(p.loadUnaligned(fromByteOffset: base + 48, as: UInt32.self)) << 32,
            expiresMs: p.loadUnaligned(fromByteOffset: base + 52, as: UInt32.self),
            uid: p.loadUnaligned(fromByteOffset: base + 64, as: UInt32.self),
            inode: p.loadUnaligned(fromByteOffset: base + 68, as: UInt32.self))
    }
}

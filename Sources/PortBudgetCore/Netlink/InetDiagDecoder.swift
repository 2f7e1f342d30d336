/// Decodes the payloads of a SOCK_DIAG dump reply: each an `inet_diag_msg`
/// (type SOCK_DIAG_BY_FAMILY, or TCPDIAG_GETSOCK when the request used that
/// older type) and its attributes. The messages around them are
/// `NetlinkFrameDecoder`'s. Pure: it reads a buffer, never a socket, so
/// tests feed it synthetic, truncated and hostile bytes.
public enum InetDiagDecoder {
    public static let inetDiagMsgSize = 72
    public static let sockDiagByFamily: UInt16 = 20
    /// The older request type: one TCP dump of every address family at once.
    /// The kernel answers it with records of the same type.
    public static let tcpDiagGetSock: UInt16 = 18
    /// `INET_DIAG_CGROUP_ID` (linux/inet_diag.h), a u64 attribute.
    public static let inetDiagCgroupID: UInt16 = 21

    /// Walks every message in `buffer` (see `NetlinkFrameDecoder.decode`),
    /// calling `body` for each socket.
    public static func decode(_ buffer: UnsafeRawBufferPointer, sequence: UInt32? = nil, portID: UInt32? = nil,
                              _ body: (InetDiagRecord) throws -> Void) throws -> NetlinkFrameDecoder.Progress {
        try NetlinkFrameDecoder.decode(buffer, sequence: sequence, portID: portID) { message in
            if let socket = try record(in: message) { try body(socket) }
        }
    }

    /// The socket `message` reports; nil for a message of another type.
    public static func record(in message: NetlinkMessage) throws -> InetDiagRecord? {
        guard message.type == sockDiagByFamily || message.type == tcpDiagGetSock else { return nil }
        guard message.payloadLength >= inetDiagMsgSize else {
            throw NetlinkDecodeError.shortMessage(offset: message.offset, length: message.payloadLength,
                                                  needs: inetDiagMsgSize)
        }
        var socket = try record(message.bytes, at: message.payloadOffset)
        socket.cgroupID = cgroupID(message.bytes, from: message.payloadOffset + inetDiagMsgSize, to: message.end)
        return socket
    }

    /// `INET_DIAG_CGROUP_ID` among the attributes that follow the message, 0
    /// when absent. Attributes that overrun the message end the walk: a
    /// malformed tail costs the attribution, never the socket.
    static func cgroupID(_ p: UnsafeRawBufferPointer, from start: Int, to end: Int) -> UInt64 {
        var id: UInt64 = 0
        try? NetlinkAttributes.forEach(in: p, from: start, to: end) { type, at, length in
            if type == inetDiagCgroupID && length == 8 { id = p.loadUnaligned(fromByteOffset: at, as: UInt64.self) }
        }
        return id
    }

    /// Reads one `inet_diag_msg` at `base`.
    static func record(_ p: UnsafeRawBufferPointer, at base: Int) throws -> InetDiagRecord {
        let rawFamily = p[base]
        guard let family = IPAddress.Family(rawValue: rawFamily) else {
            throw NetlinkDecodeError.unknownFamily(offset: base - NetlinkFrameDecoder.headerSize, family: rawFamily)
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

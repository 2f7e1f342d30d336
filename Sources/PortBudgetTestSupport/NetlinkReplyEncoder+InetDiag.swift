import PortBudgetCore

extension NetlinkReplyEncoder {
    /// Appends one SOCK_DIAG_BY_FAMILY message for `record`, as `InetDiagDecoder` reads it.
    public mutating func append(_ record: InetDiagRecord) {
        var body = [UInt8](repeating: 0, count: InetDiagDecoder.inetDiagMsgSize)
        body[0] = record.family.rawValue
        body[1] = record.state
        body[2] = record.timer
        Self.put(&body, 4, record.localPort.bigEndian)
        Self.put(&body, 6, record.remotePort.bigEndian)
        Self.address(&body, 8, record.local, record.family)
        Self.address(&body, 24, record.remote, record.family)
        Self.put(&body, 40, record.interface)
        Self.put(&body, 44, UInt32(truncatingIfNeeded: record.cookie))
        Self.put(&body, 48, UInt32(truncatingIfNeeded: record.cookie >> 32))
        Self.put(&body, 52, record.expiresMs)
        Self.put(&body, 64, record.uid)
        Self.put(&body, 68, record.inode)
        if record.cgroupID != 0 {
            // As the kernel lays out a u64 attribute: an INET_DIAG_PAD (type 20) first
            // when needed for 8-byte alignment, then the 12-byte attribute.
            body += [4, 0, 20, 0]
            Self.attribute(&body, InetDiagDecoder.inetDiagCgroupID, Self.le(record.cgroupID))
        }
        appendMessage(type: InetDiagDecoder.sockDiagByFamily, payload: body)
    }

    private static func put<T: FixedWidthInteger>(_ buffer: inout [UInt8], _ offset: Int, _ value: T) {
        withUnsafeBytes(of: value) { raw in
            for (i, byte) in raw.enumerated() { buffer[offset + i] = byte }
        }
    }

    private static func address(_ buffer: inout [UInt8], _ offset: Int, _ address: IPAddress,
                                _ family: IPAddress.Family) {
        if family == .v4 && address.family == .v4 {
            put(&buffer, offset, UInt32(truncatingIfNeeded: address.low).bigEndian)
        } else if address.family == .v4 {
            // An IPv4 peer of an IPv6 socket is reported mapped: ::ffff:a.b.c.d.
            put(&buffer, offset + 8, (UInt64(0xffff) << 32 | address.low).bigEndian)
        } else {
            put(&buffer, offset, address.high.bigEndian)
            put(&buffer, offset + 8, address.low.bigEndian)
        }
    }
}

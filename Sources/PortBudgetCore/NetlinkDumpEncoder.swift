/// The inverse of `NetlinkDumpDecoder`: lays out SOCK_DIAG reply messages
/// byte for byte as the kernel does. Tests and micro-benchmarks use it to
/// make dump buffers without a kernel.
public struct NetlinkDumpEncoder {
    public private(set) var bytes: [UInt8] = []
    public var sequence: UInt32

    public init(sequence: UInt32 = 1) { self.sequence = sequence }

    /// Appends one SOCK_DIAG_BY_FAMILY message for `record`.
    public mutating func append(_ record: InetDiagRecord) {
        var body = [UInt8](repeating: 0, count: NetlinkDumpDecoder.inetDiagMsgSize)
        body[0] = record.family.rawValue
        body[1] = record.state
        body[2] = record.timer
        put(&body, 4, record.localPort.bigEndian)
        put(&body, 6, record.remotePort.bigEndian)
        address(&body, 8, record.local, record.family)
        address(&body, 24, record.remote, record.family)
        put(&body, 40, record.interface)
        put(&body, 44, UInt32(truncatingIfNeeded: record.cookie))
        put(&body, 48, UInt32(truncatingIfNeeded: record.cookie >> 32))
        put(&body, 52, record.expiresMs)
        put(&body, 64, record.uid)
        put(&body, 68, record.inode)
        if record.cgroupID != 0 {
            // As the kernel lays out a u64 attribute: an INET_DIAG_PAD (type 20) first
            // when needed for 8-byte alignment, then the 12-byte attribute.
            body += [4, 0, 20, 0]
            var attribute = [UInt8](repeating: 0, count: 12)
            put(&attribute, 0, UInt16(12))
            put(&attribute, 2, NetlinkDumpDecoder.inetDiagCgroupID)
            put(&attribute, 4, record.cgroupID)
            body += attribute
        }
        appendMessage(type: NetlinkDumpDecoder.sockDiagByFamily, payload: body)
    }

    /// Appends NLMSG_DONE carrying `error` (0, or a negative errno).
    public mutating func appendDone(error: Int32 = 0) {
        var payload = [UInt8](repeating: 0, count: 4)
        put(&payload, 0, error)
        appendMessage(type: 3, payload: payload)
    }

    /// Appends NLMSG_ERROR carrying `error` (a negative errno; 0 is an ACK).
    public mutating func appendError(_ error: Int32) {
        var payload = [UInt8](repeating: 0, count: 20)
        put(&payload, 0, error)
        appendMessage(type: 2, payload: payload)
    }

    public mutating func appendMessage(type: UInt16, payload: [UInt8], flags: UInt16 = 2) {
        var header = [UInt8](repeating: 0, count: NetlinkDumpDecoder.headerSize)
        put(&header, 0, UInt32(NetlinkDumpDecoder.headerSize + payload.count))
        put(&header, 4, type)
        put(&header, 6, flags)
        put(&header, 8, sequence)
        bytes += header
        bytes += payload
        while bytes.count % 4 != 0 { bytes.append(0) }
    }

    private func put<T: FixedWidthInteger>(_ buffer: inout [UInt8], _ offset: Int, _ value: T) {
        withUnsafeBytes(of: value) { raw in
            for (i, byte) in raw.enumerated() { buffer[offset + i] = byte }
        }
    }

    private func address(_ buffer: inout [UInt8], _ offset: Int, _ address: IPAddress, _ family: IPAddress.Family) {
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

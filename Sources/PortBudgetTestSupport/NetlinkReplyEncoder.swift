import PortBudgetCore

/// The inverse of the netlink decoders: lays out replies byte for byte as
/// the kernel does (headers in host order, each message and attribute
/// padded to 4 bytes). Tests and micro-benchmarks use it to make receive
/// buffers without a kernel; the payloads of each protocol are in
/// `NetlinkReplyEncoder+InetDiag.swift` and `NetlinkReplyEncoder+Conntrack.swift`.
public struct NetlinkReplyEncoder {
    public private(set) var bytes: [UInt8] = []
    /// The sequence number and port id the next messages carry.
    public var sequence: UInt32
    public var portID: UInt32

    public init(sequence: UInt32 = 1, portID: UInt32 = 0) {
        self.sequence = sequence
        self.portID = portID
    }

    /// Appends NLMSG_DONE carrying `error` (0, or a negative errno).
    public mutating func appendDone(error: Int32 = 0) {
        appendMessage(type: NetlinkFrameDecoder.doneType, payload: Self.le(error))
    }

    /// Appends NLMSG_ERROR carrying `error` (a negative errno; 0 is an ACK)
    /// and, as the kernel does, the header of the request it answers.
    public mutating func appendError(_ error: Int32) {
        appendMessage(type: NetlinkFrameDecoder.errorType, payload: Self.le(error) + [UInt8](repeating: 0, count: 16))
    }

    /// Appends NLMSG_OVERRUN.
    public mutating func appendOverrun() {
        appendMessage(type: NetlinkFrameDecoder.overrunType, payload: [])
    }

    /// Appends one message; `flags` defaults to NLM_F_MULTI, as in a dump.
    public mutating func appendMessage(type: UInt16, payload: [UInt8], flags: UInt16 = 2) {
        bytes += Self.le(UInt32(NetlinkFrameDecoder.headerSize + payload.count))
        bytes += Self.le(type)
        bytes += Self.le(flags)
        bytes += Self.le(sequence)
        bytes += Self.le(portID)
        bytes += payload
        while bytes.count % 4 != 0 { bytes.append(0) }
    }

    /// Appends one attribute (header, payload, padding to 4 bytes).
    public static func attribute(_ buffer: inout [UInt8], _ type: UInt16, _ payload: [UInt8]) {
        buffer += le(UInt16(4 + payload.count))
        buffer += le(type)
        buffer += payload
        while buffer.count % 4 != 0 { buffer.append(0) }
    }

    static func be<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }
    static func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
}

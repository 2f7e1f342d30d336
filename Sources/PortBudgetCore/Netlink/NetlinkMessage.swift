/// One netlink message inside a received buffer, as `NetlinkFrameDecoder`
/// found it: its header's fields (struct nlmsghdr) and where its payload
/// lies. It points into the buffer, so it is valid only during the call
/// it is handed to; offsets count from the buffer's start, so errors name
/// the byte a reader can find in a dump.
public struct NetlinkMessage {
    /// The whole received buffer the message lies in.
    public let bytes: UnsafeRawBufferPointer
    /// Where the message's header starts in `bytes`.
    public let offset: Int
    /// `nlmsg_len`: header and payload, without the trailing alignment.
    public let length: Int
    public let type: UInt16
    public let flags: UInt16
    public let sequence: UInt32
    public let portID: UInt32

    public var payloadOffset: Int { offset + NetlinkFrameDecoder.headerSize }
    public var payloadLength: Int { length - NetlinkFrameDecoder.headerSize }
    /// One past the message's last byte.
    public var end: Int { offset + length }
}

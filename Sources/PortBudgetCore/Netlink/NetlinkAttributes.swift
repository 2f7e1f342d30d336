/// The attributes (struct nlattr: u16 length, u16 type, payload padded to
/// 4 bytes) that follow a message's fixed part, or nest inside another
/// attribute.
enum NetlinkAttributes {
    static let headerSize = 4
    /// The type bits; the top two are NLA_F_NESTED and NLA_F_NET_BYTEORDER.
    static let typeMask: UInt16 = 0x3fff

    /// Calls `body(type, payloadOffset, payloadLength)` for each attribute
    /// in [start, end), after checking its length against the container.
    @inline(__always)
    static func forEach(in p: UnsafeRawBufferPointer, from start: Int, to end: Int,
                        _ body: (UInt16, Int, Int) throws -> Void) throws {
        var at = start
        while end - at >= headerSize {
            let length = Int(p.loadUnaligned(fromByteOffset: at, as: UInt16.self))
            guard length >= headerSize, length <= end - at else {
                throw NetlinkDecodeError.badAttribute(offset: at, length: length, available: end - at)
            }
            let type = p.loadUnaligned(fromByteOffset: at + 2, as: UInt16.self) & typeMask
            try body(type, at + headerSize, length - headerSize)
            at += (length + 3) & ~3  // NLA_ALIGN; may step past `end` by the final padding
        }
    }
}

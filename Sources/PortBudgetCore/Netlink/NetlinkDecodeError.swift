/// What was wrong with a netlink reply: its framing, an attribute, a
/// payload too short or missing a part the kernel always sends, or the
/// kernel's own answer (an errno, a lost message). Offsets are bytes from
/// the start of the received buffer.
public enum NetlinkDecodeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A message's length field is below the header size or runs past the buffer.
    case badMessageLength(offset: Int, length: Int, available: Int)
    /// A message whose payload is shorter than the fixed part its type needs.
    case shortMessage(offset: Int, length: Int, needs: Int)
    /// An attribute whose length is below its header or runs past its container.
    case badAttribute(offset: Int, length: Int, available: Int)
    /// An attribute of the wrong size for its type (an address, a port, a counter).
    case badAttributeSize(offset: Int, type: UInt16, length: Int)
    /// A message without an attribute the kernel always sends.
    case missingAttribute(offset: Int, name: String)
    /// An address family other than AF_INET or AF_INET6.
    case unknownFamily(offset: Int, family: UInt8)
    /// A message of this request addressed to another netlink port.
    case foreignPortID(offset: Int, portID: UInt32, expected: UInt32)
    /// The kernel answered the request with an error (its errno, positive).
    case kernelError(errno: Int32)
    /// NLMSG_OVERRUN: the kernel lost part of the answer.
    case overrun

    public var description: String {
        switch self {
        case let .badMessageLength(offset, length, available):
            return "netlink message at byte \(offset) claims \(length) bytes, \(available) available"
        case let .shortMessage(offset, length, needs):
            return "netlink message at byte \(offset) has \(length) payload bytes, its type needs \(needs)"
        case let .badAttribute(offset, length, available):
            return "netlink attribute at byte \(offset) claims \(length) bytes, \(available) available"
        case let .badAttributeSize(offset, type, length):
            return "netlink attribute \(type) at byte \(offset) has \(length) payload bytes"
        case let .missingAttribute(offset, name):
            return "netlink message at byte \(offset) has no \(name)"
        case let .unknownFamily(offset, family):
            return "netlink message at byte \(offset) has address family \(family)"
        case let .foreignPortID(offset, portID, expected):
            return "netlink message at byte \(offset) is addressed to port \(portID), not this socket's \(expected)"
        case let .kernelError(errno):
            return "kernel answered with errno \(errno)"
        case .overrun:
            return "netlink reported a buffer overrun"
        }
    }
}

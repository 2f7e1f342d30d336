import Glibc

/// A SOCK_DIAG call failed, with the call's name and errno.
public struct SockDiagError: NetlinkCallFailure, CustomStringConvertible, Sendable {
    public let call: String
    public let errno: Int32

    public init(call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    public var description: String { "\(call): \(String(cString: strerror(errno))) (errno \(errno))" }
}

import Glibc

/// A ctnetlink call failed, with what was asked and errno. The description
/// is one line a user can act on.
public struct ConntrackError: NetlinkCallFailure, CustomStringConvertible, Sendable {
    public let call: String
    public let errno: Int32
    /// Set when the failure is said better without errno (conntrack not loaded).
    let plain: Bool

    public init(call: String, errno: Int32) {
        self.call = call
        self.errno = errno
        plain = false
    }

    /// A failure described by `message` alone.
    public init(unavailable message: String) {
        call = message
        errno = ENOENT
        plain = true
    }

    public var description: String {
        if plain { return call }
        let hint: String
        switch errno {
        case EPERM, EACCES: hint = " (reading the conntrack table needs CAP_NET_ADMIN)"
        case ENOENT, EOPNOTSUPP, EPROTONOSUPPORT, EAFNOSUPPORT: hint = " (conntrack netlink support, nf_conntrack_netlink, is not loaded)"
        default: hint = ""
        }
        return "\(call): \(String(cString: strerror(errno))) (errno \(errno))\(hint)"
    }
}

/// The error a netlink user throws when a call fails: what was called and
/// its errno. `NetlinkSocket` builds one of its user's type, so each caller
/// keeps catching the error it knows (`SockDiagError`, `ConntrackError`).
public protocol NetlinkCallFailure: Error {
    init(call: String, errno: Int32)
}

import Glibc

/// A failed socket call: the call and the errno name (EADDRNOTAVAIL, …).
public struct SocketFailure: Error, Sendable, CustomStringConvertible {
    public let call: String
    public let errno: Int32

    public init(call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    public var errnoName: String { Self.name(errno) }
    public var description: String { "\(call): \(errnoName)" }

    static func name(_ e: Int32) -> String {
        switch e {
        case EADDRNOTAVAIL: return "EADDRNOTAVAIL"
        case EADDRINUSE: return "EADDRINUSE"
        case EAGAIN: return "EAGAIN"
        case EMFILE: return "EMFILE"
        case ENFILE: return "ENFILE"
        case ECONNREFUSED: return "ECONNREFUSED"
        case ETIMEDOUT: return "ETIMEDOUT"
        case EINVAL: return "EINVAL"
        case ENOBUFS: return "ENOBUFS"
        default: return "errno \(e)"
        }
    }
}

/// Makes real sockets the way the workloads portbudget watches do: plain
/// connect(), bind-before-connect, listeners, UDP associations.
public enum SocketFactory {
    /// Raises the soft descriptor limit to the hard one: a generator holds thousands.
    public static func raiseDescriptorLimit() {
        var limit = rlimit()
        if getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        }
    }

    static func check(_ result: Int32, _ call: String, closing fd: Int32 = -1) throws {
        if result < 0 {
            let e = errno
            if fd >= 0 { close(fd) }
            throw SocketFailure(call: call, errno: e)
        }
    }

    static func newSocket(_ family: Int32, _ type: Int32) throws -> Int32 {
        let fd = socket(family, type | Int32(SOCK_CLOEXEC.rawValue), 0)
        try check(fd, "socket")
        return fd
    }

    static func setFlag(_ fd: Int32, _ level: Int32, _ option: Int32) {
        var one: Int32 = 1
        _ = setsockopt(fd, level, option, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// A TCP listener with SO_REUSEADDR.
    public static func listen(at address: SocketAddress, backlog: Int32) throws -> Int32 {
        let fd = try newSocket(address.family, Int32(SOCK_STREAM.rawValue))
        setFlag(fd, SOL_SOCKET, SO_REUSEADDR)
        try check(address.withSockaddr { bind(fd, $0, $1) }, "bind \(address)", closing: fd)
        try check(Glibc.listen(fd, backlog), "listen \(address)", closing: fd)
        return fd
    }

    /// A TCP socket bound to `address` and never connected (a bound-only port).
    public static func bound(at address: SocketAddress, reuseAddress: Bool = false) throws -> Int32 {
        let fd = try newSocket(address.family, Int32(SOCK_STREAM.rawValue))
        if reuseAddress { setFlag(fd, SOL_SOCKET, SO_REUSEADDR) }
        try check(address.withSockaddr { bind(fd, $0, $1) }, "bind \(address)", closing: fd)
        return fd
    }

    /// A connected TCP socket. `source`, when given, is bound first (port 0
    /// for bind-before-connect, or an explicit port). Waits at most
    /// `timeoutMs` for the handshake.
    public static func connectTCP(to destination: SocketAddress, from source: SocketAddress? = nil,
                                  reuseAddress: Bool = false, timeoutMs: Int32 = 3000) throws -> Int32 {
        let fd = try newSocket(destination.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue))
        if reuseAddress { setFlag(fd, SOL_SOCKET, SO_REUSEADDR) }
        if let source {
            try check(source.withSockaddr { bind(fd, $0, $1) }, "bind \(source)", closing: fd)
        }
        let rc = destination.withSockaddr { Glibc.connect(fd, $0, $1) }
        if rc < 0 {
            let e = errno
            guard e == EINPROGRESS else { close(fd); throw SocketFailure(call: "connect \(destination)", errno: e) }
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let ready = poll(&pfd, 1, timeoutMs)
            if ready <= 0 { close(fd); throw SocketFailure(call: "connect \(destination)", errno: ETIMEDOUT) }
            var soError: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length)
            if soError != 0 { close(fd); throw SocketFailure(call: "connect \(destination)", errno: soError) }
        }
        return fd
    }

    /// A UDP socket: bound to `source` (port 0 autobinds) and/or connected to
    /// `destination` (which autobinds an unbound socket).
    public static func udp(family: Int32, bindTo source: SocketAddress?, connectTo destination: SocketAddress?) throws -> Int32 {
        let fd = try newSocket(family, Int32(SOCK_DGRAM.rawValue))
        if let source {
            try check(source.withSockaddr { bind(fd, $0, $1) }, "bind \(source)", closing: fd)
        }
        if let destination {
            try check(destination.withSockaddr { Glibc.connect(fd, $0, $1) }, "connect \(destination)", closing: fd)
        }
        return fd
    }

    /// Closes with a FIN (the socket then passes through FIN_WAIT/TIME_WAIT).
    public static func closeGracefully(_ fd: Int32) { close(fd) }
}

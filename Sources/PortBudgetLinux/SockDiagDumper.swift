import CMNL
import Glibc
import PortBudgetCore

/// A SOCK_DIAG call failed, with the call's name and errno.
public struct SockDiagError: Error, CustomStringConvertible, Sendable {
    public let call: String
    public let errno: Int32

    public var description: String { "\(call): \(String(cString: strerror(errno))) (errno \(errno))" }
}

/// Dumps sockets of the caller's network namespace through NETLINK_SOCK_DIAG
/// with libmnl. One instance owns one netlink socket and reuses it for every
/// dump; each dump reads through one receive buffer, and records are handed
/// to the caller as they are decoded and never stored.
public final class SockDiagDumper {
    public enum Proto: UInt8, Sendable {
        case tcp = 6, udp = 17, udplite = 136
    }

    private let socket: OpaquePointer
    private var sequence: UInt32 = 0

    /// The receive buffer: the kernel fills up to 32 KiB per message batch;
    /// twice that keeps one recv() per batch with room to spare.
    public static let receiveBufferSize = 64 * 1024

    public init() throws {
        guard let nl = pb_open_netlink(NETLINK_SOCK_DIAG) else {
            throw SockDiagError(call: "socket(AF_NETLINK, NETLINK_SOCK_DIAG)", errno: pb_errno())
        }
        socket = nl
        // A larger socket buffer lets the kernel queue the next batch while we decode.
        var size: Int32 = 1 << 20
        _ = setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        sequence = UInt32(truncatingIfNeeded: time(nil))
    }

    deinit {
        mnl_socket_close(socket)
    }

    /// Dumps every socket of `family` × `proto` in `states` that passes
    /// `filter` (evaluated in the kernel), calling `body` for each.
    public func dump(family: IPAddress.Family, proto: Proto, states: UInt32 = TCPState.allStates,
                     filter: InetDiagFilter?, _ body: (InetDiagRecord) throws -> Void) throws {
        try request(filter: filter, what: "SOCK_DIAG_BY_FAMILY dump (family \(family.rawValue), protocol \(proto.rawValue))",
                    body) { buffer, seq, bytecode, bytecodeLength in
            Int(pb_build_inet_diag_dump(buffer.baseAddress, buffer.count, family.rawValue, proto.rawValue, states, seq,
                                        bytecode, bytecodeLength))
        }
    }

    /// Dumps the TCP sockets of both address families in one pass over the
    /// kernel's tables, with the older TCPDIAG_GETSOCK request (an
    /// `inet_diag_req`, which the kernel runs as family AF_UNSPEC): half the
    /// table walks of one SOCK_DIAG_BY_FAMILY dump per family.
    public func dumpTCPAllFamilies(states: UInt32 = TCPState.allStates, filter: InetDiagFilter?,
                                   _ body: (InetDiagRecord) throws -> Void) throws {
        try request(filter: filter, what: "TCPDIAG_GETSOCK dump", body) { buffer, seq, bytecode, bytecodeLength in
            Int(pb_build_tcpdiag_dump(buffer.baseAddress, buffer.count, states, seq, bytecode, bytecodeLength))
        }
    }

    /// Builds a request with the next sequence number and `filter`'s
    /// bytecode, sends it, and decodes the replies.
    private func request(filter: InetDiagFilter?, what: @autoclosure () -> String,
                         _ body: (InetDiagRecord) throws -> Void,
                         build: (UnsafeMutableRawBufferPointer, UInt32, UnsafeRawPointer?, UInt16) -> Int) throws {
        sequence &+= 1
        let seq = sequence
        let code = filter?.bytecode ?? []
        var request = [UInt8](repeating: 0, count: 256 + code.count)
        let length = request.withUnsafeMutableBytes { req in
            code.withUnsafeBytes { bc in build(req, seq, bc.baseAddress, UInt16(code.count)) }
        }
        guard length > 0 else { throw SockDiagError(call: "build \(what())", errno: EINVAL) }
        let sent = request.withUnsafeBytes { mnl_socket_sendto(socket, $0.baseAddress, length) }
        guard sent >= 0 else { throw SockDiagError(call: "sendto(NETLINK_SOCK_DIAG)", errno: pb_errno()) }
        try receive(sequence: seq, what: what(), body)
    }

    /// Receives and decodes one dump's replies until NLMSG_DONE.
    private func receive(sequence seq: UInt32, what: @autoclosure () -> String,
                         _ body: (InetDiagRecord) throws -> Void) throws {
        // Allocated per dump, not per dumper: `--all-namespaces` keeps a
        // dumper per namespace, and only one dump runs at a time.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.receiveBufferSize, alignment: 8)
        defer { buffer.deallocate() }
        while true {
            let received = mnl_socket_recvfrom(socket, buffer.baseAddress, buffer.count)
            if received < 0 {
                let err = pb_errno()
                if err == EINTR { continue }
                throw SockDiagError(call: "recvmsg(NETLINK_SOCK_DIAG)", errno: err)
            }
            if received == 0 { throw SockDiagError(call: "recvmsg(NETLINK_SOCK_DIAG) returned no data", errno: EIO) }
            let progress: NetlinkDumpDecoder.Progress
            do {
                progress = try NetlinkDumpDecoder.decode(UnsafeRawBufferPointer(rebasing: buffer[0..<received]),
                                                         sequence: seq, body)
            } catch NetlinkDumpDecoder.DecodeError.kernelError(let errno) {
                throw SockDiagError(call: what(), errno: errno)
            }
            if progress == .done { return }
        }
    }
}

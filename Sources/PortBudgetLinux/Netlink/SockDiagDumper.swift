import CMNL
import Glibc
import PortBudgetCore

/// Dumps sockets of the caller's network namespace through NETLINK_SOCK_DIAG
/// with libmnl. One instance owns one netlink socket and reuses it for every
/// dump; each dump reads through one receive buffer, and records are handed
/// to the caller as they are decoded and never stored.
public final class SockDiagDumper {
    public enum Proto: UInt8, Sendable {
        case tcp = 6, udp = 17, udplite = 136
    }

    private let socket: NetlinkSocket<SockDiagError>
    /// Dump requests made through this socket: each is a walk of the
    /// kernel's tables, the cost the census tries to leave out.
    public private(set) var requestsMade = 0

    /// Room for a request's headers; the filter's bytecode comes on top.
    static let requestHeadroom = 256

    public init() throws {
        socket = try NetlinkSocket(bus: NETLINK_SOCK_DIAG, named: "NETLINK_SOCK_DIAG")
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

    /// Sends the request `build` makes with `filter`'s bytecode and decodes
    /// the sockets of the answer.
    private func request(filter: InetDiagFilter?, what: @autoclosure () -> String,
                         _ body: (InetDiagRecord) throws -> Void,
                         build: (UnsafeMutableRawBufferPointer, UInt32, UnsafeRawPointer?, UInt16) -> Int) throws {
        let code = filter?.bytecode ?? []
        requestsMade += 1
        try socket.request(what(), capacity: Self.requestHeadroom + code.count, build: { buffer, seq in
            code.withUnsafeBytes { build(buffer, seq, $0.baseAddress, UInt16(code.count)) }
        }) { message in
            if let record = try InetDiagDecoder.record(in: message) { try body(record) }
        }
    }
}

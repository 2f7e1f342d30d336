import CMNL
import Glibc

/// The floor: the cheapest possible census. One libmnl socket dumps TCP and
/// UDP over IPv4 and IPv6 in every state, with no kernel-side filter, and
/// only counts the messages (libmnl's own `mnl_cb_run` walks them). Nothing
/// is decoded or folded, so no real census can do less work in user space;
/// the only thing it can do is ask the kernel for less.
enum FloorDump {
    /// Messages per dump: tcp4, tcp6, udp4, udp6.
    struct Counts {
        var perDump: [Int] = []
        var total: Int { perDump.reduce(0, +) }
    }

    /// The buffer size libmnl recommends for dumps (MNL_SOCKET_DUMP_SIZE in
    /// newer libmnl): the kernel batches up to 32 KiB per recvmsg.
    static let bufferSize = 32 * 1024

    static func run() throws -> Counts {
        guard let nl = pb_open_netlink(NETLINK_SOCK_DIAG) else { throw BenchError("socket(NETLINK_SOCK_DIAG): errno \(pb_errno())") }
        defer { mnl_socket_close(nl) }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 8)
        defer { buffer.deallocate() }
        var seq = UInt32(truncatingIfNeeded: time(nil))
        return try dump(nl, buffer: buffer, seq: &seq)
    }

    /// The four dumps over one open socket (whichever namespace it was made in).
    static func dump(_ nl: OpaquePointer, buffer: UnsafeMutableRawPointer, seq: inout UInt32) throws -> Counts {
        let portid = mnl_socket_get_portid(nl)
        var counts = Counts()
        let dumps: [(UInt8, UInt8)] = [(UInt8(AF_INET), 6), (UInt8(AF_INET6), 6), (UInt8(AF_INET), 17), (UInt8(AF_INET6), 17)]
        for (family, proto) in dumps {
            seq &+= 1
            var request = [UInt8](repeating: 0, count: 256)
            let length = request.withUnsafeMutableBytes {
                pb_build_inet_diag_dump($0.baseAddress, $0.count, family, proto, ~0, seq, nil, 0)
            }
            guard request.withUnsafeBytes({ mnl_socket_sendto(nl, $0.baseAddress, length) }) >= 0 else {
                throw BenchError("sendto(NETLINK_SOCK_DIAG): errno \(pb_errno())")
            }
            counts.perDump.append(try countMessages(nl, buffer: buffer, seq: seq, portid: portid, bus: "NETLINK_SOCK_DIAG"))
        }
        return counts
    }

    /// `portbudget-bench floor`: dumps once and prints one line the orchestrator reads.
    static func main() throws {
        let start = monotonicSeconds()
        let counts = try run()
        let seconds = monotonicSeconds() - start
        let line = "floor messages=\(counts.total) tcp4=\(counts.perDump[0]) tcp6=\(counts.perDump[1]) "
            + "udp4=\(counts.perDump[2]) udp6=\(counts.perDump[3]) seconds=\(seconds)\n"
        writeAll(1, line)
    }
}

/// The kernel's table walks behind a TCP dump, one request each. Which
/// tables a dump walks depends only on the states it asks for: LISTEN walks
/// the listener hash; the bound-only pseudo-state walks the bind table and
/// then the established hash as well (the kernel goes on to it for any state
/// but LISTEN); every other state walks the established hash. All three are
/// host-wide tables unless a namespace was given its own
/// (net.ipv4.tcp_child_ehash_entries), and each walk visits every bucket and
/// every socket of every namespace in them.
enum TCPWalk: String, CaseIterable {
    case listeners, established, bind

    /// TCP states as the kernel numbers them: LISTEN 10, the bound-only
    /// pseudo-state 13 (Linux 6.5+).
    var states: UInt32 {
        let listen: UInt32 = 1 << 10, boundOnly: UInt32 = 1 << 13
        switch self {
        case .listeners: return listen
        case .established: return ~(listen | boundOnly)
        case .bind: return boundOnly
        }
    }

    /// One TCPDIAG_GETSOCK request (both address families, as the agent asks)
    /// for these states alone, timed; counts messages only.
    func time(_ nl: OpaquePointer, buffer: UnsafeMutableRawPointer, seq: inout UInt32) throws -> Double {
        seq &+= 1
        var request = [UInt8](repeating: 0, count: 256)
        let length = request.withUnsafeMutableBytes { pb_build_tcpdiag_dump($0.baseAddress, $0.count, states, seq, nil, 0) }
        let start = monotonicSeconds()
        guard request.withUnsafeBytes({ mnl_socket_sendto(nl, $0.baseAddress, length) }) >= 0 else {
            throw BenchError("sendto(NETLINK_SOCK_DIAG): errno \(pb_errno())")
        }
        _ = try countMessages(nl, buffer: buffer, seq: seq, portid: mnl_socket_get_portid(nl), bus: "NETLINK_SOCK_DIAG")
        return monotonicSeconds() - start
    }
}

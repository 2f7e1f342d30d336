import CMNL
import Glibc
import PortBudgetCore

/// One netlink socket (libmnl) of one bus, and the one request-and-receive
/// loop every netlink request here goes through: send a request with the
/// next sequence number, receive the answer into one buffer and hand each
/// batch to the framing (`NetlinkFrameDecoder`) until NLMSG_DONE or the
/// ACK. Failures are thrown as `Failure`, naming the call and errno; a
/// kernel's NLMSG_ERROR names the request.
final class NetlinkSocket<Failure: NetlinkCallFailure> {
    /// The bus's name in messages ("NETLINK_SOCK_DIAG").
    let bus: String
    private let socket: OpaquePointer
    /// The port the kernel bound this socket to: its answers are addressed there.
    private let portID: UInt32
    private var sequence: UInt32
    private let receiveBufferSize: Int

    /// Opens and binds a socket of `bus` (NETLINK_SOCK_DIAG, NETLINK_NETFILTER).
    /// The kernel fills up to 32 KiB per batch of a dump: a receive buffer
    /// of twice that takes each batch in one recv(), and a socket queue of
    /// `socketBufferSize` holds the next batches while one is decoded.
    init(bus: Int32, named name: String, socketBufferSize: Int32 = 1 << 20, receiveBufferSize: Int = 64 * 1024) throws {
        guard let nl = pb_open_netlink(bus) else {
            throw Failure(call: "socket(AF_NETLINK, \(name))", errno: pb_errno())
        }
        socket = nl
        self.bus = name
        self.receiveBufferSize = receiveBufferSize
        var size = socketBufferSize
        _ = setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        portID = mnl_socket_get_portid(nl)
        sequence = UInt32(truncatingIfNeeded: time(nil))
    }

    deinit {
        mnl_socket_close(socket)
    }

    /// Sends the request `build` lays out in `capacity` bytes (it returns
    /// the request's length, 0 when it did not fit) with the next sequence
    /// number, then calls `handle` for each message of the answer that is
    /// not netlink's own, until the answer is complete. `what` names the
    /// request in errors.
    func request(_ what: @autoclosure () -> String, capacity: Int,
                 build: (UnsafeMutableRawBufferPointer, UInt32) -> Int,
                 _ handle: (NetlinkMessage) throws -> Void) throws {
        sequence &+= 1
        let seq = sequence
        var message = [UInt8](repeating: 0, count: capacity)
        let length = message.withUnsafeMutableBytes { build($0, seq) }
        guard length > 0 else { throw Failure(call: "build \(what())", errno: EINVAL) }
        let sent = message.withUnsafeBytes { mnl_socket_sendto(socket, $0.baseAddress, length) }
        guard sent >= 0 else { throw Failure(call: "sendto(\(bus)) for \(what())", errno: pb_errno()) }
        try receive(sequence: seq, what(), handle)
    }

    /// Receives and frames the answer to request `seq` until it is complete.
    private func receive(sequence seq: UInt32, _ what: @autoclosure () -> String,
                         _ handle: (NetlinkMessage) throws -> Void) throws {
        // Allocated per request, not per socket: `--all-namespaces` keeps
        // sockets per namespace, and only one request runs at a time.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: receiveBufferSize, alignment: 8)
        defer { buffer.deallocate() }
        while true {
            let received = mnl_socket_recvfrom(socket, buffer.baseAddress, buffer.count)
            if received < 0 {
                let err = pb_errno()
                if err == EINTR { continue }
                throw Failure(call: "recvmsg(\(bus)) for \(what())", errno: err)
            }
            if received == 0 { throw Failure(call: "recvmsg(\(bus)) for \(what()) returned no data", errno: EIO) }
            let progress: NetlinkFrameDecoder.Progress
            do {
                progress = try NetlinkFrameDecoder.decode(UnsafeRawBufferPointer(rebasing: buffer[0..<received]),
                                                          sequence: seq, portID: portID, handle)
            } catch NetlinkDecodeError.kernelError(let errno) {
                throw Failure(call: what(), errno: errno)
            }
            if progress == .done { return }
        }
    }
}

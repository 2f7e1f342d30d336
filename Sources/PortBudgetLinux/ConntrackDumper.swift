import CMNL
import Glibc
import PortBudgetCore

/// A ctnetlink call failed, with what was asked and errno. The description
/// is one line a user can act on.
public struct ConntrackError: Error, CustomStringConvertible, Sendable {
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

/// The conntrack table as the SNAT census sees it, and the table's counters.
public struct ConntrackSnapshot: Sendable {
    public var snat: PortBudgetReport.SNAT
    public var table: PortBudgetReport.Conntrack
}

/// Reads the conntrack table of the caller's network namespace over
/// ctnetlink (NETLINK_NETFILTER) with libmnl: the entries with source NAT
/// applied, streamed into a `SNATCensus` and forgotten, the per-CPU
/// statistics, and the table's size. One instance owns one socket; each
/// request reads through one receive buffer.
public final class ConntrackDumper {
    private let socket: OpaquePointer
    private var sequence: UInt32

    /// The receive buffer: the kernel fills up to 32 KiB per dump batch
    /// (about 100 entries); twice that keeps one recv() per batch.
    public static let receiveBufferSize = 64 * 1024
    /// The socket's receive queue: room for the next batches while one is decoded.
    public static let socketBufferSize: Int32 = 1 << 20
    /// Room for any request built here: headers plus two u32 attributes take 44 bytes.
    static let requestBufferSize = 128

    public init() throws {
        guard let nl = pb_open_netlink(NETLINK_NETFILTER) else {
            throw ConntrackError(call: "socket(AF_NETLINK, NETLINK_NETFILTER)", errno: pb_errno())
        }
        socket = nl
        var size = Self.socketBufferSize
        _ = setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        sequence = UInt32(truncatingIfNeeded: time(nil))
    }

    deinit {
        mnl_socket_close(socket)
    }

    /// The SNAT census over `range`, then the table's size and statistics.
    public func snapshot(range: SNATPortRange) throws -> ConntrackSnapshot {
        var census = SNATCensus(range: range)
        var statistics = ConntrackStatistics()
        try request("IPCTNL_MSG_CT_GET_STATS_CPU dump", build: { pb_build_ct_stats_cpu_dump($0, $1, $2) }) {
            if case let .cpuStatistics(_, s) = $0 { statistics = statistics + s }
        }
        var size: (entries: Int64, limit: Int64?)?
        try request("IPCTNL_MSG_CT_GET_STATS", build: { pb_build_ct_stats($0, $1, $2) }) {
            if case let .tableSize(entries, limit) = $0 { size = (entries, limit) }
        }
        guard let size else { throw ConntrackError(call: "IPCTNL_MSG_CT_GET_STATS answered without a size", errno: EIO) }
        // The table's own count first: a namespace with no entry (most pods)
        // skips the dump, which walks the host-wide conntrack hash.
        if size.entries > 0 {
            try dumpEntries(onlySourceNAT: true) { census.add($0) }
        }
        return ConntrackSnapshot(snat: census.report(),
                                 table: .init(entries: size.entries, limit: size.limit ?? 0, statistics: statistics))
    }

    /// Dumps every entry of both families. With `onlySourceNAT` the kernel
    /// is asked to send only entries with IPS_SRC_NAT set; a kernel that
    /// ignores the filter sends all, and the census checks the bit anyway.
    public func dumpEntries(onlySourceNAT: Bool, _ body: (ConntrackEntry) throws -> Void) throws {
        let mask = onlySourceNAT ? ConntrackEntry.sourceNATStatus : 0
        try request("IPCTNL_MSG_CT_GET dump", build: { pb_build_ct_dump($0, $1, $2, mask, mask) }) {
            if case let .entry(entry) = $0 { try body(entry) }
        }
    }

    /// Sends the request `build` makes with the next sequence number and
    /// decodes the answer until NLMSG_DONE or the ACK.
    private func request(_ what: String, build: (UnsafeMutableRawPointer?, Int, UInt32) -> Int,
                         _ body: (ConntrackDecoder.Message) throws -> Void) throws {
        sequence &+= 1
        let seq = sequence
        var message = [UInt8](repeating: 0, count: Self.requestBufferSize)
        let length = message.withUnsafeMutableBytes { build($0.baseAddress, $0.count, seq) }
        guard length > 0 else { throw ConntrackError(call: "build \(what)", errno: EINVAL) }
        let sent = message.withUnsafeBytes { mnl_socket_sendto(socket, $0.baseAddress, length) }
        guard sent >= 0 else { throw ConntrackError(call: "sendto(NETLINK_NETFILTER) for \(what)", errno: pb_errno()) }
        // Allocated per dump, not per dumper: `--all-namespaces` keeps a
        // dumper per namespace, and only one dump runs at a time.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.receiveBufferSize, alignment: 8)
        defer { buffer.deallocate() }
        while true {
            let received = mnl_socket_recvfrom(socket, buffer.baseAddress, buffer.count)
            if received < 0 {
                let err = pb_errno()
                if err == EINTR { continue }
                throw ConntrackError(call: "recvmsg(NETLINK_NETFILTER) for \(what)", errno: err)
            }
            if received == 0 { throw ConntrackError(call: "recvmsg(NETLINK_NETFILTER) for \(what) returned no data", errno: EIO) }
            let progress: NetlinkDumpDecoder.Progress
            do {
                progress = try ConntrackDecoder.decode(UnsafeRawBufferPointer(rebasing: buffer[0..<received]),
                                                       sequence: seq, body)
            } catch ConntrackDecoder.DecodeError.kernelError(let errno) {
                throw ConntrackError(call: what, errno: errno)
            }
            if progress == .done { return }
        }
    }
}

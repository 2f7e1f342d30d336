import CMNL
import Glibc
import PortBudgetCore

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
    private let socket: NetlinkSocket<ConntrackError>

    /// Room for any request built here: headers plus two u32 attributes take 44 bytes.
    static let requestBufferSize = 128

    public init() throws {
        socket = try NetlinkSocket(bus: NETLINK_NETFILTER, named: "NETLINK_NETFILTER")
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

    /// Sends the request `build` makes and decodes the answer until
    /// NLMSG_DONE or the ACK.
    private func request(_ what: String, build: (UnsafeMutableRawPointer?, Int, UInt32) -> Int,
                         _ body: (ConntrackDecoder.Message) throws -> Void) throws {
        try socket.request(what, capacity: Self.requestBufferSize, build: { build($0.baseAddress, $0.count, $1) }) {
            if let message = try ConntrackDecoder.message(in: $0) { try body(message) }
        }
    }
}

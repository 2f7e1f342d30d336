/// The kernel counters that matter around a port census, with the names
/// they carry in JSON and in the exposition. One table drives both, so the
/// two can never disagree.
public struct KernelCounter: Sendable, Equatable {
    public enum Source: String, Sendable, CaseIterable {
        case sockstat, sockstat6, snmp, netstat

        /// Sections every kernel prints in this file: a file without one of
        /// them is cut short or not the kernel's, and fails its collector.
        /// `IcmpMsg` is left out on purpose: the kernel prints it only once
        /// an ICMP message has been counted, so a fresh namespace lacks it.
        public var requiredSections: [String] {
            switch self {
            case .sockstat: ["TCP", "UDP"]
            case .sockstat6: ["TCP6", "UDP6"]
            case .snmp: ["Tcp", "Udp", "Icmp"]
            case .netstat: ["TcpExt"]
            }
        }
    }
    public enum Kind: String, Sendable { case counter, gauge }

    public let source: Source
    public let section: String
    public let field: String
    /// Metric name without the `portbudget_` prefix; counters end in `_total`.
    public let metric: String
    public let kind: Kind
    public let help: String

    public static let all: [KernelCounter] = [
        .init(source: .sockstat, section: "TCP", field: "inuse", metric: "sockstat_tcp_inuse", kind: .gauge,
              help: "IPv4 TCP sockets in use (sockstat TCP inuse)."),
        .init(source: .sockstat, section: "TCP", field: "orphan", metric: "sockstat_tcp_orphan", kind: .gauge,
              help: "Orphaned TCP sockets, no longer attached to a process (sockstat TCP orphan)."),
        .init(source: .sockstat, section: "TCP", field: "tw", metric: "sockstat_tcp_tw", kind: .gauge,
              help: "TCP sockets in TIME_WAIT, all families (sockstat TCP tw)."),
        .init(source: .sockstat, section: "TCP", field: "alloc", metric: "sockstat_tcp_alloc", kind: .gauge,
              help: "TCP sockets allocated, all families (sockstat TCP alloc)."),
        .init(source: .sockstat, section: "UDP", field: "inuse", metric: "sockstat_udp_inuse", kind: .gauge,
              help: "IPv4 UDP sockets in use (sockstat UDP inuse)."),
        .init(source: .sockstat6, section: "TCP6", field: "inuse", metric: "sockstat_tcp6_inuse", kind: .gauge,
              help: "IPv6 TCP sockets in use (sockstat6 TCP6 inuse)."),
        .init(source: .sockstat6, section: "UDP6", field: "inuse", metric: "sockstat_udp6_inuse", kind: .gauge,
              help: "IPv6 UDP sockets in use (sockstat6 UDP6 inuse)."),
        .init(source: .snmp, section: "Icmp", field: "OutDestUnreachs", metric: "icmp_out_dest_unreachs_total",
              kind: .counter, help: "ICMP destination-unreachable messages sent (Icmp OutDestUnreachs)."),
        .init(source: .snmp, section: "IcmpMsg", field: "OutType3", metric: "icmp_out_type3_total", kind: .counter,
              help: "ICMP type 3 (destination unreachable, port unreachable among them) messages sent (IcmpMsg OutType3)."),
        .init(source: .snmp, section: "Udp", field: "NoPorts", metric: "udp_no_ports_total", kind: .counter,
              help: "UDP datagrams received for a port with no socket (Udp NoPorts)."),
        .init(source: .snmp, section: "Udp", field: "InErrors", metric: "udp_in_errors_total", kind: .counter,
              help: "UDP datagrams that could not be delivered (Udp InErrors)."),
        .init(source: .snmp, section: "Udp", field: "RcvbufErrors", metric: "udp_rcvbuf_errors_total", kind: .counter,
              help: "UDP datagrams dropped for a full receive buffer (Udp RcvbufErrors)."),
        .init(source: .snmp, section: "Udp", field: "SndbufErrors", metric: "udp_sndbuf_errors_total", kind: .counter,
              help: "UDP sends that failed for a full send buffer (Udp SndbufErrors)."),
        .init(source: .snmp, section: "Tcp", field: "ActiveOpens", metric: "tcp_active_opens_total", kind: .counter,
              help: "TCP connect() attempts that sent a SYN (Tcp ActiveOpens)."),
        .init(source: .snmp, section: "Tcp", field: "AttemptFails", metric: "tcp_attempt_fails_total", kind: .counter,
              help: "TCP connection attempts that failed (Tcp AttemptFails)."),
        .init(source: .snmp, section: "Tcp", field: "CurrEstab", metric: "tcp_curr_estab", kind: .gauge,
              help: "TCP connections in ESTABLISHED or CLOSE_WAIT (Tcp CurrEstab)."),
        .init(source: .netstat, section: "TcpExt", field: "TWRecycled", metric: "tcp_tw_recycled_total",
              kind: .counter, help: "TIME_WAIT sockets reused for a new outgoing connection (TcpExt TWRecycled)."),
        .init(source: .netstat, section: "TcpExt", field: "TCPTimeWaitOverflow", metric: "tcp_time_wait_overflow_total",
              kind: .counter, help: "TIME_WAIT sockets not created because tcp_max_tw_buckets was reached (TcpExt TCPTimeWaitOverflow)."),
    ]
}

extension KernelCounter {
    /// Per source, the fields `all` reads, by section, and those the census
    /// reads without exporting them (`HashedTCPCounters`).
    public static let fieldsRead: [Source: [String: Set<String>]] = all.reduce(into: [.snmp: ["Tcp": ["PassiveOpens"]]]) {
        fields, counter in
        fields[counter.source, default: [:]][counter.section, default: []].insert(counter.field)
    }
}

/// The counter values read in one collection, keyed by `KernelCounter.metric`.
/// A counter the kernel does not show (an older kernel, a module not loaded)
/// is absent, never zero.
public struct KernelCounterValues: Sendable, Equatable {
    public private(set) var values: [String: Int64] = [:]

    public init() {}

    public init(tables: [KernelCounter.Source: ProcNetParser.Table]) {
        for counter in KernelCounter.all {
            if let v = tables[counter.source]?[counter.section]?[counter.field] { values[counter.metric] = v }
        }
    }

    public subscript(metric: String) -> Int64? { values[metric] }
}

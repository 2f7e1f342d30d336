/// Which of a namespace's socket tables its own counters prove empty, so a
/// dump that could only come back empty is not made: each walks a
/// host-wide hash, whatever the namespace holds. Read from sockstat and
/// sockstat6, which count per namespace.
///
/// What the counters prove, measured on this kernel: `inuse` counts TCP
/// sockets in the listening and established hashes (listeners, connecting,
/// connected and closing ones) but not a socket that is only bound, and
/// `tw` counts TIME_WAIT; UDP and UDP-Lite `inuse` count every bound socket.
/// So a namespace with no TCP in use and none in TIME_WAIT still needs its
/// bind table walked for bound-only sockets, and nothing else of TCP —
/// unless `sockets: used`, which counts every socket user space made in the
/// namespace (a bound-only one too), counts none but the agent's own: then
/// there is no TCP socket to dump at all. Kernel sockets are not counted
/// there, but the kernel's own TCP users bind and then listen or connect at
/// once, which puts them in the hashes `inuse` counts.
public struct SocketPresence: Sendable, Equatable {
    /// Any TCP socket in the listening or established hash, TIME_WAIT included.
    public var tcpHashed: Bool
    /// Any TCP socket outside those hashes: bound only (or not even bound).
    public var tcpUnhashed: Bool
    public var udp: Bool
    public var udp6: Bool
    public var udplite: Bool
    public var udplite6: Bool

    /// Everything present: what a census assumes when the counters cannot be read.
    public static let unknown = SocketPresence(tcpHashed: true, tcpUnhashed: true, udp: true, udp6: true, udplite: true, udplite6: true)

    public init(tcpHashed: Bool, tcpUnhashed: Bool, udp: Bool, udp6: Bool, udplite: Bool, udplite6: Bool) {
        self.tcpHashed = tcpHashed
        self.tcpUnhashed = tcpUnhashed
        self.udp = udp
        self.udp6 = udp6
        self.udplite = udplite
        self.udplite6 = udplite6
    }

    /// From the parsed sockstat and sockstat6; a count the tables lack counts
    /// as present. `agentSockets`: how many sockets the agent itself holds
    /// in the namespace, made there (nil: not known, so others may exist).
    public init(sockstat: ProcNetParser.Table?, sockstat6: ProcNetParser.Table?, agentSockets: Int? = nil) {
        func present(_ table: ProcNetParser.Table?, _ section: String, _ field: String) -> Bool {
            guard let value = table?[section]?[field] else { return true }
            return value > 0
        }
        self.init(
            tcpHashed: present(sockstat, "TCP", "inuse") || present(sockstat, "TCP", "tw") || present(sockstat6, "TCP6", "inuse"),
            tcpUnhashed: agentSockets.flatMap { ours in sockstat?["sockets"]?["used"].map { $0 > Int64(ours) } } ?? true,
            udp: present(sockstat, "UDP", "inuse"), udp6: present(sockstat6, "UDP6", "inuse"),
            udplite: present(sockstat, "UDPLITE", "inuse"), udplite6: present(sockstat6, "UDPLITE6", "inuse"))
    }
}

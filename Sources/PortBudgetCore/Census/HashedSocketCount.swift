/// What a namespace's own counters say of its TCP sockets in the listening
/// and established hashes: sockstat's `TCP inuse` plus sockstat6's `TCP6
/// inuse` (both count exactly those sockets, listeners included, TIME_WAIT
/// and request sockets not), and snmp's `Tcp ActiveOpens` plus
/// `PassiveOpens`, which grow whenever a socket enters the established
/// hash by connect() or by a handshake.
public struct HashedTCPCounters: Sendable, Equatable {
    public var inUse: Int64
    public var opens: Int64

    public init(inUse: Int64, opens: Int64) {
        self.inUse = inUse
        self.opens = opens
    }

    /// Nil when a table lacks a count: then nothing is proved by them.
    public init?(sockstat: ProcNetParser.Table?, sockstat6: ProcNetParser.Table?, snmp: ProcNetParser.Table?) {
        guard let v4 = sockstat?["TCP"]?["inuse"], let v6 = sockstat6?["TCP6"]?["inuse"],
              let active = snmp?["Tcp"]?["ActiveOpens"], let passive = snmp?["Tcp"]?["PassiveOpens"] else { return nil }
        self.init(inUse: v4 + v6, opens: active + passive)
    }

    /// The same four counts read in place from the files' text, for the
    /// reading after the dump, which needs nothing else of them.
    public init?(sockstatText: String, sockstat6Text: String, snmpText: String) {
        guard let v4 = ProcNetParser.sockstatValue(sockstatText, section: "TCP", field: "inuse"),
              let v6 = ProcNetParser.sockstatValue(sockstat6Text, section: "TCP6", field: "inuse"),
              let opens = ProcNetParser.pairedValues(snmpText, section: "Tcp", fields: ["ActiveOpens", "PassiveOpens"])
        else { return nil }
        self.init(inUse: v4 + v6, opens: opens[0] + opens[1])
    }
}

/// Counts, in a TCP dump, the sockets `HashedTCPCounters.inUse` counts, so
/// one dump whose filter leaves out only explicitly bound connected sockets
/// can prove it left out none, instead of a second dump looking for them.
///
/// The proof: with the counters equal before and after the dump (read in
/// the order opens, inUse, then inUse, opens), no socket entered the
/// established hash meanwhile (`opens` unchanged) and as many left as
/// listeners were opened (`inUse` unchanged). If the dump still met as many
/// counted sockets as `inUse`, none was left out — unless a listener opened
/// during the dump stood in for one, which takes a listen() and a close()
/// within the dump's first microseconds (the listener hash comes first),
/// beside an explicitly bound connection; the next census sees it. A socket
/// restored by TCP repair (CRIU) enters without counting an open.
///
/// A dump can meet a socket twice: the kernel resumes a hash bucket by
/// position, and a socket added to the bucket meanwhile (a request or
/// TIME_WAIT socket, which no counter here sees) shifts the rest. So
/// sockets are counted by cookie, up to `cookiesKept`; beyond that, nothing
/// is proved and the census makes its second dump.
public struct HashedSocketTally: Sendable, Equatable {
    public private(set) var counted: Int64 = 0
    private var cookies: Set<UInt64> = []
    private var overflowed = false

    /// Cookies kept to count each socket once; a namespace with more hashed
    /// TCP sockets is dumped twice (memory stays bounded).
    public static let cookiesKept = 65_536

    public init() {}

    /// Counts `r` when `inUse` counts it: a listener, or a full socket in
    /// the established hash. Not TIME_WAIT entries (reported with their
    /// substate, their timer 3), request sockets (SYN_RECV; a full socket
    /// there is too: the proof then fails, which is safe), nor bound-only
    /// sockets (CLOSE, from the bind table).
    public mutating func add(_ r: InetDiagRecord) {
        guard r.timer != Self.timeWaitTimer else { return }
        switch r.state {
        case TCPState.listen, TCPState.established, TCPState.synSent, TCPState.finWait1, TCPState.finWait2,
             TCPState.closeWait, TCPState.lastAck, TCPState.closing:
            guard !overflowed else { return }
            guard cookies.count < Self.cookiesKept else {
                overflowed = true
                cookies = []
                return
            }
            if cookies.insert(r.cookie).inserted { counted += 1 }
        default:
            break
        }
    }

    /// `idiag_timer` of every TIME_WAIT entry.
    public static let timeWaitTimer: UInt8 = 3

    /// True when the dump provably left out no socket that `inUse` counts.
    public func provesNoneLeftOut(before: HashedTCPCounters, after: HashedTCPCounters) -> Bool {
        !overflowed && before == after && counted == after.inUse
    }
}

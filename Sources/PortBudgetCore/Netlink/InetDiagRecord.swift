/// One socket as SOCK_DIAG reports it (`struct inet_diag_msg`), reduced to
/// what the accounting model reads. A value type with no references, so
/// decoding one costs no allocation.
public struct InetDiagRecord: Sendable, Equatable {
    public var family: IPAddress.Family
    /// TCP state number (`TCPState`); for TIME_WAIT entries the kernel reports
    /// the substate, so an orphaned FIN_WAIT2 shows as `finWait2` here too.
    public var state: UInt8
    public var timer: UInt8
    public var localPort: UInt16
    public var remotePort: UInt16
    public var local: IPAddress
    public var remote: IPAddress
    /// `idiag_if`: the device the socket is bound to (SO_BINDTODEVICE), 0 if none.
    public var interface: UInt32
    public var cookie: UInt64
    /// `idiag_expires`: milliseconds left on the active timer (for TIME_WAIT, until it ends).
    public var expiresMs: UInt32
    public var uid: UInt32
    public var inode: UInt32
    /// The cgroup v2 id of the process that created the socket
    /// (`INET_DIAG_CGROUP_ID`, fixed at socket() time); 0 when the kernel
    /// sent none — TIME_WAIT and request sockets never carry one.
    public var cgroupID: UInt64

    public init(family: IPAddress.Family, state: UInt8, timer: UInt8 = 0, localPort: UInt16, remotePort: UInt16,
                local: IPAddress, remote: IPAddress, interface: UInt32 = 0, cookie: UInt64 = 0,
                expiresMs: UInt32 = 0, uid: UInt32 = 0, inode: UInt32 = 0, cgroupID: UInt64 = 0) {
        self.family = family
        self.state = state
        self.timer = timer
        self.localPort = localPort
        self.remotePort = remotePort
        self.local = local
        self.remote = remote
        self.interface = interface
        self.cookie = cookie
        self.expiresMs = expiresMs
        self.uid = uid
        self.inode = inode
        self.cgroupID = cgroupID
    }
}

/// Kernel TCP state numbers (include/net/tcp_states.h), as reported by diag.
public enum TCPState {
    public static let established: UInt8 = 1
    public static let synSent: UInt8 = 2
    public static let synRecv: UInt8 = 3
    public static let finWait1: UInt8 = 4
    public static let finWait2: UInt8 = 5
    public static let timeWait: UInt8 = 6
    public static let close: UInt8 = 7
    public static let closeWait: UInt8 = 8
    public static let lastAck: UInt8 = 9
    public static let listen: UInt8 = 10
    public static let closing: UInt8 = 11
    public static let newSynRecv: UInt8 = 12
    /// Pseudo-state (6.5+): a socket that is bound but neither listening nor connected.
    public static let boundInactive: UInt8 = 13

    /// Bit mask for `idiag_states` with every state, the bound-only pseudo-state included.
    public static let allStates: UInt32 = ~0

    public static func mask(_ states: UInt8...) -> UInt32 { states.reduce(0) { $0 | (1 << UInt32($1)) } }

    public static func name(_ state: UInt8) -> String {
        switch state {
        case 1: return "ESTABLISHED"
        case 2: return "SYN_SENT"
        case 3: return "SYN_RECV"
        case 4: return "FIN_WAIT1"
        case 5: return "FIN_WAIT2"
        case 6: return "TIME_WAIT"
        case 7: return "CLOSE"
        case 8: return "CLOSE_WAIT"
        case 9: return "LAST_ACK"
        case 10: return "LISTEN"
        case 11: return "CLOSING"
        case 12: return "NEW_SYN_RECV"
        case 13: return "BOUND_INACTIVE"
        default: return "STATE_\(state)"
        }
    }
}

import CMNL
import Glibc
import PortBudgetCore

/// An open network-namespace file (`/run/netns/NAME`, `/proc/PID/ns/net`):
/// holding the descriptor pins the namespace, so a pid reused after the
/// open cannot make the agent measure another one.
public final class NetworkNamespaceHandle: Sendable {
    public let fd: Int32
    public let path: String
    /// The namespace's inode (what `ls -L -i` and `ip netns identify` use).
    public let inode: UInt64

    /// Opens the first of `target`'s candidate files that exists; the error
    /// names what was tried and why it failed.
    public init(_ target: NetnsTarget, procfs: String = "/proc") throws {
        var failures: [String] = []
        for path in target.candidates(procfs: procfs) {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            if fd < 0 {
                failures.append("\(path): \(String(cString: strerror(errno)))")
                continue
            }
            var status = stat()
            guard fstat(fd, &status) == 0 else { close(fd); continue }
            self.fd = fd
            self.path = path
            self.inode = UInt64(status.st_ino)
            return
        }
        throw NetnsTargetError("no network namespace \(Self.describe(target)) (\(failures.joined(separator: "; ")))")
    }

    deinit { close(fd) }

    static func describe(_ target: NetnsTarget) -> String {
        switch target {
        case let .pid(pid): return "of pid \(pid)"
        case let .path(path): return "at \(path)"
        case let .name(name): return "named \(name)"
        }
    }

    /// Moves the calling thread (only it) into this namespace. Run it on a
    /// thread of its own, never on an event loop or the cooperative pool:
    /// whatever runs there afterwards is in the other namespace.
    public func enterOnThisThread() throws {
        guard let setns = Self.setns else { throw NetnsTargetError("setns() is not available") }
        guard setns(fd, Self.cloneNewNet) == 0 else {
            let reason = errno == EINVAL ? "not a network namespace"
                : errno == EPERM ? "not permitted (setns needs CAP_SYS_ADMIN)" : String(cString: strerror(errno))
            throw NetnsTargetError("cannot enter the network namespace at \(path): \(reason)")
        }
    }

    /// The uid that created the user namespace owning this network
    /// namespace, or nil when that is `agentUserNamespace` (the agent's own:
    /// on a host, the initial one, which owns the host's, a root container
    /// runtime's and `ip netns add`'s namespaces) or cannot be asked.
    public func unprivilegedOwner(agentUserNamespace: UInt64?) -> UInt32? {
        guard let agentUserNamespace else { return nil }
        let owner = pb_ns_get_userns(fd)
        guard owner >= 0 else { return nil }
        defer { close(owner) }
        var status = stat()
        guard fstat(owner, &status) == 0, UInt64(status.st_ino) != agentUserNamespace else { return nil }
        var uid = uid_t(0)
        return pb_ns_get_owner_uid(owner, &uid) == 0 ? UInt32(uid) : UInt32.max
    }

    /// The inode of the calling process's user namespace.
    public static func ownUserNamespace(procfs: String) -> UInt64? {
        var status = stat()
        return stat(procfs + "/thread-self/ns/user", &status) == 0 ? UInt64(status.st_ino) : nil
    }

    /// setns(fd, kind) for the calling thread; false when refused.
    static func enter(_ fd: Int32, kind: Int32) -> Bool { setns.map { $0(fd, kind) == 0 } ?? false }

    static let cloneNewNet: Int32 = 0x4000_0000
    /// Glibc declares setns only under _GNU_SOURCE, which Swift's Glibc
    /// module does not define, so it is looked up at run time.
    private typealias SetNS = @convention(c) (Int32, Int32) -> Int32
    private static let setns: SetNS? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "setns") else { return nil }
        return unsafeBitCast(symbol, to: SetNS.self)
    }()
}

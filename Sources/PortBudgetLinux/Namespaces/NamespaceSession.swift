import Foundation
import Glibc
import PortBudgetCore

/// Netlink sockets opened inside one network namespace and kept: a netlink
/// socket stays in the namespace it was created in, so dumps through it
/// describe that namespace from any thread. Used by one collection at a
/// time (`CollectionRunner` runs one at a time), hence unchecked.
public final class NamespaceSockets: @unchecked Sendable {
    public let sockDiag: SockDiagDumper
    /// Nil when conntrack was not loaded when the namespace was first seen:
    /// no ctnetlink socket is opened then (its use could load the module).
    public let conntrack: ConntrackDumper?

    /// How many sockets these are: the namespace's `sockets: used` counts
    /// them, and only them when nothing else there holds a socket.
    public var count: Int { conntrack == nil ? 1 : 2 }

    init(sockDiag: SockDiagDumper, conntrack: ConntrackDumper?) {
        self.sockDiag = sockDiag
        self.conntrack = conntrack
    }
}

/// One namespace the agent watches across collections: its pinned
/// namespace file, netlink sockets and procfs files, all opened once from
/// inside it, so no collection has to enter it again.
public final class NamespaceSession: Sendable {
    public let handle: NetworkNamespaceHandle
    public let info: NetnsInfo
    public let sockets: NamespaceSockets
    public let files: PinnedFiles

    /// Descriptors one watched namespace holds: the namespace file, the
    /// SOCK_DIAG and ctnetlink sockets, and `ProcFS.namespaceFiles`.
    public static let descriptorsPerNamespace = 3 + ProcFS.namespaceFiles.count
    /// How long opening a namespace's descriptors may take before it is
    /// reported as not measured (a hung procfs mount; normally microseconds).
    public static let openDeadline: DispatchTimeInterval = .seconds(5)

    init(handle: NetworkNamespaceHandle, info: NetnsInfo, sockets: NamespaceSockets, files: PinnedFiles) {
        self.handle = handle
        self.info = info
        self.sockets = sockets
        self.files = files
    }

    /// Opens everything for `found`. The agent's own namespace is opened on
    /// the calling thread; any other on a short-lived thread that enters it
    /// with setns() (CAP_SYS_ADMIN) and ends, so no long-lived thread is
    /// ever in another namespace.
    /// `info` is who the namespace is, named uniquely by the caller.
    public static func open(_ found: NamespaceDiscovery.Found, info: NetnsInfo, procfs root: String,
                            conntrack: Bool) throws -> NamespaceSession {
        let handle = found.handle
        @Sendable func openInside() throws -> NamespaceSession {
            let procfs = ProcFS(root: root, netOfCallingThread: true)
            let sockets = NamespaceSockets(sockDiag: try SockDiagDumper(), conntrack: conntrack ? try ConntrackDumper() : nil)
            return NamespaceSession(handle: handle, info: info, sockets: sockets, files: PinnedFiles(procfs: procfs))
        }
        if found.isOwn { return try openInside() }
        let box = OpenResult()
        let thread = Thread {
            defer { box.done.signal() }
            do {
                try handle.enterOnThisThread()
                box.result = .success(try openInside())
            } catch {
                box.result = .failure(error)
            }
        }
        thread.name = "portbudget-netns-open"
        thread.start()
        guard box.done.wait(timeout: .now() + openDeadline) == .success, let result = box.result else {
            throw NetnsTargetError("opening the network namespace at \(handle.path) did not finish within \(openDeadline)")
        }
        return try result.get()
    }

    private final class OpenResult: @unchecked Sendable {
        let done = DispatchSemaphore(value: 0)
        var result: Result<NamespaceSession, any Error>?
    }
}

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
    /// the calling thread; any other on `opener`'s thread, which enters it
    /// with setns() (CAP_SYS_ADMIN) and lives only as long as one
    /// collection, so no long-lived thread is ever in another namespace.
    /// After `openDeadline` the opener is closed and abandoned to its hung
    /// call, and the caller needs a new one (`NamespaceOpener.isUsable`).
    /// `info` is who the namespace is, named uniquely by the caller; `files`
    /// are what its collections read, of `ProcFS.namespaceFiles`.
    public static func open(_ found: NamespaceDiscovery.Found, info: NetnsInfo, procfs root: String,
                            conntrack: Bool, files: [String],
                            opener: NamespaceOpener) throws -> NamespaceSession {
        let handle = found.handle
        @Sendable func openInside() throws -> NamespaceSession {
            let procfs = ProcFS(root: root, netOfCallingThread: true)
            let sockets = NamespaceSockets(sockDiag: try SockDiagDumper(), conntrack: conntrack ? try ConntrackDumper() : nil)
            return NamespaceSession(handle: handle, info: info, sockets: sockets, files: PinnedFiles(procfs: procfs, relatives: files))
        }
        if found.isOwn { return try openInside() }
        let box = OpenResult()
        opener.run {
            defer { box.done.signal() }
            do {
                try handle.enterOnThisThread()
                box.result = .success(try openInside())
            } catch {
                box.result = .failure(error)
            }
        }
        guard box.done.wait(timeout: .now() + openDeadline) == .success, let result = box.result else {
            opener.close()
            throw NetnsTargetError("opening the network namespace at \(handle.path) did not finish within \(openDeadline)")
        }
        return try result.get()
    }

    private final class OpenResult: @unchecked Sendable {
        let done = DispatchSemaphore(value: 0)
        var result: Result<NamespaceSession, any Error>?
    }
}

/// The thread that opens namespaces' sessions for one worker of one
/// collection, one after another: starting a thread for each namespace
/// costs more CPU than collecting a small one. It ends when closed (after
/// the job it runs, if any), so it outlives no collection.
public final class NamespaceOpener: @unchecked Sendable {
    private let lock = NSLock()
    private let wake = DispatchSemaphore(value: 0)
    private var job: (@Sendable () -> Void)?
    private var closed = false

    public init() {
        let thread = Thread { [self] in
            while true {
                wake.wait()
                guard let next = lock.withLock({ () -> (@Sendable () -> Void)? in
                    defer { job = nil }
                    return closed ? nil : job
                }) else { return }
                next()
            }
        }
        thread.name = "portbudget-netns-open"
        thread.start()
    }

    /// False once closed: a job ran past its deadline, or the worker is done.
    public var isUsable: Bool { lock.withLock { !closed } }

    /// Runs `body` on the opener's thread; one job at a time.
    func run(_ body: @escaping @Sendable () -> Void) {
        lock.withLock { job = body }
        wake.signal()
    }

    /// Lets the thread end once its current job, if any, returns.
    public func close() {
        lock.withLock { closed = true }
        wake.signal()
    }
}

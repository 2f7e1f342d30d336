import Foundation
import Glibc
import PortBudgetCore

/// Finds every network namespace reachable from this host: the agent's own
/// (named `host`), the ones bound under /run/netns and /var/run/docker/netns
/// (`ip netns add`, Docker) even with no process left in them, and the one
/// of every process. Each is opened once and kept open, so a pid reused
/// while the agent works cannot make it measure another namespace.
public enum NamespaceDiscovery {
    public struct Found: Sendable {
        public let handle: NetworkNamespaceHandle
        public var info: NetnsInfo
        /// The agent's own namespace: measured without setns(), so it is
        /// measured even without CAP_SYS_ADMIN.
        public var isOwn: Bool { info.name == NetnsInfo.ownName }
    }

    /// Directories where tools bind-mount namespaces to keep them by name.
    public static let boundDirectories = ["/run/netns", "/var/run/docker/netns"]
    /// Pids listed per namespace.
    public static let pidsListed = 5

    /// Where one namespace was seen: its bind mount's name, or its first processes.
    public struct Sighting: Sendable {
        public var inode: UInt64
        /// `host`, or the bind mount's name (`ip netns add`, Docker); nil when only processes hold it.
        public var name: String?
        /// The file to open it by: the bind mount, or the first process's ns/net.
        public var path: String
        public var pids: [Int32] = []
    }

    /// What one pass over the bind directories and /proc saw, without opening
    /// anything: each namespace by inode, the agent's own first, then bound
    /// ones, then the rest in pid order; and how many processes' namespaces
    /// could not be read (another user's without CAP_SYS_PTRACE; pid 1 on
    /// some sandboxes even for root). Cheap enough for every scrape: one
    /// stat per bind mount and one readlink per process.
    public struct Scan: Sendable {
        public var sightings: [Sighting] = []
        public var unreadable = 0
        var byInode: [UInt64: Int] = [:]

        mutating func see(_ inode: UInt64, name: String?, path: String, pid: Int32?) {
            let index: Int
            if let known = byInode[inode] {
                index = known
                if sightings[index].name == nil, let name { sightings[index].name = name }
            } else {
                index = sightings.count
                byInode[inode] = index
                sightings.append(Sighting(inode: inode, name: name, path: path))
            }
            if let pid, sightings[index].pids.count < pidsListed { sightings[index].pids.append(pid) }
        }
    }

    public static func scan(procfs: ProcFS) -> Scan {
        var scan = Scan()
        var status = stat()
        let own = procfs.root + "/thread-self/ns/net"
        // Namespace files all live on the nsfs device: a file left in /run/netns
        // by a failed `ip netns add` (no bind mount over it) is not one.
        var nsfs: UInt64?
        if stat(own, &status) == 0 {
            nsfs = UInt64(status.st_dev)
            scan.see(UInt64(status.st_ino), name: NetnsInfo.ownName, path: own, pid: nil)
        }
        for directory in boundDirectories {
            for entry in entries(directory) where stat(directory + "/" + entry, &status) == 0 {
                guard nsfs == nil || UInt64(status.st_dev) == nsfs else { continue }
                scan.see(UInt64(status.st_ino), name: entry, path: directory + "/" + entry, pid: nil)
            }
        }
        var link = [CChar](repeating: 0, count: 64)
        for entry in entries(procfs.root) {
            guard let pid = Int32(entry) else { continue }
            // The link names the inode: "net:[4026531840]".
            let n = readlink(procfs.root + "/\(pid)/ns/net", &link, link.count - 1)
            guard n > 0 else {
                if errno != ENOENT { scan.unreadable += 1 }
                continue
            }
            let text = String(decoding: link[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard let inode = UInt64(text.dropFirst(5).dropLast()) else { scan.unreadable += 1; continue }
            scan.see(inode, name: nil, path: procfs.root + "/\(pid)/ns/net", pid: pid)
        }
        return scan
    }

    /// Opens a sighting's namespace and names it. Nil when it is gone, or
    /// when the file now holds another namespace (a pid reused since the
    /// scan): the inode is checked on the open descriptor.
    /// `known` is the namespace's info from an earlier collection: names stay
    /// as they were, and nothing is read again.
    public static func open(_ sighting: Sighting, procfs: ProcFS, cgroups: CgroupResolver?,
                            agentUserNamespace: UInt64?, known: NetnsInfo? = nil) -> Found? {
        guard let handle = try? NetworkNamespaceHandle(.path(sighting.path), procfs: procfs.root),
              handle.inode == sighting.inode else { return nil }
        if let known { return Found(handle: handle, info: known) }
        var info = NetnsInfo(name: sighting.name ?? "", inode: sighting.inode, pids: sighting.pids)
        name(&info, procfs: procfs, cgroups: cgroups)
        if sighting.name != NetnsInfo.ownName {
            info.unprivilegedOwnerUID = handle.unprivilegedOwner(agentUserNamespace: agentUserNamespace)
        }
        return Found(handle: handle, info: info)
    }

    /// The namespace's name, made unique among `taken` with its inode: two
    /// pods of the same name in different Kubernetes namespaces would
    /// otherwise share every series, and the exposition would be invalid.
    public static func unique(_ info: NetnsInfo, taken: Set<String>) -> String {
        taken.contains(info.name) ? "\(info.name) [\(info.inode)]" : info.name
    }

    /// Who lives in a namespace without a name: from its first process's
    /// cgroup, the pod or container, else its systemd service, else the process.
    static func name(_ info: inout NetnsInfo, procfs: ProcFS, cgroups: CgroupResolver?) {
        // The host's namespace is the host; its first process (a kernel
        // thread, or init) would only mislead.
        if info.name == NetnsInfo.ownName {
            info.pids = []
            return
        }
        guard let pid = info.pids.first else { return }
        let comm = (try? procfs.read("\(pid)/comm"))?.split(separator: "\n").first.map(String.init)
        let path = (try? procfs.read("\(pid)/cgroup"))?.split(separator: "\n")
            .first { $0.hasPrefix("0::") }.map { String($0.dropFirst(3)) }
        let owner = path.map(CgroupOwner.init(path:))
        var named = NetnsInfo(name: info.name, inode: info.inode, pids: info.pids, comm: comm, owner: owner)
        if owner?.podUID != nil { named.pod = utsHostName(pid: pid, procfs: procfs) }
        if named.name.isEmpty {
            if let pod = named.pod { named.name = "pod:" + pod }
            else if let id = owner?.containerID { named.name = "container:" + id.prefix(12) }
            else if let uid = owner?.podUID { named.name = "pod:" + uid }
            // A service with PrivateNetwork= has a namespace of its own; a
            // session or other scope says less about it than its process does.
            else if let unit = owner?.unit, unit.hasSuffix(".service") { named.name = "unit:" + unit }
            else { named.name = "pid:\(pid) (\(comm ?? "?"))" }
        }
        info = named
    }

    /// The host name of `pid`'s UTS namespace (Kubernetes sets it to the pod
    /// name), read by a short-lived thread that enters only that namespace.
    static func utsHostName(pid: Int32, procfs: ProcFS) -> String? {
        let fd = Glibc.open(procfs.root + "/\(pid)/ns/uts", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let result = HostNameBox()
        let thread = Thread {
            defer { result.done.signal() }
            guard NetworkNamespaceHandle.enter(fd, kind: cloneNewUTS) else { return }
            var buffer = [CChar](repeating: 0, count: 256)
            if gethostname(&buffer, buffer.count) == 0 { result.name = String(cString: buffer) }
        }
        thread.start()
        // gethostname does not block; the wait is only for the thread to run.
        guard result.done.wait(timeout: .now() + 2) == .success else { return nil }
        return result.name.flatMap { $0.isEmpty ? nil : $0 }
    }

    static let cloneNewUTS: Int32 = 0x0400_0000

    private final class HostNameBox: @unchecked Sendable {
        let done = DispatchSemaphore(value: 0)
        var name: String?
    }

    static func entries(_ directory: String) -> [String] { (DirectoryEntries.list(directory) ?? []).map(\.name) }
}

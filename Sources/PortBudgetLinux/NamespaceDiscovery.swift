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
        public var isOwn: Bool { info.name == "host" }
    }

    /// Directories where tools bind-mount namespaces to keep them by name.
    public static let boundDirectories = ["/run/netns", "/var/run/docker/netns"]
    /// Pids listed per namespace.
    public static let pidsListed = 5

    /// Every namespace, the agent's own first, and how many processes'
    /// namespaces could not be read (another user's without
    /// CAP_SYS_PTRACE; pid 1 on some sandboxes even for root).
    public static func discover(procfs: ProcFS, cgroups: CgroupResolver?) -> (found: [Found], unreadable: Int) {
        var found: [Found] = []
        var byInode: [UInt64: Int] = [:]
        func add(_ target: NetnsTarget, name: String?, pid: Int32?) -> Int? {
            guard let handle = try? NetworkNamespaceHandle(target, procfs: procfs.root) else { return nil }
            if let index = byInode[handle.inode] { return index }
            byInode[handle.inode] = found.count
            found.append(Found(handle: handle, info: NetnsInfo(name: name ?? "", inode: handle.inode)))
            return found.count - 1
        }
        _ = add(.path(procfs.root + "/thread-self/ns/net"), name: "host", pid: nil)
        for directory in boundDirectories {
            for entry in entries(directory) {
                if let index = add(.path(directory + "/" + entry), name: entry, pid: nil), found[index].info.name.isEmpty {
                    found[index].info.name = entry
                }
            }
        }
        var unreadable = 0
        var link = [CChar](repeating: 0, count: 64)
        for entry in entries(procfs.root) {
            guard let pid = Int32(entry) else { continue }
            // The link names the inode ("net:[4026531840]"): open only namespaces not seen yet.
            let n = readlink(procfs.root + "/\(pid)/ns/net", &link, link.count - 1)
            guard n > 0 else {
                if errno != ENOENT { unreadable += 1 }
                continue
            }
            let text = String(decoding: link[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            var index = UInt64(text.dropFirst(5).dropLast()).flatMap { byInode[$0] }
            if index == nil { index = add(.pid(pid), name: nil, pid: pid) }
            guard let index else { unreadable += 1; continue }
            if found[index].info.pids.count < pidsListed { found[index].info.pids.append(pid) }
        }
        for index in found.indices {
            name(&found[index].info, procfs: procfs, cgroups: cgroups)
        }
        return (found, unreadable)
    }

    /// Who lives in a namespace without a name: from its first process's
    /// cgroup, the container or pod, else the unit, else the process.
    static func name(_ info: inout NetnsInfo, procfs: ProcFS, cgroups: CgroupResolver?) {
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
            else { named.name = "pid:\(pid) (\(comm ?? "?"))" }
        }
        info = named
    }

    /// The host name of `pid`'s UTS namespace (Kubernetes sets it to the pod
    /// name), read by a short-lived thread that enters only that namespace.
    static func utsHostName(pid: Int32, procfs: ProcFS) -> String? {
        let fd = open(procfs.root + "/\(pid)/ns/uts", O_RDONLY | O_CLOEXEC)
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

import Glibc
import PortBudgetCore

/// Which process holds each socket, the way `ss -p` finds out: every
/// `/proc/PID/fd/N` that links to `socket:[INODE]`. It costs a readlink per
/// open descriptor on the host, so `check --processes` does it once per run
/// and `serve` never does it per scrape.
public enum SocketOwners {
    /// The owner of every socket inode in `wanted`: the lowest pid that holds
    /// it (a socket shared across fork() is held by several). Processes
    /// that vanish or whose descriptors cannot be read (another user's,
    /// without CAP_SYS_PTRACE) are skipped; `unreadable` counts them.
    public static func scan(procfs: ProcFS, wanted: Set<UInt32>) -> (owners: [UInt32: ProcessRef], unreadable: Int) {
        var owners: [UInt32: ProcessRef] = [:]
        var unreadable = 0
        guard !wanted.isEmpty, let entries = DirectoryEntries.list(procfs.root) else { return ([:], 0) }
        let pids = entries.compactMap { Int32($0.name) }.sorted()
        var link = [CChar](repeating: 0, count: 64)
        for pid in pids {
            let fdDirectory = procfs.path("\(pid)/fd")
            guard let fds = DirectoryEntries.list(fdDirectory) else {
                if errno != ENOENT { unreadable += 1 }
                continue
            }
            var comm: String? = nil
            for entry in fds {
                let fd = entry.name
                guard fd.first?.isNumber == true else { continue }
                let n = readlink(fdDirectory + "/" + fd, &link, link.count - 1)
                guard n > 8 else { continue }
                guard let inode = socketInode(link[0..<n]), wanted.contains(inode), owners[inode] == nil else { continue }
                if comm == nil { comm = (try? procfs.read("\(pid)/comm"))?.split(separator: "\n").first.map(String.init) ?? "?" }
                owners[inode] = ProcessRef(pid: pid, comm: comm!)
            }
        }
        return (owners, unreadable)
    }

    /// `socket:[12345]` → 12345.
    static func socketInode(_ link: ArraySlice<CChar>) -> UInt32? {
        let bytes = link.map { UInt8(bitPattern: $0) }
        let prefix = Array("socket:[".utf8)
        guard bytes.count > prefix.count + 1, bytes.starts(with: prefix), bytes.last == UInt8(ascii: "]") else { return nil }
        return UInt32(String(decoding: bytes[prefix.count..<(bytes.count - 1)], as: UTF8.self))
    }
}

import Glibc

/// The N member namespaces, each with a listener and C held connections to
/// it, in a range of its own (the namespaces benchmark's 4,000 ports by
/// default; the flood's root-owned namespace has 10). They are made from this process's main thread, which enters each one
/// to write its sysctls and start its generators there, then returns to the
/// host namespace.
final class Fleet {
    final class Member {
        let name: String
        var listener: Child?
        var connector: Child?
        var path: String { "/run/netns/" + name }
        init(name: String) { self.name = name }
    }

    let prefix: String
    let loadgen: String
    let connections: Int
    let hostFD: Int32
    let range: (low: Int, high: Int)
    let port: Int
    private(set) var members: [Member] = []
    private var made = 0
    /// The hash table sizes a member sees (negative: the shared host-wide table).
    private(set) var memberHashes = "?"

    init(prefix: String, loadgen: String, connections: Int, hostFD: Int32,
         range: (low: Int, high: Int) = NamespacesBench.range, port: Int = NamespacesBench.memberPort) {
        self.prefix = prefix
        self.loadgen = loadgen
        self.connections = connections
        self.hostFD = hostFD
        self.range = range
        self.port = port
    }

    @discardableResult
    func add() throws -> Member {
        let member = Member(name: "\(prefix)-\(made)")
        made += 1
        guard try Child.run(["ip", "netns", "add", member.name]).status == 0 else {
            throw BenchError("`ip netns add \(member.name)` failed")
        }
        NetnsRegistry.add(member.path)
        members.append(member)
        let fd = open(member.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw BenchError("open \(member.path): errno \(errno)") }
        defer {
            close(fd)
            if setNetworkNamespace(hostFD) != 0 { log("cannot return to the host namespace: errno \(errno)"); exit(1) }
        }
        guard setNetworkNamespace(fd) == 0 else { throw BenchError("setns into \(member.name): errno \(errno)") }
        guard try Child.run(["ip", "link", "set", "lo", "up"]).status == 0 else { throw BenchError("lo up in \(member.name)") }
        try Namespace.sysctl("net.ipv4.ip_local_port_range", "\(range.low) \(range.high)")
        try Namespace.sysctl("net.core.somaxconn", "65535")
        memberHashes = "tcp_ehash_entries \(Namespace.readSysctl("net.ipv4.tcp_ehash_entries")), "
            + "udp_hash_entries \(Namespace.readSysctl("net.ipv4.udp_hash_entries"))"
        member.listener = try Child.spawn([loadgen, "listen", "--at", "127.0.0.1:\(port)", "--accept", "none",
                                           "--backlog", "65535"], stdinPipe: true, stdout: .pipe)
        guard let up = member.listener!.readLine(timeout: 30), up.contains("\"error\":null") else {
            throw BenchError("listener in \(member.name) did not start")
        }
        member.connector = try Child.spawn([loadgen, "connect", "--to", "127.0.0.1:\(port)", "--count", "\(connections)", "--hold"],
                                           stdinPipe: true, stdout: .pipe)
        guard let line = member.connector!.readLine(timeout: 60), Population.made(line) == connections,
              line.contains("\"error\":null") else {
            throw BenchError("connections in \(member.name) were not all made")
        }
        return member
    }

    func remove(_ member: Member) {
        member.connector?.finish()
        member.listener?.finish()
        _ = try? Child.run(["ip", "netns", "del", member.name], quietStderr: true)
        NetnsRegistry.remove(member.path)
        members.removeAll { $0 === member }
    }

    /// Deletes the oldest member namespace and adds a new one in its place
    /// (a new name and inode, as a restarted pod gets).
    func replaceOldest() throws -> (gone: String, fresh: Member) {
        let oldest = members[0]
        remove(oldest)
        return (oldest.name, try add())
    }

    func removeAll() {
        for member in members { member.connector?.release(); member.listener?.release() }
        for member in members { remove(member) }
    }
}

/// Namespace paths made by this run, kept where a signal handler can reach
/// them without allocating: fixed slots of NUL-terminated paths.
enum NetnsRegistry {
    static let slots = 2048, width = 128
    nonisolated(unsafe) static var table: UnsafeMutablePointer<CChar>? = nil

    static func prepare() {
        guard table == nil else { return }
        let t = UnsafeMutablePointer<CChar>.allocate(capacity: slots * width)
        t.initialize(repeating: 0, count: slots * width)
        table = t
    }

    static func add(_ path: String) {
        guard let table, path.utf8.count < width else { return }
        for i in 0..<slots where table[i * width] == 0 {
            let bytes = Array(path.utf8CString)
            for (k, b) in bytes.enumerated() { table[i * width + k] = b }
            return
        }
    }

    static func remove(_ path: String) {
        guard let table else { return }
        for i in 0..<slots where table[i * width] != 0 && String(cString: table + i * width) == path {
            table[i * width] = 0
        }
    }

    /// Async-signal-safe: detach and unlink every path still registered.
    static func deleteAll() {
        guard let table else { return }
        for i in 0..<slots where table[i * width] != 0 {
            _ = umount2(table + i * width, Int32(MNT_DETACH))
            _ = unlink(table + i * width)
        }
    }
}

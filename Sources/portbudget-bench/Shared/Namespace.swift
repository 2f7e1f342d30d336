import Glibc

/// The benchmark's private network namespace: made with `ip netns add`, then
/// entered by this process with setns(2), so every child it starts — load
/// generators, portbudget, ss, node_exporter — lives in it without `ip netns
/// exec`'s extra fork and mount work being measured.
enum Namespace {
    nonisolated(unsafe) static var path: [CChar] = []

    static func create(_ name: String) throws {
        let add = try Child.run(["ip", "netns", "add", name])
        guard add.status == 0 else { throw BenchError("`ip netns add \(name)` failed (needs root)") }
        path = Array(("/run/netns/" + name).utf8CString)
        let fd = open("/run/netns/" + name, O_RDONLY | O_CLOEXEC)
        guard fd >= 0, setNetworkNamespace(fd) == 0 else {
            throw BenchError("setns into \(name): errno \(errno)")
        }
        close(fd)
        guard try Child.run(["ip", "link", "set", "lo", "up"]).status == 0 else {
            throw BenchError("cannot bring lo up in \(name)")
        }
    }

    /// Writes a sysctl of the namespace this process is in.
    static func sysctl(_ key: String, _ value: String) throws {
        try writeFile("/proc/sys/" + key.split(separator: ".").joined(separator: "/"), value + "\n")
    }

    static func readSysctl(_ key: String) -> String {
        (readFile("/proc/sys/" + key.split(separator: ".").joined(separator: "/")) ?? "?")
            .split(separator: "\n").first.map(String.init) ?? "?"
    }

    /// What `ip netns del` does: detach the bind mount and remove it. The
    /// namespace itself ends with its last process. Async-signal-safe.
    static func delete() {
        guard !path.isEmpty else { return }
        path.withUnsafeBufferPointer { p in
            _ = umount2(p.baseAddress!, Int32(MNT_DETACH))
            _ = unlink(p.baseAddress!)
        }
    }

    /// TCP sockets in TIME_WAIT right now (/proc/net/sockstat `tw`).
    static func timeWaitCount() -> Int {
        guard let text = readFile("/proc/net/sockstat") else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("TCP:") {
            let words = line.split(separator: " ")
            if let i = words.firstIndex(of: "tw"), i + 1 < words.count { return Int(words[i + 1]) ?? 0 }
        }
        return 0
    }
}

/// setns(fd, CLONE_NEWNET). Glibc declares setns only under _GNU_SOURCE, which
/// Swift's Glibc module does not define, so it is looked up at run time.
func setNetworkNamespace(_ fd: Int32) -> Int32 {
    typealias SetNS = @convention(c) (Int32, Int32) -> Int32
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "setns") else { return -1 }
    let cloneNewNet: Int32 = 0x4000_0000
    return unsafeBitCast(symbol, to: SetNS.self)(fd, cloneNewNet)
}

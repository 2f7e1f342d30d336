import Glibc
import PortBudgetSockets

/// A tenant flooding the host with network namespaces, as any user may:
/// each namespace is a user namespace of the caller's uid with a network
/// namespace inside, its ephemeral range narrowed and drained by held
/// loopback connections. Run it as the unprivileged user (setpriv); it needs
/// no capability of its own.
///
/// One forked child holds each namespace (the agent finds namespaces by the
/// processes in them), so 1,500 namespaces cost 1,500 small processes sharing
/// this one's pages. Cleanup is certain: every child dies with this process
/// (PR_SET_PDEATHSIG), which itself dies with its parent, and a namespace
/// ends with the last socket and process in it.
public final class TenantNamespaces {
    public struct Plan: Sendable {
        public var namespaces: Int
        /// The ephemeral range each namespace is given; every destination gets one connection per port in it.
        public var range: (low: UInt16, high: UInt16)
        /// Destinations of the namespaces that have several (loopback addresses 127.0.0.1, .2, … on one port).
        public var destinations: Int
        /// One namespace in this many has `destinations` destinations; the others one. 0: none.
        public var severalEvery: Int
        /// Namespaces destroyed and made anew per second while it runs, oldest first.
        public var churnPerSecond: Double

        public init(namespaces: Int, range: (low: UInt16, high: UInt16), destinations: Int, severalEvery: Int,
                    churnPerSecond: Double) {
            self.namespaces = namespaces
            self.range = range
            self.destinations = destinations
            self.severalEvery = severalEvery
            self.churnPerSecond = churnPerSecond
        }

        func destinations(of index: Int) -> Int {
            severalEvery > 0 && index % severalEvery == severalEvery - 1 ? destinations : 1
        }
    }

    /// The port every namespace listens on for its own connections.
    public static let listenPort: UInt16 = 9000
    /// How long one namespace may take to be made before the tenant gives up.
    static let setupTimeoutMs: Int32 = 30_000

    let plan: Plan
    private var children: [(pid: pid_t, index: Int)] = []
    private var nextIndex = 0
    public private(set) var replaced = 0

    public init(plan: Plan) {
        self.plan = plan
    }

    /// Makes every namespace; on failure returns what failed (the namespaces made stay).
    public func makeAll() -> SocketFailure? {
        SocketFactory.raiseDescriptorLimit()
        // The tenant dies with whoever started it, and its children with it.
        _ = Self.prctl(Self.PR_SET_PDEATHSIG, UInt(SIGKILL), 0, 0, 0)
        while children.count < plan.namespaces {
            if let failure = makeOne() { return failure }
        }
        return nil
    }

    /// Serves until standard input closes: replaces the oldest namespace
    /// `churnPerSecond` times a second, then ends every namespace.
    public func run(until stop: () -> Bool) {
        let interval = plan.churnPerSecond > 0 ? 1 / plan.churnPerSecond : 0
        var due = Self.now() + interval
        while !stop() {
            reapUnexpected()
            if interval > 0, Self.now() >= due, !children.isEmpty {
                let oldest = children.removeFirst()
                end(oldest.pid)
                if makeOne() == nil { replaced += 1 }
                due += interval
                continue
            }
            usleep(interval > 0 ? useconds_t(max(1_000, min(100_000, (due - Self.now()) * 1e6))) : 100_000)
        }
        endAll()
    }

    /// Kills every namespace's holder and reaps it.
    public func endAll() {
        for child in children { kill(child.pid, SIGKILL) }
        for child in children { var status: Int32 = 0; _ = waitpid(child.pid, &status, 0) }
        children = []
    }

    public var alive: Int { children.count }

    private func end(_ pid: pid_t) {
        kill(pid, SIGKILL)
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
    }

    /// A holder that died on its own (OOM, a stray signal) is not replaced: the run is off plan, and says so on stderr.
    private func reapUnexpected() {
        var status: Int32 = 0
        while true {
            let pid = waitpid(-1, &status, WNOHANG)
            if pid <= 0 { return }
            children.removeAll { $0.pid == pid }
            writeError("tenant: the holder of a namespace (pid \(pid)) ended on its own\n")
        }
    }

    /// Forks one holder and waits for it to report its namespace made.
    private func makeOne() -> SocketFailure? {
        let index = nextIndex
        nextIndex += 1
        var report: [Int32] = [-1, -1]
        guard pipe(&report) == 0 else { return SocketFailure(call: "pipe", errno: errno) }
        let parent = getpid()
        let uid = getuid(), gid = getgid()
        let pid = fork()
        if pid < 0 {
            let e = errno
            close(report[0]); close(report[1])
            return SocketFailure(call: "fork", errno: e)
        }
        if pid == 0 {
            close(report[0])
            var status = hold(index: index, uid: uid, gid: gid, parent: parent)
            _ = Glibc.write(report[1], &status, 8)
            close(report[1])
            if status.errno != 0 { _exit(1) }
            while true { pause() }
        }
        close(report[1])
        defer { close(report[0]) }
        var status = HolderStatus(step: 0, errno: ETIMEDOUT)
        var p = pollfd(fd: report[0], events: Int16(POLLIN), revents: 0)
        if poll(&p, 1, Self.setupTimeoutMs) > 0 { _ = read(report[0], &status, 8) }
        guard status.errno == 0 else {
            end(pid)
            return SocketFailure(call: HolderStatus.steps[Int(status.step)], errno: status.errno)
        }
        children.append((pid, index))
        return nil
    }

    struct HolderStatus {
        var step: Int32
        var errno: Int32
        static let steps = ["namespace", "prctl", "unshare", "setgroups", "uid_map", "gid_map", "lo up",
                            "ip_local_port_range", "listen", "connect"]
    }

    /// In the child: a user namespace and a network namespace of its own,
    /// loopback up, the range set, the connections made. Returns the step
    /// that failed, or errno 0.
    private func hold(index: Int, uid: uid_t, gid: gid_t, parent: pid_t) -> HolderStatus {
        func fail(_ step: String, _ e: Int32) -> HolderStatus {
            HolderStatus(step: Int32(HolderStatus.steps.firstIndex(of: step) ?? 0), errno: e == 0 ? EIO : e)
        }
        // Its output would keep the tenant's pipes open after the tenant ends.
        let null = open("/dev/null", O_RDWR)
        if null >= 0 { dup2(null, 0); dup2(null, 1); dup2(null, 2); if null > 2 { close(null) } }
        guard Self.prctl(Self.PR_SET_PDEATHSIG, UInt(SIGKILL), 0, 0, 0) == 0 else { return fail("prctl", errno) }
        if getppid() != parent { _exit(0) }  // the tenant is already gone
        guard Self.unshare(Self.CLONE_NEWUSER | Self.CLONE_NEWNET) == 0 else { return fail("unshare", errno) }
        // Root inside maps to the tenant's own uid: the mapping any user may write for itself.
        guard Self.write("/proc/self/setgroups", "deny") else { return fail("setgroups", errno) }
        guard Self.write("/proc/self/uid_map", "0 \(uid) 1") else { return fail("uid_map", errno) }
        guard Self.write("/proc/self/gid_map", "0 \(gid) 1") else { return fail("gid_map", errno) }
        guard Self.loopbackUp() else { return fail("lo up", errno) }
        guard Self.write("/proc/sys/net/ipv4/ip_local_port_range", "\(plan.range.low) \(plan.range.high)") else {
            return fail("ip_local_port_range", errno)
        }
        let destinations = plan.destinations(of: index)
        do {
            // One listener on every loopback address; its connections wait in its queue.
            _ = try SocketFactory.listen(at: SocketAddress(host: "0.0.0.0", port: Self.listenPort)!,
                                         backlog: Int32(max(16, destinations * 2 + 16)))
        } catch let failure as SocketFailure {
            return fail("listen", failure.errno)
        } catch { return fail("listen", EIO) }
        let ports = Int(plan.range.high) - Int(plan.range.low) + 1
        for d in 0..<destinations {
            let host = "127.0.\((d + 1) / 256).\((d + 1) % 256)"
            for _ in 0..<ports {
                do {
                    _ = try SocketFactory.connectTCP(to: SocketAddress(host: host, port: Self.listenPort)!)
                } catch let failure as SocketFailure {
                    return fail("connect", failure.errno)
                } catch { return fail("connect", EIO) }
            }
        }
        return HolderStatus(step: 0, errno: 0)
    }

    static func write(_ path: String, _ text: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var bytes = Array(text.utf8)
        return Glibc.write(fd, &bytes, bytes.count) == bytes.count
    }

    /// SIOCGIFFLAGS/SIOCSIFFLAGS on "lo" with IFF_UP: struct ifreq is the
    /// 16-byte name followed by the flags (a short).
    static func loopbackUp() -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var request = [UInt8](repeating: 0, count: 40)
        request[0] = UInt8(ascii: "l")
        request[1] = UInt8(ascii: "o")
        let ok = request.withUnsafeMutableBytes { buffer -> Bool in
            guard ioctl(fd, 0x8913, buffer.baseAddress!) == 0 else { return false }  // SIOCGIFFLAGS
            buffer[16] |= 1  // IFF_UP, in the low byte of the little-endian short
            return ioctl(fd, 0x8914, buffer.baseAddress!) == 0  // SIOCSIFFLAGS
        }
        return ok
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    func writeError(_ text: String) {
        var bytes = Array(text.utf8)
        _ = Glibc.write(2, &bytes, bytes.count)
    }

    // unshare, prctl and ioctl: Glibc declares unshare only under _GNU_SOURCE,
    // and prctl and ioctl are variadic, which Swift does not import; each is
    // called through its symbol with the fixed arguments these calls take.
    static let CLONE_NEWUSER: Int32 = 0x1000_0000
    static let CLONE_NEWNET: Int32 = 0x4000_0000
    static let PR_SET_PDEATHSIG: Int32 = 1

    static func symbol(_ name: String) -> UnsafeMutableRawPointer? { dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) }

    static func unshare(_ flags: Int32) -> Int32 {
        typealias Call = @convention(c) (Int32) -> Int32
        guard let s = symbol("unshare") else { return -1 }
        return unsafeBitCast(s, to: Call.self)(flags)
    }

    static func prctl(_ option: Int32, _ a: UInt, _ b: UInt, _ c: UInt, _ d: UInt) -> Int32 {
        typealias Call = @convention(c) (Int32, UInt, UInt, UInt, UInt) -> Int32
        guard let s = symbol("prctl") else { return -1 }
        return unsafeBitCast(s, to: Call.self)(option, a, b, c, d)
    }

    static func ioctl(_ fd: Int32, _ request: UInt, _ argument: UnsafeMutableRawPointer) -> Int32 {
        typealias Call = @convention(c) (Int32, UInt, UnsafeMutableRawPointer) -> Int32
        guard let s = symbol("ioctl") else { return -1 }
        return unsafeBitCast(s, to: Call.self)(fd, request, argument)
    }
}

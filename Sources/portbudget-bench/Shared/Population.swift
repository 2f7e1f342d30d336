import Glibc

/// Builds and holds the socket population with the project's load
/// generator (`portbudget-loadgen`), growing it size by size:
/// - established loopback connections, over IPv4 and IPv6, spread across
///   many destination ports so no (source, destination) group runs out; the
///   server ends wait unaccepted in listen queues (they cost no descriptor),
///   the client ends are held by several generators, each well under the
///   hard RLIMIT_NOFILE of 20,000;
/// - TIME_WAIT entries from connect-and-close churn, topped up before every
///   round because each lasts only 60 s;
/// - connected UDP sockets (each holds one ephemeral port host-wide).
final class Population {
    static let v4Listen = (low: 20000, high: 20199)
    static let v6Listen = (low: 20000, high: 20049)
    static let churnPorts = (low: 22000, high: 22049)
    /// Descriptors one generator holds at most (hard RLIMIT_NOFILE is 20,000).
    static let perProcess = 18_000
    static let window = 50

    let loadgen: String
    private var listeners: [Child] = []
    private var holders: [Child] = []
    private(set) var connections = 0
    private(set) var udp = 0
    private(set) var timeWaitTarget = 0
    private(set) var exhausted: String? = nil
    private var windows = 0

    init(loadgen: String) throws {
        self.loadgen = loadgen
        // Server ends stay in the listen queues: no accept, no descriptors.
        try startListener(["--at", "127.0.0.1:\(Self.v4Listen.low)-\(Self.v4Listen.high)",
                           "--at", "[::1]:\(Self.v6Listen.low)-\(Self.v6Listen.high)", "--accept", "none"])
        // The churn servers close after the client does, so the client keeps the TIME_WAIT.
        try startListener(["--at", "127.0.0.1:\(Self.churnPorts.low)-\(Self.churnPorts.high)", "--accept", "close"])
    }

    private func startListener(_ args: [String]) throws {
        let child = try Child.spawn([loadgen, "listen"] + args + ["--backlog", "65535"], stdinPipe: true, stdout: .pipe)
        listeners.append(child)
        guard let line = child.readLine(timeout: 30), line.contains("\"error\":null") else {
            throw BenchError("listener did not start: \(args)")
        }
    }

    /// The mix for `sockets` in all: 5% UDP (at most 10,000: each takes a
    /// port from the one shared range), 10% TIME_WAIT (at most 100,000), the
    /// rest established, two sockets per connection.
    static func mix(_ sockets: Int) -> (connections: Int, timeWait: Int, udp: Int) {
        let udp = min(sockets / 20, 10_000)
        let tw = min(sockets / 10, 100_000)
        return (max(0, (sockets - udp - tw - 300) / 2), tw, udp)
    }

    /// Grows to about `sockets`, keeping what was built before.
    func grow(to sockets: Int) throws {
        let want = Self.mix(sockets)
        timeWaitTarget = want.timeWait
        var jobs: [[String]] = []
        // UDP: seven in ten over IPv4, the rest over IPv6 (one port table for both).
        if want.udp > udp {
            let more = want.udp - udp
            let v6 = more * 3 / 10
            jobs.append(["udp", "--to", "127.0.0.1:5300", "--count", "\(more - v6)", "--hold"])
            if v6 > 0 { jobs.append(["udp", "--to", "[::1]:5300", "--count", "\(v6)", "--hold"]) }
        }
        var planned = connections
        var w = windows
        while planned < want.connections && exhausted == nil {
            let n = min(Self.perProcess, want.connections - planned)
            let perDestination = max(1, n / Self.window)
            // Four IPv4 windows to one IPv6 window.
            let target: String
            if w % 5 == 4 {
                target = "[::1]:\(Self.v6Listen.low)-\(Self.v6Listen.high)"
            } else {
                let low = Self.v4Listen.low + (w % 4) * Self.window
                target = "127.0.0.1:\(low)-\(low + Self.window - 1)"
            }
            w += 1
            jobs.append(["connect", "--to", target, "--count", "\(perDestination)", "--hold"])
            planned += perDestination * Self.window
        }
        windows = w
        // Two generators at a time: one per core.
        var index = 0
        while index < jobs.count && exhausted == nil {
            let batch = Array(jobs[index..<min(index + 2, jobs.count)])
            index += batch.count
            let children = try batch.map { try Child.spawn([loadgen] + $0, stdinPipe: true, stdout: .pipe) }
            for (args, child) in zip(batch, children) {
                holders.append(child)
                guard let line = child.readLine(timeout: 300) else {
                    throw BenchError("generator \(args.joined(separator: " ")) reported nothing")
                }
                let made = Self.made(line)
                if args[0] == "udp" { udp += made } else { connections += made }
                if !line.contains("\"error\":null") {
                    exhausted = "\(args.joined(separator: " ")): \(line)"
                    log("the machine holds no more: \(exhausted!)")
                }
            }
        }
        try topUpTimeWait()
    }

    static func made(_ line: String) -> Int {
        guard let r = line.firstRange(of: "\"made\":") else { return 0 }
        return Int(line[r.upperBound...].prefix { $0.isNumber }) ?? 0
    }

    /// Churns until TIME_WAIT is back near its target (entries expire after 60 s).
    func topUpTimeWait() throws {
        for _ in 0..<3 {
            let deficit = timeWaitTarget - Namespace.timeWaitCount()
            if deficit <= max(200, timeWaitTarget / 50) { return }
            let destinations = Self.churnPorts.high - Self.churnPorts.low + 1
            let perDestination = (deficit + destinations - 1) / destinations
            _ = try Child.run([loadgen, "churn", "--to", "127.0.0.1:\(Self.churnPorts.low)-\(Self.churnPorts.high)",
                               "--count", "\(perDestination)", "--batch", "1000"], quietStderr: true)
        }
    }

    var generatorCount: Int { holders.count }

    /// Lets every generator go and waits for it.
    func shutdown() {
        for child in holders + listeners { child.release() }
        for child in holders + listeners {
            // A generator that does not leave within a few seconds is ended.
            let deadline = monotonicSeconds() + 10
            var status: Int32 = 0
            while waitpid(child.pid, &status, WNOHANG) == 0 && monotonicSeconds() < deadline { usleep(20_000) }
            if monotonicSeconds() >= deadline { kill(child.pid, SIGKILL); waitpid(child.pid, &status, 0) }
            untrack(child.pid)
        }
        holders = []
        listeners = []
    }
}

import Foundation
import XCTest
import PortBudgetCore

/// A private network namespace for one test: its own loopback, its own port
/// range and sysctls, and two non-loopback addresses (10.77.0.1, fd77::1)
/// that exist only inside it. Deleted at teardown.
final class NetworkNamespace {
    let name: String
    private var held: [HeldProcess] = []
    private static let counter = Counter()

    /// Creates the namespace, or skips the test when the machine cannot (not
    /// root, no `ip`). Under CI=true a skip is a failure.
    init(range: (Int, Int) = (40000, 40099), reserved: String? = nil, twReuse: Int? = nil,
         file: StaticString = #filePath, line: UInt = #line) throws {
        name = "pbtest-\(getpid())-\(Self.counter.next())"
        guard geteuid() == 0 else {
            try Self.skip("needs root to create network namespaces (run as root, or with sudo)", file: file, line: line)
            throw XCTSkip("unreachable")
        }
        let created = Command.run(["ip", "netns", "add", name])
        guard created.status == 0 else {
            try Self.skip("`ip netns add` failed: \(created.stderr)", file: file, line: line)
            throw XCTSkip("unreachable")
        }
        try must(["ip", "-n", name, "link", "set", "lo", "up"])
        // Non-loopback addresses on lo: the kernel's tcp_tw_reuse=2 looks at
        // the addresses, not the device, so these count as off-loopback.
        try must(["ip", "-n", name, "addr", "add", "10.77.0.1/32", "dev", "lo"])
        try must(["ip", "-n", name, "addr", "add", "fd77::1/128", "dev", "lo", "nodad"])
        try sysctl("net.ipv4.ip_local_port_range", "\(range.0) \(range.1)")
        try sysctl("net.core.somaxconn", "65535")
        if let reserved { try sysctl("net.ipv4.ip_local_reserved_ports", reserved) }
        if let twReuse { try sysctl("net.ipv4.tcp_tw_reuse", "\(twReuse)") }
    }

    static func skip(_ why: String, file: StaticString, line: UInt) throws {
        if ProcessInfo.processInfo.environment["CI"] == "true" {
            XCTFail("CI=true, so this cannot be skipped: \(why)", file: file, line: line)
        }
        throw XCTSkip(why)
    }

    /// Releases every generator this namespace holds (their sockets close).
    @discardableResult
    func releaseHeld() -> Int {
        let count = held.count
        for process in held { process.release() }
        held = []
        return count
    }

    deinit {
        for process in held { process.release() }
        _ = Command.run(["ip", "netns", "del", name])
    }

    func sysctl(_ key: String, _ value: String) throws {
        try must(["sysctl", "-qw", "\(key)=\(value)"], inside: true)
    }

    @discardableResult
    func must(_ arguments: [String], inside: Bool = false) throws -> Command.Output {
        let output = Command.run(inside ? ["ip", "netns", "exec", name] + arguments : arguments)
        guard output.status == 0 else {
            throw Failure("\(arguments.joined(separator: " ")) exited \(output.status): \(output.stderr)")
        }
        return output
    }

    /// Runs a command inside the namespace.
    func run(_ arguments: [String], timeout: TimeInterval = 60) -> Command.Output {
        Command.run(["ip", "netns", "exec", name] + arguments, timeout: timeout)
    }

    // MARK: load generator

    /// Starts a generator that keeps its sockets until the namespace goes
    /// away, and returns what it reported.
    @discardableResult
    func hold(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> LoadOutcome {
        let process = try HeldProcess(["ip", "netns", "exec", name, Binaries.loadgen] + arguments)
        held.append(process)
        guard let first = process.firstLine(timeout: 30), let outcome = LoadOutcome(json: first) else {
            throw Failure("loadgen \(arguments.joined(separator: " ")) reported nothing: \(process.stderrText())")
        }
        return outcome
    }

    /// Runs a generator to completion (its sockets close when it exits).
    func load(_ arguments: [String]) throws -> LoadOutcome {
        let output = run([Binaries.loadgen] + arguments)
        guard let line = output.stdout.split(separator: "\n").first, let outcome = LoadOutcome(json: String(line)) else {
            throw Failure("loadgen \(arguments.joined(separator: " ")) exited \(output.status): \(output.stderr)")
        }
        return outcome
    }

    /// How many more connect()s to `destination` the kernel accepts, and the
    /// error that stops them.
    func probeConnects(to destination: String, extra: [String] = []) throws -> LoadOutcome {
        try hold(["connect", "--to", destination, "--count", "70000", "--until-fail", "--hold"] + extra)
    }

    /// Counts sockets in `state` as the kernel shows them through `ss`.
    func socketCount(state: String) -> Int {
        run(["ss", "-tanH", "state", state]).stdout.split(separator: "\n").count
    }

    /// Waits until `ss` shows `count` sockets in `state` — churn has settled —
    /// and returns how many it shows. Under heavy load the kernel has been
    /// seen to drop a few TIME_WAIT entries early; the tests then hold the
    /// agent to what the kernel has, which must still be most of what was built.
    @discardableResult
    func settledSockets(state: String, expected count: Int, timeout: TimeInterval = 5, asserting: Bool = true,
                        file: StaticString = #filePath, line: UInt = #line) throws -> Int {
        let deadline = Date().addingTimeInterval(timeout)
        var seen = socketCount(state: state)
        while seen != count && Date() < deadline {
            usleep(50_000)
            seen = socketCount(state: state)
        }
        if asserting {
            XCTAssertGreaterThanOrEqual(seen, count * 8 / 10, "ss shows \(seen) sockets in \(state), built \(count)",
                                        file: file, line: line)
        }
        return seen
    }

    // MARK: the agent

    /// `portbudget check --json --top 0` inside the namespace.
    func check(_ extra: [String] = []) throws -> (report: PortBudgetReport, status: Int32) {
        let output = run([Binaries.portbudget, "check", "--json", "--top", "0"] + extra)
        guard [0, 1, 2].contains(output.status) else {
            throw Failure("check exited \(output.status): \(output.stderr)")
        }
        let report = try JSONDecoder().decode(PortBudgetReport.self, from: Data(output.stdout.utf8))
        return (report, output.status)
    }
}

/// What one generator command reported.
struct LoadOutcome: Equatable {
    var made: Int
    var error: String?

    init(made: Int, error: String?) {
        self.made = made
        self.error = error
    }

    init?(json: String) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
              let made = object["made"] as? Int else { return nil }
        self.made = made
        error = object["error"] as? String
    }
}

struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

final class Counter: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()
    func next() -> Int { lock.lock(); defer { lock.unlock() }; value += 1; return value }
}

/// Where the package's executables were built: beside the test bundle.
enum Binaries {
    static let directory: String = {
        if let dir = ProcessInfo.processInfo.environment["PORTBUDGET_BIN_DIR"] { return dir }
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("portbudget").path) { return url.path }
        }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/debug").path
    }()
    static var portbudget: String { directory + "/portbudget" }
    static var loadgen: String { directory + "/portbudget-loadgen" }
}

extension HeldProcess {
    /// What the agent names a namespace this process alone holds: its
    /// systemd service when it runs in one (a test started from a service,
    /// as some CI runners are), else `pid:PID (comm)`.
    var namespaceName: String {
        let pid = process.processIdentifier
        let comm = (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
        let path = (try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("0::") }.map { String($0.dropFirst(3)) }
        if let unit = path.map(CgroupOwner.init(path:))?.unit, unit.hasSuffix(".service") { return "unit:" + unit }
        return "pid:\(pid) (\(comm))"
    }

    /// A network namespace no name points at, held only by this process
    /// (`unshare -n`): its own `range`, a listener on 127.0.0.1:`port` and
    /// `connections` connections to it, until the process is released.
    static func unsharedNamespace(range: (Int, Int), port: Int, connections: Int) throws -> HeldProcess {
        let script = """
            import socket, subprocess, sys
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            open("/proc/sys/net/ipv4/ip_local_port_range", "w").write("\(range.0) \(range.1)")
            server = socket.socket(); server.bind(("127.0.0.1", \(port))); server.listen(100)
            clients = [socket.create_connection(("127.0.0.1", \(port))) for _ in range(\(connections))]
            print("ready", flush=True); sys.stdin.read()
            """
        let process = try HeldProcess(["unshare", "-n", "python3", "-c", script])
        guard process.firstLine(timeout: 10) == "ready" else {
            process.release()
            throw Failure("unshare -n namespace did not start: \(process.stderrText())")
        }
        return process
    }
}

extension NetworkNamespace {
    /// Connects and closes `count` times towards `destination` (a server in
    /// `--accept close` mode, so this side keeps the TIME_WAIT), and tops up
    /// what the kernel retired early — seen on loaded machines — up to three
    /// times. Returns how many TIME_WAIT entries `ss` then shows.
    ///
    /// `tcp_tw_reuse` is off while it builds: a top-up runs after the wait
    /// for `ss`, when the first entries are past the reuse delay, and with
    /// reuse on the kernel may hand connect() one of those ports instead of a
    /// free one, so the count would never grow. The namespace's own value is
    /// back before this returns.
    func churnTimeWait(to destination: String, count: Int, file: StaticString = #filePath, line: UInt = #line) throws -> Int {
        let reuse = try must(["sysctl", "-n", "net.ipv4.tcp_tw_reuse"], inside: true).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        try sysctl("net.ipv4.tcp_tw_reuse", "0")
        defer { try? sysctl("net.ipv4.tcp_tw_reuse", reuse) }
        var built = 0
        for round in 1...3 {
            _ = try load(["churn", "--to", destination, "--count", "\(count - built)"])
            built = try settledSockets(state: "time-wait", expected: count, asserting: false)
            if built >= count { break }
            print("churn toward \(destination), round \(round) of 3: ss shows \(built) of \(count) TIME_WAIT entries")
        }
        XCTAssertGreaterThanOrEqual(built, count * 8 / 10, "ss shows \(built) sockets in time-wait after topping up to \(count)",
                                    file: file, line: line)
        return built
    }
}

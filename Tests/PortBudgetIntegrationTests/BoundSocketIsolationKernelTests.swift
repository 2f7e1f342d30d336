import Foundation
import Logging
import PortBudgetCore
import PortBudgetLinux
import XCTest

/// Each namespace's sockets bound before connect() live in a map of its
/// own: a census reads its own namespace's entries however many another
/// holds, and a namespace that fills its map leaves every other one exact.
/// Collected in-process (the failure programs loaded by this test), through
/// `--netns`'s path or `--all-namespaces`' (which knows a tenant's namespace
/// as such), on a thread of their own (the first enters the namespaces).
final class BoundSocketIsolationKernelTests: XCTestCase {
    /// argv: address, port. Listens there and accepts everything; each line
    /// on standard input is either a count — that many more clients, each
    /// bind(address, 0) then connect() as OpenBSD `nc -s` does — "plain N"
    /// (that many clients whose port connect() chooses), or "close",
    /// which resets every client (no TIME_WAIT keeps them, or their ports,
    /// alive). Prints "clients N" after each.
    static let boundClients = """
        import resource, socket, struct, sys, threading
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        host, port = sys.argv[1], int(sys.argv[2])
        listener = socket.socket(); listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port)); listener.listen(65535)
        accepted, clients = [], []
        def accept():
            while True: accepted.append(listener.accept()[0])
        threading.Thread(target=accept, daemon=True).start()
        print("clients 0", flush=True)
        for line in sys.stdin:
            if line.startswith("plain"):
                for _ in range(int(line.split()[1])):
                    c = socket.socket(); c.connect((host, port)); clients.append(c)
            elif line.strip() == "close":
                for c in clients:
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); c.close()
                clients = []
            else:
                for _ in range(int(line)):
                    c = socket.socket(); c.bind((host, 0)); c.connect((host, port)); clients.append(c)
            print(f"clients {len(clients)}", flush=True)
        """

    /// A namespace with the clients' helper running in it.
    final class Clients {
        /// The `ip netns add` namespace, nil for a tenant's.
        let ns: NetworkNamespace?
        private var helper: HeldProcess?
        var process: HeldProcess { helper! }
        let handle: NetworkNamespaceHandle
        private var answers = 1

        /// In a host-owned namespace of its own (`ip netns add`); `idle`
        /// leaves it without a socket until `start()`.
        init(range: (Int, Int), idle: Bool = false) throws {
            let ns = try NetworkNamespace(range: range)
            self.ns = ns
            handle = try NetworkNamespaceHandle(.name(ns.name))
            if !idle { try start() }
        }

        func start() throws {
            guard let ns else { return }
            let process = try HeldProcess(["ip", "netns", "exec", ns.name, "python3", "-c",
                                           BoundSocketIsolationKernelTests.boundClients, "127.0.0.1", "9001"])
            helper = process
            try Self.started(process)
        }

        /// As a tenant would: uid `tenantUID` makes a user namespace and a
        /// network namespace inside it (`unshare -U -r -n`), no capability needed.
        init(tenantUID: Int, range: (Int, Int)) throws {
            guard geteuid() == 0 else {
                try NetworkNamespace.skip("needs root to run a tenant as another uid", file: #filePath, line: #line)
                throw XCTSkip("unreachable")
            }
            ns = nil
            let setup = "ip link set lo up && echo '\(range.0) \(range.1)' > /proc/sys/net/ipv4/ip_local_port_range"
                + " && exec python3 -c \"$0\" 127.0.0.1 9001"
            let process = try HeldProcess(["setpriv", "--reuid=\(tenantUID)", "--regid=\(tenantUID)", "--clear-groups", "--",
                                       "unshare", "-U", "-r", "-n", "sh", "-c", setup, BoundSocketIsolationKernelTests.boundClients])
            helper = process
            try Self.started(process)
            // Every step above execs, so the helper's pid is the one that unshared.
            handle = try NetworkNamespaceHandle(.pid(process.process.processIdentifier))
        }

        private static func started(_ process: HeldProcess) throws {
            guard process.firstLine(timeout: 10) == "clients 0" else {
                throw Failure("the clients' helper did not start: \(process.stderrText())")
            }
        }

        deinit { helper?.release() }

        /// Sends `line` and waits for the helper to report `expected` clients.
        func send(_ line: String, expecting expected: Int) throws {
            process.send(line)
            answers += 1
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline {
                let text = process.stdoutText()
                let lines = text[..<(text.lastIndex(of: "\n") ?? text.startIndex)].split(separator: "\n")
                if lines.count >= answers {
                    guard lines[answers - 1] == "clients \(expected)" else {
                        throw Failure("expected \(expected) clients, got \(lines[answers - 1]): \(process.stderrText())")
                    }
                    return
                }
                usleep(10_000)
            }
            throw Failure("the clients' helper did not answer \"\(line)\": \(process.stderrText())")
        }
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// The agent's collection source over `namespaces` with the failure
    /// programs loaded, and its tracker; skips when BPF is unavailable.
    func source(_ namespaces: [Clients]) throws -> (CollectionSource, BoundSocketTracker, FailurePrograms) {
        try source(.netns(namespaces.map { ($0.handle, $0.ns?.name ?? "") }))
    }

    func source(_ scope: CollectionSource.Scope) throws -> (CollectionSource, BoundSocketTracker, FailurePrograms) {
        var configuration = CollectionSource.Configuration(scope: scope, holders: nil)
        configuration.failures = FailurePrograms.Options()
        let source = CollectionSource(configuration, logger: Logger(label: "test"))
        let failures = source.collectors.collectors.lazy.compactMap { $0 as? FailureCollector }.first
        guard let tracker = failures?.boundSockets, let programs = failures?.loaded else {
            try NetworkNamespace.skip("the failure programs did not load (needs CAP_BPF and CAP_PERFMON)", file: #filePath, line: #line)
            throw XCTSkip("unreachable")
        }
        return (source, tracker, programs)
    }

    /// One collection, on a thread of its own (it enters the namespaces).
    func collect(_ source: CollectionSource) -> CollectionResult {
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: CollectionResult?
        let thread = Thread {
            result = source.collect()
            done.signal()
        }
        thread.start()
        done.wait()
        return result!
    }

    func tracking(_ result: CollectionResult, _ clients: Clients) -> PortBudgetReport.BindTracking? {
        result.namespaces.first { $0.netns.inode == clients.handle.inode }?.report?.tcp.bindTracking
    }

    func testACensusReadsOnlyItsOwnNamespacesEntries() throws {
        let crowded = try Clients(range: (40000, 41999))
        let quiet = try Clients(range: (42000, 42049))
        let (source, tracker, _) = try source([crowded, quiet])
        // The first collection gives each namespace its map; sockets from then on are remembered.
        _ = collect(source)
        try crowded.send("900", expecting: 900)
        try quiet.send("10", expecting: 10)

        let result = collect(source)
        XCTAssertEqual(tracking(result, crowded), .init(boundBeforeConnectPorts: 900, untrackedSockets: 0))
        XCTAssertEqual(tracking(result, quiet), .init(boundBeforeConnectPorts: 10, untrackedSockets: 0))
        // Read once as the dumps begin and once after: its own 10 entries, not the 900 beside them.
        XCTAssertEqual(tracker.entriesRead(lastCensusOf: quiet.handle.inode), 20)
        XCTAssertEqual(tracker.entriesRead(lastCensusOf: crowded.handle.inode), 1_800)

        // 900 of 1,024 made the crowded map grow: its entries move to a
        // bigger one over the next collection and stay known throughout.
        XCTAssertEqual(tracker.capacity(of: crowded.handle.inode), 4_096)
        XCTAssertEqual(tracker.capacity(of: quiet.handle.inode), BoundSocketAllowance.initialSockets)
        for round in 0..<2 {
            let again = collect(source)
            XCTAssertEqual(tracking(again, crowded), .init(boundBeforeConnectPorts: 900, untrackedSockets: 0), "round \(round)")
            XCTAssertEqual(tracking(again, quiet), .init(boundBeforeConnectPorts: 10, untrackedSockets: 0), "round \(round)")
            XCTAssertEqual(tracker.entriesRead(lastCensusOf: quiet.handle.inode), 20, "round \(round)")
            XCTAssertEqual(tracker.entriesRead(lastCensusOf: crowded.handle.inode), 1_800, "round \(round)")
        }
        XCTAssertEqual(tracker.remembered(), 910)

        // Closed sockets are forgotten: the crowded census reads nothing more.
        try crowded.send("close", expecting: 0)
        _ = collect(source)
        _ = collect(source)
        XCTAssertEqual(tracker.entriesRead(lastCensusOf: crowded.handle.inode), 0)
        XCTAssertEqual(tracker.remembered(), 10)
    }

    func testANamespaceThatFillsItsMapLeavesAnotherExact() throws {
        let crowded = try Clients(range: (40000, 41999))
        let quiet = try Clients(range: (42000, 42049))
        let (source, tracker, programs) = try source([crowded, quiet])
        _ = collect(source)
        let initial = BoundSocketAllowance.initialSockets
        // More than the crowded namespace's first map holds: the rest are refused.
        try crowded.send("1500", expecting: 1_500)
        try quiet.send("10", expecting: 10)

        let full = collect(source)
        let crowdedTracking = try XCTUnwrap(tracking(full, crowded))
        XCTAssertFalse(crowdedTracking.exact, "a socket its full map refused may be among them: not exact")
        XCTAssertEqual(crowdedTracking.boundBeforeConnectPorts + crowdedTracking.untrackedSockets, 1_500,
                       "every socket is either known or counted untracked, none silently connect()'s")
        XCTAssertEqual(tracking(full, quiet), .init(boundBeforeConnectPorts: 10, untrackedSockets: 0),
                       "the other namespace stays exact")
        XCTAssertEqual(programs.drops()["bound_sockets"], UInt64(1_500 - initial), "each refusal counted")
        XCTAssertEqual(tracker.drops()[BoundSocketTracker.namespaceDropReason], 0, "no namespace was refused a map")
        XCTAssertEqual(tracker.capacity(of: crowded.handle.inode), 4 * initial, "half full or more: it grew")
        // A refused socket may be bound and unknown: the kernel's filter labels that census's sockets.
        XCTAssertEqual(tracker.walkedOnce(lastCensusOf: crowded.handle.inode), false)
        XCTAssertEqual(tracker.walkedOnce(lastCensusOf: quiet.handle.inode), true)

        // The refused sockets stay untracked until they close; made anew, they all fit the bigger map.
        try crowded.send("close", expecting: 0)
        _ = collect(source)
        _ = collect(source)
        XCTAssertEqual(tracker.walkedOnce(lastCensusOf: crowded.handle.inode), true, "no refusal since: one walk again")
        try crowded.send("1500", expecting: 1_500)
        let healed = collect(source)
        XCTAssertEqual(tracking(healed, crowded), .init(boundBeforeConnectPorts: 1_500, untrackedSockets: 0))
        XCTAssertEqual(tracking(healed, quiet), .init(boundBeforeConnectPorts: 10, untrackedSockets: 0))
    }

    /// With every namespace watched, a tenant's namespace (in a user
    /// namespace an unprivileged user made) stops growing at the tenant's
    /// allowance while a host-owned one grows on; filling its map leaves the
    /// host-owned namespace exact.
    func testATenantsMapStopsAtItsAllowanceTheHostsGrowsOn() throws {
        let host = try Clients(range: (40000, 44999))
        let tenant = try Clients(tenantUID: 4247, range: (40000, 44999))
        let (source, tracker, _) = try source(.all)
        _ = collect(source)
        let tenantEntry = collect(source).namespaces.first { $0.netns.inode == tenant.handle.inode }
        XCTAssertEqual(tenantEntry?.netns.unprivilegedOwnerUID, 4247, "the tenant's namespace is known as such")

        // 3,000 each overflow both first maps (1,024): both grow to 4,096 and
        // stay untracked until those sockets close; made again, all fit.
        try host.send("3000", expecting: 3_000)
        try tenant.send("3000", expecting: 3_000)
        let overflowed = collect(source)
        XCTAssertEqual(tracking(overflowed, host)?.exact, false)
        XCTAssertEqual(tracking(overflowed, tenant)?.exact, false)
        for clients in [host, tenant] { try clients.send("close", expecting: 0) }
        _ = collect(source)
        _ = collect(source)
        for clients in [host, tenant] { try clients.send("3000", expecting: 3_000) }
        let fitted = collect(source)
        XCTAssertEqual(tracking(fitted, host), .init(boundBeforeConnectPorts: 3_000, untrackedSockets: 0))
        XCTAssertEqual(tracking(fitted, tenant), .init(boundBeforeConnectPorts: 3_000, untrackedSockets: 0))
        // Half full again: the host-owned map grows, the tenant's is at its most.
        XCTAssertEqual(tracker.capacity(of: host.handle.inode), 16_384)
        XCTAssertEqual(tracker.capacity(of: tenant.handle.inode), BoundSocketAllowance.tenantNamespaceSockets)

        // 2,000 more each: the tenant's map is full, the host's is not.
        for clients in [host, tenant] { try clients.send("2000", expecting: 5_000) }
        let tenantFull = collect(source)
        XCTAssertEqual(tracking(tenantFull, host), .init(boundBeforeConnectPorts: 5_000, untrackedSockets: 0))
        let tenantTracking = try XCTUnwrap(tracking(tenantFull, tenant))
        XCTAssertFalse(tenantTracking.exact)
        XCTAssertEqual(tenantTracking.boundBeforeConnectPorts + tenantTracking.untrackedSockets, 5_000)
    }

    /// With every namespace watched, one holding no socket is not dumped
    /// (its counters say so) — but its first census dumps it anyway, since
    /// the counters were read before its map existed. Once it has sockets,
    /// those bound before connect() are known and those connect() gave a
    /// port are not taken for older ones.
    func testANamespaceIdleAtFirstIsExactOnceBusy() throws {
        let idle = try Clients(range: (42000, 42049), idle: true)
        let (source, _, _) = try source(.all)
        _ = collect(source)
        _ = collect(source)
        try idle.start()
        try idle.send("10", expecting: 10)
        try idle.send("plain 5", expecting: 15)
        let busy = collect(source)
        XCTAssertEqual(tracking(busy, idle), .init(boundBeforeConnectPorts: 10, untrackedSockets: 0))
        let report = try XCTUnwrap(busy.namespaces.first { $0.netns.inode == idle.handle.inode }?.report)
        XCTAssertEqual(report.tcp.groups.first { $0.peerPort == 9001 }?.used, 5, "the plain connect()s share the destination's ports")
    }
}

import PortBudgetCore
import PortBudgetLinux
import XCTest

/// A census with the namespace's counters asks the kernel for TCP once where
/// no connection in the range took its port with bind(): the dump leaves out
/// only such connections, and sockstat's `inuse` (unmoved, with snmp's opens,
/// around the dump) proves it left out none. Where one exists, a second dump
/// takes it. Either way the report is the two-dump census's, and the kernel
/// accepts exactly as many more connect()s as it says are free.
final class OneDumpCensusKernelTests: XCTestCase {
    /// One census through sockets made inside `namespace`, as a kept session
    /// runs it; `counters: false` leaves snmp out, so nothing is proved and
    /// the census makes its two dumps. Returns the report (its kernel counters
    /// dropped) and the dump requests made.
    func census(of namespace: NetworkNamespace, counters: Bool) throws -> (report: PortBudgetReport, requests: Int) {
        let census = SockDiagCollector(attribution: nil, thresholds: Thresholds())
        let collectors = CollectorSet([SysctlCollector()] + (counters ? [SnmpCollector()] : []) + [SockstatCollector(), census])
        let (collection, requests) = try namespace.collectAsKeptSession(collectors)
        XCTAssertNil(collection.outcomes.first { $0.error != nil }?.error)
        var report = try XCTUnwrap(collection.report)
        report.counters = [:]
        return (report, requests)
    }

    /// Every kind of socket, both families: listeners in and out of the
    /// range with accepted sockets, plain clients, TIME_WAIT, bound-only
    /// sockets, and with `explicit` one connection bind() gave port 40010
    /// (made first, before a plain client can take that port).
    func populate(_ ns: NetworkNamespace, explicit: Bool = false) throws {
        try ns.hold(["listen", "--at", "127.0.0.1:8080", "--at", "[::]:8081", "--at", "127.0.0.1:40050",
                     "--at", "127.0.0.1:9000", "--accept", "close"])
        if explicit {
            let bound = try ns.hold(["connect", "--to", "127.0.0.1:8080", "--bind", "127.0.0.1:40010", "--reuseaddr", "--hold"])
            XCTAssertEqual(bound.made, 1, bound.error ?? "")
        }
        try ns.hold(["connect", "--to", "127.0.0.1:8080", "--count", "20", "--hold"])
        try ns.hold(["connect", "--to", "127.0.0.1:40050", "--count", "4", "--hold"])
        try ns.hold(["connect", "--to", "[::1]:8081", "--count", "15", "--hold"])
        try ns.hold(["bind", "--at", "127.0.0.1:0", "--count", "3", "--hold"])
        XCTAssertEqual(try ns.load(["churn", "--to", "127.0.0.1:9000", "--count", "10"]).made, 10)
        try ns.settledSockets(state: "time-wait", expected: 10)
    }

    /// Free ports towards 127.0.0.1:8080 as the report gives them.
    func freeTowards8080(_ report: PortBudgetReport) throws -> Int {
        try XCTUnwrap(report.tcp.groups.first { $0.peerIP == "127.0.0.1" && $0.peerPort == 8080 }).free
    }

    func testOneDumpWhereNoConnectionIsExplicitlyBound() throws {
        let ns = try NetworkNamespace(twReuse: 0)
        try populate(ns)
        let once = try census(of: ns, counters: true)
        let twice = try census(of: ns, counters: false)
        XCTAssertEqual(once.requests, 1, "the counters prove no connection was left out")
        XCTAssertEqual(twice.requests, 2)
        XCTAssertEqual(once.report, twice.report)
        XCTAssertEqual(once.report.tcp.explicitBoundPorts, 4, "listener 40050, three bound-only")
        // The kernel agrees: as many more connect()s succeed as the census
        // says are free, and the next fails.
        XCTAssertEqual(try ns.probeConnects(to: "127.0.0.1:8080").made, try freeTowards8080(once.report))
    }

    func testAnExplicitlyBoundConnectionTakesASecondDump() throws {
        let ns = try NetworkNamespace(twReuse: 0)
        try populate(ns, explicit: true)
        let once = try census(of: ns, counters: true)
        let twice = try census(of: ns, counters: false)
        XCTAssertEqual(once.requests, 2, "inuse counts one socket the first dump left out")
        XCTAssertEqual(once.report, twice.report)
        XCTAssertEqual(once.report.tcp.explicitBoundPorts, 5, "listener 40050, explicit 40010, three bound-only")
        XCTAssertEqual(once.report.tcp.explicitConnectedPorts, 1)
        XCTAssertEqual(try ns.probeConnects(to: "127.0.0.1:8080").made, try freeTowards8080(once.report))
    }

    /// bind(addr, 0) before connect() leaves no bind flag for the filter to
    /// see: such clients are in the one dump, counted as without it.
    func testBindToPortZeroClientsStayInTheOneDump() throws {
        let ns = try NetworkNamespace(twReuse: 0)
        try populate(ns)
        try ns.hold(["connect", "--to", "127.0.0.1:8081", "--count", "5", "--bind", "127.0.0.1:0", "--hold"])
        let once = try census(of: ns, counters: true)
        let twice = try census(of: ns, counters: false)
        XCTAssertEqual(once.requests, 1)
        XCTAssertEqual(once.report, twice.report)
    }
}

import Foundation
import PortBudgetCore
import XCTest

/// For each kind of limit at 0 left: every call the verdict says fails does
/// fail in the kernel, and a call it does not name (a connect() to a new
/// destination, a bind() of a free port) succeeds. Host-wide bind at 0 with
/// nothing binding before connect() is a warning, not a page. (UDP at 0 and
/// bind-before-connect at 0 are in the dante and nc replays.)
final class LimitAtZeroKernelTests: XCTestCase {
    func calls(_ ns: NetworkNamespace, _ calls: [String]) throws -> [String: String] {
        let output = ns.run(["python3", "-c", ReplayScripts.calls] + calls)
        guard let object = try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: String] else {
            throw Failure("calls \(calls) printed nothing: \(output.stderr)")
        }
        return object
    }

    func testDestinationAtZeroFailsOnlyConnectToIt() throws {
        let ns = try NetworkNamespace(range: (40000, 40019))
        try ns.hold(["listen", "--at", "10.77.0.1:8080", "--at", "10.77.0.1:8081"])
        XCTAssertEqual(try ns.probeConnects(to: "10.77.0.1:8080"), LoadOutcome(made: 20, error: "EADDRNOTAVAIL"))
        let (report, status) = try ns.check()
        print("limit at zero, destination: \(report.verdict)")
        XCTAssertEqual(status, 2)
        XCTAssertEqual(report.verdict,
                       "CRITICAL: TCP 10.77.0.1 → 10.77.0.1:8080 at 100%, 0 of 20 ports left; at 0, connect() to it fails with EADDRNOTAVAIL")
        XCTAssertEqual(try calls(ns, ["connect:10.77.0.1:8080", "connect:10.77.0.1:8081", "bind:10.77.0.1:50000"]),
                       ["connect:10.77.0.1:8080": "EADDRNOTAVAIL", "connect:10.77.0.1:8081": "ok", "bind:10.77.0.1:50000": "ok"])
    }

    /// A proxy with a source address and IP_BIND_ADDRESS_NO_PORT: its ports
    /// are chosen at connect(), per destination. Every port is held, yet
    /// connect() to a new destination works: only bind(addr, 0) and
    /// listen() without a port fail, and nothing here does either.
    func testBindFullOfPortsChosenByConnectIsAWarningNamingOnlyBind() throws {
        let ns = try NetworkNamespace(range: (40000, 40019))
        let ports = (8081...8092).map(String.init)
        try ns.hold(["listen"] + ports.flatMap { ["--at", "10.77.0.1:\($0)"] } + ["--at", "10.77.0.1:8100"])
        let proxy = try HeldProcess(["ip", "netns", "exec", ns.name, "python3", "-c", ReplayScripts.bindNoPortConnects,
                                     "10.77.0.1", "15"] + ports)
        defer { proxy.release() }
        XCTAssertEqual(proxy.firstLine(timeout: 20), "ready", proxy.stderrText())
        let (report, status) = try ns.check()
        print("limit at zero, bind filled by connect(): \(report.verdict)")
        XCTAssertEqual(report.tcp.boundPorts, 20, "12 destinations × 15 connections must cover the 20 ports")
        XCTAssertEqual(report.tcp.maxGroupUtilization, 0.75)
        XCTAssertEqual(status, 1, "a full bind table nothing binds from is not a page")
        XCTAssertEqual(report.verdict, "WARNING: TCP host-wide bind at 100%, 0 of 20 ports left; at 0, bind(addr, 0) and "
                       + "listen() without a port fail with EADDRINUSE")
        XCTAssertEqual(try calls(ns, ["bind:10.77.0.1:0", "listen:", "connect:10.77.0.1:8100", "bind:10.77.0.1:50000"]),
                       ["bind:10.77.0.1:0": "EADDRINUSE", "listen:": "EADDRINUSE", "connect:10.77.0.1:8100": "ok",
                        "bind:10.77.0.1:50000": "ok"])
    }

    /// Every port in TIME_WAIT after `tcp_tw_reuse=1`: the kernel reuses
    /// them for connect(), to the same destination and to new ones; only
    /// bind(addr, 0) fails.
    func testBindFullOfReusedTimeWaitIsAWarningAndConnectStillWorks() throws {
        let ns = try NetworkNamespace(range: (40000, 40019), twReuse: 1)
        try ns.hold(["listen", "--at", "10.77.0.1:8080", "--accept", "close", "--at", "10.77.0.1:8081"])
        let built = try ns.churnTimeWait(to: "10.77.0.1:8080", count: 20)
        guard built == 20 else { return XCTFail("the kernel kept \(built) of 20 TIME_WAIT entries") }
        usleep(1_200_000)  // past tcp_tw_reuse_delay
        let (report, status) = try ns.check()
        print("limit at zero, bind filled by reusable TIME_WAIT: \(report.verdict)")
        XCTAssertEqual(report.tcp.boundPorts, 20)
        XCTAssertEqual(status, 1)
        XCTAssertEqual(report.verdict, "WARNING: TCP host-wide bind at 100%, 0 of 20 ports left; at 0, bind(addr, 0) and "
                       + "listen() without a port fail with EADDRINUSE")
        XCTAssertEqual(try calls(ns, ["bind:10.77.0.1:0", "connect:10.77.0.1:8080", "connect:10.77.0.1:8081",
                                      "bind:10.77.0.1:50000"]),
                       ["bind:10.77.0.1:0": "EADDRINUSE", "connect:10.77.0.1:8080": "ok", "connect:10.77.0.1:8081": "ok",
                        "bind:10.77.0.1:50000": "ok"])
    }
}

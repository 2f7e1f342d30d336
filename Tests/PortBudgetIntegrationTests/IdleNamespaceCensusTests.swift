import Foundation
import PortBudgetCore
@testable import PortBudgetLinux
import XCTest

/// A namespace whose `sockets: used` counts only the agent's own sockets
/// holds no TCP socket, so its census asks the kernel nothing of TCP; one
/// holding any other socket is dumped, and a bound-only TCP socket there is
/// counted. Driven as `--all-namespaces` drives a kept session: the sockets
/// are made inside the namespace, the census runs from another thread.
final class IdleNamespaceCensusTests: XCTestCase {
    /// One census of `namespace` through sockets made inside it, as a kept
    /// session does; returns the report and the dump requests made.
    func census(of namespace: NetworkNamespace) throws -> (report: PortBudgetReport?, requests: Int, failure: String?) {
        let (collection, requests) = try namespace.collectAsKeptSession(
            CollectorSet([SysctlCollector(), SockstatCollector(), SockDiagCollector(attribution: nil, thresholds: Thresholds())]))
        return (collection.report, requests, collection.outcomes.first { $0.error != nil }?.error)
    }

    func testANamespaceWithNoSocketButTheAgentsIsNotDumped() throws {
        let idle = try NetworkNamespace(range: (40000, 40049))
        // The netlink sockets of the commands that set it up stay counted
        // until the kernel frees them after an RCU grace period (tens of ms,
        // longer on a busy machine): until then it is rightly dumped.
        let deadline = Date().addingTimeInterval(10)
        while !idle.run(["cat", "/proc/net/sockstat"]).stdout.hasPrefix("sockets: used 0\n") {
            guard Date() < deadline else { return XCTFail("the namespace still counts sockets after 10 s") }
            usleep(20_000)
        }
        let result = try census(of: idle)
        XCTAssertNil(result.failure)
        XCTAssertEqual(result.requests, 0, "no TCP or UDP socket: no table is walked")
        XCTAssertEqual(result.report?.tcp.boundPorts, 0)
        XCTAssertEqual(result.report?.udp.boundPorts, 0)
    }

    func testABoundOnlySocketIsStillCounted() throws {
        let bound = try NetworkNamespace(range: (40000, 40049))
        try bound.hold(["bind", "--at", "127.0.0.1:0", "--count", "3", "--hold"])
        let result = try census(of: bound)
        XCTAssertNil(result.failure)
        XCTAssertEqual(result.requests, 1, "sockstat's inuse does not count them, `sockets: used` does: one bound-only dump")
        XCTAssertEqual(result.report?.tcp.boundPorts, 3, "the three ports bind() took")
        XCTAssertEqual(result.report?.tcp.explicitBoundPorts, 3)
    }

    /// Any socket not the agent's — here a Unix socket — means the
    /// namespace may hold a bound-only TCP socket: the dump is made.
    func testAnyOtherSocketKeepsTheDump() throws {
        let other = try NetworkNamespace(range: (40000, 40049))
        let holder = try HeldProcess(["ip", "netns", "exec", other.name, "python3", "-c",
                                      "import socket,sys; s=socket.socket(socket.AF_UNIX); print('ready', flush=True); sys.stdin.read()"])
        defer { holder.release() }
        XCTAssertEqual(holder.firstLine(timeout: 10), "ready", holder.stderrText())
        let result = try census(of: other)
        XCTAssertNil(result.failure)
        XCTAssertEqual(result.requests, 1)
        XCTAssertEqual(result.report?.tcp.boundPorts, 0)
    }
}

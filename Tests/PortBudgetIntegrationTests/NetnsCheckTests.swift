import Foundation
import PortBudgetCore
import XCTest

/// `check --netns`: another namespace measured from outside it, by name,
/// path and pid, held to the kernel; unknown ones are one-line errors.
final class NetnsCheckTests: XCTestCase {
    func check(_ target: String) throws -> PortBudgetReport {
        let output = Command.run([Binaries.portbudget, "check", "--json", "--netns", target])
        guard [0, 1, 2].contains(output.status) else { throw Failure("check --netns \(target) exited \(output.status): \(output.stderr)") }
        return try JSONDecoder().decode(PortBudgetReport.self, from: Data(output.stdout.utf8))
    }

    func testAnotherNamespaceByNamePathAndPidAgreesWithTheKernel() throws {
        let ns = try NetworkNamespace(range: (40000, 40099))
        try ns.hold(["listen", "--at", "127.0.0.1:8080"])
        let holder = try HeldProcess(["ip", "netns", "exec", ns.name, Binaries.loadgen,
                                      "connect", "--to", "127.0.0.1:8080", "--count", "30", "--hold"])
        defer { holder.release() }
        XCTAssertEqual(holder.firstLine(timeout: 30).flatMap(LoadOutcome.init(json:))?.made, 30)

        // What the namespace's own /proc/net/sockstat says (stable: nothing opens or closes now).
        let sockstat = ns.run(["cat", "/proc/net/sockstat"]).stdout
        let inuse = sockstat.split(separator: "\n").first { $0.hasPrefix("TCP:") }.flatMap { line -> Int64? in
            let words = line.split(separator: " ")
            return words.firstIndex(of: "inuse").flatMap { Int64(words[$0 + 1]) }
        }
        XCTAssertGreaterThanOrEqual(inuse ?? 0, 60, sockstat)
        for target in [ns.name, "/run/netns/\(ns.name)", "pid:\(holder.process.processIdentifier)"] {
            let report = try check(target)
            XCTAssertEqual(report.portRange.low, 40000, target)
            XCTAssertEqual(report.portRange.usable, 100, target)
            let group = try XCTUnwrap(report.tcp.groups.first { $0.peerPort == 8080 }, target)
            XCTAssertEqual(group.used, 30, target)
            // Counters come from that namespace too (thread-self), not from the agent's own.
            XCTAssertEqual(report.counters["sockstat_tcp_inuse"], inuse, target)
        }
        let report = try check(ns.name)
        let group = try XCTUnwrap(report.tcp.groups.first { $0.peerPort == 8080 })
        XCTAssertEqual(try ns.probeConnects(to: "127.0.0.1:8080"),
                       LoadOutcome(made: group.capacity - group.used, error: "EADDRNOTAVAIL"))
    }

    /// A namespace no name points at, held only by its process (`unshare -n`).
    func testANamespaceHeldOnlyByAProcess() throws {
        guard geteuid() == 0 else {
            try NetworkNamespace.skip("needs root for unshare -n", file: #filePath, line: #line)
            return
        }
        let process = try HeldProcess.unsharedNamespace(range: (41000, 41049), port: 9000, connections: 12)
        defer { process.release() }
        let report = try check("pid:\(process.process.processIdentifier)")
        XCTAssertEqual(report.portRange.low, 41000)
        XCTAssertEqual(report.portRange.usable, 50)
        XCTAssertEqual(report.tcp.groups.first { $0.peerPort == 9000 }?.used, 12)
    }

    func testUnknownNamespacesAreOneLineErrorsWithExitThree() {
        let cases = [
            ("pbtest-no-such-namespace", "no network namespace named pbtest-no-such-namespace"),
            ("pid:999999999", "no network namespace of pid 999999999"),
            ("/etc/hostname", "cannot enter the network namespace at /etc/hostname: not a network namespace"),
            ("pid:abc", "pid:PID takes a process id above 0"),
        ]
        for (target, message) in cases {
            let output = Command.run([Binaries.portbudget, "check", "--netns", target])
            XCTAssertEqual(output.status, 3, "\(target): \(output.stderr)")
            XCTAssertEqual(output.stdout, "", target)
            XCTAssertEqual(output.stderr.split(separator: "\n").count, 1, output.stderr)
            XCTAssertTrue(output.stderr.contains(message), "\(target): \(output.stderr)")
        }
    }
}

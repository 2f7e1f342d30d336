import Foundation
import PortBudgetCore
import PortBudgetLinux
import XCTest

/// Who holds the ports, held to what was built: processes moved into cgroups
/// of their own (named like systemd units) before they open sockets in a
/// private namespace with a 100-port range. The agent runs with `nsenter
/// --net`, which enters the namespace without hiding the cgroup mount the
/// way `ip netns exec` does.
final class AttributionKernelTests: XCTestCase {
    var cgroupBase = ""
    var held: [HeldProcess] = []

    override func tearDown() {
        for process in held { process.release() }
        held = []
        // Children first, then the slice.
        if !cgroupBase.isEmpty {
            for child in (try? FileManager.default.contentsOfDirectory(atPath: cgroupBase)) ?? [] where child.hasSuffix(".service") {
                rmdir(cgroupBase + "/" + child)
            }
            rmdir(cgroupBase)
        }
    }

    /// A v2 root to make cgroups in, or a skip (a failure under CI=true).
    func cgroupRoot() throws -> String {
        guard geteuid() == 0, let root = CgroupResolver(procfs: ProcFS()).root else {
            try NetworkNamespace.skip("needs root and a cgroup v2 hierarchy", file: #filePath, line: #line)
            throw XCTSkip("unreachable")
        }
        return root
    }

    /// Starts a load generator in `unit`'s cgroup (made here) inside `ns`.
    func holdInCgroup(_ unit: String, _ ns: NetworkNamespace, _ arguments: [String]) throws -> (pid: Int32, made: Int) {
        let directory = cgroupBase + "/" + unit
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let process = try HeldProcess(["sh", "-c", "echo $$ > \(directory)/cgroup.procs && exec ip netns exec \(ns.name) "
                                       + ([Binaries.loadgen] + arguments).joined(separator: " ")])
        held.append(process)
        guard let first = process.firstLine(timeout: 30), let outcome = LoadOutcome(json: first) else {
            throw Failure("loadgen in \(unit) reported nothing: \(process.stderrText())")
        }
        return (process.process.processIdentifier, outcome.made)
    }

    func check(_ ns: NetworkNamespace, _ extra: [String] = []) throws -> PortBudgetReport {
        let output = Command.run(["nsenter", "--net=/run/netns/\(ns.name)", Binaries.portbudget, "check", "--json"] + extra)
        guard [0, 1, 2].contains(output.status) else { throw Failure("check exited \(output.status): \(output.stderr)") }
        return try JSONDecoder().decode(PortBudgetReport.self, from: Data(output.stdout.utf8))
    }

    func testHoldersAreTheCgroupsAndProcessesThatOpenedTheSockets() throws {
        let root = try cgroupRoot()
        let slice = "/pbtest-\(getpid()).slice"
        cgroupBase = root + slice
        let ns = try NetworkNamespace(twReuse: 0)
        try ns.hold(["listen", "--at", "127.0.0.1:8080"])
        try ns.hold(["listen", "--at", "127.0.0.1:8081", "--accept", "close"])
        let alpha = try holdInCgroup("alpha.service", ns, ["connect", "--to", "127.0.0.1:8080", "--count", "30", "--hold"])
        let beta = try holdInCgroup("beta.service", ns, ["connect", "--to", "127.0.0.1:8080", "--count", "20", "--hold"])
        let relay = try holdInCgroup("relay.service", ns, ["udp", "--to", "127.0.0.1:5353", "--count", "15", "--hold"])
        XCTAssertEqual([alpha.made, beta.made, relay.made], [30, 20, 15])
        // TIME_WAIT towards :8081 from a generator that has exited: nobody's.
        XCTAssertEqual(try ns.load(["churn", "--to", "127.0.0.1:8081", "--count", "10"]).made, 10)
        let timeWait = try ns.settledSockets(state: "time-wait", expected: 10)

        let report = try check(ns, ["--processes", "--holders", "0"])
        XCTAssertEqual(report.attribution?.cgroupRoot, root)
        let hot = try XCTUnwrap(report.tcp.groups.first { $0.peerPort == 8080 })
        XCTAssertEqual(hot.used, 50)
        XCTAssertEqual(hot.holders?.map(\.cgroup), [slice + "/alpha.service", slice + "/beta.service"])
        XCTAssertEqual(hot.holders?.map(\.ports), [30, 20])
        XCTAssertEqual(hot.holders?.map(\.unit), ["alpha.service", "beta.service"])
        XCTAssertEqual(hot.processes?.map(\.pid), [alpha.pid, beta.pid])
        XCTAssertEqual(hot.processes?.map(\.ports), [30, 20])
        XCTAssertEqual(Set(hot.processes?.map(\.comm) ?? []), ["portbudget-load"])

        let churned = try XCTUnwrap(report.tcp.groups.first { $0.peerPort == 8081 })
        XCTAssertEqual(churned.timeWait, timeWait)
        XCTAssertEqual(churned.used, timeWait, "TIME_WAIT holds its ports (tcp_tw_reuse=0)")
        XCTAssertEqual(churned.holders, [], "TIME_WAIT belongs to nobody")
        XCTAssertEqual(churned.processes, [])
        XCTAssertEqual(report.attribution?.unattributedTimeWait, timeWait)

        XCTAssertEqual(report.udp.holders?.first?.cgroup, slice + "/relay.service")
        XCTAssertEqual(report.udp.holders?.first?.ports, 15)
        XCTAssertEqual(report.udp.processes?.first?.pid, relay.pid)
        let tcpHolders = Dictionary(uniqueKeysWithValues: (report.tcp.holders ?? []).compactMap { h in h.cgroup.map { ($0, h.ports) } })
        XCTAssertEqual(tcpHolders[slice + "/alpha.service"], 30)
        XCTAssertEqual(tcpHolders[slice + "/beta.service"], 20)

        // The text names the top holder, not an id.
        let text = Command.run(["nsenter", "--net=/run/netns/\(ns.name)", Binaries.portbudget, "check"]).stdout
        XCTAssertTrue(text.contains("HOLDER"), text)
        XCTAssertTrue(text.contains("alpha.service 60%"), text)
        XCTAssertTrue(text.contains("most held by relay.service"), text)

        // /metrics carries the same holders, bounded.
        let serve = try ExporterProcess(["nsenter", "--net=/run/netns/\(ns.name)", Binaries.portbudget, "serve",
                                         "--listen", "127.0.0.1:19959"])
        let body = try serve.await("a scrape") { ns.httpGet("http://127.0.0.1:19959/metrics") }
        XCTAssertTrue(body.contains(#"portbudget_tcp_group_holder_ports{local_ip="127.0.0.1",peer_ip="127.0.0.1",peer_port="8080",cgroup="\#(slice)/alpha.service",unit="alpha.service",container_id="",pod_uid=""} 30"#), body)
        XCTAssertTrue(body.contains(#"portbudget_cgroup_bound_ports{protocol="udp",cgroup="\#(slice)/relay.service",unit="relay.service",container_id="",pod_uid=""} 15"#), body)
        _ = serve.stop()
    }
}

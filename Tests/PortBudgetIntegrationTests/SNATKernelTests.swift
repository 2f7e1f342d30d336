import Foundation
import XCTest
import PortBudgetCore

/// Three namespaces over veth pairs — client (10.1.0.2) → router (10.1.0.1 |
/// 10.2.0.1, nftables masquerade) → server (10.2.0.2) — so the agent, run in
/// the router, is held to what the kernel's NAT really does.
final class NATTopology {
    let client: NetworkNamespace
    let router: NetworkNamespace
    let server: NetworkNamespace
    static let clientIP = "10.1.0.2", routerInside = "10.1.0.1", routerOutside = "10.2.0.1", serverIP = "10.2.0.2"
    static let clientIP6 = "fd01::2", routerInside6 = "fd01::1", routerOutside6 = "fd02::1", serverIP6 = "fd02::2"

    /// `ports`: the rule's `masquerade to :LOW-HIGH`, or nil for a bare `masquerade`.
    init(ports: ClosedRange<Int>?, file: StaticString = #filePath, line: UInt = #line) throws {
        client = try NetworkNamespace(file: file, line: line)
        router = try NetworkNamespace(file: file, line: line)
        server = try NetworkNamespace(file: file, line: line)
        try ExporterProcess.require("/usr/sbin/nft", file: file, line: line)
        try link(client, "pbc0", Self.clientIP, router, "pbr0", Self.routerInside)
        try link(router, "pbr1", Self.routerOutside, server, "pbs0", Self.serverIP)
        try client.must(["ip", "route", "add", "default", "via", Self.routerInside], inside: true)
        try server.must(["ip", "route", "add", "10.1.0.0/24", "via", Self.routerOutside], inside: true)
        try router.sysctl("net.ipv4.ip_forward", "1")
        // IPv6 too: nodad, so the addresses are usable at once.
        for (ns, device, address) in [(client, "pbc0", Self.clientIP6), (router, "pbr0", Self.routerInside6),
                                      (router, "pbr1", Self.routerOutside6), (server, "pbs0", Self.serverIP6)] {
            try ns.must(["ip", "-n", ns.name, "addr", "add", "\(address)/64", "dev", device, "nodad"])
        }
        try client.must(["ip", "-6", "route", "add", "default", "via", Self.routerInside6], inside: true)
        try server.must(["ip", "-6", "route", "add", "fd01::/64", "via", Self.routerOutside6], inside: true)
        try router.sysctl("net.ipv6.conf.all.forwarding", "1")
        let mapping = ports.map { " to :\($0.lowerBound)-\($0.upperBound)" } ?? ""
        let rules = """
            add table ip pbnat
            add chain ip pbnat post { type nat hook postrouting priority srcnat; }
            add rule ip pbnat post oifname "pbr1" meta l4proto { tcp, udp } masquerade\(mapping)
            add table ip6 pbnat6
            add chain ip6 pbnat6 post { type nat hook postrouting priority srcnat; }
            add rule ip6 pbnat6 post oifname "pbr1" meta l4proto { tcp, udp } masquerade\(mapping)

            """
        let loaded = router.run(["sh", "-c", "printf '%s' \"$0\" | nft -f -", rules])
        guard loaded.status == 0 else { throw Failure("nft -f failed: \(loaded.stderr)") }
    }

    private func link(_ a: NetworkNamespace, _ aName: String, _ aIP: String,
                      _ b: NetworkNamespace, _ bName: String, _ bIP: String) throws {
        try a.must(["ip", "link", "add", aName, "netns", a.name, "type", "veth", "peer", "name", bName, "netns", b.name])
        try a.must(["ip", "-n", a.name, "addr", "add", "\(aIP)/24", "dev", aName])
        try b.must(["ip", "-n", b.name, "addr", "add", "\(bIP)/24", "dev", bName])
        try a.must(["ip", "-n", a.name, "link", "set", aName, "up"])
        try b.must(["ip", "-n", b.name, "link", "set", bName, "up"])
    }

    /// The agent's report, run in the router.
    func check(_ extra: [String] = []) throws -> PortBudgetReport {
        try router.check(extra).report
    }

    /// Conntrack entries the kernel shows in the router for `proto` towards `port`, through `conntrack -L`.
    func conntrackCount(proto: String, port: Int) -> Int {
        let output = router.run(["conntrack", "-L", "-p", proto, "--dport", String(port)])
        return output.stdout.split(separator: "\n").filter { $0.contains("dport=\(port)") }.count
    }
}

final class SNATKernelTests: XCTestCase {
    static let smallRange = 40000...40009

    func group(_ report: PortBudgetReport, _ proto: String, port: Int) -> PortBudgetReport.SNATGroup? {
        report.snat?.groups.first { $0.protocol == proto && $0.peerPort == port && $0.peerIP == NATTopology.serverIP }
    }

    /// Fill one destination's NAT range: the agent says used = capacity
    /// exactly when the next connection is dropped and insert_failed rose;
    /// another destination port and UDP flows are groups of their own.
    func testFullNATGroupIsWhereTheNextConnectionIsDropped() throws {
        try ExporterProcess.require("/usr/sbin/conntrack")
        let nat = try NATTopology(ports: Self.smallRange)
        try nat.server.hold(["listen", "--at", "\(NATTopology.serverIP):8080", "--at", "\(NATTopology.serverIP):9090",
                             "--accept", "hold"])
        let flag = ["--snat-port-range", "40000-40009"]
        let before = try nat.check(flag)
        XCTAssertEqual(before.snat?.portRange, try SNATPortRange(parsing: "40000-40009"))
        XCTAssertEqual(before.snat?.groupCount, 0)
        let insertFailedBefore = try XCTUnwrap(before.conntrack?.insertFailed)

        // Nine connections: one port left, and the agent says so.
        try nat.client.hold(["connect", "--to", "\(NATTopology.serverIP):8080", "--count", "9", "--hold"])
        let nine = try nat.check(flag)
        let g9 = try XCTUnwrap(group(nine, "tcp", port: 8080), "\(String(describing: nine.snat))")
        XCTAssertEqual([g9.used, g9.capacity, g9.free], [9, 10, 1])
        XCTAssertEqual(g9.sourceIP, NATTopology.routerOutside)

        // Ask for three more: exactly one gets through, the next times out (its SYN dropped by the NAT).
        let more = try nat.client.hold(["connect", "--to", "\(NATTopology.serverIP):8080", "--count", "3",
                                        "--until-fail", "--hold"])
        XCTAssertEqual(more.made, 1, "the NAT range has one port left")
        XCTAssertTrue(more.error?.contains("ETIMEDOUT") ?? false, "\(String(describing: more.error))")
        let full = try nat.check(flag)
        let g10 = try XCTUnwrap(group(full, "tcp", port: 8080))
        XCTAssertEqual([g10.used, g10.capacity, g10.free], [10, 10, 0])
        XCTAssertEqual(g10.utilization, 1)
        XCTAssertEqual(nat.conntrackCount(proto: "tcp", port: 8080), 10, "conntrack -L agrees")
        XCTAssertGreaterThan(try XCTUnwrap(full.conntrack?.insertFailed), insertFailedBefore,
                             "the dropped connection shows as insert_failed")
        XCTAssertEqual(full.status, .critical)
        XCTAssertTrue(full.verdict.hasPrefix("CRITICAL: SNAT TCP 10.2.0.1 → 10.2.0.2:8080 at 100%, 0 of 10 ports left"),
                      full.verdict)

        // Another destination port is its own tuple space: it still has all ten.
        let other = try nat.client.hold(["connect", "--to", "\(NATTopology.serverIP):9090", "--count", "4", "--hold"])
        XCTAssertEqual(other.made, 4)
        // UDP flows, one datagram each, are counted apart from TCP.
        let udp = try nat.client.hold(["udp", "--to", "\(NATTopology.serverIP):5353", "--count", "6", "--send", "--hold"])
        XCTAssertEqual(udp.made, 6)
        usleep(200_000)  // the datagrams cross the router
        let mixed = try nat.check(flag)
        XCTAssertEqual(group(mixed, "tcp", port: 8080)?.used, 10)
        XCTAssertEqual(group(mixed, "tcp", port: 9090)?.used, 4)
        XCTAssertEqual(group(mixed, "udp", port: 5353)?.used, 6)
        XCTAssertEqual(group(mixed, "udp", port: 5353)?.capacity, 10)
        XCTAssertEqual(mixed.snat?.groupCount, 3)
        XCTAssertEqual(mixed.snat?.groups.first.map { "\($0.protocol):\($0.peerPort)" }, "tcp:8080", "worst first")
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(mixed.conntrack?.entries), 20)
        XCTAssertGreaterThan(try XCTUnwrap(mixed.conntrack?.limit), 0)

        // --top bounds the listed groups, not the count.
        let top = try nat.router.run([Binaries.portbudget, "check", "--json", "--top", "1"] + flag)
        let topped = try JSONDecoder().decode(PortBudgetReport.self, from: Data(top.stdout.utf8))
        XCTAssertEqual(topped.snat?.groups.count, 1)
        XCTAssertEqual(topped.snat?.groupCount, 3)
        XCTAssertEqual(top.status, 2)

        // The text report has the SNAT table and the conntrack line.
        let text = nat.router.run([Binaries.portbudget, "check"] + flag).stdout
        XCTAssertTrue(text.contains("SNAT groups (all 3, worst first; NAT range 40000-40009, 10 ports"), text)
        XCTAssertTrue(text.contains("10.2.0.2:8080") && text.contains("10/10"), text)
        XCTAssertTrue(text.contains("Conntrack"), text)
    }

    /// IPv6 masquerade is counted the same way, in groups of its own.
    func testIPv6MasqueradeIsItsOwnGroup() throws {
        let nat = try NATTopology(ports: Self.smallRange)
        try nat.server.hold(["listen", "--at", "[\(NATTopology.serverIP6)]:8080", "--at", "\(NATTopology.serverIP):8080",
                             "--accept", "hold"])
        XCTAssertEqual(try nat.client.hold(["connect", "--to", "[\(NATTopology.serverIP6)]:8080", "--count", "6", "--hold"]).made, 6)
        XCTAssertEqual(try nat.client.hold(["connect", "--to", "\(NATTopology.serverIP):8080", "--count", "2", "--hold"]).made, 2)
        let report = try nat.check(["--snat-port-range", "40000-40009"])
        let v6 = try XCTUnwrap(report.snat?.groups.first { $0.peerIP == NATTopology.serverIP6 }, "\(String(describing: report.snat))")
        XCTAssertEqual([v6.sourceIP, v6.protocol, String(v6.peerPort), String(v6.used), String(v6.capacity)],
                       [NATTopology.routerOutside6, "tcp", "8080", "6", "10"])
        XCTAssertEqual(group(report, "tcp", port: 8080)?.used, 2)
        XCTAssertEqual(report.snat?.groupCount, 2)
    }

    /// Without the flag the kernel's default range applies: 64,512 ports.
    func testDefaultRangeWithoutTheFlag() throws {
        let nat = try NATTopology(ports: nil)
        try nat.server.hold(["listen", "--at", "\(NATTopology.serverIP):8080", "--accept", "hold"])
        try nat.client.hold(["connect", "--to", "\(NATTopology.serverIP):8080", "--count", "5", "--hold"])
        let report = try nat.check()
        XCTAssertEqual(report.snat?.portRange, .kernelDefault)
        let g = try XCTUnwrap(group(report, "tcp", port: 8080), "\(String(describing: report.snat))")
        XCTAssertEqual([g.used, g.capacity], [5, 64512])
    }

    /// /metrics in the router carries the SNAT groups and the table.
    func testMetricsCarryTheNATGroupsAndTheTable() throws {
        try ExporterProcess.require("/usr/bin/curl")
        let nat = try NATTopology(ports: Self.smallRange)
        try nat.server.hold(["listen", "--at", "\(NATTopology.serverIP):8080", "--accept", "hold"])
        try nat.client.hold(["connect", "--to", "\(NATTopology.serverIP):8080", "--count", "7", "--hold"])
        let serve = try ExporterProcess([Binaries.portbudget, "serve", "--listen", "127.0.0.1:9958",
                                         "--snat-port-range", "40000-40009"], in: nat.router)
        let text = try serve.await("/metrics") { nat.router.httpGet("http://127.0.0.1:9958/metrics") }
        let labels = #"{protocol="tcp",source_ip="10.2.0.1",peer_ip="10.2.0.2",peer_port="8080"}"#
        for line in ["portbudget_snat_group_ports_used\(labels) 7", "portbudget_snat_group_ports_capacity\(labels) 10",
                     "portbudget_snat_groups 1", "portbudget_snat_max_group_utilization_ratio 0.7",
                     #"portbudget_scrape_collector_success{collector="conntrack"} 1"#] {
            XCTAssertTrue(text.contains(line + "\n"), "missing \(line) in:\n\(text)")
        }
        for name in ["portbudget_conntrack_entries ", "portbudget_conntrack_entries_limit ",
                     "portbudget_conntrack_insert_failed_total ", "portbudget_conntrack_drop_total ",
                     "portbudget_conntrack_early_drop_total ", "portbudget_conntrack_search_restart_total "] {
            XCTAssertTrue(text.contains("\n" + name), "missing \(name) in:\n\(text)")
        }
        XCTAssertNotNil(serve.stop())
    }

    /// No conntrack to read: the SNAT part is absent with one clear line and
    /// the collector reported failed; the socket budget is unchanged.
    func testWithoutConntrackTheRestOfTheReportStands() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("pb-procfs-noct-\(getpid())")
        defer { try? FileManager.default.removeItem(at: root) }
        try? FileManager.default.removeItem(at: root)
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("PortBudgetCoreTests/Fixtures/procfs-busy").path
        try FileManager.default.copyItem(atPath: fixtures, toPath: root.path)
        let output = Command.run([Binaries.portbudget, "check", "--json", "--procfs", root.path])
        XCTAssertTrue([0, 1, 2].contains(output.status), output.stderr)
        let report = try JSONDecoder().decode(PortBudgetReport.self, from: Data(output.stdout.utf8))
        XCTAssertNil(report.snat)
        XCTAssertNil(report.conntrack)
        XCTAssertEqual(report.portRange.usable, 89)
        let lines = output.stderr.split(separator: "\n").filter { $0.contains("conntrack") }
        XCTAssertEqual(lines.count, 1, output.stderr)
        XCTAssertTrue(lines.first?.contains("conntrack is not loaded in this network namespace") ?? false, output.stderr)
        // The exposition says the collector failed and carries no SNAT or conntrack series.
        let dir = root.appendingPathComponent("textfile")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let written = Command.run([Binaries.portbudget, "textfile", "--once", dir.path, "--procfs", root.path])
        XCTAssertEqual(written.status, 0, written.stderr)
        let prom = try String(contentsOf: dir.appendingPathComponent("portbudget.prom"), encoding: .utf8)
        XCTAssertTrue(prom.contains(#"portbudget_scrape_collector_success{collector="conntrack"} 0"#), prom)
        XCTAssertTrue(prom.contains("portbudget_ports_usable 89"), prom)
        XCTAssertFalse(prom.contains("portbudget_snat_") || prom.contains("portbudget_conntrack_"), prom)

        // Without CAP_NET_ADMIN the kernel refuses the dump: the same, with the reason named.
        try ExporterProcess.require("/usr/bin/setpriv")
        guard geteuid() == 0 else {
            try NetworkNamespace.skip("needs root to drop to an unprivileged user", file: #filePath, line: #line)
            return
        }
        let unprivileged = Command.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                                        Binaries.portbudget, "check", "--json"])
        XCTAssertTrue([0, 1, 2].contains(unprivileged.status), unprivileged.stderr)
        let denied = try JSONDecoder().decode(PortBudgetReport.self, from: Data(unprivileged.stdout.utf8))
        XCTAssertNil(denied.snat)
        XCTAssertGreaterThan(denied.portRange.usable, 0)
        XCTAssertTrue(unprivileged.stderr.contains("needs CAP_NET_ADMIN"), unprivileged.stderr)
        XCTAssertEqual(unprivileged.stderr.split(separator: "\n").filter { $0.contains("conntrack") }.count, 1,
                       unprivileged.stderr)
    }

    func testBadRangesAreUsageErrorsWithOneLine() {
        for bad in ["40009-40000", "0-100", "1-65536", "abc", "1024", "-"] {
            let check = Command.run([Binaries.portbudget, "check", "--snat-port-range", bad])
            XCTAssertEqual(check.status, 3, "check \(bad): \(check.stderr)")
            XCTAssertEqual(check.stderr.split(separator: "\n").count, 1, check.stderr)
            XCTAssertTrue(check.stderr.contains("--snat-port-range"), check.stderr)
            XCTAssertEqual(check.stdout, "")
            let serve = Command.run([Binaries.portbudget, "serve", "--listen", "127.0.0.1:19958", "--snat-port-range", bad],
                                    timeout: 10)
            XCTAssertEqual(serve.status, 2, "serve \(bad): \(serve.stderr)")
            XCTAssertEqual(serve.stderr.split(separator: "\n").count, 1, serve.stderr)
            let textfile = Command.run([Binaries.portbudget, "textfile", "--once", "/tmp", "--snat-port-range", bad])
            XCTAssertEqual(textfile.status, 2, "textfile \(bad): \(textfile.stderr)")
        }
    }
}

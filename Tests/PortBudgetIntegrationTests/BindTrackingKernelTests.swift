import Foundation
import PortBudgetCore
import XCTest

/// bind(addr, 0) before connect() as OpenBSD `nc -s` does it, where
/// SOCK_DIAG alone is blind: with the failure collector loaded, the agent
/// knows each such socket by cookie, so every destination's free ports are
/// what the kernel accepts; without it, the rows say they are an upper bound.
final class BindTrackingKernelTests: XCTestCase {
    static let listen = "127.0.0.1:9967"

    /// `serve --netns` from the host, so scraping spends none of the namespace's ports.
    static func serve(_ host: ReplayHost) throws -> ExporterProcess {
        try ExporterProcess.require("/usr/bin/curl")
        let serve = try ExporterProcess([Binaries.portbudget, "serve", "--netns", host.ns.name, "--listen", listen])
        _ = try serve.await("the failure collector loaded") {
            metrics().contains(#"portbudget_scrape_collector_success{collector="failures"} 1"#) ? true : nil
        }
        return serve
    }

    static func metrics(_ address: String = listen) -> String {
        Command.run(["curl", "-sf", "--max-time", "10", "http://\(address)/metrics"]).stdout
    }

    /// The value of the series named exactly by `series` (name and labels).
    static func value(_ metrics: String, _ series: String) -> Double? { ExpositionSamples.first(metrics, series + " ") }

    static func groupLabels(_ port: Int) -> String {
        #"{local_ip="10.77.0.1",peer_ip="10.77.0.1",peer_port="\#(port)"}"#
    }

    func testNetcatToFiveDestinationsEachFreeIsWhatTheKernelAccepts() throws {
        let host = try ReplayHost(range: (40000, 40049), needs: ["/usr/bin/nc"])
        let listeners = try host.helper(["python3", "-c", ReplayScripts.acceptAll, "10.77.0.1",
                                         "9001", "9002", "9003", "9004", "9005"])
        XCTAssertEqual(listeners.firstLine(timeout: 10), "ready", listeners.stderrText())
        let serve = try Self.serve(host)

        // 40 of the 50 ports, 8 towards each destination, each taken by bind(10.77.0.1, 0).
        var ncs: [HeldProcess] = []
        for i in 0..<40 {
            ncs.append(try host.start(unit: "pbbind-nc.service", ["nc", "-s", "10.77.0.1", "10.77.0.1", "\(9001 + i % 5)"]))
        }
        try host.wait("40 nc connections") { host.distinctLocalPorts("-t", 40000, 40049) == 40 }
        XCTAssertEqual(ncs.map { $0.stderrText() }.filter { !$0.isEmpty }, [])

        let metrics = try serve.await("a collection after the connections") {
            let text = Self.metrics()
            return Self.value(text, #"portbudget_tcp_bound_before_connect_ports{evidence="socket_cookie"}"#) == 40 ? text : nil
        }
        XCTAssertEqual(Self.value(metrics, "portbudget_tcp_destination_capacity_exact"), 1, metrics)
        XCTAssertEqual(Self.value(metrics, #"portbudget_tcp_bound_before_connect_ports{evidence="inferred"}"#), 0)
        for port in 9001...9005 {
            XCTAssertEqual(Self.value(metrics, "portbudget_tcp_group_ports_capacity" + Self.groupLabels(port)), 10, "\(port)")
            XCTAssertEqual(Self.value(metrics, "portbudget_tcp_group_ports_used" + Self.groupLabels(port)), 0, "\(port)")
        }

        // Without the collector the same sockets look connect()-chosen: each
        // row counts 42 free, and says it is only an upper bound.
        let (inferred, _) = try host.check()
        XCTAssertNil(inferred.tcp.bindTracking)
        XCTAssertTrue(inferred.destinationFreeIsUpperBound)
        XCTAssertEqual(inferred.tcp.groups.first { $0.peerPort == 9001 }?.free, 42)
        let text = host.ns.run([Binaries.portbudget, "check", "--top", "0"]).stdout
        XCTAssertTrue(text.contains("FREE is an upper bound"), text)
        XCTAssertTrue(text.contains("≤42"), text)

        // The kernel: exactly 10 more connect()s to each destination, as the agent said.
        for port in 9001...9005 {
            XCTAssertEqual(try host.ns.probeConnects(to: "10.77.0.1:\(port)"), LoadOutcome(made: 10, error: "EADDRNOTAVAIL"),
                           "towards \(port)")
        }
    }

    func testNetcatToOneDestinationIsFoundBindingBeforeConnect() throws {
        let host = try ReplayHost(range: (40000, 40049), needs: ["/usr/bin/nc"])
        let listeners = try host.helper(["python3", "-c", ReplayScripts.acceptAll, "10.77.0.1", "9001"])
        XCTAssertEqual(listeners.firstLine(timeout: 10), "ready", listeners.stderrText())
        let serve = try Self.serve(host)
        // And one watching every namespace, which remembers every namespace's sockets.
        let everyAddress = "127.0.0.1:9968"
        // Unpaced: every second, however many namespaces share this machine.
        let every = try ExporterProcess([Binaries.portbudget, "serve", "--all-namespaces", "--collection-interval", "1s",
                                         "--collection-cpu-budget", "0", "--listed-namespaces", "10000",
                                         "--listen", everyAddress])
        _ = try every.await("a collection of the namespace") {
            Self.metrics(everyAddress).contains(#"portbudget_ports_usable{netns="\#(host.ns.name)"} 50"#) ? true : nil
        }
        for _ in 0..<45 {
            try host.start(unit: "pbbind-nc.service", ["nc", "-s", "10.77.0.1", "10.77.0.1", "9001"])
        }
        try host.wait("45 nc connections") { host.distinctLocalPorts("-t", 40000, 40049) == 45 }

        let metrics = try serve.await("the bind_before_connect finding") {
            let text = Self.metrics()
            return text.contains(#"id="bind_before_connect""#) ? text : nil
        }
        XCTAssertEqual(Self.value(metrics, #"portbudget_tcp_bound_before_connect_ports{evidence="socket_cookie"}"#), 45)
        XCTAssertEqual(Self.value(metrics, "portbudget_tcp_group_ports_capacity" + Self.groupLabels(9001)), 5)
        let labelled = #"{netns="\#(host.ns.name)",evidence="socket_cookie"}"#
        _ = try every.await("the namespace's bound sockets, with its netns label") {
            Self.value(Self.metrics(everyAddress), "portbudget_tcp_bound_before_connect_ports" + labelled) == 45 ? true : nil
        }

        // State alone cannot see it: one destination leaves no single-connection trace.
        let (inferred, _) = try host.check()
        XCTAssertFalse(inferred.findings.contains { $0.id == .bindBeforeConnect }, "\(inferred.findings.map(\.id))")
        // The kernel agrees with the collector: 5 more connect()s, then none.
        XCTAssertEqual(try host.ns.probeConnects(to: "10.77.0.1:9001"), LoadOutcome(made: 5, error: "EADDRNOTAVAIL"))

        // The listener closes first, then every nc is killed: no TIME_WAIT on
        // their side, the sockets are gone, and the watcher forgets all 45.
        func remembered() -> Double? {
            ExpositionSamples.first(Self.metrics(everyAddress), "portbudget_failure_collector_bound_sockets{")
        }
        // Summed as of each namespace's last census, which under --all-namespaces
        // may end after the agent's own namespace reported: a collection late.
        _ = try every.await("45 remembered") { remembered() == 45 ? true : nil }
        // From its second census on, the namespace's TCP tables are walked once.
        _ = try every.await("the namespace walked once") {
            (ExpositionSamples.first(Self.metrics(everyAddress), "portbudget_failure_collector_namespaces_walked_once{") ?? 0) >= 1
                ? true : nil
        }
        listeners.release()
        host.ns.releaseHeld()
        try "1".write(toFile: host.cgroupRoot + host.slice + "/pbbind-nc.service/cgroup.kill", atomically: false, encoding: .utf8)
        try host.wait("the connections closed") { host.distinctLocalPorts("-t", 40000, 40049) == 0 }
        _ = try every.await("the closed sockets forgotten") { remembered() == 0 ? true : nil }
    }

    func testCheckWatchKnowsConnectionsMadeDuringTheWindowExactly() throws {
        let host = try ReplayHost(range: (40000, 40049), needs: ["/usr/bin/nc"])
        let listeners = try host.helper(["python3", "-c", ReplayScripts.acceptAll, "10.77.0.1",
                                         "9001", "9002", "9003", "9004", "9005"])
        XCTAssertEqual(listeners.firstLine(timeout: 10), "ready", listeners.stderrText())
        // Made before the window: these stay inferred.
        try host.start(unit: "pbbind-nc.service", ["nc", "10.77.0.1", "9001"])
        let check = try ExporterProcess([Binaries.portbudget, "check", "--netns", host.ns.name, "--json", "--top", "0",
                                         "--watch", "5"])
        _ = try check.await("the programs loaded") {
            check.stderrText.contains("counting failed port allocations") ? true : nil
        }
        for i in 0..<10 {
            try host.start(unit: "pbbind-nc.service", ["nc", "-s", "10.77.0.1", "10.77.0.1", "\(9001 + i % 5)"])
        }
        // A plain connect() in the window is seen too: known to share its port.
        // (To the same destination as the first, so the two cannot share a
        // port and the count of distinct ports below is exact.)
        try host.start(unit: "pbbind-nc.service", ["nc", "10.77.0.1", "9001"])
        try host.wait("12 connections") { host.distinctLocalPorts("-t", 40000, 40049) == 12 }
        let deadline = Date().addingTimeInterval(30)
        while check.process.isRunning && Date() < deadline { usleep(100_000) }
        XCTAssertFalse(check.process.isRunning, "check --watch 5 still running after 30 s")
        let report = try JSONDecoder().decode(PortBudgetReport.self, from: Data(check.stdoutText.utf8))
        XCTAssertEqual(report.tcp.bindTracking, .init(boundBeforeConnectPorts: 10, untrackedSockets: 1),
                       "the 11 made in the window known, the plain connect() from before it not")
        XCTAssertFalse(report.tcp.bindTracking?.exact ?? true)
        for port in 9001...9005 {
            XCTAssertEqual(report.tcp.groups.first { $0.peerPort == port }?.capacity, 40, "\(port)")
        }
    }

    /// bind(addr, 0), a refused connect() (which releases the port), then a
    /// connect() that succeeds: connect() chose that port, so it is shared.
    static let reconnect = """
        import socket, sys
        s = socket.socket()
        s.bind((sys.argv[1], 0))
        try:
            s.connect((sys.argv[1], 9999))
        except ConnectionRefusedError:
            pass
        s.connect((sys.argv[1], 9001))
        print("ready", flush=True)
        sys.stdin.read()
        """

    func testASocketWhoseBoundPortWasReleasedIsForgotten() throws {
        let host = try ReplayHost(range: (40000, 40049), needs: ["/usr/bin/nc"])
        let listeners = try host.helper(["python3", "-c", ReplayScripts.acceptAll, "10.77.0.1", "9001"])
        XCTAssertEqual(listeners.firstLine(timeout: 10), "ready", listeners.stderrText())
        let serve = try Self.serve(host)
        let client = try host.helper(["python3", "-c", Self.reconnect, "10.77.0.1"])
        XCTAssertEqual(client.firstLine(timeout: 10), "ready", client.stderrText())
        let metrics = try serve.await("the connection") {
            let text = Self.metrics()
            return Self.value(text, "portbudget_tcp_group_ports_used" + Self.groupLabels(9001)) == 1 ? text : nil
        }
        XCTAssertEqual(Self.value(metrics, #"portbudget_tcp_bound_before_connect_ports{evidence="socket_cookie"}"#), 0)
        XCTAssertEqual(Self.value(metrics, "portbudget_tcp_group_ports_capacity" + Self.groupLabels(9001)), 50)
        XCTAssertEqual(Self.value(metrics, "portbudget_tcp_destination_capacity_exact"), 1)
    }
}

import Foundation
import PortBudgetCore
import XCTest

/// Four port-exhaustion incidents replayed with the real software, each in a
/// private namespace with a small range and each daemon in a cgroup named
/// like its unit. The agent's numbers are held to `ss` and to the kernel's
/// next call; its finding, lead fix and holder to what happened; and where
/// the software logs its own failure, the agent said critical before it did.
final class IncidentReplayTests: XCTestCase {
    /// Pusher: HAProxy keeps one long-lived backend connection per client.
    /// Concurrency, not churn: the lead fix is more destination or source
    /// addresses, not keep-alive.
    func testHAProxyLongLivedConnectionsToOneBackend() throws {
        let host = try ReplayHost(range: (40000, 40039), needs: ["/usr/sbin/haproxy"])
        let backend = try host.start(unit: "pbreplay-backend.service", ["python3", "-c", ReplayScripts.acceptAll, "10.77.0.1", "9000"])
        XCTAssertEqual(backend.firstLine(timeout: 10), "ready", backend.stderrText())
        let config = try host.file("haproxy.cfg", """
            global
                log stdout format raw local0
                maxconn 1000
            defaults
                mode tcp
                log global
                timeout connect 5s
                timeout client 1h
                timeout server 1h
            frontend fe
                bind 10.77.0.1:8000
                default_backend be
            backend be
                server s1 10.77.0.1:9000
            """)
        let haproxy = try host.start(unit: "pbreplay-haproxy.service", ["/usr/sbin/haproxy", "-db", "-f", config])
        try host.wait("haproxy listening", of: haproxy) { !host.ss(["-tlnH", "sport = :8000"]).isEmpty }

        let clients = try host.helper(["python3", "-c", ReplayScripts.clients, "10.77.0.1", "8000", "38", "50000"])
        XCTAssertEqual(clients.firstLine(timeout: 20), "ready", clients.stderrText())
        try host.wait("38 backend connections") { host.ss(["-tanH", "state", "established", "dst", "10.77.0.1:9000"]).count == 38 }

        let (report, status) = try host.check()
        host.log("HAProxy (Pusher)", report)
        XCTAssertFalse(haproxy.stdoutText().contains("no free ports"), "HAProxy failed before the agent said critical")
        XCTAssertEqual(status, 2)
        let g = try XCTUnwrap(report.group("10.77.0.1", 9000))
        XCTAssertEqual(g.used, host.ss(["-tanH", "dst", "10.77.0.1:9000"]).count, "used against ss")
        XCTAssertEqual(g.used, 38)
        XCTAssertEqual(g.capacity, 40)
        XCTAssertEqual(g.timeWait, 0)
        XCTAssertEqual(report.verdict,
                       "CRITICAL: TCP 10.77.0.1 → 10.77.0.1:9000 at 95%, 2 of 40 ports left; at 0, connect() to it fails with EADDRNOTAVAIL")
        // The holder: the unit, and the process.
        XCTAssertEqual(g.holders?.first?.unit, "pbreplay-haproxy.service")
        XCTAssertEqual(g.holders?.first?.ports, 38)
        XCTAssertEqual(g.processes?.first?.comm, "haproxy")
        // The 40-port range explains it all, so it leads; the destination's fix is to spread, not keep-alive.
        let findings = report.findings
        XCTAssertEqual(findings.first?.id, .narrowRange, "\(findings.map(\.id))")
        let hot = try XCTUnwrap(findings.first { $0.id == .hotDestination })
        XCTAssertEqual(hot.evidence["churn"], 0)
        XCTAssertTrue(hot.fix.hasPrefix("Each added destination IP or port, or source IP, is a budget of its own of 40 ports"), hot.fix)
        XCTAssertFalse(hot.fix.contains("new connections per second"), hot.fix)
        XCTAssertTrue(hot.cause.contains("Opened by pbreplay-haproxy.service (38 live connections)"), hot.cause)

        // The kernel accepts exactly the ports the agent said were left.
        XCTAssertEqual(try host.ns.probeConnects(to: "10.77.0.1:9000"), LoadOutcome(made: g.free, error: "EADDRNOTAVAIL"))
        // Now HAProxy's next backend connection fails, and it says so.
        let more = try host.helper(["python3", "-c", ReplayScripts.clients, "10.77.0.1", "8000", "1", "50100"])
        XCTAssertEqual(more.firstLine(timeout: 20), "ready", more.stderrText())
        try host.wait("HAProxy's own failure") { haproxy.stdoutText().contains("no free ports") }
    }

    /// Cloudflare: `nc -s ADDR` binds (ADDR, 0) before connect(), so every
    /// connection owns its port outright and bind() runs out while each
    /// destination holds a fifth of the range.
    func testNetcatBindsBeforeConnect() throws {
        let host = try ReplayHost(range: (40000, 40049), needs: ["/usr/bin/nc"])
        let listeners = try host.helper(["python3", "-c", ReplayScripts.acceptAll, "10.77.0.1",
                                         "9001", "9002", "9003", "9004", "9005", "9100"])
        XCTAssertEqual(listeners.firstLine(timeout: 10), "ready", listeners.stderrText())
        var ncs: [HeldProcess] = []
        for i in 0..<48 {
            ncs.append(try host.start(unit: "pbreplay-nc.service", ["nc", "-s", "10.77.0.1", "10.77.0.1", "\(9001 + i % 5)"]))
        }
        try host.wait("48 nc connections") { host.distinctLocalPorts("-t", 40000, 40049) == 48 }

        let (report, status) = try host.check()
        host.log("nc -s (Cloudflare)", report)
        XCTAssertEqual(ncs.map { $0.stderrText() }.filter { !$0.isEmpty }, [], "an nc failed before the agent said critical")
        XCTAssertEqual(status, 2)
        XCTAssertEqual(report.tcp.boundPorts, host.distinctLocalPorts("-t", 40000, 40049))
        XCTAssertEqual(report.verdict, "CRITICAL: TCP host-wide bind at 96%, 2 of 50 ports left; at 0, bind(addr, 0) and "
                       + "listen() without a port fail with EADDRINUSE")
        XCTAssertEqual(report.tcp.holders?.first?.unit, "pbreplay-nc.service")
        XCTAssertEqual(report.tcp.holders?.first?.ports, 48)
        // 48 processes hold one port each: none is named as if it held them all.
        XCTAssertEqual(report.tcp.processes?.first?.comm, "nc")
        XCTAssertEqual(report.tcp.processes?.first?.tiedProcesses, 48)
        let findings = report.findings
        XCTAssertEqual(findings.first?.id, .narrowRange, "\(findings.map(\.id))")
        let bound = try XCTUnwrap(findings.first { $0.id == .bindBeforeConnect })
        XCTAssertEqual(bound.severity, .critical)
        XCTAssertTrue(bound.fix.contains("pbreplay-nc.service (48 ports)"), bound.fix)
        XCTAssertTrue(bound.fix.contains("48 processes with 1 port each (nc "), bound.fix)
        XCTAssertFalse(bound.fix.contains("not attributed"), bound.fix)

        // The kernel: exactly 2 more bind(addr, 0).
        let binds = try host.helper(["python3", "-c", ReplayScripts.untilRefused, "tcp-bind", "10.77.0.1"])
        XCTAssertEqual(binds.firstLine(timeout: 20).flatMap(LoadOutcome.init(json:)), LoadOutcome(made: 2, error: "EADDRINUSE"))
        // At 0, every port is bound: the verdict now names connect() to a new destination, and the kernel agrees.
        let (full, fullStatus) = try host.check()
        host.log("nc -s (Cloudflare), at 0", full)
        XCTAssertEqual(fullStatus, 2)
        XCTAssertEqual(full.verdict, "CRITICAL: TCP host-wide bind at 100%, 0 of 50 ports left; at 0, bind(addr, 0) and "
                       + "listen() without a port fail with EADDRINUSE, and connect() to any new destination with "
                       + "EADDRNOTAVAIL (every port is bound before connect())")
        XCTAssertEqual(try host.calls(["bind:10.77.0.1:0", "listen:", "connect:10.77.0.1:9100", "bind:10.77.0.1:50000"]),
                       ["bind:10.77.0.1:0": "EADDRINUSE", "listen:": "EADDRINUSE", "connect:10.77.0.1:9100": "EADDRNOTAVAIL",
                        "bind:10.77.0.1:50000": "ok"])
        // And nc, started once more, fails as it says.
        let late = try host.start(unit: "pbreplay-nc.service", ["nc", "-s", "10.77.0.1", "10.77.0.1", "9001"])
        try host.wait("nc's own failure") { late.stderrText().contains("Address already in use") }
    }

    /// The proxy arithmetic: nginx without upstream keep-alive closes every
    /// backend connection, each leaving its port 60 s in TIME_WAIT.
    func testNginxWithoutUpstreamKeepAlivePilesUpTimeWait() throws {
        let host = try ReplayHost(range: (40000, 40099), needs: ["/usr/sbin/nginx", "/usr/bin/ab"])
        let backend = try host.start(unit: "pbreplay-backend.service",
                                     ["python3", "-c", ReplayScripts.keepAliveBackend, "10.77.0.1", "9000"])
        XCTAssertEqual(backend.firstLine(timeout: 10), "ready", backend.stderrText())
        let dir = host.directory.path
        let errorLog = dir + "/error.log"
        let config = try host.file("nginx.conf", """
            daemon off;
            worker_processes 1;
            pid \(dir)/nginx.pid;
            error_log \(errorLog);
            events { worker_connections 1024; }
            http {
                access_log off;
                client_body_temp_path \(dir)/body;
                proxy_temp_path \(dir)/proxy;
                fastcgi_temp_path \(dir)/fastcgi;
                uwsgi_temp_path \(dir)/uwsgi;
                scgi_temp_path \(dir)/scgi;
                upstream backend { server 10.77.0.1:9000; }
                server {
                    listen 10.77.0.1:8080;
                    location / {
                        proxy_pass http://backend;
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                        proxy_read_timeout 300s;
                    }
                }
            }
            """)
        let nginx = try host.start(unit: "pbreplay-nginx.service", ["/usr/sbin/nginx", "-c", config, "-e", errorLog])
        try host.wait("nginx listening", of: nginx) { !host.ss(["-tlnH", "sport = :8080"]).isEmpty }
        func errors() -> String { (try? String(contentsOfFile: errorLog, encoding: .utf8)) ?? "" }

        // One request in flight keeps a live upstream connection: that is who opens them.
        let slow = try host.helper(["curl", "-s", "--max-time", "300", "http://10.77.0.1:8080/slow"])
        _ = slow
        try host.wait("the request in flight") { host.ss(["-tanH", "state", "established", "dst", "10.77.0.1:9000"]).count == 1 }
        func towardsBackend() -> Int { host.ss(["-tanH", "dst", "10.77.0.1:9000"]).count }
        for _ in 0..<4 where towardsBackend() < 96 {
            let ab = host.ns.run(["ab", "-q", "-n", "\(96 - towardsBackend())", "-c", "2", "http://10.77.0.1:8080/"])
            XCTAssertEqual(ab.status, 0, ab.stderr)
            usleep(200_000)
        }
        let seen = towardsBackend()
        let timeWait = host.ss(["-tanH", "state", "time-wait", "dst", "10.77.0.1:9000"]).count

        let (report, status) = try host.check()
        host.log("nginx without upstream keep-alive", report)
        XCTAssertFalse(errors().contains("Cannot assign requested address"), "nginx failed before the agent said critical")
        let g = try XCTUnwrap(report.group("10.77.0.1", 9000))
        XCTAssertEqual(g.used, seen, "used against ss")
        XCTAssertEqual(g.timeWait, timeWait, "TIME_WAIT against ss")
        XCTAssertGreaterThanOrEqual(g.used, 95, "the load did not fill the range")
        XCTAssertEqual(status, 2)
        XCTAssertEqual(report.verdict, "CRITICAL: TCP 10.77.0.1 → 10.77.0.1:9000 at \(PortBudgetReport.percent(g.utilization)), "
                       + "\(g.free) of 100 ports left; at 0, connect() to it fails with EADDRNOTAVAIL")
        XCTAssertEqual(g.holders?.first?.unit, "pbreplay-nginx.service")
        XCTAssertEqual(g.processes?.first?.comm, "nginx")
        let findings = report.findings
        XCTAssertEqual(findings.first?.id, .narrowRange, "\(findings.map(\.id))")
        let tw = try XCTUnwrap(findings.first { $0.id == .timeWait })
        XCTAssertTrue(tw.cause.contains("Who opens connections to 10.77.0.1:9000: pbreplay-nginx.service (1 live connection)"), tw.cause)
        XCTAssertTrue(tw.fix.contains("open in pbreplay-nginx.service (upstream keep-alive"), tw.fix)
        XCTAssertEqual(tw.commands, ["sysctl -w net.ipv4.tcp_tw_reuse=1"])
        let hot = try XCTUnwrap(findings.first { $0.id == .hotDestination })
        XCTAssertEqual(hot.evidence["churn"], 1)
        XCTAssertTrue(hot.fix.hasPrefix("Reuse connections to 10.77.0.1:9000 (keep-alive"), hot.fix)

        XCTAssertEqual(try host.ns.probeConnects(to: "10.77.0.1:9000"), LoadOutcome(made: g.free, error: "EADDRNOTAVAIL"))
        _ = host.ns.run(["ab", "-q", "-n", "5", "-c", "1", "http://10.77.0.1:8080/"])
        try host.wait("nginx's own failure") { errors().contains("Cannot assign requested address") }
    }

    /// iProxy: dante answers SOCKS5 UDP ASSOCIATE with UDP sockets of its
    /// own, each a port host-wide whatever the destination.
    func testDanteUDPAssociateRunsUDPOut() throws {
        // 21 ports: each association costs two (the client's side, then the
        // outside socket at its first datagram), so ten leave one.
        let host = try ReplayHost(range: (40000, 40020), needs: ["/usr/sbin/danted"])
        let config = try host.file("danted.conf", """
            logoutput: stderr
            internal: 10.77.0.1 port = 1080
            external: 10.77.0.1
            clientmethod: none
            socksmethod: none
            user.privileged: root
            user.unprivileged: nobody
            client pass { from: 0.0.0.0/0 to: 0.0.0.0/0 }
            socks pass { from: 0.0.0.0/0 to: 0.0.0.0/0 command: udpassociate udpreply }
            """)
        let dante = try host.start(unit: "pbreplay-danted.service", ["/usr/sbin/danted", "-f", config, "-N", "1"])
        try host.wait("dante listening", of: dante) { !host.ss(["-tlnH", "sport = :1080"]).isEmpty }
        func udpPorts() -> Int { host.distinctLocalPorts("-u", 40000, 40020) }
        var associations = 0
        while udpPorts() < 20 && associations < 20 {
            let client = try host.helper(["python3", "-c", ReplayScripts.socksUDPAssociate, "10.77.0.1", "\(50000 + 2 * associations)"])
            XCTAssertEqual(client.firstLine(timeout: 10), "ok", client.stderrText() + dante.stderrText())
            associations += 1
            let before = udpPorts()
            try? host.wait("the association's ports", timeout: 2) { udpPorts() > before }
        }
        let seen = udpPorts()

        let (report, status) = try host.check()
        host.log("dante UDP ASSOCIATE (iProxy)", report)
        XCTAssertFalse(dante.stderrText().contains("could not bind udp port"), "dante failed before the agent said critical")
        XCTAssertEqual(report.udp.boundPorts, seen, "UDP ports against ss")
        XCTAssertEqual(status, 2)
        let left = 21 - seen
        XCTAssertEqual(left, 1, "ten associations leave one port")
        XCTAssertEqual(report.verdict, "CRITICAL: UDP host-wide at \(PortBudgetReport.percent(Double(seen) / 21)), \(left) of 21 "
                       + "ports left; at 0, a UDP socket's autobind (connect(), sendto()) fails with EAGAIN, bind(addr, 0) with EADDRINUSE")
        XCTAssertEqual(report.udp.holders?.first?.unit, "pbreplay-danted.service")
        XCTAssertEqual(report.udp.processes?.first?.comm, "danted")
        let findings = report.findings
        XCTAssertEqual(findings.map(\.id).prefix(2), [.narrowRange, .udpPressure], "the 20-port range is the root cause")

        // The kernel: exactly `left` more sendto() from new sockets, then EAGAIN.
        let sends = try host.helper(["python3", "-c", ReplayScripts.untilRefused, "udp-sendto", "10.77.0.1"])
        XCTAssertEqual(sends.firstLine(timeout: 20).flatMap(LoadOutcome.init(json:)), LoadOutcome(made: left, error: "EAGAIN"))
        // At 0: what the verdict names fails; a TCP connect() and a bind() of a free port do not.
        XCTAssertEqual(try host.calls(["udp-sendto:10.77.0.1:5353", "udp-bind:10.77.0.1:0", "connect:10.77.0.1:1080",
                                       "udp-bind:10.77.0.1:50900"]),
                       ["udp-sendto:10.77.0.1:5353": "EAGAIN", "udp-bind:10.77.0.1:0": "EADDRINUSE",
                        "connect:10.77.0.1:1080": "ok", "udp-bind:10.77.0.1:50900": "ok"])
        // With the probe's port back, one more association gets its client
        // side, and dante fails to open the outside socket — and says so.
        sends.release()
        let late = try host.helper(["python3", "-c", ReplayScripts.socksUDPAssociate, "10.77.0.1", "50800"])
        _ = late.firstLine(timeout: 10)
        try host.wait("dante's own failure", of: dante) { dante.stderrText().contains("could not bind udp port") }
    }
}

import Foundation
import PortBudgetCore
import XCTest

/// `--all-namespaces` run with exactly the privileges deploy/ grants it — a
/// non-root uid, CAP_SYS_ADMIN and CAP_SYS_PTRACE as its only capabilities
/// (ambient, so they survive the uid change; the bounding set holds nothing
/// else), no_new_privs — and with either capability taken away.
///
/// The agent runs inside a namespace of the test's own (entered with
/// nsenter, as a DaemonSet pod with hostNetwork is in the node's), so "its
/// own namespace" has known sockets. A second namespace is bound by
/// `ip netns add`; a third is held only by an `unshare -n` process of
/// another uid, whose /proc/PID/ns/net only CAP_SYS_PTRACE lets it open.
final class AllNamespacesPrivilegesTests: XCTestCase {
    /// The uid the process holding the third namespace runs as: neither
    /// root nor the agent's.
    static let otherUID = 4242

    /// setpriv arguments: uid/gid 65534, no groups, exactly `capabilities`
    /// (setpriv names, e.g. "sys_admin") in the inheritable, ambient and
    /// bounding sets — the systemd unit's AmbientCapabilities= and
    /// CapabilityBoundingSet=, the DaemonSet's drop ALL + add — and no_new_privs.
    static func asDeployed(with capabilities: [String]) -> [String] {
        let list = (["-all"] + capabilities.map { "+" + $0 }).joined(separator: ",")
        return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=\(list)",
                "--ambient-caps=\(list)", "--bounding-set=\(list)", "--no-new-privs"]
    }

    /// /proc/PID/status's capability masks for those names.
    static func mask(_ capabilities: [String]) -> String {
        let bits: [String: Int] = ["sys_ptrace": 19, "sys_admin": 21]
        let value = capabilities.reduce(UInt64(0)) { $0 | (1 << UInt64(bits[$1]!)) }
        return String(format: "%016llx", value)
    }

    struct Setup {
        let own: NetworkNamespace      // the agent runs here: its "host"
        let bound: NetworkNamespace    // /run/netns/NAME
        let held: HeldProcess          // unshare -n, uid otherUID
        var heldPID: Int32 { held.process.processIdentifier }
    }

    func build() throws -> Setup {
        for program in ["/usr/bin/setpriv", "/usr/bin/nsenter", "/usr/bin/python3"] { try ExporterProcess.require(program) }
        let own = try NetworkNamespace(range: (40000, 40099))
        let bound = try NetworkNamespace(range: (41000, 41049))
        let probe = Command.run(["nsenter", "--net=/run/netns/\(own.name)"] + Self.asDeployed(with: [])
                                + [Binaries.portbudget, "--version"], timeout: 10)
        guard probe.status == 0 else {
            try NetworkNamespace.skip("uid 65534 cannot run \(Binaries.portbudget) (a directory on its path is not "
                                      + "world-searchable?): \(probe.stderr)", file: #filePath, line: #line)
            throw XCTSkip("unreachable")
        }
        try own.hold(["listen", "--at", "127.0.0.1:8080"])
        XCTAssertEqual(try own.hold(["connect", "--to", "127.0.0.1:8080", "--count", "10", "--hold"]).made, 10)
        try bound.hold(["listen", "--at", "127.0.0.1:9090"])
        XCTAssertEqual(try bound.hold(["connect", "--to", "127.0.0.1:9090", "--count", "20", "--hold"]).made, 20)
        let held = try Self.unsharedNamespace(uid: Self.otherUID, range: (42000, 42049), port: 7070, connections: 5)
        return Setup(own: own, bound: bound, held: held)
    }

    /// A namespace held only by a process of `uid`: root makes it (unshare
    /// -n), sets it up, and execs the holder as `uid` through setpriv, so
    /// the holder is an ordinary process of that user (dumpable, its
    /// /proc/PID/ns/net owned by it).
    static func unsharedNamespace(uid: Int, range: (Int, Int), port: Int, connections: Int) throws -> HeldProcess {
        let script = """
            import socket, sys
            server = socket.socket(); server.bind(("127.0.0.1", \(port))); server.listen(100)
            clients = [socket.create_connection(("127.0.0.1", \(port))) for _ in range(\(connections))]
            print("ready", flush=True); sys.stdin.read()
            """
        let setup = #"ip link set lo up && echo "$0" > /proc/sys/net/ipv4/ip_local_port_range && "#
            + #"exec setpriv --reuid=$1 --regid=$1 --clear-groups --inh-caps=-all --bounding-set=-all /usr/bin/python3 -c "$2""#
        let process = try HeldProcess(["unshare", "-n", "sh", "-c", setup, "\(range.0) \(range.1)", "\(uid)", script])
        guard process.firstLine(timeout: 10) == "ready" else {
            process.release()
            throw Failure("unshare -n namespace of uid \(uid) did not start: \(process.stderrText())")
        }
        return process
    }

    func runCheck(_ setup: Setup, capabilities: [String]) -> Command.Output {
        Command.run(["nsenter", "--net=/run/netns/\(setup.own.name)"] + Self.asDeployed(with: capabilities)
                    + [Binaries.portbudget, "check", "--all-namespaces", "--json"], timeout: 60)
    }

    func decode(_ output: Command.Output) throws -> AllNamespacesTests.All {
        try JSONDecoder().decode(AllNamespacesTests.All.self, from: Data(output.stdout.utf8))
    }

    /// The own namespace, measured, with the 10 connections built in it.
    func assertOwnNamespaceMeasured(_ all: AllNamespacesTests.All, file: StaticString = #filePath, line: UInt = #line) {
        let host = all.namespaces.first { $0.netns.name == "host" }
        XCTAssertEqual(host?.port_range?.low, 40000, "the agent's own namespace is the test's", file: file, line: line)
        XCTAssertEqual(host?.tcp?.groups.first { $0.peerPort == 8080 }?.used, 10, file: file, line: line)
    }

    func testCheckAllNamespacesWithExactlyTheTwoCapabilities() throws {
        let setup = try build()
        defer { setup.held.release() }
        let both = ["sys_admin", "sys_ptrace"]

        // The privileges are exactly these: uid 65534, the two capabilities
        // in every set, nothing else, no_new_privs.
        let status = Command.run(["nsenter", "--net=/run/netns/\(setup.own.name)"] + Self.asDeployed(with: both)
                                 + ["cat", "/proc/self/status"]).stdout
        func field(_ name: String) -> String? {
            status.split(separator: "\n").first { $0.hasPrefix(name + ":") }
                .map { $0.dropFirst(name.count + 1).split(whereSeparator: \.isWhitespace).joined(separator: " ") }
        }
        XCTAssertEqual(field("Uid"), "65534 65534 65534 65534")
        XCTAssertEqual(field("Groups"), "")
        for capabilities in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            XCTAssertEqual(field(capabilities), Self.mask(both), capabilities)
        }
        XCTAssertEqual(field("NoNewPrivs"), "1")
        let holder = try String(contentsOfFile: "/proc/\(setup.heldPID)/status", encoding: .utf8)
        XCTAssertTrue(holder.contains("Uid:\t\(Self.otherUID)\t"), "the unshare -n holder runs as another uid: \(holder)")

        let output = runCheck(setup, capabilities: both)
        XCTAssertTrue([0, 1, 2].contains(output.status), "exit \(output.status): \(output.stderr)")
        let all = try decode(output)
        assertOwnNamespaceMeasured(all)
        let bound = try XCTUnwrap(all.namespaces.first { $0.netns.name == setup.bound.name }, output.stdout)
        XCTAssertEqual(bound.port_range?.low, 41000)
        XCTAssertEqual(bound.tcp?.groups.first { $0.peerPort == 9090 }?.used, 20)
        let held = try XCTUnwrap(all.namespaces.first { $0.netns.pids.contains(setup.heldPID) },
                                 "the namespace of uid \(Self.otherUID)'s process: \(output.stderr)")
        XCTAssertEqual(held.netns.name, setup.held.namespaceName)
        XCTAssertEqual(held.port_range?.usable, 50)
        XCTAssertEqual(held.tcp?.groups.first { $0.peerPort == 7070 }?.used, 5)
        // Nothing of ours is left unmeasured.
        for name in [setup.bound.name, held.netns.name] {
            XCTAssertFalse(output.stderr.contains("netns \(name) "), output.stderr)
        }
    }

    /// `serve --all-namespaces` as the DaemonSet and the systemd unit run it,
    /// scraped once: the process holds exactly the two capabilities, and
    /// every namespace built here is exported under its netns label.
    func testServeAllNamespacesWithExactlyTheTwoCapabilities() throws {
        try ExporterProcess.require("/usr/bin/curl")
        let setup = try build()
        defer { setup.held.release() }
        let both = ["sys_admin", "sys_ptrace"]
        let serve = try ExporterProcess(["nsenter", "--net=/run/netns/\(setup.own.name)"] + Self.asDeployed(with: both)
                                        + [Binaries.portbudget, "serve", "--all-namespaces", "--listen", "127.0.0.1:9958"])
        _ = try serve.await("an answer on /healthz") { setup.own.httpGet("http://127.0.0.1:9958/healthz") }
        // nsenter and setpriv exec, so this pid is the server itself.
        let status = try String(contentsOfFile: "/proc/\(serve.process.processIdentifier)/status", encoding: .utf8)
        func field(_ name: String) -> String? {
            status.split(separator: "\n").first { $0.hasPrefix(name + ":") }
                .map { $0.dropFirst(name.count + 1).split(whereSeparator: \.isWhitespace).joined(separator: " ") }
        }
        XCTAssertTrue(status.contains("Name:\tportbudget"), status)
        XCTAssertEqual(field("Uid"), "65534 65534 65534 65534")
        for capabilities in ["CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            XCTAssertEqual(field(capabilities), Self.mask(both), capabilities)
        }
        XCTAssertEqual(field("NoNewPrivs"), "1")

        let metrics = try XCTUnwrap(setup.own.httpGet("http://127.0.0.1:9958/metrics"), "no answer on /metrics")
        let lines = Set(metrics.split(separator: "\n").map(String.init))
        let held = setup.held.namespaceName
        let group = #"local_ip="127.0.0.1",peer_ip="127.0.0.1""#
        for expected in [
            #"portbudget_tcp_group_ports_used{netns="host",\#(group),peer_port="8080"} 10"#,
            #"portbudget_ports_usable{netns="host"} 100"#,
            #"portbudget_tcp_group_ports_used{netns="\#(setup.bound.name)",\#(group),peer_port="9090"} 20"#,
            #"portbudget_ports_usable{netns="\#(setup.bound.name)"} 50"#,
            #"portbudget_tcp_group_ports_used{netns="\#(held)",\#(group),peer_port="7070"} 5"#,
            #"portbudget_ports_usable{netns="\#(held)"} 50"#,
            #"portbudget_scrape_collector_success{netns="\#(held)",collector="sockdiag"} 1"#,
            #"portbudget_scrape_collector_success{netns="\#(setup.bound.name)",collector="sockdiag"} 1"#,
        ] {
            XCTAssertTrue(lines.contains(expected), "missing \(expected)")
        }
        let info = lines.first { $0.hasPrefix(#"portbudget_netns_info{netns="\#(held)","#) }
        let inode = try XCTUnwrap(try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(setup.heldPID)/ns/net"))
        XCTAssertEqual(info, #"portbudget_netns_info{netns="\#(held)",inode="\#(inode.dropFirst(5).dropLast())",pid="\#(setup.heldPID)","#
                       + #"comm="python3",unit="",container_id="",pod_uid="",pod="",owner_uid=""} 1"#)
        let count = lines.first { $0.hasPrefix(#"portbudget_namespaces{state="exported""#) }.flatMap { Int($0.split(separator: " ")[1]) }
        XCTAssertGreaterThanOrEqual(count ?? 0, 3, "host, the bound namespace and the held one")
        XCTAssertTrue(lines.contains { $0.hasPrefix("portbudget_build_info{version=") }, "build_info carries no netns")
        let stopped = try XCTUnwrap(serve.stop(SIGTERM), "serve still running 5 s after SIGTERM")
        XCTAssertEqual(stopped.status, 0, serve.stderrText)
    }

    /// Without CAP_SYS_PTRACE another user's /proc/PID/ns/net cannot be
    /// opened: one line counts those processes and names the capability;
    /// the bound namespace (a root-owned, world-readable file) and the own
    /// one are still measured.
    func testWithoutSysPtraceOtherUsersNamespacesAreCountedInOneLine() throws {
        let setup = try build()
        defer { setup.held.release() }
        let output = runCheck(setup, capabilities: ["sys_admin"])
        XCTAssertTrue([0, 1, 2].contains(output.status), "exit \(output.status): \(output.stderr)")
        let all = try decode(output)
        assertOwnNamespaceMeasured(all)
        XCTAssertEqual(all.namespaces.first { $0.netns.name == setup.bound.name }?.tcp?.groups.first { $0.peerPort == 9090 }?.used, 20)
        XCTAssertNil(all.namespaces.first { $0.netns.pids.contains(setup.heldPID) }, "uid \(Self.otherUID)'s namespace was opened")
        let warnings = output.stderr.split(separator: "\n").filter { $0.contains("CAP_SYS_PTRACE") }
        XCTAssertEqual(warnings.count, 1, output.stderr)
        XCTAssertTrue(warnings.first?.hasPrefix("portbudget: ") == true, output.stderr)
        XCTAssertTrue(warnings.first?.contains("network namespace could not be opened (another user's process needs CAP_SYS_PTRACE") == true,
                      output.stderr)
    }

    /// Without CAP_SYS_ADMIN no other namespace can be entered: each gets
    /// one line naming it and CAP_SYS_ADMIN, and the own namespace —
    /// measured without setns — is still there.
    func testWithoutSysAdminEachOtherNamespaceGetsOneLine() throws {
        let setup = try build()
        defer { setup.held.release() }
        let output = runCheck(setup, capabilities: ["sys_ptrace"])
        XCTAssertTrue([0, 1, 2].contains(output.status), "exit \(output.status): \(output.stderr)")
        let all = try decode(output)
        assertOwnNamespaceMeasured(all)
        let heldName = setup.held.namespaceName
        for name in [setup.bound.name, heldName] {
            let entry = all.namespaces.first { $0.netns.name == name }
            XCTAssertNotNil(entry, "\(name) is listed")
            XCTAssertNil(entry?.tcp, "\(name) was measured without CAP_SYS_ADMIN")
            let lines = output.stderr.split(separator: "\n").filter { $0.hasPrefix("portbudget: netns \(name) (inode ") }
            XCTAssertEqual(lines.count, 1, output.stderr)
            XCTAssertTrue(lines.first?.hasSuffix("not permitted (setns needs CAP_SYS_ADMIN)") == true, output.stderr)
        }
    }
}

import Foundation
import XCTest

/// `portbudget serve` run the way both shipped deployments run it: the
/// systemd unit (DynamicUser, empty CapabilityBoundingSet and
/// AmbientCapabilities, NoNewPrivileges) and the DaemonSet (uid/gid 65534,
/// capabilities drop ALL, allowPrivilegeEscalation false). On main every
/// connection was reset this way, because a socket option needed privilege.
final class ServeUnprivilegedTests: XCTestCase {
    /// uid/gid 65534 (nobody/nogroup), no supplementary groups, no
    /// inheritable or bounding capabilities (so none can be regained, and
    /// the uid change clears the permitted and effective sets), no_new_privs.
    static let asDeployed = [
        "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
        "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
    ]

    func testServeAnswersScrapesAsNobodyWithoutCapabilities() throws {
        for program in ["/usr/bin/setpriv", "/usr/bin/curl"] { try ExporterProcess.require(program) }
        let ns = try NetworkNamespace()
        // uid 65534 needs to reach and execute the build directory.
        let version = ns.run(Self.asDeployed + [Binaries.portbudget, "--version"], timeout: 10)
        guard version.status == 0 else {
            try NetworkNamespace.skip("uid 65534 cannot run \(Binaries.portbudget) (a directory on its path is not "
                                      + "world-searchable?): \(version.stderr)", file: #filePath, line: #line)
            return
        }
        try ns.hold(["listen", "--at", "127.0.0.1:8080"])
        XCTAssertEqual(try ns.hold(["connect", "--to", "127.0.0.1:8080", "--count", "25", "--hold"]).made, 25)

        let serve = try ExporterProcess(Self.asDeployed + [Binaries.portbudget, "serve", "--listen", "127.0.0.1:9958"],
                                        in: ns)
        let health = try serve.await("an answer on /healthz") { ns.httpGet("http://127.0.0.1:9958/healthz") }
        XCTAssertEqual(health, "ok\n")
        // `ip netns exec` and setpriv exec, so this pid is now the server itself.
        let status = try String(contentsOfFile: "/proc/\(serve.process.processIdentifier)/status", encoding: .utf8)
        func field(_ name: String) -> String? {
            status.split(separator: "\n").first { $0.hasPrefix(name + ":") }
                .map { $0.dropFirst(name.count + 1).split(whereSeparator: \.isWhitespace).joined(separator: " ") }
        }
        XCTAssertTrue(status.contains("Name:\tportbudget"), status)
        XCTAssertEqual(field("Uid"), "65534 65534 65534 65534")
        XCTAssertEqual(field("Gid"), "65534 65534 65534 65534")
        XCTAssertEqual(field("Groups"), "")
        for capabilities in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            XCTAssertEqual(field(capabilities), "0000000000000000", capabilities)
        }
        XCTAssertEqual(field("NoNewPrivs"), "1")

        // Every collector works without privilege (docs/namespaces.md): nothing is missing.
        let metrics = try XCTUnwrap(ns.httpGet("http://127.0.0.1:9958/metrics"), "no answer on /metrics")
        XCTAssertTrue(metrics.hasPrefix("# HELP portbudget_build_info"))
        for collector in ["sysctl", "sockdiag", "sockstat", "snmp", "netstat"] {
            XCTAssertTrue(metrics.contains(#"portbudget_scrape_collector_success{collector="\#(collector)"} 1"#),
                          "collector \(collector) failed unprivileged")
        }
        XCTAssertTrue(metrics.contains(
            #"portbudget_tcp_group_ports_used{local_ip="127.0.0.1",peer_ip="127.0.0.1",peer_port="8080"} 25"#))
        // Connection after connection, none reset.
        for index in 0..<20 {
            XCTAssertEqual(ns.httpGet("http://127.0.0.1:9958/healthz"), "ok\n", "scrape \(index)")
        }
        XCTAssertFalse(serve.stderrText.contains("cannot set up"), serve.stderrText)
        let stopped = try XCTUnwrap(serve.stop(SIGTERM), "serve still running 5 s after SIGTERM")
        XCTAssertEqual(stopped.status, 0, serve.stderrText)
    }
}

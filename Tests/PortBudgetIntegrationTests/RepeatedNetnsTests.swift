import Foundation
import PortBudgetCore
import XCTest

/// `--netns` given several times: serve, textfile and check watch exactly
/// those namespaces, each series with its netns label, as with
/// --all-namespaces but no others.
final class RepeatedNetnsTests: XCTestCase {
    func testServeTextfileAndCheckWatchEachNamedNamespace() throws {
        let a = try NetworkNamespace(range: (40000, 40099))
        let b = try NetworkNamespace(range: (41000, 41049))
        let home = try NetworkNamespace()  // serve listens here, away from the host's ports
        try a.hold(["listen", "--at", "127.0.0.1:8080"])
        try a.hold(["connect", "--to", "127.0.0.1:8080", "--count", "30", "--hold"])
        try b.hold(["listen", "--at", "127.0.0.1:8081"])
        try b.hold(["connect", "--to", "127.0.0.1:8081", "--count", "12", "--hold"])
        let group = #"local_ip="127.0.0.1",peer_ip="127.0.0.1""#
        let expected = [#"portbudget_tcp_group_ports_used{netns="\#(a.name)",\#(group),peer_port="8080"} 30"#,
                        #"portbudget_tcp_group_ports_used{netns="\#(b.name)",\#(group),peer_port="8081"} 12"#]

        let serve = try ExporterProcess(["nsenter", "--net=/run/netns/\(home.name)", Binaries.portbudget, "serve",
                                         "--netns", a.name, "--netns", b.name, "--listen", "127.0.0.1:9958"])
        let metrics = try serve.await("answer on /metrics") { home.httpGet("http://127.0.0.1:9958/metrics") }
        for line in expected { XCTAssertTrue(metrics.contains(line), line) }
        XCTAssertFalse(metrics.contains(#"netns="host""#), "only the namespaces named are watched")

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pbreport-netns-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let textfile = Command.run([Binaries.portbudget, "textfile", directory.path, "--once", "--netns", a.name, "--netns", b.name])
        XCTAssertEqual(textfile.status, 0, textfile.stderr)
        let written = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".prom") }
        let file = try String(contentsOf: directory.appendingPathComponent(try XCTUnwrap(written.first)), encoding: .utf8)
        for line in expected { XCTAssertTrue(file.contains(line), line) }

        let check = Command.run([Binaries.portbudget, "check", "--json", "--netns", a.name, "--netns", b.name])
        XCTAssertEqual(check.status, 0, check.stderr)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(check.stdout.utf8)) as? [String: Any])
        let names = (object["namespaces"] as? [[String: Any]])?.compactMap { ($0["netns"] as? [String: Any])?["name"] as? String }
        XCTAssertEqual(Set(names ?? []), [a.name, b.name])

        let twice = Command.run([Binaries.portbudget, "serve", "--netns", a.name, "--netns", a.name])
        XCTAssertNotEqual(twice.status, 0)
        XCTAssertTrue(twice.stderr.contains("--netns \(a.name) is given twice"), twice.stderr)
    }
}

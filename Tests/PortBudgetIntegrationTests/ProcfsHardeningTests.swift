import Foundation
import XCTest

/// `--procfs` trees with a file that would block or lie: a FIFO (opening
/// one blocks until a writer comes) or an empty file in place of each file
/// the agent reads. Each must fail fast — well under the 10 s collection
/// deadline — with one line naming the file. The census still reads the
/// real kernel over SOCK_DIAG (that ignores --procfs), so the budget's
/// verdict depends on this host's sockets and is not asserted. No privilege
/// needed.
final class ProcfsHardeningTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("PortBudgetCoreTests/Fixtures/procfs-default").path

    /// Every file the agent reads under --procfs (ProcFS.portSysctls and
    /// ProcFS.netTable), and the collector that reads it.
    static let files: [(path: String, collector: String)] = [
        ("sys/net/ipv4/ip_local_port_range", "sysctl"),
        ("sys/net/ipv4/ip_local_reserved_ports", "sysctl"),
        ("sys/net/ipv4/tcp_tw_reuse", "sysctl"),
        ("sys/net/ipv4/tcp_timestamps", "sysctl"),
        ("sys/net/ipv4/tcp_fin_timeout", "sysctl"),
        ("sys/net/ipv4/tcp_tw_reuse_delay", "sysctl"),
        ("net/sockstat", "sockstat"),
        ("net/sockstat6", "sockstat"),
        ("net/snmp", "snmp"),
        ("net/netstat", "netstat"),
    ]

    /// Well under the collection deadline: the non-blocking open and the
    /// file checks catch these at once, the deadline is not what ends them.
    static let prompt: TimeInterval = 5

    var roots: [URL] = []

    override func tearDown() {
        for root in roots { try? FileManager.default.removeItem(at: root) }
    }

    enum Replacement { case fifo, empty }

    /// A copy of the fixture procfs with `relative` replaced.
    func procfs(replacing relative: String, with replacement: Replacement) throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("pb-hardening-\(UUID().uuidString)")
        roots.append(root)
        try FileManager.default.copyItem(atPath: Self.fixtures, toPath: root.path)
        let path = root.appendingPathComponent(relative).path
        try FileManager.default.removeItem(atPath: path)
        switch replacement {
        case .fifo: XCTAssertEqual(mkfifo(path, 0o644), 0, "mkfifo \(path)")
        case .empty: XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data()))
        }
        return root.path
    }

    func checkFailsFast(_ replacement: Replacement, reason: String) throws {
        for (relative, collector) in Self.files {
            let root = try procfs(replacing: relative, with: replacement)
            let started = Date()
            // check's table shows no counter, so only its JSON report reads netstat.
            let json = collector == "netstat" ? ["--json"] : []
            let output = Command.run([Binaries.portbudget, "check", "--procfs", root] + json, timeout: 30)
            let took = Date().timeIntervalSince(started)
            XCTAssertLessThan(took, Self.prompt, "\(relative): check took \(took) s")
            // The fixture procfs has no conntrack sysctls: that collector's own line is not this file's.
            let lines = output.stderr.split(separator: "\n").filter { !$0.hasPrefix("portbudget: conntrack collector failed") }
            XCTAssertEqual(lines.count, 1, "\(relative): one line, got \(output.stderr)")
            let expected = "\(root)/\(relative): \(reason)"
            if collector == "sysctl" {
                // No port range, no budget: UNKNOWN, and nothing on stdout claims one.
                XCTAssertEqual(output.status, 3, "\(relative): \(output.stderr)")
                XCTAssertEqual(output.stdout, "", relative)
                XCTAssertTrue(output.stderr.hasPrefix("UNKNOWN: "), output.stderr)
            } else {
                // The budget stands; the counters this collector feeds are omitted, and it says so.
                XCTAssertTrue([0, 1, 2].contains(output.status), "\(relative): \(output.status) \(output.stderr)")
                XCTAssertTrue(lines.first?.hasPrefix("portbudget: \(collector) collector failed, counters omitted: ") == true,
                              output.stderr)
            }
            XCTAssertTrue(output.stderr.contains(expected), "\(relative): expected \(expected) in \(output.stderr)")
        }
    }

    /// The table shows no kernel counter: it does not read netstat at all,
    /// so a FIFO there costs it nothing and is not mentioned.
    func testCheckTableLeavesNetstatUnread() throws {
        let root = try procfs(replacing: "net/netstat", with: .fifo)
        let output = Command.run([Binaries.portbudget, "check", "--procfs", root], timeout: 30)
        XCTAssertTrue([0, 1, 2].contains(output.status), output.stderr)
        XCTAssertFalse(output.stderr.contains("netstat"), output.stderr)
        XCTAssertTrue(output.stdout.contains("Port range"), output.stdout)
    }

    /// A sysctl longer than the first read asks for (a long reserved-ports
    /// list): the read grows until the end, and every port counts.
    func testALongSysctlIsReadWhole() throws {
        let root = try procfs(replacing: "sys/net/ipv4/ip_local_reserved_ports", with: .empty)
        // 400 single ports, every other one from 40000: about 2,400 bytes.
        let ports = stride(from: 40000, to: 40800, by: 2).map(String.init).joined(separator: ",")
        XCTAssertTrue(FileManager.default.createFile(atPath: root + "/sys/net/ipv4/ip_local_reserved_ports",
                                                    contents: Data((ports + "\n").utf8)))
        let output = Command.run([Binaries.portbudget, "check", "--procfs", root], timeout: 30)
        XCTAssertTrue([0, 1, 2].contains(output.status), output.stderr)
        XCTAssertTrue(output.stdout.contains("27832 usable (400 reserved;"), output.stdout)
    }

    func testCheckRefusesAFIFOInPlaceOfEveryFile() throws {
        try checkFailsFast(.fifo, reason: "is a FIFO, not a regular file")
    }

    func testCheckRefusesAnEmptyFileInPlaceOfEveryFile() throws {
        try checkFailsFast(.empty, reason: "empty")
    }

    /// The documented rule for a failed collector (docs/metrics.md), over HTTP: 200, that
    /// collector's success 0 and its metrics absent; then SIGTERM still stops serve.
    func testServeWithAFIFOAnswersPromptlyAndStopsOnSIGTERM() throws {
        try ExporterProcess.require("/usr/bin/curl")
        for (relative, collector, absentMetric) in [("net/snmp", "snmp", "portbudget_udp_no_ports_total"),
                                                    ("sys/net/ipv4/tcp_fin_timeout", "sysctl", "portbudget_tcp_groups")] {
            let root = try procfs(replacing: relative, with: .fifo)
            let serve = try ExporterProcess([Binaries.portbudget, "serve", "--listen", "127.0.0.1:0", "--procfs", root])
            let port = try serve.await("the listening address in the log", timeout: 10) { () -> String? in
                guard let range = serve.stderrText.range(of: #"127\.0\.0\.1:(\d+)"#, options: .regularExpression) else {
                    return nil
                }
                return String(serve.stderrText[range].split(separator: ":")[1])
            }
            let started = Date()
            let scrape = Command.run(["curl", "-sS", "-w", "\n%{http_code}", "--max-time", "15",
                                      "http://127.0.0.1:\(port)/metrics"], timeout: 20)
            XCTAssertLessThan(Date().timeIntervalSince(started), Self.prompt, "\(relative): /metrics was slow")
            XCTAssertEqual(scrape.status, 0, scrape.stderr)
            XCTAssertTrue(scrape.stdout.hasSuffix("\n200"), "\(relative): \(scrape.stdout.suffix(200))")
            XCTAssertTrue(scrape.stdout.contains("portbudget_build_info{version="), relative)
            XCTAssertTrue(scrape.stdout.contains("portbudget_scrape_collector_success{collector=\"\(collector)\"} 0\n"),
                          "\(relative): \(scrape.stdout)")
            XCTAssertFalse(scrape.stdout.contains("\n\(absentMetric) "), "\(relative): \(absentMetric) served")
            XCTAssertTrue(serve.stderrText.contains("\(root)/\(relative): is a FIFO, not a regular file"),
                          "the log names the file: \(serve.stderrText.suffix(2000))")
            let stopped = try XCTUnwrap(serve.stop(SIGTERM, timeout: 5), "\(relative): serve still running 5 s after SIGTERM")
            XCTAssertEqual(stopped.reason, .exit)
            XCTAssertEqual(stopped.status, 0, serve.stderrText.suffix(2000).description)
        }
    }

    /// textfile --once writes the failure rather than hanging or claiming the counters.
    func testTextfileOnceWithAFIFOWritesTheCollectorFailed() throws {
        let root = try procfs(replacing: "net/netstat", with: .fifo)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pb-hardening-out-\(UUID().uuidString)")
        roots.append(directory)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let started = Date()
        let output = Command.run([Binaries.portbudget, "textfile", directory.path, "--once", "--procfs", root], timeout: 30)
        XCTAssertLessThan(Date().timeIntervalSince(started), Self.prompt)
        XCTAssertEqual(output.status, 0, output.stderr)
        let text = try String(contentsOf: directory.appendingPathComponent("portbudget.prom"), encoding: .utf8)
        XCTAssertTrue(text.contains("portbudget_scrape_collector_success{collector=\"netstat\"} 0\n"), text)
        XCTAssertTrue(text.contains("portbudget_scrape_collector_success{collector=\"snmp\"} 1\n"), text)
        XCTAssertFalse(text.contains("portbudget_tcp_tw_recycled_total"), "netstat's counter written anyway")
        XCTAssertTrue(output.stderr.contains("\(root)/net/netstat: is a FIFO, not a regular file"), output.stderr)
    }
}

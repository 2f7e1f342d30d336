import Foundation
import PortBudgetCore
import XCTest

/// The failure collector against the kernel: exact numbers of every failure
/// kind, made by a process in a known cgroup inside a private namespace with
/// a 4-port range, and the look-alikes that must not count (FailureMaker).
final class FailureKernelTests: XCTestCase {
    /// What the always-loaded programs must count, from what the process saw.
    static func expectedDefault(_ made: FailureMaker.Outcome) -> [String: Int] {
        [
            #"protocol="tcp",call="connect",errno="EADDRNOTAVAIL""#:
                made.count("tcp_connect", "EADDRNOTAVAIL") + made.count("fill_tcp_v4", "EADDRNOTAVAIL")
                + made.count("fill_tcp_v6", "EADDRNOTAVAIL"),
            #"protocol="tcp",call="listen",errno="EADDRINUSE""#: made.count("tcp_listen", "EADDRINUSE"),
            #"protocol="udp",call="send",errno="EAGAIN""#: made.count("udp_send", "EAGAIN"),
        ]
    }

    static func expectedSyscalls(_ made: FailureMaker.Outcome) -> [String: Int] {
        [
            #"protocol="tcp",call="bind",errno="EADDRINUSE""#: made.count("tcp_bind0", "EADDRINUSE"),
            #"protocol="udp",call="bind",errno="EADDRINUSE""#: made.count("udp_bind0", "EADDRINUSE"),
            #"protocol="udp",call="connect",errno="EAGAIN""#: made.count("udp_connect", "EAGAIN"),
        ]
    }

    /// The scenario went as designed: every failure and look-alike happened.
    static func assertMadeAsDesigned(_ made: FailureMaker.Outcome, file: StaticString = #filePath, line: UInt = #line) {
        let designed: [(String, String, Int)] = [
            ("fill_tcp_v4", "ok", 4), ("tcp_connect", "EADDRNOTAVAIL", 5), ("fill_tcp_v6", "ok", 4),
            ("tcp_listen", "EADDRINUSE", 2), ("tcp_bind0", "EADDRINUSE", 2), ("fill_udp", "ok", 4),
            ("udp_send", "EAGAIN", 4), ("udp_connect", "EAGAIN", 2), ("udp_bind0", "EADDRINUSE", 2),
            ("unix_eagain", "EAGAIN", 1), ("tcp_full_buffer", "EAGAIN", 1), ("explicit_clash", "EADDRNOTAVAIL", 1),
            ("explicit_inuse", "EADDRINUSE", 1), ("udp_explicit_inuse", "EADDRINUSE", 1),
            ("tcp_refused", "ECONNREFUSED", 1), ("port0_listeners_closed", "ok", 1),
        ]
        for (category, result, times) in designed {
            XCTAssertEqual(made.count(category, result), times, "\(category) \(result): saw \(made.observed[category] ?? [:])",
                           file: file, line: line)
        }
    }

    /// Every `portbudget_port_allocation_failures_total` sample, labels → value.
    static func totals(_ metrics: String, prefix: String = "") -> [String: Int] {
        var out: [String: Int] = [:]
        let start = "portbudget_port_allocation_failures_total{" + prefix
        for line in metrics.split(separator: "\n") where line.hasPrefix(start) {
            guard let close = line.lastIndex(of: "}"), let value = Double(line[line.index(after: close)...].trimmingCharacters(in: .whitespaces)) else { continue }
            out[String(line[line.index(line.startIndex, offsetBy: start.count)..<close])] = Int(value)
        }
        return out
    }

    func testServeCountsEveryFailureKindExactlyWithNamespaceAndCgroup() throws {
        try ExporterProcess.require("/usr/bin/curl")
        let ns = try NetworkNamespace(range: (40000, 40003))
        let cgroup = try TestCgroup()
        // One serve inside the namespace, one watching every namespace from another.
        let serve = try ExporterProcess(["nsenter", "--net=/run/netns/\(ns.name)", Binaries.portbudget, "serve",
                                         "--listen", "127.0.0.1:9958"])
        let watcherNS = try NetworkNamespace()
        // Unpaced: every second, however many namespaces share this machine.
        let all = try ExporterProcess(["nsenter", "--net=/run/netns/\(watcherNS.name)", Binaries.portbudget, "serve",
                                       "--listen", "127.0.0.1:9958", "--all-namespaces", "--collection-interval", "1s",
                                       "--collection-cpu-budget", "0"])
        for (server, place) in [(serve, ns), (all, watcherNS)] {
            _ = try server.await("the failure collector loaded") {
                place.httpGet("http://127.0.0.1:9958/metrics").flatMap {
                    $0.contains(#"portbudget_scrape_collector_success{collector="failures"} 1"#)
                        || $0.contains(#"collector="failures"} 1"#) ? $0 : nil
                }
            }
        }

        let made = try FailureMaker.run(in: ns, cgroup: cgroup)
        Self.assertMadeAsDesigned(made)
        let expected = Self.expectedDefault(made)

        let metrics = try serve.await("metrics") { ns.httpGet("http://127.0.0.1:9958/metrics", maxTime: 20) }
        XCTAssertEqual(Self.totals(metrics), expected, "serve in the namespace")
        for (labels, count) in expected {
            XCTAssertTrue(metrics.contains("portbudget_cgroup_port_allocation_failures_total{\(labels),cgroup=\"\(cgroup.relative)\",unit=\"\(cgroup.unit)\",container_id=\"\",pod_uid=\"\"} \(count)"),
                          "no cgroup series for \(labels) = \(count):\n" + metrics.split(separator: "\n").filter { $0.contains("failures") }.joined(separator: "\n"))
        }
        XCTAssertTrue(metrics.contains(#"portbudget_port_allocation_failure_drops_total{reason="count_keys"} 0"#))

        // Collected in the background: wait for a collection made after the failures.
        var everywhere = ""
        _ = try? all.await("the failures in a background collection", timeout: 20) { () -> Bool? in
            everywhere = watcherNS.httpGet("http://127.0.0.1:9958/metrics", maxTime: 20) ?? ""
            return Self.totals(everywhere, prefix: "netns=\"\(ns.name)\",") == expected ? true : nil
        }
        XCTAssertEqual(Self.totals(everywhere, prefix: "netns=\"\(ns.name)\","), expected, "serve --all-namespaces")
        XCTAssertTrue(everywhere.contains(#"portbudget_scrape_collector_success{netns="\#(ns.name)",collector="failures"} 1"#))
        XCTAssertEqual(serve.stop(SIGTERM)?.status, 0, serve.stderrText)
        XCTAssertEqual(all.stop(SIGTERM)?.status, 0, all.stderrText)
    }

    func testSyscallHooksAddBindAndUDPConnect() throws {
        try ExporterProcess.require("/usr/bin/curl")
        try Self.mountTracefs()
        let ns = try NetworkNamespace(range: (40000, 40003))
        let cgroup = try TestCgroup()
        let serve = try ExporterProcess(["nsenter", "--net=/run/netns/\(ns.name)", Binaries.portbudget, "serve",
                                         "--listen", "127.0.0.1:9958", "--failure-syscall-hooks"])
        _ = try serve.await("the failure collector loaded") {
            ns.httpGet("http://127.0.0.1:9958/metrics").flatMap {
                $0.contains(#"portbudget_scrape_collector_success{collector="failures"} 1"#) ? $0 : nil
            }
        }
        let made = try FailureMaker.run(in: ns, cgroup: cgroup)
        Self.assertMadeAsDesigned(made)
        let expected = Self.expectedDefault(made).merging(Self.expectedSyscalls(made)) { $1 }
        let metrics = try serve.await("metrics") { ns.httpGet("http://127.0.0.1:9958/metrics", maxTime: 20) }
        XCTAssertEqual(Self.totals(metrics), expected)
        XCTAssertEqual(serve.stop(SIGTERM)?.status, 0, serve.stderrText)
    }

    func testTraceJSONPrintsOneLinePerFailure() throws {
        let ns = try NetworkNamespace(range: (40000, 40003))
        let cgroup = try TestCgroup()
        let trace = try ExporterProcess([Binaries.portbudget, "trace", "--json", "--netns", ns.name])
        _ = try trace.await("trace ready") { trace.stderrText.contains("tracing failed port allocations") ? true : nil }
        let made = try FailureMaker.run(in: ns, cgroup: cgroup)
        Self.assertMadeAsDesigned(made)
        let expected = Self.expectedDefault(made)
        let total = expected.values.reduce(0, +)
        let lines = try trace.await("\(total) lines") {
            let lines = trace.stdoutText.split(separator: "\n")
            return lines.count >= total ? lines : nil
        }
        usleep(300_000)  // anything beyond the expected lines would be wrong too
        let stopped = try XCTUnwrap(trace.stop(SIGINT), "trace still running 5 s after SIGINT")
        XCTAssertEqual(stopped.status, 0, trace.stderrText)
        let objects = trace.stdoutText.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        XCTAssertEqual(objects.count, total, "one JSON object per failure: \(lines)")
        var byKind: [String: Int] = [:]
        for object in objects {
            let key = "protocol=\"\(object["protocol"] ?? "")\",call=\"\(object["call"] ?? "")\",errno=\"\(object["errno"] ?? "")\""
            byKind[key, default: 0] += 1
            XCTAssertEqual(object["pid"] as? Int, Int(made.pid))
            XCTAssertEqual(object["comm"] as? String, "python3")
            XCTAssertEqual(object["netns"] as? String, ns.name)
            XCTAssertEqual(object["cgroup"] as? String, cgroup.relative)
            XCTAssertEqual(object["unit"] as? String, cgroup.unit)
            if object["call"] as? String == "connect" {
                XCTAssertEqual(object["destination_port"] as? Int, 5000)
                XCTAssertTrue(["127.0.0.1", "::1"].contains(object["destination_ip"] as? String ?? ""), "\(object)")
            }
        }
        XCTAssertEqual(byKind, expected.filter { $0.value > 0 })
        let v6 = objects.filter { $0["destination_ip"] as? String == "::1" }.count
        XCTAssertEqual(v6, made.count("tcp_connect", "EADDRNOTAVAIL") - 3, "IPv6 connect failures")
    }

    /// `check --watch` counts the failures made while it watches, in its JSON
    /// report, and any failure makes the status critical.
    func testCheckWatchCountsFailuresDuringTheWindowAndGoesCritical() throws {
        let ns = try NetworkNamespace(range: (40000, 40003))
        let cgroup = try TestCgroup()
        let check = try ExporterProcess(["nsenter", "--net=/run/netns/\(ns.name)", Binaries.portbudget, "check", "--json",
                                         "--watch", "3"])
        _ = try check.await("the programs loaded") { check.stderrText.contains("counting failed port allocations") ? true : nil }
        let made = try FailureMaker.run(in: ns, cgroup: cgroup)
        Self.assertMadeAsDesigned(made)
        let deadline = Date().addingTimeInterval(60)
        while check.process.isRunning && Date() < deadline { usleep(100_000) }
        XCTAssertEqual(check.process.terminationStatus, 2, check.stderrText)
        let report = try JSONDecoder().decode(PortBudgetReport.self, from: Data(check.stdoutText.utf8))
        let failures = try XCTUnwrap(report.failures, check.stdoutText)
        var totals: [String: Int] = [:]
        for total in failures.totals {
            totals["protocol=\"\(total.kind.protocolName)\",call=\"\(total.kind.call.name)\",errno=\"\(total.kind.errnoName)\""] = Int(total.count)
        }
        XCTAssertEqual(totals, Self.expectedDefault(made))
        XCTAssertEqual(failures.holders.first?.unit, cgroup.unit)
    }

    /// The plain deploy files' way: uid 65534, no capabilities. The census
    /// is served, the failure collector is 0, and one log line says why.
    func testServeWithoutCapabilitiesServesCensusAndOneLineWhyNoFailures() throws {
        for program in ["/usr/bin/setpriv", "/usr/bin/curl"] { try ExporterProcess.require(program) }
        let ns = try NetworkNamespace()
        let serve = try ExporterProcess(ServeUnprivilegedTests.asDeployed + [Binaries.portbudget, "serve", "--listen", "127.0.0.1:9958"], in: ns)
        let metrics = try serve.await("an answer on /metrics") { ns.httpGet("http://127.0.0.1:9958/metrics") }
        XCTAssertTrue(metrics.contains(#"portbudget_scrape_collector_success{collector="sockdiag"} 1"#))
        XCTAssertTrue(metrics.contains(#"portbudget_scrape_collector_success{collector="failures"} 0"#))
        XCTAssertTrue(metrics.contains("portbudget_tcp_bound_ports"), "census not served")
        XCTAssertFalse(metrics.contains("portbudget_port_allocation_failures_total"))
        _ = ns.httpGet("http://127.0.0.1:9958/metrics")
        XCTAssertEqual(serve.stop(SIGTERM)?.status, 0)
        let lines = serve.stderrText.split(separator: "\n").filter { $0.contains("collector=failures") || $0.contains("BPF") }
        XCTAssertEqual(lines.count, 1, serve.stderrText)
        XCTAssertTrue(lines.first?.contains("CAP_BPF") == true && lines.first?.contains("CAP_PERFMON") == true,
                      serve.stderrText)
    }

    /// The `*-failures` deploy variants' privileges: uid 65534 holding exactly
    /// CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH (ambient, bounded to them),
    /// syscall hooks included, counts every kind exactly.
    func testServeWithExactlyTheDeployVariantsCapabilitiesCountsEveryKind() throws {
        for program in ["/usr/bin/setpriv", "/usr/bin/curl"] { try ExporterProcess.require(program) }
        try Self.mountTracefs()
        let ns = try NetworkNamespace(range: (40000, 40003))
        let cgroup = try TestCgroup()
        let caps = "+bpf,+perfmon,+dac_read_search"
        let serve = try ExporterProcess(["nsenter", "--net=/run/netns/\(ns.name)", "setpriv", "--reuid=65534", "--regid=65534",
                                         "--clear-groups", "--inh-caps=-all,\(caps)", "--ambient-caps=\(caps)",
                                         "--bounding-set=-all,\(caps)", "--no-new-privs",
                                         Binaries.portbudget, "serve", "--listen", "127.0.0.1:9958", "--failure-syscall-hooks"])
        let first = try serve.await("metrics") { ns.httpGet("http://127.0.0.1:9958/metrics", maxTime: 20) }
        XCTAssertTrue(first.contains(#"portbudget_scrape_collector_success{collector="failures"} 1"#), serve.stderrText)
        let made = try FailureMaker.run(in: ns, cgroup: cgroup)
        Self.assertMadeAsDesigned(made)
        let metrics = try serve.await("metrics") { ns.httpGet("http://127.0.0.1:9958/metrics", maxTime: 20) }
        XCTAssertEqual(Self.totals(metrics), Self.expectedDefault(made).merging(Self.expectedSyscalls(made)) { $1 })
        XCTAssertEqual(serve.stop(SIGTERM)?.status, 0, serve.stderrText)
    }

    func testTraceWithoutCapabilitiesExitsThreeNamingThem() throws {
        try ExporterProcess.require("/usr/bin/setpriv")
        if geteuid() != 0 { try NetworkNamespace.skip("setpriv needs root to drop to uid 65534", file: #filePath, line: #line) }
        let output = Command.run(ServeUnprivilegedTests.asDeployed + [Binaries.portbudget, "trace"], timeout: 30)
        XCTAssertEqual(output.status, 3, output.stderr)
        let lines = output.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, output.stderr)
        XCTAssertTrue(output.stderr.contains("CAP_BPF") && output.stderr.contains("CAP_PERFMON"), output.stderr)
        XCTAssertEqual(output.stdout, "")
    }

    /// Syscall tracepoints need tracefs; mount it where the kernel expects it.
    static func mountTracefs() throws {
        if FileManager.default.fileExists(atPath: "/sys/kernel/tracing/events") { return }
        guard geteuid() == 0 else {
            try NetworkNamespace.skip("tracefs is not mounted and mounting it needs root", file: #filePath, line: #line)
            return
        }
        let mounted = Command.run(["mount", "-t", "tracefs", "tracefs", "/sys/kernel/tracing"])
        guard mounted.status == 0 else { throw Failure("mount -t tracefs: \(mounted.stderr)") }
    }
}

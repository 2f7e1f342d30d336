import Foundation
import PortBudgetCore
import PortBudgetLinux
import XCTest

/// `serve` and `textfile --all-namespaces`: namespaces made with `ip netns
/// add` and `unshare -n`, each with its own tiny range and known sockets,
/// in one scrape under their `netns` labels, held to what was built and to
/// what the kernel then does; churn; and the unprivileged agent.
final class ServeAllNamespacesTests: XCTestCase {
    /// The agent runs in a namespace of its own (its `host`), entered with
    /// nsenter so the cgroup mounts stay visible; it listens on its loopback.
    /// It collects in the background every `backgroundInterval`.
    func startAgent(_ extra: [String] = [], prefix: [String] = []) throws -> (agent: ExporterProcess, home: NetworkNamespace) {
        let home = try NetworkNamespace(range: (45000, 45999))
        let agent = try ExporterProcess(["nsenter", "--net=/run/netns/\(home.name)"] + prefix
                                        + [Binaries.portbudget, "serve", "--all-namespaces", "--listen", "127.0.0.1:9958",
                                           "--collection-interval", "250ms"] + extra)
        _ = try agent.await("/healthz") { home.httpGet("http://127.0.0.1:9958/healthz") }
        return (agent, home)
    }

    /// A scrape covers every namespace on the machine, so it is given the
    /// all-namespaces collection deadline (30 s) and more, not the usual 5 s: a developer machine
    /// may hold many more namespaces than the test builds.
    func scrape(_ home: NetworkNamespace) -> String? { home.httpGet("http://127.0.0.1:9958/metrics", maxTime: 40) }

    /// A scrape answered from a collection that started after this call:
    /// scrapes answer from the latest background collection, and its age and
    /// duration say when it started.
    func freshScrape(_ home: NetworkNamespace, within seconds: Double = 40) -> String? {
        let changed = Date()
        let deadline = changed.addingTimeInterval(seconds)
        while Date() < deadline {
            let asked = Date()
            guard let text = scrape(home) else { return nil }
            if let age = value(text, "portbudget_collection_age_seconds", nil),
               let took = value(text, "portbudget_collection_duration_seconds", nil),
               asked.addingTimeInterval(-age - took) > changed {
                return text
            }
            usleep(100_000)
        }
        return nil
    }

    /// Sample values by their full label text, for one family.
    func values(_ text: String, _ family: String) -> [String: Double] {
        var out: [String: Double] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix(family + "{") {
            guard let space = line.lastIndex(of: " ") else { continue }
            out[String(line[line.index(line.startIndex, offsetBy: family.count)..<space])] = Double(line[line.index(after: space)...])
        }
        return out
    }

    /// One sample's value; `labels` nil for a family without labels.
    func value(_ text: String, _ family: String, _ labels: String?) -> Double? {
        guard let labels else {
            return text.split(separator: "\n").first { $0.hasPrefix(family + " ") }.flatMap { Double($0.split(separator: " ")[1]) }
        }
        return values(text, family)["{" + labels + "}"]
    }

    func inode(_ path: String) -> UInt64? {
        var status = stat()
        return stat(path, &status) == 0 ? UInt64(status.st_ino) : nil
    }

    func group(_ netns: String, _ port: Int) -> String {
        #"netns="\#(netns)",local_ip="127.0.0.1",peer_ip="127.0.0.1",peer_port="\#(port)""#
    }

    func testEveryNamespaceInOneScrapeAgreesWithTheKernel() throws {
        let quiet = try NetworkNamespace(range: (40000, 40099))
        let busy = try NetworkNamespace(range: (41000, 41019))
        try quiet.hold(["listen", "--at", "127.0.0.1:8080"])
        try quiet.hold(["connect", "--to", "127.0.0.1:8080", "--count", "10", "--hold"])
        try busy.hold(["listen", "--at", "127.0.0.1:9090"])
        try busy.hold(["connect", "--to", "127.0.0.1:9090", "--count", "15", "--hold"])
        let unshared = try HeldProcess.unsharedNamespace(range: (42000, 42049), port: 7070, connections: 5)
        defer { unshared.release() }
        let (agent, home) = try startAgent()

        let text = try XCTUnwrap(scrape(home))
        XCTAssertEqual(value(text, "portbudget_ports_usable", #"netns="\#(quiet.name)""#), 100)
        XCTAssertEqual(value(text, "portbudget_ports_usable", #"netns="\#(busy.name)""#), 20)
        XCTAssertEqual(value(text, "portbudget_ports_usable", #"netns="host""#), 1000, "the agent's own namespace")
        XCTAssertEqual(value(text, "portbudget_tcp_group_ports_used", group(quiet.name, 8080)), 10)
        XCTAssertEqual(value(text, "portbudget_tcp_group_ports_used", group(busy.name, 9090)), 15)
        let capacity = try XCTUnwrap(value(text, "portbudget_tcp_group_ports_capacity", group(busy.name, 9090)))
        XCTAssertEqual(capacity, 20)
        for ns in [quiet, busy] {
            let info = values(text, "portbudget_netns_info").keys.first { $0.hasPrefix(#"{netns="\#(ns.name)""#) }
            XCTAssertTrue(info?.contains(#"inode="\#(inode("/run/netns/\(ns.name)")!)""#) ?? false, info ?? "no info for \(ns.name)")
        }
        let pid = unshared.process.processIdentifier
        let unsharedName = unshared.namespaceName
        XCTAssertEqual(value(text, "portbudget_tcp_group_ports_used", group(unsharedName, 7070)), 5, text)
        XCTAssertTrue(values(text, "portbudget_netns_info").keys.contains {
            $0.hasPrefix(#"{netns="\#(unsharedName)",inode="\#(inode("/proc/\(pid)/ns/net")!)""#)
        })
        let count = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix(#"portbudget_namespaces{state="exported""#) })
        XCTAssertGreaterThanOrEqual(Int(count.split(separator: " ")[1]) ?? 0, 5, "home, quiet, busy, unshared and the real host")

        // The kernel agrees: exactly capacity - used more connects, then EADDRNOTAVAIL.
        let probe = try busy.probeConnects(to: "127.0.0.1:9090")
        XCTAssertEqual(probe.made, Int(capacity) - 15)
        XCTAssertEqual(probe.error, "EADDRNOTAVAIL")
        let full = try XCTUnwrap(freshScrape(home), agent.stderrText)
        XCTAssertEqual(value(full, "portbudget_tcp_group_utilization_ratio", group(busy.name, 9090)), 1)
        XCTAssertEqual(value(full, "portbudget_tcp_group_ports_used", group(quiet.name, 8080)), 10, "the others unchanged")
        // Sysctl and /proc/net files are kept open per namespace and read afresh on every scrape.
        try quiet.sysctl("net.ipv4.ip_local_port_range", "40000 40049")
        let narrowed = try XCTUnwrap(freshScrape(home))
        XCTAssertEqual(value(narrowed, "portbudget_ports_usable", #"netns="\#(quiet.name)""#), 50)
        XCTAssertEqual(value(narrowed, "portbudget_sockstat_tcp_inuse", #"netns="\#(busy.name)""#), 2 * 20 + 1, "20 pairs and the listener")
        // The in-agent evaluator names the namespace.
        XCTAssertTrue(full.split(separator: "\n").contains {
            $0.hasPrefix("portbudget_alerts{") && $0.contains(#"netns="\#(busy.name)""#) && $0.contains(#"peer_port="9090""#)
        }, full.split(separator: "\n").filter { $0.hasPrefix("portbudget_alerts") }.joined(separator: "\n"))
        // --top bounds group series across namespaces, never the per-namespace aggregates.
        XCTAssertEqual(agent.stop()?.status, 0)
        let (topAgent, topHome) = try startAgent(["--top", "1"])
        let top = try XCTUnwrap(scrape(topHome), topAgent.stderrText)
        XCTAssertEqual(Array(values(top, "portbudget_tcp_group_ports_used").keys), ["{" + group(busy.name, 9090) + "}"])
        XCTAssertEqual(value(top, "portbudget_tcp_groups", #"netns="\#(quiet.name)""#), 1)
    }

    /// The CPU budget as deployed: a collection costing more than the budget
    /// allows delays the next one by exactly its CPU over the budget, and the
    /// scrape says so; 0 keeps the interval whatever a collection costs.
    func testCollectionsAreSpacedToStayWithinTheCPUBudget() throws {
        let quiet = try NetworkNamespace(range: (40000, 40099))
        try quiet.hold(["listen", "--at", "127.0.0.1:8080"])
        try quiet.hold(["connect", "--to", "127.0.0.1:8080", "--count", "10", "--hold"])
        // A ten-thousandth of a CPU: 0.3 ms of collecting puts the next collection 3 s away.
        let (bounded, home) = try startAgent(["--collection-cpu-budget", "0.0001"])
        let first = try XCTUnwrap(scrape(home), bounded.stderrText)
        let cpu = try XCTUnwrap(value(first, "portbudget_collection_cpu_seconds", nil), first)
        let interval = try XCTUnwrap(value(first, "portbudget_collection_interval_seconds", nil))
        XCTAssertGreaterThan(cpu, 0.0003, "a collection of every namespace costs more than 0.3 ms of CPU")
        XCTAssertEqual(interval, min(cpu / 0.0001, CollectionPacing.longestGap), accuracy: interval * 1e-9,
                       "the next start is the CPU over the budget away")
        XCTAssertEqual(value(first, "portbudget_tcp_group_ports_used", group(quiet.name, 8080)), 10)
        sleep(2)
        let later = try XCTUnwrap(scrape(home))
        XCTAssertEqual(value(later, "portbudget_collection_cpu_seconds", nil), cpu, "still the first collection")
        XCTAssertGreaterThanOrEqual(value(later, "portbudget_collection_age_seconds", nil) ?? 0, 1.9)
        XCTAssertEqual(bounded.stop()?.status, 0)

        let (unbounded, again) = try startAgent(["--collection-cpu-budget", "0"])
        let fresh = try XCTUnwrap(freshScrape(again, within: 10), "no bound: a new collection every 250 ms\n" + unbounded.stderrText)
        let took = try XCTUnwrap(value(fresh, "portbudget_collection_duration_seconds", nil))
        XCTAssertEqual(value(fresh, "portbudget_collection_interval_seconds", nil), max(0.25, took),
                       "the interval, or the collection's own duration when longer")
        XCTAssertEqual(unbounded.stop()?.status, 0)
    }

    /// Namespaces appear and vanish while `serve --all-namespaces` is scraped
    /// and `check --all-namespaces` runs: every scrape answers, and afterwards
    /// no deleted namespace is reported and no descriptor is left behind.
    func testChurnNeverBreaksAScrapeAndLeavesNothingBehind() throws {
        let (agent, home) = try startAgent()
        let pid = agent.process.processIdentifier
        func descriptors() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1 }
        _ = try XCTUnwrap(freshScrape(home))
        let before = (0..<5).map { _ in usleep(50_000); return descriptors() }.min() ?? -1

        let prefix = "pbchurn-\(getpid())-"
        let stop = DispatchSemaphore(value: 0)
        let churner = Thread {
            var i = 0
            while stop.wait(timeout: .now()) == .timedOut {
                let name = prefix + "\(i % 4)"
                _ = Command.run(["ip", "netns", "add", name])
                _ = Command.run(["ip", "-n", name, "link", "set", "lo", "up"])
                _ = Command.run(["ip", "netns", "del", name])
                i += 1
            }
        }
        churner.start()
        for round in 0..<20 {
            let text = scrape(home)
            XCTAssertNotNil(text, "scrape \(round) failed: \(agent.stderrText.suffix(1000))")
            XCTAssertTrue(text?.contains(#"portbudget_ports_usable{netns="host"} 1000"#) ?? false)
            if round % 5 == 0 {
                let check = Command.run([Binaries.portbudget, "check", "--all-namespaces", "--json"], timeout: 30)
                XCTAssertTrue([0, 1, 2].contains(check.status), check.stderr)
            }
        }
        stop.signal()
        while churner.isExecuting { usleep(20_000) }
        for i in 0..<4 { _ = Command.run(["ip", "netns", "del", prefix + "\(i)"]) }
        let after = try XCTUnwrap(freshScrape(home))
        XCTAssertFalse(after.contains(prefix), "a deleted namespace is still reported")
        // A background collection may hold a dump's socket at any one moment: the least of a few looks.
        let settled = (0..<5).map { _ in usleep(50_000); return descriptors() }.min() ?? -1
        XCTAssertEqual(settled, before, "sessions of gone namespaces are closed")
        XCTAssertTrue(agent.process.isRunning)
    }

    /// As the deploy files run it without the two capabilities: the agent's
    /// own namespace is measured, the others are listed as not measured, and
    /// one warning names what is missing.
    func testUnprivilegedServeMeasuresItsOwnNamespaceAndSaysWhatIsMissing() throws {
        let other = try NetworkNamespace(range: (43000, 43009))
        let (agent, home) = try startAgent(prefix: ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                                    "--inh-caps=-all", "--bounding-set=-all"])
        let text = try XCTUnwrap(scrape(home))
        XCTAssertEqual(value(text, "portbudget_ports_usable", #"netns="host""#), 1000)
        XCTAssertEqual(value(text, "portbudget_scrape_collector_success", #"netns="\#(other.name)",collector="netns""#), 0)
        XCTAssertNil(value(text, "portbudget_ports_usable", #"netns="\#(other.name)""#))
        _ = try XCTUnwrap(scrape(home))
        let warnings = agent.stderrText.split(separator: "\n").filter { $0.contains("setns needs CAP_SYS_ADMIN") }
        XCTAssertEqual(warnings.count, 1, agent.stderrText)
    }

    /// Two pods of the same name (in two Kubernetes namespaces) get two
    /// distinct netns names, so no two series collide.
    func testPodsOfTheSameNameStayApart() throws {
        guard geteuid() == 0, let root = CgroupResolver(procfs: ProcFS()).root else {
            try NetworkNamespace.skip("needs root and a cgroup v2 hierarchy", file: #filePath, line: #line)
            return
        }
        let base = root + "/kubepods-pbsame-\(getpid())"
        var pods: [HeldProcess] = []
        var made: [String] = []
        defer {
            for pod in pods { pod.release() }
            usleep(100_000)
            for path in made.reversed() { rmdir(path) }
        }
        for port in [6100, 6200] {
            let pod = base + "/pod\(UUID().uuidString.lowercased())"
            for path in [base, pod] where !made.contains(path) {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
                made.append(path)
            }
            let script = """
                import socket, subprocess, sys
                socket.sethostname("web-0")
                subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
                server = socket.socket(); server.bind(("127.0.0.1", \(port))); server.listen(10)
                client = socket.create_connection(("127.0.0.1", \(port)))
                print("ready", flush=True); sys.stdin.read()
                """
            let process = try HeldProcess(["sh", "-c", "echo $$ > \(pod)/cgroup.procs && exec unshare -n -u python3 -c '\(script)'"])
            pods.append(process)
            XCTAssertEqual(process.firstLine(timeout: 10), "ready", process.stderrText())
        }
        let (agent, home) = try startAgent()
        let text = try XCTUnwrap(scrape(home), agent.stderrText)
        let names = values(text, "portbudget_netns_info").keys.filter { $0.contains(#"pod="web-0""#) }
        XCTAssertEqual(names.count, 2, text)
        // Each pod's own connection, under its own name: "pod:web-0" and "pod:web-0 [INODE]".
        var owners: [String] = []
        for port in [6100, 6200] {
            let series = values(text, "portbudget_tcp_group_ports_used").filter { $0.key.contains(#"peer_port="\#(port)""#) }
            XCTAssertEqual(series.count, 1, "\(port): \(series)")
            XCTAssertEqual(series.first?.value, 1)
            owners += series.keys.compactMap { $0.split(separator: "\"").dropFirst().first.map(String.init) }
        }
        XCTAssertEqual(Set(owners).count, 2, "\(owners)")
        XCTAssertTrue(owners.contains("pod:web-0"), "\(owners)")
        XCTAssertTrue(owners.contains { $0.hasPrefix("pod:web-0 [") }, "\(owners)")
        XCTAssertEqual(Set(text.split(separator: "\n").filter { !$0.hasPrefix("#") }).count,
                       text.split(separator: "\n").filter { !$0.hasPrefix("#") }.count, "no series twice")
    }

    func testTextfileWritesEveryNamespace() throws {
        let ns = try NetworkNamespace(range: (44000, 44009))
        try ns.hold(["listen", "--at", "127.0.0.1:6000"])
        try ns.hold(["connect", "--to", "127.0.0.1:6000", "--count", "4", "--hold"])
        let directory = NSTemporaryDirectory() + "pb-textfile-ns-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let output = Command.run([Binaries.portbudget, "textfile", "--all-namespaces", "--once", directory])
        XCTAssertEqual(output.status, 0, output.stderr)
        let text = try String(contentsOfFile: directory + "/portbudget.prom", encoding: .utf8)
        XCTAssertEqual(value(text, "portbudget_tcp_group_ports_used", group(ns.name, 6000)), 4)
        XCTAssertEqual(value(text, "portbudget_ports_usable", #"netns="\#(ns.name)""#), 10)
        XCTAssertTrue(text.contains(#"portbudget_netns_info{netns="host""#))
        XCTAssertGreaterThan(value(text, "portbudget_heap_bytes", #"state="in_use""#) ?? 0, 0,
                             "textfile exports the heap it trims, as serve does")
        XCTAssertNil(value(text, "portbudget_collection_interval_seconds", nil), "--once has no next write")

        // Writing every 100 ms against a ten-thousandth of a CPU: the file says
        // what the collection cost and how much later the next write comes.
        try FileManager.default.removeItem(atPath: directory + "/portbudget.prom")
        let loop = try ExporterProcess([Binaries.portbudget, "textfile", "--all-namespaces", "--interval", "100ms",
                                        "--collection-cpu-budget", "0.0001", directory])
        let paced = try loop.await("the first paced write") {
            (try? String(contentsOfFile: directory + "/portbudget.prom", encoding: .utf8)).flatMap {
                $0.contains("portbudget_collection_interval_seconds") ? $0 : nil
            }
        }
        let cpu = try XCTUnwrap(value(paced, "portbudget_collection_cpu_seconds", nil))
        let interval = try XCTUnwrap(value(paced, "portbudget_collection_interval_seconds", nil))
        XCTAssertGreaterThanOrEqual(interval, min(cpu / 0.0001, CollectionPacing.longestGap) * (1 - 1e-9))
        XCTAssertGreaterThan(interval, 1, "0.1 ms of CPU or more puts the next write a second or more away")
        _ = try loop.await("the notice that writes are spaced out") { loop.stderrText.contains("writes spaced out") ? true : nil }
        XCTAssertEqual(loop.stop()?.status, 0)
    }
}

import Foundation
import PortBudgetCore
import PortBudgetLinux
import XCTest

/// `check --all-namespaces`: namespaces made with `ip netns add` and with
/// `unshare -n` (held only by a process), each with its own tiny range and
/// known sockets, measured in one run and held to what was built.
final class AllNamespacesTests: XCTestCase {
    struct Entry: Decodable {
        struct Netns: Decodable {
            var name: String; var inode: UInt64; var pids: [Int32]
            var pod: String?; var pod_uid: String?; var container_id: String?
        }
        var netns: Netns
        var status: String?
        var port_range: PortBudgetReport.PortRange?
        var tcp: PortBudgetReport.TCP?
    }

    struct All: Decodable {
        var status: String
        var verdict: String
        var namespaces: [Entry]
    }

    func inode(_ path: String) -> UInt64? {
        var status = stat()
        return stat(path, &status) == 0 ? UInt64(status.st_ino) : nil
    }

    func testEveryNamespaceIsMeasuredNamedAndTheWorstNamed() throws {
        let quiet = try NetworkNamespace(range: (40000, 40099))
        let busy = try NetworkNamespace(range: (41000, 41019))
        try quiet.hold(["listen", "--at", "127.0.0.1:8080"])
        try quiet.hold(["connect", "--to", "127.0.0.1:8080", "--count", "10", "--hold"])
        try busy.hold(["listen", "--at", "127.0.0.1:9090"])
        try busy.hold(["connect", "--to", "127.0.0.1:9090", "--count", "20", "--hold"])  // the whole range: critical
        let unshared = try HeldProcess.unsharedNamespace(range: (42000, 42049), port: 7070, connections: 5)
        defer { unshared.release() }

        let output = Command.run([Binaries.portbudget, "check", "--all-namespaces", "--json"])
        XCTAssertEqual(output.status, 2, output.stderr)
        let all = try JSONDecoder().decode(All.self, from: Data(output.stdout.utf8))
        XCTAssertEqual(all.status, "critical")
        XCTAssertTrue(all.verdict.hasPrefix("CRITICAL: TCP 127.0.0.1 → 127.0.0.1:9090 at 100%"), all.verdict)
        XCTAssertTrue(all.verdict.contains("[netns \(busy.name)]"), all.verdict)
        XCTAssertEqual(all.namespaces.first?.netns.name, busy.name, "worst first")
        XCTAssertEqual(Set(all.namespaces.map(\.netns.inode)).count, all.namespaces.count, "each namespace once")
        XCTAssertTrue(all.namespaces.contains { $0.netns.name == "host" })

        for (ns, port, used, low) in [(quiet, 8080, 10, 40000), (busy, 9090, 20, 41000)] {
            let entry = try XCTUnwrap(all.namespaces.first { $0.netns.name == ns.name }, ns.name)
            XCTAssertEqual(entry.netns.inode, inode("/run/netns/\(ns.name)"))
            XCTAssertEqual(entry.port_range?.low, low)
            XCTAssertEqual(entry.tcp?.groups.first { $0.peerPort == port }?.used, used, ns.name)
        }
        let pid = unshared.process.processIdentifier
        let held = try XCTUnwrap(all.namespaces.first { $0.netns.pids.contains(pid) }, "the unshare -n namespace")
        XCTAssertEqual(held.netns.inode, inode("/proc/\(pid)/ns/net"))
        XCTAssertEqual(held.netns.name, unshared.namespaceName)
        XCTAssertEqual(held.port_range?.usable, 50)
        XCTAssertEqual(held.tcp?.groups.first { $0.peerPort == 7070 }?.used, 5)

        let text = Command.run([Binaries.portbudget, "check", "--all-namespaces"]).stdout
        XCTAssertTrue(text.contains("Network namespaces"), text)
        XCTAssertTrue(text.contains("TCP destinations across namespaces"), text)
        XCTAssertTrue(text.split(separator: "\n").contains { $0.hasPrefix(busy.name) && $0.contains("critical") }, text)
    }

    /// Without privileges the agent's own namespace is still measured (no
    /// setns needed), and each namespace it cannot enter gets one line saying
    /// what is missing.
    func testUnprivilegedMeasuresItsOwnNamespaceAndSaysWhatIsMissing() throws {
        let other = try NetworkNamespace()
        let output = Command.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                                  "--bounding-set=-all", Binaries.portbudget, "check", "--all-namespaces", "--json"])
        guard output.status != 126 && output.status != 127 else {
            try NetworkNamespace.skip("uid 65534 cannot run \(Binaries.portbudget): \(output.stderr)", file: #filePath, line: #line)
            return
        }
        XCTAssertEqual(output.status, 0, output.stderr)
        let all = try JSONDecoder().decode(All.self, from: Data(output.stdout.utf8))
        XCTAssertNotNil(all.namespaces.first { $0.netns.name == "host" }?.tcp, "the own namespace is measured")
        XCTAssertNil(all.namespaces.first { $0.netns.name == other.name }?.tcp)
        XCTAssertTrue(output.stderr.contains("netns \(other.name) (inode"), output.stderr)
        XCTAssertTrue(output.stderr.contains("setns needs CAP_SYS_ADMIN"), output.stderr)
    }

    /// A pod's namespace is named after the pod: its UID and container from
    /// the cgroup path (a kubelet-like tree made here), its name from the UTS
    /// host name, which Kubernetes sets to the pod name.
    func testAPodNamespaceIsNamedAfterThePod() throws {
        guard geteuid() == 0, let root = CgroupResolver(procfs: ProcFS()).root else {
            try NetworkNamespace.skip("needs root and a cgroup v2 hierarchy", file: #filePath, line: #line)
            return
        }
        let uid = UUID().uuidString.lowercased()
        let container = String(repeating: "3f4a9c1d", count: 8)
        let pod = root + "/kubepods-pbtest-\(getpid())/besteffort/pod\(uid)"
        try FileManager.default.createDirectory(atPath: pod + "/" + container, withIntermediateDirectories: true)
        defer {
            for path in [pod + "/" + container, pod, root + "/kubepods-pbtest-\(getpid())/besteffort", root + "/kubepods-pbtest-\(getpid())"] {
                rmdir(path)
            }
        }
        let script = """
            import socket, subprocess, sys
            socket.sethostname("web-7f9c")
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            server = socket.socket(); server.bind(("127.0.0.1", 6060)); server.listen(10)
            print("ready", flush=True); sys.stdin.read()
            """
        let process = try HeldProcess(["sh", "-c", "echo $$ > \(pod)/\(container)/cgroup.procs && exec unshare -n -u python3 -c '\(script)'"])
        defer { process.release(); usleep(100_000) }
        XCTAssertEqual(process.firstLine(timeout: 10), "ready", process.stderrText())
        let output = Command.run([Binaries.portbudget, "check", "--all-namespaces", "--json"])
        let all = try JSONDecoder().decode(All.self, from: Data(output.stdout.utf8))
        let entry = try XCTUnwrap(all.namespaces.first { $0.netns.pids.contains(process.process.processIdentifier) }, output.stdout)
        XCTAssertEqual(entry.netns.name, "pod:web-7f9c")
        XCTAssertEqual(entry.netns.pod, "web-7f9c")
        XCTAssertEqual(entry.netns.pod_uid, uid)
        XCTAssertEqual(entry.netns.container_id, container)
    }

    /// A systemd service with a namespace of its own (PrivateNetwork=) is
    /// named after the service: here a cgroup named like one, holding a
    /// process that made a namespace.
    func testAServiceNamespaceIsNamedAfterTheService() throws {
        guard geteuid() == 0, let root = CgroupResolver(procfs: ProcFS()).root else {
            try NetworkNamespace.skip("needs root and a cgroup v2 hierarchy", file: #filePath, line: #line)
            return
        }
        let unit = "pbtest-\(getpid()).service"
        try FileManager.default.createDirectory(atPath: root + "/" + unit, withIntermediateDirectories: true)
        let script = "import sys; print(\"ready\", flush=True); sys.stdin.read()"
        let process = try HeldProcess(["sh", "-c", "echo $$ > \(root)/\(unit)/cgroup.procs && exec unshare -n python3 -c '\(script)'"])
        defer { process.release(); usleep(100_000); rmdir(root + "/" + unit) }
        XCTAssertEqual(process.firstLine(timeout: 10), "ready", process.stderrText())
        let output = Command.run([Binaries.portbudget, "check", "--all-namespaces", "--json"])
        let all = try JSONDecoder().decode(All.self, from: Data(output.stdout.utf8))
        let entry = try XCTUnwrap(all.namespaces.first { $0.netns.pids.contains(process.process.processIdentifier) }, output.stdout)
        XCTAssertEqual(entry.netns.name, "unit:" + unit)
        XCTAssertEqual(process.namespaceName, "unit:" + unit, "the tests' own expectation agrees")
    }

    /// Namespaces appear and vanish while check runs: every run answers.
    func testChurnNeverBreaksARun() throws {
        guard geteuid() == 0 else {
            try NetworkNamespace.skip("needs root for ip netns", file: #filePath, line: #line)
            return
        }
        let stop = DispatchSemaphore(value: 0)
        let churner = Thread {
            var i = 0
            while stop.wait(timeout: .now()) == .timedOut {
                let name = "pbchurn-\(getpid())-\(i % 4)"
                _ = Command.run(["ip", "netns", "add", name])
                _ = Command.run(["ip", "netns", "del", name])
                i += 1
            }
        }
        churner.start()
        defer { stop.signal(); usleep(300_000) }
        for _ in 0..<8 {
            let output = Command.run([Binaries.portbudget, "check", "--all-namespaces", "--json"], timeout: 30)
            XCTAssertTrue([0, 1, 2].contains(output.status), output.stderr)
            XCTAssertNoThrow(try JSONDecoder().decode(All.self, from: Data(output.stdout.utf8)), output.stdout)
        }
    }
}

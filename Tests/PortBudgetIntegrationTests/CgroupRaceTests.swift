import Foundation
import PortBudgetCore
import PortBudgetLinux
import XCTest

/// A holder whose cgroup was made a moment before a scrape — a service
/// restart, a new container, exactly when an incident starts — is named at
/// once, not shown as deleted; only a cgroup that is really gone is.
final class CgroupRaceTests: XCTestCase {
    /// `serve` in the namespace (nsenter keeps the host's cgroup mount),
    /// scraped once before the cgroup exists and once a second after.
    func testACgroupMadeOneSecondBeforeAScrapeIsNamedAndOnlyAGoneOneIsDeleted() throws {
        let host = try ReplayHost(range: (40000, 40099), needs: [])
        // A socket of the test's own cgroup, so the first scrape walks the hierarchy.
        try host.ns.hold(["listen", "--at", "127.0.0.1:40050"])
        let serve = try ExporterProcess(["nsenter", "--net=/run/netns/\(host.ns.name)", Binaries.portbudget, "serve",
                                         "--listen", "127.0.0.1:9958"])
        func scrape() throws -> String {
            try serve.await("answer on /metrics") { host.ns.httpGet("http://127.0.0.1:9958/metrics") }
        }
        let first = try scrape()
        XCTAssertTrue(first.contains("portbudget_cgroup_bound_ports{"), first)

        let unit = "pbreplay-race.service"
        let created = Date()
        // The process makes its sockets in the new cgroup, then moves to the
        // slice (as a process re-parented by its manager would), so the
        // sockets keep an id whose cgroup can later be removed under them.
        let holder = try host.start(unit: unit, ["python3", "-c", """
            import os, socket, sys
            kept = []
            for _ in range(5):
                s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); kept.append(s)
            print("ready", flush=True)
            sys.stdin.readline()
            # Itself and the shell that started it, so the cgroup empties.
            for pid in ("0", str(os.getppid())):
                with open(sys.argv[1] + "/cgroup.procs", "w") as procs: procs.write(pid)
            print("moved", flush=True)
            sys.stdin.read()
            """, host.cgroupRoot + host.slice])
        XCTAssertEqual(holder.firstLine(timeout: 10), "ready", holder.stderrText())
        usleep(UInt32(max(0, 1.0 - Date().timeIntervalSince(created)) * 1_000_000))
        let second = try scrape()
        let named = "cgroup=\"\(host.slice)/\(unit)\",unit=\"\(unit)\""
        XCTAssertTrue(second.contains("portbudget_cgroup_bound_ports{protocol=\"tcp\",\(named),container_id=\"\",pod_uid=\"\"} 5"),
                      second.split(separator: "\n").filter { $0.contains("cgroup_bound") }.joined(separator: "\n"))
        XCTAssertFalse(second.contains("deleted:"), "a live cgroup shown as deleted")

        // Now the cgroup really goes (its sockets outlive it): then, and only then, it is deleted.
        holder.send("move")
        try host.wait("the holder left its cgroup") { holder.stdoutText().contains("moved") }
        let path = host.cgroupRoot + host.slice + "/" + unit
        try host.wait("the cgroup removed") { rmdir(path) == 0 || errno == ENOENT }
        let third = try scrape()
        XCTAssertTrue(third.contains("cgroup=\"deleted:"), third.split(separator: "\n").filter { $0.contains("cgroup_bound") }
            .joined(separator: "\n"))
        XCTAssertFalse(third.contains(named))
    }

    /// A resolver of the host's cgroup v2 hierarchy and its root; nil (the
    /// test skipped) without root or the hierarchy.
    func hostResolver(file: StaticString = #filePath, line: UInt = #line) throws -> (CgroupResolver, String)? {
        let resolver = CgroupResolver(procfs: ProcFS())
        guard geteuid() == 0, let root = resolver.root else {
            try NetworkNamespace.skip("needs root and a cgroup v2 hierarchy", file: file, line: line)
            return nil
        }
        return (resolver, root)
    }

    /// At most one walk per collection, and a gone id is remembered: it never
    /// prompts another walk.
    func testUnknownIdsWalkOnceAndGoneIdsNeverAgain() throws {
        guard let (resolver, root) = try hostResolver() else { return }
        let relative = "/pbreplay-\(getpid())-walks.service"
        let gone: UInt64 = 0x7fff_ffff_ffff_fff0  // no cgroup has this id
        XCTAssertEqual(resolver.resolve([gone]), [gone: .gone])
        XCTAssertEqual(resolver.walks, 1)
        XCTAssertEqual(resolver.resolve([gone]), [gone: .gone])
        XCTAssertEqual(resolver.walks, 1, "a gone id walked again")
        try FileManager.default.createDirectory(atPath: root + relative, withIntermediateDirectories: false)
        defer { rmdir(root + relative) }
        let id = try XCTUnwrap(CgroupResolver.cgroupID(root + relative))
        XCTAssertEqual(resolver.resolve([id, gone]), [id: .owner(CgroupOwner(path: relative)), gone: .gone])
        XCTAssertEqual(resolver.walks, 2, "one walk for the new cgroup")
        XCTAssertEqual(resolver.resolve([id]), [id: .owner(CgroupOwner(path: relative))])
        XCTAssertEqual(resolver.walks, 2)
    }

    /// A known id is checked against its path once per collection, not once
    /// per namespace: a cgroup removed mid-collection keeps its name until
    /// the next collection starts, which checks it again and finds it gone.
    func testKnownIdsAreCheckedOncePerCollection() throws {
        guard let (resolver, root) = try hostResolver() else { return }
        let relative = "/pbreplay-\(getpid())-checked.service"
        try FileManager.default.createDirectory(atPath: root + relative, withIntermediateDirectories: false)
        defer { rmdir(root + relative) }
        let id = try XCTUnwrap(CgroupResolver.cgroupID(root + relative))
        let owner = CgroupResolver.Resolution.owner(CgroupOwner(path: relative))
        resolver.startCollection()
        XCTAssertEqual(resolver.resolve([id]), [id: owner])
        let walks = resolver.walks
        XCTAssertEqual(rmdir(root + relative), 0)
        XCTAssertEqual(resolver.resolve([id]), [id: owner], "checked once already in this collection")
        XCTAssertEqual(resolver.walks, walks)
        resolver.startCollection()
        XCTAssertEqual(resolver.resolve([id]), [id: .gone])
        XCTAssertEqual(resolver.walks, walks + 1, "its path no longer holds it: one walk")
        resolver.startCollection()
        XCTAssertEqual(resolver.resolve([id]), [id: .gone])
        XCTAssertEqual(resolver.walks, walks + 1, "a gone id never walks again")
    }

    /// The collection's workers resolve at once: each gets every answer, and
    /// an unknown id makes one walk, not one per worker.
    func testWorkersResolvingAtOnceAgreeAndWalkOnce() throws {
        guard let (resolver, root) = try hostResolver() else { return }
        let relative = "/pbreplay-\(getpid())-workers.service"
        let gone: UInt64 = 0x7fff_ffff_ffff_ffe0  // no cgroup has this id
        resolver.startCollection()
        _ = resolver.resolve([gone])
        let walks = resolver.walks
        try FileManager.default.createDirectory(atPath: root + relative, withIntermediateDirectories: false)
        defer { rmdir(root + relative) }
        let id = try XCTUnwrap(CgroupResolver.cgroupID(root + relative))
        let lock = NSLock()
        nonisolated(unsafe) var answers: [[UInt64: CgroupResolver.Resolution]] = []
        DispatchQueue.concurrentPerform(iterations: 16) { _ in
            let answer = resolver.resolve([id, gone])
            lock.withLock { answers.append(answer) }
        }
        let expected: [UInt64: CgroupResolver.Resolution] = [id: .owner(CgroupOwner(path: relative)), gone: .gone]
        XCTAssertEqual(answers, Array(repeating: expected, count: 16))
        XCTAssertEqual(resolver.walks, walks + 1)
    }
}

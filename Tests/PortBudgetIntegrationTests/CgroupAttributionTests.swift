import Foundation
import PortBudgetCore
import PortBudgetLinux
import XCTest

/// The kernel's side of attribution: a socket made by a process in a cgroup
/// of our own carries that cgroup's id in its SOCK_DIAG record, and the
/// resolver turns the id back into the path we made.
final class CgroupAttributionTests: XCTestCase {
    /// A child cgroup under the v2 root, removed at teardown; skips (fails
    /// under CI=true) where there is no v2 hierarchy or no root.
    func makeCgroup(_ relative: String) throws -> (resolver: CgroupResolver, full: String) {
        let resolver = CgroupResolver(procfs: ProcFS())
        guard geteuid() == 0, let root = resolver.root else {
            try NetworkNamespace.skip("needs root and a cgroup v2 hierarchy (root \(resolver.root ?? "none"))",
                                      file: #filePath, line: #line)
            throw XCTSkip("unreachable")
        }
        let full = root + relative
        try FileManager.default.createDirectory(atPath: full, withIntermediateDirectories: true)
        addTeardownBlock {
            var path = full
            while path.count > root.count { rmdir(path); path = (path as NSString).deletingLastPathComponent }
        }
        return (resolver, full)
    }

    func testSocketRecordsCarryTheirProcessCgroupAndItResolvesToThePath() throws {
        let relative = "/pbtest-\(getpid()).slice/pbtest-holder.service"
        let (resolver, full) = try makeCgroup(relative)
        // The process joins the cgroup before it makes the socket: the id is fixed at socket().
        let holder = try HeldProcess(["sh", "-c", """
            echo $$ > \(full)/cgroup.procs && exec python3 -c '
            import socket, sys
            s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
            print(s.getsockname()[1], flush=True); sys.stdin.read()'
            """])
        let port = try XCTUnwrap(UInt16(holder.firstLine(timeout: 10) ?? ""), "the holder printed no port: \(holder.stderrText())")
        var seen: InetDiagRecord? = nil
        try SockDiagDumper().dump(family: .v4, proto: .tcp, filter: .sourcePorts(port, port)) { seen = $0 }
        let record = try XCTUnwrap(seen, "no socket on port \(port)")
        XCTAssertNotEqual(record.cgroupID, 0, "the kernel sent no INET_DIAG_CGROUP_ID")
        XCTAssertEqual(resolver.resolve([record.cgroupID])[record.cgroupID], .owner(CgroupOwner(path: relative)))
        XCTAssertEqual(CgroupOwner(path: relative).unit, "pbtest-holder.service")
        // The process view: the same socket's inode leads to the holder's pid and comm.
        let owners = SocketOwners.scan(procfs: ProcFS(), wanted: [record.inode]).owners
        XCTAssertEqual(owners[record.inode]?.comm, "python3")
        XCTAssertEqual(owners[record.inode]?.pid, holder.process.processIdentifier)
        holder.release()
        usleep(100_000)  // the exited process leaves the cgroup as it is reaped
        // Once removed, the id is reported as gone (the rewalk interval does not hold back a first walk).
        rmdir(full)
        let fresh = CgroupResolver(root: resolver.root)
        XCTAssertEqual(fresh.resolve([record.cgroupID])[record.cgroupID], .gone)
    }

    func testNoV2HierarchyMeansNothingIsResolved() {
        XCTAssertNil(MountInfo.cgroup2MountPoint("22 1 0:21 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"))
        XCTAssertTrue(CgroupResolver(root: nil).resolve([1, 2]).isEmpty)
        XCTAssertEqual(MountInfo.cgroup2MountPoint("41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"),
                       "/sys/fs/cgroup/unified")
        XCTAssertEqual(MountInfo.cgroup2MountPoint("""
            90 80 0:38 /kubepods/pod1 /sys/fs/cgroup ro - cgroup2 cgroup2 rw
            41 31 0:38 / /host\\040cgroup rw shared:9 - cgroup2 cgroup2 rw
            """), "/host cgroup")
    }
}

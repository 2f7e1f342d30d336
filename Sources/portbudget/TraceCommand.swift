import ArgumentParser
import Foundation
import Glibc
import PortBudgetCore
import PortBudgetLinux
import Synchronization

/// Set by SIGINT/SIGTERM; the poll loop ends at its next wake-up.
private let stopRequested = Atomic<Bool>(false)

struct TraceCommand: ParsableCommand {
    /// How long one wait for events lasts: the longest a stop signal waits.
    static let pollMilliseconds: Int32 = 200
    /// Least time between two namespace scans prompted by an unknown namespace.
    static let rescanSeconds = 1.0

    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "Print every failed port allocation as it happens.",
        discussion: """
            One line per failure, as the kernel refuses it: time, network namespace, pid, \
            comm, cgroup (unit, container, pod), protocol, call, errno, and for connect() the \
            destination. --json prints one JSON object per line instead. Without --netns or \
            --all-namespaces only the namespace portbudget runs in is traced.

            Counted: TCP connect() EADDRNOTAVAIL, listen() autobind EADDRINUSE, UDP send \
            autobind EAGAIN; with --failure-syscall-hooks also bind(addr, 0) EADDRINUSE and UDP \
            connect() EAGAIN (see docs/failures.md).

            Needs CAP_BPF and CAP_PERFMON (and tracefs plus CAP_DAC_READ_SEARCH for the syscall \
            hooks). Exit status: 0 on SIGINT or SIGTERM; 2 bad command line; 3 when the BPF \
            programs cannot be loaded (one line names what is missing).
            """)

    @Flag(help: "One JSON object per line.")
    var json = false

    @Option(help: ArgumentHelp("Trace the network namespace NAME (`ip netns`), pid:PID, or a namespace file path.", valueName: "target"))
    var netns: String?

    @Flag(help: "Trace every network namespace on the host.")
    var allNamespaces = false

    @Flag(help: "Also trace bind(addr, 0) EADDRINUSE and UDP connect() EAGAIN through syscall tracepoints (slows every syscall of the host while tracing).")
    var failureSyscallHooks = false

    @Option(help: "Where procfs is mounted.")
    var procfs = "/proc"

    func validate() throws {
        if netns != nil && allNamespaces { throw ValidationError("--netns and --all-namespaces exclude each other") }
        if let netns {
            do { _ = try NetnsTarget(parsing: netns) } catch { throw ValidationError("\(error)") }
        }
    }

    func run() throws {
        let procfs = ProcFS(root: self.procfs)
        let wanted: UInt64?
        do {
            wanted = allNamespaces ? nil : try targetInode()
        } catch {
            printError("portbudget: \(error)")
            throw ExitCode(2)
        }
        let stream: FailureEventStream
        do throws(FailureProgramsUnavailable) {
            let programs = try FailurePrograms(options: .init(syscallHooks: failureSyscallHooks))
            stream = try FailureEventStream(programs: programs)
        } catch {
            printError("portbudget: \(error)")
            throw ExitCode(3)
        }
        for signal in [SIGINT, SIGTERM] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { _ in stopRequested.store(true, ordering: .relaxed) }
            sigemptyset(&action.sa_mask)
            action.sa_flags = 0  // no SA_RESTART: the wait returns at once
            sigaction(signal, &action, nil)
        }
        let cgroups = CgroupResolver(procfs: procfs)
        var names = NamespaceNames(procfs: procfs, cgroups: cgroups)
        printError("portbudget: tracing failed port allocations in "
                   + (wanted.map { names.name($0) ?? "netns \($0)" } ?? "every network namespace") + "; SIGINT stops")
        while !stopRequested.load(ordering: .relaxed) {
            let records: [FailureEventStream.Record]
            do throws(FailureProgramsUnavailable) {
                records = try stream.poll(timeoutMilliseconds: Self.pollMilliseconds)
            } catch {
                printError("portbudget: \(error)")
                throw ExitCode(1)
            }
            var out = ""
            // Each batch is named as it is now: a cgroup removed since the last is checked again.
            cgroups.startCollection()
            for record in records where wanted == nil || record.netnsInode == wanted {
                let owner: CgroupOwner? = if case let .owner(owner) = cgroups.resolve([record.cgroupID])[record.cgroupID] {
                    owner
                } else { nil }
                let event = FailureEvent(
                    time: FailureEventStream.wallClock(bootNanoseconds: record.bootNanoseconds),
                    netnsInode: record.netnsInode, netnsName: names.name(record.netnsInode), pid: record.pid,
                    tid: record.tid, comm: record.comm, cgroupID: record.cgroupID, owner: owner, kind: record.kind,
                    destination: record.destination)
                out += (json ? FailureEventRenderer.json(event) : FailureEventRenderer.text(event)) + "\n"
            }
            if !out.isEmpty { out.withUTF8 { _ = write(1, $0.baseAddress, $0.count) } }
        }
    }

    /// The inode of the namespace to trace: --netns's, else the one portbudget runs in.
    func targetInode() throws -> UInt64 {
        let candidates = try netns.map { try NetnsTarget(parsing: $0).candidates(procfs: procfs) }
            ?? [procfs + "/thread-self/ns/net"]
        var status = stat()
        for path in candidates where stat(path, &status) == 0 { return UInt64(status.st_ino) }
        throw ValidationError("--netns \(netns ?? ""): no such network namespace (tried \(candidates.joined(separator: ", ")))")
    }
}

/// Network namespace inode → the name the exporter gives it, rescanned when
/// an unknown one shows up (at most every `TraceCommand.rescanSeconds`).
struct NamespaceNames {
    let procfs: ProcFS
    let cgroups: CgroupResolver
    var known: [UInt64: String] = [:]
    var scannedAt: Double = -.infinity

    init(procfs: ProcFS, cgroups: CgroupResolver) {
        self.procfs = procfs
        self.cgroups = cgroups
    }

    mutating func name(_ inode: UInt64) -> String? {
        if let name = known[inode] { return name }
        let now = Date().timeIntervalSince1970
        guard now - scannedAt >= TraceCommand.rescanSeconds else { return nil }
        scannedAt = now
        for sighting in NamespaceDiscovery.scan(procfs: procfs).sightings where known[sighting.inode] == nil {
            if let name = sighting.name {
                known[sighting.inode] = name
            } else if sighting.inode == inode,
                      let found = NamespaceDiscovery.open(sighting, procfs: procfs, cgroups: cgroups,
                                                               agentUserNamespace: nil) {
                known[sighting.inode] = found.info.name
            }
        }
        return known[inode]
    }
}

import ArgumentParser
import Foundation
import Logging
import PortBudgetAgent
import PortBudgetCore
import PortBudgetLinux

struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Measure once and report, Nagios-style.",
        discussion: """
            Exit status: 0 ok, 1 warning, 2 critical, 3 unknown (the agent could not measure, \
            the collection did not finish within \(CollectionResult.deadline.secondsDescription), \(AllNamespacesCollector.deadline.secondsDescription) with --all-namespaces, or the command line is wrong). Thresholds apply to every utilization: each \
            destination group, host-wide TCP bind, and UDP; where conntrack is readable, also each \
            SNAT group and the conntrack table's fill.
            """)

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Option(parsing: .unconditional, help: "How many destination groups to list, worst first (0 lists every group).")
    var top = 20

    @Option(parsing: .unconditional, help: "Utilization ratio (0-1] at which the status becomes warning.")
    var warning = 0.8

    @Option(parsing: .unconditional, help: "Utilization ratio (0-1] at which the status becomes critical.")
    var critical = 0.95

    @Option(parsing: .unconditional, help: "How many holders (cgroups, and processes with --processes) to name per budget (0 names all).")
    var holders = 3

    @Flag(help: "Also name the processes holding the ports (scans /proc/PID/fd once, as ss -p does).")
    var processes = false

    @Option(help: "Where procfs is mounted.")
    var procfs = "/proc"

    @Option(parsing: .unconditional, help: ArgumentHelp("Source ports the NAT (MASQUERADE/SNAT) hands out, for the SNAT budget (default: the kernel's 1024-65535).", valueName: "low-high"))
    var snatPortRange: String?

    @Option(help: ArgumentHelp("Measure another network namespace: a name from `ip netns add`, a path to a namespace file, or pid:PID.",
                               valueName: "name|path|pid:PID"))
    var netns: String?

    @Flag(help: "Measure every network namespace on the host (containers, pods, `ip netns`): one verdict over all, then each.")
    var allNamespaces = false

    /// For the benchmark: the census without naming holders, to price attribution.
    @Flag(help: .hidden)
    var noAttribution = false

    /// For tests: the per-family fallback census must agree with the kernel too.
    @Option(help: .hidden)
    var tcpDumps: Collector.TCPDumps = .bothFamilies

    func validate() throws {
        guard top >= 0 else { throw ValidationError("--top must be 0 or more, got \(top)") }
        guard holders >= 0 else { throw ValidationError("--holders must be 0 or more, got \(holders)") }
        if let problem = Thresholds(warning: warning, critical: critical).problem { throw ValidationError(problem) }
        _ = try parsedSNATPortRange(snatPortRange)
        if let netns {
            do { _ = try NetnsTarget(parsing: netns) } catch { throw ValidationError("\(error)") }
            guard !allNamespaces else { throw ValidationError("--netns and --all-namespaces exclude each other") }
        }
    }

    func run() async throws {
        let logger = makeLogger("portbudget.check", level: .critical)
        if allNamespaces {
            try await runAllNamespaces(logger: logger)
            return
        }
        // Another namespace: held open now (so it cannot change under us), entered
        // by the collection's own thread, whose view of /proc/net is thread-self's.
        let namespace: NetworkNamespaceHandle?
        do {
            namespace = try netns.map { try NetworkNamespaceHandle(try NetnsTarget(parsing: $0), procfs: self.procfs) }
        } catch {
            printError("portbudget: \(error)")
            throw ExitCode(3)
        }
        let procfs = ProcFS(root: self.procfs, netOfCallingThread: namespace != nil)
        var configured = Collector(procfs: procfs, logger: logger, tcpDumps: tcpDumps, attribution: noAttribution ? nil : .init(
            cgroups: CgroupResolver(procfs: procfs), top: holders, processes: processes))
        configured.snatPortRange = try parsedSNATPortRange(snatPortRange) ?? .kernelDefault
        let collector = configured
        let thresholds = Thresholds(warning: warning, critical: critical)
        // A read stuck on a hung mount must not hang the plugin: give up at
        // the deadline; exiting ends the stuck thread with the process.
        let collection: CollectionResult
        switch try await CollectionRunner(deadline: CollectionResult.deadline, collect: {
            if let namespace {
                do { try namespace.enterOnThisThread() } catch {
                    return .notEntered("\(error)")
                }
            }
            return collector.collect(thresholds: thresholds)
        }).run() {
        case .finished(let finished): collection = finished
        case .overdue(_, let overdue):
            printError("UNKNOWN: \(overdue)")
            throw ExitCode(3)
        }
        guard let report = collection.report, collection.fatalError == nil else {
            printError("UNKNOWN: \(collection.fatalError ?? "no report")")
            throw ExitCode(3)
        }
        for failed in collection.outcomes where !failed.success {
            if failed.name == "conntrack" {
                printError("portbudget: conntrack collector failed, SNAT and conntrack omitted: \(failed.error ?? "")")
                continue
            }
            printError("portbudget: \(failed.name) collector failed, counters omitted: \(failed.error ?? "")")
        }
        // Diagnosed before the --top cut: findings look at every group.
        let diagnosed = report.diagnosed()
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            let data = try encoder.encode(diagnosed.limitingGroups(to: top))
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(CheckReportRenderer.render(diagnosed, top: top), terminator: "")
        }
        throw ExitCode(report.status.exitCode)
    }
}

extension CheckCommand {
    /// Every namespace, as `serve --all-namespaces` collects them (each
    /// entered once by a short-lived thread, several collected at once);
    /// one verdict over all, exit status the worst.
    func runAllNamespaces(logger: Logger) async throws {
        let procfs = ProcFS(root: self.procfs)
        let cgroups = CgroupResolver(procfs: procfs)
        var configured = Collector(procfs: procfs, logger: logger, tcpDumps: tcpDumps, attribution: noAttribution ? nil : .init(
            cgroups: cgroups, top: holders, processes: processes))
        configured.snatPortRange = try parsedSNATPortRange(snatPortRange) ?? .kernelDefault
        OpenFilesLimit.raiseToHard()
        let all = AllNamespacesCollector(collector: configured, cgroups: cgroups, logger: logger)
        let thresholds = Thresholds(warning: warning, critical: critical)
        let collection: CollectionResult
        switch try await CollectionRunner(deadline: AllNamespacesCollector.deadline, collect: {
            all.collect(thresholds: thresholds)
        }).run() {
        case .finished(let finished): collection = finished
        case .overdue(_, let overdue):
            printError("UNKNOWN: \(overdue)")
            throw ExitCode(3)
        }
        let unreadable = collection.unreadableProcesses
        if unreadable > 0 {
            printError("portbudget: \(unreadable) process\(unreadable == 1 ? "'s" : "es'") network namespace could not be "
                       + "opened (another user's process needs CAP_SYS_PTRACE; some sandboxes hide pid 1); every other namespace is measured")
        }
        let report = NamespacesReport(namespaces: (collection.namespaces ?? []).map { entry in
            NamespaceReport(netns: entry.netns, report: entry.collection.report?.diagnosed(),
                            error: entry.collection.report == nil ? entry.collection.fatalError ?? "no report" : nil)
        })
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(report.limitingGroups(to: top)), as: UTF8.self))
        } else {
            print(report.render(top: top), terminator: "")
        }
        for failed in report.unmeasured {
            printError("portbudget: netns \(failed.netns.name) (inode \(failed.netns.inode)) not measured: \(failed.error ?? "")")
        }
        throw ExitCode(report.unmeasured.count == report.namespaces.count ? 3 : report.status.exitCode)
    }
}

extension Collector.TCPDumps: ExpressibleByArgument {}

/// `--snat-port-range` checked: nil when not given; a one-line usage error when not a range.
func parsedSNATPortRange(_ text: String?) throws -> SNATPortRange? {
    guard let text else { return nil }
    do {
        return try SNATPortRange(parsing: text)
    } catch {
        throw ValidationError("--snat-port-range \(error.description)")
    }
}

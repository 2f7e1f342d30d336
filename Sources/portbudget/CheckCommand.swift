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

            With --watch SECONDS, failed port allocations are counted in the kernel for that \
            long before the measurement (docs/failures.md): any failure makes the status \
            critical; when they cannot be counted (no CAP_BPF and CAP_PERFMON) one line says why \
            and the status is the census's.
            """)

    @OptionGroup var collection: CollectionOptions

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Option(parsing: .unconditional, help: "Utilization ratio (0-1] at which the status becomes warning.")
    var warning = 0.8

    @Option(parsing: .unconditional, help: "Utilization ratio (0-1] at which the status becomes critical.")
    var critical = 0.95

    @Option(parsing: .unconditional, help: "How many holders (cgroups, and processes with --processes) to name per budget (0 names all).")
    var holders = 3

    @Flag(help: "Also name the processes holding the ports (scans /proc/PID/fd once, as ss -p does).")
    var processes = false

    /// For the benchmark: the census without naming holders, to price attribution.
    @Flag(help: .hidden)
    var noAttribution = false

    /// For tests: the per-family fallback census must agree with the kernel too.
    @Option(help: .hidden)
    var tcpDumps: SockDiagCollector.TCPDumps = .bothFamilies

    @Option(parsing: .unconditional, help: ArgumentHelp("Count failed port allocations in the kernel for this long before measuring (needs CAP_BPF and CAP_PERFMON).", valueName: "seconds"))
    var watch: Double?

    func validate() throws {
        if let watch, !(watch > 0 && watch <= Self.longestWatch) {
            throw ValidationError("--watch takes seconds above 0 and at most \(Int(Self.longestWatch)), got \(watch)")
        }
        guard holders >= 0 else { throw ValidationError("--holders must be 0 or more, got \(holders)") }
        if let problem = Thresholds(warning: warning, critical: critical).problem { throw ValidationError(problem) }
    }

    func run() async throws {
        let logger = makeLogger("portbudget.check", level: .critical)
        let source: CollectionSource
        do {
            source = try collection.source(logger: logger) { configuration in
                configuration.holders = noAttribution ? nil : holders
                configuration.processes = processes
                configuration.tcpDumps = tcpDumps
                configuration.thresholds = Thresholds(warning: warning, critical: critical)
                if watch != nil { configuration.failures = FailurePrograms.Options() }
                // Without --watch there is one collection: nothing to keep open for a next.
                configuration.keepsSessions = watch != nil
                // The JSON report carries the kernel's counters; the table shows none.
                configuration.extendedCounters = json
            }
        } catch {
            printError("portbudget: \(error)")
            throw ExitCode(3)
        }
        try await watchFailures(source)
        // A read stuck on a hung mount must not hang the plugin: give up at
        // the deadline; exiting ends the stuck thread with the process.
        let result: CollectionResult
        switch try await CollectionRunner(deadline: source.deadline, collectorNames: source.collectors.names,
                                          collect: source.collect).run() {
        case .finished(let finished): result = finished
        case .overdue(_, let overdue):
            printError("UNKNOWN: \(overdue)")
            throw ExitCode(3)
        }
        if result.acrossNamespaces {
            try report(namespaces: result)
        } else {
            try report(result.namespaces[0])
        }
    }

    /// One namespace's verdict, findings and groups; exit status its status.
    func report(_ namespace: NamespaceCollection) throws {
        guard let report = namespace.report else {
            printError("UNKNOWN: \(namespace.missingReportReason ?? "no report")")
            throw ExitCode(3)
        }
        for failed in namespace.outcomes where !failed.success {
            if failed.name == FailureCollector.name {
                printError("portbudget: failed port allocations not counted: \(failed.error ?? "")")
                continue
            }
            if failed.name == ConntrackCollector.name {
                printError("portbudget: \(failed.name) collector failed, SNAT and conntrack omitted: \(failed.error ?? "")")
                continue
            }
            printError("portbudget: \(failed.name) collector failed, counters omitted: \(failed.error ?? "")")
        }
        if json {
            print(String(decoding: try PrettyJSONEncoder().encode(report.limitingGroups(to: collection.top)), as: UTF8.self))
        } else {
            print(CheckReportRenderer.render(report, top: collection.top), terminator: "")
            if let failures = report.failures, let watch { print(FailureSummary.text(failures, seconds: watch)) }
        }
        throw ExitCode(FailureSummary.exitCode(report.status.exitCode, failures: report.failures))
    }

    /// Every namespace: one verdict over all, then each; exit status the worst.
    func report(namespaces result: CollectionResult) throws {
        let unreadable = result.unreadableProcesses
        if unreadable > 0 {
            printError("portbudget: \(unreadable) process\(unreadable == 1 ? "'s" : "es'") network namespace could not be "
                       + "opened (another user's process needs CAP_SYS_PTRACE; some sandboxes hide pid 1); every other namespace is measured")
        }
        let report = NamespacesReport(namespaces: result.namespaces.map { entry in
            NamespaceReport(netns: entry.netns, report: entry.report, error: entry.missingReportReason)
        })
        if json {
            print(String(decoding: try PrettyJSONEncoder().encode(report.limitingGroups(to: collection.top)), as: UTF8.self))
        } else {
            print(report.render(top: collection.top, budget: collection.budget), terminator: "")
        }
        for failed in report.unmeasured {
            printError("portbudget: netns \(failed.netns.name) (inode \(failed.netns.inode)) not measured: \(failed.error ?? "")")
        }
        throw ExitCode(report.unmeasured.count == report.namespaces.count ? 3 : report.status.exitCode)
    }
}

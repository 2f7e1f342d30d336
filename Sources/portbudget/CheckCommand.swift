import ArgumentParser
import Foundation
import PortBudgetCore
import PortBudgetLinux

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Measure once and report, Nagios-style.",
        discussion: """
            Exit status: 0 ok, 1 warning, 2 critical, 3 unknown (the agent could not measure, \
            or the command line is wrong). Thresholds apply to every utilization: each \
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

    @Option(help: "Where procfs is mounted.")
    var procfs = "/proc"

    @Option(parsing: .unconditional, help: ArgumentHelp("Source ports the NAT (MASQUERADE/SNAT) hands out, for the SNAT budget (default: the kernel's 1024-65535).", valueName: "low-high"))
    var snatPortRange: String?

    /// For tests: the per-family fallback census must agree with the kernel too.
    @Option(help: .hidden)
    var tcpDumps: Collector.TCPDumps = .bothFamilies

    func validate() throws {
        guard top >= 0 else { throw ValidationError("--top must be 0 or more, got \(top)") }
        if let problem = Thresholds(warning: warning, critical: critical).problem { throw ValidationError(problem) }
        _ = try parsedSNATPortRange(snatPortRange)
    }

    func run() throws {
        let logger = makeLogger("portbudget.check", level: .critical)
        var collector = Collector(procfs: ProcFS(root: procfs), logger: logger, tcpDumps: tcpDumps)
        collector.snatPortRange = try parsedSNATPortRange(snatPortRange) ?? .kernelDefault
        let collection = collector.collect(thresholds: Thresholds(warning: warning, critical: critical))
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
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            let data = try encoder.encode(report.limitingGroups(to: top))
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(CheckReportRenderer.render(report, top: top), terminator: "")
        }
        throw ExitCode(report.status.exitCode)
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

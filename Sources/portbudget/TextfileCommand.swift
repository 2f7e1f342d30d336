import ArgumentParser
import Logging
import PortBudgetCore
import PortBudgetLinux
import PortBudgetServer
import ServiceLifecycle

struct TextfileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "textfile",
        abstract: "Write the port budget for node_exporter's textfile collector.",
        discussion: """
            Writes DIR/portbudget.prom (the metrics of 'serve') every --interval until SIGTERM or \
            SIGINT, or once with --once. Each write goes to DIR/.portbudget.prom.tmp, is fsynced \
            and renamed into place, so only whole *.prom files are ever visible. Point \
            node_exporter's --collector.textfile.directory at DIR.

            SIGHUP is logged and otherwise ignored. Exit status 2: bad command line, or DIR missing or not writable; 1: a --once write failed.
            """)

    @Argument(help: "Directory node_exporter reads (--collector.textfile.directory).")
    var directory: String

    @Option(parsing: .unconditional, help: "How often to rewrite the file, as a Prometheus duration: 500ms, 15s, 1m.")
    var interval = "15s"

    @Flag(help: "Write once and exit.")
    var once = false

    @Option(parsing: .unconditional, help: "Export per-destination series for the N most utilized groups only (0: all). Aggregates cover every group.")
    var top = 20

    @Option(help: "Where procfs is mounted.")
    var procfs = "/proc"

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .info

    @Option(parsing: .unconditional, help: ArgumentHelp("Source ports the NAT (MASQUERADE/SNAT) hands out, for the SNAT budget (default: the kernel's 1024-65535).", valueName: "low-high"))
    var snatPortRange: String?

    @Flag(help: "Watch every network namespace on the host (containers, pods, `ip netns`): every per-namespace series gains a netns label. Needs CAP_SYS_ADMIN and CAP_SYS_PTRACE (see the README).")
    var allNamespaces = false

    @OptionGroup(title: "Failures counted in the kernel")
    var failureOptions: FailureOptions

    func validate() throws {
        let parsed: PrometheusDuration
        do {
            parsed = try PrometheusDuration(parsing: interval)
        } catch {
            throw ValidationError("--interval \(error.description)")
        }
        guard parsed.milliseconds > 0 else { throw ValidationError("--interval must be above zero, got \(interval)") }
        guard top >= 0 else { throw ValidationError("--top must be 0 or more, got \(top)") }
        _ = try parsedSNATPortRange(snatPortRange)
    }

    func run() async throws {
        let logger = makeLogger("portbudget.textfile", level: logLevel)
        let writer = TextfileWriter(directory: directory)
        do {
            try writer.checkWritable()
        } catch {
            printError("portbudget: \(error)")
            throw ExitCode(2)
        }
        let setup = CollectionSetup(procfs: procfs, snatPortRange: try parsedSNATPortRange(snatPortRange) ?? .kernelDefault,
                                    allNamespaces: allNamespaces, failures: failureOptions.programs)
        let service = TextfileService(
            writer: writer, interval: try PrometheusDuration(parsing: interval).duration, top: top,
            version: PortBudgetCommand.version, deadline: setup.deadline, logger: logger, collect: setup.makeCollect(logger: logger))
        if once {
            try await service.writeOnce()
            return
        }
        let hangup = HangupService(logger: logger) {
            logger.notice("SIGHUP: textfile has no configuration to reload; it keeps writing")
        }
        let group = ServiceGroup(configuration: .init(
            services: [service, hangup], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

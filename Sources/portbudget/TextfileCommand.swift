import ArgumentParser
import Logging
import PortBudgetAgent
import PortBudgetCore
import PortBudgetLinux
import ServiceLifecycle

struct TextfileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "textfile",
        abstract: "Write the port budget for node_exporter's textfile collector.",
        discussion: """
            Writes DIR/portbudget.prom (the metrics of 'serve') every --interval until SIGTERM or \
            SIGINT, or once with --once; with --all-namespaces, further apart when collections cost \
            more CPU than --collection-cpu-budget allows on average. Each write goes to DIR/.portbudget.prom.tmp, is fsynced \
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

    @OptionGroup var collection: CollectionOptions

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .info

    @OptionGroup(title: "Pacing across every namespace")
    var pacingOptions: PacingOptions

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
        let every = try PrometheusDuration(parsing: interval).duration
        let source: CollectionSource
        do {
            source = try collection.source(logger: logger) { configuration in
                configuration.failures = failureOptions.programs
                // One write has no next one to take turns in: it measures every namespace.
                if !once { configuration.cpuAllowance = pacingOptions.pacing.allowance(interval: every.inSeconds) }
            }
        } catch {
            printError("portbudget: \(error)")
            throw ExitCode(2)
        }
        let service = TextfileService(
            writer: writer, interval: every,
            pacing: collection.allNamespaces ? pacingOptions.pacing : nil, top: collection.top,
            version: PortBudgetCommand.version, budget: collection.budget, deadline: source.deadline,
            collectorNames: source.collectors.names, observers: [HeapReleaser(logger: logger)],
            logger: logger, collect: source.collect)
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

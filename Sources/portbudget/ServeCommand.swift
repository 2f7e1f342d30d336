import ArgumentParser
import Glibc
import Logging
import PortBudgetAlerting
import PortBudgetCore
import PortBudgetLinux
import PortBudgetServer
import ServiceLifecycle

struct ServeCommand: AsyncParsableCommand {
    /// Port 9958: in the 9100–9999 exporter range, and not taken by any
    /// exporter we could find (the project wiki's allocation list could not be
    /// checked offline; see deploy/README.md).
    static let defaultListen = ":9958"

    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the port budget to Prometheus over HTTP, measured on each scrape.",
        discussion: """
            GET /metrics answers in the Prometheus text format 0.0.4 (gzip when asked). Every \
            scrape runs a fresh collection; scrapes that arrive while one runs share it. / is a \
            landing page, /healthz answers "ok". The default port is 9958.

            When a collector fails, the answer is still 200: portbudget_scrape_collector_success \
            for it is 0 and the metrics it feeds are absent — never a stale or guessed value. If \
            the port census itself fails, only build info and the collector gauges are served.

            With --config FILE, the built-in alert evaluator runs the file's rules over every \
            group every evaluation_interval and posts to its Alertmanagers (see the README).

            With --all-namespaces every network namespace on the host is measured on each \
            scrape, through netlink sockets and files opened once inside it: each namespace's \
            series carry a netns label, portbudget_netns_info says who lives in it, --top bounds \
            the group series across all namespaces, and alerts carry the netns label. A namespace \
            the agent cannot enter is listed with portbudget_scrape_collector_success{collector="netns"} 0.

            SIGHUP reloads --config as Prometheus does: the file is validated first, and on an \
            error the running rules stay and the error is logged \
            (portbudget_config_last_reload_successful 0). SIGTERM or SIGINT stops the server \
            cleanly (exit 0). Exit status 2: bad command line \
            or configuration (the message names the file, line and key); 1: the address cannot be \
            listened on.
            """)

    @Option(help: ArgumentHelp("Address to listen on: HOST:PORT, :PORT (every address) or [IPv6]:PORT.",
                               valueName: "host:port"))
    var listen = defaultListen

    @Option(parsing: .unconditional, help: "Export per-destination series for the N most utilized groups only (0: all). Aggregates cover every group.")
    var top = 20

    @Option(help: "Where procfs is mounted.")
    var procfs = "/proc"

    @Option(parsing: .unconditional, help: "Connections held at once. Beyond it a new connection evicts an idle one; it is refused only when all are busy.")
    var maxConnections = 64

    @Option(help: ArgumentHelp("Alerting rules and Alertmanagers (YAML). Without it the built-in rules are evaluated and exported, and nothing is sent.",
                               valueName: "file"))
    var config: String?

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .info

    @Option(parsing: .unconditional, help: ArgumentHelp("Source ports the NAT (MASQUERADE/SNAT) hands out, for the SNAT budget (default: the config's snat_port_range, else the kernel's 1024-65535).", valueName: "low-high"))
    var snatPortRange: String?

    @Flag(help: "Watch every network namespace on the host (containers, pods, `ip netns`): every per-namespace series gains a netns label. Needs CAP_SYS_ADMIN and CAP_SYS_PTRACE (see the README).")
    var allNamespaces = false

    @OptionGroup(title: "Failures counted in the kernel")
    var failureOptions: FailureOptions

    func validate() throws {
        do {
            _ = try ListenAddress(parsing: listen)
        } catch {
            throw ValidationError(error.description)
        }
        guard top >= 0 else { throw ValidationError("--top must be 0 or more, got \(top)") }
        guard maxConnections >= 1 else { throw ValidationError("--max-connections must be 1 or more, got \(maxConnections)") }
        _ = try parsedSNATPortRange(snatPortRange)
    }

    func run() async throws {
        let logger = makeLogger("portbudget.serve", level: logLevel)
        let alerting: AlertConfig
        do {
            alerting = try config.map { try AlertConfig.load(path: $0) } ?? .defaults
        } catch {
            printError("portbudget: \(error)")
            throw ExitCode(2)
        }
        let address = try ListenAddress(parsing: listen)
        let setup = CollectionSetup(
            procfs: procfs, snatPortRange: try parsedSNATPortRange(snatPortRange) ?? alerting.snatPortRange ?? .kernelDefault,
            allNamespaces: allNamespaces, failures: failureOptions.programs)
        let evaluator = makeEvaluator(alerting, procfs: ProcFS(root: procfs), address: address, logger: logger)
        let coordinator = ScrapeCoordinator(top: top, version: PortBudgetCommand.version, hooks: [evaluator],
                                            deadline: setup.deadline, collect: setup.makeCollect(logger: logger))
        await evaluator.attach(coordinator)
        let server = try await MetricsServer.bind(.init(listen: address, maxConnections: maxConnections),
                                                  coordinator: coordinator, logger: logger)
        let hangup = HangupService(logger: logger) { await evaluator.reloadConfigFile() }
        let group = ServiceGroup(configuration: .init(
            services: [server, evaluator, hangup], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    /// The evaluator, with the delivery each configuration gets. The pinned
    /// source ports for deliveries default to the 8 just below the ephemeral range.
    func makeEvaluator(_ alerting: AlertConfig, procfs: ProcFS, address: ListenAddress, logger: Logger) -> AlertEvaluator {
        let host = hostName()
        return AlertEvaluator(config: alerting, configPath: config, externalLabels: ["instance": "\(host):\(address.port)"],
                              generatorURL: "http://\(host):\(address.port)/metrics", logger: logger) { alerting in
            guard !alerting.alertmanagers.isEmpty else { return nil }
            var sourcePorts = alerting.sourcePorts
            if sourcePorts == nil, let sysctls = try? procfs.portSysctls(), sysctls.rangeLow > 1032 {
                sourcePorts = (sysctls.rangeLow - 8)...(sysctls.rangeLow - 1)
            }
            return AlertmanagerDelivery(alertmanagers: alerting.alertmanagers,
                                        sourcePorts: sourcePorts ?? 32760...32767, logger: logger)
        }
    }

    func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "localhost" }
        return String(cString: buffer)
    }
}

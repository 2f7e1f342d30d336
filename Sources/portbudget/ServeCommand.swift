import ArgumentParser
import Glibc
import Logging
import PortBudgetAgent
import PortBudgetAlerting
import PortBudgetCore
import PortBudgetLinux
import PortBudgetServer
import ServiceLifecycle

struct ServeCommand: AsyncParsableCommand {
    /// Port 9958: in the 9100–9999 exporter range, and not taken by any
    /// exporter we could find (the project wiki's allocation list could not be
    /// checked offline; see docs/deployment.md).
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
            group every evaluation_interval and posts to its Alertmanagers (see docs/alerting.md).

            With --all-namespaces every network namespace on the host is measured in the \
            background every --collection-interval, further apart when collections cost more CPU \
            than --collection-cpu-budget allows on average, and a scrape answers from the latest \
            complete collection (portbudget_collection_age_seconds says how old): each namespace's series \
            carry a netns label, portbudget_netns_info says who lives in it, --top bounds the group \
            series across all namespaces, and alerts carry the netns label. At most \(NamespaceBudget.defaultListed) \
            namespaces are exported one by one — the host's own, then those owned by the host's user \
            namespace, then the worst — and the rest summed (portbudget_namespaces{state}). A namespace \
            the agent cannot enter is listed with portbudget_scrape_collector_success{collector="netns"} 0.

            With --web.config.file FILE (the exporter toolkit's format: tls_server_config, \
            basic_auth_users, http_server_config.headers; docs/web-config.md), serve speaks TLS, \
            asks for client certificates and basic-auth passwords as the file says.

            SIGHUP reloads --config (and --web.config.file, \
            portbudget_web_config_last_reload_successful) as Prometheus does: the file is validated first, and on an \
            error the running rules stay and the error is logged \
            (portbudget_config_last_reload_successful 0). SIGTERM or SIGINT stops the server \
            cleanly (exit 0). Exit status 2: bad command line \
            or configuration (the message names the file, line and key); 1: the address cannot be \
            listened on.
            """)

    @Option(help: ArgumentHelp("Address to listen on: HOST:PORT, :PORT (every address) or [IPv6]:PORT.",
                               valueName: "host:port"))
    var listen = defaultListen

    @OptionGroup var collection: CollectionOptions

    @Option(parsing: .unconditional, help: "Connections held at once. Beyond it a new connection evicts an idle one; it is refused only when all are busy.")
    var maxConnections = 64

    @Option(help: ArgumentHelp("Alerting rules and Alertmanagers (YAML). Without it the built-in rules are evaluated and exported, and nothing is sent.",
                               valueName: "file"))
    var config: String?

    @Option(name: .customLong("web.config.file"),
            help: ArgumentHelp("TLS, client certificates, basic auth and response headers, in the Prometheus exporter toolkit's web configuration format (see docs/web-config.md). Re-read on SIGHUP; certificate files also when they change.",
                               valueName: "file"))
    var webConfigFile: String?

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .info

    @Option(parsing: .unconditional, help: "With --all-namespaces: how often to collect in the background, as a Prometheus duration (scrapes answer from the latest collection).")
    var collectionInterval = "15s"

    @OptionGroup(title: "Pacing across every namespace")
    var pacingOptions: PacingOptions

    @OptionGroup(title: "Failures counted in the kernel")
    var failureOptions: FailureOptions

    func validate() throws {
        do {
            _ = try ListenAddress(parsing: listen)
        } catch {
            throw ValidationError(error.description)
        }
        guard maxConnections >= 1 else { throw ValidationError("--max-connections must be 1 or more, got \(maxConnections)") }
        let interval: PrometheusDuration
        do {
            interval = try PrometheusDuration(parsing: collectionInterval)
        } catch {
            throw ValidationError("--collection-interval \(error.description)")
        }
        guard interval.milliseconds > 0 else { throw ValidationError("--collection-interval must be above zero, got \(collectionInterval)") }
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
        let web: WebAccess?
        do {
            web = try webConfigFile.map { try WebAccess(path: $0, logger: logger) }
        } catch {
            printError("portbudget: \(error)")
            throw ExitCode(2)
        }
        let address = try ListenAddress(parsing: listen)
        let interval = try PrometheusDuration(parsing: collectionInterval).duration
        let source: CollectionSource
        do {
            source = try collection.source(logger: logger) { configuration in
                if collection.snatPortRange == nil, let configured = alerting.snatPortRange {
                    configuration.snatPortRange = configured
                }
                configuration.failures = failureOptions.programs
                configuration.cpuAllowance = pacingOptions.pacing.allowance(interval: interval.inSeconds)
            }
        } catch {
            printError("portbudget: \(error)")
            throw ExitCode(2)
        }
        let evaluator = makeEvaluator(alerting, procfs: ProcFS(root: collection.procfs), address: address,
                                      scheme: web?.usesTLS == true ? "https" : "http", logger: logger)
        // Across every namespace a collection can take seconds: collect in the
        // background and answer scrapes from the latest one.
        let freshness: ScrapeCoordinator.Freshness = collection.allNamespaces
            ? .background(interval: interval, pacing: pacingOptions.pacing) : .perScrape
        // The heap last: what the evaluator forgot is free by then.
        let observers: [any CollectionObserver] = [evaluator] + (web.map { [$0] } ?? []) + [HeapReleaser(logger: logger)]
        let coordinator = ScrapeCoordinator(top: collection.top, version: PortBudgetCommand.version, observers: observers,
                                            deadline: source.deadline, collectorNames: source.collectors.names,
                                            freshness: freshness, budget: collection.budget, collect: source.collect)
        await evaluator.collect { _ = try await coordinator.scrape() }
        // Background collection starts at once; a per-scrape one waits for a scrape.
        if freshness == .perScrape { await source.markConnectionsOlderThanTheFailurePrograms() }
        var serverConfiguration = MetricsServer.Configuration(listen: address, maxConnections: maxConnections)
        serverConfiguration.web = web
        let server = try await MetricsServer.bind(serverConfiguration, coordinator: coordinator, logger: logger)
        let hangup = HangupService(logger: logger) {
            await evaluator.reloadConfigFile()
            web?.reload()
        }
        let group = ServiceGroup(configuration: .init(
            services: freshness == .perScrape ? [server, evaluator, hangup] : [server, coordinator, evaluator, hangup],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    /// The evaluator, with the delivery each configuration gets. The pinned
    /// source ports for deliveries default to the 8 just below the ephemeral range.
    func makeEvaluator(_ alerting: AlertConfig, procfs: ProcFS, address: ListenAddress, scheme: String,
                       logger: Logger) -> AlertEvaluator {
        let host = hostName()
        return AlertEvaluator(config: alerting, configPath: config, externalLabels: ["instance": "\(host):\(address.port)"],
                              budget: collection.budget,
                              generatorURL: "\(scheme)://\(host):\(address.port)/metrics", logger: logger) { alerting in
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

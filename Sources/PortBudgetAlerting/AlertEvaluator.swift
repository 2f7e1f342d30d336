import Foundation
import Logging
import PortBudgetCore
import ServiceLifecycle

/// The in-agent evaluator. It learns every collection (its own, every
/// `evaluation_interval`, and each Prometheus scrape's), evaluates the rules
/// over every group — not only the exported top N — and sends due alerts to
/// Alertmanager. It needs no Prometheus, so a page still leaves when the
/// Prometheus that would have alerted cannot reach its Alertmanager.
///
/// Evaluation and delivery run apart: the evaluation loop ticks on its
/// interval whatever Alertmanager does, and only wakes the delivery loop,
/// through a one-slot mailbox where the latest wake-up wins. The delivery
/// loop then sends what is due at that moment, so a slow or black-holed
/// Alertmanager delays pages, never evaluations, and nothing queues up
/// behind it.
public actor AlertEvaluator: CollectionObserver, Service {
    /// Builds the delivery for a configuration (nil: no Alertmanagers).
    public typealias MakeDelivery = @Sendable (AlertConfig) -> AlertmanagerDelivery?
    /// Runs a collection now; the evaluator observes it like any other.
    public typealias CollectNow = @Sendable () async throws -> Void

    /// Projector samples are kept at most this fraction of the evaluation
    /// interval apart: the evaluator's own ticks (which may run a little
    /// early) always land, and extra scrapes in between add nothing.
    public static let sampleSpacingFactor = 0.9
    /// State changes logged one by one per evaluation; the rest are one line
    /// per rule and state, so a tenant's thousand namespaces cannot flood the log.
    public static let loggedTransitions = 10
    /// Alerts sent to Alertmanager in one post at most, those of namespaces
    /// listed one by one first; the rest stay due and go with the next posts.
    public static let alertsPerPost = 500

    private var config: AlertConfig
    private let configPath: String?
    private let baseExternalLabels: [String: String]
    private let makeDelivery: MakeDelivery
    private var delivery: AlertmanagerDelivery?
    /// Deliveries replaced by a reload, shut down by the delivery loop once it is not using them.
    private var retired: [AlertmanagerDelivery] = []
    private let logger: Logger
    private let generatorURL: String?
    private var machine: AlertStateMachine
    /// Trends and rates per network namespace; a namespace that is gone, or
    /// not measured for a whole projection window, loses its own.
    private var trends: NamespaceTrends
    private var collectNow: CollectNow?
    private var evaluations = 0
    /// Namespaces judged at the last evaluation, listed one by one and not.
    private var judged = (listed: 0, unlisted: 0)
    private let budget: NamespaceBudget
    private var lastEvaluationFailed = false
    private var reloadSucceeded = true
    private var lastReloadSuccess = Date().timeIntervalSince1970
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation

    /// `externalLabels` are the agent's own (instance); the config's
    /// `external_labels` are merged over them, now and on every reload.
    /// `configPath` is the file SIGHUP reloads.
    public init(config: AlertConfig, configPath: String? = nil, externalLabels: [String: String],
                budget: NamespaceBudget = NamespaceBudget(), generatorURL: String?, logger: Logger, makeDelivery: @escaping MakeDelivery) {
        self.config = config
        self.configPath = configPath
        self.baseExternalLabels = externalLabels
        self.budget = budget
        self.makeDelivery = makeDelivery
        self.delivery = makeDelivery(config)
        self.logger = logger
        self.generatorURL = generatorURL
        trends = NamespaceTrends(sampleSpacing: Self.sampleSpacingFactor * config.evaluationInterval)
        machine = AlertStateMachine(rules: config.rules, externalLabels: Self.labels(externalLabels, config),
                                    evaluationInterval: config.evaluationInterval, resendInterval: config.resendInterval)
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    static func labels(_ base: [String: String], _ config: AlertConfig) -> [String: String] {
        base.merging(config.externalLabels) { _, configured in configured }
    }

    /// How the evaluator gets a collection between scrapes: whatever it
    /// calls must hand the collection to `collected(_:writer:)`.
    public func collect(with collectNow: @escaping CollectNow) {
        self.collectNow = collectNow
    }

    static func now() -> Double { Date().timeIntervalSince1970 }

    // MARK: CollectionObserver

    public func collected(_ collection: CollectionResult, writer: inout ExpositionWriter) async {
        evaluate(collection, at: Self.now())
        write(into: &writer)
    }

    /// Every namespace of the collection: one whose census failed keeps its
    /// alerts as they are; one that is gone resolves them and loses its
    /// trends, as does one not measured for a whole projection window. When
    /// nothing at all was measured of the agent's one namespace, no
    /// evaluation happens: no census, no verdict.
    func evaluate(_ collection: CollectionResult, at now: Double) {
        if !collection.acrossNamespaces, let only = collection.namespaces.first, only.report == nil {
            if !lastEvaluationFailed {
                logger.warning("alert evaluation skipped: the census failed", metadata: ["error": "\(only.missingReportReason ?? "")"])
            }
            lastEvaluationFailed = true
            return
        }
        lastEvaluationFailed = false
        evaluations += 1
        var evaluated: [AlertInputs] = []
        var unmeasured: Set<String> = []
        for namespace in collection.namespaces {
            let netns = collection.acrossNamespaces ? namespace.netns.name : nil
            if let report = namespace.report {
                evaluated.append(trends.inputs(report, netns: netns, at: now))
            } else if let netns {
                unmeasured.insert(netns)
            }
        }
        // The namespaces the exposition lists one by one (`NamespaceBudget`),
        // nil when the agent watches one: alert series outside it are only counted.
        var listedNamespaces: Set<String>?
        if collection.acrossNamespaces {
            let present = Set(collection.namespaces.map(\.netns.name))
            trends.keep(present: present, at: now)
            listedNamespaces = Set(budget.split(collection.namespaces).listed.map { collection.namespaces[$0].netns.name })
        }
        let before = Dictionary(uniqueKeysWithValues: machine.alerts.map { ($0.key, $0.value.state) })
        let refusedBefore = machine.refused
        machine.evaluate(evaluated, unmeasured: unmeasured, listed: listedNamespaces, at: now)
        let listedCount = evaluated.filter { machine.isListed($0.labels) }.count
        judged = (listedCount, evaluated.count - listedCount)
        logTransitions(from: before)
        if machine.refused > 0 && refusedBefore == 0 {
            logger.warning("alert instances of namespaces beyond the namespace budget are at their capacity; further ones are counted, not kept",
                           metadata: ["capacity": "\(machine.unlistedCapacity)", "refused": "\(machine.refused)"])
        }
    }

    private func logTransitions(from before: [String: Alert.State]) {
        var logged = 0
        var unlogged: [String: Int] = [:]
        for (key, alert) in machine.alerts.sorted(by: { $0.key < $1.key }) where before[key] != alert.state {
            guard logged < Self.loggedTransitions else {
                unlogged["\(alert.rule) \(alert.state.rawValue)", default: 0] += 1
                continue
            }
            logged += 1
            var metadata: Logger.Metadata = ["alertname": "\(alert.rule)", "state": "\(alert.state.rawValue)",
                                             "value": "\(PrometheusNumber.format(alert.value))"]
            for (name, value) in alert.labels where !["alertname"].contains(name) { metadata[name] = "\(value)" }
            switch alert.state {
            case .pending: logger.info("alert pending", metadata: metadata)
            case .firing: logger.warning("alert firing", metadata: metadata)
            case .resolved: logger.notice("alert resolved", metadata: metadata)
            }
        }
        for (change, count) in unlogged.sorted(by: { $0.key < $1.key }) {
            logger.warning("more alerts changed state than are logged one by one", metadata: ["change": "\(change)", "alerts": "\(count)"])
        }
        let cleared = before.filter { machine.alerts[$0.key] == nil && $0.value == .pending }.keys.sorted()
        for key in cleared.prefix(Self.loggedTransitions) {
            logger.info("pending alert cleared", metadata: ["key": "\(key.split(separator: "\u{0}").joined(separator: ","))"])
        }
        if cleared.count > Self.loggedTransitions {
            logger.info("more pending alerts cleared than are logged one by one", metadata: ["alerts": "\(cleared.count - Self.loggedTransitions)"])
        }
    }

    func write(into writer: inout ExpositionWriter) {
        let everyActive = machine.active
        let active = everyActive.filter { machine.isListed($0.labels) }
        writer.family("portbudget_alerts", .gauge,
                      help: "Alerts of the in-agent evaluator that are pending or firing (1), like Prometheus' ALERTS.",
                      active.map { alert in
                          var labels: [(name: String, value: String)] = [("alertstate", alert.state.rawValue)]
                          for (name, value) in alert.labels.sorted(by: { $0.key < $1.key }) { labels.append((name, value)) }
                          return ExpositionWriter.Sample(labels, 1)
                      })
        // Host-wide per namespace, and the 20 soonest groups over all namespaces.
        var hostWide: [(netns: String, entry: (series: ExhaustionProjector.Series, seconds: Double))] = []
        var groups: [(netns: String, entry: (series: ExhaustionProjector.Series, seconds: Double))] = []
        for (netns, trend) in trends.byNamespace.sorted(by: { $0.key < $1.key }) where machine.isListed(netns: netns) {
            for entry in trend.projector.projections {
                if entry.series.group == nil { hostWide.append((netns, entry)) } else { groups.append((netns, entry)) }
            }
        }
        groups.sort { $0.entry.seconds < $1.entry.seconds }
        writer.family("portbudget_seconds_to_exhaustion", .gauge,
                      help: "Seconds until the ports run out at the recent trend (least-squares over 10 minutes; +Inf when not rising), host-wide and for the 20 soonest groups.",
                      (hostWide + groups.prefix(20)).map { netns, entry in
                          var labels: [(name: String, value: String)] = netns.isEmpty ? [] : [("netns", netns)]
                          labels.append(("scope", entry.series.scope))
                          if let g = entry.series.group {
                              labels += [("local_ip", g.localIP), ("peer_ip", g.peerIP), ("peer_port", String(g.peerPort))]
                          }
                          return ExpositionWriter.Sample(labels, entry.seconds)
                      })
        if machine.listed != nil {
            var unlisted: [String: Int] = ["pending": 0, "firing": 0]
            for alert in everyActive where !machine.isListed(alert.labels) { unlisted[alert.state.rawValue, default: 0] += 1 }
            writer.family("portbudget_alerts_unlisted", .gauge,
                          help: "Pending or firing alerts of namespaces beyond the namespace budget, counted instead of listed in portbudget_alerts.",
                          unlisted.sorted { $0.key < $1.key }.map { .init([("alertstate", $0.key)], Double($0.value)) })
        }
        let counts = machine.instanceCounts
        writer.family("portbudget_alert_instances", .gauge,
                      help: "Alert instances the in-agent evaluator keeps in memory, by state (every namespace's, listed or not; resolved ones until Alertmanager no longer needs them).",
                      [Alert.State.pending, .firing, .resolved].map { .init([("state", $0.rawValue)], Double(counts[$0] ?? 0)) })
        writer.single("portbudget_alert_trend_series", .gauge,
                      help: "Series the in-agent evaluator keeps a usage trend for (groups and host-wide, over every measured namespace).",
                      trends.seriesCount)
        if machine.listed != nil {
            writer.family("portbudget_alert_namespaces_evaluated", .gauge,
                          help: "Namespaces the in-agent evaluator judged at its last evaluation, within the namespace budget (listed) and beyond it (unlisted).",
                          [.init([("budget", "listed")], Double(judged.listed)), .init([("budget", "unlisted")], Double(judged.unlisted))])
            writer.single("portbudget_alert_instances_unlisted", .gauge,
                          help: "Alert instances the in-agent evaluator keeps of namespaces beyond the namespace budget or gone, in every state; at most \(machine.unlistedCapacity).",
                          machine.unlistedCount)
            writer.single("portbudget_alert_instances_refused_total", .counter,
                          help: "Alert conditions of namespaces beyond the namespace budget that held but were not kept, \(machine.unlistedCapacity) instances of theirs being kept already; counted every evaluation.",
                          machine.refusedTotal)
        }
        writer.single("portbudget_alert_rules", .gauge, help: "Rules the in-agent evaluator runs.", machine.rules.count)
        writer.single("portbudget_alert_evaluations_total", .counter,
                      help: "Collections the in-agent evaluator has evaluated.", evaluations)
        writer.single("portbudget_config_last_reload_successful", .gauge,
                      help: "Whether the last configuration reload (SIGHUP) succeeded (1) or failed and the previous rules stayed (0).",
                      reloadSucceeded ? 1 : 0)
        writer.single("portbudget_config_last_reload_success_timestamp_seconds", .gauge,
                      help: "When the configuration was last loaded successfully, Unix time.", lastReloadSuccess)
        delivery?.write(into: &writer)
    }

    // MARK: Reload

    /// Reloads the `--config` file, as Prometheus does on SIGHUP: the new
    /// file is validated first; on any error the running rules stay and the
    /// error is logged. Unchanged rules keep their alerts' states.
    public func reloadConfigFile() {
        guard let configPath else {
            logger.notice("SIGHUP: no --config file to reload; the built-in rules stay")
            return
        }
        do {
            reload(try AlertConfig.load(path: configPath))
            reloadSucceeded = true
            lastReloadSuccess = Self.now()
            logger.notice("configuration reloaded", metadata: [
                "file": "\(configPath)", "rules": "\(config.rules.count)",
                "alertmanagers": "\(config.alertmanagers.map(\.url.absoluteString))",
            ])
        } catch {
            reloadSucceeded = false
            logger.error("configuration not reloaded; the previous rules stay", metadata: ["error": "\(error)"])
        }
    }

    /// Replaces the configuration in place.
    func reload(_ new: AlertConfig) {
        machine = machine.reloaded(rules: new.rules, externalLabels: Self.labels(baseExternalLabels, new),
                                   evaluationInterval: new.evaluationInterval, resendInterval: new.resendInterval)
        trends.sampleSpacing = Self.sampleSpacingFactor * new.evaluationInterval
        if new.alertmanagers != config.alertmanagers || new.sourcePorts != config.sourcePorts {
            if let old = delivery { retired.append(old) }
            delivery = makeDelivery(new)
        }
        config = new
    }

    // MARK: Service

    public func run() async throws {
        logger.info("alert evaluator running", metadata: [
            "rules": "\(config.rules.count)", "interval": "\(config.evaluationInterval)s",
            "alertmanagers": "\(config.alertmanagers.map(\.url.absoluteString))",
        ])
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.deliveryLoop() }
            await evaluationLoop()
            // Shutdown: a delivery stuck on a black-holed Alertmanager must not hold the process.
            group.cancelAll()
        }
        await delivery?.shutdown()
        for old in retired { await old.shutdown() }
        retired = []
    }

    /// Ticks every `evaluation_interval` on the monotonic clock; a tick that
    /// ran long skips the ticks it missed instead of bunching them up.
    private func evaluationLoop() async {
        let clock = ContinuousClock()
        var next = clock.now
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            if let collectNow {
                do { try await collectNow() } catch { break }
            }
            wake.yield()
            let interval = Duration.milliseconds(Int64(config.evaluationInterval * 1000))
            next += interval
            let now = clock.now
            while next <= now { next += interval }
            let wakeAt = next
            try? await cancelWhenGracefulShutdown { try await Task.sleep(until: wakeAt, clock: clock) }
        }
        wake.finish()
    }

    private func deliveryLoop() async {
        for await _ in wakeups {
            if Task.isCancelled { break }
            await deliverDue()
        }
    }

    /// Sends what is due now, or a heartbeat that keeps the connection open.
    func deliverDue() async {
        for old in retired { await old.shutdown() }
        retired = []
        guard let delivery, !delivery.isEmpty else { return }
        let now = Self.now()
        let due = Array(machine.due(at: now).sorted { machine.isListed($0.labels) && !machine.isListed($1.labels) }
            .prefix(Self.alertsPerPost))
        if due.isEmpty {
            await delivery.send([])
            return
        }
        if await delivery.send(machine.postable(due, at: now, generatorURL: generatorURL)) {
            machine.markSent(due, at: now)
        }
    }
}

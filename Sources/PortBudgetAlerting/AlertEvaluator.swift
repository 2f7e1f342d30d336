import Foundation
import Logging
import PortBudgetCore
import PortBudgetServer
import ServiceLifecycle

/// The in-agent evaluator. It learns every collection (its own, every
/// `evaluation_interval`, and each Prometheus scrape's), evaluates the rules
/// over every group — not only the exported top N — and sends due alerts to
/// Alertmanager. It needs no Prometheus, so a page still leaves when the
/// Prometheus that would have alerted cannot reach its Alertmanager.
public actor AlertEvaluator: CollectionHook, Service {
    private let config: AlertConfig
    private let delivery: AlertmanagerDelivery?
    private let logger: Logger
    private let generatorURL: String?
    private var machine: AlertStateMachine
    private var projector = ExhaustionProjector()
    private var icmpRate = CounterRate()
    private var coordinator: ScrapeCoordinator?
    private var evaluations = 0
    private var lastEvaluationFailed = false
    private var deliveryAttempt = 0

    public init(config: AlertConfig, delivery: AlertmanagerDelivery?, externalLabels: [String: String],
                generatorURL: String?, logger: Logger) {
        self.config = config
        self.delivery = delivery
        self.logger = logger
        self.generatorURL = generatorURL
        machine = AlertStateMachine(rules: config.rules, externalLabels: externalLabels,
                                    evaluationInterval: config.evaluationInterval, resendInterval: config.resendInterval)
    }

    /// The coordinator whose collections the evaluator triggers between scrapes.
    public func attach(_ coordinator: ScrapeCoordinator) {
        self.coordinator = coordinator
    }

    static func now() -> Double { Date().timeIntervalSince1970 }

    // MARK: CollectionHook

    public func collected(_ collection: CollectionResult, writer: inout ExpositionWriter) async {
        evaluate(collection, at: Self.now())
        write(into: &writer)
    }

    func evaluate(_ collection: CollectionResult, at now: Double) {
        guard let report = collection.report else {
            // No census, no verdict: keep every state as it is rather than resolve on missing data.
            if !lastEvaluationFailed {
                logger.warning("alert evaluation skipped: the census failed", metadata: ["error": "\(collection.fatalError ?? "")"])
            }
            lastEvaluationFailed = true
            return
        }
        lastEvaluationFailed = false
        evaluations += 1
        projector.observe(report, at: now)
        let rate = icmpRate.update(report.counters["icmp_out_dest_unreachs_total"], at: now)
        let before = Dictionary(uniqueKeysWithValues: machine.alerts.map { ($0.key, $0.value.state) })
        machine.evaluate(AlertInputs(report: report, icmpUnreachablePerSecond: rate, projections: projector.projections()),
                         at: now)
        logTransitions(from: before)
    }

    private func logTransitions(from before: [String: Alert.State]) {
        for (key, alert) in machine.alerts where before[key] != alert.state {
            var metadata: Logger.Metadata = ["alertname": "\(alert.rule)", "state": "\(alert.state.rawValue)",
                                             "value": "\(PrometheusNumber.format(alert.value))"]
            for (name, value) in alert.labels where !["alertname"].contains(name) { metadata[name] = "\(value)" }
            switch alert.state {
            case .pending: logger.info("alert pending", metadata: metadata)
            case .firing: logger.warning("alert firing", metadata: metadata)
            case .resolved: logger.notice("alert resolved", metadata: metadata)
            }
        }
        for (key, state) in before where machine.alerts[key] == nil && state == .pending {
            logger.info("pending alert cleared", metadata: ["key": "\(key.split(separator: "\u{0}").joined(separator: ","))"])
        }
    }

    func write(into writer: inout ExpositionWriter) {
        let active = machine.active
        writer.family("portbudget_alerts", .gauge,
                      help: "Alerts of the in-agent evaluator that are pending or firing (1), like Prometheus' ALERTS.",
                      active.map { alert in
                          var labels: [(name: String, value: String)] = [("alertstate", alert.state.rawValue)]
                          for (name, value) in alert.labels.sorted(by: { $0.key < $1.key }) { labels.append((name, value)) }
                          return ExpositionWriter.Sample(labels, 1)
                      })
        let projections = projector.projections()
        let hostWide = projections.filter { $0.series.group == nil }
        let groups = projections.filter { $0.series.group != nil }.sorted { $0.seconds < $1.seconds }.prefix(20)
        writer.family("portbudget_seconds_to_exhaustion", .gauge,
                      help: "Seconds until the ports run out at the recent trend (least-squares over 10 minutes; +Inf when not rising), host-wide and for the 20 soonest groups.",
                      (hostWide + groups).map { entry in
                          var labels: [(name: String, value: String)] = [("scope", entry.series.scope)]
                          if let g = entry.series.group {
                              labels += [("local_ip", g.localIP), ("peer_ip", g.peerIP), ("peer_port", String(g.peerPort))]
                          }
                          return ExpositionWriter.Sample(labels, entry.seconds)
                      })
        writer.single("portbudget_alert_rules", .gauge, help: "Rules the in-agent evaluator runs.", machine.rules.count)
        writer.single("portbudget_alert_evaluations_total", .counter,
                      help: "Collections the in-agent evaluator has evaluated.", evaluations)
        delivery?.write(into: &writer)
    }

    // MARK: Service

    public func run() async throws {
        let interval = Duration.milliseconds(Int64(config.evaluationInterval * 1000))
        logger.info("alert evaluator running", metadata: [
            "rules": "\(config.rules.count)", "interval": "\(config.evaluationInterval)s",
            "alertmanagers": "\(config.alertmanagers.map(\.url.absoluteString))",
        ])
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            if let coordinator {
                do { _ = try await coordinator.scrape() } catch { break }
            }
            await deliverDue()
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
        await delivery?.shutdown()
    }

    /// Sends what is due, or a heartbeat that keeps the connection open.
    func deliverDue() async {
        guard let delivery, !delivery.isEmpty else { return }
        let now = Self.now()
        let due = machine.due(at: now)
        if due.isEmpty {
            await delivery.send([])
            return
        }
        deliveryAttempt += 1
        if await delivery.send(machine.postable(due, at: now, generatorURL: generatorURL)) {
            machine.markSent(due, at: now)
        }
    }
}

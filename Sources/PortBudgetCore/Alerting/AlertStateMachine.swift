/// One alert instance: a rule and one label set.
public struct Alert: Sendable, Equatable {
    public enum State: String, Sendable { case pending, firing, resolved }

    public var rule: String
    /// Position of the rule in the config: names may repeat across rules.
    public var ruleIndex: Int
    public var labels: [String: String]
    public var annotations: [String: String]
    public var state: State
    public var value: Double
    /// When the condition first held (Prometheus' activeAt; startsAt once firing).
    public var activeAt: Double
    public var resolvedAt: Double?
    /// When Alertmanager last accepted this alert in its current state.
    public var lastSentAt: Double?
}

/// The evaluator's state machine, pure: evaluate rules against one
/// collection's inputs, then say which alerts are due for Alertmanager.
/// States follow Prometheus: a condition that holds makes an alert pending,
/// and firing once it has held for the rule's `for`; a pending alert whose
/// condition stops holding is dropped; a firing one becomes resolved, is
/// sent with endsAt, and is forgotten after `resolvedRetention`. Firing
/// alerts are re-sent every `resendInterval` with an endsAt far enough ahead
/// that Alertmanager keeps them while the agent lives.
public struct AlertStateMachine: Sendable {
    public let rules: [AlertRule]
    public let externalLabels: [String: String]
    public let evaluationInterval: Double
    public let resendInterval: Double
    public let resolvedRetention: Double
    public private(set) var alerts: [String: Alert] = [:]

    public init(rules: [AlertRule], externalLabels: [String: String] = [:], evaluationInterval: Double = 15,
                resendInterval: Double = 60, resolvedRetention: Double = 300) {
        self.rules = rules
        self.externalLabels = externalLabels
        self.evaluationInterval = evaluationInterval
        self.resendInterval = resendInterval
        self.resolvedRetention = resolvedRetention
    }

    /// How long Alertmanager should keep a firing alert without hearing again.
    public var firingValidity: Double { 4 * max(resendInterval, evaluationInterval) }

    public mutating func evaluate(_ inputs: AlertInputs, at now: Double) {
        evaluate([inputs], at: now)
    }

    /// One evaluation over several namespaces' inputs at once, so an alert
    /// of one namespace is not resolved by evaluating another. Alerts of the
    /// namespaces in `unmeasured` (their census failed this time) keep their
    /// state, as every alert does when the only namespace's census fails.
    public mutating func evaluate(_ namespaces: [AlertInputs], unmeasured: Set<String> = [], at now: Double) {
        for (index, rule) in rules.enumerated() {
            var holding: Set<String> = []
            for inputs in namespaces {
                for sample in inputs.samples(rule.quantity) where rule.comparison.holds(sample.value) {
                    var labels = externalLabels
                    labels.merge(sample.labels) { _, new in new }
                    labels.merge(rule.labels) { _, new in new }
                    labels["alertname"] = rule.name
                    labels["severity"] = rule.severity
                    let key = Self.key(index, labels)
                    holding.insert(key)
                    let annotations = rule.annotations.mapValues {
                        $0.render(labels: labels, value: sample.value, fix: sample.fix, holder: sample.holder)
                    }
                    if var alert = alerts[key], alert.state != .resolved {
                        alert.value = sample.value
                        alert.annotations = annotations
                        if alert.state == .pending && now - alert.activeAt >= rule.forSeconds {
                            alert.state = .firing
                            alert.lastSentAt = nil
                        }
                        alerts[key] = alert
                    } else {
                        alerts[key] = Alert(rule: rule.name, ruleIndex: index, labels: labels, annotations: annotations,
                                            state: rule.forSeconds <= 0 ? .firing : .pending, value: sample.value,
                                            activeAt: now, resolvedAt: nil, lastSentAt: nil)
                    }
                }
            }
            let prefix = "\(index)|"
            for (key, var alert) in alerts where key.hasPrefix(prefix) && !holding.contains(key) {
                if let netns = alert.labels["netns"], unmeasured.contains(netns) { continue }
                switch alert.state {
                case .pending:
                    alerts[key] = nil
                case .firing:
                    alert.state = .resolved
                    alert.resolvedAt = now
                    alert.lastSentAt = nil
                    alerts[key] = alert
                case .resolved:
                    if let resolvedAt = alert.resolvedAt, now - resolvedAt > resolvedRetention { alerts[key] = nil }
                }
            }
        }
    }

    /// Alerts Alertmanager should hear about now: firing and resolved ones
    /// never sent in their current state, or not sent for `resendInterval`.
    public func due(at now: Double) -> [Alert] {
        alerts.values.filter { alert in
            guard alert.state != .pending else { return false }
            guard let sent = alert.lastSentAt else { return true }
            return now - sent >= resendInterval
        }.sorted { ($0.rule, $0.labels.sorted { $0.key < $1.key }.description) < ($1.rule, $1.labels.sorted { $0.key < $1.key }.description) }
    }

    /// Records that Alertmanager accepted these alerts at `now`.
    public mutating func markSent(_ sent: [Alert], at now: Double) {
        for alert in sent {
            let key = Self.key(alert.ruleIndex, alert.labels)
            if alerts[key]?.state == alert.state { alerts[key]?.lastSentAt = now }
        }
    }

    /// The machine for a reloaded configuration. Like Prometheus on a
    /// reload, an alert keeps its state (pending since, firing since, last
    /// sent) when its rule is unchanged, wherever the rule now stands in the
    /// list; alerts of removed or changed rules are dropped, and Alertmanager
    /// lets them expire at their endsAt. Changed external labels change every
    /// alert's identity, so then nothing is carried over.
    public func reloaded(rules newRules: [AlertRule], externalLabels newLabels: [String: String],
                         evaluationInterval: Double, resendInterval: Double) -> AlertStateMachine {
        var next = AlertStateMachine(rules: newRules, externalLabels: newLabels, evaluationInterval: evaluationInterval,
                                     resendInterval: resendInterval, resolvedRetention: resolvedRetention)
        guard newLabels == externalLabels else { return next }
        var unmatched = Array(newRules.indices)
        var newIndex: [Int: Int] = [:]
        for (old, rule) in rules.enumerated() {
            if let position = unmatched.firstIndex(where: { newRules[$0] == rule }) {
                newIndex[old] = unmatched.remove(at: position)
            }
        }
        for var alert in alerts.values {
            guard let index = newIndex[alert.ruleIndex] else { continue }
            alert.ruleIndex = index
            next.alerts[Self.key(index, alert.labels)] = alert
        }
        return next
    }

    /// Instances kept, by state: what the evaluator holds in memory, for /metrics.
    public var instanceCounts: [Alert.State: Int] {
        var counts: [Alert.State: Int] = [.pending: 0, .firing: 0, .resolved: 0]
        for alert in alerts.values { counts[alert.state, default: 0] += 1 }
        return counts
    }

    /// Pending and firing alerts, for /metrics and the log.
    public var active: [Alert] {
        alerts.values.filter { $0.state != .resolved }.sorted { Self.key(0, $0.labels) < Self.key(0, $1.labels) }
    }

    /// The Alertmanager v2 form: firing alerts carry an endsAt ahead of now,
    /// resolved ones the time they resolved.
    public func postable(_ alerts: [Alert], at now: Double, generatorURL: String?) -> [AlertmanagerAlert] {
        alerts.map { alert in
            AlertmanagerAlert(
                labels: alert.labels, annotations: alert.annotations,
                startsAt: RFC3339.format(alert.activeAt),
                endsAt: RFC3339.format(alert.state == .resolved ? (alert.resolvedAt ?? now) : now + firingValidity),
                generatorURL: generatorURL)
        }
    }

    static func key(_ ruleIndex: Int, _ labels: [String: String]) -> String {
        var key = "\(ruleIndex)|"
        for (name, value) in labels.sorted(by: { $0.key < $1.key }) { key += name + "=" + value + "\u{0}" }
        return key
    }
}

/// One element of Alertmanager's `POST /api/v2/alerts` body.
public struct AlertmanagerAlert: Sendable, Codable, Equatable {
    public var labels: [String: String]
    public var annotations: [String: String]
    public var startsAt: String
    public var endsAt: String
    public var generatorURL: String?
}

/// RFC 3339 UTC timestamps with milliseconds, without Foundation.
public enum RFC3339 {
    public static func format(_ epochSeconds: Double) -> String {
        let totalMs = Int64((epochSeconds * 1000).rounded(.down))
        var days = totalMs / 86_400_000
        var ms = totalMs % 86_400_000
        if ms < 0 { ms += 86_400_000; days -= 1 }
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        func pad(_ v: Int64, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(ms / 3_600_000, 2)):\(pad(ms / 60_000 % 60, 2)):\(pad(ms / 1000 % 60, 2)).\(pad(ms % 1000, 3))Z"
    }
}

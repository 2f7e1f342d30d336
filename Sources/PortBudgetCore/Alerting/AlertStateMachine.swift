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
    /// Whether Alertmanager ever accepted this alert while it fired: only
    /// then does it need to hear that it resolved.
    public var sentFiring = false
}

/// The evaluator's state machine, pure: evaluate rules against one
/// collection's inputs, then say which alerts are due for Alertmanager.
/// States follow Prometheus: a condition that holds makes an alert pending,
/// and firing once it has held for the rule's `for`; a pending alert whose
/// condition stops holding is dropped; a firing one becomes resolved, is
/// sent with endsAt, and is forgotten after `resolvedRetention`. Firing
/// alerts are re-sent every `resendInterval` with an endsAt far enough ahead
/// that Alertmanager keeps them while the agent lives.
///
/// Namespaces beyond the namespace budget (`listed`, with
/// `--all-namespaces`) are judged like the others, but what is kept of
/// them is bounded, since a tenant can make them by the thousand: at most
/// `unlistedCapacity` of their instances are kept (conditions beyond it are
/// counted in `refused`, not kept); a resolved one is forgotten at once
/// unless Alertmanager accepted it while firing, and then as soon as
/// Alertmanager accepts its resolution (within `resolvedRetention`
/// otherwise). Instances of listed namespaces keep the behaviour above.
public struct AlertStateMachine: Sendable {
    /// Instances of namespaces beyond the namespace budget kept at most, by
    /// default: a flood's groups (1,500 namespaces, 150 of them with 300
    /// full groups) would otherwise be ~90,000 instances of ~1.5 KB each.
    public static let defaultUnlistedCapacity = 5_000
    /// Below this many slots a sparse dictionary is not worth rebuilding.
    static let smallestRebuiltCapacity = 256

    public let rules: [AlertRule]
    public let externalLabels: [String: String]
    public let evaluationInterval: Double
    public let resendInterval: Double
    public let resolvedRetention: Double
    public let unlistedCapacity: Int
    public private(set) var alerts: [String: Alert] = [:]
    /// The namespaces listed one by one at the last evaluation; nil when
    /// every namespace is (the agent watches one, or no budget applies).
    public private(set) var listed: Set<String>?
    /// Conditions of unlisted namespaces that held but were not kept, the
    /// capacity being full: at the last evaluation, and since the start.
    public private(set) var refused = 0
    public private(set) var refusedTotal = 0

    public init(rules: [AlertRule], externalLabels: [String: String] = [:], evaluationInterval: Double = 15,
                resendInterval: Double = 60, resolvedRetention: Double = 300,
                unlistedCapacity: Int = AlertStateMachine.defaultUnlistedCapacity) {
        self.rules = rules
        self.externalLabels = externalLabels
        self.evaluationInterval = evaluationInterval
        self.resendInterval = resendInterval
        self.resolvedRetention = resolvedRetention
        self.unlistedCapacity = unlistedCapacity
    }

    /// Whether an alert with these labels belongs to a namespace listed one by one.
    public func isListed(_ labels: [String: String]) -> Bool { isListed(netns: labels["netns"]) }

    /// Whether the namespace of this name is listed one by one (nil or "":
    /// the agent's only one).
    public func isListed(netns: String?) -> Bool {
        guard let listed, let netns, !netns.isEmpty else { return true }
        return listed.contains(netns)
    }

    /// Instances kept of namespaces beyond the budget (or gone): at most `unlistedCapacity`.
    public var unlistedCount: Int { listed == nil ? 0 : alerts.values.filter { !isListed($0.labels) }.count }

    /// Slots the alerts' storage has room for: it does not shrink by itself
    /// when alerts are forgotten, so the machine rebuilds it when sparse.
    var storageCapacity: Int { alerts.capacity }

    /// How long Alertmanager should keep a firing alert without hearing again.
    public var firingValidity: Double { 4 * max(resendInterval, evaluationInterval) }

    public mutating func evaluate(_ inputs: AlertInputs, at now: Double) {
        evaluate([inputs], at: now)
    }

    /// One evaluation over several namespaces' inputs at once, so an alert
    /// of one namespace is not resolved by evaluating another. Alerts of the
    /// namespaces in `unmeasured` (their census failed this time) keep their
    /// state, as every alert does when the only namespace's census fails.
    /// `listed`: the namespaces within the namespace budget, nil for all.
    public mutating func evaluate(_ namespaces: [AlertInputs], unmeasured: Set<String> = [], listed: Set<String>? = nil,
                                  at now: Double) {
        self.listed = listed
        var unlistedKept = unlistedCount
        refused = 0
        for (index, rule) in rules.enumerated() {
            var holding: [String: (labels: [String: String], sample: AlertSample)] = [:]
            for inputs in namespaces {
                for sample in inputs.samples(rule.quantity) where rule.comparison.holds(sample.value) {
                    var labels = externalLabels
                    labels.merge(sample.labels) { _, new in new }
                    labels.merge(rule.labels) { _, new in new }
                    labels["alertname"] = rule.name
                    labels["severity"] = rule.severity
                    holding[Self.key(index, labels)] = (labels, sample)
                }
            }
            // Conditions that stopped holding first, so room they leave under
            // `unlistedCapacity` is there for this evaluation's new ones.
            let prefix = "\(index)|"
            let stopped = alerts.keys.filter { $0.hasPrefix(prefix) && holding[$0] == nil }
            for key in stopped {
                guard var alert = alerts[key] else { continue }
                if let netns = alert.labels["netns"], unmeasured.contains(netns) { continue }
                let unlisted = !isListed(alert.labels)
                switch alert.state {
                case .pending:
                    alerts[key] = nil
                case .firing where !alert.sentFiring && unlisted, .resolved where !alert.sentFiring && unlisted:
                    // Alertmanager never heard of it: nothing to resolve there
                    // (resolved already: its namespace left the budget, or went, since).
                    alerts[key] = nil
                case .firing:
                    alert.state = .resolved
                    alert.resolvedAt = now
                    alert.lastSentAt = nil
                    alerts[key] = alert
                case .resolved:
                    if let resolvedAt = alert.resolvedAt, now - resolvedAt > resolvedRetention { alerts[key] = nil }
                }
                if unlisted && alerts[key] == nil { unlistedKept -= 1 }
            }
            for (key, held) in holding.sorted(by: { $0.key < $1.key }) {
                let (labels, sample) = held
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
                    if alerts[key] == nil && !isListed(labels) {
                        guard unlistedKept < unlistedCapacity else {
                            refused += 1
                            continue
                        }
                        unlistedKept += 1
                    }
                    alerts[key] = Alert(rule: rule.name, ruleIndex: index, labels: labels, annotations: annotations,
                                        state: rule.forSeconds <= 0 ? .firing : .pending, value: sample.value,
                                        activeAt: now, resolvedAt: nil, lastSentAt: nil)
                }
            }
        }
        refusedTotal += refused
        rebuildIfSparse()
    }

    /// Rebuilds the alerts' storage once it holds under a quarter of its
    /// slots, so memory a flood's alerts took is given back when they go.
    mutating func rebuildIfSparse() {
        guard alerts.capacity > Self.smallestRebuiltCapacity, alerts.count * 4 < alerts.capacity else { return }
        var rebuilt = [String: Alert](minimumCapacity: alerts.count)
        for (key, alert) in alerts { rebuilt[key] = alert }
        alerts = rebuilt
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

    /// Records that Alertmanager accepted these alerts at `now`. A resolved
    /// alert of a namespace beyond the budget is forgotten then: Alertmanager
    /// has its end, and keeping it to re-send would let a tenant's churn hold memory.
    public mutating func markSent(_ sent: [Alert], at now: Double) {
        for alert in sent {
            let key = Self.key(alert.ruleIndex, alert.labels)
            guard alerts[key]?.state == alert.state else { continue }
            if alert.state == .resolved && !isListed(alert.labels) {
                alerts[key] = nil
                continue
            }
            alerts[key]?.lastSentAt = now
            if alert.state == .firing { alerts[key]?.sentFiring = true }
        }
        rebuildIfSparse()
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
                                     resendInterval: resendInterval, resolvedRetention: resolvedRetention,
                                     unlistedCapacity: unlistedCapacity)
        next.listed = listed
        next.refusedTotal = refusedTotal
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

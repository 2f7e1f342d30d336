/// What each namespace's alerts look back on between evaluations — its
/// exhaustion trend and its counter rates — by namespace name ("" when the
/// agent watches only its own).
///
/// Bounded per namespace by `ExhaustionProjector`'s bound, and kept only for
/// namespaces that are still there and were measured within one projection
/// window: a trend not fed for a whole window holds nothing a projection
/// could use, and a tenant's namespaces must not outlive the tenant here.
public struct NamespaceTrends: Sendable {
    public struct Trend: Sendable {
        public var projector: ExhaustionProjector
        var icmpRate = CounterRate()
        var failuresRate = CounterRate()
        /// When the namespace was last measured.
        public var lastObserved: Double
    }

    public private(set) var byNamespace: [String: Trend] = [:]
    /// Least time between two kept samples of a projector.
    public var sampleSpacing: Double {
        didSet { for netns in byNamespace.keys { byNamespace[netns]?.projector.sampleSpacing = sampleSpacing } }
    }

    public init(sampleSpacing: Double) {
        self.sampleSpacing = sampleSpacing
    }

    /// Series tracked over every namespace (groups and host-wide).
    public var seriesCount: Int { byNamespace.values.reduce(0) { $0 + $1.projector.seriesCount } }

    /// Observes one namespace's report and returns the inputs to evaluate it with.
    public mutating func inputs(_ report: PortBudgetReport, netns: String?, at now: Double) -> AlertInputs {
        let name = netns ?? ""
        var trend = byNamespace[name]
            ?? Trend(projector: ExhaustionProjector(sampleSpacing: sampleSpacing), lastObserved: now)
        trend.projector.observe(report, at: now)
        trend.lastObserved = now
        let rate = trend.icmpRate.update(report.counters["icmp_out_dest_unreachs_total"], at: now)
        let failures = trend.failuresRate.update(report.failures.map { Int64(clamping: $0.total) }, at: now)
        byNamespace[name] = trend
        var inputs = AlertInputs(report: report, icmpUnreachablePerSecond: rate, projections: trend.projector.projections,
                                 labels: netns.map { ["netns": $0] } ?? [:])
        inputs.failuresPerSecond = failures
        return inputs
    }

    /// Keeps the trends of the namespaces in `present` measured within one
    /// projection window of `now`; the rest are forgotten. The storage is
    /// rebuilt, not filtered in place, so a flood's slots are given back.
    public mutating func keep(present: Set<String>, at now: Double) {
        var kept: [String: Trend] = [:]
        for (netns, trend) in byNamespace where present.contains(netns) && now - trend.lastObserved <= trend.projector.window {
            kept[netns] = trend
        }
        byNamespace = kept
    }
}

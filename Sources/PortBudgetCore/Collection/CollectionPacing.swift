/// How far apart background collections start: every interval, or further
/// apart when a collection costs more CPU than the budget allows on average.
/// Every namespace's dump walks the host-wide socket hashes, so on a node
/// with hundreds of namespaces and busy tables one collection can take
/// seconds of CPU; run back to back, collections would hold cores the
/// workloads need. Spacing them keeps the agent's cost bounded on any node,
/// and the exported interval says how fresh its answers are.
public struct CollectionPacing: Sendable, Equatable {
    /// Average CPUs the agent may spend collecting (0.1: a tenth of one
    /// core); nil: collections start every interval whatever they cost.
    public let cpuBudget: Double?

    /// `--collection-cpu-budget`'s default: a tenth of one CPU, what a node
    /// agent is commonly granted.
    public static let defaultCPUBudget = 0.1
    /// No bound: every interval, as long as a collection takes less.
    public static let unbounded = CollectionPacing(cpuBudget: nil)
    /// The longest the budget delays a collection, in seconds: a day, so a
    /// budget of a billionth of a CPU still collects daily.
    public static let longestGap: Double = 86_400

    /// `cpuBudget` 0 or below means no bound.
    public init(cpuBudget: Double?) {
        self.cpuBudget = cpuBudget.flatMap { $0 > 0 && $0.isFinite ? $0 : nil }
    }

    /// Seconds from the start of a collection that used `cpuSeconds` to the
    /// start of the next: `interval`, or as long as that CPU takes to fit
    /// the budget, up to `longestGap` (never below `interval`).
    public func gap(interval: Double, cpuSeconds: Double) -> Double {
        guard let cpuBudget, cpuSeconds.isFinite, cpuSeconds > 0 else { return interval }
        return max(interval, min(cpuSeconds / cpuBudget, Self.longestGap))
    }

    /// The CPU seconds a collection may cost and still be followed an
    /// `interval` later; nil without a budget. A collection across every
    /// namespace stops starting namespaces outside the host-owned ones once
    /// it has spent this (`AllNamespacesCollector`), so a tenant's
    /// namespaces are measured in turn instead of spacing out the host's
    /// collections (what is in flight then still costs beyond it).
    public func allowance(interval: Double) -> Double? {
        guard let cpuBudget, interval.isFinite, interval > 0 else { return nil }
        return cpuBudget * interval
    }
}

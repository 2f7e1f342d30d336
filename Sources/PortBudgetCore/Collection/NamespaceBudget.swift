/// How many network namespaces are listed one by one — in the exposition,
/// `check`'s table and the evaluator's alert families — when the agent
/// watches every namespace. Any user may create network namespaces (inside
/// user namespaces of their own), so without a bound a tenant could push a
/// scrape past its timeout and bury a host namespace's exhaustion; beyond
/// the budget, namespaces are summed and counted instead. The evaluator
/// still judges every measured namespace.
public struct NamespaceBudget: Sendable, Equatable {
    /// Namespaces listed one by one by default: a node's pods fit, and the
    /// exposition stays far below Prometheus' sample limits (about 70
    /// samples a namespace, plus its share of `--top`).
    public static let defaultListed = 100

    public var listed: Int

    public init(listed: Int = NamespaceBudget.defaultListed) {
        self.listed = listed
    }

    /// How the namespaces of a collection fall under the budget, each list
    /// in the collection's own order.
    public struct Split: Sendable, Equatable {
        /// Positions listed one by one.
        public var listed: [Int]
        /// Measured namespaces beyond the budget: summed.
        public var summed: [Int]
        /// Unmeasured namespaces beyond the budget: counted by reason.
        public var failed: [Int]
    }

    /// The namespaces in the order they claim the budget: the agent's own
    /// first; then those owned by the host's user namespace before those any
    /// user can make, so no tenant crowds a host namespace out; within each,
    /// failed ones first (nothing is known of them), then worst first, then
    /// those left out this time (a tenant's flood, measured in turn), which
    /// would otherwise fill the list and push its measured ones out.
    public static func ranked(_ namespaces: [NamespaceCollection]) -> [Int] {
        func key(_ n: NamespaceCollection) -> (Int, Int, Int, Double) {
            (n.netns.name == NetnsInfo.ownName ? 0 : 1, n.netns.ownedByHost ? 0 : 1,
             n.report != nil ? 1 : n.leftOut ? 2 : 0,
             -(n.report?.limits.first?.utilization ?? 0))
        }
        return namespaces.indices.sorted { a, b in
            let (ka, kb) = (key(namespaces[a]), key(namespaces[b]))
            if ka != kb { return ka < kb }
            return a < b
        }
    }

    public func split(_ namespaces: [NamespaceCollection]) -> Split {
        let ranked = Self.ranked(namespaces)
        let listed = Set(ranked.prefix(max(0, self.listed)))
        var split = Split(listed: [], summed: [], failed: [])
        for index in namespaces.indices {
            if listed.contains(index) { split.listed.append(index) }
            else if namespaces[index].report == nil { split.failed.append(index) }
            else { split.summed.append(index) }
        }
        return split
    }

    /// A failure's kind without the path or pid that would make every namespace's differ.
    public static func reason(_ error: String) -> String {
        let kind = error.split(separator: ":").last.map { String($0.drop { $0 == " " }) } ?? error
        return kind.isEmpty ? error : kind
    }
}

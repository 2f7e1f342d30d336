/// How one collector fared in one collection: what the exposition reports
/// as `portbudget_scrape_collector_{duration_seconds,success}`.
public struct CollectorOutcome: Sendable, Equatable {
    public let name: String
    public let seconds: Double
    public let error: String?
    public var success: Bool { error == nil }

    public init(name: String, seconds: Double, error: String?) {
        self.name = name
        self.seconds = seconds
        self.error = error
    }
}

/// One collection of one network namespace, or (`--all-namespaces`) of
/// every namespace on the host.
public struct CollectionResult: Sendable {
    /// Nil when the census itself failed: then nothing may be reported as measured.
    /// With `namespaces`, the agent's own namespace's.
    public let report: PortBudgetReport?
    public let outcomes: [CollectorOutcome]
    /// Every namespace's own collection, the agent's own first (`--all-namespaces`);
    /// nil when the agent watches one namespace.
    public let namespaces: [NamespaceCollection]?
    /// Processes whose network namespace could not be opened (`--all-namespaces`).
    public let unreadableProcesses: Int

    /// Collectors without which there is no port budget to report.
    /// ("netns": entering the namespace `check --netns` names.)
    public static let essentialCollectors: Set<String> = ["netns", "sysctl", "sockdiag"]
    /// Every collector, in the order they run.
    public static let collectorNames = ["sysctl", "sockdiag", "sockstat", "snmp", "netstat", "conntrack"]

    public init(report: PortBudgetReport?, outcomes: [CollectorOutcome]) {
        self.report = report
        self.outcomes = outcomes
        namespaces = nil
        unreadableProcesses = 0
    }

    /// Every namespace's collection; the top-level report and outcomes are
    /// the agent's own namespace's (`host`), so whatever reads one namespace
    /// still reads the one it runs in.
    public init(namespaces: [NamespaceCollection], unreadableProcesses: Int) {
        let own = namespaces.first { $0.netns.name == NetnsInfo.ownName }
        report = own?.collection.report
        outcomes = own?.collection.outcomes ?? []
        self.namespaces = namespaces
        self.unreadableProcesses = unreadableProcesses
    }

    /// A namespace that could not be entered: its `netns` collector failed, nothing measured.
    public static func notEntered(_ error: String) -> CollectionResult {
        CollectionResult(report: nil, outcomes: [CollectorOutcome(name: "netns", seconds: 0, error: error)])
    }

    /// The first failure among the collectors the port budget depends on.
    public var fatalError: String? {
        outcomes.first { !$0.success && CollectionResult.essentialCollectors.contains($0.name) }?.error
    }
}


/// One network namespace's collection, and who it is.
public struct NamespaceCollection: Sendable {
    public var netns: NetnsInfo
    public var collection: CollectionResult

    public init(netns: NetnsInfo, collection: CollectionResult) {
        self.netns = netns
        self.collection = collection
    }
}

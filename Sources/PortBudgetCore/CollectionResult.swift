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

/// One collection of one network namespace.
public struct CollectionResult: Sendable {
    /// Nil when the census itself failed: then nothing may be reported as measured.
    public let report: PortBudgetReport?
    public let outcomes: [CollectorOutcome]

    /// Collectors without which there is no port budget to report.
    /// ("netns": entering the namespace `check --netns` names.)
    public static let essentialCollectors: Set<String> = ["netns", "sysctl", "sockdiag"]
    /// Every collector, in the order they run.
    public static let collectorNames = ["sysctl", "sockdiag", "sockstat", "snmp", "netstat", "conntrack"]

    public init(report: PortBudgetReport?, outcomes: [CollectorOutcome]) {
        self.report = report
        self.outcomes = outcomes
    }

    /// The first failure among the collectors the port budget depends on.
    public var fatalError: String? {
        outcomes.first { !$0.success && CollectionResult.essentialCollectors.contains($0.name) }?.error
    }
}


/// How one collector fared in one namespace's collection: what the
/// exposition reports as `portbudget_scrape_collector_{duration_seconds,success}`.
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

/// One network namespace's collection: who it is, how each collector
/// fared, and its port budget — diagnosed when the census made it — or nil
/// when there is none to report (the census failed, or the namespace could
/// not be entered), so nothing is ever reported as measured that was not.
public struct NamespaceCollection: Sendable {
    public var netns: NetnsInfo
    public var report: PortBudgetReport?
    /// In the order the collectors ran; the exposition keeps it.
    public var outcomes: [CollectorOutcome]
    /// Not collected this time, by choice rather than failure: the
    /// collection's time or CPU budget ran out before its turn (it goes
    /// first next time). Ranked after every measured namespace of its class.
    public var leftOut: Bool

    public init(netns: NetnsInfo, report: PortBudgetReport?, outcomes: [CollectorOutcome], leftOut: Bool = false) {
        self.netns = netns
        self.report = report
        self.outcomes = outcomes
        self.leftOut = leftOut
    }

    /// Why there is no report: the first collector that failed.
    public var missingReportReason: String? {
        guard report == nil else { return nil }
        return outcomes.first { !$0.success }?.error ?? "no report"
    }
}

/// One collection: every network namespace the command watches, each one
/// entry — one for the namespace the agent runs in (or `--netns`), all of
/// them with `--all-namespaces`. Every consumer (exposition, `check`, the
/// alert evaluator) walks the same list.
public struct CollectionResult: Sendable {
    public var namespaces: [NamespaceCollection]
    /// True when the command watches every namespace: series then carry a
    /// `netns` label and the namespaces' own families are exported.
    public var acrossNamespaces: Bool
    /// Processes whose network namespace could not be opened (`--all-namespaces`).
    public var unreadableProcesses: Int
    /// Namespaces whose sessions stay open between collections (`--all-namespaces`).
    public var keptSessions: Int?
    /// Descriptors the agent held when the collection ended (`--all-namespaces`).
    public var openDescriptors: Int?

    public init(namespaces: [NamespaceCollection], acrossNamespaces: Bool, unreadableProcesses: Int = 0) {
        self.namespaces = namespaces
        self.acrossNamespaces = acrossNamespaces
        self.unreadableProcesses = unreadableProcesses
    }

    /// One namespace's collection, unlabelled: the agent's own, `--netns`'s,
    /// or a collection that failed as a whole.
    public init(report: PortBudgetReport?, outcomes: [CollectorOutcome], netns: NetnsInfo = .own) {
        self.init(namespaces: [NamespaceCollection(netns: netns, report: report, outcomes: outcomes)],
                  acrossNamespaces: false)
    }

    /// A namespace that could not be entered: its `netns` collector failed, nothing measured.
    public static func notEntered(_ error: String) -> CollectionResult {
        CollectionResult(report: nil, outcomes: [CollectorOutcome(name: NetnsInfo.enteringCollector, seconds: 0, error: error)])
    }
}

extension NetnsInfo {
    /// The agent's own namespace, as a collection of it alone names it.
    public static let own = NetnsInfo(name: ownName, inode: 0)
    /// The outcome a namespace that could not be entered reports.
    public static let enteringCollector = "netns"
}

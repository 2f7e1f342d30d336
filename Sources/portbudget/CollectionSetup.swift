import Logging
import PortBudgetCore
import PortBudgetLinux

/// How `serve` and `textfile` collect: the namespace the agent runs in, or
/// (`--all-namespaces`) every network namespace on the host.
struct CollectionSetup {
    var procfs: String
    var snatPortRange: SNATPortRange
    var allNamespaces: Bool
    /// The failure collector's programs; nil when not loaded.
    var failures: FailurePrograms.Options? = nil

    /// How long one collection may take (see `AllNamespacesCollector.deadline`).
    var deadline: Duration { allNamespaces ? AllNamespacesCollector.deadline : CollectionResult.deadline }

    /// The collection each scrape or write runs. Holders by cgroup every
    /// time: the resolver caches id → path across collections.
    func makeCollect(logger: Logger) -> @Sendable () -> CollectionResult {
        let procfs = ProcFS(root: self.procfs)
        let cgroups = CgroupResolver(procfs: procfs)
        var configured = Collector(procfs: procfs, logger: logger, attribution: .init(
            cgroups: cgroups, top: MetricsExposition.holdersHostWide))
        configured.snatPortRange = snatPortRange
        if let failures { configured.failures = FailureCollector(options: failures, cgroups: cgroups, procfs: procfs) }
        let collector = configured
        // Thresholds only shape `check`'s verdict; the exposition carries raw ratios.
        guard allNamespaces else { return { collector.collect(thresholds: Thresholds()) } }
        let limit = OpenFilesLimit.raiseToHard()
        logger.info("watching every network namespace", metadata: [
            "open_files_limit": "\(limit)",
            "descriptors_per_namespace": "\(NamespaceSession.descriptorsPerNamespace)",
        ])
        let all = AllNamespacesCollector(collector: collector, cgroups: cgroups, logger: logger)
        return { all.collect(thresholds: Thresholds()) }
    }
}

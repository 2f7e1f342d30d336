import PortBudgetCore

extension ExpositionWriter {
    /// What a paced collection cost and when the next one starts, for
    /// `serve`'s scrapes and `textfile`'s file alike.
    mutating func pacing(cpuSeconds: Double, intervalSeconds: Double) {
        single("portbudget_collection_cpu_seconds", .gauge,
               help: "CPU seconds the agent used, on all its threads, while it made this collection.", cpuSeconds)
        single("portbudget_collection_interval_seconds", .gauge,
               help: "Seconds from the start of this collection to the start of the next: the collection interval, longer when collections cost more CPU than --collection-cpu-budget allows on average, or the collection's own duration when that is longer still.",
               intervalSeconds)
    }
}

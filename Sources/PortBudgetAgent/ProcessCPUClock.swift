import Glibc
import PortBudgetCore

/// CPU time of the whole process, for `CollectionPacing`: a collection's
/// work runs on threads of its own (the namespace workers), which a thread
/// clock would miss.
enum ProcessCPUClock {
    /// Seconds of CPU used so far; NaN when the clock cannot be read, so a
    /// difference with it is NaN too and `CollectionPacing` keeps the interval.
    static func seconds() -> Double {
        var now = timespec()
        guard clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now) == 0 else { return .nan }
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}

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

import Glibc

/// CPU time of the whole process, for `CollectionPacing` and a collection's
/// CPU allowance: a collection's work runs on threads of its own (the
/// namespace workers), which a thread clock would miss.
public enum ProcessCPUClock {
    /// Seconds of CPU used so far; NaN when the clock cannot be read, so a
    /// difference with it is NaN too and `CollectionPacing` keeps the interval.
    public static func seconds() -> Double {
        var now = timespec()
        guard clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now) == 0 else { return .nan }
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}

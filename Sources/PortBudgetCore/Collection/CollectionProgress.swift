/// Told, as a collection runs, which collector is at work and how each one
/// fared, so whoever waits on the collection with a deadline can name the
/// collector it is stuck in and keep the outcomes already known.
public protocol CollectionProgress: Sendable {
    func collectorStarted(_ name: String)
    func collectorFinished(_ outcome: CollectorOutcome)
}

public enum CollectionProgressReporting {
    /// Bound by whoever runs a collection, around the synchronous collect
    /// call on the collecting thread (a task-local binds per thread outside
    /// a task), so the collect closures' signatures stay `() -> CollectionResult`.
    @TaskLocal public static var current: (any CollectionProgress)?
}

extension CollectionResult {
    /// How long a collection may take before `check` gives up (UNKNOWN), a
    /// scrape answers with the stuck collector failed, and `textfile` skips
    /// its write. A healthy collection takes milliseconds even at a million
    /// sockets (see the benchmark), so only a read stuck on a hung mount or a
    /// wedged kernel path gets here; 10 s is also the default Prometheus
    /// scrape timeout, so the scraper still sees the answer.
    public static let deadline: Duration = .seconds(10)
}

extension Duration {
    /// The duration in seconds, as gauges and arithmetic want it.
    public var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }

    /// "10 s", "1.5 s": how the deadline reads in messages.
    public var secondsDescription: String {
        if components.attoseconds == 0 { return "\(components.seconds) s" }
        return "\((inSeconds * 1000).rounded() / 1000) s"
    }
}

/// Projects when ports run out from the recent trend: for each series (a
/// destination group, host-wide TCP bind, UDP) it keeps the usage samples of
/// the last `window` seconds, fits a least-squares line through them, and
/// divides the ports left by the slope. A flat or falling trend projects
/// +Inf; a full series projects 0. At least `minimumSamples` spanning a
/// quarter of the window are needed before a finite projection is made.
///
/// Memory and cost are bounded whatever the scrape rate: a sample is kept
/// at most every `sampleSpacing` seconds (the evaluator passes 0.9 ×
/// evaluation_interval, so its own ticks always land and extra scrapes add
/// nothing), only the `maxGroups` most utilized groups of each observation
/// are tracked, and a group that drops out loses its history. So at most
/// (maxGroups + 2) × (window / sampleSpacing + 1) points are held, and the
/// fit runs once per kept sample, not per read.
public struct ExhaustionProjector: Sendable {
    public struct Series: Hashable, Sendable {
        public let scope: String
        public let group: GroupLabels?
    }

    public struct GroupLabels: Hashable, Sendable {
        public let localIP: String
        public let peerIP: String
        public let peerPort: Int
    }

    struct Point: Sendable { var time: Double; var used: Double }

    struct History: Sendable {
        var points: [Point] = []
        var capacity: Double = 0
    }

    public let window: Double
    public let maxGroups: Int
    public let minimumSamples: Int
    /// Least time between two kept samples; observations sooner are ignored.
    public var sampleSpacing: Double
    private var histories: [Series: History] = [:]
    private var lastSampleTime: Double?
    /// Fitted when a sample is kept, so reading projections costs nothing.
    public private(set) var projections: [(series: Series, seconds: Double)] = []

    public init(window: Double = 600, maxGroups: Int = 500, minimumSamples: Int = 3, sampleSpacing: Double = 0) {
        self.window = window
        self.maxGroups = maxGroups
        self.minimumSamples = minimumSamples
        self.sampleSpacing = sampleSpacing
    }

    /// Series tracked (groups and host-wide), each with its points.
    public var seriesCount: Int { histories.count }
    /// Slots the series' storage has room for (rebuilt when groups drop out).
    var storageCapacity: Int { histories.capacity }

    /// Points held across every series: the memory bound's figure, for tests.
    public var pointCount: Int { histories.values.reduce(0) { $0 + $1.points.count } }

    /// Takes a sample of `report` unless the last one is younger than
    /// `sampleSpacing`; true when it was kept.
    @discardableResult
    public mutating func observe(_ report: PortBudgetReport, at time: Double) -> Bool {
        if let last = lastSampleTime, time - last < sampleSpacing, time >= last { return false }
        lastSampleTime = time
        var seen: Set<Series> = []
        func add(_ series: Series, used: Int, capacity: Int) {
            seen.insert(series)
            var history = histories[series] ?? History()
            history.points.append(Point(time: time, used: Double(used)))
            history.points.removeAll { $0.time < time - window }
            history.capacity = Double(capacity)
            histories[series] = history
        }
        add(Series(scope: "tcp_bind", group: nil), used: report.tcp.boundPorts, capacity: report.portRange.usable)
        add(Series(scope: "udp", group: nil), used: report.udp.boundPorts, capacity: report.portRange.usable)
        for g in report.tcp.groups.prefix(maxGroups) {
            add(Series(scope: "tcp_group", group: GroupLabels(localIP: g.localIP, peerIP: g.peerIP, peerPort: g.peerPort)),
                used: g.used, capacity: g.capacity)
        }
        if seen.count < histories.count {
            // Rebuilt, not removed from in place: the storage would keep a flood's slots.
            var kept: [Series: History] = [:]
            kept.reserveCapacity(seen.count)
            for (series, history) in histories where seen.contains(series) { kept[series] = history }
            histories = kept
        }
        projections = fit()
        return true
    }

    /// Seconds until each tracked series is projected to be full.
    private func fit() -> [(series: Series, seconds: Double)] {
        histories.map { ($0.key, Self.project($0.value, window: window, minimumSamples: minimumSamples)) }
            .sorted { ($0.series.scope, $0.series.group?.peerIP ?? "", $0.series.group?.peerPort ?? 0, $0.series.group?.localIP ?? "")
                < ($1.series.scope, $1.series.group?.peerIP ?? "", $1.series.group?.peerPort ?? 0, $1.series.group?.localIP ?? "") }
    }

    static func project(_ history: History, window: Double, minimumSamples: Int) -> Double {
        guard let last = history.points.last else { return .infinity }
        let left = history.capacity - last.used
        if left <= 0 { return 0 }
        let points = history.points
        guard points.count >= minimumSamples, last.time - points[0].time >= window / 4 else { return .infinity }
        let n = Double(points.count)
        let meanT = points.reduce(0) { $0 + $1.time } / n
        let meanU = points.reduce(0) { $0 + $1.used } / n
        var covariance = 0.0, variance = 0.0
        for p in points {
            covariance += (p.time - meanT) * (p.used - meanU)
            variance += (p.time - meanT) * (p.time - meanT)
        }
        guard variance > 0 else { return .infinity }
        let slope = covariance / variance  // ports per second
        guard slope > 0 else { return .infinity }
        return left / slope
    }
}

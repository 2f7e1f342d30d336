import Glibc

/// `serve --all-namespaces` collects in the background and answers each
/// scrape from its latest complete collection. A scrape's latency is then
/// not what a collection costs, and a scrape right after namespaces change
/// may still show the namespaces before. So the benchmark waits for a
/// collection that started after a given moment, and takes that
/// collection's duration from the agent's own gauge.
extension ScrapeTarget {
    /// How often the benchmark's serve collects: short, so a fresh
    /// collection is never far off.
    static let backgroundInterval = "1s"
    /// How long to wait for a collection that started after the moment asked.
    static let freshCollectionTimeout = 120.0
    /// Pause between scrapes while waiting.
    static let freshCollectionPoll: useconds_t = 50_000

    struct FreshCollection {
        var metrics: String
        /// `portbudget_collection_duration_seconds` of that collection.
        var seconds: Double
    }

    /// The first answer whose collection started after `since` (this
    /// process's monotonic seconds). The agent's age is read when it
    /// answers, after the request was sent, so the start it implies is never
    /// later than the true one.
    func freshCollection(since: Double) throws -> FreshCollection {
        let deadline = monotonicSeconds() + Self.freshCollectionTimeout
        while true {
            let asked = monotonicSeconds()
            let (status, body) = try HTTP.get(port: port, path: "/metrics")
            guard status == 200 else { throw BenchError("scrape of :\(port) answered \(status)") }
            if let age = Self.gauge(body, "portbudget_collection_age_seconds"),
               let seconds = Self.gauge(body, "portbudget_collection_duration_seconds"),
               asked - age - seconds >= since {
                return FreshCollection(metrics: body, seconds: seconds)
            }
            guard monotonicSeconds() < deadline else {
                throw BenchError("serve on :\(port) answered no collection newer than \(Int(Self.freshCollectionTimeout)) s")
            }
            usleep(Self.freshCollectionPoll)
        }
    }

    static func gauge(_ body: String, _ name: String) -> Double? {
        for line in body.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.dropFirst(name.count + 1))
        }
        return nil
    }
}

import CMNL  // as in FailuresBench.swift: with it, the release build finds _SC_CLK_TCK in this file too
import Glibc

/// One measurement of one tool at one population.
struct Sample {
    /// Seconds the answer took: a whole process (floor, check, ss) or one scrape.
    var wall: Double
    /// CPU seconds, user + system.
    var cpu: Double?
    /// Peak resident set, KiB.
    var rssKiB: Int?
    /// The tool's own figure, when it reports one (node_exporter's tcpstat gauge).
    var own: Double?
    /// Sockets the floor counted.
    var messages: Int?
}

/// A long-running exporter in the namespace, scraped over HTTP.
final class ScrapeTarget {
    let child: Child
    let port: UInt16

    init(child: Child, port: UInt16) {
        self.child = child
        self.port = port
    }

    /// CPU seconds the process has used so far (/proc/PID/stat utime + stime).
    var cpuSeconds: Double {
        guard let text = readFile("/proc/\(child.pid)/stat"), let close = text.lastIndex(of: ")") else { return 0 }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // Fields after the comm start at field 3 (state); utime and stime are fields 14 and 15.
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// One GET /metrics, timed; `gauge` names a sample whose value to read from the body.
    func scrape(gauge: String?) throws -> Sample {
        let cpu0 = cpuSeconds
        let start = monotonicSeconds()
        let (status, body) = try HTTP.get(port: port, path: "/metrics")
        let wall = monotonicSeconds() - start
        guard status == 200 else { throw BenchError("scrape of :\(port) answered \(status)") }
        var own: Double? = nil
        if let gauge {
            for line in body.split(separator: "\n") where line.hasPrefix(gauge + " ") {
                own = Double(line.dropFirst(gauge.count + 1))
            }
            if own == nil { throw BenchError("scrape of :\(port) has no \(gauge)") }
        }
        return Sample(wall: wall, cpu: cpuSeconds - cpu0, rssKiB: child.peakRSSKiB, own: own)
    }

    func stop() {
        child.terminate()
        _ = try? child.wait()
    }
}

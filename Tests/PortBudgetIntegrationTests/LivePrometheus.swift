import Foundation
import XCTest

/// A real Prometheus for one dashboard test and the agents it scrapes: a
/// scratch folder of its own, a config that scrapes `targets` as one job, and
/// every process stopped — and the folder removed — when the test lets go.
/// Start the agents first (`agent`), then Prometheus (`start`).
final class LivePrometheus {
    let api: PrometheusAPI
    /// Prometheus itself, once started: what tests wait on.
    private(set) var prometheus: ExporterProcess?
    private var processes: [ExporterProcess] = []
    private let work: URL
    private let ns: NetworkNamespace
    private let address: String

    /// Prometheus will run inside `ns`, listening on `address`.
    init(_ name: String, in ns: NetworkNamespace, address: String = "127.0.0.1:9090") throws {
        work = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        self.ns = ns
        self.address = address
        api = PrometheusAPI(ns: ns, base: "http://\(address)")
    }

    deinit {
        for process in processes { _ = process.stop(SIGTERM, timeout: 5) }
        try? FileManager.default.removeItem(at: work)
    }

    /// Starts an agent (or any server) the test needs until it ends.
    @discardableResult
    func agent(_ arguments: [String], in ns: NetworkNamespace? = nil) throws -> ExporterProcess {
        let process = try ExporterProcess(arguments, in: ns)
        processes.append(process)
        return process
    }

    /// Starts Prometheus scraping `targets` every `interval` (its timeout
    /// too), with `rules` loaded and evaluated every second when given.
    @discardableResult
    func start(scraping targets: [String], interval: String = "1s", rules: [String] = []) throws -> ExporterProcess {
        var config = """
            global:
              scrape_interval: \(interval)
              scrape_timeout: \(interval)

            """
        if !rules.isEmpty {
            config += "  evaluation_interval: 1s\nrule_files:\n" + rules.map { "  - \($0)\n" }.joined()
        }
        config += """
            scrape_configs:
              - job_name: portbudget
                static_configs: [{targets: [\(targets.map { "\"\($0)\"" }.joined(separator: ", "))]}]
            """
        let configPath = work.appendingPathComponent("prometheus.yml").path
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        let process = try agent(["/usr/bin/prometheus", "--config.file=\(configPath)",
                                 "--storage.tsdb.path=\(work.appendingPathComponent("data").path)",
                                 "--web.listen-address=\(address)", "--log.level=warn"], in: ns)
        prometheus = process
        return process
    }
}

extension PrometheusAPI {
    /// Every target of `panels`, its variables set to `values`, asked at
    /// `stamp` and over the 20 s before it: each answer must succeed and hold
    /// data. Returns each target's answer at `stamp`.
    func evaluate(_ panels: [GrafanaDashboard.Panel], values: [String: GrafanaDashboard.Selection], at stamp: Double,
                  file: StaticString = #filePath, line: UInt = #line)
        -> [(panel: GrafanaDashboard.Panel, target: GrafanaDashboard.Target, result: [Series])] {
        let targets = panels.flatMap { panel in panel.targets.map { (panel, $0) } }
        let exprs = targets.map { GrafanaDashboard.interpolate($0.1.expr, values: values, rateInterval: "30s") }
        let instant = query(exprs, at: stamp)
        let ranged = queryRange(exprs, start: stamp - 20, end: stamp, step: 1)
        XCTAssertEqual(instant.count, exprs.count, file: file, line: line)
        XCTAssertEqual(ranged.count, exprs.count, file: file, line: line)
        var out: [(panel: GrafanaDashboard.Panel, target: GrafanaDashboard.Target, result: [Series])] = []
        for (index, ((panel, target), expr)) in zip(targets, exprs).enumerated() where index < min(instant.count, ranged.count) {
            XCTAssertFalse(expr.contains("$"), "\(panel.title) \(target.refId): unresolved variable in \(expr)",
                           file: file, line: line)
            for (kind, answer) in [("instant", instant[index]), ("range", ranged[index])] {
                XCTAssert(answer.isSuccess, "[\(kind)] \(panel.title) \(target.refId): \(expr) → \(answer.summary)",
                          file: file, line: line)
                XCTAssertFalse(answer.result.isEmpty, "[\(kind)] \(panel.title) \(target.refId): \(expr) returned no data",
                               file: file, line: line)
            }
            out.append((panel, target, instant[index].result))
        }
        return out
    }
}

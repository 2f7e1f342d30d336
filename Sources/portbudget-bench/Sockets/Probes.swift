import Glibc

/// The tools the sockets benchmark measures at each population.
enum Tool: String, CaseIterable {
    case floor, check, ss, nodeExporter = "node_exporter", serve
    /// Attribution's price: check without naming holders, and check --processes against ss -p.
    case checkUnattributed = "check_unattributed", checkProcesses = "check_processes", ssProcesses = "ss_processes"
}

/// How each tool is started and measured.
struct Probes {
    let bench: String
    let portbudget: String
    var nodeExporter: ScrapeTarget?
    var serve: ScrapeTarget?
    static let nodeExporterBinary = "/usr/bin/prometheus-node-exporter"
    static let tcpstatGauge = "node_scrape_collector_duration_seconds{collector=\"tcpstat\"}"

    /// node_exporter 1.5 with only the tcpstat collector, on loopback in the namespace.
    static func startNodeExporter(port: UInt16) throws -> ScrapeTarget? {
        guard access(nodeExporterBinary, X_OK) == 0 else {
            log("\(nodeExporterBinary) missing (scripts/ensure-deps test installs it): not measured")
            return nil
        }
        let child = try Child.spawn([nodeExporterBinary, "--collector.disable-defaults", "--collector.tcpstat",
                                     "--web.listen-address=127.0.0.1:\(port)"], quietStderr: true)
        let target = ScrapeTarget(child: child, port: port)
        guard HTTP.waitReady(port: port, path: "/metrics", timeout: 20) else {
            target.stop()
            throw BenchError("node_exporter did not answer on 127.0.0.1:\(port)")
        }
        return target
    }

    /// `portbudget serve`, when this build has it (the only place serve is known).
    static func startServe(portbudget: String, port: UInt16) throws -> ScrapeTarget? {
        guard (try? Child.run([portbudget, "serve", "--help"], quietStderr: true).status) == 0 else {
            log("this portbudget has no `serve` command: its scrape is not measured")
            return nil
        }
        let child = try Child.spawn([portbudget, "serve", "--listen", "127.0.0.1:\(port)"], quietStderr: true)
        let target = ScrapeTarget(child: child, port: port)
        guard HTTP.waitReady(port: port, path: "/metrics", timeout: 20) else {
            target.stop()
            throw BenchError("portbudget serve did not answer on 127.0.0.1:\(port)")
        }
        return target
    }

    var tools: [Tool] {
        Tool.allCases.filter { ($0 != .nodeExporter || nodeExporter != nil) && ($0 != .serve || serve != nil) }
    }

    func measure(_ tool: Tool) throws -> Sample {
        switch tool {
        case .floor:
            let child = try Child.spawn([bench, "floor"], stdout: .pipe)
            let line = child.readAll()
            let usage = try child.wait()
            guard usage.status == 0, let r = line.firstRange(of: "messages=") else {
                throw BenchError("floor dump failed: \(line)")
            }
            let messages = Int(line[r.upperBound...].prefix { $0.isNumber })
            return Sample(wall: usage.wall, cpu: usage.cpu, rssKiB: usage.maxRSSKiB, messages: messages)
        case .check:
            let usage = try Child.run([portbudget, "check", "--json"])
            // 0, 1, 2: ok, warning, critical — all are answers; 3 is "could not measure".
            guard (0...2).contains(usage.status) else { throw BenchError("portbudget check exited \(usage.status)") }
            return Sample(wall: usage.wall, cpu: usage.cpu, rssKiB: usage.maxRSSKiB)
        case .checkUnattributed, .checkProcesses:
            let extra = tool == .checkProcesses ? ["--processes"] : ["--no-attribution"]
            let usage = try Child.run([portbudget, "check", "--json"] + extra)
            guard (0...2).contains(usage.status) else { throw BenchError("portbudget check \(extra[0]) exited \(usage.status)") }
            return Sample(wall: usage.wall, cpu: usage.cpu, rssKiB: usage.maxRSSKiB)
        case .ssProcesses:
            let usage = try Child.run(["ss", "-tanpH"])
            guard usage.status == 0 else { throw BenchError("ss -p exited \(usage.status)") }
            return Sample(wall: usage.wall, cpu: usage.cpu, rssKiB: usage.maxRSSKiB)
        case .ss:
            let usage = try Child.run(["ss", "-tuanH"])
            guard usage.status == 0 else { throw BenchError("ss exited \(usage.status)") }
            return Sample(wall: usage.wall, cpu: usage.cpu, rssKiB: usage.maxRSSKiB)
        case .nodeExporter:
            return try nodeExporter!.scrape(gauge: Self.tcpstatGauge)
        case .serve:
            return try serve!.scrape(gauge: nil)
        }
    }

    /// One unmeasured run of each, which also checks that check's JSON is a report.
    func warmUp(scratch: String) throws {
        let usage = try Child.run([portbudget, "check", "--json"], stdout: .file(scratch))
        let text = readFile(scratch) ?? ""
        guard (0...2).contains(usage.status), text.contains("\"group_count\"") else {
            throw BenchError("portbudget check --json gave no report (exit \(usage.status))")
        }
        for tool in tools where tool != .check { _ = try measure(tool) }
    }
}

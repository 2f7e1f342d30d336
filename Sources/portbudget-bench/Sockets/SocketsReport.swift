import Glibc

/// Everything measured at one population.
struct SizeResult {
    var requested: Int
    var connections: Int
    var timeWait: Int
    var udp: Int
    var samples: [Tool: [Sample]] = [:]

    var sockets: Int { Int(median(samples[.floor, default: []].compactMap { $0.messages.map(Double.init) }) ?? 0) }

    func wall(_ tool: Tool) -> Double? { median(samples[tool, default: []].map(\.wall)) }
    func cpu(_ tool: Tool) -> Double? { median(samples[tool, default: []].compactMap(\.cpu)) }
    func rssMiB(_ tool: Tool) -> Double? {
        median(samples[tool, default: []].compactMap { $0.rssKiB.map { Double($0) / 1024 } })
    }
    /// node_exporter's own tcpstat collector duration.
    var tcpstat: Double? { median(samples[.nodeExporter, default: []].compactMap(\.own)) }
}

/// Renders the tables and the verdict on the goals.
struct Report {
    var results: [SizeResult]
    var rounds: Int
    var command: String
    var machine: String
    var date: String
    var notes: [String] = []

    var markdown: String {
        var out = ""
        out += "Measured \(date) on \(machine); medians of \(rounds) interleaved rounds.\n"
        out += "Command: `\(command)`\n\n"
        out += "| sockets | established / TIME_WAIT / UDP | floor ms | check ms | check CPU ms | check RSS MB | ss ms | node_exporter tcpstat ms | serve scrape ms | check/floor | check/ss | check/node_exporter | serve/check |\n"
        out += "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        for r in results {
            let check = r.wall(.check)
            out += "| \(Format.thousands(r.sockets)) | \(Format.thousands(r.connections * 2)) / \(Format.thousands(r.timeWait)) / \(Format.thousands(r.udp)) "
            out += "| \(Format.ms(r.wall(.floor))) | \(Format.ms(check)) | \(Format.ms(r.cpu(.check))) | \(Format.mib(r.rssMiB(.check))) "
            out += "| \(Format.ms(r.wall(.ss))) | \(Format.ms(r.tcpstat)) | \(Format.ms(r.wall(.serve))) "
            out += "| \(Format.ratio(check, r.wall(.floor))) | \(Format.ratio(check, r.wall(.ss))) "
            out += "| \(Format.ratio(check, r.tcpstat)) | \(Format.ratio(r.wall(.serve), check)) |\n"
        }
        out += "\nGrowth: milliseconds of wall time per 100,000 sockets (flat = linear), and peak RSS in MB.\n\n"
        out += "| sockets | floor ms/100k | check ms/100k | ss ms/100k | tcpstat ms/100k | serve ms/100k | check RSS | serve RSS (peak so far) | ss RSS | node_exporter RSS (peak so far) |\n"
        out += "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        for r in results {
            let per = Double(max(r.sockets, 1)) / 100_000
            func p(_ x: Double?) -> String { Format.ms(x.map { $0 / per }) }
            out += "| \(Format.thousands(r.sockets)) | \(p(r.wall(.floor))) | \(p(r.wall(.check))) | \(p(r.wall(.ss))) "
            out += "| \(p(r.tcpstat)) | \(p(r.wall(.serve))) | \(Format.mib(r.rssMiB(.check))) | \(Format.mib(r.rssMiB(.serve))) "
            out += "| \(Format.mib(r.rssMiB(.ss))) | \(Format.mib(r.rssMiB(.nodeExporter))) |\n"
        }
        if results.count >= 2 {
            out += "\nScaling exponent of check's wall time between sizes (1 = linear): "
            var parts: [String] = []
            for (a, b) in zip(results, results.dropFirst()) {
                if let ta = a.wall(.check), let tb = b.wall(.check), a.sockets > 0, b.sockets > a.sockets {
                    let k = log(tb / ta) / log(Double(b.sockets) / Double(a.sockets))
                    parts.append("\(Format.thousands(a.sockets))→\(Format.thousands(b.sockets)): \(Format.fixed(k, 2))")
                }
            }
            out += parts.joined(separator: ", ") + "\n"
        }
        out += "\nAttribution: check names the top cgroups of every budget on every run; the same census without it, "
        out += "and `check --processes` against `ss -tanpH` (both read every /proc/PID/fd).\n\n"
        out += "| sockets | check without holders ms | check ms | attribution × | check RSS without / with MB | check --processes ms | ss -tanp ms | --processes / ss -p |\n"
        out += "|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        for r in results {
            out += "| \(Format.thousands(r.sockets)) | \(Format.ms(r.wall(.checkUnattributed))) | \(Format.ms(r.wall(.check))) "
            out += "| \(Format.ratio(r.wall(.check), r.wall(.checkUnattributed))) "
            out += "| \(Format.mib(r.rssMiB(.checkUnattributed))) / \(Format.mib(r.rssMiB(.check))) "
            out += "| \(Format.ms(r.wall(.checkProcesses))) | \(Format.ms(r.wall(.ssProcesses))) "
            out += "| \(Format.ratio(r.wall(.checkProcesses), r.wall(.ssProcesses))) |\n"
        }
        let verdicts = goals
        out += "\n" + verdicts[0] + "\n\n" + verdicts.dropFirst().map { "- " + $0 }.joined(separator: "\n") + "\n"
        for note in notes { out += "\n" + note + "\n" }
        return out
    }

    /// The goals, judged at the population nearest 200,000 sockets.
    var goals: [String] {
        guard let r = results.min(by: { abs($0.sockets - 200_000) < abs($1.sockets - 200_000) }),
              let check = r.wall(.check) else { return ["no measurement"] }
        var lines = ["Goals at \(Format.thousands(r.sockets)) sockets:"]
        func goal(_ name: String, _ value: Double?, _ limit: Double, _ unit: String = "×") {
            guard let value else { lines.append("\(name): not measured"); return }
            let verdict = value <= limit ? "met" : "NOT met"
            lines.append("\(name): \(Format.fixed(value, 2))\(unit) (goal ≤ \(Format.fixed(limit, 2))\(unit)) — \(verdict)")
        }
        goal("check wall / floor", r.wall(.floor).map { check / $0 }, 1)
        goal("check wall / ss", r.wall(.ss).map { check / $0 }, 0.7)
        goal("check wall / node_exporter tcpstat", r.tcpstat.map { check / $0 }, 0.5)
        goal("check peak RSS", r.rssMiB(.check), 32, " MB")
        let largest = results.max { $0.sockets < $1.sockets }!
        if let a = results.first?.rssMiB(.check), let b = largest.rssMiB(.check) {
            lines.append("check RSS from \(Format.thousands(results.first!.sockets)) to \(Format.thousands(largest.sockets)) sockets: \(Format.mib(a)) → \(Format.mib(b)) MB")
        }
        goal("serve scrape / check wall", r.wall(.serve).map { $0 / check }, 1.2)
        goal("check with holders / without", r.wall(.checkUnattributed).map { check / $0 }, 1.1)
        goal("check --processes / ss -tanp", r.wall(.checkProcesses).flatMap { p in r.wall(.ssProcesses).map { p / $0 } }, 0.7)
        return lines
    }
}

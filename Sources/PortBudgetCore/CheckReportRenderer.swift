/// Renders a report as the human `check` output: verdict first, then the
/// range and what takes from it, host-wide headroom, and the worst groups.
public enum CheckReportRenderer {
    public static func render(_ report: PortBudgetReport, top: Int) -> String {
        var out = ""
        out += report.verdict + "\n\n"

        let r = report.portRange
        var takes = ["\(r.reserved) reserved", "\(report.tcp.explicitBoundPorts) held by explicit TCP binds"]
        let listeners = report.tcp.listenerPortsInRange
        if !listeners.isEmpty {
            let shown = listeners.prefix(8).map(String.init).joined(separator: ", ")
            takes.append("listeners on \(shown)\(listeners.count > 8 ? " and \(listeners.count - 8) more" : "")")
        }
        out += row(["Port range", "\(r.low)-\(r.high)", "\(r.usable) usable (\(takes.joined(separator: "; ")))"])
        out += row(["TCP bind", headroom(report.tcp.boundPorts, r.usable, report.tcp.bindUtilization),
                    "bind(addr, 0) fails with EADDRINUSE when full"])
        out += row(["UDP", headroom(report.udp.boundPorts, r.usable, report.udp.utilization),
                    "autobind fails with EAGAIN when full (\(report.udp.sockets) sockets)"])
        if let lite = report.udplite, lite.sockets > 0 {
            out += row(["UDP-Lite", headroom(lite.boundPorts, r.usable, lite.utilization), "own port table"])
        }
        let tw = report.timeWaitReuse
        let reuse = tw.tcpTwReuse == 0 ? "off" : tw.tcpTwReuse == 1 ? "on" : "loopback only"
        out += row(["TIME_WAIT", "reuse \(reuse)",
                    "tcp_tw_reuse=\(tw.tcpTwReuse), timestamps \(tw.tcpTimestamps == 0 ? "off" : "on"), delay \(tw.reuseDelayMs) ms"])
        out += conntrackRow(report)
        out += "\n"

        let groups = top > 0 ? Array(report.tcp.groups.prefix(top)) : report.tcp.groups
        if groups.isEmpty {
            out += "No outgoing TCP connections on usable ports.\n"
            return out + snatSection(report, top: top)
        }
        let shownCount = groups.count == report.tcp.groupCount ? "all \(groups.count)" : "top \(groups.count) of \(report.tcp.groupCount)"
        out += "TCP destinations (\(shownCount), worst first; a connect() fails with EADDRNOTAVAIL at 0 free)\n"
        var table: [[String]] = [["LOCAL", "PEER", "USED/CAPACITY", "UTIL", "FREE", "TIME_WAIT", "STATUS"]]
        for g in groups {
            table.append([g.localIP, PortBudgetReport.Limit.hostPort(g.peerIP, g.peerPort), "\(g.used)/\(g.capacity)",
                          PortBudgetReport.percent(g.utilization), "\(g.free)", "\(g.timeWait)",
                          report.thresholds.status(g.utilization).rawValue])
        }
        out += columns(table)
        return out + snatSection(report, top: top)
    }

    static func headroom(_ used: Int, _ capacity: Int, _ ratio: Double) -> String {
        "\(used)/\(capacity) bound (\(PortBudgetReport.percent(ratio)))"
    }

    static func row(_ cells: [String]) -> String {
        pad(cells[0], 12) + pad(cells[1], 28) + cells[2] + "\n"
    }

    static func columns(_ rows: [[String]]) -> String {
        var widths = [Int](repeating: 0, count: rows[0].count)
        for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
        return rows.map { r in
            r.enumerated().map { i, c in i == r.count - 1 ? c : pad(c, widths[i] + 2) }.joined()
        }.joined(separator: "\n") + "\n"
    }

    static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
    }
}

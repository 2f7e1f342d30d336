/// Renders a report as the human `check` output: verdict first, then why and
/// what to do (the findings), the range and what takes from it, host-wide
/// headroom, and the worst groups.
public enum CheckReportRenderer {
    /// The findings are the report's own, diagnosed from every group; `top`
    /// cuts only the groups listed.
    public static func render(_ report: PortBudgetReport, top: Int) -> String {
        var out = ""
        out += report.verdict + "\n\n"
        out += renderFindings(report.findings)

        let r = report.portRange
        var takes = ["\(r.reserved) reserved", "\(report.tcp.explicitBoundPorts) held by explicit TCP binds"]
        let listeners = report.tcp.listenerPortsInRange
        if !listeners.isEmpty {
            let shown = listeners.prefix(8).map(String.init).joined(separator: ", ")
            takes.append("listeners on \(shown)\(listeners.count > 8 ? " and \(listeners.count - 8) more" : "")")
        }
        out += row(["Port range", "\(r.low)-\(r.high)", "\(r.usable) usable (\(takes.joined(separator: "; ")))"])
        out += row(["TCP bind", headroom(report.tcp.boundPorts, r.usable, report.tcp.bindUtilization),
                    "bind(addr, 0) and listen() without a port fail with EADDRINUSE when full"
                        + topHolder(report.tcp.holders, report.tcp.processes, of: report.tcp.boundPorts, prefix: "; most held by ")])
        out += row(["UDP", headroom(report.udp.boundPorts, r.usable, report.udp.utilization),
                    "autobind fails with EAGAIN when full (\(report.udp.sockets) sockets)"
                        + topHolder(report.udp.holders, report.udp.processes, of: report.udp.boundPorts, prefix: "; most held by ")])
        if let lite = report.udplite, lite.sockets > 0 {
            out += row(["UDP-Lite", headroom(lite.boundPorts, r.usable, lite.utilization), "own port table"])
        }
        let tw = report.timeWaitReuse
        let reuse = tw.tcpTwReuse == 0 ? "off" : tw.tcpTwReuse == 1 ? "on" : "loopback only"
        out += row(["TIME_WAIT", "reuse \(reuse)",
                    "tcp_tw_reuse=\(tw.tcpTwReuse), timestamps \(tw.tcpTimestamps == 0 ? "off" : "on"), delay \(tw.reuseDelayMs) ms"])
        if let unavailable = report.attribution?.unavailable { out += row(["Holders", "none", unavailable]) }
        out += conntrackRow(report)
        out += "\n"

        let groups = top > 0 ? Array(report.tcp.groups.prefix(top)) : report.tcp.groups
        if groups.isEmpty {
            out += "No outgoing TCP connections on usable ports.\n"
            return out + snatSection(report, top: top)
        }
        let shownCount = groups.count == report.tcp.groupCount ? "all \(groups.count)" : "top \(groups.count) of \(report.tcp.groupCount)"
        out += "TCP destinations (\(shownCount), worst first; a connect() fails with EADDRNOTAVAIL at 0 free)\n"
        let upperBound = report.destinationFreeIsUpperBound
        if upperBound {
            out += "  FREE is an upper bound: ports bind(addr, 0) took before connect() look like connect()'s to SOCK_DIAG "
                + "and are counted as shareable; the failure collector (`serve`, `check --watch`) sees each one\n"
        } else if let tracking = report.tcp.bindTracking, tracking.exact {
            out += "  FREE is exact: the failure collector saw every connection begin\n"
        }
        let named = groups.contains { $0.holders != nil || $0.processes != nil }
        var table: [[String]] = [["LOCAL", "PEER", "USED/CAPACITY", "UTIL", "FREE", "TIME_WAIT", "STATUS"]
            + (named ? ["HOLDER"] : [])]
        for g in groups {
            table.append([g.localIP, PortBudgetReport.Limit.hostPort(g.peerIP, g.peerPort), "\(g.used)/\(g.capacity)",
                          PortBudgetReport.percent(g.utilization), (upperBound ? "≤" : "") + "\(g.free)", "\(g.timeWait)",
                          report.thresholds.status(g.utilization).rawValue]
                          + (named ? [topHolder(g.holders, g.processes, of: g.used, prefix: "").nonEmpty
                                        ?? (g.timeWait > 0 ? "- (TIME_WAIT has no owner)" : "-")] : []))
        }
        out += columns(table)
        return out + snatSection(report, top: top)
    }

    /// The biggest holder and the share of `total` ports it holds itself,
    /// e.g. "nginx.service 62%" or, with processes, "nginx.service 62% (nginx
    /// 4711 40%)"; when several processes hold as many ports as the first,
    /// how many do: "/ 100% (50 processes, 1 port each: nc 31483, …)". Empty when none.
    static func topHolder(_ holders: [Holder]?, _ processes: [ProcessHolder]?, of total: Int, prefix: String) -> String {
        var parts: [String] = []
        if let first = holders?.first {
            parts.append("\(first.shortName) \(PortBudgetReport.percent(share(first.ports, total)))")
        }
        if let first = processes?.first {
            let process: String
            if let tied = first.tiedProcesses {
                process = "\(tied) processes, \(first.ports) port\(first.ports == 1 ? "" : "s") each: \(first.comm) \(first.pid), …"
            } else {
                process = "\(first.comm) \(first.pid) \(PortBudgetReport.percent(share(first.ports, total)))"
            }
            parts.append(parts.isEmpty ? process : "(\(process))")
        }
        return parts.isEmpty ? "" : prefix + parts.joined(separator: " ")
    }

    static func share(_ ports: Int, _ total: Int) -> Double { total <= 0 ? 0 : min(1, Double(ports) / Double(total)) }

    /// Heading of the findings section.
    public static let findingsHeading = "Why, and what to do"

    /// The "Why, and what to do" section: per finding, a heading line (severity,
    /// id, scope), the cause, the fix, and the runbook anchor; empty when there
    /// is no finding.
    public static func renderFindings(_ findings: [Finding]) -> String {
        guard !findings.isEmpty else { return "" }
        var out = findingsHeading + "\n"
        for f in findings {
            out += "\n\(f.severity.rawValue.uppercased()) \(f.id.rawValue) (\(f.scope.name))\n"
            out += wrap(f.cause, indent: "  ")
            out += wrap("Fix: " + f.fix, indent: "  ", keepingWhole: f.commands)
            out += "  See \(f.runbook)\n"
        }
        return out + "\n"
    }

    /// Greedy word wrap at `width` columns; a word longer than the width
    /// stays whole, and so do each of `keepingWhole` and backquoted spans
    /// (commands to paste).
    static func wrap(_ text: String, indent: String, width: Int = 100, keepingWhole: [String] = []) -> String {
        let glue: Character = "\u{0}"
        var text = text
        // Backquoted spans (`ss …`) are commands too.
        let quoted = text.split(separator: "`", omittingEmptySubsequences: false).enumerated()
            .filter { $0.offset % 2 == 1 }.map { "`" + $0.element + "`" }
        for phrase in keepingWhole + quoted {
            text = text.replacing(phrase, with: phrase.replacing(" ", with: String(glue)))
        }
        var out = "", line = indent
        for glued in text.split(separator: " ", omittingEmptySubsequences: true) {
            let word = String(glued.replacing(String(glue), with: " "))
            if line.count > indent.count && line.count + 1 + word.count > width {
                out += line + "\n"
                line = indent
            }
            line += (line.count > indent.count ? " " : "") + word
        }
        return out + line + "\n"
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

extension String {
    var nonEmpty: String? { isEmpty ? nil : self }
}

/// The `check` text for the NAT: a conntrack line among the
/// host-wide rows, and the SNAT groups as a table like the TCP destinations.
extension CheckReportRenderer {
    static func conntrackRow(_ report: PortBudgetReport) -> String {
        guard let t = report.conntrack else { return "" }
        let fill = t.limit > 0 ? "\(t.entries)/\(t.limit) entries (\(PortBudgetReport.percent(t.utilization)))" : "\(t.entries) entries"
        return row(["Conntrack", fill,
                    "insert_failed \(t.insertFailed), drop \(t.drop), early_drop \(t.earlyDrop), search_restart \(t.searchRestart)"])
    }

    static func snatSection(_ report: PortBudgetReport, top: Int) -> String {
        guard let snat = report.snat else { return "" }
        var out = "\n"
        let range = "NAT range \(snat.portRange.low)-\(snat.portRange.high), \(snat.portRange.capacity) ports"
        let outside = snat.entriesOutsideRange > 0 ? "; \(snat.entriesOutsideRange) NATed entries outside the range not counted" : ""
        let groups = top > 0 ? Array(snat.groups.prefix(top)) : snat.groups
        if groups.isEmpty {
            return out + "No source-NATed connections (\(range)\(outside)).\n"
        }
        let shown = groups.count == snat.groupCount ? "all \(groups.count)" : "top \(groups.count) of \(snat.groupCount)"
        out += "SNAT groups (\(shown), worst first; \(range)\(outside); the NAT drops new connections at 0 free)\n"
        var table: [[String]] = [["PROTO", "NAT SOURCE", "PEER", "USED/CAPACITY", "UTIL", "FREE", "STATUS"]]
        for g in groups {
            table.append([g.protocol, g.sourceIP, PortBudgetReport.Limit.hostPort(g.peerIP, g.peerPort), "\(g.used)/\(g.capacity)",
                          PortBudgetReport.percent(g.utilization), "\(g.free)", report.thresholds.status(g.utilization).rawValue])
        }
        return out + columns(table)
    }
}

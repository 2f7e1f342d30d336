/// One cause of port pressure the agent can name from what it measured, with
/// the numbers that show it and the change that fixes it. Encodes to the
/// `findings` entries of `check --json`.
///
/// Causes that depend on an application (hot_destination, time_wait,
/// bind_before_connect) name the holders the report carries in their text.
public struct Finding: Sendable, Codable, Equatable {
    /// The causes, in the order that breaks ties between equally severe
    /// findings about the same limit: the specific cause before the generic
    /// one, the pattern (listener_in_range) last.
    public enum ID: String, Sendable, Codable, CaseIterable {
        case bindBeforeConnect = "bind_before_connect"
        case timeWait = "time_wait"
        case finWait2 = "fin_wait2"
        case hotDestination = "hot_destination"
        case udpPressure = "udp_pressure"
        case narrowRange = "narrow_range"
        case listenerInRange = "listener_in_range"

        var rank: Int { Self.allCases.firstIndex(of: self)! }
    }

    /// The severity of the limit a finding explains; `info` for a risky
    /// pattern while nothing is near a limit.
    public enum Severity: String, Sendable, Codable, Comparable, CaseIterable {
        case info, warning, critical

        init?(_ status: Status) {
            switch status {
            case .ok: return nil
            case .warning: self = .warning
            case .critical: self = .critical
            }
        }

        var rank: Int { self == .info ? 0 : self == .warning ? 1 : 2 }
        public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
    }

    /// What runs out: one TCP destination, host-wide TCP bind, UDP, or the range itself.
    public struct Scope: Sendable, Codable, Equatable {
        public enum Kind: String, Sendable, Codable {
            case tcpDestination = "tcp_destination", tcpBind = "tcp_bind", udp, range
        }

        public var kind: Kind
        public var localIP: String?
        public var peerIP: String?
        public var peerPort: Int?

        public init(_ kind: Kind) { self.kind = kind }

        public init(_ group: PortBudgetReport.Group) {
            kind = .tcpDestination
            localIP = group.localIP
            peerIP = group.peerIP
            peerPort = group.peerPort
        }

        /// "TCP 10.0.0.1 → 10.0.0.5:443", "TCP host-wide bind", "UDP host-wide", "port range".
        public var name: String {
            switch kind {
            case .tcpDestination:
                return "TCP \(localIP ?? "?") → \(PortBudgetReport.Limit.hostPort(peerIP ?? "?", peerPort ?? 0))"
            case .tcpBind: return "TCP host-wide bind"
            case .udp: return "UDP host-wide"
            case .range: return "port range"
            }
        }

        enum CodingKeys: String, CodingKey { case kind, localIP = "local_ip", peerIP = "peer_ip", peerPort = "peer_port" }
    }

    public var id: ID
    public var severity: Severity
    public var scope: Scope
    /// The cause in one or two sentences, with the measured numbers.
    public var cause: String
    /// The measured facts behind the cause, by name (ports, counts, ratios, sysctls).
    public var evidence: [String: Double]
    /// The concrete change, with computed values.
    public var fix: String
    /// The fix in one line, for an alert's description and the `fix` label
    /// of `portbudget_finding`: commands and values, no measured counts, so
    /// the series stays put while the numbers move.
    public var action: String
    /// Shell commands of the fix, in order; empty when the fix is in the application or architecture.
    public var commands: [String]
    /// Ports the fix is about (listeners to reserve), ascending; empty when none.
    public var ports: [Int]
    /// Ports left in the limit this finding explains: among equally severe
    /// findings, the one whose limit fails first comes first.
    public var portsLeft: Int

    /// Where docs/runbook.md explains the finding.
    public var runbook: String { "docs/runbook.md#\(id.rawValue)" }

    public init(id: ID, severity: Severity, scope: Scope, cause: String, evidence: [String: Double], fix: String,
                action: String, commands: [String] = [], ports: [Int] = [], portsLeft: Int) {
        self.id = id
        self.severity = severity
        self.scope = scope
        self.cause = cause
        self.evidence = evidence
        self.fix = fix
        self.action = action
        self.commands = commands
        self.ports = ports
        self.portsLeft = portsLeft
    }

    enum CodingKeys: String, CodingKey {
        case id, severity, scope, cause, evidence, fix, action, commands, ports, runbook, portsLeft = "ports_left"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(ID.self, forKey: .id)
        severity = try c.decode(Severity.self, forKey: .severity)
        scope = try c.decode(Scope.self, forKey: .scope)
        cause = try c.decode(String.self, forKey: .cause)
        evidence = try c.decode([String: Double].self, forKey: .evidence)
        fix = try c.decode(String.self, forKey: .fix)
        action = try c.decode(String.self, forKey: .action)
        commands = try c.decodeIfPresent([String].self, forKey: .commands) ?? []
        ports = try c.decodeIfPresent([Int].self, forKey: .ports) ?? []
        portsLeft = try c.decode(Int.self, forKey: .portsLeft)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(severity, forKey: .severity)
        try c.encode(scope, forKey: .scope)
        try c.encode(cause, forKey: .cause)
        try c.encode(evidence, forKey: .evidence)
        try c.encode(fix, forKey: .fix)
        try c.encode(action, forKey: .action)
        try c.encode(commands, forKey: .commands)
        try c.encode(ports, forKey: .ports)
        try c.encode(runbook, forKey: .runbook)
        try c.encode(portsLeft, forKey: .portsLeft)
    }
}

/// Names why the ports of one network namespace are going and what fixes
/// it, from that namespace's report alone (its census and the sysctls it
/// carries). Pure. Every rule follows the kernel's (docs/model.md), and
/// every warning or critical finding explains a limit that is itself at
/// warning or worse under the report's thresholds — the same ones `check`
/// uses — so nothing above `info` appears on a healthy host.
public enum Diagnosis {
    public typealias Severity = Finding.Severity

    /// TCP_TIMEWAIT_LEN: a TIME_WAIT entry lives 60 s on Linux, whatever any
    /// sysctl says; so one destination sustains capacity ÷ 60 new
    /// connections per second when TIME_WAIT is not reused.
    public static let timeWaitSeconds = 60

    /// The kernel's default `ip_local_port_range`; a narrower range is a
    /// choice someone made, and widening to at least this is the first fix.
    public static let kernelDefaultRange: ClosedRange<Int> = 32768...60999

    /// The share of a limit a cause must account for to be named as its
    /// cause: "at least half" (time_wait, fin_wait2, bind_before_connect).
    /// Below it, the cause is a contributor, not the explanation.
    public static let causeShare = 0.5

    /// Per-destination findings (hot_destination, time_wait, fin_wait2)
    /// name at most this many destinations each, worst first: past a
    /// handful, more of the same paragraph does not help at 3 a.m.
    public static let maxDestinationsPerCause = 5

    /// The `tcp_fin_timeout` suggested when FIN_WAIT2 holds a destination's
    /// ports: a quarter of the 60 s default, still ample for a peer that
    /// does close to answer.
    public static let suggestedFinTimeoutSeconds = 15

    public static func findings(for report: PortBudgetReport) -> [Finding] {
        var out: [Finding] = []
        let hot = report.tcp.groups.filter { Severity(report.thresholds.status($0.utilization)) != nil }
        out += hot.prefix(maxDestinationsPerCause).map { hotDestination($0, report) }
        out += hot.compactMap { timeWait($0, report) }.prefix(maxDestinationsPerCause)
        out += hot.compactMap { finWait2($0, report) }.prefix(maxDestinationsPerCause)
        if let f = bindBeforeConnect(report) { out.append(f) }
        if let f = udpPressure(report) { out.append(f) }
        if let f = narrowRange(report) { out.append(f) }
        if let f = listenerInRange(report) { out.append(f) }
        return out.enumerated().sorted { a, b in
            let (x, y) = (a.element, b.element)
            if x.severity != y.severity { return x.severity > y.severity }
            // A range narrower than the kernel's default explains every other
            // limit it is as severe as: it is the root cause, so it leads.
            if (x.id == .narrowRange) != (y.id == .narrowRange) { return x.id == .narrowRange }
            if x.portsLeft != y.portsLeft { return x.portsLeft < y.portsLeft }
            if x.id != y.id { return x.id.rank < y.id.rank }
            return a.offset < b.offset
        }.map(\.element)
    }

    // MARK: - Causes

    /// The lead fix follows the pattern: ports held mostly by closing
    /// connections (TIME_WAIT, FIN_WAIT2) are churn, and reusing connections
    /// is the fix; ports held by live connections are concurrency, which
    /// only more (destination IP, port, source IP) budgets relieve.
    static func hotDestination(_ g: PortBudgetReport.Group, _ r: PortBudgetReport) -> Finding {
        let severity = Severity(r.thresholds.status(g.utilization))!
        let destination = PortBudgetReport.Limit.hostPort(g.peerIP, g.peerPort)
        let perSecond = Double(g.capacity) / Double(timeWaitSeconds)
        let closing = g.timeWait + g.finWait2
        let churn = g.used > 0 && Double(closing) >= causeShare * Double(g.used)
        let live = max(0, g.used - closing)
        var cause = "Connections from \(g.localIP) to \(destination) hold \(g.used) of the \(g.capacity) ports a "
            + "connect() to it may use (\(PortBudgetReport.percent(g.utilization))); at 0 left, connect() to it fails with EADDRNOTAVAIL."
        cause += churn
            ? " \(closing) of them are closing (\(g.timeWait) in TIME_WAIT, \(g.finWait2) in FIN_WAIT2): connections are opened and closed faster than their ports come back."
            : " \(live) of them are live connections (\(g.timeWait) in TIME_WAIT, \(g.finWait2) in FIN_WAIT2): this is how many are open at once, not churn."
        if let who = opener(g) { cause += " Opened by \(who)." }
        let spread = "Each added destination IP or port, or source IP, is a budget of its own of \(g.capacity) ports"
        let fix: String
        let action: String
        if churn {
            fix = "Reuse connections to \(destination) (keep-alive, a connection pool): when this host closes first, "
                + "each closed connection holds its port \(timeWaitSeconds) s in TIME_WAIT, so without reuse this "
                + "destination sustains \(g.capacity) ports ÷ \(timeWaitSeconds) s = \(rate(perSecond)) new connections per "
                + "second. \(spread) (\(rate(perSecond)) connections per second more): spread the traffic over several."
            action = "pool or keep alive connections to \(destination); each added destination IP or port, or source "
                + "IP, adds \(g.capacity) ports (\(rate(perSecond)) new connections/s)"
        } else {
            fix = "\(spread): spread these long-lived connections over several — more addresses or ports on "
                + "\(g.peerIP)'s side (more backend listeners, more IPs behind the service), or more source addresses "
                + "on this host, the proxy choosing among them. Keep-alive does not help connections that already "
                + "stay open; if fewer would do the same work, cap how many the application keeps to \(destination)."
            action = "spread the connections to \(destination) over more destination IPs or ports, or more source "
                + "IPs: each adds \(g.capacity) ports"
        }
        return Finding(
            id: .hotDestination, severity: severity, scope: .init(g), cause: cause,
            evidence: ["used": Double(g.used), "capacity": Double(g.capacity), "utilization": g.utilization,
                       "time_wait": Double(g.timeWait), "fin_wait2": Double(g.finWait2),
                       "live": Double(live), "churn": churn ? 1 : 0,
                       "sustainable_connects_per_second": perSecond],
            fix: fix, action: action, portsLeft: g.free)
    }

    /// Who opens connections to a destination, as the report names them:
    /// the holders of its live sockets (TIME_WAIT has no owner). Nil when
    /// none is named.
    static func opener(_ g: PortBudgetReport.Group) -> String? {
        holderPhrase(g.holders, g.processes, unit: "live connection")
    }

    /// "nginx.service (12 ports), process nginx 4711 (12 ports)", or for
    /// processes tied at the top, "50 processes with 1 port each (nc 31483, …)".
    static func holderPhrase(_ holders: [Holder]?, _ processes: [ProcessHolder]?, unit: String = "port") -> String? {
        var parts: [String] = []
        func count(_ n: Int) -> String { "\(n) \(unit)\(n == 1 ? "" : "s")" }
        if let cgroups = holders, !cgroups.isEmpty {
            parts.append(cgroups.prefix(3).map { "\($0.shortName) (\(count($0.ports)))" }.joined(separator: ", "))
        }
        if let first = processes?.first {
            if let tied = first.tiedProcesses {
                parts.append("\(tied) processes with \(count(first.ports)) each (\(first.comm) \(first.pid), …)")
            } else {
                parts.append("process " + processes!.prefix(3).map { "\($0.comm) \($0.pid) (\(count($0.ports)))" }
                    .joined(separator: ", "))
            }
        }
        return parts.isEmpty ? nil : parts.joined(separator: "; ")
    }

    /// Would the kernel reuse this destination's TIME_WAIT entries (past the
    /// reuse delay)? `tcp_twsk_unique`: reuse 1, or 2 with a loopback
    /// address, and timestamps on.
    static func timeWaitReused(_ g: PortBudgetReport.Group, _ r: PortBudgetReport) -> Bool {
        let t = r.timeWaitReuse
        guard t.tcpTimestamps != 0 else { return false }
        return t.tcpTwReuse == 1 || (t.tcpTwReuse == 2 && isLoopback(g))
    }

    static func isLoopback(_ g: PortBudgetReport.Group) -> Bool {
        (IPAddress(g.localIP)?.isLoopback ?? false) || (IPAddress(g.peerIP)?.isLoopback ?? false)
    }

    static func timeWait(_ g: PortBudgetReport.Group, _ r: PortBudgetReport) -> Finding? {
        guard g.timeWait > 0, !timeWaitReused(g, r), Double(g.timeWait) >= causeShare * Double(g.used),
              let severity = Severity(r.thresholds.status(g.utilization)) else { return nil }
        let t = r.timeWaitReuse
        let loopback = isLoopback(g)
        let destination = PortBudgetReport.Limit.hostPort(g.peerIP, g.peerPort)
        // Every reason tcp_twsk_unique says no, and the sysctl that removes it.
        var reasons: [String] = []
        var commands: [String] = []
        if t.tcpTwReuse == 2 && !loopback {
            reasons.append("tcp_tw_reuse=2 reuses TIME_WAIT only for loopback connections, and this one is not")
            commands.append("sysctl -w net.ipv4.tcp_tw_reuse=1")
        } else if t.tcpTwReuse != 1 && t.tcpTwReuse != 2 {
            reasons.append("tcp_tw_reuse=\(t.tcpTwReuse) (off)")
            // 2 is the kernel default and covers loopback; other traffic needs 1.
            commands.append("sysctl -w net.ipv4.tcp_tw_reuse=\(loopback ? 2 : 1)")
        }
        if t.tcpTimestamps == 0 {
            reasons.append("tcp_timestamps=0, and reuse needs TCP timestamps")
            commands.append("sysctl -w net.ipv4.tcp_timestamps=1")
        }
        let why = reasons.joined(separator: "; ")
        let cause = "TIME_WAIT holds \(g.timeWait) of the \(g.used) ports in use towards \(destination) "
            + "(\(PortBudgetReport.percent(g.utilization)) of \(g.capacity)), and the kernel will not hand them to a "
            + "new connect(): \(why). This host closes first, so each closed connection keeps its port \(timeWaitSeconds) s."
            + (opener(g).map { " Who opens connections to \(destination): \($0) (TIME_WAIT entries have no owner)." }
                ?? " No live connection to \(destination) is open now, and TIME_WAIT entries have no owner: "
                + "`ss -tnp dst \(destination)` while the load runs names who opens them.")
        let who = g.holders?.first?.shortName ?? g.processes?.first?.comm
        let fix = "Let connect() reuse TIME_WAIT entries older than \(t.reuseDelayMs) ms: "
            + commands.joined(separator: "; ") + " (persist in /etc/sysctl.d/). That is safe for outgoing "
            + "connections: timestamps tell an old segment from a new one. Better still, keep connections to "
            + "\(destination) open\(who.map { " in \($0)" } ?? "") (upstream keep-alive, pooling) so fewer close. "
            + "Never tcp_tw_recycle: it broke clients behind NAT and Linux 4.12 removed it."
        return Finding(
            id: .timeWait, severity: severity, scope: .init(g), cause: cause,
            evidence: ["time_wait": Double(g.timeWait), "used": Double(g.used), "capacity": Double(g.capacity),
                       "utilization": g.utilization, "tcp_tw_reuse": Double(t.tcpTwReuse),
                       "tcp_timestamps": Double(t.tcpTimestamps), "loopback": loopback ? 1 : 0],
            fix: fix, action: commands.joined(separator: "; ") + "; keep connections alive (never tcp_tw_recycle)",
            commands: commands, portsLeft: g.free)
    }

    static func finWait2(_ g: PortBudgetReport.Group, _ r: PortBudgetReport) -> Finding? {
        guard g.finWait2 > 0, Double(g.finWait2) >= causeShare * Double(g.used),
              let severity = Severity(r.thresholds.status(g.utilization)) else { return nil }
        let timeout = r.timeWaitReuse.finTimeoutSeconds
        let destination = PortBudgetReport.Limit.hostPort(g.peerIP, g.peerPort)
        let cause = "FIN_WAIT2 holds \(g.finWait2) of the \(g.used) ports in use towards \(destination) "
            + "(\(PortBudgetReport.percent(g.utilization)) of \(g.capacity)): this host closed those connections and "
            + "\(g.peerIP) never closed its side. FIN_WAIT2 always blocks the port; a closed (orphaned) socket stays "
            + "\(timeout) s (tcp_fin_timeout)."
        var commands: [String] = []
        var fix = "Find why \(destination) does not close a connection after reading its end (a server that keeps "
            + "half-closed connections, a proxy that does not pass the FIN on)."
        if timeout > suggestedFinTimeoutSeconds {
            commands.append("sysctl -w net.ipv4.tcp_fin_timeout=\(suggestedFinTimeoutSeconds)")
            fix += " Meanwhile shorten how long orphaned FIN_WAIT2 sockets keep their port: \(commands[0]) "
                + "(now \(timeout) s)."
        }
        fix += " A socket the application still holds after shutdown() is not orphaned: only closing it frees the port."
        return Finding(
            id: .finWait2, severity: severity, scope: .init(g), cause: cause,
            evidence: ["fin_wait2": Double(g.finWait2), "used": Double(g.used), "capacity": Double(g.capacity),
                       "utilization": g.utilization, "fin_timeout_seconds": Double(timeout)],
            fix: fix, action: (["make \(g.peerIP) close its side of the connection"] + commands).joined(separator: "; "),
            commands: commands, portsLeft: g.free)
    }

    /// bind() before connect() shows two ways. An explicit port is seen per
    /// socket (`explicitConnectedPorts`). bind(addr, 0) is not (the socket
    /// looks auto-bound), but it leaves a trace: plain connect() puts
    /// connections to different destinations on the same port, and a port
    /// taken by bind() carries exactly one connection. So the ports holding a
    /// single connection, beyond what the busiest destination alone could
    /// explain, are counted as bound before connect — a lower bound. With
    /// the failure collector loaded, bind(addr, 0) is seen per socket too
    /// (`bindTracking`), and counted with the explicit ports.
    static func bindBeforeConnect(_ r: PortBudgetReport) -> Finding? {
        let t = r.tcp
        let busiest = r.busiestGroupPorts
        let inferred = r.inferredBindBeforeConnectPorts
        let bound = r.bindBeforeConnectPorts
        guard bound > 0 else { return nil }
        var severity: Severity?
        var portsLeft = Int.max
        var limits: [String] = []
        if let s = Severity(r.thresholds.status(t.bindUtilization)), Double(bound) >= causeShare * Double(t.boundPorts) {
            severity = s
            portsLeft = r.portRange.usable - t.boundPorts
            limits.append("TCP sockets hold \(t.boundPorts) of \(r.portRange.usable) usable ports "
                + "(\(PortBudgetReport.percent(t.bindUtilization))); at 0 left, bind(addr, 0) fails with EADDRINUSE"
                + (r.portsClosedToNewDestinations >= r.portRange.usable
                    ? ", and since those ports are bound, connect() to a new destination fails with EADDRNOTAVAIL" : ""))
        }
        // An explicit port is also out of every destination's capacity.
        if let g = t.groups.first, let s = Severity(r.thresholds.status(g.utilization)),
           Double(t.explicitConnectedPorts) >= causeShare * Double(r.portRange.usable - g.free) {
            severity = max(severity ?? s, s)
            portsLeft = min(portsLeft, g.free)
            limits.append("connections to \(PortBudgetReport.Limit.hostPort(g.peerIP, g.peerPort)) may use only "
                + "\(g.capacity) of \(r.portRange.usable) ports and are at \(PortBudgetReport.percent(g.utilization))")
        }
        guard let severity else { return nil }
        var seen: [String] = []
        if inferred > 0 {
            seen.append("\(t.singleConnectionPorts) ports carry exactly one connection each, over \(t.groupCount) "
                + "destinations (the busiest holds \(busiest)) — plain connect() would share ports between "
                + "destinations, bind(addr, 0) never does")
        }
        let tracked = t.bindTracking?.boundBeforeConnectPorts ?? 0
        if tracked > 0 {
            seen.append("\(tracked) connected sockets took their port with bind(addr, 0) before connect() "
                + "(seen by the failure collector as each connect() began)")
        }
        if t.explicitConnectedPorts - tracked > 0 {
            seen.append("\(t.explicitConnectedPorts - tracked) connected sockets chose their port with bind(addr, port)")
        }
        let cause = "Sockets bind() a source port before connect(): " + seen.joined(separator: "; ")
            + ". Such a port is kept from every other destination and from bind(). "
            + limits.joined(separator: "; ") + "."
        let fix = "Set IP_BIND_ADDRESS_NO_PORT on the socket before bind(addr, 0) (Linux 4.2+): the kernel then "
            + "picks the port at connect(), per destination, and shares it. To confine ports to a sub-range, use "
            + "IP_LOCAL_PORT_RANGE (Linux 6.3+) instead of choosing the port in the application. "
            + whoBinds(r)
        return Finding(
            id: .bindBeforeConnect, severity: severity, scope: .init(.tcpBind), cause: cause,
            evidence: ["bound_ports": Double(t.boundPorts), "usable": Double(r.portRange.usable),
                       "bind_utilization": t.bindUtilization, "bind_before_connect_ports": Double(bound),
                       "explicit_connected_ports": Double(t.explicitConnectedPorts),
                       "socket_cookie_ports": Double(tracked),
                       "single_connection_ports": Double(t.singleConnectionPorts),
                       "destinations": Double(t.groupCount), "busiest_destination_ports": Double(busiest)],
            fix: fix,
            action: "set IP_BIND_ADDRESS_NO_PORT before bind(addr, 0), or IP_LOCAL_PORT_RANGE instead of a chosen port",
            portsLeft: portsLeft)
    }

    /// Where the bind-before-connect fix goes: the holders the report names,
    /// or the flag that would name them.
    static func whoBinds(_ r: PortBudgetReport) -> String {
        let named = holderPhrase(r.tcp.holders, r.tcp.processes)
        switch (named, r.tcp.processes) {
        case let (named?, processes?) where !processes.isEmpty:
            return "Holding the most TCP ports: \(named)."
        case let (named?, _):
            return "Holding the most TCP ports: \(named); `check --processes` names the processes."
        default:
            return "`check --processes` names the processes holding the ports."
        }
    }

    static func udpPressure(_ r: PortBudgetReport) -> Finding? {
        guard let severity = Severity(r.thresholds.status(r.udp.utilization)) else { return nil }
        let u = r.udp
        let cause = "UDP sockets hold \(u.boundPorts) of \(r.portRange.usable) usable ports "
            + "(\(PortBudgetReport.percent(u.utilization)), \(u.sockets) sockets): every UDP socket costs a port "
            + "host-wide, whatever its destination. At 0 left, a new UDP socket's connect() or sendto() fails with "
            + "EAGAIN — DNS lookups and NTP are what fail next."
        let fix = "Close idle UDP sessions sooner (the idle timeout of a relay, of SOCKS5 UDP ASSOCIATE), cap the "
            + "sessions one client may open, and send to many peers from one unconnected socket instead of one "
            + "socket each. A wider ip_local_port_range helps too (reserve the listener ports inside it)."
        return Finding(
            id: .udpPressure, severity: severity, scope: .init(.udp), cause: cause,
            evidence: ["bound_ports": Double(u.boundPorts), "usable": Double(r.portRange.usable),
                       "utilization": u.utilization, "sockets": Double(u.sockets)],
            fix: fix,
            action: "shorter idle timeouts for UDP sessions, a cap per client, one unconnected socket for many peers, "
                + "a wider port range",
            portsLeft: r.portRange.usable - u.boundPorts)
    }

    static func narrowRange(_ r: PortBudgetReport) -> Finding? {
        let range = r.portRange
        let defaultSize = kernelDefaultRange.count
        guard range.size < defaultSize, let worst = r.limits.first,
              let severity = Severity(worst.status) else { return nil }
        let low = min(range.low, kernelDefaultRange.lowerBound), high = max(range.high, kernelDefaultRange.upperBound)
        let added = (high - low + 1) - range.size
        let projected = PortCensus.ratio(worst.used, worst.capacity + added)
        let listeners = r.tcp.listenerPortsInRange
        var commands: [String] = []
        var fix = ""
        if !listeners.isEmpty {
            commands.append(reserveCommand(r, adding: listeners))
            fix += "Reserve the listener ports first, so the wider range never hands them out: \(commands[0]). "
        }
        commands.append("sysctl -w net.ipv4.ip_local_port_range=\"\(low) \(high)\"")
        fix += "Widen the range: \(commands.last!) (persist in /etc/sysctl.d/); the same load would then use "
            + "\(PortBudgetReport.percent(projected)) of \(worst.name). Listeners outside the current range are not "
            + "measured: find those the wider range covers with `ss -Htuln 'sport >= :\(low) and sport <= :\(high)'` "
            + "and reserve them too."
        let cause = "The range \(range.low)-\(range.high) has \(range.size) ports, the kernel default "
            + "\(kernelDefaultRange.lowerBound)-\(kernelDefaultRange.upperBound) has \(defaultSize); "
            + "\(worst.name) is at \(PortBudgetReport.percent(worst.utilization)) of it."
        return Finding(
            id: .narrowRange, severity: severity, scope: .init(.range), cause: cause,
            evidence: ["range_size": Double(range.size), "kernel_default_size": Double(defaultSize),
                       "usable": Double(range.usable), "limit_utilization": worst.utilization,
                       "suggested_low": Double(low), "suggested_high": Double(high),
                       "projected_utilization": projected],
            fix: fix, action: commands.joined(separator: "; "), commands: commands, ports: listeners,
            portsLeft: max(0, worst.capacity - worst.used))
    }

    /// Info while nothing is near a limit; warning once host-wide TCP bind
    /// is: a restarting listener then likely finds its port taken by an
    /// outgoing connection (bind() fails with EADDRINUSE).
    static func listenerInRange(_ r: PortBudgetReport) -> Finding? {
        let listeners = r.tcp.listenerPortsInRange
        guard !listeners.isEmpty else { return nil }
        let severity: Severity = r.tcpBindStatus == .ok ? .info : .warning
        let command = reserveCommand(r, adding: listeners)
        let list = portList(listeners)
        let cause = "\(listeners.count) TCP listener\(listeners.count == 1 ? " sits" : "s sit") inside the ephemeral range "
            + "\(r.portRange.low)-\(r.portRange.high) (port\(listeners.count == 1 ? "" : "s") \(list)): each such port "
            + "is lost to every outgoing connection, and when the listener restarts, an outgoing connection may "
            + "already hold it, so its bind() fails with EADDRINUSE."
        let fix = "Reserve \(listeners.count == 1 ? "it" : "them") so autobind never hands \(listeners.count == 1 ? "it" : "them") out: \(command) (persist in /etc/sysctl.d/; the "
            + "listeners can still bind them). Or move the listeners outside \(r.portRange.low)-\(r.portRange.high)."
        return Finding(
            id: .listenerInRange, severity: severity, scope: .init(.range), cause: cause,
            evidence: ["listener_ports_in_range": Double(listeners.count),
                       "bind_utilization": r.tcp.bindUtilization],
            fix: fix, action: command + ", or move the listeners out of the range", commands: [command], ports: listeners,
            portsLeft: r.portRange.usable - r.tcp.boundPorts)
    }

    // MARK: - Helpers

    /// The sysctl command that reserves `ports` and keeps what is reserved
    /// already: writing the sysctl replaces the whole list.
    static func reserveCommand(_ r: PortBudgetReport, adding ports: [Int]) -> String {
        let existing = r.portRange.reservedList
        let added = portList(ports, separator: ",")
        return "sysctl -w net.ipv4.ip_local_reserved_ports=" + (existing.isEmpty ? added : existing + "," + added)
    }

    /// Ascending ports with runs folded: [40010, 40011, 40012, 40020] → "40010-40012,40020".
    static func portList(_ ports: [Int], separator: String = ", ") -> String {
        var runs: [(Int, Int)] = []
        for p in ports.sorted() {
            if let last = runs.last, last.1 + 1 == p { runs[runs.count - 1].1 = p } else { runs.append((p, p)) }
        }
        return runs.map { $0.0 == $0.1 ? "\($0.0)" : "\($0.0)-\($0.1)" }.joined(separator: separator)
    }

    /// Connections per second as read at a glance: 470, 47.1, 1.67.
    static func rate(_ value: Double) -> String {
        if value >= 100 { return String(Int(value.rounded())) }
        let scale = value >= 10 ? 10.0 : 100.0
        let r = (value * scale).rounded() / scale
        return r == r.rounded() ? String(Int(r)) : String(r)
    }
}

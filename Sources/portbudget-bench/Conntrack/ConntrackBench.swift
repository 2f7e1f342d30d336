import CMNL
import Glibc

/// `portbudget-bench conntrack`: the SNAT census at scale. In a
/// private namespace, UDP flows from 10.1.0.2 are masqueraded out of a veth
/// whose peer stays down (ARP off), which drops every packet after conntrack
/// and NAT have seen it, so N conntrack entries cost N sendto() calls and no
/// peer. (No dummy device: the test kernel has no dummy driver.) Then, interleaved
/// over rounds: `portbudget check` (the agent), what a user would do
/// (`conntrack -L --src-nat` piped into awk grouping by NAT tuple space), and
/// the floor: a bare libmnl dump of the same entries that only counts them.
struct ConntrackBench {
    var sizes = [50_000, 100_000, 200_000]
    var rounds = 3
    var binDir = executableDirectory()
    var netns = "pbctbench-\(getpid())"
    var results = "bench-results/conntrack.md"
    var doc: String? = nil
    var command: String

    static let usage = """
        usage: portbudget-bench conntrack [--entries N,N,...] [--rounds N] [--bin-dir DIR] [--doc FILE] [--results FILE]
        Needs root, nftables and conntrack (scripts/ensure-deps test). Defaults: --entries 50000,100000,200000 --rounds 3.
        """

    /// NAT tuple spaces the entries are spread over: 4 peers × 2 ports.
    static let peers = (1...4).map { "10.3.0.\($0)" }
    static let peerPorts: [UInt16] = [5001, 5002]
    static var groups: Int { peers.count * peerPorts.count }
    /// Source ports the flows come from (bound explicitly, so every flow is new):
    /// the kernel's default NAT range, which masquerade keeps them in.
    static let firstSourcePort = 1024, lastSourcePort = 65535
    static var maxEntries: Int { groups * (lastSourcePort - firstSourcePort + 1) }
    /// How long the flows must outlive the measurement (nf_conntrack_udp_timeout, seconds).
    static let udpTimeout = "600"
    static let goals = "Goals: check ≤ 0.3× the conntrack -L pipeline, ≤ 1.3× the floor, RSS ≤ 48 MB and flat in the number of entries."

    init(_ args: [String]) throws {
        command = "portbudget-bench conntrack " + args.joined(separator: " ")
        var arguments = BenchArguments(args, usage: Self.usage)
        while let flag = arguments.next() {
            switch flag {
            case "--entries":
                let list = try arguments.value().split(separator: ",").map { Int($0.filter { $0 != "_" }) }
                guard !list.isEmpty, list.allSatisfy({ ($0 ?? 0) >= Self.groups && ($0 ?? 0) <= Self.maxEntries }) else {
                    throw BenchError("--entries takes N,N,... each \(Self.groups)-\(Self.maxEntries)")
                }
                sizes = list.map { $0! }.sorted()
            case "--rounds":
                guard let n = Int(try arguments.value()), n >= 1 else { throw BenchError("--rounds takes a number ≥ 1") }
                rounds = n
            case "--bin-dir": binDir = try arguments.value()
            case "--netns": netns = try arguments.value()
            case "--results": results = try arguments.value()
            case "--doc": doc = try arguments.value()
            case "--command": command = try arguments.value()
            case "-h", "--help": arguments.help()
            default: throw arguments.unknown
            }
        }
    }

    enum Tool: String, CaseIterable { case floor, check, pipeline = "conntrack -L | awk" }

    struct Row {
        var entries: Int
        var samples: [Tool: [Usage]] = [:]
        func wall(_ t: Tool) -> Double? { median(samples[t, default: []].map(\.wall)) }
        func cpu(_ t: Tool) -> Double? { median(samples[t, default: []].map(\.cpu)) }
        func rss(_ t: Tool) -> Double? { median(samples[t, default: []].map { Double($0.maxRSSKiB) / 1024 }) }
    }

    func run() throws {
        guard geteuid() == 0 else { throw BenchError("needs root: it makes a private network namespace") }
        let portbudget = binDir + "/portbudget", bench = binDir + "/portbudget-bench"
        guard access(portbudget, X_OK) == 0 else { throw BenchError("\(portbudget) not found") }
        for tool in ["/usr/sbin/nft", "/usr/sbin/conntrack"] where access(tool, X_OK) != 0 {
            throw BenchError("\(tool) not found (scripts/ensure-deps test installs nftables and conntrack)")
        }
        try Namespace.create(netns)
        defer { Namespace.delete() }
        try setUpNAT()
        let limit = Int(Namespace.readSysctl("net.netfilter.nf_conntrack_max")) ?? 0
        guard sizes.last! <= limit else {
            throw BenchError("nf_conntrack_max is \(limit), below \(sizes.last!) entries; raise it in the initial namespace")
        }
        let scratch = "/tmp/portbudget-ctbench-\(getpid())"
        defer { unlink(scratch) }
        let pipeline = ["sh", "-c", "conntrack -L --src-nat 2>/dev/null | awk '\(Self.awkGrouping)'"]
        let floor = [bench, "conntrack-floor"]
        let check = [portbudget, "check", "--json", "--top", "0", "--snat-port-range", "1024-65535"]
        var flows = FlowMaker()
        var rows: [Row] = []
        for size in sizes {
            let start = monotonicSeconds()
            try flows.grow(to: size)
            let count = Int(Namespace.readSysctl("net.netfilter.nf_conntrack_count")) ?? -1
            log("built \(Format.thousands(size)) NATed UDP flows in \(Format.fixed(monotonicSeconds() - start, 1)) s; "
                + "nf_conntrack_count \(count)")
            // Unmeasured: each answers once, and the answers must agree with what was built.
            try agree(size: size, check: check, pipeline: pipeline, floor: floor, scratch: scratch)
            var row = Row(entries: size)
            for round in 0..<rounds {
                for k in 0..<Tool.allCases.count {
                    let tool = Tool.allCases[(k + round) % Tool.allCases.count]
                    let argv = tool == .floor ? floor : tool == .check ? check : pipeline
                    let usage = try Child.run(argv)
                    guard tool == .check ? (0...2).contains(usage.status) : usage.status == 0 else {
                        throw BenchError("\(tool.rawValue) exited \(usage.status)")
                    }
                    row.samples[tool, default: []].append(usage)
                }
            }
            log("measured \(Format.thousands(size)): floor \(Format.ms(row.wall(.floor))) ms, check \(Format.ms(row.wall(.check))) ms "
                + "(\(Format.mib(row.rss(.check))) MB), pipeline \(Format.ms(row.wall(.pipeline))) ms")
            rows.append(row)
        }
        let text = markdown(rows)
        writeAll(1, "\n" + text)
        let dir = String(results[..<(results.lastIndex(of: "/") ?? results.startIndex)])
        if !dir.isEmpty { mkdir(dir, 0o755) }
        try writeFile(results, text)
        if let doc { try updateDoc(doc, text, marker: "portbudget-bench-conntrack") }
    }

    /// The masquerade, the device the flows leave by, and flows that outlive the run.
    func setUpNAT() throws {
        for argv in [["ip", "link", "add", "pbct0", "type", "veth", "peer", "name", "pbct1"],
                     ["ip", "link", "set", "pbct0", "arp", "off"], ["ip", "addr", "add", "10.2.0.1/24", "dev", "pbct0"],
                     ["ip", "link", "set", "pbct0", "up"], ["ip", "addr", "add", "10.1.0.2/32", "dev", "lo"],
                     ["ip", "route", "add", "10.3.0.0/16", "dev", "pbct0"]] {
            guard try Child.run(argv).status == 0 else { throw BenchError("`\(argv.joined(separator: " "))` failed") }
        }
        let rules = "/tmp/portbudget-ctbench-\(getpid()).nft"
        defer { unlink(rules) }
        try writeFile(rules, """
            add table ip pbctbench
            add chain ip pbctbench post { type nat hook postrouting priority srcnat; }
            add rule ip pbctbench post oifname "pbct0" masquerade

            """)
        guard try Child.run(["nft", "-f", rules]).status == 0 else { throw BenchError("nft -f failed") }
        try Namespace.sysctl("net.netfilter.nf_conntrack_udp_timeout", Self.udpTimeout)
        try Namespace.sysctl("net.netfilter.nf_conntrack_udp_timeout_stream", Self.udpTimeout)
    }

    /// The agent, the pipeline and the floor must each count exactly `size`
    /// NATed entries in `groups` tuple spaces before any of them is timed.
    func agree(size: Int, check: [String], pipeline: [String], floor: [String], scratch: String) throws {
        let expectedGroups = min(Self.groups, size)
        let checked = try Child.run(check, stdout: .file(scratch))
        let json = readFile(scratch) ?? ""
        guard (0...2).contains(checked.status), let snat = json.firstRange(of: "\"snat\"") else {
            throw BenchError("check --json has no snat part (exit \(checked.status))")
        }
        // The snat object ends where the next top-level key (sorted) begins.
        let part = json[snat.upperBound..<(json[snat.upperBound...].firstRange(of: "\n  \"status\"")?.lowerBound ?? json.endIndex)]
        let used = Self.numbers(after: "\"used\" : ", in: part).reduce(0, +)
        let groupCount = Self.numbers(after: "\"group_count\" : ", in: part).first ?? -1
        guard used == size, groupCount == expectedGroups else {
            throw BenchError("check counted \(used) used ports in \(groupCount) SNAT groups, built \(size) in \(expectedGroups)")
        }
        _ = try Child.run(pipeline, stdout: .file(scratch))
        let lines = (readFile(scratch) ?? "").split(separator: "\n")
        let pipelineUsed = lines.compactMap { $0.split(separator: " ").last.flatMap { Int($0) } }.reduce(0, +)
        guard pipelineUsed == size, lines.count == expectedGroups else {
            throw BenchError("the conntrack -L pipeline counted \(pipelineUsed) in \(lines.count) groups, built \(size)")
        }
        let child = try Child.spawn(floor, stdout: .pipe)
        let line = child.readAll()
        _ = try child.wait()
        guard let r = line.firstRange(of: "messages="), Int(line[r.upperBound...].prefix { $0.isNumber }) == size else {
            throw BenchError("the floor dump saw \(line), built \(size)")
        }
    }

    static func numbers(after key: String, in text: Substring) -> [Int] {
        var out: [Int] = []
        var rest = text
        while let r = rest.firstRange(of: key) {
            rest = rest[r.upperBound...]
            if let n = Int(rest.prefix { $0.isNumber }) { out.append(n) }
        }
        return out
    }

    /// What a user would type: group `conntrack -L --src-nat` by (protocol,
    /// reply destination, reply source, reply source port) and count distinct
    /// reply destination ports. Prints "proto nat_ip peer_ip peer_port used".
    static let awkGrouping = #"""
        { n = 0
          for (i = 1; i <= NF; i++) {
            split($i, kv, "=")
            if (kv[1] == "src") n++
            if (n == 2) {
              if (kv[1] == "src") rs = kv[2]; else if (kv[1] == "dst") rd = kv[2]
              else if (kv[1] == "sport") rsp = kv[2]; else if (kv[1] == "dport") rdp = kv[2]
            }
          }
          key = $1 " " rd " " rs " " rsp
          if (!((key, rdp) in seen)) { seen[key, rdp] = 1; used[key]++ } }
        END { for (k in used) print k, used[k] }
        """#

    func markdown(_ rows: [Row]) -> String {
        var out = "Measured \(utcDate()) on \(machineDescription()); medians of \(rounds) interleaved rounds.\n"
        out += "Command: `\(command)`\n\n"
        out += "| NATed entries | floor ms | check ms | check CPU ms | check RSS MB | conntrack -L \\| awk ms | pipeline RSS MB (largest process) | check/pipeline | check/floor |\n"
        out += "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        for r in rows {
            out += "| \(Format.thousands(r.entries)) | \(Format.ms(r.wall(.floor))) | \(Format.ms(r.wall(.check))) "
            out += "| \(Format.ms(r.cpu(.check))) | \(Format.mib(r.rss(.check))) | \(Format.ms(r.wall(.pipeline))) "
            out += "| \(Format.mib(r.rss(.pipeline))) | \(Format.ratio(r.wall(.check), r.wall(.pipeline))) "
            out += "| \(Format.ratio(r.wall(.check), r.wall(.floor))) |\n"
        }
        out += "\n\(Self.goals) The entries are UDP flows spread over \(Self.groups) NAT groups; "
        out += "check also runs its socket census (a near-empty namespace here); the floor asks the kernel for the "
        out += "same IPS_SRC_NAT entries and only counts them.\n"
        return out
    }
}

/// Makes NATed UDP flows: socket i binds 10.1.0.2:(1024 + i) and sends one
/// datagram to each peer × port, so every (source port, peer, peer port) is a
/// new conntrack entry that masquerade keeps on its own port. Sockets are
/// closed right after sending: the entries outlive them.
struct FlowMaker {
    private(set) var made = 0

    mutating func grow(to size: Int) throws {
        let destinations = ConntrackBench.peers.flatMap { peer in ConntrackBench.peerPorts.map { (peer, $0) } }
        while made < size {
            let socketIndex = made / destinations.count
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            guard fd >= 0 else { throw BenchError("socket: errno \(errno)") }
            defer { Glibc.close(fd) }
            var source = Self.address("10.1.0.2", UInt16(ConntrackBench.firstSourcePort + socketIndex))
            let bound = withUnsafePointer(to: &source) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0 else { throw BenchError("bind 10.1.0.2:\(ConntrackBench.firstSourcePort + socketIndex): errno \(errno)") }
            for (peer, port) in destinations[(made % destinations.count)...] where made < size {
                var to = Self.address(peer, port)
                var byte: UInt8 = 0x62
                let sent = withUnsafePointer(to: &to) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd, &byte, 1, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
                guard sent == 1 else { throw BenchError("sendto \(peer):\(port): errno \(errno)") }
                made += 1
            }
        }
    }

    static func address(_ ip: String, _ port: UInt16) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        inet_pton(AF_INET, ip, &a.sin_addr)
        return a
    }
}

/// `portbudget-bench conntrack-floor`: one ctnetlink dump of the IPS_SRC_NAT
/// entries through libmnl, counting messages and decoding nothing — the least
/// user-space work any SNAT census can do.
enum ConntrackFloor {
    static func main() throws {
        let start = monotonicSeconds()
        guard let nl = pb_open_netlink(NETLINK_NETFILTER) else { throw BenchError("socket(NETLINK_NETFILTER): errno \(pb_errno())") }
        defer { mnl_socket_close(nl) }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: FloorDump.bufferSize, alignment: 8)
        defer { buffer.deallocate() }
        let seq = UInt32(truncatingIfNeeded: time(nil))
        var request = [UInt8](repeating: 0, count: 128)
        let sourceNAT: UInt32 = 1 << 4  // IPS_SRC_NAT
        let length = request.withUnsafeMutableBytes { pb_build_ct_dump($0.baseAddress, $0.count, seq, sourceNAT, sourceNAT) }
        guard request.withUnsafeBytes({ mnl_socket_sendto(nl, $0.baseAddress, length) }) >= 0 else {
            throw BenchError("sendto(NETLINK_NETFILTER): errno \(pb_errno())")
        }
        let messages = try countMessages(nl, buffer: buffer, seq: seq, portid: mnl_socket_get_portid(nl),
                                         bus: "NETLINK_NETFILTER")
        writeAll(1, "conntrack-floor messages=\(messages) seconds=\(monotonicSeconds() - start)\n")
    }
}

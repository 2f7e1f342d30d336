import Glibc

/// Per namespace of this run (the names starting with the run's prefix):
/// the TCP ports bound in its range and its established TCP sockets — both
/// kept for every namespace, whatever `--top` cuts from the group series —
/// from `serve`'s metrics or from `check --all-namespaces --json`.
struct AgentView {
    struct Entry { var bound: Int?; var established: Int? }
    var total = 0
    var ours: [String: Entry] = [:]

    /// The agent names its own namespace `host`: that is the run's host
    /// namespace, where it was started.
    static func ownName(_ name: String, host: String) -> String { name == "host" ? host : name }

    /// From /metrics: `portbudget_netns_info{netns=…}` names each namespace,
    /// `portbudget_tcp_bound_ports{netns=…}` and `portbudget_tcp_sockets{netns=…,state="ESTABLISHED"}` count.
    init(metrics: String, prefix: String, host: String) throws {
        var names = Set<String>()
        func label(_ line: Substring, _ key: String) -> String? {
            Self.label(line, key).map { key == "netns" ? Self.ownName($0, host: host) : $0 }
        }
        for line in metrics.split(separator: "\n") where !line.hasPrefix("#") {
            if line.hasPrefix("portbudget_netns_info{") {
                guard let name = label(line, "netns") else { continue }
                names.insert(name)
                if name.hasPrefix(prefix) { ours[name, default: Entry()] = ours[name] ?? Entry() }
            } else if line.hasPrefix("portbudget_tcp_bound_ports{"), let name = label(line, "netns"), name.hasPrefix(prefix),
                      let value = line.split(separator: " ").last.flatMap({ Double($0) }) {
                ours[name, default: Entry()].bound = Int(value)
            } else if line.hasPrefix("portbudget_tcp_sockets{"), let name = label(line, "netns"), name.hasPrefix(prefix),
                      Self.label(line, "state") == "ESTABLISHED" || Self.label(line, "state") == "established",
                      let value = line.split(separator: " ").last.flatMap({ Double($0) }) {
                ours[name, default: Entry()].established = Int(value)
            }
        }
        guard !names.isEmpty else { throw BenchError("the agent's /metrics has no portbudget_netns_info") }
        total = names.count
    }

    /// From check's pretty-printed JSON (sorted keys): each namespace object's
    /// `"netns"` comes before its `"tcp"`, and `"tcp"` before `"udp"`.
    init(checkJSON json: String, prefix: String, host: String) throws {
        let chunks = json.split(separator: "\"netns\" : {", omittingEmptySubsequences: false).dropFirst()
        guard !chunks.isEmpty else { throw BenchError("check --all-namespaces --json lists no namespace") }
        total = chunks.count
        for chunk in chunks {
            guard let r = chunk.firstRange(of: "\"name\" : \"") else { continue }
            let name = Self.ownName(String(chunk[r.upperBound...].prefix { $0 != "\"" }), host: host)
            guard name.hasPrefix(prefix) else { continue }
            var entry = Entry()
            if let t = chunk.firstRange(of: "\"tcp\" : {") {
                let tcp = chunk[t.upperBound..<(chunk[t.upperBound...].firstRange(of: "\"udp\" : {")?.lowerBound ?? chunk.endIndex)]
                // Sorted keys: the object's own bound_ports comes before its groups and holders.
                if let b = tcp.firstRange(of: "\"bound_ports\" : ") {
                    entry.bound = Int(tcp[b.upperBound...].prefix { $0.isNumber })
                }
                if let e = tcp.firstRange(of: "\"ESTABLISHED\" : ") {
                    entry.established = Int(tcp[e.upperBound...].prefix { $0.isNumber })
                }
            }
            ours[name] = entry
        }
    }

    static func label(_ line: Substring, _ key: String) -> String? {
        for opener in ["{" + key + "=\"", "," + key + "=\""] {
            if let r = line.firstRange(of: opener) { return String(line[r.upperBound...].prefix { $0 != "\"" }) }
        }
        return nil
    }
}

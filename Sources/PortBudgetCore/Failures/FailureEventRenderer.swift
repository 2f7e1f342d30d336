/// `portbudget trace`'s lines: one per failure, as text or as one JSON
/// object. Pure, so the format is tested without a kernel.
public enum FailureEventRenderer {
    /// `2026-12-06T20:40:01.123456Z host pid=812 comm=curl cgroup=/system.slice/a.service unit=a.service tcp connect EADDRNOTAVAIL dst=10.0.0.1:80`
    public static func text(_ e: FailureEvent) -> String {
        var parts = [timestamp(e.time), e.netnsName ?? "netns:\(e.netnsInode)", "pid=\(e.pid)", "comm=\(e.comm)",
                     "cgroup=\(e.owner?.path ?? "id:\(e.cgroupID)")"]
        if let unit = e.owner?.unit { parts.append("unit=\(unit)") }
        if let id = e.owner?.containerID { parts.append("container=\(id.prefix(12))") }
        if let pod = e.owner?.podUID { parts.append("pod=\(pod)") }
        parts += [e.kind.protocolName, e.kind.call.name, e.kind.errnoName]
        if let d = e.destination { parts.append("dst=" + hostPort(d.address, d.port)) }
        return parts.joined(separator: " ")
    }

    /// One JSON object; absent values are null, never guessed.
    public static func json(_ e: FailureEvent) -> String {
        let fields: [(String, String)] = [
            ("time", quoted(timestamp(e.time))),
            ("netns", e.netnsName.map(quoted) ?? "null"),
            ("netns_inode", String(e.netnsInode)),
            ("pid", String(e.pid)),
            ("tid", String(e.tid)),
            ("comm", quoted(e.comm)),
            ("cgroup_id", String(e.cgroupID)),
            ("cgroup", e.owner.map { quoted($0.path) } ?? "null"),
            ("unit", e.owner?.unit.map(quoted) ?? "null"),
            ("container_id", e.owner?.containerID.map(quoted) ?? "null"),
            ("pod_uid", e.owner?.podUID.map(quoted) ?? "null"),
            ("protocol", quoted(e.kind.protocolName)),
            ("call", quoted(e.kind.call.name)),
            ("errno", quoted(e.kind.errnoName)),
            ("destination_ip", e.destination.map { quoted($0.address) } ?? "null"),
            ("destination_port", e.destination.map { String($0.port) } ?? "null"),
        ]
        return "{" + fields.map { "\(quoted($0.0)):\($0.1)" }.joined(separator: ",") + "}"
    }

    static func hostPort(_ address: String, _ port: Int) -> String {
        address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)"
    }

    /// RFC 3339 in UTC with microseconds.
    public static func timestamp(_ seconds: Double) -> String {
        let whole = Int64(seconds.rounded(.down))
        let micros = Int64(((seconds - Double(whole)) * 1_000_000).rounded(.down))
        let days = whole >= 0 ? whole / 86_400 : (whole - 86_399) / 86_400
        let secondOfDay = whole - days * 86_400
        let (year, month, day) = civil(fromDays: days)
        func pad(_ n: Int64, _ width: Int) -> String {
            let s = String(n)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(secondOfDay / 3600, 2)):"
            + "\(pad(secondOfDay / 60 % 60, 2)):\(pad(secondOfDay % 60, 2)).\(pad(micros, 6))Z"
    }

    /// Days since 1970-01-01 → proleptic Gregorian date (Howard Hinnant's algorithm).
    static func civil(fromDays days: Int64) -> (Int64, Int64, Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    /// A JSON string literal.
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

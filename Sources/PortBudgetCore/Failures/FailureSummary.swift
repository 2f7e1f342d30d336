/// `check --watch`'s line about failed port allocations, and what they do
/// to its exit status: any failure is critical, since it already happened.
public enum FailureSummary {
    public static func text(_ failures: PortAllocationFailures, seconds: Double) -> String {
        let window = seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds)
        let kinds = failures.totals.filter { $0.count > 0 }
            .map { "\($0.kind.protocolName) \($0.kind.call.name) \($0.kind.errnoName) \($0.count)" }
        guard !kinds.isEmpty else { return "Failed port allocations in \(window) s: none." }
        var line = "CRITICAL: \(failures.total) failed port allocation\(failures.total == 1 ? "" : "s") in \(window) s: "
            + kinds.joined(separator: ", ")
        if let top = failures.holders.first {
            line += "; most by \(top.cgroup.map { CgroupOwner(path: $0).shortName } ?? "cgroup \(top.cgroupID)") (\(top.count))"
        }
        return line + "."
    }

    /// The census's exit status, raised to critical (2) when anything failed.
    public static func exitCode(_ census: Int32, failures: PortAllocationFailures?) -> Int32 {
        guard let failures, failures.total > 0 else { return census }
        return max(census, 2)
    }
}

import ArgumentParser
import PortBudgetAgent
import PortBudgetLinux

/// How `serve` and `textfile` watch failed port allocations (docs/failures.md).
struct FailureOptions: ParsableArguments {
    @Flag(name: .customLong("no-failures"),
          help: "Do not load the failure collector's BPF programs (portbudget_port_allocation_failures_total).")
    var noFailures = false

    @Flag(help: "Also count bind(addr, 0) EADDRINUSE and UDP connect() EAGAIN, through syscall tracepoints: every syscall of the host takes the kernel's slower tracing path while they are loaded (see docs/failures.md for the measured cost). Needs tracefs.")
    var failureSyscallHooks = false

    /// What to load; nil for --no-failures.
    var programs: FailurePrograms.Options? {
        noFailures ? nil : FailurePrograms.Options(syscallHooks: failureSyscallHooks)
    }
}

extension CollectionSource {
    /// Collects once as soon as the failure programs are loaded, and drops
    /// the result: the sockets connected by then are the ones whose port
    /// origin stays inferred. Without it the first scrape (or the end of
    /// `check --watch`) would take every connection made since start for one
    /// older than the programs. A no-op when they did not load.
    func markConnectionsOlderThanTheFailurePrograms() async {
        guard loadedFailurePrograms != nil else { return }
        _ = try? await CollectionRunner(deadline: deadline, collectorNames: collectors.names, collect: collect).run()
    }
}

import ArgumentParser
import Logging
import PortBudgetCore
import PortBudgetLinux

/// The options `check`, `serve` and `textfile` share: what they watch and
/// where they read it. `source(…)` is the one place a collection is built.
struct CollectionOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "How many destination groups to list, or export as series, worst first (0: all). Aggregates always cover every group.")
    var top = 20

    @Option(help: "Where procfs is mounted.")
    var procfs = "/proc"

    @Option(parsing: .unconditional, help: ArgumentHelp("Source ports the NAT (MASQUERADE/SNAT) hands out, for the SNAT budget (default: serve's --config snat_port_range, else the kernel's 1024-65535).", valueName: "low-high"))
    var snatPortRange: String?

    @Option(help: ArgumentHelp("Watch another network namespace: a name from `ip netns add`, a path to a namespace file, or pid:PID. Needs CAP_SYS_ADMIN. Repeat it to watch several: each series then gains a netns label, and check gives one verdict over all.",
                               valueName: "name|path|pid:PID"))
    var netns: [String] = []

    @Flag(help: "Watch every network namespace on the host (containers, pods, `ip netns`): check gives one verdict over all, then each; every exported series gains a netns label. Needs CAP_SYS_ADMIN and CAP_SYS_PTRACE (see docs/namespaces.md).")
    var allNamespaces = false

    @Option(parsing: .unconditional, help: "With --all-namespaces: how many namespaces to list one by one — the agent's own, then those owned by the host's user namespace, then the worst; the rest are summed and counted.")
    var listedNamespaces = NamespaceBudget.defaultListed

    var budget: NamespaceBudget { NamespaceBudget(listed: listedNamespaces) }

    func validate() throws {
        guard top >= 0 else { throw ValidationError("--top must be 0 or more, got \(top)") }
        guard listedNamespaces >= 1 else { throw ValidationError("--listed-namespaces must be 1 or more, got \(listedNamespaces)") }
        _ = try parsedSNATPortRange
        for target in netns {
            do { _ = try NetnsTarget(parsing: target) } catch { throw ValidationError("\(error)") }
        }
        if let twice = Dictionary(grouping: netns, by: { $0 }).first(where: { $0.value.count > 1 })?.key {
            throw ValidationError("--netns \(twice) is given twice")
        }
        guard netns.isEmpty || !allNamespaces else { throw ValidationError("--netns and --all-namespaces exclude each other") }
    }

    /// `--snat-port-range` checked: nil when not given; a one-line usage error when not a range.
    var parsedSNATPortRange: SNATPortRange? {
        get throws {
            guard let snatPortRange else { return nil }
            do {
                return try SNATPortRange(parsing: snatPortRange)
            } catch {
                throw ValidationError("--snat-port-range \(error.description)")
            }
        }
    }

    /// The collection these options describe. `adjust` sets what only one
    /// command decides (check's thresholds and holders, serve's config SNAT
    /// range). Opening `--netns`'s namespace can fail: the error says why.
    func source(logger: Logger, adjust: (inout CollectionSource.Configuration) -> Void = { _ in }) throws -> CollectionSource {
        var configuration = CollectionSource.Configuration(procfs: procfs, snatPortRange: try parsedSNATPortRange ?? .kernelDefault)
        if !netns.isEmpty {
            // Held open now, so a namespace cannot change under us; entered
            // by each collection's own thread, whose /proc/net is thread-self's.
            configuration.scope = .netns(try netns.map { name in
                (handle: try NetworkNamespaceHandle(try NetnsTarget(parsing: name), procfs: procfs), name: name)
            })
        } else if allNamespaces {
            configuration.scope = .all
            let limit = OpenFilesLimit.raiseToHard()
            logger.info("watching every network namespace", metadata: [
                "open_files_limit": "\(limit)",
                "descriptors_per_namespace": "\(NamespaceSession.descriptorsPerNamespace)",
            ])
        }
        adjust(&configuration)
        return CollectionSource(configuration, logger: logger)
    }
}

extension SockDiagCollector.TCPDumps: ExpressibleByArgument {}

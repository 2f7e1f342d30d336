import ArgumentParser
import PortBudgetCore

/// How far apart `serve` and `textfile` collect across every namespace,
/// where one collection can cost seconds of CPU (docs/namespaces.md).
struct PacingOptions: ParsableArguments {
    @Option(name: .customLong("collection-cpu-budget"), parsing: .unconditional,
            help: ArgumentHelp("With --all-namespaces: the CPU collections may use on average, in CPUs (0.1 is a tenth of one core). A collection that costs more delays the next one, and namespaces outside the host-owned ones are then measured in turn; 0 turns the bound off.",
                               valueName: "cpus"))
    var collectionCPUBudget = CollectionPacing.defaultCPUBudget

    func validate() throws {
        guard collectionCPUBudget.isFinite, collectionCPUBudget >= 0 else {
            throw ValidationError("--collection-cpu-budget must be 0 (no bound) or a number of CPUs above zero, got \(collectionCPUBudget)")
        }
    }

    var pacing: CollectionPacing { CollectionPacing(cpuBudget: collectionCPUBudget) }
}

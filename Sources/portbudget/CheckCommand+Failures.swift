import Glibc
import PortBudgetCore
import PortBudgetLinux

extension CheckCommand {
    /// --watch's upper bound: a Nagios check that runs longer than an hour is a mistake.
    static let longestWatch = 3600.0

    /// With --watch, lets the loaded programs count for that long; says
    /// when they could not load (the collection then reports the collector failed).
    func watchFailures(_ source: CollectionSource) async throws {
        guard let watch else { return }
        guard source.loadedFailurePrograms != nil else { return }
        await source.markConnectionsOlderThanTheFailurePrograms()
        printError("portbudget: counting failed port allocations for \(watch) s")
        try await Task.sleep(for: .seconds(watch))
    }
}

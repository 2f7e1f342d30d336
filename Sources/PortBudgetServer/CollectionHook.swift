import PortBudgetCore

/// Something that learns of every collection and may add metric families to
/// the exposition built from it. The alert evaluator plugs in here: it keeps
/// its state from each `CollectionResult` and writes `portbudget_alerts` and
/// the like. Called once per collection, off the event loop, before any
/// scraper sharing that collection is answered.
public protocol CollectionHook: Sendable {
    /// Families written must not reuse a name already in `writer.familyNames`.
    func collected(_ collection: CollectionResult, writer: inout ExpositionWriter) async
}

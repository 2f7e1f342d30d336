/// Learns of every collection and may add metric families to the exposition
/// built from it. The alert evaluator is one: it keeps its state from each
/// collection and writes `portbudget_alerts` and the like. Called once per
/// collection, off any event loop, before anyone sharing that collection is
/// answered.
public protocol CollectionObserver: Sendable {
    /// Families written must not reuse a name already in `writer.familyNames`.
    func collected(_ collection: CollectionResult, writer: inout ExpositionWriter) async
}

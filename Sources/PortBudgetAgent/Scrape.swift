import PortBudgetCore

/// One collection and the exposition rendered from it, shared by every
/// scraper that asked while it ran.
public struct Scrape: Sendable {
    public let collection: CollectionResult
    /// Text format 0.0.4, ending with a newline.
    public let exposition: String
    /// Counts collections since start; scrapers that shared one see the same number.
    public let sequence: Int
}

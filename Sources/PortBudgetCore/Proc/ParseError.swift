/// A file the agent read did not say what the kernel documents. Carries the
/// path (relative to the procfs root) so the one-line error names it.
public struct ParseError: Error, Equatable, Sendable, CustomStringConvertible {
    public let file: String
    public let reason: String

    public init(file: String, _ reason: String) {
        self.file = file
        self.reason = reason
    }

    public var description: String { "\(file): \(reason)" }
}

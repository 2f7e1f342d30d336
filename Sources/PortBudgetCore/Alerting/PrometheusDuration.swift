/// A duration written the way Prometheus writes them: units from largest to
/// smallest, each at most once — `500ms`, `15s`, `1m30s`, `2h`, `1d`, `1w`, `1y`.
public struct PrometheusDuration: Sendable, Equatable, CustomStringConvertible {
    public let milliseconds: Int64
    public let text: String

    private static let units: [(suffix: String, ms: Int64)] = [
        ("y", 365 * 86_400_000), ("w", 7 * 86_400_000), ("d", 86_400_000), ("h", 3_600_000),
        ("m", 60_000), ("s", 1000), ("ms", 1),
    ]

    /// Parses `text`; the error is one line naming what was wrong.
    public init(parsing text: String) throws(PrometheusDurationError) {
        var rest = Substring(text)
        var total: Int64 = 0
        var nextUnit = 0
        guard !text.isEmpty else { throw PrometheusDurationError("empty duration") }
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            guard !digits.isEmpty, let value = Int64(digits) else {
                throw PrometheusDurationError("\"\(text)\" is not a duration such as 500ms, 15s or 1m30s")
            }
            rest = rest.dropFirst(digits.count)
            let letters = rest.prefix { $0.isLetter }
            guard let index = Self.units.firstIndex(where: { $0.suffix == letters }) else {
                throw PrometheusDurationError("\"\(text)\": unit \"\(letters)\" is not one of y, w, d, h, m, s, ms")
            }
            guard index >= nextUnit else {
                throw PrometheusDurationError("\"\(text)\": units must go from largest to smallest, each once")
            }
            let (product, overflow) = value.multipliedReportingOverflow(by: Self.units[index].ms)
            guard !overflow, total <= Int64.max - product else {
                throw PrometheusDurationError("\"\(text)\" is too long")
            }
            total += product
            nextUnit = index + 1
            rest = rest.dropFirst(letters.count)
        }
        milliseconds = total
        self.text = text
    }

    public var seconds: Double { Double(milliseconds) / 1000 }
    public var duration: Duration { .milliseconds(milliseconds) }
    public var description: String { text }
}

public struct PrometheusDurationError: Error, CustomStringConvertible, Equatable {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Reading an agent's /metrics answer in tests.
enum ExpositionSamples {
    /// Every sample line (comments left out).
    static func lines(_ text: String) -> [Substring] { text.split(separator: "\n").filter { !$0.hasPrefix("#") } }

    /// The value of the first sample whose line starts with `prefix`: a
    /// name, and as much of the labels as picks the series ("name " for one
    /// without labels, "name{" for any of its series).
    static func first(_ text: String, _ prefix: String) -> Double? {
        lines(text).first { $0.hasPrefix(prefix) }.flatMap { Double($0.split(separator: " ").last ?? "") }
    }
}

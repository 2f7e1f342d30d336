/// Writes the Prometheus text exposition format 0.0.4 directly: `# HELP` and
/// `# TYPE` once per family, the family's samples right after, label values
/// and help text escaped, no timestamps. The exporter's label sets change on
/// every scrape (top-N groups), so it writes text instead of keeping a registry.
///
/// Families appear in the order they are written, samples in the order given,
/// so the same input always gives the same bytes.
public struct ExpositionWriter: Sendable {
    public enum MetricType: String, Sendable { case gauge, counter, untyped }

    /// One sample: label pairs in the order they are to be printed, and the value.
    public struct Sample: Sendable, Equatable {
        public var labels: [(name: String, value: String)]
        public var value: Double

        public init(_ labels: [(name: String, value: String)] = [], _ value: Double) {
            self.labels = labels
            self.value = value
        }

        public init(_ labels: [(name: String, value: String)] = [], _ value: Int) {
            self.init(labels, Double(value))
        }

        public static func == (a: Sample, b: Sample) -> Bool {
            a.value.bitPattern == b.value.bitPattern && a.labels.elementsEqual(b.labels) { $0 == $1 }
        }
    }

    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Families in the order first written: header, then the sample lines.
    private var families: [(name: String, type: MetricType, lines: String)] = []
    private var index: [String: Int] = [:]

    /// Labels put first on every sample written while set: `netns` when one
    /// exposition covers several network namespaces. While set, writing a
    /// family again adds its samples to the family already written (the
    /// format wants each family's samples together); while empty, writing a
    /// family twice is a programming error, as it always was.
    public var commonLabels: [(name: String, value: String)] = []

    public init() {}

    /// The exposition, ending with a newline (empty when nothing was written).
    public var text: String {
        var out = ""
        for family in families { out += family.lines }
        return out
    }

    /// Names of the families written so far, so an extension can avoid
    /// writing one twice (which would make the output invalid).
    public var familyNames: Set<String> { Set(index.keys) }

    /// Writes one family. A family without samples is left out entirely: a
    /// value the kernel did not show is absent, never zero.
    public mutating func family(_ name: String, _ type: MetricType, help: String, _ samples: [Sample]) {
        precondition(Self.isValidName(name), "invalid metric name \(name)")
        guard !samples.isEmpty else { return }
        var lines = ""
        for sample in samples {
            lines += name
            let labels = commonLabels.isEmpty ? sample.labels : commonLabels + sample.labels
            if !labels.isEmpty {
                lines += "{"
                for (position, label) in labels.enumerated() {
                    precondition(Self.isValidLabelName(label.name), "invalid label name \(label.name)")
                    if position > 0 { lines += "," }
                    lines += label.name + "=\"" + Self.escapeLabelValue(label.value) + "\""
                }
                lines += "}"
            }
            lines += " " + Self.format(sample.value) + "\n"
        }
        if let existing = index[name] {
            precondition(!commonLabels.isEmpty, "metric family \(name) written twice")
            precondition(families[existing].type == type, "metric family \(name) written with two types")
            families[existing].lines += lines
            return
        }
        index[name] = families.count
        families.append((name, type, "# HELP \(name) \(Self.escapeHelp(help))\n# TYPE \(name) \(type.rawValue)\n" + lines))
    }

    /// A family with one unlabeled sample.
    public mutating func single(_ name: String, _ type: MetricType, help: String, _ value: Double) {
        family(name, type, help: help, [Sample([], value)])
    }

    public mutating func single(_ name: String, _ type: MetricType, help: String, _ value: Int) {
        single(name, type, help: help, Double(value))
    }

    /// Label values escape backslash, double quote and newline.
    public static func escapeLabelValue(_ value: String) -> String {
        guard value.contains(where: { $0 == "\\" || $0 == "\"" || $0 == "\n" }) else { return value }
        var out = ""
        out.reserveCapacity(value.utf8.count + 2)
        for ch in value {
            switch ch {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(ch)
            }
        }
        return out
    }

    /// Help text escapes backslash and newline only.
    public static func escapeHelp(_ help: String) -> String {
        guard help.contains(where: { $0 == "\\" || $0 == "\n" }) else { return help }
        var out = ""
        for ch in help {
            switch ch {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.append(ch)
            }
        }
        return out
    }

    /// Integral values print without a fraction (port counts stay readable
    /// and exact); others use Swift's shortest round-trip form, which Go's
    /// ParseFloat reads back to the same double.
    public static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`
    public static func isValidName(_ name: String) -> Bool {
        guard let first = name.utf8.first, isNameStart(first) || first == UInt8(ascii: ":") else { return false }
        return name.utf8.allSatisfy { isNameStart($0) || isDigit($0) || $0 == UInt8(ascii: ":") }
    }

    /// `[a-zA-Z_][a-zA-Z0-9_]*`, and not reserved (`__` prefix).
    public static func isValidLabelName(_ name: String) -> Bool {
        guard let first = name.utf8.first, isNameStart(first), !name.hasPrefix("__") else { return false }
        return name.utf8.allSatisfy { isNameStart($0) || isDigit($0) }
    }

    private static func isNameStart(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
            || c == UInt8(ascii: "_")
    }

    private static func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
}

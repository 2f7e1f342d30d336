/// A tiny subset of Prometheus alert templating, checked when the config is
/// read: `{{ $labels.NAME }}`, `{{ $value }}`, and `{{ $value | humanize }}`,
/// `humanizePercentage`, `humanizeDuration`. One addition of the agent's
/// own: `{{ $fix }}`, the one-line fixes of the findings that explain the
/// alerting limit (" Cause: time_wait — sysctl …"), empty when none does,
/// and `{{ $holder }}`, the limit's biggest holder (" Most held by
/// nginx.service 62%."), empty when none is known, and `{{ $netns }}`,
/// " in netns NAME" when the alert is one namespace's (`--all-namespaces`),
/// empty otherwise.
/// Anything else is an error at load time, never a silently empty annotation.
public struct AlertTemplate: Sendable, Equatable {
    enum Part: Sendable, Equatable {
        case text(String)
        case label(String)
        case value(Format)
        case fix
        case holder
        case netns
    }

    enum Format: String, Sendable { case plain, humanize, humanizePercentage, humanizeDuration }

    public struct Problem: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    let parts: [Part]
    public let source: String

    public init(_ source: String) throws {
        self.source = source
        var parts: [Part] = []
        var rest = Substring(source)
        while let open = rest.firstRange(of: "{{") {
            if open.lowerBound > rest.startIndex { parts.append(.text(String(rest[..<open.lowerBound]))) }
            guard let close = rest[open.upperBound...].firstRange(of: "}}") else {
                throw Problem(description: "unclosed {{ in \"\(source)\"")
            }
            let expression = rest[open.upperBound..<close.lowerBound].trimmingSpaces()
            parts.append(try Self.parse(expression, in: source))
            rest = rest[close.upperBound...]
        }
        if !rest.isEmpty { parts.append(.text(String(rest))) }
        self.parts = parts
    }

    static func parse(_ expression: String, in source: String) throws -> Part {
        let pieces = expression.split(separator: "|").map { String($0).trimmingSpaces() }
        if pieces == ["$fix"] { return .fix }
        if pieces == ["$holder"] { return .holder }
        if pieces == ["$netns"] { return .netns }
        if pieces.count == 1, pieces[0].hasPrefix("$labels.") {
            let name = String(pieces[0].dropFirst("$labels.".count))
            guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                throw Problem(description: "bad label reference {{ \(expression) }} in \"\(source)\"")
            }
            return .label(name)
        }
        guard pieces.first == "$value", pieces.count <= 2 else {
            throw Problem(description: "unsupported template {{ \(expression) }} in \"\(source)\" (use $labels.NAME, $value, $fix, $holder or $netns)")
        }
        guard pieces.count == 2 else { return .value(.plain) }
        guard let format = Format(rawValue: pieces[1]), format != .plain else {
            throw Problem(description: "unknown function \(pieces[1]) in \"\(source)\" (humanize, humanizePercentage, humanizeDuration)")
        }
        return .value(format)
    }

    /// `fix` is what `{{ $fix }}` renders to (see `AlertSample.fix`).
    public func render(labels: [String: String], value: Double, fix: String = "", holder: String = "") -> String {
        var out = ""
        for part in parts {
            switch part {
            case let .text(text): out += text
            case let .label(name): out += labels[name] ?? ""
            case let .value(format): out += Self.format(value, format)
            case .fix: out += fix
            case .holder: out += holder
            case .netns: out += labels["netns"].map { " in netns \($0)" } ?? ""
            }
        }
        return out
    }

    static func format(_ value: Double, _ format: Format) -> String {
        guard value.isFinite else { return value > 0 ? "+Inf" : value < 0 ? "-Inf" : "NaN" }
        switch format {
        case .plain: return PrometheusNumber.format(value)
        case .humanize:
            return value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : rounded(value, 3)
        case .humanizePercentage: return rounded(value * 100, 3) + "%"
        case .humanizeDuration:
            var seconds = Int(value.rounded())
            if seconds < 60 { return "\(seconds)s" }
            let days = seconds / 86400; seconds %= 86400
            let hours = seconds / 3600; seconds %= 3600
            let minutes = seconds / 60; seconds %= 60
            return [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
                .drop { $0.0 == 0 }.map { "\($0.0)\($0.1)" }.joined(separator: " ")
        }
    }

    /// Up to `digits` significant digits, trailing zeros dropped.
    static func rounded(_ value: Double, _ digits: Int) -> String {
        if value == 0 { return "0" }
        let magnitude = Int((abs(value)).log10Floor)
        let decimals = max(0, digits - 1 - magnitude)
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let r = (value * scale).rounded() / scale
        if decimals == 0 { return String(Int64(r)) }
        var text = String(r)
        if text.contains("e") { return text }
        while text.hasSuffix("0") { text.removeLast() }
        if text.hasSuffix(".") { text.removeLast() }
        return text
    }
}

/// Prometheus' spelling of special values.
public enum PrometheusNumber {
    public static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded() && abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}

extension Double {
    var log10Floor: Double {
        var m = 0.0
        var v = self
        while v >= 10 { v /= 10; m += 1 }
        while v < 1 { v *= 10; m -= 1 }
        return m
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}

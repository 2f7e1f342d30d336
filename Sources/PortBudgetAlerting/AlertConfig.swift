import Foundation
import PortBudgetCore
import PortBudgetYAML
import Yams

/// The evaluator's configuration (`serve --config FILE`). Without a file the
/// built-in rules apply and alerts are evaluated and exported but not sent.
public struct AlertConfig: Sendable {
    public struct Alertmanager: Sendable, Equatable {
        public var url: URL
        public var host: String
        public var port: Int
        public var timeout: Double
    }

    public var evaluationInterval: Double = 15
    public var resendInterval: Double = 60
    public var externalLabels: [String: String] = [:]
    public var alertmanagers: [Alertmanager] = []
    /// Local ports outside the ephemeral range for deliveries that cannot get
    /// an ephemeral port; nil means the 8 ports just below the range.
    public var sourcePorts: ClosedRange<UInt16>?
    public var rules: [AlertRule] = AlertRule.defaults
    /// `snat_port_range`: the NAT range SNAT groups are measured against
    /// from conntrack; nil keeps the kernel's default. Read at start only.
    public var snatPortRange: SNATPortRange?

    public init() {}

    public static let defaults = AlertConfig()

    /// The shortest `evaluation_interval` and `resend_interval` taken: each
    /// evaluation runs a full collection, so a millisecond interval would be
    /// a busy loop over the socket tables.
    public static let minimumInterval = 1.0
    /// A config file larger than this is not a config file.
    public static let maximumFileBytes = 1 << 20

    /// Reads and validates `path`; the error names the file, line and key.
    public static func load(path: String) throws -> AlertConfig {
        try parse(try readFile(path), file: path)
    }

    /// The file's text. Opened non-blocking and refused unless it is a
    /// regular file, so a FIFO or a device named by mistake is an error, not a hang.
    static func readFile(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { throw ConfigError(file: path, line: nil, "cannot read the file: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            throw ConfigError(file: path, line: nil, "cannot read the file: \(String(cString: strerror(errno)))")
        }
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw ConfigError(file: path, line: nil, "cannot read the file: not a regular file")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw ConfigError(file: path, line: nil, "cannot read the file: \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            bytes += chunk[0..<n]
            guard bytes.count <= maximumFileBytes else {
                throw ConfigError(file: path, line: nil, "larger than \(maximumFileBytes) bytes; not a portbudget config")
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    public static func parse(_ text: String, file: String) throws -> AlertConfig {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw ConfigError(file: file, line: Self.line(of: error), "not valid YAML: \(Self.firstLine(error))")
        }
        guard let root, let top = root.mapping else {
            throw ConfigError(file: file, line: root?.mark?.line, "the top level must be a mapping")
        }
        var config = AlertConfig()
        let reader = ConfigReader(file: file)
        var rulesSeen = false
        for (keyNode, value) in top {
            let key = try reader.key(keyNode)
            switch key {
            case "evaluation_interval":
                config.evaluationInterval = try reader.duration(value, key: key, atLeast: minimumInterval)
            case "resend_interval": config.resendInterval = try reader.duration(value, key: key, atLeast: minimumInterval)
            case "external_labels": config.externalLabels = try reader.labels(value, key: key)
            case "alertmanagers":
                config.alertmanagers = try reader.sequence(value, key: key).map { try reader.alertmanager($0) }
            case "delivery":
                for (k, v) in try reader.mapping(value, key: key) {
                    let name = try reader.key(k)
                    guard name == "source_ports" else { throw reader.unknown(k, name, expected: ["source_ports"]) }
                    config.sourcePorts = try reader.portRange(v, key: "delivery.source_ports")
                }
            case "snat_port_range":
                do {
                    config.snatPortRange = try SNATPortRange(parsing: try reader.string(value, key: key))
                } catch let error as SNATPortRangeError {
                    throw reader.fail(value, "snat_port_range: \(error.description)")
                }
            case "rules":
                rulesSeen = true
                config.rules = try reader.sequence(value, key: key).map { try reader.rule($0) }
            default:
                throw reader.unknown(keyNode, key, expected: ["evaluation_interval", "resend_interval", "external_labels",
                                                              "alertmanagers", "delivery", "rules", "snat_port_range"])
            }
        }
        if !rulesSeen { config.rules = AlertRule.defaults }
        var names: Set<String> = []
        for rule in config.rules where !names.insert(rule.name + "\u{0}" + rule.quantity.rawValue + "\u{0}" + rule.severity).inserted {
            throw ConfigError(file: file, line: nil, "rule \(rule.name) is defined twice with the same quantity and severity")
        }
        return config
    }

    static func line(of error: YamlError) -> Int? {
        if case let .scanner(_, _, mark, _) = error { return mark.line }
        if case let .parser(_, _, mark, _) = error { return mark.line }
        return nil
    }

    static func firstLine(_ error: Error) -> String {
        String(describing: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
    }
}

/// What only the alerting config reads: durations, labels, port ranges.
extension ConfigReader {
    func duration(_ node: Node, key: String, positive: Bool = false) throws -> Double {
        let text = try string(node, key: key)
        let value: PrometheusDuration
        do { value = try PrometheusDuration(parsing: text) } catch { throw fail(node, "\(key): \(error)") }
        if positive && value.milliseconds <= 0 { throw fail(node, "\(key) must be more than 0") }
        return value.seconds
    }

    func duration(_ node: Node, key: String, atLeast minimum: Double) throws -> Double {
        let seconds = try duration(node, key: key)
        guard seconds >= minimum else {
            throw fail(node, "\(key) must be at least \(PrometheusNumber.format(minimum))s, got \(try string(node, key: key))")
        }
        return seconds
    }

    func labels(_ node: Node, key: String) throws -> [String: String] {
        var out: [String: String] = [:]
        for (k, v) in try mapping(node, key: key) {
            let name = try self.key(k)
            guard ExpositionWriter.isValidLabelName(name), !name.hasPrefix("__") else {
                throw fail(k, "\(key): \"\(name)\" is not a valid label name")
            }
            out[name] = try string(v, key: "\(key).\(name)")
        }
        return out
    }

    func portRange(_ node: Node, key: String) throws -> ClosedRange<UInt16> {
        let text = try string(node, key: key)
        let bounds = text.split(separator: "-").map { UInt16($0.trimmingCharacters(in: .whitespaces)) }
        guard (1...2).contains(bounds.count), let low = bounds.first ?? nil, let high = bounds.last ?? nil,
              low > 0, low <= high else {
            throw fail(node, "\(key): \"\(text)\" is not a port or a range LOW-HIGH")
        }
        return low...high
    }

    func alertmanager(_ node: Node) throws -> AlertConfig.Alertmanager {
        var url: URL?
        var timeout = 10.0
        for (k, v) in try mapping(node, key: "alertmanagers[]") {
            switch try key(k) {
            case "url":
                let text = try string(v, key: "url")
                guard let parsed = URL(string: text), let scheme = parsed.scheme, ["http", "https"].contains(scheme),
                      parsed.host != nil else {
                    throw fail(v, "url \"\(text)\" is not an http:// or https:// URL")
                }
                url = parsed
            case "timeout": timeout = try duration(v, key: "timeout", positive: true)
            case let other: throw unknown(k, other, expected: ["url", "timeout"])
            }
        }
        guard let url, let host = url.host else { throw fail(node, "an alertmanager needs a url") }
        let port = url.port ?? (url.scheme == "https" ? 443 : 80)
        return .init(url: url, host: host, port: port, timeout: timeout)
    }

    func rule(_ node: Node) throws -> AlertRule {
        var name: String?, quantity: AlertRule.Quantity?, comparison: AlertRule.Comparison?
        var forSeconds = 0.0, severity = "warning", labels: [String: String] = [:]
        var annotations: [String: AlertTemplate] = [:]
        for (k, v) in try mapping(node, key: "rules[]") {
            let field = try key(k)
            switch field {
            case "alert":
                let text = try string(v, key: "alert")
                guard ExpositionWriter.isValidName(text) else {
                    throw fail(v, "alert name \"\(text)\" must be letters, digits, _ and :, not starting with a digit")
                }
                name = text
            case "when":
                let text = try string(v, key: "when")
                guard let q = AlertRule.Quantity(rawValue: text) else {
                    throw fail(v, "when: \"\(text)\" is not one of \(AlertRule.Quantity.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                quantity = q
            case "above", "below":
                guard comparison == nil else { throw fail(k, "a rule takes above or below, not both") }
                let value = try number(v, key: field)
                comparison = field == "above" ? .above(value) : .below(value)
            case "for": forSeconds = try duration(v, key: "for")
            case "severity":
                severity = try string(v, key: "severity")
                guard ["critical", "warning", "info"].contains(severity) else {
                    throw fail(v, "severity \"\(severity)\" is not critical, warning or info")
                }
            case "labels": labels = try self.labels(v, key: "labels")
            case "annotations":
                for (ak, av) in try mapping(v, key: "annotations") {
                    let annotation = try key(ak)
                    do { annotations[annotation] = try AlertTemplate(try string(av, key: "annotations.\(annotation)")) }
                    catch let problem as AlertTemplate.Problem { throw fail(av, "annotations.\(annotation): \(problem)") }
                }
            default:
                throw unknown(k, field, expected: ["alert", "when", "above", "below", "for", "severity", "labels", "annotations"])
            }
        }
        guard let name else { throw fail(node, "a rule needs alert: NAME") }
        guard let quantity else { throw fail(node, "rule \(name) needs when: QUANTITY") }
        guard let comparison else {
            throw fail(node, "rule \(name) needs \(quantity.naturalComparisonIsBelow ? "below" : "above"): THRESHOLD")
        }
        for reserved in ["alertname", "severity"] where labels[reserved] != nil {
            throw fail(node, "rule \(name): labels may not set \(reserved)")
        }
        return AlertRule(name: name, quantity: quantity, comparison: comparison, forSeconds: forSeconds,
                         severity: severity, labels: labels, annotations: annotations)
    }
}

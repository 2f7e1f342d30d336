import Yams

/// A configuration problem: file, line and what was wrong, on one line.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let line: Int?
    public let reason: String

    public init(file: String, line: Int?, _ reason: String) {
        self.file = file
        self.line = line
        self.reason = reason
    }

    public var description: String { line.map { "\(file):\($0): \(reason)" } ?? "\(file): \(reason)" }
}

/// Walks a YAML tree, turning every surprise into a `ConfigError` that names
/// the file, the line and the key. The alerting config and the web config
/// each add what only they read.
public struct ConfigReader: Sendable {
    public let file: String

    public init(file: String) {
        self.file = file
    }

    public func fail(_ node: Node, _ reason: String) -> ConfigError {
        ConfigError(file: file, line: node.mark?.line, reason)
    }

    public func unknown(_ node: Node, _ key: String, expected: [String]) -> ConfigError {
        fail(node, "unknown key \"\(key)\" (expected one of: \(expected.joined(separator: ", ")))")
    }

    public func key(_ node: Node) throws -> String {
        guard let s = node.scalar?.string else { throw fail(node, "a key must be a plain string") }
        return s
    }

    public func string(_ node: Node, key: String) throws -> String {
        guard let s = node.scalar?.string else { throw fail(node, "\(key) must be a string, got a \(kind(node))") }
        return s
    }

    public func bool(_ node: Node, key: String) throws -> Bool {
        switch node.scalar?.string {
        case "true": return true
        case "false": return false
        default: throw fail(node, "\(key) must be true or false, got \(node.scalar?.string ?? "a \(kind(node))")")
        }
    }

    public func number(_ node: Node, key: String) throws -> Double {
        guard let s = node.scalar?.string, let v = Double(s), v.isFinite else {
            throw fail(node, "\(key) must be a number, got \(node.scalar?.string ?? "a \(kind(node))")")
        }
        return v
    }

    public func mapping(_ node: Node, key: String) throws -> Node.Mapping {
        guard let m = node.mapping else { throw fail(node, "\(key) must be a mapping, got a \(kind(node))") }
        return m
    }

    public func sequence(_ node: Node, key: String) throws -> Node.Sequence {
        guard let s = node.sequence else { throw fail(node, "\(key) must be a list, got a \(kind(node))") }
        return s
    }

    public func kind(_ node: Node) -> String {
        switch node {
        case .scalar: return "scalar"
        case .mapping: return "mapping"
        case .sequence: return "list"
        case .alias: return "alias"
        }
    }
}

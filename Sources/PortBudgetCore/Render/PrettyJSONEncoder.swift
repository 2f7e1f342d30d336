#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes what Foundation's `JSONEncoder` writes with `.prettyPrinted`,
/// `.sortedKeys` and `.withoutEscapingSlashes` and its default strategies,
/// byte for byte, in about half the time. `check --all-namespaces
/// --json` encodes a report of every namespace after the collection, on one
/// thread, while nothing else runs: with `JSONEncoder` that was 5-6 ms of a
/// 70 ms run at 45 namespaces, spent mostly in casts it makes for every value
/// (is it a Date, a URL, Data?) and in a dictionary per object.
///
/// The report types hold none of the types `JSONEncoder` treats specially
/// (Date, Data, URL, Decimal; they would be encoded as their own `encode(to:)`
/// writes them); `PrettyJSONEncoderTests` holds the two encoders' bytes equal.
public struct PrettyJSONEncoder {
    /// Containers nested deeper than this are refused, as `JSONEncoder` refuses them.
    public static let maximumDepth = 512

    public init() {}

    public func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = NodeEncoder(parent: nil, key: nil)
        try value.encode(to: encoder)
        guard let node = encoder.node else {
            throw EncodingError.invalidValue(value, .init(codingPath: [], debugDescription: "Top-level \(T.self) did not encode any values."))
        }
        var writer = JSONNodeWriter()
        try writer.write(node, depth: 0)
        return writer.bytes
    }
}

/// A value before it is written: objects and arrays are boxes, since a
/// container handed out by `Encoder` is filled after it is placed.
enum JSONNode {
    case null
    case bool(Bool)
    case signed(Int64)
    case unsigned(UInt64)
    /// A finite float, already as `JSONEncoder` spells it.
    case float(String)
    case string(String)
    case object(JSONObjectNode)
    case array(JSONArrayNode)
    /// A `superEncoder()`'s slot: what it encodes, or `{}` when nothing.
    case deferred(NodeEncoder)
}

final class JSONObjectNode {
    var entries: [(key: String, value: JSONNode)] = []

    /// `JSONEncoder` keeps objects in a dictionary: a key set twice holds the last value.
    func set(_ key: String, _ value: JSONNode) {
        entries.append((key, value))
    }

    func existingObject(_ key: String) -> JSONObjectNode? {
        guard let entry = entries.last(where: { $0.key == key }), case .object(let object) = entry.value else { return nil }
        return object
    }

    func existingArray(_ key: String) -> JSONArrayNode? {
        guard let entry = entries.last(where: { $0.key == key }), case .array(let array) = entry.value else { return nil }
        return array
    }
}

final class JSONArrayNode {
    var elements: [JSONNode] = []
}

/// One `Encoder` per value that is not a primitive; it knows its parent
/// only to name the coding path in an error.
final class NodeEncoder: Encoder {
    var node: JSONNode?
    let parent: NodeEncoder?
    let key: (any CodingKey)?

    init(parent: NodeEncoder?, key: (any CodingKey)?) {
        self.parent = parent
        self.key = key
    }

    var codingPath: [any CodingKey] {
        var path: [any CodingKey] = []
        var encoder: NodeEncoder? = self
        while let current = encoder {
            if let key = current.key { path.append(key) }
            encoder = current.parent
        }
        return path.reversed()
    }

    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        let object: JSONObjectNode
        if case .object(let existing) = node {
            object = existing
        } else {
            precondition(node == nil, "a keyed container asked for after another kind of value was encoded")
            object = JSONObjectNode()
            node = .object(object)
        }
        return KeyedEncodingContainer(KeyedNodeContainer<Key>(encoder: self, object: object))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        let array: JSONArrayNode
        if case .array(let existing) = node {
            array = existing
        } else {
            precondition(node == nil, "an unkeyed container asked for after another kind of value was encoded")
            array = JSONArrayNode()
            node = .array(array)
        }
        return UnkeyedNodeContainer(encoder: self, array: array)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleValueNodeContainer(encoder: self)
    }

    /// A nested value's node: primitives as themselves, anything else through its `encode(to:)`.
    func node<T: Encodable>(for value: T, key: any CodingKey) throws -> JSONNode {
        // Arrays of primitives reach here an element at a time: no encoder
        // each. Comparing metatypes costs nothing; a cast (`as?`) searches
        // the binary's conformance records the first time for each type.
        if T.self == String.self { return .string(value as! String) }
        if T.self == Int.self { return .signed(Int64(value as! Int)) }
        if T.self == Int32.self { return .signed(Int64(value as! Int32)) }
        if T.self == Int64.self { return .signed(value as! Int64) }
        if T.self == UInt16.self { return .unsigned(UInt64(value as! UInt16)) }
        if T.self == UInt32.self { return .unsigned(UInt64(value as! UInt32)) }
        if T.self == UInt64.self { return .unsigned(value as! UInt64) }
        if T.self == Double.self { return try Self.float(value as! Double, at: self.codingPath + [key]) }
        if T.self == Bool.self { return .bool(value as! Bool) }
        let nested = NodeEncoder(parent: self, key: key)
        try value.encode(to: nested)
        return nested.node ?? .object(JSONObjectNode())
    }

    static func float<F: BinaryFloatingPoint & LosslessStringConvertible>(_ value: F, at path: @autoclosure () -> [any CodingKey]) throws -> JSONNode {
        guard value.isFinite else {
            throw EncodingError.invalidValue(value, .init(codingPath: path(), debugDescription: "Unable to encode \(F.self).\(value) directly in JSON."))
        }
        var text = value.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        return .float(text)
    }
}

/// Keys stand in for array positions in a coding path, as `JSONEncoder`'s do.
struct IndexKey: CodingKey {
    var stringValue: String { "Index \(index)" }
    var intValue: Int? { index }
    let index: Int
    init(_ index: Int) { self.index = index }
    init?(stringValue: String) { nil }
    init?(intValue: Int) { index = intValue }
}

struct SuperKey: CodingKey {
    var stringValue: String { "super" }
    var intValue: Int? { nil }
    init() {}
    init?(stringValue: String) { nil }
    init?(intValue: Int) { nil }
}

struct KeyedNodeContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let encoder: NodeEncoder
    let object: JSONObjectNode

    var codingPath: [any CodingKey] { encoder.codingPath }

    mutating func encodeNil(forKey key: Key) throws { object.set(key.stringValue, .null) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { object.set(key.stringValue, .bool(value)) }
    mutating func encode(_ value: String, forKey key: Key) throws { object.set(key.stringValue, .string(value)) }
    mutating func encode(_ value: Double, forKey key: Key) throws {
        object.set(key.stringValue, try NodeEncoder.float(value, at: codingPath + [key]))
    }
    mutating func encode(_ value: Float, forKey key: Key) throws {
        object.set(key.stringValue, try NodeEncoder.float(value, at: codingPath + [key]))
    }
    mutating func encode(_ value: Int, forKey key: Key) throws { object.set(key.stringValue, .signed(Int64(value))) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { object.set(key.stringValue, .signed(Int64(value))) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { object.set(key.stringValue, .signed(Int64(value))) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { object.set(key.stringValue, .signed(Int64(value))) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { object.set(key.stringValue, .signed(value)) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { object.set(key.stringValue, .unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { object.set(key.stringValue, .unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { object.set(key.stringValue, .unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { object.set(key.stringValue, .unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { object.set(key.stringValue, .unsigned(value)) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        object.set(key.stringValue, try encoder.node(for: value, key: key))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        let nested = object.existingObject(key.stringValue) ?? {
            let created = JSONObjectNode()
            object.set(key.stringValue, .object(created))
            return created
        }()
        return KeyedEncodingContainer(KeyedNodeContainer<NestedKey>(encoder: NodeEncoder(parent: encoder, key: key), object: nested))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let nested = object.existingArray(key.stringValue) ?? {
            let created = JSONArrayNode()
            object.set(key.stringValue, .array(created))
            return created
        }()
        return UnkeyedNodeContainer(encoder: NodeEncoder(parent: encoder, key: key), array: nested)
    }

    mutating func superEncoder() -> any Encoder { superEncoder(named: SuperKey()) }

    mutating func superEncoder(forKey key: Key) -> any Encoder { superEncoder(named: key) }

    private func superEncoder(named key: any CodingKey) -> any Encoder {
        let nested = NodeEncoder(parent: encoder, key: key)
        object.set(key.stringValue, .deferred(nested))
        return nested
    }
}

struct UnkeyedNodeContainer: UnkeyedEncodingContainer {
    let encoder: NodeEncoder
    let array: JSONArrayNode

    var codingPath: [any CodingKey] { encoder.codingPath }
    var count: Int { array.elements.count }

    private var nextKey: IndexKey { IndexKey(array.elements.count) }

    mutating func encodeNil() throws { array.elements.append(.null) }
    mutating func encode(_ value: Bool) throws { array.elements.append(.bool(value)) }
    mutating func encode(_ value: String) throws { array.elements.append(.string(value)) }
    mutating func encode(_ value: Double) throws { array.elements.append(try NodeEncoder.float(value, at: codingPath + [nextKey])) }
    mutating func encode(_ value: Float) throws { array.elements.append(try NodeEncoder.float(value, at: codingPath + [nextKey])) }
    mutating func encode(_ value: Int) throws { array.elements.append(.signed(Int64(value))) }
    mutating func encode(_ value: Int8) throws { array.elements.append(.signed(Int64(value))) }
    mutating func encode(_ value: Int16) throws { array.elements.append(.signed(Int64(value))) }
    mutating func encode(_ value: Int32) throws { array.elements.append(.signed(Int64(value))) }
    mutating func encode(_ value: Int64) throws { array.elements.append(.signed(value)) }
    mutating func encode(_ value: UInt) throws { array.elements.append(.unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt8) throws { array.elements.append(.unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt16) throws { array.elements.append(.unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt32) throws { array.elements.append(.unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt64) throws { array.elements.append(.unsigned(value)) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        array.elements.append(try encoder.node(for: value, key: nextKey))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let nested = JSONObjectNode()
        let key = nextKey
        array.elements.append(.object(nested))
        return KeyedEncodingContainer(KeyedNodeContainer<NestedKey>(encoder: NodeEncoder(parent: encoder, key: key), object: nested))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let nested = JSONArrayNode()
        let key = nextKey
        array.elements.append(.array(nested))
        return UnkeyedNodeContainer(encoder: NodeEncoder(parent: encoder, key: key), array: nested)
    }

    mutating func superEncoder() -> any Encoder {
        let nested = NodeEncoder(parent: encoder, key: nextKey)
        array.elements.append(.deferred(nested))
        return nested
    }
}

struct SingleValueNodeContainer: SingleValueEncodingContainer {
    let encoder: NodeEncoder

    var codingPath: [any CodingKey] { encoder.codingPath }

    private func set(_ node: JSONNode) {
        precondition(encoder.node == nil, "a single value encoded twice")
        encoder.node = node
    }

    mutating func encodeNil() throws { set(.null) }
    mutating func encode(_ value: Bool) throws { set(.bool(value)) }
    mutating func encode(_ value: String) throws { set(.string(value)) }
    mutating func encode(_ value: Double) throws { set(try NodeEncoder.float(value, at: codingPath)) }
    mutating func encode(_ value: Float) throws { set(try NodeEncoder.float(value, at: codingPath)) }
    mutating func encode(_ value: Int) throws { set(.signed(Int64(value))) }
    mutating func encode(_ value: Int8) throws { set(.signed(Int64(value))) }
    mutating func encode(_ value: Int16) throws { set(.signed(Int64(value))) }
    mutating func encode(_ value: Int32) throws { set(.signed(Int64(value))) }
    mutating func encode(_ value: Int64) throws { set(.signed(value)) }
    mutating func encode(_ value: UInt) throws { set(.unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt8) throws { set(.unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt16) throws { set(.unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt32) throws { set(.unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt64) throws { set(.unsigned(value)) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        precondition(encoder.node == nil, "a single value encoded twice")
        try value.encode(to: encoder)
    }
}

/// Pretty printing as `JSONEncoder` does it: two spaces an indent, `" : "`
/// between key and value, an empty array or object still opened on its own
/// line (`[\n\n  ]`), keys in the order of their UTF-8 bytes.
struct JSONNodeWriter {
    var bytes: [UInt8] = []
    private var indent = 0

    init() {
        bytes.reserveCapacity(64 << 10)
    }

    mutating func write(_ node: JSONNode, depth: Int) throws {
        switch node {
        case .null: append("null")
        case .bool(let value): append(value ? "true" : "false")
        case .signed(let value): appendDecimal(value)
        case .unsigned(let value): appendDecimal(value)
        case .float(let text): append(text)
        case .string(let text): appendQuoted(text)
        case .deferred(let encoder): try write(encoder.node ?? .object(JSONObjectNode()), depth: depth)
        case .array(let array):
            guard depth + 1 < PrettyJSONEncoder.maximumDepth else { throw tooDeep() }
            bytes.append(UInt8(ascii: "["))
            bytes.append(UInt8(ascii: "\n"))
            indent += 1
            for (index, element) in array.elements.enumerated() {
                if index > 0 {
                    bytes.append(UInt8(ascii: ","))
                    bytes.append(UInt8(ascii: "\n"))
                }
                appendIndent()
                try write(element, depth: depth + 1)
            }
            bytes.append(UInt8(ascii: "\n"))
            indent -= 1
            appendIndent()
            bytes.append(UInt8(ascii: "]"))
        case .object(let object):
            guard depth + 1 < PrettyJSONEncoder.maximumDepth else { throw tooDeep() }
            bytes.append(UInt8(ascii: "{"))
            bytes.append(UInt8(ascii: "\n"))
            indent += 1
            for (index, entry) in Self.sortedLastWins(object.entries).enumerated() {
                if index > 0 {
                    bytes.append(UInt8(ascii: ","))
                    bytes.append(UInt8(ascii: "\n"))
                }
                appendIndent()
                appendQuoted(entry.key)
                append(" : ")
                try write(entry.value, depth: depth + 1)
            }
            bytes.append(UInt8(ascii: "\n"))
            indent -= 1
            appendIndent()
            bytes.append(UInt8(ascii: "}"))
        }
    }

    /// Entries by key bytes; of a key set more than once, the last value.
    static func sortedLastWins(_ entries: [(key: String, value: JSONNode)]) -> [(key: String, value: JSONNode)] {
        var entries = entries
        if entries.contains(where: { !isASCII($0.key) }) {
            // Swift strings are equal when canonically equivalent ("é" and
            // "e\u{301}"), so JSONEncoder's dictionary holds one of them: the
            // first spelling, with the last value.
            var position: [String: Int] = [:]
            var merged: [(key: String, value: JSONNode)] = []
            for entry in entries {
                if let at = position[entry.key] {
                    merged[at].value = entry.value
                } else {
                    position[entry.key] = merged.count
                    merged.append(entry)
                }
            }
            entries = merged
        }
        let order = entries.indices.sorted { left, right in
            let order = compareBytes(entries[left].key, entries[right].key)
            return order == 0 ? left < right : order < 0
        }
        var sorted: [(key: String, value: JSONNode)] = []
        sorted.reserveCapacity(entries.count)
        for (position, index) in order.enumerated() {
            if position + 1 < order.count, compareBytes(entries[order[position + 1]].key, entries[index].key) == 0 { continue }
            sorted.append(entries[index])
        }
        return sorted
    }

    /// Reads a string's UTF-8 where it lies: Swift strings are contiguous
    /// UTF-8 but for bridged ones, which get copied.
    static func withBytes<R>(_ text: String, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        if let result = text.utf8.withContiguousStorageIfAvailable(body) { return result }
        return Array(text.utf8).withUnsafeBufferPointer(body)
    }

    static func isASCII(_ text: String) -> Bool {
        withBytes(text) { bytes in !bytes.contains { $0 >= 0x80 } }
    }

    /// memcmp order: negative, zero or positive.
    static func compareBytes(_ left: String, _ right: String) -> Int {
        withBytes(left) { a in
            withBytes(right) { b in
                let common = min(a.count, b.count)
                if common > 0, let base = a.baseAddress, let other = b.baseAddress {
                    let order = memcmp(base, other, common)
                    if order != 0 { return Int(order) }
                }
                return a.count - b.count
            }
        }
    }

    private func tooDeep() -> EncodingError {
        EncodingError.invalidValue(0, .init(codingPath: [], debugDescription: "Too many nested arrays or dictionaries."))
    }

    private mutating func appendIndent() {
        for _ in 0..<indent {
            bytes.append(UInt8(ascii: " "))
            bytes.append(UInt8(ascii: " "))
        }
    }

    private mutating func append(_ text: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    private mutating func append(_ text: String) {
        bytes.append(contentsOf: text.utf8)
    }

    private mutating func appendDecimal<I: FixedWidthInteger>(_ value: I) {
        if value == 0 {
            bytes.append(UInt8(ascii: "0"))
            return
        }
        // Digits from the right, into a buffer as wide as the widest 64-bit number.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var magnitude = value.magnitude
            var start = 20
            while magnitude > 0 {
                start -= 1
                digits[start] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: magnitude % 10)
                magnitude /= 10
            }
            if value < 0 { bytes.append(UInt8(ascii: "-")) }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: digits[start..<20]))
        }
    }

    /// `JSONEncoder`'s escapes: quote, backslash, \b \f \n \r \t, other
    /// control bytes as \u00XX; `/` and everything from 0x20 up as they are.
    private mutating func appendQuoted(_ text: String) {
        bytes.append(UInt8(ascii: "\""))
        defer { bytes.append(UInt8(ascii: "\"")) }
        let plain = Self.withBytes(text) { source in
            guard !source.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) else { return false }
            bytes.append(contentsOf: source)
            return true
        }
        if plain { return }
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(UInt8(ascii: "\\")); bytes.append(byte)
            case UInt8(ascii: "\\"): bytes.append(UInt8(ascii: "\\")); bytes.append(byte)
            case 0x08: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "b"))
            case 0x0C: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "f"))
            case 0x0A: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "n"))
            case 0x0D: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "r"))
            case 0x09: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "t"))
            case 0x00..<0x20:
                append("\\u00")
                bytes.append(Self.hexDigit(byte >> 4))
                bytes.append(Self.hexDigit(byte & 0xF))
            default: bytes.append(byte)
            }
        }
    }

    private static func hexDigit(_ value: UInt8) -> UInt8 {
        value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "a") + value - 10
    }
}

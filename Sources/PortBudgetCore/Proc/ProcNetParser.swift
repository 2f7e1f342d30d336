#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Parsers for the /proc/net statistics files. Both formats map
/// section → field → value; each error names the file and line.
///
/// The kernel prints each of these files whole, every line ending in a
/// newline, so an empty file or a last line without its newline was cut
/// short (a read that stopped early, a half-copied fixture) and is refused
/// rather than read as a file with fewer counters.
public enum ProcNetParser {
    public typealias Table = [String: [String: Int64]]

    /// Parses one /proc/net file the way its source is laid out, and
    /// requires the sections the agent reads from it
    /// (`KernelCounter.Source.requiredSections`); of snmp and netstat it
    /// keeps only the fields `KernelCounter.all` reads.
    public static func table(_ source: KernelCounter.Source, _ text: String, file: String) throws -> Table {
        switch source {
        case .sockstat, .sockstat6:
            return try sockstat(text, file: file, requiring: source.requiredSections)
        case .snmp, .netstat:
            return try pairedTable(text, file: file, requiring: source.requiredSections, kept: KeptFields.read[source])
        }
    }

    /// `/proc/net/sockstat` and `sockstat6`: lines of `SECTION: key value key value …`.
    /// Read in every namespace on every collection, so parsed as bytes.
    public static func sockstat(_ text: String, file: String, requiring required: [String] = []) throws -> Table {
        try KernelText.requireComplete(text, file: file)
        var text = text
        let table = try text.withUTF8 { bytes -> Table in
            func text(_ range: Range<Int>) -> String { String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self) }
            var table: Table = [:]
            var tokens: [Range<Int>] = []
            var lineStart = 0, index = 0
            for end in bytes.indices where bytes[end] == UInt8(ascii: "\n") {
                defer { lineStart = end + 1 }
                guard end > lineStart else { continue }
                index += 1
                Self.tokens(bytes, lineStart..<end, into: &tokens)
                guard let head = tokens.first, bytes[head.upperBound - 1] == UInt8(ascii: ":") else {
                    throw ParseError(file: file, "line \(index): no \"SECTION:\" prefix")
                }
                guard (tokens.count - 1) % 2 == 0 else {
                    throw ParseError(file: file, "line \(index): keys and values do not pair up")
                }
                var section: [String: Int64] = [:]
                for k in stride(from: 1, to: tokens.count, by: 2) {
                    guard let value = integer(bytes, tokens[k + 1]), value >= 0 || bytes[tokens[k + 1].lowerBound] == UInt8(ascii: "-") else {
                        throw ParseError(file: file, "line \(index): \(text(tokens[k])) value \"\(text(tokens[k + 1]))\" is not an integer")
                    }
                    section[text(tokens[k])] = value
                }
                table[text(head.lowerBound..<head.upperBound - 1)] = section
            }
            return table
        }
        try requireSections(required, in: table, file: file)
        return table
    }

    /// `/proc/net/snmp` and `/proc/net/netstat`: pairs of lines, a header
    /// `Section: Name1 Name2 …` then `Section: v1 v2 …`. Every line and value
    /// is checked; `keeping` (section → fields) stores only those fields:
    /// the two files hold some 300 counters and the agent reads 17, in every
    /// namespace on every collection, so the rest are checked in place and
    /// never made into strings.
    public static func pairedTable(_ text: String, file: String, requiring required: [String] = [],
                                   keeping: [String: Set<String>]? = nil) throws -> Table {
        try pairedTable(text, file: file, requiring: required, kept: keeping.map(KeptFields.init))
    }

    static func pairedTable(_ text: String, file: String, requiring required: [String], kept: KeptFields?) throws -> Table {
        try KernelText.requireComplete(text, file: file)
        var text = text
        let table = try text.withUTF8 { try pairedTable(bytes: $0, file: file, keeping: kept) }
        try requireSections(required, in: table, file: file)
        return table
    }

    /// The fields kept of each section, with their bytes to compare in place.
    struct KeptFields: Sendable {
        let sections: [String: [(name: String, bytes: [UInt8])]]

        init(_ fields: [String: Set<String>]) {
            sections = fields.mapValues { names in names.sorted().map { ($0, Array($0.utf8)) } }
        }

        /// Made once: snmp and netstat are parsed in every namespace on every collection.
        static let read: [KernelCounter.Source: KeptFields] = KernelCounter.fieldsRead.mapValues(KeptFields.init)

        /// The kept field `name` names in `section`, if it is one.
        static func field(_ bytes: UnsafeBufferPointer<UInt8>, _ name: Range<Int>, in section: [(name: String, bytes: [UInt8])]) -> String? {
            for field in section where field.bytes.count == name.count {
                let equal = field.bytes.withUnsafeBufferPointer { memcmp($0.baseAddress!, bytes.baseAddress! + name.lowerBound, name.count) == 0 }
                if equal { return field.name }
            }
            return nil
        }
    }

    private static func pairedTable(bytes: UnsafeBufferPointer<UInt8>, file: String,
                                    keeping: KeptFields?) throws -> Table {
        var lines: [Range<Int>] = []
        var lineStart = 0
        for i in bytes.indices where bytes[i] == UInt8(ascii: "\n") {
            if i > lineStart { lines.append(lineStart..<i) }
            lineStart = i + 1
        }
        guard lines.count % 2 == 0 else {
            throw ParseError(file: file, "\(lines.count) lines: header and value lines do not pair up")
        }
        func text(_ range: Range<Int>) -> String { String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self) }
        var table: Table = [:]
        var names: [Range<Int>] = [], values: [Range<Int>] = []
        var i = 0
        while i < lines.count {
            tokens(bytes, lines[i], into: &names)
            tokens(bytes, lines[i + 1], into: &values)
            guard let section = names.first, bytes[section.upperBound - 1] == UInt8(ascii: ":"),
                  let valueSection = values.first, bytes[section].elementsEqual(bytes[valueSection]) else {
                throw ParseError(file: file, "line \(i + 1): header and value lines name different sections")
            }
            let sectionName = text(section.lowerBound..<section.upperBound - 1)
            guard names.count == values.count else {
                throw ParseError(file: file, "line \(i + 2): \(names.count - 1) names but \(values.count - 1) values in \(sectionName)")
            }
            // The fields kept, as bytes to compare in place; nil keeps every one.
            let wanted = keeping.map { $0.sections[sectionName] ?? [] }
            var row: [String: Int64] = [:]
            for k in 1..<names.count {
                guard let value = integer(bytes, values[k]) else {
                    throw ParseError(file: file, "line \(i + 2): \(text(names[k])) value \"\(text(values[k]))\" is not an integer")
                }
                if let wanted {
                    if let kept = KeptFields.field(bytes, names[k], in: wanted) { row[kept] = value }
                } else {
                    row[text(names[k])] = value
                }
            }
            table[sectionName, default: [:]].merge(row) { _, new in new }
            i += 2
        }
        return table
    }

    /// One value of a sockstat file's `SECTION: key value …` line, read in
    /// place without building the table; nil when the file is cut short or
    /// the line, the key or a number is missing or malformed.
    public static func sockstatValue(_ text: String, section: String, field: String) -> Int64? {
        var text = text
        return text.withUTF8 { bytes -> Int64? in
            guard bytes.last == UInt8(ascii: "\n") else { return nil }
            var tokens: [Range<Int>] = []
            tokens.reserveCapacity(16)
            guard let line = line(bytes, startingWith: section) else { return nil }
            Self.tokens(bytes, line, into: &tokens)
            guard (tokens.count - 1) % 2 == 0 else { return nil }
            for k in stride(from: 1, to: tokens.count, by: 2) where equal(bytes, tokens[k], field) {
                return integer(bytes, tokens[k + 1])
            }
            return nil
        }
    }

    /// Values of one section of an snmp-style file (a header line of names,
    /// then one of values), read in place; nil as for `sockstatValue`.
    public static func pairedValues(_ text: String, section: String, fields: [String]) -> [Int64]? {
        var text = text
        return text.withUTF8 { bytes -> [Int64]? in
            guard bytes.last == UInt8(ascii: "\n"), let header = line(bytes, startingWith: section),
                  let values = line(bytes, startingWith: section, after: header.upperBound) else { return nil }
            var names: [Range<Int>] = [], numbers: [Range<Int>] = []
            Self.tokens(bytes, header, into: &names)
            Self.tokens(bytes, values, into: &numbers)
            guard names.count == numbers.count else { return nil }
            var out: [Int64] = []
            for field in fields {
                guard let k = names.indices.dropFirst().first(where: { equal(bytes, names[$0], field) }),
                      let value = integer(bytes, numbers[k]) else { return nil }
                out.append(value)
            }
            return out
        }
    }

    /// The first line from `start` whose first token is `section` followed by a colon.
    private static func line(_ bytes: UnsafeBufferPointer<UInt8>, startingWith section: String, after start: Int = 0) -> Range<Int>? {
        var lineStart = start
        while lineStart < bytes.count {
            var end = lineStart
            while end < bytes.count, bytes[end] != UInt8(ascii: "\n") { end += 1 }
            let prefix = section.utf8
            if end - lineStart > prefix.count, bytes[lineStart + prefix.count] == UInt8(ascii: ":"),
               equal(bytes, lineStart..<lineStart + prefix.count, section) {
                return lineStart..<end
            }
            lineStart = end + 1
        }
        return nil
    }

    private static func equal(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, _ string: String) -> Bool {
        range.count == string.utf8.count && bytes[range].elementsEqual(string.utf8)
    }

    /// The space-separated tokens of one line, as byte ranges.
    private static func tokens(_ bytes: UnsafeBufferPointer<UInt8>, _ line: Range<Int>, into out: inout [Range<Int>]) {
        out.removeAll(keepingCapacity: true)
        var start: Int? = nil
        for i in line {
            if bytes[i] == UInt8(ascii: " ") {
                if let s = start { out.append(s..<i); start = nil }
            } else if start == nil {
                start = i
            }
        }
        if let s = start { out.append(s..<line.upperBound) }
    }

    /// A decimal counter. Counters such as Tcp MaxConn are -1; huge unsigned
    /// counters wrap, so UInt64 is taken too, as its bit pattern.
    private static func integer(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Int64? {
        var i = range.lowerBound
        let negative = i < range.upperBound && bytes[i] == UInt8(ascii: "-")
        if negative || (i < range.upperBound && bytes[i] == UInt8(ascii: "+")) { i += 1 }
        guard i < range.upperBound else { return nil }
        var magnitude: UInt64 = 0
        while i < range.upperBound {
            let digit = bytes[i] &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            let (times10, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(digit))
            guard !o1, !o2 else { return nil }
            magnitude = sum
            i += 1
        }
        if negative { return magnitude <= UInt64(Int64.max) + 1 ? Int64(truncatingIfNeeded: 0 &- magnitude) : nil }
        return Int64(bitPattern: magnitude)
    }

    static func requireSections(_ required: [String], in table: Table, file: String) throws {
        if let missing = required.first(where: { table[$0] == nil }) {
            throw ParseError(file: file, "no \(missing) section")
        }
    }
}

/// The rule every file the agent reads from procfs follows: the kernel
/// writes it whole, ending in a newline.
public enum KernelText {
    /// Throws "empty" or "truncated: last line has no newline", naming the file.
    public static func requireComplete(_ text: String, file: String) throws {
        if text.isEmpty { throw ParseError(file: file, "empty") }
        if !text.hasSuffix("\n") { throw ParseError(file: file, "truncated: last line has no newline") }
    }
}

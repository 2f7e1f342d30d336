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
    /// (`KernelCounter.Source.requiredSections`).
    public static func table(_ source: KernelCounter.Source, _ text: String, file: String) throws -> Table {
        switch source {
        case .sockstat, .sockstat6:
            return try sockstat(text, file: file, requiring: source.requiredSections)
        case .snmp, .netstat:
            return try pairedTable(text, file: file, requiring: source.requiredSections)
        }
    }

    /// `/proc/net/sockstat` and `sockstat6`: lines of `SECTION: key value key value …`.
    public static func sockstat(_ text: String, file: String, requiring required: [String] = []) throws -> Table {
        try KernelText.requireComplete(text, file: file)
        var table: Table = [:]
        for (index, line) in text.split(separator: "\n").enumerated() {
            let tokens = line.split(separator: " ")
            guard let head = tokens.first, head.hasSuffix(":") else {
                throw ParseError(file: file, "line \(index + 1): no \"SECTION:\" prefix")
            }
            let pairs = tokens.dropFirst()
            guard pairs.count % 2 == 0 else {
                throw ParseError(file: file, "line \(index + 1): keys and values do not pair up")
            }
            var section: [String: Int64] = [:]
            var iterator = pairs.makeIterator()
            while let key = iterator.next(), let raw = iterator.next() {
                guard let value = Int64(raw) else {
                    throw ParseError(file: file, "line \(index + 1): \(key) value \"\(raw)\" is not an integer")
                }
                section[String(key)] = value
            }
            table[String(head.dropLast())] = section
        }
        try requireSections(required, in: table, file: file)
        return table
    }

    /// `/proc/net/snmp` and `/proc/net/netstat`: pairs of lines, a header
    /// `Section: Name1 Name2 …` then `Section: v1 v2 …`.
    public static func pairedTable(_ text: String, file: String, requiring required: [String] = []) throws -> Table {
        try KernelText.requireComplete(text, file: file)
        var table: Table = [:]
        let lines = text.split(separator: "\n")
        guard lines.count % 2 == 0 else {
            throw ParseError(file: file, "\(lines.count) lines: header and value lines do not pair up")
        }
        var i = 0
        while i < lines.count {
            let names = lines[i].split(separator: " ")
            let values = lines[i + 1].split(separator: " ")
            guard let section = names.first, section.hasSuffix(":"), values.first == section else {
                throw ParseError(file: file, "line \(i + 1): header and value lines name different sections")
            }
            guard names.count == values.count else {
                throw ParseError(file: file, "line \(i + 2): \(names.count - 1) names but \(values.count - 1) values in \(section.dropLast())")
            }
            var row: [String: Int64] = [:]
            for (name, raw) in zip(names.dropFirst(), values.dropFirst()) {
                // Counters such as Tcp MaxConn are -1; huge unsigned counters wrap, so accept UInt64 too.
                guard let value = Int64(raw) ?? UInt64(raw).map({ Int64(bitPattern: $0) }) else {
                    throw ParseError(file: file, "line \(i + 2): \(name) value \"\(raw)\" is not an integer")
                }
                row[String(name)] = value
            }
            table[String(section.dropLast()), default: [:]].merge(row) { _, new in new }
            i += 2
        }
        try requireSections(required, in: table, file: file)
        return table
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

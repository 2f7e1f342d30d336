/// Parsers for the /proc/net statistics files. Both formats map
/// section → field → value; each error names the file and line.
public enum ProcNetParser {
    public typealias Table = [String: [String: Int64]]

    /// `/proc/net/sockstat` and `sockstat6`: lines of `SECTION: key value key value …`.
    public static func sockstat(_ text: String, file: String) throws -> Table {
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
        return table
    }

    /// `/proc/net/snmp` and `/proc/net/netstat`: pairs of lines, a header
    /// `Section: Name1 Name2 …` then `Section: v1 v2 …`.
    public static func pairedTable(_ text: String, file: String) throws -> Table {
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
        return table
    }
}

import Foundation
import XCTest
@testable import PortBudgetCore

/// `check --json`'s encoder against Foundation's `JSONEncoder` with the
/// options check used: the same bytes for every report shape and for every
/// value kind Codable can hand an encoder.
final class PrettyJSONEncoderTests: XCTestCase {
    func foundation<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    func ours<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try PrettyJSONEncoder().encode(value), as: UTF8.self)
    }

    func assertSameBytes<T: Encodable>(_ value: T, file: StaticString = #filePath, line: UInt = #line) throws {
        let expected = try foundation(value)
        let got = try ours(value)
        XCTAssertEqual(got, expected, file: file, line: line)
    }

    // MARK: reports as check writes them

    let client = IPAddress("10.0.0.1")!
    let backend = IPAddress("10.0.0.2")!
    let any4 = IPAddress("0.0.0.0")!

    /// TIME_WAIT fills a destination, UDP runs high, a listener sits in a
    /// narrow range with reserved ports, holders are named, v6 too, bind
    /// before connect, SNAT and conntrack, failures seen by the programs.
    func busyReport() throws -> PortBudgetReport {
        let sysctls = PortSysctls(rangeLow: 40000, rangeHigh: 40099, reserved: [40090...40091, 50000...50000], tcpTwReuse: 2)
        var census = PortCensus(sysctls: sysctls)
        census.addTCP(InetDiagRecord(family: .v4, state: TCPState.listen, localPort: 40010, remotePort: 0, local: any4,
                                     remote: any4, interface: 0, expiresMs: 0), explicitlyBound: true)
        for port in UInt16(40011)...40069 {
            census.addTCP(InetDiagRecord(family: .v4, state: TCPState.timeWait, localPort: port, remotePort: 443, local: client,
                                         remote: backend, interface: 0, expiresMs: 30_000), explicitlyBound: false)
        }
        for port in UInt16(40070)...40079 {
            census.addTCP(InetDiagRecord(family: .v4, state: TCPState.established, localPort: port, remotePort: 5432,
                                         local: client, remote: backend, inode: UInt32(port), cgroupID: 11),
                          explicitlyBound: port.isMultiple(of: 2))
        }
        for port in UInt16(40080)...40085 {
            census.addTCP(InetDiagRecord(family: .v6, state: TCPState.established, localPort: port, remotePort: 443,
                                         local: IPAddress("fd00::1")!, remote: IPAddress("fd00::2")!, inode: UInt32(port),
                                         cgroupID: 22), explicitlyBound: false)
        }
        for port in UInt16(40000)...40059 {
            census.addUDP(InetDiagRecord(family: .v4, state: 7, localPort: port, remotePort: 53, local: client,
                                         remote: backend, inode: UInt32(port) + 1000, cgroupID: 33))
        }
        let naming = HolderNaming(cgroupRoot: "/sys/fs/cgroup", owners: [
            11: CgroupOwner(path: "/system.slice/api \"edge\".service"), 22: CgroupOwner(path: "/kubepods/pod1234/ctr"),
            33: CgroupOwner(path: "/system.slice/relay.service"),
        ], top: 2)
        var report = census.report(thresholds: Thresholds(), naming: naming)

        let nat = IPAddress("10.9.0.1")!
        var snat = SNATCensus(range: try SNATPortRange(parsing: "40000-40009"))
        for i in UInt16(0)..<10 {
            snat.add(ConntrackEntry(family: .v4, proto: 6, status: ConntrackEntry.sourceNATStatus,
                                    original: ConntrackTuple(source: client, destination: backend, sourcePort: 50000 + i, destinationPort: 8080),
                                    reply: ConntrackTuple(source: backend, destination: nat, sourcePort: 8080, destinationPort: 40000 + i)))
        }
        var statistics = ConntrackStatistics()
        statistics.insertFailed = 4
        report.conntrack = .init(entries: 12, limit: 262_144, statistics: statistics)
        report.snat = snat.report()
        let connect = FailureKind(protocolNumber: 6, call: .connect, errno: FailureErrno.eaddrnotavail)
        report.failures = PortAllocationFailures(counts: [FailureCountKey(netnsInode: 1, kind: connect, cgroupID: 11): 5,
                                                          FailureCountKey(netnsInode: 1, kind: connect, cgroupID: 99): 1],
                                                 netnsInode: 1, watched: FailureKind.alwaysWatched,
                                                 owners: [11: CgroupOwner(path: "/system.slice/api.service")])
        return report
    }

    func testABusyReportIsTheSameBytes() throws {
        let report = try busyReport()
        XCTAssertFalse(report.findings.isEmpty, "the fixture is meant to carry findings")
        XCTAssertNotNil(report.snat)
        try assertSameBytes(report)
        try assertSameBytes(report.limitingGroups(to: 1))
    }

    func testAnEmptyReportIsTheSameBytes() throws {
        let report = PortCensus(sysctls: PortSysctls(rangeLow: 32768, rangeHigh: 60999)).report(thresholds: Thresholds())
        try assertSameBytes(report)
    }

    func testEveryNamespaceIsTheSameBytes() throws {
        let busy = try busyReport()
        let quiet = PortCensus(sysctls: PortSysctls(rangeLow: 40000, rangeHigh: 40099)).report(thresholds: Thresholds())
        let all = NamespacesReport(namespaces: [
            NamespaceReport(netns: NetnsInfo(name: "host", inode: 1), report: quiet),
            NamespaceReport(netns: NetnsInfo(name: "gone", inode: 3), report: nil, error: "cannot enter: \"EPERM\"\n"),
            NamespaceReport(netns: NetnsInfo(name: "pod:abc", inode: 2, pids: [42, 43], comm: "envoy"), report: busy),
        ])
        try assertSameBytes(all)
        try assertSameBytes(all.limitingGroups(to: 1))
        try assertSameBytes(NamespacesReport(namespaces: []))
    }

    // MARK: what Codable can hand an encoder

    struct Scalars: Encodable {
        var int = Int.min, int8 = Int8.max, int16 = Int16.min, int32 = Int32.max, int64 = Int64.min
        var uint = UInt.max, uint8 = UInt8.max, uint16 = UInt16.max, uint32 = UInt32.max, uint64 = UInt64.max
        var zero = 0, negative = -7
        var doubles: [Double] = [0, -0.0, 0.1, 1.5, 3.0, 1e-7, 1.5e300, 123_456_789.0, 1e21, 2.5e-300,
                                 Double.leastNonzeroMagnitude, Double.greatestFiniteMagnitude, 0.00075, -12.25]
        var float: Float = 0.1
        var floats: [Float] = [1, 2.5, Float.greatestFiniteMagnitude]
        var yes = true, no = false
        var absent: Int? = nil
        var present: String? = "here"
        var small: [UInt16] = [1, 65535], pids: [Int32] = [42, -1], wide: [UInt64] = [UInt64.max]
    }

    func testScalarsAreSpelledAsJSONEncoderSpellsThem() throws {
        try assertSameBytes(Scalars())
        XCTAssertFalse(try ours(Scalars()).contains("absent"), "a nil encoded if present leaves its key out")
    }

    func testStringsAreEscapedAsJSONEncoderEscapesThem() throws {
        let strings = ["", "plain", "quote \" backslash \\ slash /", "\u{0}\u{1}\u{7}\u{8}\u{9}\u{a}\u{b}\u{c}\u{d}\u{e}\u{1f}\u{20}\u{7f}",
                       "10.0.0.1 → 10.0.0.2:443", "é (combining: e\u{301})", "emoji 👩‍💻", "\u{2028}\u{2029}", "</script>"]
        try assertSameBytes(strings)
        try assertSameBytes(Dictionary(uniqueKeysWithValues: strings.enumerated().map { ($0.element, $0.offset) }))
    }

    /// Keys as given, in order, repeats and all.
    struct Pairs: Encodable {
        struct Key: CodingKey {
            let stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
        let pairs: [(String, Int)]
        func encode(to encoder: Encoder) throws {
            var container = encoder.container(keyedBy: Key.self)
            for (key, value) in pairs { try container.encode(value, forKey: Key(stringValue: key)) }
        }
    }

    func testKeysSortByTheirBytesAndARepeatedKeyHoldsItsLastValue() throws {
        let keys = ["b", "a", "ab", "A", "Z", "_", "a b", "é", "z", "ä", "10", "9", ""]
        try assertSameBytes(Dictionary(uniqueKeysWithValues: keys.map { ($0, $0) }))
        try assertSameBytes(Pairs(pairs: [("b", 1), ("a", 2), ("b", 3), ("ab", 4), ("a", 5)]))
        // Canonically equivalent keys are one key to a Swift dictionary, as to JSONEncoder.
        try assertSameBytes(Pairs(pairs: [("e\u{301}", 1), ("z", 2), ("é", 3), ("a", 4)]))
        try assertSameBytes(Pairs(pairs: [("é", 1), ("e\u{301}", 2)]))
    }

    func testEmptyAndNestedContainersKeepJSONEncodersLayout() throws {
        let nested: [String: [[Int]]] = ["empty": [], "one": [[]], "two": [[1, 2], [], [3]]]
        try assertSameBytes(nested)
        try assertSameBytes([String: Int]())
        try assertSameBytes([[String: [Int]]]([[:], ["a": []]]))
        try assertSameBytes([1: "one", -2: "minus two", 10: "ten"])
        try assertSameBytes(["top": Optional<Int>.none, "set": 1])
    }

    /// Containers asked for by hand: nested, super encoders, a key set twice,
    /// a value that encodes nothing, a single value inside a keyed one.
    struct HandWritten: Encodable {
        enum Keys: String, CodingKey { case first, nested, list, again, quiet, single, superKey = "super_key" }
        struct Quiet: Encodable { func encode(to encoder: Encoder) throws {} }
        struct Single: Encodable {
            func encode(to encoder: Encoder) throws {
                var container = encoder.singleValueContainer()
                try container.encode("single")
            }
        }

        func encode(to encoder: Encoder) throws {
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(1, forKey: .first)
            var nested = container.nestedContainer(keyedBy: Keys.self, forKey: .nested)
            try nested.encode(true, forKey: .first)
            try nested.encodeNil(forKey: .again)
            var list = container.nestedUnkeyedContainer(forKey: .list)
            try list.encode(1.5)
            try list.encodeNil()
            var inner = list.nestedContainer(keyedBy: Keys.self)
            try inner.encode("x", forKey: .first)
            var innerList = list.nestedUnkeyedContainer()
            try innerList.encode(Int8(-1))
            _ = list.superEncoder()
            try Single().encode(to: list.superEncoder())
            try container.encode("old", forKey: .again)
            try container.encode("new", forKey: .again)
            try container.encode(Quiet(), forKey: .quiet)
            try container.encode(Single(), forKey: .single)
            try Single().encode(to: container.superEncoder(forKey: .superKey))
            _ = container.superEncoder()
            // A nested container asked for twice at one key is one object.
            var twice = container.nestedContainer(keyedBy: Keys.self, forKey: .nested)
            try twice.encode(2, forKey: .list)
        }
    }

    func testHandWrittenContainersAreTheSameBytes() throws {
        try assertSameBytes(HandWritten())
        try assertSameBytes([HandWritten(), HandWritten()])
    }

    func testTopLevelFragmentsAndRefusalsMatch() throws {
        try assertSameBytes("fragment")
        try assertSameBytes(42)
        try assertSameBytes(HandWritten.Single())
        XCTAssertThrowsError(try PrettyJSONEncoder().encode(HandWritten.Quiet()), "nothing at the top is refused, as JSONEncoder refuses it")
        XCTAssertThrowsError(try foundation(HandWritten.Quiet()))
        for bad in [Double.nan, .infinity, -.infinity] {
            XCTAssertThrowsError(try PrettyJSONEncoder().encode(["deep": ["x": bad]])) { error in
                guard case EncodingError.invalidValue(_, let context) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(context.codingPath.map(\.stringValue), ["deep", "x"])
            }
        }
        XCTAssertThrowsError(try PrettyJSONEncoder().encode(Nest(depth: PrettyJSONEncoder.maximumDepth)))
        XCTAssertThrowsError(try foundation(Nest(depth: PrettyJSONEncoder.maximumDepth)))
        try assertSameBytes(Nest(depth: PrettyJSONEncoder.maximumDepth - 1))
    }

    /// Arrays nested `depth` deep.
    struct Nest: Encodable {
        let depth: Int
        func encode(to encoder: Encoder) throws {
            var container = encoder.unkeyedContainer()
            if depth > 1 { try container.encode(Nest(depth: depth - 1)) }
        }
    }
}

import XCTest
@testable import PortBudgetCore

final class InetDiagFilterTests: XCTestCase {
    func testPortRangeCompilesLikeSS() {
        // {S_GE,8,20}{0,0,lo}{S_LE,8,12}{0,0,hi}: the layout ss(8) emits.
        let code = InetDiagFilter.sourcePorts(40000, 40099).bytecode
        XCTAssertEqual(code, [2, 8, 20, 0, 0, 0, 0x40, 0x9c, 3, 8, 12, 0, 0, 0, 0xa3, 0x9c])
    }

    func testEveryProgramPassesTheKernelAudit() {
        for explicit in [true, false] {
            let filter = PortCensus.tcpFilter(PortSysctls(rangeLow: 32768, rangeHigh: 60999), explicit: explicit)
            XCTAssertTrue(InetDiagBytecodeMachine.audit(filter.bytecode), "\(filter)")
        }
        XCTAssertTrue(InetDiagBytecodeMachine.audit(InetDiagFilter.not(.not(.autoBound)).bytecode))
        XCTAssertTrue(InetDiagBytecodeMachine.audit(InetDiagFilter.and(.not(.autoBound), .sourcePorts(1, 2)).bytecode))
        // The audit itself rejects what the kernel rejects.
        XCTAssertFalse(InetDiagBytecodeMachine.audit([6, 8, 8, 0]))  // yes jumps past the end
        XCTAssertFalse(InetDiagBytecodeMachine.audit([2, 8, 12, 0]))  // port op without its data word
        XCTAssertFalse(InetDiagBytecodeMachine.audit([42, 4, 8, 0]))  // unknown op
    }

    func testFiltersSelectExactlyTheSocketsTheModelNeeds() {
        let sysctls = PortSysctls(rangeLow: 40000, rangeHigh: 40099)
        let explicit = PortCensus.tcpFilter(sysctls, explicit: true).bytecode
        let auto = PortCensus.tcpFilter(sysctls, explicit: false).bytecode
        let udp = PortCensus.udpFilter(sysctls).bytecode
        for port in [UInt16(1), 39999, 40000, 40050, 40099, 40100, 65535] {
            let inRange = port >= 40000 && port <= 40099
            for autoBound in [true, false] {
                XCTAssertEqual(InetDiagBytecodeMachine.accepts(explicit, sourcePort: port, autoBound: autoBound),
                               inRange && !autoBound, "explicit \(port) \(autoBound)")
                XCTAssertEqual(InetDiagBytecodeMachine.accepts(auto, sourcePort: port, autoBound: autoBound),
                               inRange && autoBound, "auto \(port) \(autoBound)")
                XCTAssertEqual(InetDiagBytecodeMachine.accepts(udp, sourcePort: port, autoBound: autoBound), inRange)
            }
        }
    }

    func testNegationAndConjunctionCompose() {
        let notNot = InetDiagFilter.not(.not(.autoBound)).bytecode
        XCTAssertTrue(InetDiagBytecodeMachine.accepts(notNot, sourcePort: 1, autoBound: true))
        XCTAssertFalse(InetDiagBytecodeMachine.accepts(notNot, sourcePort: 1, autoBound: false))
        let notInRange = InetDiagFilter.and(.not(.sourcePorts(10, 20)), .autoBound).bytecode
        XCTAssertTrue(InetDiagBytecodeMachine.audit(notInRange))
        XCTAssertTrue(InetDiagBytecodeMachine.accepts(notInRange, sourcePort: 9, autoBound: true))
        XCTAssertFalse(InetDiagBytecodeMachine.accepts(notInRange, sourcePort: 15, autoBound: true))
        XCTAssertFalse(InetDiagBytecodeMachine.accepts(notInRange, sourcePort: 21, autoBound: false))
    }

    func testExplicitOrUnconnectedFilterForTheFirstOfTwoDumps() {
        let sysctls = PortSysctls(rangeLow: 40000, rangeHigh: 40099)
        let code = PortCensus.tcpExplicitOrUnconnectedFilter(sysctls).bytecode
        XCTAssertTrue(InetDiagBytecodeMachine.audit(code))
        let auto = PortCensus.tcpFilter(sysctls, explicit: false).bytecode
        for port in [UInt16(39999), 40000, 40050, 40099, 40100] {
            for peerPort in [UInt16(0), 1, 443] {
                for autoBound in [true, false] {
                    let inRange = port >= 40000 && port <= 40099
                    let first = InetDiagBytecodeMachine.accepts(code, sourcePort: port, destinationPort: peerPort,
                                                                autoBound: autoBound)
                    XCTAssertEqual(first, inRange && (!autoBound || peerPort == 0), "\(port) \(peerPort) \(autoBound)")
                    // With the second dump (auto-bound, connected) every in-range socket is seen once.
                    let second = InetDiagBytecodeMachine.accepts(auto, sourcePort: port, destinationPort: peerPort,
                                                                 autoBound: autoBound) && peerPort != 0
                    XCTAssertEqual(first && second, false, "seen twice: \(port) \(peerPort) \(autoBound)")
                    XCTAssertEqual(first || second, inRange, "missed: \(port) \(peerPort) \(autoBound)")
                }
            }
        }
    }

    func testDisjunctionComposes() {
        let either = InetDiagFilter.or(.sourcePortAtMost(10), .sourcePortAtLeast(20)).bytecode
        XCTAssertTrue(InetDiagBytecodeMachine.audit(either))
        XCTAssertEqual([5, 10, 15, 20, 25].map { InetDiagBytecodeMachine.accepts(either, sourcePort: $0, autoBound: true) },
                       [true, true, false, true, true])
        let nested = InetDiagFilter.and(.or(.autoBound, .destinationPortAtMost(0)), .sourcePortAtLeast(100)).bytecode
        XCTAssertTrue(InetDiagBytecodeMachine.audit(nested))
        XCTAssertTrue(InetDiagBytecodeMachine.accepts(nested, sourcePort: 100, destinationPort: 5, autoBound: true))
        XCTAssertTrue(InetDiagBytecodeMachine.accepts(nested, sourcePort: 100, destinationPort: 0, autoBound: false))
        XCTAssertFalse(InetDiagBytecodeMachine.accepts(nested, sourcePort: 100, destinationPort: 5, autoBound: false))
        XCTAssertFalse(InetDiagBytecodeMachine.accepts(nested, sourcePort: 99, destinationPort: 0, autoBound: true))
    }

    /// The one-dump census's filter takes every socket but explicitly bound
    /// connected ones in the range (so its count can be held against the
    /// namespace's), and the fallback dump takes exactly those. Where nothing
    /// is to be proved, the first takes the rest in the range only.
    func testAllButExplicitConnectedFilterAndItsComplement() {
        let sysctls = PortSysctls(rangeLow: 40000, rangeHigh: 40099)
        let first = PortCensus.tcpAllButExplicitConnectedFilter(sysctls).bytecode
        let inRangeOnly = PortCensus.tcpAllButExplicitConnectedFilter(sysctls, outOfRange: false).bytecode
        XCTAssertTrue(InetDiagBytecodeMachine.audit(inRangeOnly))
        let second = PortCensus.tcpExplicitConnectedFilter(sysctls).bytecode
        XCTAssertTrue(InetDiagBytecodeMachine.audit(first))
        XCTAssertTrue(InetDiagBytecodeMachine.audit(second))
        for port in [UInt16(1), 39999, 40000, 40050, 40099, 40100, 65535] {
            for peerPort in [UInt16(0), 1, 443] {
                for autoBound in [true, false] {
                    let inRange = port >= 40000 && port <= 40099
                    let leftOut = inRange && !autoBound && peerPort != 0
                    let taken = InetDiagBytecodeMachine.accepts(first, sourcePort: port, destinationPort: peerPort,
                                                                autoBound: autoBound)
                    let fallback = InetDiagBytecodeMachine.accepts(second, sourcePort: port, destinationPort: peerPort,
                                                                   autoBound: autoBound)
                    XCTAssertEqual(taken, !leftOut, "first: \(port) \(peerPort) \(autoBound)")
                    XCTAssertEqual(fallback, leftOut, "second: \(port) \(peerPort) \(autoBound)")
                    XCTAssertEqual(InetDiagBytecodeMachine.accepts(inRangeOnly, sourcePort: port, destinationPort: peerPort,
                                                                   autoBound: autoBound),
                                   inRange && !leftOut, "in range only: \(port) \(peerPort) \(autoBound)")
                }
            }
        }
    }
}

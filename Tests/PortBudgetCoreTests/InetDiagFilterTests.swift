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
}

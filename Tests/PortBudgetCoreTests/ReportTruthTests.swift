import Foundation
import XCTest
@testable import PortBudgetCore

/// What the report says around the numbers: severity that follows what
/// fails, verdicts that name only what fails, findings by root cause, holders
/// named for what they hold, and fixes that fit the pattern.
final class ReportTruthTests: XCTestCase {
    let client = IPAddress("10.0.0.1")!
    let small = PortSysctls(rangeLow: 40000, rangeHigh: 40099)

    func tcp(_ port: UInt16, to peer: String = "10.0.0.2", _ peerPort: UInt16 = 80, state: UInt8 = TCPState.established)
        -> InetDiagRecord {
        InetDiagRecord(family: .v4, state: state, localPort: port, remotePort: peerPort, local: client,
                       remote: IPAddress(peer)!, interface: 0, expiresMs: 0)
    }

    func report(_ build: (inout PortCensus) -> Void) -> PortBudgetReport {
        var census = PortCensus(sysctls: small)
        build(&census)
        return census.report(thresholds: Thresholds())
    }

    /// Every port held by connect()s spread over destinations (no port
    /// carries a single connection): bind is full, but only bind(addr, 0)
    /// and listen() fail, and nothing here binds — a warning, not a page.
    func testBindFullOfConnectChosenPortsIsAWarningNamingOnlyBind() {
        let r = report { c in
            for peer in 1...4 {
                for p in 40000..<40100 where (p + peer) % 4 != 0 {
                    c.addTCP(tcp(UInt16(p), to: "10.0.1.\(peer)"), explicitlyBound: false)
                }
            }
        }
        XCTAssertEqual(r.tcp.boundPorts, 100)
        XCTAssertEqual(r.bindBeforeConnectPorts, 0)
        XCTAssertEqual(r.tcpBindStatus, .warning)
        XCTAssertEqual(r.status, .warning)
        XCTAssertEqual(r.verdict, "WARNING: TCP host-wide bind at 100%, 0 of 100 ports left; at 0, bind(addr, 0) and "
                       + "listen() without a port fail with EADDRINUSE")
        // A bind() the failure collector saw fail is something here spending it: then it pages.
        var seen = r
        let bind = FailureKind(protocolNumber: 6, call: .bind, errno: 98)
        seen.failures = PortAllocationFailures(counts: [FailureCountKey(netnsInode: 1, kind: bind, cgroupID: 7): 3], netnsInode: 1,
                                               watched: [bind], owners: [:])
        XCTAssertEqual(seen.status, .critical)
    }

    /// bind(addr, 0) before connect(): one connection per port over five
    /// destinations. Then the bind limit is spent by this host's traffic
    /// (critical), and at 0 a connect() to a new destination fails too.
    func testBindBeforeConnectPagesAndNamesConnectToNewDestinationsOnlyAtZero() {
        func spread(_ count: Int) -> PortBudgetReport {
            report { c in
                for (i, p) in (40000..<(40000 + count)).enumerated() {
                    c.addTCP(tcp(UInt16(p), to: "10.0.1.\(i % 5)"), explicitlyBound: false)
                }
            }
        }
        let near = spread(96)
        XCTAssertEqual(near.status, .critical)
        XCTAssertEqual(near.verdict, "CRITICAL: TCP host-wide bind at 96%, 4 of 100 ports left; at 0, bind(addr, 0) and "
                       + "listen() without a port fail with EADDRINUSE")
        let full = spread(100)
        XCTAssertEqual(full.portsClosedToNewDestinations, 100)
        XCTAssertTrue(full.verdict.hasSuffix("and connect() to any new destination with EADDRNOTAVAIL (every port is bound "
                                             + "before connect())"), full.verdict)
    }

    /// A 4-port-wide problem in pod namespaces: the range is the root cause
    /// and leads, before the UDP advice it explains.
    func testNarrowRangeLeadsTheFindingsItExplains() {
        var census = PortCensus(sysctls: PortSysctls(rangeLow: 40000, rangeHigh: 40003))
        for p in 40000...40003 {
            census.addUDP(InetDiagRecord(family: .v4, state: 7, localPort: UInt16(p), remotePort: 0, local: IPAddress("0.0.0.0")!,
                                         remote: IPAddress("0.0.0.0")!, interface: 0, expiresMs: 0))
        }
        let findings = Diagnosis.findings(for: census.report(thresholds: Thresholds()))
        XCTAssertEqual(findings.map(\.id), [.narrowRange, .udpPressure])
    }

    /// Long-lived connections (no TIME_WAIT): more budgets lead, not keep-alive.
    /// Mostly TIME_WAIT: reuse leads.
    func testTheLeadFixFollowsConcurrencyOrChurn() throws {
        let live = report { c in for p in 40000..<40097 { c.addTCP(tcp(UInt16(p)), explicitlyBound: false) } }
        let concurrent = try XCTUnwrap(Diagnosis.findings(for: live).first { $0.id == .hotDestination })
        XCTAssertEqual(concurrent.evidence["churn"], 0)
        XCTAssertTrue(concurrent.fix.hasPrefix("Each added destination IP or port, or source IP, is a budget of its own"), concurrent.fix)
        XCTAssertFalse(concurrent.fix.contains("per second"), concurrent.fix)

        let closing = report { c in
            for p in 40000..<40097 { c.addTCP(tcp(UInt16(p), state: p < 40090 ? TCPState.timeWait : TCPState.established), explicitlyBound: false) }
        }
        let churn = try XCTUnwrap(Diagnosis.findings(for: closing).first { $0.id == .hotDestination })
        XCTAssertEqual(churn.evidence["churn"], 1)
        XCTAssertTrue(churn.fix.hasPrefix("Reuse connections to 10.0.0.2:80"), churn.fix)
    }

    /// Fifty processes holding one port each: the line says so, instead of
    /// naming one as if it held everything.
    func testTiedProcessesAreCountedNotNamedAsTheHolder() {
        var tally: [ProcessRef: Set<UInt16>] = [:]
        for i in 0..<50 { tally[ProcessRef(pid: Int32(31000 + i), comm: "nc")] = [UInt16(40000 + i)] }
        let processes = PortCensus.processes(tally, top: 3)
        XCTAssertEqual(processes.first?.tiedProcesses, 50)
        let root = Holder(id: 1, ports: 50, owner: CgroupOwner(path: "/"))
        XCTAssertEqual(CheckReportRenderer.topHolder([root], processes, of: 50, prefix: ""),
                       "/ 100% (50 processes, 1 port each: nc 31000, …)")
        var alone = tally
        alone[ProcessRef(pid: 4711, comm: "haproxy")] = Set((40100..<40120).map { UInt16($0) })
        let top = PortCensus.processes(alone, top: 3)
        XCTAssertNil(top.first?.tiedProcesses)
        XCTAssertEqual(CheckReportRenderer.topHolder(nil, top, of: 70, prefix: ""), "haproxy 4711 28.6%")
    }

    /// The bind_before_connect fix names who the report knows, or the flag.
    func testBindBeforeConnectNamesTheHoldersOrTheFlag() throws {
        var r = report { c in
            for (i, p) in (40000..<40096).enumerated() { c.addTCP(tcp(UInt16(p), to: "10.0.1.\(i % 5)"), explicitlyBound: false) }
        }
        let unnamed = try XCTUnwrap(Diagnosis.findings(for: r).first { $0.id == .bindBeforeConnect })
        XCTAssertTrue(unnamed.fix.hasSuffix("`check --processes` names the processes holding the ports."), unnamed.fix)
        r.tcp.holders = [Holder(id: 7, ports: 96, owner: CgroupOwner(path: "/system.slice/relay.service"))]
        r.tcp.processes = [ProcessHolder(pid: 4711, comm: "relay", ports: 96)]
        let named = try XCTUnwrap(Diagnosis.findings(for: r).first { $0.id == .bindBeforeConnect })
        XCTAssertTrue(named.fix.hasSuffix("Holding the most TCP ports: relay.service (96 ports); process relay 4711 (96 ports)."),
                      named.fix)
    }

    func testTheHostNamespaceIsTheHost() {
        XCTAssertEqual(NetnsInfo(name: NetnsInfo.ownName, inode: 4026531840, pids: [2], comm: "kthreadd").who, "the host")
        XCTAssertEqual(NetnsInfo(name: "pid:77 (sleep)", inode: 1, pids: [77], comm: "sleep").who, "pid 77 (sleep)")
    }
}

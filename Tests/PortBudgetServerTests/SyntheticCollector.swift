import Foundation
import PortBudgetCore

/// Stands in for the Linux collector: a census of made-up sockets, a chosen
/// delay (so concurrent scrapes really overlap) and a count of collections.
final class SyntheticCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    let delay: TimeInterval
    let censusFails: Bool

    init(delay: TimeInterval = 0, censusFails: Bool = false) {
        self.delay = delay
        self.censusFails = censusFails
    }

    var collections: Int { lock.withLock { count } }

    func collect() -> CollectionResult {
        lock.withLock { count += 1 }
        if delay > 0 { Thread.sleep(forTimeInterval: delay) }
        return Self.collection(censusFails: censusFails)
    }

    /// 12 connections from 127.0.0.1 to 127.0.0.1:8080 in a 100-port range.
    static func collection(censusFails: Bool = false) -> CollectionResult {
        var census = PortCensus(sysctls: PortSysctls(rangeLow: 40000, rangeHigh: 40099))
        let lo = IPAddress("127.0.0.1")!
        for port in UInt16(40000)..<40012 {
            census.addTCP(InetDiagRecord(family: .v4, state: TCPState.established, localPort: port, remotePort: 8080,
                                         local: lo, remote: lo), explicitlyBound: false)
        }
        let outcomes = [
            CollectorOutcome(name: "sysctl", seconds: 0.001, error: nil),
            CollectorOutcome(name: "sockdiag", seconds: 0.002, error: censusFails ? "netlink: Permission denied" : nil),
        ]
        return CollectionResult(report: censusFails ? nil : census.report(thresholds: Thresholds()), outcomes: outcomes)
    }
}

import Benchmark
import PortBudgetCore
import PortBudgetTestSupport

/// The shape of a busy proxy: 200,000 TCP sockets towards 100 destinations
/// (2,000 distinct local ports each), one in ten in TIME_WAIT.
enum Workload {
    static let sockets = 200_000
    static let groups = 100
    static let sysctls = PortSysctls(rangeLow: 32768, rangeHigh: 60999)

    static let records: [InetDiagRecord] = (0..<sockets).map { i in
        let loopback = IPAddress(v4: 0x7f00_0001)
        let state = i % 10 == 9 ? TCPState.timeWait : TCPState.established
        return InetDiagRecord(
            family: .v4, state: state, timer: state == TCPState.timeWait ? 3 : 0,
            localPort: UInt16(32768 + (i / groups) % 28232), remotePort: UInt16(20000 + i % groups),
            local: loopback, remote: loopback, cookie: UInt64(i), expiresMs: UInt32(i % 60_000),
            uid: 1000, inode: UInt32(i))
    }

    /// The records as the kernel sends them, in ~32 KiB batches (what one recvmsg returns).
    static let batches: [[UInt8]] = {
        var out: [[UInt8]] = []
        var encoder = NetlinkReplyEncoder(sequence: 7)
        for record in records {
            encoder.append(record)
            if encoder.bytes.count > 32 * 1024 - 88 {
                out.append(encoder.bytes)
                encoder = NetlinkReplyEncoder(sequence: 7)
            }
        }
        encoder.appendDone()
        out.append(encoder.bytes)
        return out
    }()
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .throughput, .mallocCountTotal, .peakMemoryResident],
        timeUnits: .milliseconds,
        warmupIterations: 2,
        scalingFactor: .one,
        maxDuration: .seconds(5),
        maxIterations: 50)

    // Decoding only: every record of a 200k-socket dump, ~32 KiB at a time.
    Benchmark("decode 200k inet_diag_msg") { benchmark in
        let batches = Workload.batches
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            var count = 0
            for batch in batches {
                _ = try batch.withUnsafeBytes { raw in
                    try InetDiagDecoder.decode(raw, sequence: 7) { record in count &+= Int(record.localPort & 1) }
                }
            }
            blackHole(count)
        }
    }

    // The group fold alone: 200k records into 100 destination groups.
    Benchmark("fold 200k TCP records into 100 groups") { benchmark in
        let records = Workload.records
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            var census = PortCensus(sysctls: Workload.sysctls)
            for record in records { census.addTCP(record, explicitlyBound: false) }
            blackHole(census)
        }
    }

    // What a collection does in user space: decode, fold, and the finished report.
    Benchmark("decode + fold + report, 200k sockets") { benchmark in
        let batches = Workload.batches
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            var census = PortCensus(sysctls: Workload.sysctls)
            for batch in batches {
                _ = try batch.withUnsafeBytes { raw in
                    try InetDiagDecoder.decode(raw, sequence: 7) { census.addTCP($0, explicitlyBound: false) }
                }
            }
            blackHole(census.report(thresholds: Thresholds()))
        }
    }
}

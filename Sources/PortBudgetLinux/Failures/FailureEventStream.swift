import CLibBPF
import Glibc
import PortBudgetCore

/// Failures as they happen, from the programs' ring buffer: while a stream
/// exists the programs emit one event per failure (bounded by
/// PB_EVENT_RING_BYTES; a full ring is counted as a drop, never blocks).
public final class FailureEventStream {
    /// The raw record the programs write (`struct pb_event`), decoded.
    public struct Record: Sendable {
        public var bootNanoseconds: UInt64
        public var cgroupID: UInt64
        public var netnsInode: UInt64
        public var pid: Int32
        public var tid: Int32
        public var kind: FailureKind
        public var comm: String
        public var destination: (address: String, port: Int)?
    }

    private let programs: FailurePrograms
    private let ring: OpaquePointer
    private let sink: Sink

    final class Sink {
        var records: [Record] = []
    }

    public init(programs: FailurePrograms) throws(FailureProgramsUnavailable) {
        self.programs = programs
        let sink = Sink()
        self.sink = sink
        let context = Unmanaged.passUnretained(sink).toOpaque()
        guard let ring = ring_buffer__new(programs.eventsFD, { context, data, size in
            guard let context, let data, size >= MemoryLayout<pb_event>.size else { return 0 }
            let sink = Unmanaged<Sink>.fromOpaque(context).takeUnretainedValue()
            sink.records.append(FailureEventStream.decode(data.loadUnaligned(as: pb_event.self)))
            return 0
        }, context, nil) else {
            throw FailureProgramsUnavailable(description: "opening the failure event ring: \(String(cString: strerror(errno)))")
        }
        self.ring = ring
        programs.emitEvents(true)
    }

    deinit {
        programs.emitEvents(false)
        ring_buffer__free(ring)
    }

    /// Waits up to `timeoutMilliseconds` for events and returns those that
    /// arrived (empty on timeout or on a signal).
    public func poll(timeoutMilliseconds: Int32) throws(FailureProgramsUnavailable) -> [Record] {
        let result = ring_buffer__poll(ring, timeoutMilliseconds)
        if result < 0 && result != -EINTR {
            throw FailureProgramsUnavailable(description: "reading the failure event ring: \(String(cString: strerror(-result)))")
        }
        defer { sink.records.removeAll(keepingCapacity: true) }
        return sink.records
    }

    static func decode(_ e: pb_event) -> Record {
        let comm = withUnsafeBytes(of: e.comm) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        var destination: (String, Int)?
        if let family = IPAddress.Family(rawValue: UInt8(truncatingIfNeeded: e.family)), e.dport != 0 {
            let address = withUnsafeBytes(of: e.daddr) { IPAddress(diagBytes: $0, offset: 0, family: family) }
            destination = (address.description, Int(e.dport))
        }
        return Record(bootNanoseconds: e.boot_ns, cgroupID: e.cgroup_id, netnsInode: UInt64(e.netns_inode),
                      pid: Int32(bitPattern: e.tgid), tid: Int32(bitPattern: e.tid),
                      kind: FailureKind(protocolNumber: e.protocol, call: FailureCall(rawValue: e.call) ?? .connect,
                                        errno: e.error),
                      comm: comm, destination: destination)
    }

    /// Seconds since the epoch of a CLOCK_BOOTTIME reading.
    public static func wallClock(bootNanoseconds: UInt64) -> Double {
        var boot = timespec()
        var real = timespec()
        clock_gettime(CLOCK_BOOTTIME, &boot)
        clock_gettime(CLOCK_REALTIME, &real)
        let bootNow = Double(boot.tv_sec) + Double(boot.tv_nsec) / 1e9
        let realNow = Double(real.tv_sec) + Double(real.tv_nsec) / 1e9
        return realNow - (bootNow - Double(bootNanoseconds) / 1e9)
    }
}

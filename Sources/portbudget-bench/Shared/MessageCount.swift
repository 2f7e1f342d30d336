import CMNL
import Glibc

/// Receives one dump's answer and counts its messages, decoding nothing: the
/// floor both benchmarks measure against.
func countMessages(_ nl: OpaquePointer, buffer: UnsafeMutableRawPointer, seq: UInt32, portid: UInt32,
                   bus: String) throws -> Int {
    var messages = 0
    while true {
        let n = mnl_socket_recvfrom(nl, buffer, FloorDump.bufferSize)
        if n < 0 {
            if pb_errno() == EINTR { continue }
            throw BenchError("recvmsg(\(bus)): errno \(pb_errno())")
        }
        let rc = mnl_cb_run(buffer, n, seq, portid, { _, data in
            data!.assumingMemoryBound(to: Int.self).pointee += 1
            return MNL_CB_OK
        }, &messages)
        if rc < 0 { throw BenchError("mnl_cb_run: errno \(pb_errno())") }
        if rc == MNL_CB_STOP { return messages }
    }
}

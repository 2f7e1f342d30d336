import CMNL  // its headers redeclare the socket constants; importing it keeps lookups of SOCK_STREAM unambiguous when another file of this target imports CMNL
import Glibc

/// A bare HTTP/1.0 GET to a loopback port: one connect, one request, read to
/// EOF. Timing it measures the server, not a client's startup.
enum HTTP {
    static func get(port: UInt16, path: String, timeout: Double = 120) throws -> (status: Int, body: String) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw BenchError("socket: errno \(errno)") }
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { throw BenchError("connect 127.0.0.1:\(port): errno \(errno)") }
        writeAll(fd, "GET \(path) HTTP/1.0\r\nHost: 127.0.0.1:\(port)\r\nUser-Agent: portbudget-bench\r\n\r\n")
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw BenchError("read from 127.0.0.1:\(port): errno \(errno)") }
            if n == 0 { break }
            out += chunk[0..<n]
        }
        let text = String(decoding: out, as: UTF8.self)
        guard text.hasPrefix("HTTP/"), let space = text.firstIndex(of: " ") else {
            throw BenchError("no HTTP answer from 127.0.0.1:\(port)")
        }
        let status = Int(text[text.index(after: space)...].prefix(3)) ?? 0
        let body = text.firstRange(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
        return (status, body)
    }

    /// A connected loopback socket that sends nothing (for the soak's abuse), or nil.
    static func openIdle(port: UInt16) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { close(fd); return nil }
        return fd
    }

    /// Retries GET until the server answers 200 or `timeout` passes.
    static func waitReady(port: UInt16, path: String, timeout: Double) -> Bool {
        let deadline = monotonicSeconds() + timeout
        while monotonicSeconds() < deadline {
            if let r = try? get(port: port, path: path, timeout: 10), r.status == 200 { return true }
            usleep(100_000)
        }
        return false
    }
}

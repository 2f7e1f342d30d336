import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The built `portbudget serve` under the abuse that took it down on main —
/// clients that pipeline without ever reading, floods of idle connections —
/// with its memory and descriptors read from /proc. It listens on host
/// loopback (no privilege needed) on a port the kernel picks.
final class ServeAbuseTests: XCTestCase {
    /// What 32 non-reading pipeliners may add to the server's peak RSS in
    /// 8 s. Each connection holds at most one answer and the requests parsed
    /// from one 2 KiB read, well under 1 MiB; measured: about 3 MiB in all.
    /// On main the same 8 s added about 140 MiB (and past 1.3 GB in 15 s
    /// against a host with more sockets).
    static let maximumGrowthBytes = 50 << 20

    func testNonReadingPipelinersNeitherGrowMemoryNorKeepDescriptors() throws {
        let server = try ServedBinary([])
        for _ in 0..<5 { XCTAssertEqual(try server.get("/metrics").status, 200) }
        let baselineRSS = try XCTUnwrap(server.statusBytes("VmRSS"))
        let baselineDescriptors = server.openDescriptors()

        // 32 connections pushing pipelined GET /metrics for 8 s, never reading an answer.
        let request = Array("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        let batch = Array([[UInt8]](repeating: request, count: 1000).joined())
        var pipeliners = try (0..<32).map { _ in try Pipeliner(port: server.port) }
        defer { for pipeliner in pipeliners { close(pipeliner.fd) } }
        let started = Date()
        var scrapedDuring: (status: Int, body: String)?
        var sentBeforeLastTwoSeconds: Int?
        while Date().timeIntervalSince(started) < 8 {
            var progressed = false
            for index in pipeliners.indices where pipeliners[index].push(batch) { progressed = true }
            if !progressed { usleep(10_000) }
            let elapsed = Date().timeIntervalSince(started)
            if elapsed > 3 && scrapedDuring == nil { scrapedDuring = try server.get("/metrics") }
            if elapsed > 6 && sentBeforeLastTwoSeconds == nil { sentBeforeLastTwoSeconds = pipeliners.map(\.sent).reduce(0, +) }
        }
        let sent = pipeliners.map(\.sent).reduce(0, +)
        let requestsSent = pipeliners.map { $0.sent / request.count }
        XCTAssertGreaterThan(requestsSent.min() ?? 0, 1000, "each pipeliner should get thousands of requests out")
        // The server stopped reading: the clients' sends stalled for good, not slowed.
        XCTAssertEqual(sent - (sentBeforeLastTwoSeconds ?? 0), 0,
                       "the server still read from clients that never read, after 6 s")
        // The stalled pipeliners hold 32 of 64 slots; a scraper still gets through.
        XCTAssertEqual(scrapedDuring?.status, 200)
        XCTAssertTrue(scrapedDuring?.body.contains("portbudget_scrape_collector_success") ?? false)
        let peak = try XCTUnwrap(server.statusBytes("VmHWM"))
        XCTAssertLessThan(peak - baselineRSS, Self.maximumGrowthBytes,
                          "peak RSS \(peak >> 20) MiB, baseline \(baselineRSS >> 20) MiB, requests sent \(sent / request.count)")

        for pipeliner in pipeliners { close(pipeliner.fd) }
        pipeliners.removeAll()
        let deadline = Date().addingTimeInterval(5)
        while server.openDescriptors() > baselineDescriptors && Date() < deadline { usleep(50_000) }
        XCTAssertLessThanOrEqual(server.openDescriptors(), baselineDescriptors, "descriptors left behind")
        XCTAssertEqual(try server.get("/metrics").status, 200)
        try server.stop()
    }

    func testIdleFloodPastMaxConnectionsDoesNotLockOutAScraper() throws {
        let server = try ServedBinary(["--max-connections", "8"])
        XCTAssertEqual(try server.get("/healthz").status, 200)
        let baselineDescriptors = server.openDescriptors()
        var silent: [Int32] = []
        defer { for fd in silent { close(fd) } }
        for _ in 0..<40 { silent.append(try Loopback.connect(port: server.port)) }
        usleep(200_000)
        let started = Date()
        let answer = try server.get("/metrics")
        XCTAssertEqual(answer.status, 200)
        XCTAssertLessThan(Date().timeIntervalSince(started), 2, "scraper waited behind idle connections")
        XCTAssertLessThanOrEqual(server.openDescriptors(), baselineDescriptors + 8, "more than 8 connections held")
        // Evictions are not worth a line each; nothing was refused.
        XCTAssertFalse(server.stderr.contains("refusing"), server.stderr)
        XCTAssertLessThanOrEqual(server.stderr.split(separator: "\n").count, 4, server.stderr)
        try server.stop()
    }
}

/// `portbudget serve --listen 127.0.0.1:0` and what /proc says about it.
private final class ServedBinary {
    let process: ExporterProcess
    let port: Int

    init(_ arguments: [String]) throws {
        process = try ExporterProcess([Binaries.portbudget, "serve", "--listen", "127.0.0.1:0"] + arguments)
        let process = self.process
        port = try process.await("the listening address in the log") { () -> Int? in
            guard let range = process.stderrText.range(of: #"127\.0\.0\.1:\d+"#, options: .regularExpression) else { return nil }
            return Int(process.stderrText[range].split(separator: ":")[1])
        }
    }

    var pid: Int32 { process.process.processIdentifier }
    var stderr: String { process.stderrText }

    /// A field of /proc/PID/status given in kB, in bytes.
    func statusBytes(_ field: String) -> Int? { ProcessProbe.statusBytes(pid, field) }

    func openDescriptors() -> Int { ProcessProbe.openDescriptors(pid) }

    func get(_ path: String) throws -> (status: Int, body: String) {
        try Loopback.get(port: port, path: path)
    }

    func stop() throws {
        let stopped = try XCTUnwrap(process.stop(SIGTERM), "serve still running 5 s after SIGTERM")
        XCTAssertEqual(stopped.status, 0, stderr)
    }
}

/// A client that sends pipelined requests without ever reading.
private struct Pipeliner {
    let fd: Int32
    var sent = 0
    var closed = false

    init(port: Int) throws {
        fd = try Loopback.connect(port: port)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    /// Sends what the socket takes now; whether anything went.
    mutating func push(_ bytes: [UInt8]) -> Bool {
        guard !closed else { return false }
        let offset = sent % bytes.count
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
        if n > 0 { sent += n; return true }
        if errno != EAGAIN && errno != EINTR { closed = true }
        return false
    }
}

/// Blocking loopback sockets, plain enough to misbehave with.
enum Loopback {
    static func connect(port: Int, timeoutSeconds: Int = 5) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure("socket: \(String(cString: strerror(errno)))") }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else {
            let error = errno
            close(fd)
            throw Failure("connect to 127.0.0.1:\(port): \(String(cString: strerror(error)))")
        }
        return fd
    }

    /// One GET with `Connection: close`; the status and body.
    static func get(port: Int, path: String) throws -> (status: Int, body: String) {
        let fd = try connect(port: port)
        defer { close(fd) }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else {
            throw Failure("send: \(String(cString: strerror(errno)))")
        }
        var data = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { data += chunk[0..<n]; continue }
            guard n == 0 else { throw Failure("recv after \(data.count) bytes: \(String(cString: strerror(errno)))") }
            break
        }
        let text = String(decoding: data, as: UTF8.self)
        guard let statusLine = text.split(separator: "\r\n").first, statusLine.split(separator: " ").count >= 2,
              let status = Int(statusLine.split(separator: " ")[1]),
              let split = text.range(of: "\r\n\r\n")
        else { throw Failure("no HTTP response in \(data.count) bytes") }
        return (status, String(text[split.upperBound...]))
    }
}

import Foundation
import Glibc
import Logging
import NIOCore
import PortBudgetAgent
import PortBudgetCore
import PortBudgetServer
import XCTest
#if canImport(Glibc)
#endif

/// Clients that misbehave on purpose — silent, trickling, pipelining without
/// reading, flooding the connection cap — against a server over loopback.
/// Every bound is shortened in the test so that each case takes a few seconds.
final class ServerHardeningTests: XCTestCase {
    var server: MetricsServer!
    var running: Task<Void, any Error>!
    var collector: SyntheticCollector!
    var client: RawHTTPClient!
    let log = CapturedLog()
    var sockets: [Int32] = []

    func start(collectionDelay: TimeInterval = 0,
               _ configure: (inout MetricsServer.Configuration) -> Void = { _ in }) async throws {
        collector = SyntheticCollector(delay: collectionDelay)
        let collector = self.collector!
        let coordinator = ScrapeCoordinator(top: 20, version: "test") { collector.collect() }
        var configuration = MetricsServer.Configuration(listen: ListenAddress(host: "127.0.0.1", port: 0))
        configure(&configuration)
        server = try await MetricsServer.bind(configuration, coordinator: coordinator, logger: log.logger)
        let server = self.server!
        running = Task { try await server.run() }
        client = RawHTTPClient(port: server.localAddress.port!)
    }

    override func tearDown() async throws {
        for fd in sockets { close(fd) }
        server?.shutdown()
        try await running?.value
    }

    /// A connection closed at teardown.
    func open() throws -> Int32 {
        let fd = try client.connect(timeoutSeconds: 5)
        sockets.append(fd)
        return fd
    }

    /// A request head that never ends: the connection is busy receiving it.
    static let unfinishedHead = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"

    func eventually(within timeout: TimeInterval, _ condition: () -> Bool) async throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return condition()
    }

    // MARK: the connection cap

    func testIdleFloodPastTheCapDoesNotLockOutAScraper() async throws {
        try await start {
            $0.maxConnections = 8
            $0.headerTimeout = .seconds(20)  // eviction, not the deadline, makes room here
        }
        var silent: [Int32] = []
        for _ in 0..<20 {
            silent.append(try open())
            try await Task.sleep(for: .milliseconds(15))
        }
        let started = Date()
        let response = try client.fetch("/metrics")
        XCTAssertEqual(response.status, 200)
        XCTAssertTrue(response.text.hasPrefix("# HELP portbudget_build_info"))
        XCTAssertLessThan(Date().timeIntervalSince(started), 2)
        // 12 silent connections made room for the last 12, the scraper for itself: the oldest 13 went.
        let closed = silent.map { RawHTTPClient.closedByServer($0, within: 0.25) }
        XCTAssertEqual(closed, Array(repeating: true, count: 13) + Array(repeating: false, count: 7))
        XCTAssertEqual(server.openConnections, 7)
        XCTAssertTrue(log.lines(containing: "refusing").isEmpty, "nothing was refused")
    }

    func testConnectionThatNeverSentAByteIsEvictedBeforeAKeepAliveOne() async throws {
        try await start {
            $0.maxConnections = 2
            $0.headerTimeout = .seconds(20)
        }
        let keepAlive = try open()
        try RawHTTPClient.send(keepAlive, RawHTTPClient.keepAliveRequest("/healthz"))
        XCTAssertEqual(try RawHTTPClient.readResponse(keepAlive).status, 200)
        // Newer than the keep-alive connection's idle start, and still the first
        // to go once silent past the fresh-connection grace (250 ms).
        let silent = try open()
        try await Task.sleep(for: .milliseconds(400))
        XCTAssertEqual(try client.fetch("/healthz").status, 200)
        XCTAssertTrue(RawHTTPClient.closedByServer(silent, within: 1))
        try RawHTTPClient.send(keepAlive, RawHTTPClient.keepAliveRequest("/healthz"))
        XCTAssertEqual(try RawHTTPClient.readResponse(keepAlive).status, 200, "keep-alive connection was evicted")
    }

    func testKeepAliveIdleConnectionIsEvictedWhenTheCapIsFull() async throws {
        try await start {
            $0.maxConnections = 2
            $0.headerTimeout = .seconds(20)
        }
        let keepAlive = try open()
        try RawHTTPClient.send(keepAlive, RawHTTPClient.keepAliveRequest("/healthz"))
        XCTAssertEqual(try RawHTTPClient.readResponse(keepAlive).status, 200)
        let busy = try open()
        try RawHTTPClient.send(busy, Self.unfinishedHead)
        try await Task.sleep(for: .milliseconds(100))
        let started = Date()
        XCTAssertEqual(try client.fetch("/healthz").status, 200)
        XCTAssertLessThan(Date().timeIntervalSince(started), 2)
        XCTAssertTrue(RawHTTPClient.closedByServer(keepAlive, within: 1), "idle keep-alive connection not evicted")
        XCTAssertFalse(RawHTTPClient.closedByServer(busy, within: 0.2), "a connection mid-request was evicted")
    }

    func testRefusalsWhenEveryConnectionIsBusyAreLoggedOncePerInterval() async throws {
        try await start {
            $0.maxConnections = 2
            $0.headerTimeout = .seconds(20)
            $0.refusalLogInterval = .seconds(1)
        }
        var busy: [Int32] = []
        for _ in 0..<2 {
            busy.append(try open())
            try RawHTTPClient.send(busy.last!, Self.unfinishedHead)
        }
        try await Task.sleep(for: .milliseconds(150))
        let burstStarted = Date()
        for _ in 0..<30 {
            let fd = try client.connect(timeoutSeconds: 5)
            let refused = RawHTTPClient.closedByServer(fd, within: 2)
            close(fd)
            XCTAssertTrue(refused, "a connection beyond the cap was left open")
        }
        let burstSeconds = Date().timeIntervalSince(burstStarted)
        func refusals() -> [CapturedLog.Line] { log.lines(containing: "refusing") }
        if burstSeconds < 0.9 { XCTAssertEqual(refusals().count, 1, "\(refusals().map(\.message))") }
        // The interval's end reports the rest as a count; every refusal is accounted for.
        let allCounted = try await eventually(within: 3) {
            refusals().reduce(0) { $0 + (Int($1.metadata["repeated"]?.description ?? "1") ?? 0) } == 30
        }
        XCTAssertTrue(allCounted, "\(refusals().map(\.message))")
        XCTAssertLessThanOrEqual(refusals().count, 2 + Int(burstSeconds))
        XCTAssertEqual(refusals().first?.level, .warning)
        // A quiet interval closes the window: the next refusal is logged at once.
        try await Task.sleep(for: .milliseconds(2200))
        let before = refusals().count
        let fd = try client.connect(timeoutSeconds: 5)
        XCTAssertTrue(RawHTTPClient.closedByServer(fd, within: 2))
        close(fd)
        let loggedAtOnce = try await eventually(within: 0.5) { refusals().count == before + 1 }
        XCTAssertTrue(loggedAtOnce, "refusal after a quiet interval not logged at once")
        // A busy connection leaving makes room again.
        close(busy[0])
        sockets.removeAll { $0 == busy[0] }
        let roomMade = try await eventually(within: 2) { self.server.openConnections == 1 }
        XCTAssertTrue(roomMade)
        XCTAssertEqual(try client.fetch("/healthz").status, 200)
    }

    // MARK: deadlines

    func testHeaderDeadlineClosesSilentAndTricklingConnections() async throws {
        try await start { $0.headerTimeout = .seconds(1) }
        let silent = try open()
        let trickler = try open()
        let started = Date()
        let closedAfter = trickle(trickler, bytesPerSecond: 4)
        let seconds = try XCTUnwrap(closedAfter, "a client sending 4 bytes/s was never cut off")
        XCTAssertGreaterThan(seconds, 0.8)
        XCTAssertLessThan(seconds, 2.5)
        XCTAssertTrue(RawHTTPClient.closedByServer(silent, within: 0.5), "silent connection outlived the deadline")
        XCTAssertLessThan(Date().timeIntervalSince(started), 3)
        XCTAssertEqual(collector.collections, 0)
    }

    /// Idle between requests may last; the next request's first byte starts the header deadline.
    func testKeepAliveConnectionMayIdleButNotTrickle() async throws {
        try await start { $0.headerTimeout = .seconds(1) }
        let fd = try open()
        try RawHTTPClient.send(fd, RawHTTPClient.keepAliveRequest("/healthz"))
        XCTAssertEqual(try RawHTTPClient.readResponse(fd).status, 200)
        XCTAssertFalse(RawHTTPClient.closedByServer(fd, within: 1.5), "idle keep-alive closed by the header deadline")
        let seconds = try XCTUnwrap(trickle(fd, bytesPerSecond: 4), "trickling keep-alive client never cut off")
        XCTAssertGreaterThan(seconds, 0.8)
        XCTAssertLessThan(seconds, 2.5)
    }

    /// Sends a request one byte at a time; the seconds until the server
    /// closed the connection, nil if the whole request went out.
    func trickle(_ fd: Int32, bytesPerSecond: Double) -> TimeInterval? {
        let started = Date()
        let request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: one byte at a time\r\n\r\n"
        for byte in request.utf8 {
            var one = byte
            guard send(fd, &one, 1, Int32(MSG_NOSIGNAL)) == 1 else { return Date().timeIntervalSince(started) }
            if RawHTTPClient.closedByServer(fd, within: 1 / bytesPerSecond) { return Date().timeIntervalSince(started) }
        }
        return nil
    }

    func testPipelinerThatNeverReadsIsStoppedAndClosedAfterTheWriteDeadline() async throws {
        try await start { $0.writeTimeout = .seconds(1) }
        let fd = try open()
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        let one = Array(RawHTTPClient.keepAliveRequest("/metrics", headers: ["X-Padding": String(repeating: "p", count: 4000)]).utf8)
        // 40 MB in all, far more than the kernel buffers between the two ends hold.
        let requests = 10_000
        var sent = 0
        var lastProgress = Date()
        var sendError: Int32 = 0
        // Send until the server stops taking bytes for a second (or closes).
        while sent < one.count * requests && Date().timeIntervalSince(lastProgress) < 1 {
            let offset = sent % one.count
            let n = one.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                sent += n
                lastProgress = Date()
            } else if errno == EAGAIN {
                usleep(10_000)
            } else {
                sendError = errno
                break
            }
        }
        let requestsSent = sent / one.count
        XCTAssertLessThan(requestsSent, requests / 2, "the server kept reading from a client that never reads")
        // Answers stop when the client's buffers are full, and the connection is closed for it.
        let closed = try await eventually(within: 4) { self.server.openConnections == 0 }
        XCTAssertTrue(closed, "non-reading pipeliner still connected (send error \(sendError))")
        let answered = collector.collections
        XCTAssertLessThan(answered, requestsSent, "every request sent was answered: nothing held back")
        try await Task.sleep(for: .milliseconds(300))
        XCTAssertEqual(collector.collections, answered, "still answering after the close")
        XCTAssertEqual(try client.fetch("/metrics").status, 200)
        XCTAssertTrue(RawHTTPClient.closedByServer(fd, within: 1))
    }

    func testPipelinedRequestsBeyondTheBoundAreAllAnsweredInOrder() async throws {
        try await start { $0.maxPipelinedRequests = 2 }
        let fd = try open()
        let paths = (0..<20).map { ["/healthz", "/nope", "/metrics"][$0 % 3] }
        // Every third request asks for gzip: the compressor must pair each answer with its request.
        var text = ""
        for (index, path) in paths.enumerated() {
            text += RawHTTPClient.keepAliveRequest(path, headers: index % 3 == 2 && index % 2 == 0 ? ["Accept-Encoding": "gzip"] : [:])
        }
        text += RawHTTPClient.request("GET", "/healthz")
        try RawHTTPClient.send(fd, text)
        var answers: [RawHTTPClient.Response] = []
        for _ in 0...paths.count { answers.append(try RawHTTPClient.readResponse(fd)) }
        XCTAssertEqual(answers.map(\.status), paths.map { $0 == "/nope" ? 404 : 200 } + [200])
        for (index, answer) in answers.enumerated() where index < paths.count {
            let gzip = index % 3 == 2 && index % 2 == 0
            XCTAssertEqual(answer.headers["content-encoding"], gzip ? "gzip" : nil, "answer \(index)")
        }
        XCTAssertEqual(answers.last?.text, "ok\n")
        XCTAssertTrue(RawHTTPClient.closedByServer(fd, within: 2), "Connection: close was not honoured")
    }

    /// Requests beyond the bound stay in the kernel: the server reads one
    /// `readChunkBytes` chunk, finds more than `maxPipelinedRequests` waiting
    /// in it, and reads nothing more until they are answered.
    func testReadingStopsAtThePipelineBound() async throws {
        try await start(collectionDelay: 0.2) {
            $0.maxPipelinedRequests = 1
            $0.readChunkBytes = 2048
        }
        let fd = try open()
        let request = RawHTTPClient.keepAliveRequest("/metrics", headers: ["X-Padding": String(repeating: "p", count: 450)])
        try RawHTTPClient.send(fd, String(repeating: request, count: 10))
        try await Task.sleep(for: .milliseconds(100))
        let accepted = try XCTUnwrap(try acceptedSocket(for: fd))
        var unread: Int32 = 0
        XCTAssertEqual(ioctl(accepted, UInt(FIONREAD), &unread), 0)
        XCTAssertEqual(Int(unread), request.utf8.count * 10 - 2048, "the server read more than one chunk")
        for index in 0..<10 {
            XCTAssertEqual(try RawHTTPClient.readResponse(fd).status, 200, "answer \(index)")
        }
        XCTAssertEqual(collector.collections, 10)
    }

    func testOversizedBodyClosesTheConnectionUnanswered() async throws {
        try await start()
        let fd = try open()
        try? RawHTTPClient.send(fd, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n"
                                    + String(repeating: "b", count: 4096))
        let answer = RawHTTPClient.readToEnd(fd)
        XCTAssertTrue(answer.data.isEmpty, "an oversized body was answered")
        XCTAssertNotEqual(answer.error, EAGAIN, "connection left open")
        XCTAssertEqual(collector.collections, 0)
    }

    // MARK: odd requests

    func testConnectIsAnsweredWith405AndClosed() async throws {
        try await start()
        for extra in ["", "Accept-Encoding: gzip\r\n"] {
            let fd = try open()
            try RawHTTPClient.send(fd, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\(extra)\r\n")
            let started = Date()
            let answer = RawHTTPClient.readToEnd(fd)
            XCTAssertEqual(answer.error, 0, "connection left open after CONNECT")
            XCTAssertLessThan(Date().timeIntervalSince(started), 2)
            let response = try RawHTTPClient.parse(answer.data)
            XCTAssertEqual(response.status, 405)
            XCTAssertEqual(response.headers["content-length"], "0")
            XCTAssertEqual(response.headers["allow"], "GET, HEAD")
            XCTAssertEqual(response.headers["connection"], "close")
            XCTAssertNil(response.headers["content-encoding"])
            XCTAssertTrue(response.body.isEmpty)
        }
    }

    func testAbsoluteFormRequestTargetIsRoutedByItsPath() async throws {
        try await start()
        let port = server.localAddress.port!
        let metrics = try client.fetch("http://127.0.0.1:\(port)/metrics")
        XCTAssertEqual(metrics.status, 200)
        XCTAssertTrue(metrics.text.contains("portbudget_tcp_group_ports_used"))
        XCTAssertEqual(try client.fetch("http://localhost/healthz?verbose=1").text, "ok\n")
        XCTAssertEqual(try client.fetch("http://localhost:\(port)").headers["content-type"], "text/html; charset=utf-8")
        XCTAssertEqual(try client.fetch("http://localhost/metrics/extra").status, 404)
        XCTAssertEqual(try client.fetch("/healthz?next=http://x/metrics").text, "ok\n")
    }

    // MARK: socket options

    /// The accepted socket itself, found among this process's descriptors:
    /// TCP_NODELAY set at the TCP level, and SO_DEBUG (the same number at
    /// SOL_SOCKET, which needs privilege) not set.
    func testAcceptedSocketHasTCPNoDelayAndNotSODebug() async throws {
        try await start()
        let fd = try open()
        try RawHTTPClient.send(fd, RawHTTPClient.keepAliveRequest("/healthz"))
        XCTAssertEqual(try RawHTTPClient.readResponse(fd).status, 200)
        let accepted = try XCTUnwrap(try acceptedSocket(for: fd), "the accepted socket is not among /proc/self/fd")
        XCTAssertEqual(Self.option(accepted, Int32(IPPROTO_TCP), TCP_NODELAY), 1, "TCP_NODELAY not set")
        XCTAssertEqual(Self.option(accepted, SOL_SOCKET, SO_DEBUG), 0, "SO_DEBUG set instead of TCP_NODELAY")
    }

    /// The server's end of the client socket `fd`: the server runs in this
    /// process, so its descriptor is one of ours.
    func acceptedSocket(for fd: Int32) throws -> Int32? {
        guard let clientPort = Self.ports(of: fd)?.local else { return nil }
        let serverPort = UInt16(server.localAddress.port!)
        for name in try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            if let candidate = Int32(name), let ports = Self.ports(of: candidate), ports == (serverPort, clientPort) {
                return candidate
            }
        }
        return nil
    }

    static func ports(of fd: Int32) -> (local: UInt16, peer: UInt16)? {
        var local = sockaddr_in(), peer = sockaddr_in()
        var localLength = socklen_t(MemoryLayout<sockaddr_in>.size), peerLength = localLength
        let ok = withUnsafeMutablePointer(to: &local) { localPointer in
            withUnsafeMutablePointer(to: &peer) { peerPointer in
                localPointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &localLength) } == 0
                    && peerPointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &peerLength) } == 0
            }
        }
        guard ok, local.sin_family == sa_family_t(AF_INET) else { return nil }
        return (UInt16(bigEndian: local.sin_port), UInt16(bigEndian: peer.sin_port))
    }

    static func option(_ fd: Int32, _ level: Int32, _ name: Int32) -> Int32? {
        var value: Int32 = -1
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(fd, level, name, &value, &length) == 0 ? value : nil
    }
}

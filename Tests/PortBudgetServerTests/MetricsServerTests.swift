import Foundation
import Glibc
import Logging
import NIOCore
import PortBudgetAgent
import PortBudgetCore
import PortBudgetServer
import ServiceLifecycle
import XCTest
#if canImport(Glibc)
#endif

/// The HTTP side over real loopback sockets, with a synthetic collector.
final class MetricsServerTests: XCTestCase {
    var server: MetricsServer!
    var running: Task<Void, any Error>!
    var collector: SyntheticCollector!
    var client: RawHTTPClient!

    func start(delay: TimeInterval = 0, censusFails: Bool = false,
               configure: (inout MetricsServer.Configuration) -> Void = { _ in }) async throws {
        collector = SyntheticCollector(delay: delay, censusFails: censusFails)
        let collector = self.collector!
        let coordinator = ScrapeCoordinator(top: 20, version: "test") { collector.collect() }
        var configuration = MetricsServer.Configuration(listen: ListenAddress(host: "127.0.0.1", port: 0))
        configure(&configuration)
        server = try await MetricsServer.bind(configuration, coordinator: coordinator,
                                              logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        let server = self.server!
        running = Task { try await server.run() }
        client = RawHTTPClient(port: server.localAddress.port!)
    }

    override func tearDown() async throws {
        server?.shutdown()
        try await running?.value
    }

    func testMetricsIsTextFormat004() async throws {
        try await start()
        let response = try client.fetch("/metrics")
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        XCTAssertNil(response.headers["content-encoding"])
        XCTAssertEqual(response.text, MetricsExposition.render(SyntheticCollector.collection(), top: 20, version: "test"))
        XCTAssertTrue(response.text.contains(
            #"portbudget_tcp_group_ports_used{local_ip="127.0.0.1",peer_ip="127.0.0.1",peer_port="8080"} 12"#))
    }

    func testGzipWhenAskedDecodesToTheSameBody() async throws {
        try await start()
        let plain = try client.fetch("/metrics")
        let zipped = try client.fetch("/metrics", headers: ["Accept-Encoding": "gzip"])
        XCTAssertEqual(zipped.status, 200)
        XCTAssertEqual(zipped.headers["content-encoding"], "gzip")
        XCTAssertEqual(zipped.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        XCTAssertLessThan(zipped.body.count, plain.body.count)
        XCTAssertEqual(try RawHTTPClient.gunzip(zipped.body), plain.body)
    }

    func testLandingPageHealthzAndErrors() async throws {
        try await start()
        let landing = try client.fetch("/")
        XCTAssertEqual(landing.status, 200)
        XCTAssertEqual(landing.headers["content-type"], "text/html; charset=utf-8")
        XCTAssertTrue(landing.text.contains(#"<a href="/metrics">"#))
        let health = try client.fetch("/healthz")
        XCTAssertEqual(health.status, 200)
        XCTAssertEqual(health.text, "ok\n")
        XCTAssertEqual(try client.fetch("/metrics/extra").status, 404)
        XCTAssertEqual(try client.fetch("/favicon.ico").status, 404)
        let post = try client.fetch("/metrics", method: "POST")
        XCTAssertEqual(post.status, 405)
        XCTAssertEqual(post.headers["allow"], "GET, HEAD")
        let head = try client.fetch("/metrics", method: "HEAD")
        XCTAssertEqual(head.status, 200)
        XCTAssertTrue(head.body.isEmpty)
        XCTAssertEqual(try client.fetch("/metrics?format=x").status, 200, "query strings do not change the route")
        XCTAssertEqual(collector.collections, 2, "only GET and HEAD /metrics collect")
    }

    func testFiftyConcurrentScrapesAllSucceedWithFewerCollections() async throws {
        try await start(delay: 0.5)
        // Send every request before reading any answer, so all 50 are in flight together.
        var sockets: [Int32] = []
        for _ in 0..<50 {
            let fd = try client.connect()
            try RawHTTPClient.send(fd, RawHTTPClient.request("GET", "/metrics", headers: ["Accept-Encoding": "gzip"]))
            sockets.append(fd)
        }
        var statuses: [Int] = []
        for fd in sockets {
            let response = try RawHTTPClient.parse(RawHTTPClient.readToEnd(fd).data)
            statuses.append(response.status)
            let body = String(decoding: try RawHTTPClient.gunzip(response.body), as: UTF8.self)
            XCTAssertTrue(body.hasPrefix("# HELP portbudget_build_info"))
            close(fd)
        }
        XCTAssertEqual(statuses, Array(repeating: 200, count: 50))
        XCTAssertLessThan(collector.collections, 50)
        XCTAssertLessThanOrEqual(collector.collections, 5, "50 requests sent within one 0.5 s collection")
    }

    /// A failed census answers 200 with the collector marked failed and no port numbers at all.
    func testFailedCensusIsReportedNotInvented() async throws {
        try await start(censusFails: true)
        let response = try client.fetch("/metrics")
        XCTAssertEqual(response.status, 200)
        XCTAssertTrue(response.text.contains(#"portbudget_scrape_collector_success{collector="sockdiag"} 0"#))
        XCTAssertFalse(response.text.contains("portbudget_tcp_"))
        XCTAssertFalse(response.text.contains("portbudget_ports_usable"))
    }

    func testOversizedRequestHeadIsRejected() async throws {
        try await start { $0.maxHeaderBytes = 4096 }
        let fd = try client.connect()
        defer { close(fd) }
        try? RawHTTPClient.send(fd, RawHTTPClient.request("GET", "/metrics", headers: ["X-Big": String(repeating: "a", count: 16384)]))
        let answer = RawHTTPClient.readToEnd(fd)
        if !answer.data.isEmpty { XCTAssertEqual(try RawHTTPClient.parse(answer.data).status, 400) }
        XCTAssertEqual(collector.collections, 0)
    }

    func testSlowRequestIsCutOffAtTheDeadline() async throws {
        try await start { $0.headerTimeout = .milliseconds(300) }
        let fd = try client.connect(timeoutSeconds: 5)
        defer { close(fd) }
        let started = Date()
        try RawHTTPClient.send(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\n")
        let answer = RawHTTPClient.readToEnd(fd)
        XCTAssertEqual(answer.error, 0, "connection should be closed by the server")
        XCTAssertTrue(answer.data.isEmpty)
        XCTAssertLessThan(Date().timeIntervalSince(started), 3)
    }

    func testIdleKeepAliveConnectionIsClosed() async throws {
        try await start { $0.idleTimeout = .milliseconds(300) }
        let fd = try client.connect(timeoutSeconds: 5)
        defer { close(fd) }
        try RawHTTPClient.send(fd, RawHTTPClient.keepAliveRequest("/healthz"))
        XCTAssertEqual(try RawHTTPClient.readResponse(fd).status, 200)
        let started = Date()
        let answer = RawHTTPClient.readToEnd(fd)
        XCTAssertEqual(answer.error, 0)
        XCTAssertTrue(answer.data.isEmpty)
        XCTAssertLessThan(Date().timeIntervalSince(started), 3)
    }

    /// SIGTERM reaches the server as graceful shutdown through its ServiceGroup.
    func testGracefulShutdownEndsTheServiceGroupPromptly() async throws {
        let coordinator = ScrapeCoordinator(top: 20, version: "test") { SyntheticCollector.collection() }
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        let server = try await MetricsServer.bind(.init(listen: ListenAddress(host: "127.0.0.1", port: 0)),
                                                  coordinator: coordinator, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [server], logger: logger))
        let run = Task { try await group.run() }
        let client = RawHTTPClient(port: server.localAddress.port!)
        // A keep-alive connection left open must not hold the shutdown up.
        let idle = try client.connect()
        defer { close(idle) }
        XCTAssertEqual(try client.fetch("/healthz").status, 200)
        let started = Date()
        await group.triggerGracefulShutdown()
        try await run.value
        XCTAssertLessThan(Date().timeIntervalSince(started), 4)
        XCTAssertThrowsError(try client.fetch("/healthz"), "still accepting after shutdown")
    }
}

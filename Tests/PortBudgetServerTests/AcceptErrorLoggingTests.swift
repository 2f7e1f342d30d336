import Foundation
import NIOCore
import NIOPosix
@testable import PortBudgetServer
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A connection whose setup fails is closed by NIO's accept handler, which
/// reports the error only down the server pipeline; on main nothing was
/// there, so every connection was reset without a word. The failure here is
/// a TCP option no kernel knows, which fails for root too, the way SO_DEBUG
/// failed for an unprivileged server.
final class AcceptErrorLoggingTests: XCTestCase {
    func testFailedChildSetupIsLoggedOncePerInterval() async throws {
        let log = CapturedLog()
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(.tcpOption(.init(rawValue: 0x7fff)), value: 1)
            .bind(host: "127.0.0.1", port: 0).get()
        defer { server.close(promise: nil) }
        try await MetricsServer.logAcceptErrors(of: server, interval: .milliseconds(500), logger: log.logger)
        let client = RawHTTPClient(port: server.localAddress!.port!)
        for _ in 0..<5 {
            let fd = try client.connect(timeoutSeconds: 5)
            XCTAssertTrue(RawHTTPClient.closedByServer(fd, within: 2))
            close(fd)
        }
        func failures() -> [CapturedLog.Line] { log.lines(containing: "cannot set up an accepted connection") }
        let first = try XCTUnwrap(failures().first, "a failed setup was not logged")
        XCTAssertEqual(first.level, .error)
        XCTAssertEqual(first.metadata["error"]?.description, "Protocol not available")
        // The other four are reported together when the interval ends.
        let deadline = Date().addingTimeInterval(3)
        while failures().count < 2 && Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
        XCTAssertEqual(failures().count, 2)
        XCTAssertEqual(failures().last?.metadata["repeated"]?.description, "4")
    }
}

import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `serve` with TLS and basic auth under the abuse a public port gets:
/// 300 connections that stop after the TCP handshake (never send a
/// ClientHello) and 100 clients sending wrong passwords as fast as they can,
/// while a real scraper keeps asking with the right password. Memory and
/// descriptors are read from /proc.
final class ServeWebConfigAbuseTests: XCTestCase {
    /// Prometheus's default scrape timeout: an answer later than this is a failed scrape.
    static let scrapeTimeoutSeconds = 10.0
    /// How long the abuse lasts.
    static let abuseSeconds = 12.0
    /// What the abuse may add to peak RSS: 64 connection slots' buffers and
    /// TLS state, a few waiting password checks; far below this.
    static let maximumGrowthBytes = 100 << 20

    func testStalledHandshakesAndAPasswordFloodDoNotStarveAScraper() throws {
        let tls = try TLSMaterial()
        let hash = try TLSMaterial.bcrypt("scrape-secret")
        let serve = try SecuredServe(webConfig: """
            tls_server_config:
              cert_file: \(tls.path("server.crt"))
              key_file: \(tls.path("server.key"))
            basic_auth_users:
              prometheus: \(hash)

            """, in: tls.directory, arguments: ["--log-level", "debug"])  // counts evictions
        let url = "https://127.0.0.1:\(serve.port)/metrics"
        let scraper = ["--cacert", tls.path("ca.crt"), "-u", "prometheus:scrape-secret"]
        // The scraper's first answer: its credentials are then remembered.
        XCTAssertEqual(CurlResult.get(url, options: scraper).status, 200)
        let baselineRSS = try XCTUnwrap(serve.statusBytes("VmRSS"))
        let baselineDescriptors = serve.openDescriptors()

        var stalled: [Int32] = []
        defer { for fd in stalled { close(fd) } }
        for _ in 0..<300 { stalled.append(try Loopback.connect(port: serve.port)) }

        // 100 concurrent clients, wrong passwords, as fast as curl goes: three
        // curl processes with 34 parallel transfers each over thousands of URLs.
        let flood = try (0..<3).map { index -> (Process, Drain) in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
            process.arguments = ["-sk", "--no-progress-meter", "-Z", "--parallel-immediate", "--parallel-max", "34", "--max-time", "10",
                                 "-u", "prometheus:wrong-\(index)", "-w", "%{stderr}%{http_code}\n",
                                 "\(url)?attempt=[1-1000000]"]
            let errors = Pipe()
            process.standardOutput = FileHandle.nullDevice
            process.standardError = errors
            process.standardInput = FileHandle.nullDevice
            try process.run()
            return (process, Drain(errors.fileHandleForReading))
        }
        defer { for (process, _) in flood where process.isRunning { kill(process.processIdentifier, SIGKILL) } }

        var latencies: [Double] = []
        var failures: [String] = []
        var peakDescriptors = 0
        let started = Date()
        while Date().timeIntervalSince(started) < Self.abuseSeconds {
            let asked = Date()
            let answer = CurlResult.get(url, options: scraper, maxTime: Int(Self.scrapeTimeoutSeconds))
            latencies.append(Date().timeIntervalSince(asked))
            if answer.status != 200 || !answer.body.contains("portbudget_build_info") {
                failures.append("status \(answer.status) after \(Int(Date().timeIntervalSince(started))) s: \(answer.log.suffix(300))")
            }
            peakDescriptors = max(peakDescriptors, serve.openDescriptors())
            usleep(300_000)
        }
        for (process, _) in flood { kill(process.processIdentifier, SIGTERM) }
        for (process, _) in flood { process.waitUntilExit() }
        let codes = flood.flatMap { $0.1.text().split(separator: "\n") }
        let counts = Dictionary(grouping: codes, by: { String($0) }).mapValues(\.count)
        let peakRSS = try XCTUnwrap(serve.statusBytes("VmHWM"))
        let sorted = latencies.sorted()
        let serveLog = serve.process.stderrText.split(separator: "\n")
        let evictions = serveLog.filter { $0.contains("closing an idle connection") }.count
        let refusals = serveLog.filter { $0.contains("refusing") }.count
        print(String(format: "web abuse: %d scrapes (%d failed), latency median %.3f s, max %.3f s; flood answers %@; %d evictions, %d refusal log lines; peak RSS +%.1f MiB; peak descriptors %d (baseline %d)",
                     latencies.count, failures.count, sorted[sorted.count / 2], sorted.last ?? 0, counts.description, evictions, refusals,
                     Double(peakRSS - baselineRSS) / 1_048_576, peakDescriptors, baselineDescriptors))

        XCTAssertEqual(failures, [], "the scraper was starved")
        XCTAssertLessThan(sorted.last ?? .infinity, Self.scrapeTimeoutSeconds)
        XCTAssertGreaterThanOrEqual(latencies.count, 8, "too few scrapes to tell")
        // The flood was real and was never let in.
        XCTAssertGreaterThan(codes.count, 200, "the flood made only \(codes.count) requests")
        XCTAssertEqual(counts["200"] ?? 0, 0, "a wrong password was let in")
        XCTAssertGreaterThan(counts["401"] ?? 0, 0, "no wrong password was checked")
        // The connection cap held: 64 slots, plus evicted TLS connections in
        // their last 100 ms (waiting for the client's close_notify): about
        // 140 evictions a second here, so a dozen or so.
        XCTAssertLessThan(peakDescriptors, baselineDescriptors + 64 + 40, "more connections held than the cap")
        XCTAssertLessThan(peakRSS - baselineRSS, Self.maximumGrowthBytes)

        for fd in stalled { close(fd) }
        stalled.removeAll()
        let deadline = Date().addingTimeInterval(10)
        while serve.openDescriptors() > baselineDescriptors && Date() < deadline { usleep(100_000) }
        XCTAssertLessThanOrEqual(serve.openDescriptors(), baselineDescriptors, "descriptors left behind")
        XCTAssertEqual(CurlResult.get(url, options: scraper).status, 200)
        try serve.stop()
    }

    /// A client that completes TCP and never starts TLS is cut at the header
    /// timeout (5 s), even with free slots: the handshake has a deadline.
    func testAStalledHandshakeIsCutAtTheDeadline() throws {
        let tls = try TLSMaterial()
        let serve = try SecuredServe(webConfig: """
            tls_server_config:
              cert_file: \(tls.path("server.crt"))
              key_file: \(tls.path("server.key"))

            """, in: tls.directory)
        let fd = try Loopback.connect(port: serve.port, timeoutSeconds: 15)
        defer { close(fd) }
        let started = Date()
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, 0)
        let waited = Date().timeIntervalSince(started)
        XCTAssertEqual(n, 0, "expected the server to close the connection")
        XCTAssertGreaterThan(waited, 4)
        XCTAssertLessThan(waited, 8, "the stalled handshake was held \(waited) s")
        try serve.stop()
    }
}

import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOPosix
import PortBudgetCore

/// Delivers alerts to every configured Alertmanager (API v2), built to work
/// when the host it watches has no ephemeral port left and DNS is down:
/// - Alertmanager host names are resolved when the agent starts (and again
///   every few minutes while DNS answers); requests use the last good address.
/// - async-http-client keeps its connection to each Alertmanager open for
///   long (an idle pool timeout of an hour, kept warm by the evaluator's
///   heartbeats), so a page can leave on a connection made before exhaustion.
/// - When that fails, the request goes again over a fresh connection from an
///   explicitly bound local port outside the ephemeral range.
/// Each delivery is retried with exponential backoff.
public final class AlertmanagerDelivery: Sendable {
    public struct Outcome: Sendable, Equatable {
        public var accepted: Bool
        public var viaPinnedPort: Bool
        public var error: String?
    }

    final class Target: @unchecked Sendable {
        let config: AlertConfig.Alertmanager
        let client: HTTPClient
        private let lock = NSLock()
        private var address: String?
        private var resolvedAt = 0.0

        init(_ config: AlertConfig.Alertmanager, logger: Logger) {
            self.config = config
            address = Resolver.resolve(config.host)
            resolvedAt = Date().timeIntervalSince1970
            var configuration = HTTPClient.Configuration()
            configuration.connectionPool = .init(idleTimeout: .hours(1))
            configuration.timeout = .init(connect: .seconds(2), read: .seconds(Int64(max(1, config.timeout))))
            if let address, address != config.host { configuration.dnsOverride = [config.host: address] }
            if address == nil {
                logger.warning("cannot resolve Alertmanager host yet; will retry", metadata: ["host": "\(config.host)"])
            }
            client = HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: configuration)
        }

        /// The last address DNS gave; refreshed at most every 5 minutes, kept when DNS fails.
        func currentAddress() -> String? {
            lock.lock()
            let (cached, age) = (address, Date().timeIntervalSince1970 - resolvedAt)
            lock.unlock()
            if cached != nil && age < 300 { return cached }
            guard let fresh = Resolver.resolve(config.host) else { return cached }
            lock.lock()
            address = fresh
            resolvedAt = Date().timeIntervalSince1970
            lock.unlock()
            return fresh
        }

        var name: String { config.url.absoluteString }
        var apiPath: String {
            let base = config.url.path.hasSuffix("/") ? String(config.url.path.dropLast()) : config.url.path
            return base + "/api/v2/alerts"
        }
        var hostHeader: String { config.port == 80 ? config.host : "\(config.host):\(config.port)" }
    }

    let targets: [Target]
    let pinned: PinnedPortSender
    let logger: Logger
    let attempts: Int
    let counter = DeliveryCounter()

    /// `sourcePorts`: local ports for the pinned path, outside the ephemeral range.
    public init(alertmanagers: [AlertConfig.Alertmanager], sourcePorts: ClosedRange<UInt16>, attempts: Int = 3,
                logger: Logger) {
        self.logger = logger
        self.attempts = attempts
        targets = alertmanagers.map { Target($0, logger: logger) }
        pinned = PinnedPortSender(sourcePorts: sourcePorts, timeoutMs: 3000)
    }

    public var isEmpty: Bool { targets.isEmpty }

    /// Posts `alerts` (an empty list is a heartbeat) to every Alertmanager.
    /// True when at least one accepted them.
    @discardableResult
    public func send(_ alerts: [AlertmanagerAlert]) async -> Bool {
        let body: [UInt8]
        do { body = Array(try JSONEncoder().encode(alerts)) } catch { return false }
        var anyAccepted = false
        await withTaskGroup(of: (Target, Outcome).self) { group in
            for target in targets {
                group.addTask { (target, await self.deliver(body, to: target, heartbeat: alerts.isEmpty)) }
            }
            for await (target, outcome) in group {
                counter.record(target.name, outcome, heartbeat: alerts.isEmpty)
                if outcome.accepted {
                    anyAccepted = true
                } else if !alerts.isEmpty {
                    logger.error("Alertmanager did not take the alerts",
                                 metadata: ["alertmanager": "\(target.name)", "error": "\(outcome.error ?? "")"])
                }
            }
        }
        return anyAccepted
    }

    func deliver(_ body: [UInt8], to target: Target, heartbeat: Bool) async -> Outcome {
        var lastError = ""
        let tries = heartbeat ? 1 : attempts
        for attempt in 0..<tries {
            if attempt > 0 { try? await Task.sleep(for: .milliseconds(250 << attempt)) }
            // The agent is stopping: a page that has not left by now will not.
            if Task.isCancelled { return Outcome(accepted: false, viaPinnedPort: false, error: "cancelled: shutting down") }
            // getaddrinfo blocks (for seconds when DNS is down): keep it off the cooperative pool.
            let address = (try? await NIOThreadPool.singleton.runIfActive { target.currentAddress() }) ?? nil
            do {
                try await postWithClient(body, to: target)
                return Outcome(accepted: true, viaPinnedPort: false, error: nil)
            } catch {
                lastError = "\(error)"
            }
            // A heartbeat only keeps the pooled connection warm; no need to dig deeper.
            guard !heartbeat, target.config.url.scheme == "http", let address else { continue }
            do {
                let status = try await NIOThreadPool.singleton.runIfActive { [pinned] in
                    try pinned.post(ip: address, port: target.config.port, hostHeader: target.hostHeader,
                                    path: target.apiPath, body: body, attempt: attempt)
                }
                if (200..<300).contains(status) {
                    logger.notice("delivered over a pinned source port", metadata: ["alertmanager": "\(target.name)"])
                    return Outcome(accepted: true, viaPinnedPort: true, error: nil)
                }
                lastError += "; pinned port: HTTP \(status)"
            } catch {
                lastError += "; pinned port: \(error)"
            }
        }
        return Outcome(accepted: false, viaPinnedPort: false, error: lastError)
    }

    func postWithClient(_ body: [UInt8], to target: Target) async throws {
        var request = HTTPClientRequest(url: target.config.url.absoluteString.trimmingSuffix("/") + "/api/v2/alerts")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "portbudget")
        request.body = .bytes(ByteBuffer(bytes: body))
        let response = try await target.client.execute(request, timeout: .seconds(Int64(max(1, target.config.timeout))))
        _ = try await response.body.collect(upTo: 64 * 1024)
        guard (200..<300).contains(Int(response.status.code)) else {
            throw DeliveryError(description: "HTTP \(response.status.code)")
        }
    }

    public func shutdown() async {
        for target in targets { try? await target.client.shutdown() }
    }

    /// Writes the delivery counters into an exposition.
    public func write(into writer: inout ExpositionWriter) {
        counter.write(into: &writer, names: targets.map(\.name))
    }
}

struct DeliveryError: Error, CustomStringConvertible {
    let description: String
}

/// Counts deliveries per Alertmanager for /metrics.
final class DeliveryCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var sent: [String: Int] = [:]
    private var failed: [String: Int] = [:]
    private var pinned: [String: Int] = [:]
    private var lastSuccess: [String: Double] = [:]

    func record(_ name: String, _ outcome: AlertmanagerDelivery.Outcome, heartbeat: Bool) {
        lock.lock(); defer { lock.unlock() }
        if outcome.accepted { lastSuccess[name] = Date().timeIntervalSince1970 }
        guard !heartbeat else { return }
        if outcome.accepted { sent[name, default: 0] += 1 } else { failed[name, default: 0] += 1 }
        if outcome.viaPinnedPort { pinned[name, default: 0] += 1 }
    }

    func write(into writer: inout ExpositionWriter, names: [String]) {
        lock.lock(); defer { lock.unlock() }
        func samples(_ values: [String: Int]) -> [ExpositionWriter.Sample] {
            names.map { ExpositionWriter.Sample([("alertmanager", $0)], values[$0] ?? 0) }
        }
        writer.family("portbudget_alertmanager_notifications_total", .counter,
                      help: "Alert batches Alertmanager accepted.", samples(sent))
        writer.family("portbudget_alertmanager_notifications_failed_total", .counter,
                      help: "Alert batches no attempt could deliver.", samples(failed))
        writer.family("portbudget_alertmanager_pinned_port_deliveries_total", .counter,
                      help: "Alert batches delivered from a local port outside the ephemeral range, after the pooled connection failed.",
                      samples(pinned))
        writer.family("portbudget_alertmanager_last_success_timestamp_seconds", .gauge,
                      help: "When Alertmanager last accepted a request (alerts or heartbeat), Unix time.",
                      names.compactMap { n in lastSuccess[n].map { ExpositionWriter.Sample([("alertmanager", n)], $0) } })
    }
}

enum Resolver {
    /// The first address getaddrinfo gives for `host`, as text; nil when it cannot.
    static func resolve(_ host: String) -> String? {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return nil }
        defer { freeaddrinfo(result) }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let family = first.pointee.ai_family
        let ok: Bool = first.pointee.ai_addr.withMemoryRebound(to: UInt8.self, capacity: 28) { raw in
            if family == AF_INET {
                return raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    var a = sin.pointee.sin_addr
                    return inet_ntop(AF_INET, &a, &buffer, socklen_t(buffer.count)) != nil
                }
            }
            return raw.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                var a = sin6.pointee.sin6_addr
                return inet_ntop(AF_INET6, &a, &buffer, socklen_t(buffer.count)) != nil
            }
        }
        guard ok else { return nil }
        return String(cString: buffer)
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String { hasSuffix(suffix) ? String(dropLast(suffix.count)) : self }
}

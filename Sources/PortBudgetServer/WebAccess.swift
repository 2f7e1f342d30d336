import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOSSL
import PortBudgetCore

/// The running `--web.config.file`: TLS for new connections, basic auth and
/// extra headers for each request. SIGHUP (`reload()`) reads the file again;
/// a file that fails validation, or whose certificates cannot be loaded,
/// leaves the running configuration in place and
/// `portbudget_web_config_last_reload_successful` says 0. Certificate files
/// are also re-read on their own when they change (`TLSContextSource`).
///
/// As a `CollectionObserver` it writes the reload gauges into every scrape.
public final class WebAccess: CollectionObserver, Sendable {
    struct Active: Sendable {
        var config: WebConfig
        var tls: TLSContextSource?
    }

    private struct State {
        var active: Active
        var reloadSucceeded = true
        var lastSuccess = Date().timeIntervalSince1970
    }

    public let path: String
    private let state: NIOLockedValueBox<State>
    let checker = BasicAuthChecker()
    private let logger: Logger

    /// Loads and validates `path`, certificates included; throws a `WebConfigError`.
    public convenience init(path: String, logger: Logger) throws {
        try self.init(try WebConfig.load(path: path), logger: logger)
    }

    /// Uses a configuration already parsed (its certificates are loaded here).
    public init(_ config: WebConfig, logger: Logger) throws {
        self.path = config.file
        self.logger = logger
        state = NIOLockedValueBox(State(active: try Self.activate(config, logger: logger)))
    }

    private static func activate(_ config: WebConfig, logger: Logger) throws -> Active {
        Active(config: config, tls: try config.tls.map { try TLSContextSource($0, configFile: config.file, logger: logger) })
    }

    var active: Active { state.withLockedValue { $0.active } }

    /// Whether new connections speak TLS.
    public var usesTLS: Bool { active.tls != nil }

    /// Re-reads the file. False (and the previous configuration kept) when it is not valid.
    @discardableResult
    public func reload() -> Bool {
        do {
            let next = try Self.activate(try WebConfig.load(path: path), logger: logger)
            state.withLockedValue {
                $0.active = next
                $0.reloadSucceeded = true
                $0.lastSuccess = Date().timeIntervalSince1970
            }
            logger.info("web configuration reloaded", metadata: ["file": "\(path)"])
            return true
        } catch {
            state.withLockedValue { $0.reloadSucceeded = false }
            logger.error("web configuration not reloaded; the previous one stays", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// The TLS handler for a new connection, or nil for plain HTTP.
    func makeTLSHandler() -> NIOSSLServerHandler? {
        active.tls?.makeHandler()
    }

    enum Decision {
        case allowed
        case unauthorized
        case busy
    }

    /// Whether a request for `path` with these headers may be answered.
    /// `/metrics` is never answered without credentials when users are configured;
    /// `/healthz` only when the file says so.
    func authorize(path: Substring, headers: HTTPHeaders, on eventLoop: any EventLoop) -> EventLoopFuture<Decision> {
        let config = active.config
        if config.basicAuthUsers.isEmpty || (path == "/healthz" && config.healthzWithoutAuth) {
            return eventLoop.makeSucceededFuture(.allowed)
        }
        return checker.check(authorization: headers["authorization"].first, users: config.basicAuthUsers, on: eventLoop)
            .map { verdict in
                switch verdict {
                case .allowed: return .allowed
                case .denied: return .unauthorized
                case .busy: return .busy
                }
            }
    }

    /// `http_server_config.headers`, for every response.
    var responseHeaders: [(name: String, value: String)] { active.config.headers }

    public func collected(_ collection: CollectionResult, writer: inout ExpositionWriter) async {
        let (succeeded, lastSuccess) = state.withLockedValue { ($0.reloadSucceeded, $0.lastSuccess) }
        writer.single("portbudget_web_config_last_reload_successful", .gauge,
                      help: "Whether the last reload of --web.config.file (SIGHUP) succeeded (1) or failed and the previous one stayed (0).",
                      succeeded ? 1 : 0)
        writer.single("portbudget_web_config_last_reload_success_timestamp_seconds", .gauge,
                      help: "When --web.config.file was last loaded successfully, Unix time.", lastSuccess)
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOHTTPCompression
import NIOPosix
import ServiceLifecycle

/// The `serve` HTTP server, a `Service` for a `ServiceGroup`. It is bound
/// before it runs, so a port that cannot be had fails the command at once,
/// and tests can bind port 0 and read the port back.
///
/// On graceful shutdown it stops accepting, lets answers in flight finish
/// and closes idle keep-alive connections, waiting at most `shutdownGrace`.
public final class MetricsServer: Service, Sendable {
    public struct Configuration: Sendable {
        public var listen: ListenAddress
        /// Connections beyond this are closed as soon as they are accepted.
        public var maxConnections: Int
        /// From the first byte of a request to its end.
        public var requestTimeout: TimeAmount = .seconds(10)
        /// How long a keep-alive connection may sit between requests.
        public var idleTimeout: TimeAmount = .seconds(120)
        /// Bound on the request line plus headers (NIO's default is 80 KiB).
        public var maxHeaderBytes = 8 * 1024
        public var maxBodyBytes = 1024
        public var shutdownGrace: TimeAmount = .seconds(3)

        public init(listen: ListenAddress, maxConnections: Int = 64) {
            self.listen = listen
            self.maxConnections = maxConnections
        }
    }

    /// Where the server accepts connections.
    public let localAddress: SocketAddress
    private let channel: any Channel
    private let quiesce: ServerQuiescingHelper
    private let done: EventLoopPromise<Void>
    private let shuttingDown = NIOLockedValueBox(false)
    private let grace: TimeAmount
    private let logger: Logger

    private init(channel: any Channel, quiesce: ServerQuiescingHelper, grace: TimeAmount, logger: Logger) throws {
        guard let address = channel.localAddress else { throw MetricsServerError("bound socket has no address") }
        self.localAddress = address
        self.channel = channel
        self.quiesce = quiesce
        self.done = channel.eventLoop.makePromise()
        self.grace = grace
        self.logger = logger
        // A server channel that closes by itself (not by shutdown) ends run() too.
        channel.closeFuture.whenComplete { [done, shuttingDown] _ in
            if !shuttingDown.withLockedValue({ $0 }) { done.succeed() }
        }
    }

    /// Binds the listening socket. Throws `MetricsServerError` naming the address.
    public static func bind(_ configuration: Configuration, coordinator: ScrapeCoordinator,
                            group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                            logger: Logger) async throws -> MetricsServer {
        let quiesce = ServerQuiescingHelper(group: group)
        let connections = NIOLockedValueBox(0)
        let config = configuration
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                let admitted = connections.withLockedValue { count in
                    guard count < config.maxConnections else { return false }
                    count += 1
                    return true
                }
                guard admitted else {
                    logger.warning("too many connections, refusing one",
                                   metadata: ["limit": "\(config.maxConnections)",
                                              "peer": "\(channel.remoteAddress.map { "\($0)" } ?? "?")"])
                    return channel.eventLoop.makeFailedFuture(MetricsServerError("connection limit reached"))
                }
                channel.closeFuture.whenComplete { _ in connections.withLockedValue { $0 -= 1 } }
                return channel.eventLoop.makeCompletedFuture {
                    try Self.configure(channel, config, coordinator: coordinator, logger: logger)
                }
            }

        let channel: any Channel
        do {
            if let host = config.listen.host {
                channel = try await bootstrap.bind(host: host, port: config.listen.port).get()
            } else {
                // Every address: dual-stack where IPv6 exists, IPv4 alone where it does not.
                do {
                    channel = try await bootstrap.bind(host: "::", port: config.listen.port).get()
                } catch {
                    channel = try await bootstrap.bind(host: "0.0.0.0", port: config.listen.port).get()
                }
            }
        } catch {
            throw MetricsServerError("cannot listen on \(config.listen): \(Self.oneLine(error))")
        }
        return try MetricsServer(channel: channel, quiesce: quiesce, grace: config.shutdownGrace, logger: logger)
    }

    private static func configure(_ channel: any Channel, _ config: Configuration, coordinator: ScrapeCoordinator,
                                  logger: Logger) throws {
        let sync = channel.pipeline.syncOperations
        let deadline = RequestDeadlineHandler(requestTimeout: config.requestTimeout, idleTimeout: config.idleTimeout)
        try sync.addHandler(deadline)
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderFieldSize = config.maxHeaderBytes
        limits.maxHeaderListSize = config.maxHeaderBytes
        limits.maxHeaderFieldCount = 100
        try sync.configureHTTPServerPipeline(withEncoderConfiguration: .init(), withDecoderLimitConfiguration: limits)
        // Compresses only when the request's Accept-Encoding allows it (Prometheus always asks for gzip).
        try sync.addHandler(HTTPResponseCompressor())
        try sync.addHandler(MetricsHTTPHandler(coordinator: coordinator, deadline: deadline,
                                               maxBodyBytes: config.maxBodyBytes, logger: logger))
    }

    public func run() async throws {
        logger.info("serving metrics", metadata: ["address": "\(listening)"])
        try await withGracefulShutdownHandler {
            try await done.futureResult.get()
        } onGracefulShutdown: {
            self.shutdown()
        }
        logger.info("stopped")
    }

    /// The bound address as `--listen` would take it, e.g. `127.0.0.1:9958`, `[::]:9958`.
    public var listening: String {
        ListenAddress(host: localAddress.ipAddress, port: localAddress.port ?? 0).description
    }

    /// Stops accepting, lets answers in flight finish, and ends `run()` once
    /// every connection closed or `shutdownGrace` passed.
    public func shutdown() {
        let first = shuttingDown.withLockedValue { wasShuttingDown in
            defer { wasShuttingDown = true }
            return !wasShuttingDown
        }
        guard first else { return }
        let quiesced = channel.eventLoop.makePromise(of: Void.self)
        quiesce.initiateShutdown(promise: quiesced)
        let timeout = channel.eventLoop.scheduleTask(in: grace) { [done, logger] in
            logger.info("connections still open after the shutdown grace period; stopping anyway")
            done.succeed()
        }
        quiesced.futureResult.whenComplete { [done] _ in
            timeout.cancel()
            done.succeed()
        }
    }

    static func oneLine(_ error: any Error) -> String {
        // NIO's description names its internal call; the errno text is what a person needs.
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)) }
        return "\(error)".split(separator: "\n").first.map(String.init) ?? "\(error)"
    }
}

/// The server could not start or run; one line naming what was wrong.
public struct MetricsServerError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

#if canImport(Glibc)
import Glibc
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOHTTPCompression
import NIOPosix
import PortBudgetAgent
import ServiceLifecycle
#endif

/// The `serve` HTTP server, a `Service` for a `ServiceGroup`. It is bound
/// before it runs, so a port that cannot be had fails the command at once,
/// and tests can bind port 0 and read the port back.
///
/// On graceful shutdown it stops accepting, lets answers in flight finish
/// and closes idle keep-alive connections, waiting at most `shutdownGrace`.
public final class MetricsServer: Service, Sendable {
    public struct Configuration: Sendable {
        public var listen: ListenAddress
        /// Connections held at once. When all are taken, a new connection
        /// evicts an idle one (one silent for 250 ms since its accept first, then the
        /// keep-alive connection idle the longest); it is refused only when
        /// every connection is busy with a request, each bounded by a deadline.
        public var maxConnections: Int
        /// A new connection must deliver a complete request within this time
        /// of being accepted, and a keep-alive connection within this time of
        /// its next request's first byte. A scraper sends its request at once;
        /// a silent or trickling client is closed after this.
        public var headerTimeout: TimeAmount = .seconds(5)
        /// How long a keep-alive connection may wait for its next request.
        /// Longer than a scrape interval, so that Prometheus keeps its
        /// connection between scrapes instead of spending ephemeral ports on
        /// new ones. Idle connections are evicted first when the cap is full.
        public var idleTimeout: TimeAmount = .seconds(120)
        /// An answer not taken by the client (handed to the kernel) within
        /// this time closes the connection, so one that stops reading holds
        /// neither memory nor a slot for long. Prometheus's default scrape
        /// timeout: a scraper that has not read the answer by then has given up.
        public var writeTimeout: TimeAmount = .seconds(10)
        /// Complete requests waiting behind the one being answered before the
        /// server stops reading from a connection. Scrapers never pipeline; a
        /// few keep well-behaved pipelining clients working.
        public var maxPipelinedRequests = 4
        /// Bytes read from a connection at a time (one read per readiness
        /// event). Pipelined requests beyond `maxPipelinedRequests` are decoded
        /// only from the read in progress, so this bounds them too: with
        /// 2 KiB, at most about 110 of the smallest possible requests.
        public var readChunkBytes = 2048
        /// Bound on the request line plus headers (NIO's default is 80 KiB).
        public var maxHeaderBytes = 8 * 1024
        /// Nothing here takes a body; a larger one closes the connection.
        public var maxBodyBytes = 1024
        /// Refused connections (and failed accepts) are logged once per this
        /// interval with a count, so a flood costs a few lines, not thousands.
        public var refusalLogInterval: TimeAmount = .seconds(10)
        /// How long shutdown waits for answers in flight.
        public var shutdownGrace: TimeAmount = .seconds(3)
        /// `--web.config.file`: TLS, basic auth and response headers; nil: plain HTTP to anyone.
        /// With TLS, `headerTimeout` bounds the handshake too: it counts from the accept.
        public var web: WebAccess?

        public init(listen: ListenAddress, maxConnections: Int = 64) {
            self.listen = listen
            self.maxConnections = maxConnections
        }
    }

    /// Where the server accepts connections.
    public let localAddress: SocketAddress
    private let channel: any Channel
    private let quiesce: ServerQuiescingHelper
    private let slots: ConnectionSlots
    private let done: EventLoopPromise<Void>
    private let shuttingDown = NIOLockedValueBox(false)
    private let grace: TimeAmount
    private let logger: Logger

    private init(channel: any Channel, quiesce: ServerQuiescingHelper, slots: ConnectionSlots, grace: TimeAmount,
                 logger: Logger) throws {
        guard let address = channel.localAddress else { throw MetricsServerError("bound socket has no address") }
        self.localAddress = address
        self.channel = channel
        self.quiesce = quiesce
        self.slots = slots
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
        let config = configuration
        let slots = ConnectionSlots(capacity: config.maxConnections)
        let refusals = RateLimitedLog("connection limit reached and every connection busy; refusing new ones",
                                      level: .warning, interval: config.refusalLogInterval, logger: logger)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    // Out of file descriptors, accepting pauses briefly instead of spinning.
                    try sync.addHandler(AcceptBackoffHandler())
                    try sync.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            // TCP level: at SOL_SOCKET the same number is SO_DEBUG, which an
            // unprivileged process may not set (the setup then fails and the
            // connection is reset).
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: config.readChunkBytes))
            .childChannelOption(.maxMessagesPerRead, value: 1)
            .childChannelInitializer { channel in
                switch slots.admit(channel) {
                case .refused:
                    refusals.record(["limit": "\(config.maxConnections)", "peer": "\(peer(channel))"],
                                    on: channel.eventLoop)
                    return channel.eventLoop.makeFailedFuture(ConnectionRefused())
                case .admitted(let slot, let evicted):
                    if let evicted {
                        logger.debug("connection limit reached; closing an idle connection for a new one",
                                     metadata: ["evicted": "\(peer(evicted))", "peer": "\(peer(channel))"])
                        evicted.close(promise: nil)
                    }
                    channel.closeFuture.whenComplete { _ in slot.release() }
                    return channel.eventLoop.makeCompletedFuture {
                        try Self.configure(channel, config, slot: slot, coordinator: coordinator, logger: logger)
                    }
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
        try await logAcceptErrors(of: channel, interval: config.refusalLogInterval, logger: logger)
        return try MetricsServer(channel: channel, quiesce: quiesce, slots: slots, grace: config.shutdownGrace,
                                 logger: logger)
    }

    /// Adds the logger of failed child setups and accepts behind NIO's
    /// accept handler (so after the bind, which adds that handler): NIO closes
    /// such a connection and only reports the error down the server pipeline.
    static func logAcceptErrors(of serverChannel: any Channel, interval: TimeAmount, logger: Logger) async throws {
        let log = RateLimitedLog("cannot set up an accepted connection; closed it", level: .error,
                                 interval: interval, logger: logger)
        try await serverChannel.pipeline.addHandler(AcceptErrorLogger(log))
    }

    private static func configure(_ channel: any Channel, _ config: Configuration, slot: ConnectionSlot,
                                  coordinator: ScrapeCoordinator, logger: Logger) throws {
        let sync = channel.pipeline.syncOperations
        // Below the deadline handler, which then sees decrypted bytes only: a
        // client that never finishes the handshake is cut at the header timeout.
        if let tls = config.web?.makeTLSHandler() {
            try sync.addHandler(TLSHandshakeActivityHandler(slot: slot))
            try sync.addHandler(tls)
        }
        let deadline = RequestDeadlineHandler(
            .init(header: config.headerTimeout, idle: config.idleTimeout, write: config.writeTimeout),
            slot: slot, logger: logger)
        try sync.addHandler(deadline)
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderFieldSize = config.maxHeaderBytes
        limits.maxHeaderListSize = config.maxHeaderBytes
        limits.maxHeaderFieldCount = 100
        // Every answer carries its own Content-Length; NIO's automatic framing
        // would strip it from the answer to a CONNECT, leaving it unframed.
        var encoder = HTTPResponseEncoder.Configuration()
        encoder.automaticallySetFramingHeaders = false
        // Pipelining is handled by MetricsHTTPHandler, which also bounds it.
        try sync.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: true,
                                             withEncoderConfiguration: encoder,
                                             withDecoderLimitConfiguration: limits)
        // Compresses only when the request's Accept-Encoding allows it (Prometheus
        // always asks for gzip), and never an empty body.
        try sync.addHandler(HTTPResponseCompressor(responseCompressionPredicate: { head, _ in
            head.headers["content-length"].first == "0" ? .doNotCompress : .compressIfPossible
        }))
        try sync.addHandler(MetricsHTTPHandler(coordinator: coordinator, deadline: deadline, access: config.web,
                                               maxBodyBytes: config.maxBodyBytes,
                                               maxPipelinedRequests: config.maxPipelinedRequests, logger: logger))
    }

    public func run() async throws {
        logger.info("serving metrics", metadata: ["address": "\(listening)"])
        // Cancellation (a ServiceGroup whose other service threw) ends it the same way:
        // the promise completes only through shutdown().
        try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                try await done.futureResult.get()
            } onGracefulShutdown: {
                self.shutdown()
            }
        } onCancel: {
            self.shutdown()
        }
        logger.info("stopped")
    }

    /// Connections open now (each holding a slot of `maxConnections`).
    public var openConnections: Int { slots.count }

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

private func peer(_ channel: any Channel) -> String {
    channel.remoteAddress.map { "\($0)" } ?? "?"
}

/// The failure of a connection refused at the cap; counted by the refusal log, not logged again.
struct ConnectionRefused: Error {}

/// Logs what NIO's accept handler reports after it closed an accepted
/// connection: its setup failed (a socket option, a handler), or accept()
/// itself failed. Refusals at the cap are logged where they happen.
final class AcceptErrorLogger: ChannelInboundHandler, Sendable {
    typealias InboundIn = Any
    private let log: RateLimitedLog

    init(_ log: RateLimitedLog) { self.log = log }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !(error is ConnectionRefused) else { return }
        log.record(["error": "\(MetricsServer.oneLine(error))"], on: context.eventLoop)
    }
}

/// The server could not start or run; one line naming what was wrong.
public struct MetricsServerError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

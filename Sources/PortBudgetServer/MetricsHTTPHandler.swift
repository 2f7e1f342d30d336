import Logging
import NIOCore
import NIOHTTP1
import PortBudgetAgent
import PortBudgetCore

/// Answers one HTTP/1.1 connection: `/metrics` from the scrape coordinator,
/// a landing page at `/`, `/healthz`; 404 for other paths, 405 for methods
/// other than GET and HEAD. A request URI in absolute form
/// (`http://host:port/metrics`) is routed by its path.
///
/// Requests are answered one at a time, in order. The handler is also the
/// connection's backpressure: it stops reading while an answer is unsent
/// (written but not yet taken by the kernel), while the channel is not
/// writable, and while `maxPipelinedRequests` complete requests wait, so a
/// client that pipelines without reading fills its own socket buffers, not
/// this process's memory.
final class MetricsHTTPHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let coordinator: ScrapeCoordinator
    private let deadline: RequestDeadlineHandler
    private let access: WebAccess?
    private let logger: Logger
    private let maxBodyBytes: Int
    private let maxPipelinedRequests: Int

    /// The request whose head arrived and whose end has not.
    private var receiving: HTTPRequestHead?
    private var bodyBytes = 0
    /// Complete requests not yet being answered, oldest first.
    private var waiting = CircularBuffer<HTTPRequestHead>()
    /// An answer is being collected or written.
    private var answering = false
    /// An answer was written and the kernel has not taken all of it yet.
    private var unsent = false
    /// The channel asked to read while reading was paused.
    private var readDeferred = false
    /// The server is shutting down: finish the answer in flight, then close.
    private var quiescing = false

    init(coordinator: ScrapeCoordinator, deadline: RequestDeadlineHandler, access: WebAccess? = nil, maxBodyBytes: Int,
         maxPipelinedRequests: Int, logger: Logger) {
        self.coordinator = coordinator
        self.deadline = deadline
        self.access = access
        self.maxBodyBytes = maxBodyBytes
        self.maxPipelinedRequests = maxPipelinedRequests
        self.logger = logger
    }

    // MARK: reading, and when not to

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            receiving = head
            bodyBytes = 0
        case .body(let chunk):
            // Nothing here takes a body; a large one is abuse, not a request.
            bodyBytes += chunk.readableBytes
            if bodyBytes > maxBodyBytes {
                logger.debug("request body too large, closing", metadata: ["bytes": "\(bodyBytes)"])
                context.close(promise: nil)
            }
        case .end:
            guard let head = receiving else { return }
            receiving = nil
            waiting.append(head)
            deadline.requestReceived()
            answerNext(context: context)
        }
    }

    func read(context: ChannelHandlerContext) {
        if mayRead(context) {
            context.read()
        } else {
            readDeferred = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        resumeReading(context: context)
        context.fireChannelWritabilityChanged()
    }

    private func mayRead(_ context: ChannelHandlerContext) -> Bool {
        !unsent && waiting.count < maxPipelinedRequests && context.channel.isWritable
    }

    private func resumeReading(context: ChannelHandlerContext) {
        guard readDeferred, mayRead(context) else { return }
        readDeferred = false
        context.read()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        quiescing = true
        // Nothing to finish: close now. Otherwise the answer in flight closes it.
        if !answering && waiting.isEmpty { context.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    // MARK: answering

    private func answerNext(context: ChannelHandlerContext) {
        guard !answering, let head = waiting.popFirst() else { return }
        answering = true
        route(context: context, head)
    }

    private func route(context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        guard let access else {
            routeAuthorized(context: context, head)
            return
        }
        access.authorize(path: Self.path(of: head.uri), headers: head.headers, on: context.eventLoop)
            .assumeIsolated().whenSuccess { decision in
                switch decision {
                case .allowed:
                    self.routeAuthorized(context: context, head)
                case .unauthorized:
                    var headers = HTTPHeaders()
                    headers.add(name: "WWW-Authenticate", value: "Basic")
                    self.respond(context, head, .unauthorized, text: "Unauthorized\n", extra: headers)
                case .busy:
                    var headers = HTTPHeaders()
                    headers.add(name: "Retry-After", value: "1")
                    self.respond(context, head, .serviceUnavailable,
                                 text: "too many password checks waiting; try again\n", extra: headers)
                }
            }
    }

    private func routeAuthorized(context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        guard head.method == .GET || head.method == .HEAD else {
            var headers = HTTPHeaders()
            headers.add(name: "Allow", value: "GET, HEAD")
            // A CONNECT response cannot carry a body (NIO's encoder drops it),
            // and the decoder reads nothing after a CONNECT: an empty answer, then close.
            let text = head.method == .CONNECT ? "" : "method not allowed\n"
            respond(context, head, .methodNotAllowed, text: text, extra: headers)
            return
        }
        switch Self.path(of: head.uri) {
        case "/metrics":
            serveMetrics(context: context, head)
        case "/":
            respond(context, head, .ok, body: Self.landingPage, contentType: "text/html; charset=utf-8")
        case "/healthz":
            respond(context, head, .ok, text: "ok\n")
        default:
            respond(context, head, .notFound, text: "not found; metrics are at /metrics\n")
        }
    }

    /// The path of an origin-form (`/metrics?x`) or absolute-form
    /// (`http://host:9958/metrics?x`) request target, without query or fragment.
    static func path(of uri: String) -> Substring {
        var target = Substring(uri)
        if let separator = target.firstRange(of: "://"), !target[..<separator.lowerBound].isEmpty,
           target[..<separator.lowerBound].allSatisfy({ $0.isLetter || $0.isNumber || "+-.".contains($0) })
        {
            let afterAuthority = target[separator.upperBound...]
            target = afterAuthority.firstIndex { "/?#".contains($0) }.map { afterAuthority[$0...] } ?? ""
            if !target.hasPrefix("/") { target = "/" + target }
        }
        return target.prefix { $0 != "?" && $0 != "#" }
    }

    private func serveMetrics(context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        let promise = context.eventLoop.makePromise(of: Scrape.self)
        let coordinator = self.coordinator
        promise.completeWithTask { try await coordinator.scrape() }
        promise.futureResult.assumeIsolated().whenComplete { result in
            switch result {
            case .success(let scrape):
                self.respond(context, head, .ok, body: scrape.exposition, contentType: ExpositionWriter.contentType)
            case .failure(let error):
                // Only when the process is stopping: say so rather than serve anything old.
                self.logger.warning("scrape failed", metadata: ["error": "\(error)"])
                self.respond(context, head, .serviceUnavailable, text: "collection unavailable: \(error)\n")
            }
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus,
                         text: String, extra: HTTPHeaders = [:]) {
        respond(context, head, status, body: text, contentType: "text/plain; charset=utf-8", extra: extra)
    }

    private func respond(_ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus,
                         body: String, contentType: String, extra: HTTPHeaders = [:]) {
        guard context.channel.isActive else { return }
        let buffer = context.channel.allocator.buffer(string: body)
        var headers = extra
        for (name, value) in access?.responseHeaders ?? [] { headers.add(name: name, value: value) }
        headers.add(name: "Content-Type", value: contentType)
        // Set here for every answer (the encoder does not add framing headers;
        // the compressor replaces this with the compressed length).
        headers.add(name: "Content-Length", value: String(buffer.readableBytes))
        let close = !head.isKeepAlive || quiescing || head.method == .CONNECT
        if close { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
                      promise: nil)
        // Written for HEAD too: NIO's encoder drops it, and the compressor then
        // reports the same Content-Length a GET would get.
        if buffer.readableBytes > 0 { context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        unsent = true
        deadline.whenResponseSent { result in
            self.unsent = false
            self.answering = false
            guard case .success = result, !close, !self.quiescing else {
                context.close(promise: nil)
                return
            }
            self.deadline.responseSent(morePending: !self.waiting.isEmpty)
            self.answerNext(context: context)
            self.resumeReading(context: context)
        }
    }

    static let landingPage = """
        <!DOCTYPE html>
        <html lang="en">
        <head><meta charset="utf-8"><title>portbudget exporter</title></head>
        <body>
        <h1>portbudget exporter</h1>
        <p>Ephemeral-port budget of this network namespace, measured on each scrape.</p>
        <ul>
        <li><a href="/metrics">/metrics</a>: Prometheus text format 0.0.4</li>
        <li><a href="/healthz">/healthz</a>: liveness</li>
        </ul>
        </body>
        </html>

        """
}

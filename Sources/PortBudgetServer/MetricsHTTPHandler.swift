import Logging
import NIOCore
import NIOHTTP1
import PortBudgetCore

/// Answers one HTTP/1.1 connection: `/metrics` from the scrape coordinator,
/// a landing page at `/`, `/healthz`; 404 for other paths, 405 for methods
/// other than GET and HEAD. Responses go out after the request's end, in
/// order (NIO's pipelining handler holds later requests back).
final class MetricsHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let coordinator: ScrapeCoordinator
    private let deadline: RequestDeadlineHandler
    private let logger: Logger
    private let maxBodyBytes: Int
    private var request: HTTPRequestHead?
    private var bodyBytes = 0

    init(coordinator: ScrapeCoordinator, deadline: RequestDeadlineHandler, maxBodyBytes: Int, logger: Logger) {
        self.coordinator = coordinator
        self.deadline = deadline
        self.maxBodyBytes = maxBodyBytes
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
            bodyBytes = 0
        case .body(let chunk):
            // Nothing here takes a body; a large one is abuse, not a request.
            bodyBytes += chunk.readableBytes
            if bodyBytes > maxBodyBytes {
                logger.debug("request body too large, closing", metadata: ["bytes": "\(bodyBytes)"])
                context.close(promise: nil)
            }
        case .end:
            guard let head = request else { return }
            request = nil
            deadline.requestReceived()
            route(context: context, head)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    private func route(context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        guard head.method == .GET || head.method == .HEAD else {
            var headers = HTTPHeaders()
            headers.add(name: "Allow", value: "GET, HEAD")
            respond(context, head, .methodNotAllowed, text: "method not allowed\n", extra: headers)
            return
        }
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        switch path {
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
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(buffer.readableBytes))
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
                      promise: nil)
        // Written for HEAD too: NIO's encoder drops it, and the compressor then
        // reports the same Content-Length a GET would get.
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        let deadline = self.deadline
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            if keepAlive { deadline.responseSent() } else { context.close(promise: nil) }
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

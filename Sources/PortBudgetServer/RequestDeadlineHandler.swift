import NIOCore

/// Bounds the time a connection may spend on one request and between
/// requests. It sits in front of the HTTP decoder and sees raw bytes: the
/// first byte of a request starts a deadline for the whole request head, so a
/// client trickling one byte at a time is cut off like one that sends nothing.
/// The HTTP handler reports when a request was read and when its answer went
/// out; while the server is collecting, no timer runs.
final class RequestDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private enum State { case idle, reading, answering }

    private let requestTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private var context: ChannelHandlerContext?
    private var timer: Scheduled<Void>?
    private var state = State.idle

    init(requestTimeout: TimeAmount, idleTimeout: TimeAmount) {
        self.requestTimeout = requestTimeout
        self.idleTimeout = idleTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { arm(idleTimeout) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(idleTimeout)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if state == .idle {
            state = .reading
            arm(requestTimeout)
        }
        context.fireChannelRead(data)
    }

    /// The request is complete; answering it has no deadline here (the
    /// collection bounds itself).
    func requestReceived() {
        state = .answering
        timer?.cancel()
        timer = nil
    }

    /// The answer was written; the next request must start within the idle timeout.
    func responseSent() {
        state = .idle
        arm(idleTimeout)
    }

    private func arm(_ timeout: TimeAmount) {
        timer?.cancel()
        guard let context else { return }
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            context.close(promise: nil)
        }
    }
}

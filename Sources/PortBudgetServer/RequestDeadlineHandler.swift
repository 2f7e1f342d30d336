import Logging
import NIOCore

/// Bounds every phase of a connection in time and reports the phase to the
/// connection's slot, so that only connections doing something are safe from
/// eviction. It sits in front of the HTTP decoder and sees raw bytes, so the
/// first byte of a request is visible to it.
///
/// - A new connection must deliver a complete request within `header` of
///   being accepted: silent and trickling clients alike are cut off.
/// - Between requests, a keep-alive connection may stay `idle` for longer
///   (scrapers keep connections between scrapes); its next request's first
///   byte starts a new `header` deadline.
/// - While a request is collected, no timer runs (the collection bounds
///   itself). Once the answer is written, it must reach the kernel within
///   `write`, or the connection is closed: a client that stops reading
///   holds nothing for long.
///
/// The HTTP handler reports each complete request and each answer.
final class RequestDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    struct Timeouts {
        var header: TimeAmount
        var idle: TimeAmount
        var write: TimeAmount
    }

    private enum Phase {
        case awaitingFirstRequest, receiving, answering, writing, idle
    }

    private let timeouts: Timeouts
    private let slot: ConnectionSlot?
    private let logger: Logger
    private var context: ChannelHandlerContext?
    private var timer: Scheduled<Void>?
    private var phase = Phase.awaitingFirstRequest

    init(_ timeouts: Timeouts, slot: ConnectionSlot?, logger: Logger) {
        self.timeouts = timeouts
        self.slot = slot
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { armFirstRequestDeadline() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimer()
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        armFirstRequestDeadline()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimer()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch phase {
        case .awaitingFirstRequest:
            // The deadline still counts from the accept.
            guard enter(.receiving, slot: .busy) else { return }
        case .idle:
            guard enter(.receiving, slot: .busy) else { return }
            arm(timeouts.header, "no complete request within the header timeout")
        case .receiving, .answering, .writing:
            break
        }
        context.fireChannelRead(data)
    }

    /// A complete request arrived; answering it has no deadline here.
    func requestReceived() {
        switch phase {
        case .awaitingFirstRequest, .receiving, .idle:
            _ = enter(.answering, slot: .busy)
            cancelTimer()
        case .answering, .writing:
            break
        }
    }

    /// An answer was written and flushed through the handlers above; it must
    /// reach the kernel within the write timeout. `sent` runs once it did (or
    /// the connection failed). The promises of the HTTP writes cannot tell:
    /// the compressor completes them when the head is out. So this writes an
    /// empty buffer behind the answer, right above the socket: its promise
    /// completes only after every byte before it went out.
    func whenResponseSent(_ sent: @escaping (Result<Void, any Error>) -> Void) {
        guard let context else {
            sent(.failure(ChannelError.ioOnClosedChannel))
            return
        }
        phase = .writing
        arm(timeouts.write, "response not taken by the client within the write timeout")
        let marker = context.eventLoop.makePromise(of: Void.self)
        marker.futureResult.assumeIsolated().whenComplete { result in
            if case .writing = self.phase { self.cancelTimer() }
            sent(result)
        }
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: marker)
    }

    /// The answer reached the kernel. With requests still waiting, the next is
    /// answered at once; otherwise the connection is idle until the next one.
    func responseSent(morePending: Bool) {
        if morePending {
            phase = .answering
            cancelTimer()
        } else if enter(.idle, slot: .idle) {
            arm(timeouts.idle, "keep-alive connection idle past the idle timeout")
        }
    }

    /// Changes phase and tells the slot. False (and the connection closing)
    /// when the slot was taken by another connection meanwhile.
    private func enter(_ next: Phase, slot activity: ConnectionSlots.Activity) -> Bool {
        phase = next
        guard let slot, !slot.mark(activity) else { return true }
        cancelTimer()
        context?.close(promise: nil)
        return false
    }

    private func armFirstRequestDeadline() {
        guard phase == .awaitingFirstRequest, timer == nil else { return }
        arm(timeouts.header, "no complete request within the header timeout of accepting")
    }

    private func arm(_ timeout: TimeAmount, _ reason: String) {
        cancelTimer()
        guard let context else { return }
        let logger = self.logger
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            logger.debug("closing connection", metadata: [
                "reason": "\(reason)", "peer": "\(context.channel.remoteAddress.map { "\($0)" } ?? "?")",
            ])
            context.close(promise: nil)
        }
    }

    private func cancelTimer() {
        timer?.cancel()
        timer = nil
    }
}

import NIOCore

/// Sits below TLS, where it sees a connection's raw bytes. The first one (a
/// ClientHello under way) tells the connection's slot that it is busy, as a
/// request being received does, so a scraper in the middle of its handshake
/// is not evicted by a flood of new connections; then it leaves the pipeline.
/// A connection that opens TCP and sends nothing stays evictable first, and
/// the header timeout (counted from the accept) bounds the handshake either way.
final class TLSHandshakeActivityHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let slot: ConnectionSlot

    init(slot: ConnectionSlot) {
        self.slot = slot
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard slot.mark(.busy) else {
            // Evicted meanwhile: it is being closed and must not start anything.
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

import Logging
import ServiceLifecycle
import UnixSignals

/// Makes SIGHUP harmless and useful: by default it ends a process (exit
/// 129), which is the last thing an operator who sends it expects. This
/// service traps it while the agent runs and calls `onHangup` for each
/// one — `serve` reloads its `--config` as Prometheus does; `textfile`,
/// with nothing to reload, says so in the log.
public struct HangupService: Service {
    private let logger: Logger
    private let onHangup: @Sendable () async -> Void

    public init(logger: Logger, onHangup: @escaping @Sendable () async -> Void) {
        self.logger = logger
        self.onHangup = onHangup
    }

    public func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            for await _ in hangups {
                logger.info("SIGHUP received")
                await onHangup()
            }
        }
    }
}

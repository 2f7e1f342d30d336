import Logging
import NIOPosix
import PortBudgetCore
import ServiceLifecycle

/// `portbudget textfile`: collects and rewrites DIR/portbudget.prom every
/// interval until graceful shutdown. A write in progress when SIGTERM
/// arrives finishes first; the file is never left half-written.
public struct TextfileService: Service {
    public typealias Collect = @Sendable () -> CollectionResult

    private let writer: TextfileWriter
    private let interval: Duration
    private let top: Int
    private let version: String
    private let collect: Collect
    private let logger: Logger
    private let threadPool: NIOThreadPool

    public init(writer: TextfileWriter, interval: Duration, top: Int, version: String,
                threadPool: NIOThreadPool = .singleton, logger: Logger, collect: @escaping Collect) {
        self.writer = writer
        self.interval = interval
        self.top = top
        self.version = version
        self.threadPool = threadPool
        self.logger = logger
        self.collect = collect
    }

    /// One collection written out; throws when the file could not be written.
    public func writeOnce() async throws {
        let collection = try await threadPool.runIfActive(collect)
        for failed in collection.outcomes where !failed.success {
            logger.warning("collector failed", metadata: ["collector": "\(failed.name)", "error": "\(failed.error ?? "")"])
        }
        try writer.write(MetricsExposition.render(collection, top: top, version: version))
    }

    public func run() async throws {
        logger.info("writing textfile", metadata: ["path": "\(writer.path)", "interval": "\(interval)"])
        let clock = ContinuousClock()
        try await cancelWhenGracefulShutdown { [self] in
            do {
                while true {
                    let start = clock.now
                    do {
                        try await writeOnce()
                    } catch let error as TextfileError {
                        // Keep going: a full disk may clear up. node_exporter's
                        // node_textfile_mtime_seconds shows the file going stale.
                        logger.error("textfile not written", metadata: ["error": "\(error)"])
                    }
                    try await Task.sleep(until: start + interval, clock: clock)
                }
            } catch is CancellationError {
                return
            }
        }
        logger.info("stopped")
    }
}

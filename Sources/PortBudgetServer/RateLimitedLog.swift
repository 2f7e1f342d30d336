import Logging
import NIOConcurrencyHelpers
import NIOCore

/// A log line for an event that can repeat at any rate — a refused
/// connection, a failed accept — written at most once per `interval`: the
/// first occurrence at once, the ones after it as a single line with their
/// count when the interval ends. A flood of 2,000 refusals costs one line
/// per interval, and no occurrence goes unreported.
final class RateLimitedLog: Sendable {
    private struct State {
        var windowOpen = false
        var suppressed = 0
        var latest: Logger.Metadata = [:]
    }

    private let state = NIOLockedValueBox(State())
    private let logger: Logger
    private let level: Logger.Level
    private let message: String
    private let interval: TimeAmount

    init(_ message: String, level: Logger.Level, interval: TimeAmount, logger: Logger) {
        self.message = message
        self.level = level
        self.interval = interval
        self.logger = logger
    }

    /// Records one occurrence; `eventLoop` runs the end-of-interval report.
    func record(_ metadata: Logger.Metadata, on eventLoop: any EventLoop) {
        let first = state.withLockedValue { state -> Bool in
            guard !state.windowOpen else {
                state.suppressed += 1
                state.latest = metadata
                return false
            }
            state.windowOpen = true
            return true
        }
        guard first else { return }
        logger.log(level: level, "\(message)", metadata: metadata)
        scheduleReport(on: eventLoop)
    }

    private func scheduleReport(on eventLoop: any EventLoop) {
        eventLoop.scheduleTask(in: interval) { self.report(on: eventLoop) }
    }

    /// Ends an interval: reports what it held back and opens the next one,
    /// or closes the window when nothing happened, so the next occurrence is
    /// logged at once again.
    private func report(on eventLoop: any EventLoop) {
        let held = state.withLockedValue { state -> (count: Int, metadata: Logger.Metadata)? in
            guard state.suppressed > 0 else {
                state.windowOpen = false
                return nil
            }
            defer { state.suppressed = 0 }
            return (state.suppressed, state.latest)
        }
        guard let held else { return }
        var metadata = held.metadata
        metadata["repeated"] = "\(held.count)"
        let seconds = Double(interval.nanoseconds) / 1e9
        logger.log(level: level, "\(message) (\(held.count) more in the last \(seconds) s)", metadata: metadata)
        scheduleReport(on: eventLoop)
    }
}

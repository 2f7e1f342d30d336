import Foundation
import NIOConcurrencyHelpers
import PortBudgetCore
import ServiceLifecycle

/// Runs the blocking collection on a thread of its own and waits for it at
/// most `deadline`. A read stuck on a hung mount cannot be interrupted, so
/// the caller stops waiting instead: the thread is detached and nothing ever
/// joins it (not a shared pool whose shutdown would wait on it), and the
/// process exits around it.
///
/// At most one collection runs at a time: while an abandoned one is still
/// stuck, `run()` answers the same failure at once instead of starting
/// another thread, so stuck threads never pile up.
public final class CollectionRunner: Sendable {
    public typealias Collect = @Sendable () -> CollectionResult

    public enum Outcome: Sendable {
        /// The collection finished in time.
        case finished(CollectionResult)
        /// It did not, now or in an earlier call whose thread is still stuck.
        /// `collection` reports the stuck collector failed (no census).
        case overdue(CollectionResult, Overdue)

        /// The collection to report either way.
        public var collection: CollectionResult {
            switch self {
            case .finished(let collection), .overdue(let collection, _): collection
            }
        }
    }

    /// A collection that missed its deadline.
    public struct Overdue: Error, Sendable, CustomStringConvertible {
        /// The collector at work when the deadline passed.
        public let collector: String
        public let deadline: Duration
        /// True when this call started nothing: an earlier collection is still stuck.
        public let earlierStillRunning: Bool

        public var description: String {
            "collection did not finish within \(deadline.secondsDescription) (stuck in \(collector))"
        }
    }

    public let deadline: Duration
    /// The collectors a collection runs, in order: those a collection given
    /// up on did not reach are reported failed too.
    public let collectorNames: [String]
    private let collect: Collect
    /// The collection whose thread is running, if any.
    private let running = NIOLockedValueBox<Running?>(nil)

    public init(deadline: Duration = CollectionResult.deadline, collectorNames: [String] = [], collect: @escaping Collect) {
        self.deadline = deadline
        self.collectorNames = collectorNames
        self.collect = collect
    }

    /// True while a collection's thread runs (in time or stuck).
    public var isRunning: Bool { running.withLockedValue { $0 != nil } }

    /// One collection, or the failure of the one still stuck. Throws
    /// `CancellationError` only when the calling task is cancelled or the
    /// service group shuts down; the collection's thread carries on then.
    public func run() async throws -> Outcome {
        let started = ContinuousClock.now
        let progress = Progress(collectorNames: collectorNames)
        let stuck: Running? = running.withLockedValue { current in
            if let current { return current }
            current = Running(progress: progress, started: started)
            return nil
        }
        if let stuck {
            return .overdue(stuck.failure(deadline: deadline, earlierStillRunning: true), stuck.overdue(deadline, true))
        }

        let result = OneShot<CollectionResult>()
        let thread = Thread { [collect, running] in
            let collection = CollectionProgressReporting.$current.withValue(progress) { collect() }
            running.withLockedValue { $0 = nil }
            result.resolve(.success(collection))
        }
        thread.name = "portbudget-collect"
        // Match the main thread's usual stack: the census folds large tables.
        thread.stackSize = 8 << 20
        thread.start()
        let deadline = self.deadline
        let timer = Task {
            try await Task.sleep(for: deadline)
            result.resolve(.failure(DeadlinePassed()))
        }
        defer { timer.cancel() }
        do {
            return .finished(try await result.value())
        } catch is DeadlinePassed {
            let current = Running(progress: progress, started: started)
            return .overdue(current.failure(deadline: deadline, earlierStillRunning: false),
                            current.overdue(deadline, false))
        }
    }

    private struct DeadlinePassed: Error {}

    struct Running: Sendable {
        let progress: Progress
        let started: ContinuousClock.Instant

        func overdue(_ deadline: Duration, _ earlier: Bool) -> Overdue {
            Overdue(collector: progress.stuckCollector, deadline: deadline, earlierStillRunning: earlier)
        }

        /// What a scrape reports for a collection given up on: the outcomes
        /// already known, the stuck collector failed with the reason, the
        /// ones not reached failed too (their metrics are absent), no census —
        /// in the collectors' order, a stuck step that is not a collector last.
        func failure(deadline: Duration, earlierStillRunning: Bool) -> CollectionResult {
            let (finished, stuck) = progress.snapshot
            let seconds = (ContinuousClock.now - started).inSeconds
            let reason = "did not finish within \(deadline.secondsDescription)"
                + (earlierStillRunning ? "; still running, so no new collection was started" : "")
            let stuckOutcome = CollectorOutcome(name: stuck, seconds: seconds, error: reason)
            var outcomes = finished
            let done = Set(finished.map(\.name))
            for name in progress.collectorNames where !done.contains(name) {
                outcomes.append(name == stuck ? stuckOutcome
                                : CollectorOutcome(name: name, seconds: 0, error: "not run: \(stuck) did not finish"))
            }
            if !progress.collectorNames.contains(stuck) { outcomes.append(stuckOutcome) }
            return CollectionResult(report: nil, outcomes: outcomes)
        }
    }

    /// Which collector is at work, as the collecting thread reports it.
    final class Progress: CollectionProgress {
        let collectorNames: [String]
        private let state = NIOLockedValueBox<(current: String?, finished: [CollectorOutcome])>((nil, []))

        init(collectorNames: [String]) { self.collectorNames = collectorNames }

        func collectorStarted(_ name: String) { state.withLockedValue { $0.current = name } }

        func collectorFinished(_ outcome: CollectorOutcome) {
            state.withLockedValue {
                $0.finished.append(outcome)
                $0.current = nil
            }
        }

        /// The collector at work; for a collect closure that reports no
        /// progress, the first collector that has not finished.
        var stuckCollector: String { snapshot.stuck }

        var snapshot: (finished: [CollectorOutcome], stuck: String) {
            state.withLockedValue { state in
                let done = Set(state.finished.map(\.name))
                let stuck = state.current
                    ?? collectorNames.first { !done.contains($0) } ?? "collection"
                return (state.finished, stuck)
            }
        }
    }
}

/// A value delivered once, from any thread, that an async caller can stop
/// waiting for: cancellation of the waiting task or graceful shutdown of its
/// service group ends the wait with `CancellationError` while whatever
/// produces the value carries on.
final class OneShot<Value: Sendable>: Sendable {
    private struct State {
        var result: Result<Value, any Error>?
        var waiter: CheckedContinuation<Value, any Error>?
    }

    private let state = NIOLockedValueBox(State())

    /// The first call wins; later ones are ignored.
    func resolve(_ result: Result<Value, any Error>) {
        let waiter: CheckedContinuation<Value, any Error>? = state.withLockedValue { state in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(with: result)
    }

    /// Waits for the value. Only one caller may wait.
    func value() async throws -> Value {
        try await withGracefulShutdownHandler {
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { continuation in
                    let ready: Result<Value, any Error>? = state.withLockedValue { state in
                        if let result = state.result { return result }
                        state.waiter = continuation
                        return nil
                    }
                    if let ready { continuation.resume(with: ready) }
                }
            } onCancel: {
                self.resolve(.failure(CancellationError()))
            }
        } onGracefulShutdown: {
            self.resolve(.failure(CancellationError()))
        }
    }

    /// A task's value, waited for abandonably (see the type's comment).
    static func value(of task: Task<Value, any Error>) async throws -> Value {
        let box = OneShot<Value>()
        Task { box.resolve(await task.result) }
        return try await box.value()
    }
}

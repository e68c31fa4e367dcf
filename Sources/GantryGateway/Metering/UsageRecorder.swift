public import Foundation
public import GantryCore
public import Logging
public import ServiceLifecycle
import Synchronization

/// Collects usage records off the request path and writes them in batches: every `interval`, as
/// soon as `batchSize` are waiting, and a last time on graceful shutdown (it is shut down after
/// the HTTP server, so requests still finishing are recorded).
public actor UsageRecorder: Service {
    private let repository: any UsageRepository
    private let batchSize: Int
    private let interval: Duration
    /// Records kept while the database cannot take them; beyond this the oldest are dropped (and
    /// counted in the log) so an outage cannot exhaust memory.
    private let maxPending: Int
    private let logger: Logger
    /// Under a lock, so the data plane records without a hop onto this actor.
    private let pending = Mutex<[UsageRecord]>([])
    /// The write in progress; a second flush waits for it instead of writing beside it.
    private var writing: Task<Void, Never>?
    private var wakeUp: CheckedContinuation<Void, Never>?

    public init(
        repository: any UsageRepository, batchSize: Int = 2000, interval: Duration = .seconds(1), maxPending: Int = 100_000,
        logger: Logger
    ) {
        self.repository = repository
        self.batchSize = batchSize
        self.interval = interval
        self.maxPending = maxPending
        self.logger = logger
    }

    public nonisolated func record(_ record: UsageRecord) {
        let (count, dropped) = pending.withLock { pending -> (Int, Int) in
            pending.append(record)
            guard pending.count > maxPending else { return (pending.count, 0) }
            // The oldest tenth at once, so a full buffer does not shift on every record.
            let dropped = max(1, maxPending / 10)
            pending.removeFirst(dropped)
            return (pending.count, dropped)
        }
        if dropped > 0 {
            logger.error("usage records dropped: the database has not taken them", metadata: ["dropped": "\(dropped)"])
        }
        // One wake-up per batch: only the record that fills it asks.
        if count == batchSize { Task { await self.cancelWait() } }
    }

    /// Writes every waiting record now (the usage API calls this first, so a caller reads their
    /// own requests).
    public func flush() async {
        // Whoever sees a write end clears it: awaiting a finished task does not suspend, so a
        // loop that only waited for the writer to clear it would spin (seen: a test hung at 100 %
        // CPU while the usage API and the timer flushed at once).
        while let current = writing {
            await current.value
            if writing == current { writing = nil }
        }
        // In a task of its own: a cancelled caller (shutdown) must not abort the write.
        let task = Task { await writePending() }
        writing = task
        await task.value
        if writing == task { writing = nil }
    }

    /// Writes the records waiting when it starts. Those that arrive meanwhile wait for the next
    /// wake-up (a full batch, the interval, or a flush): under load the writer used to chase each
    /// write with a smaller one (about 90 transactions a second of 10-50 pages each at 15,000
    /// requests a second, each syncing the WAL), instead of about 8 full batches.
    private func writePending() async {
        var left = pending.withLock { $0.count }
        while left > 0 {
            let batch = pending.withLock { Array($0.prefix(min(batchSize, left))) }
            if batch.isEmpty { return }
            do {
                try await repository.recordUsage(batch)
                // Only this task removes records, and new ones are appended behind the batch.
                pending.withLock { $0.removeFirst(min(batch.count, $0.count)) }
                left -= batch.count
            } catch {
                logger.error(
                    "usage records not written; will retry",
                    metadata: ["error": "\(error)", "waiting": "\(pending.withLock { $0.count })"])
                return
            }
        }
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.sleepOrWake()
                await self.flush()
            }
        }
        await flush()
    }

    private func sleepOrWake() async {
        let interval = interval
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: interval) }
            group.addTask { await self.waitForBatch() }
            await group.next()
            group.cancelAll()
            self.cancelWait()
        }
    }

    private func waitForBatch() async {
        if pending.withLock({ $0.count }) >= batchSize { return }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                if Task.isCancelled || pending.withLock({ $0.count }) >= batchSize {
                    continuation.resume()
                } else {
                    wakeUp = continuation
                }
            }
        } onCancel: {
            Task { await self.cancelWait() }
        }
    }

    private func cancelWait() {
        if let wakeUp {
            self.wakeUp = nil
            wakeUp.resume()
        }
    }
}

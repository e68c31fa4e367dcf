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

/// Token quotas per API key: tokens used in the current period, read from the stored usage the
/// first time a key is seen in a period and counted in memory from then on. A lock, not an actor,
/// so the data plane checks a loaded key on its event loop (`rememberedCheck`).
public final class QuotaLedger: Sendable {
    struct Account {
        var periodStart: Date
        var used: Int
        /// Tokens held for requests admitted and not finished yet.
        var held = 0
    }

    /// Tokens held against a key's quota for one admitted request, until it is settled.
    struct Hold: Sendable {
        let keyID: String
        let periodStart: Date
        let tokens: Int
    }

    /// What is known about a key's quota without reading the store.
    enum Remembered {
        case withinQuota
        case spent(GantryError)
        /// The key's use this period has not been read yet: `check` reads it.
        case unknown
    }

    private let repository: any UsageRepository
    private let accounts = Mutex<[String: Account]>([:])

    public init(repository: any UsageRepository) {
        self.repository = repository
    }

    /// Throws `insufficient_quota` (429) once the key has used its quota for the period.
    public func check(keyID: String, limits: KeyLimits, now: Date = Date()) async throws {
        switch rememberedCheck(keyID: keyID, limits: limits, now: now) {
        case .withinQuota: return
        case .spent(let error): throw error
        case .unknown:
            let period = limits.quotaPeriod ?? .month
            let start = period.start(of: now)
            let stored = try await repository.tokensUsed(keyID: keyID, since: start)
            // Another request may have loaded it while this one waited for the store.
            accounts.withLock { accounts in
                if accounts[keyID]?.periodStart != start { accounts[keyID] = Account(periodStart: start, used: stored) }
            }
            if case .spent(let error) = rememberedCheck(keyID: keyID, limits: limits, now: now) { throw error }
        }
    }

    /// The quota check from memory alone.
    func rememberedCheck(keyID: String, limits: KeyLimits, now: Date = Date()) -> Remembered {
        guard let quota = limits.tokenQuota else { return .withinQuota }
        let period = limits.quotaPeriod ?? .month
        let start = period.start(of: now)
        guard let account = accounts.withLock({ $0[keyID] }), account.periodStart == start else { return .unknown }
        return Self.verdict(account, quota: quota, period: period, now: now)
    }

    /// Spent once what was used and what is held for requests in flight reach the quota: so
    /// concurrent requests cannot all pass a check that none of them has been counted in yet.
    private static func verdict(_ account: Account, quota: Int, period: QuotaPeriod, now: Date) -> Remembered {
        let used = account.used + account.held
        guard used < quota else {
            let inFlight = account.held > 0 ? " (\(account.held) of them held for requests in flight)" : ""
            return .spent(
                GantryError(
                    .rateLimited,
                    "You exceeded your current quota: this key used \(used) of its \(quota) tokens this \(period.rawValue)\(inFlight).",
                    code: "insufficient_quota", type: "insufficient_quota",
                    retryAfter: Int(period.end(of: now).timeIntervalSince(now).rounded(.up))))
        }
        return .withinQuota
    }

    /// Checks the quota from memory and, when within it, holds `tokens` (the request's
    /// reservation) until `settle`; one step under the lock. Nil without a quota or before the
    /// key's use this period is loaded (`check` loads it).
    func hold(keyID: String, limits: KeyLimits, tokens: Int, now: Date = Date()) throws -> Hold? {
        guard let quota = limits.tokenQuota else { return nil }
        let period = limits.quotaPeriod ?? .month
        let start = period.start(of: now)
        return try accounts.withLock { accounts -> Hold? in
            guard var account = accounts[keyID], account.periodStart == start else { return nil }
            if case .spent(let error) = Self.verdict(account, quota: quota, period: period, now: now) { throw error }
            account.held += tokens
            accounts[keyID] = account
            return Hold(keyID: keyID, periodStart: start, tokens: tokens)
        }
    }

    /// Ends a hold: its tokens are released and what the request used is counted instead.
    func settle(_ hold: Hold, tokens: Int) {
        accounts.withLock { accounts in
            guard var account = accounts[hold.keyID], account.periodStart == hold.periodStart else { return }
            account.held = max(0, account.held - hold.tokens)
            account.used += max(0, tokens)
            accounts[hold.keyID] = account
        }
    }

}

public import AsyncHTTPClient
import Foundation
public import GantryCore
import NIOCore
public import Prometheus
public import ServiceLifecycle
import Synchronization

/// What a gateway does with a limited request when no ledger answers and the grants it holds ran
/// out (`gateway.sharedLimitsFallback`).
public enum SharedLimitsFallback: String, Sendable, CaseIterable {
    /// 503: a limit that cannot be kept exactly is not risked.
    case refuse
    /// Each gateway enforces every limit on its own, as if it were the only one: N gateways may
    /// admit up to N times a limit until a ledger answers again.
    case local
}

/// A gateway's shared limits: requests are admitted against the grants and slots the leader's
/// ledger handed this process (`GrantPool`, under a lock, on the event loop), and a background
/// loop syncs with the ledger: every `interval` while anything is in use, and at once when a
/// request waits for a budget not here yet.
public final class SharedLimits: Service, Sendable {
    public typealias Transport = @Sendable (LimitSync) async throws -> LimitSyncAnswer

    let transport: Transport
    public let fallback: SharedLimitsFallback
    let gatewayID = "gw_" + UUID().uuidString.lowercased().prefix(12)
    let interval: Double
    private let pool = Mutex(GrantPool())
    private let origin = ContinuousClock.now

    /// Wakes the sync loop before its interval: a request waits for a budget.
    private let wakeups = WakeSignal()
    /// No sync before this (a warming ledger said when to come back).
    private let notBefore = Mutex<Double>(0)
    /// Syncs ended (answered or failed): requests waiting for a budget wait for the next.
    private let syncs: WakeGeneration
    /// Turns of the sync loop, for the test that it sleeps between them.
    let loopTurns = Atomic<Int>(0)
    let metrics: SharedLimitsMetrics?

    public init(
        fallback: SharedLimitsFallback, interval: Duration = .milliseconds(250), maxWaiting: Int = 2000,
        registry: PrometheusCollectorRegistry? = nil, transport: @escaping Transport
    ) {
        self.fallback = fallback
        self.metrics = registry.map { SharedLimitsMetrics(registry: $0, fallback: fallback) }
        self.transport = transport
        self.interval = interval.inSeconds
        self.syncs = WakeGeneration(maxWaiting: maxWaiting)
    }

    var now: Double { (ContinuousClock.now - origin).inSeconds }

    func take(_ needs: [LimitNeed], waitOver: Bool) -> GrantPool.Outcome {
        let outcome = pool.withLock { $0.take(needs, now: now, waitOver: waitOver) }
        switch outcome {
        case .wait:
            metrics?.waits.increment()
            wakeups.wake()
        case .unavailable:
            metrics?.fallbacks.increment()
        case .taken, .refused:
            break
        }
        return outcome
    }

    /// What this gateway admitted on grants in the last window, the first time requests follow
    /// the `local` fallback after an answer (`GrantPool.fallingBack`).
    func fallingBack() -> [WindowedUse]? {
        pool.withLock { $0.fallingBack(now: now) }
    }

    func settle(_ admission: SharedAdmission, tokens: Int) {
        guard !admission.settlesNothing else { return }
        pool.withLock { $0.settle(admission, tokens: tokens, now: now) }
    }

    func cancel(_ admission: SharedAdmission) {
        pool.withLock { $0.cancel(admission, now: now) }
    }

    /// Waits for the next sync to end (answered or failed), at most `timeout`. False at once when
    /// `maxWaiting` requests already wait.
    func nextSync(timeout: Duration) async -> Bool {
        await syncs.wait(after: syncs.generation, timeout: timeout)
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.wakeups.wait(atMost: .seconds(self.interval))
                self.loopTurns.add(1, ordering: .relaxed)
                let now = self.now
                let due = self.pool.withLock { $0.syncDue(now: now, interval: self.interval) }
                guard due, now >= self.notBefore.withLock({ $0 }) else { continue }
                await self.syncOnce()
            }
        }
    }

    /// One exchange with the ledger; a ledger that wants this gateway's past use gets it at once.
    func syncOnce() async {
        for _ in 0..<2 {
            let sentAt = now
            let sync = pool.withLock { $0.makeSync(gateway: gatewayID, now: sentAt) }
            do {
                let answer = try await transport(sync)
                pool.withLock { $0.apply(answer, sentAt: sentAt, now: now) }
                metrics?.syncsAnswered.increment()
                metrics?.ledgerReachable.set(Double(1))
                if let warming = answer.warmingSeconds {
                    notBefore.withLock { $0 = now + min(2, warming) }
                }
                if answer.wantsUsed, answer.warmingSeconds == nil { continue }
            } catch {
                // Returns that never left go with the next sync; requests stop waiting for a
                // ledger for a second and follow the fallback once their grants run out.
                metrics?.syncsFailed.increment()
                metrics?.ledgerReachable.set(Double(0))
                let requeue = ControlConnection.notServed(error) || error is LedgerUnavailable
                pool.withLock { pool in
                    if requeue { pool.requeue(sync.returns) }
                    pool.unreachable(now: now, for: 1)
                }
            }
            break
        }
        syncs.advance()
    }

    /// The transport of a gateway process: `POST /api/v1/limits/sync` to the control replicas,
    /// moving on from one that cannot be reached or is a standby.
    public static func httpTransport(control: ControlEndpoints, serviceSecret: String, httpClient: HTTPClient)
        -> Transport
    {
        { sync in
            let body = ByteBuffer(data: try JSONEncoder().encode(sync))
            return try await control.first(tryNext: ControlConnection.notServed) { base in
                var request = HTTPClientRequest(url: base + "/api/v1/limits/sync")
                request.method = .POST
                request.headers.add(name: "authorization", value: "Bearer \(serviceSecret)")
                request.headers.add(name: "content-type", value: "application/json")
                request.body = .bytes(body)
                let response = try await httpClient.execute(request, timeout: .seconds(2))
                let answer = try await response.body.collect(upTo: 16 << 20)
                if response.status == .serviceUnavailable { throw ControlConnection.Standby() }
                guard response.status == .ok else {
                    throw GantryError(.unavailable, "the ledger answered \(response.status.code)")
                }
                return try JSONDecoder().decode(LimitSyncAnswer.self, from: Data(buffer: answer))
            }
        }
    }
}

/// The ledger is not running in this process (it does not lead): nothing was counted.
public struct LedgerUnavailable: Error {}

/// The leader's ledger and what it needs that is not pure: the clock, and the stored usage a
/// quota account starts from. Holds a ledger only while this process leads.
public final class LimitLedgerHost: Sendable {
    let usage: any UsageRepository
    let settings: LimitLedger.Settings
    private let ledger = Mutex<LimitLedger?>(nil)
    private let origin = ContinuousClock.now

    public init(usage: any UsageRepository) {
        self.usage = usage
        self.settings = LimitLedger.Settings()
    }

    init(usage: any UsageRepository, settings: LimitLedger.Settings) {
        self.usage = usage
        self.settings = settings
    }

    var now: Double { (ContinuousClock.now - origin).inSeconds }

    /// This process leads: a new ledger, which first hears what gateways used under the last one.
    public func lead() {
        let now = now
        ledger.withLock { $0 = LimitLedger(settings: settings, now: now) }
    }

    public func stepDown() {
        ledger.withLock { $0 = nil }
    }

    public var isLeading: Bool { ledger.withLock { $0 != nil } }

    public func sync(_ sync: LimitSync) async throws -> LimitSyncAnswer {
        guard let toLoad = ledger.withLock({ $0?.quotaToLoad(sync) }) else { throw LedgerUnavailable() }
        for (resource, periodStart) in toLoad {
            let since = Date(timeIntervalSince1970: periodStart)
            let quota =
                sync.asks.first { $0.resource == resource }?.limit ?? sync.used?.first { $0.resource == resource }?.limit
                ?? 0
            let used: Int
            if resource.scope.hasPrefix("key:") {
                used = try await usage.tokensUsed(keyID: String(resource.scope.dropFirst(4)), since: since)
            } else if resource.scope.hasPrefix("user:") {
                used = try await usage.tokensUsed(userID: String(resource.scope.dropFirst(5)), since: since)
            } else {
                continue
            }
            let now = now
            ledger.withLock { $0?.loadQuota(resource, periodStart: periodStart, quota: quota, used: used, now: now) }
        }
        let now = now
        return try ledger.withLock { ledger in
            guard ledger != nil else { throw LedgerUnavailable() }
            return ledger!.sync(sync, now: now)
        }
    }
}

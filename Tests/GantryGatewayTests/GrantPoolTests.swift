import Prometheus
import Synchronization
import Testing

@testable import GantryGateway

/// A gateway's grants, one rule at a time: what waits, what is refused, what follows the fallback,
/// and where unused tokens go.
@Suite("Grant pool")
struct GrantPoolTests {
    static let tokens = LimitResource(kind: .tokens, scope: "k:a")
    static let need = LimitNeed(resource: tokens, limit: 1000, amount: 100, label: "key")

    static func answer(
        grants: [LimitSyncAnswer.Grant] = [], exhausted: [LimitSyncAnswer.Exhausted] = [], warming: Double? = nil
    ) -> LimitSyncAnswer {
        var answer = LimitSyncAnswer(
            ledger: "l1", lifetimeSeconds: 2, grants: grants, exhausted: exhausted, slots: [], wantsUsed: false)
        answer.warmingSeconds = warming
        return answer
    }

    @Test("no grant yet: the request waits and the next sync asks for what it needs")
    func waitsThenAsks() {
        var pool = GrantPool()
        guard case .wait = pool.take([Self.need], now: 0, waitOver: false) else {
            Issue.record("a request with no grant waits for a sync")
            return
        }
        #expect(pool.syncDue(now: 0, interval: 0.25))
        let sync = pool.makeSync(gateway: "g", now: 0)
        #expect(sync.asks.map(\.resource) == [Self.tokens])
        #expect(sync.asks.first?.need == 100)
        #expect(sync.used == [], "a gateway's first sync tells the ledger it used nothing before it")
        pool.apply(Self.answer(grants: [.init(id: 1, resource: Self.tokens, amount: 150)]), sentAt: 0, now: 0.01)
        guard case .taken(let admission) = pool.take([Self.need], now: 0.02, waitOver: false) else {
            Issue.record("the grant admits it")
            return
        }
        // 50 left: a second request of 100 does not fit and waits.
        guard case .wait = pool.take([Self.need], now: 0.03, waitOver: false) else {
            Issue.record("what the grant has left is not enough")
            return
        }
        // Used 30 of its 100 while the grant lasts: the 70 are usable again here.
        pool.settle(admission, tokens: 30, now: 0.04)
        guard case .taken(let second) = pool.take([Self.need], now: 0.05, waitOver: false) else {
            Issue.record("the unused reservation went back to the grant")
            return
        }
        // After the grant expired, unused tokens go back to the ledger, and so does what it had left.
        pool.settle(second, tokens: 10, now: 3)
        let later = pool.makeSync(gateway: "g", now: 3)
        #expect(later.returns.reduce(0) { $0 + $1.amount } == 90 + 20)
    }

    @Test("the x-ratelimit headers count every gateway: what the ledger has left plus this gateway's grants")
    func headersCountEveryGateway() {
        var ledger = LimitLedger(settings: .init(warmUp: 0), now: 0)
        let requests = LimitResource(kind: .requests, scope: "k:a")
        let need = LimitNeed(resource: requests, limit: 100, amount: 1, label: "key")
        var pools = [GrantPool(), GrantPool()]
        // Two gateways each take a grant; the second uses all of its own.
        for (index, gateway) in ["g1", "g2"].enumerated() {
            _ = pools[index].take([need], now: 0, waitOver: false)
            var sync = pools[index].makeSync(gateway: gateway, now: 0)
            sync.used = []
            let answer = ledger.sync(sync, now: 0)
            #expect(answer.standings?.first?.resource == requests)
            pools[index].apply(answer, sentAt: 0, now: 0)
        }
        var last = RateLimitStatus()
        var taken = 0
        while case .taken(let admission) = pools[1].take([need], now: 0.1, waitOver: false) {
            last = admission.status
            taken += 1
        }
        #expect(taken > 0)
        // g1's grant is unused and not counted as room: the figure errs low, never high.
        let g1Grant = pools[0].grants.values.reduce(0) { $0 + $1.left }
        #expect(g1Grant > 0)
        #expect(last.limitRequests == 100)
        #expect(last.remainingRequests == 100 - g1Grant - taken)
        let reset = last.resetRequests.map { $0.inSeconds } ?? 0
        #expect(reset > 60 && reset <= 62, "the oldest grant counts 62 s after issue: \(reset)")
        #expect(last.limitTokens == nil, "no tokens limit, no tokens headers")
    }

    @Test("falling back to its own windows, a gateway counts what it admitted on grants in the last minute")
    func fallbackCountsGrantedUse() {
        var pool = GrantPool()
        let requests = LimitResource(kind: .requests, scope: "k:a")
        let need = LimitNeed(resource: requests, limit: 6, amount: 1, label: "key")
        _ = pool.take([need], now: 0, waitOver: false)
        pool.apply(Self.answer(grants: [.init(id: 1, resource: requests, amount: 5)]), sentAt: 0, now: 0)
        for _ in 0..<5 {
            guard case .taken = pool.take([need], now: 0.5, waitOver: false) else {
                Issue.record("the grant admits five")
                return
            }
        }
        // The ledger is gone; the grant expired.
        pool.unreachable(now: 3, for: 1)
        let used = pool.fallingBack(now: 10)
        #expect(used == [WindowedUse(scopeID: "k:a", requests: 5, tokens: 0, age: 10)])
        #expect(pool.fallingBack(now: 11) == nil, "told once per fall-back")

        let limiter = RateLimiter()
        limiter.record(used ?? [])
        let scope = LimitScope(kind: "key", id: "k:a", requestsPerMinute: 6, tokensPerMinute: nil, concurrentRequests: nil)
        #expect((try? limiter.admit([scope], tokens: 1).get()) != nil, "one more fits the limit of 6")
        #expect((try? limiter.admit([scope], tokens: 1).get()) == nil, "the five admitted on grants count")
        #expect(limiter.requestsInWindow("k:a") == 6)

        // A ledger answers again, then goes away again: told again.
        pool.apply(Self.answer(), sentAt: 12, now: 12)
        #expect(pool.fallingBack(now: 20) != nil)
    }

    @Test("only an admission of requests per minute alone skips its settlement")
    func settlesNothing() {
        let requests = LimitResource(kind: .requests, scope: "k:a")
        let slot = LimitResource(kind: .concurrent, scope: "k:a")
        #expect(SharedAdmission(parts: [.init(grant: 1, resource: requests, amount: 1)], slots: []).settlesNothing)
        #expect(!SharedAdmission(parts: [.init(grant: 1, resource: requests, amount: 1)], slots: [slot]).settlesNothing)
        #expect(
            !SharedAdmission(
                parts: [.init(grant: 1, resource: requests, amount: 1), .init(grant: 2, resource: Self.tokens, amount: 9)],
                slots: []
            ).settlesNothing)
    }

    @Test("the ledger said nothing is left: refused at once, without waiting, until the retry time")
    func exhaustedIsRefused() {
        var pool = GrantPool()
        _ = pool.take([Self.need], now: 0, waitOver: false)
        _ = pool.makeSync(gateway: "g", now: 0)
        pool.apply(Self.answer(exhausted: [.init(resource: Self.tokens, retryAfterSeconds: 30)]), sentAt: 0, now: 0.01)
        guard case .refused(let need, let retry) = pool.take([Self.need], now: 0.02, waitOver: false) else {
            Issue.record("an exhausted budget refuses")
            return
        }
        #expect(need.resource == Self.tokens)
        // Asked again within a second: another gateway may have given budget back.
        #expect(retry <= 1)
        guard case .wait = pool.take([Self.need], now: 1.5, waitOver: false) else {
            Issue.record("after the retry time the gateway asks again")
            return
        }
    }

    @Test("a warming ledger refuses nothing: requests keep waiting")
    func warmingWaits() {
        var pool = GrantPool()
        _ = pool.take([Self.need], now: 0, waitOver: false)
        _ = pool.makeSync(gateway: "g", now: 0)
        pool.apply(
            Self.answer(exhausted: [.init(resource: Self.tokens, retryAfterSeconds: 1)], warming: 1), sentAt: 0, now: 0.01)
        guard case .wait = pool.take([Self.need], now: 0.02, waitOver: false) else {
            Issue.record("a request waits through a new ledger's warm-up")
            return
        }
    }

    @Test("no ledger answers: requests follow the fallback at once, not after a wait")
    func unreachable() {
        var pool = GrantPool()
        _ = pool.take([Self.need], now: 0, waitOver: false)
        let sync = pool.makeSync(gateway: "g", now: 0)
        pool.unreachable(now: 0.01, for: 1)
        guard case .unavailable = pool.take([Self.need], now: 0.02, waitOver: false) else {
            Issue.record("with no ledger answering, a request does not wait")
            return
        }
        // Returns that never left go with the next sync.
        pool.requeue(sync.returns + [.init(grant: 7, amount: 5)])
        #expect(pool.makeSync(gateway: "g", now: 1.5).returns.contains(.init(grant: 7, amount: 5)))
        // A request that already waited for a sync follows the fallback too.
        var fresh = GrantPool()
        guard case .unavailable = fresh.take([Self.need], now: 0, waitOver: true) else {
            Issue.record("past its wait, a request follows the fallback")
            return
        }
    }

    @Test("an operator sees the syncs, whether the ledger answers, the waits and the fallbacks")
    func metrics() async {
        let registry = PrometheusCollectorRegistry()
        let failing = Atomic<Bool>(true)
        let limits = SharedLimits(fallback: .local, registry: registry) { sync in
            if failing.load(ordering: .relaxed) { throw LedgerUnavailable() }
            var answer = Self.answer(grants: sync.asks.map { .init(id: 1, resource: $0.resource, amount: 1000) })
            answer.standings = []
            return answer
        }
        func emitted() -> String {
            var bytes: [UInt8] = []
            registry.emit(into: &bytes)
            return String(decoding: bytes, as: UTF8.self)
        }
        guard case .wait = limits.take([Self.need], waitOver: false) else {
            Issue.record("no grant yet: the request waits")
            return
        }
        await limits.syncOnce()
        guard case .unavailable = limits.take([Self.need], waitOver: false) else {
            Issue.record("no ledger answered: the fallback decides")
            return
        }
        #expect(emitted().contains(#"gantry_shared_limits_syncs_total{result="failed"} 1"#))
        #expect(emitted().contains("gantry_shared_limits_ledger_reachable 0"))
        failing.store(false, ordering: .relaxed)
        await limits.syncOnce()
        guard case .taken = limits.take([Self.need], waitOver: false) else {
            Issue.record("the ledger answered with a grant")
            return
        }
        let text = emitted()
        #expect(text.contains(#"gantry_shared_limits_syncs_total{result="answered"} 1"#))
        #expect(text.contains("gantry_shared_limits_ledger_reachable 1"))
        #expect(text.contains("gantry_shared_limits_waits_total 1"))
        #expect(text.contains(#"gantry_shared_limits_fallbacks_total{fallback="local"} 1"#))
    }

    @Test("a slot given up is not used before the ledger hears of it")
    func slotsReleasedFirst() {
        let concurrent = LimitResource(kind: .concurrent, scope: "s:x")
        let need = LimitNeed(resource: concurrent, limit: 4, amount: 1, label: "model")
        var pool = GrantPool()
        _ = pool.take([need], now: 0, waitOver: false)
        _ = pool.makeSync(gateway: "g", now: 0)
        var answer = Self.answer()
        answer.slots = [.init(resource: concurrent, held: 3)]
        pool.apply(answer, sentAt: 0, now: 0.01)
        guard case .taken(let admission) = pool.take([need], now: 0.02, waitOver: false) else {
            Issue.record("a held slot admits")
            return
        }
        pool.settle(admission, tokens: 0, now: 0.03)
        // Idle for 2 s: the next sync wants none, and the pool stops using them before sending it.
        let sync = pool.makeSync(gateway: "g", now: 2.5)
        #expect(sync.slots.first?.want == 0)
        #expect(pool.demands[concurrent] == nil)
    }
}

/// The sync loop of a gateway's shared limits sleeps between turns, also after a request woke it.
@Suite("Shared limits sync loop")
struct SharedLimitsLoopTests {
    @Test("a wake-up costs one turn, not a busy loop")
    func sleepsBetweenTurns() async throws {
        let limits = SharedLimits(fallback: .local, interval: .milliseconds(100)) { _ in
            throw LedgerUnavailable()
        }
        let started = ContinuousClock.now
        let loop = Task { try await limits.run() }
        defer { loop.cancel() }
        let need = LimitNeed(resource: .init(kind: .requests, scope: "k:a"), limit: 10, amount: 1, label: "key")
        // No grant: the request waits and wakes the loop.
        guard case .wait = limits.take([need], waitOver: false) else {
            Issue.record("a request with no grant waits")
            return
        }
        try await Task.sleep(for: .milliseconds(600))
        // One turn per 100 ms at most (and a few for wake-ups); a loop woken by its own cancelled
        // timers turns thousands of times. No lower bound: a busy test machine may delay turns.
        let turns = limits.loopTurns.load(ordering: .relaxed)
        let elapsed = (ContinuousClock.now - started).inSeconds
        #expect(Double(turns) <= elapsed / 0.1 + 5, "\(turns) turns in \(elapsed) s")
    }
}

import Foundation
import GantryCore
import Testing

@testable import GantryGateway

/// The quota ledger: what is used and what requests in flight hold, told apart; and the wait of a
/// request refused only for what is held.
@Suite("Quota ledger")
struct QuotaLedgerTests {
    /// No stored use: every account starts the period at 0.
    struct NoUsage: UsageRepository {
        func recordUsage(_ records: [UsageRecord]) async throws {}
        func usage(_ query: UsageQuery) async throws -> [UsageRecord] { [] }
        func dailyUsage(_ query: UsageQuery) async throws -> [DailyUsage] { [] }
        func tokensUsed(keyID: String, since: Date) async throws -> Int { 0 }
        func tokensUsed(userID: String, since: Date) async throws -> Int { 0 }
    }

    static let scope = QuotaScope(holder: .key("k"), limits: UsageLimits(tokenQuota: 100, quotaPeriod: .day))!

    @Test("a quota held by requests in flight is not spent: the request may wait; a used-up one is spent")
    func heldIsNotSpent() async throws {
        let ledger = QuotaLedger(repository: NoUsage())
        try await ledger.check([Self.scope])
        guard case .held(let first?) = ledger.hold([Self.scope], tokens: 100) else {
            Issue.record("the first request is held")
            return
        }
        guard case .heldInFlight = ledger.hold([Self.scope], tokens: 10) else {
            Issue.record("a request while the quota is held waits")
            return
        }
        ledger.settle(first, tokens: 30)
        guard case .held(let second?) = ledger.hold([Self.scope], tokens: 70) else {
            Issue.record("what the first did not use is free again")
            return
        }
        ledger.settle(second, tokens: 70)
        guard case .spent = ledger.hold([Self.scope], tokens: 1) else {
            Issue.record("used up: spent, no wait")
            return
        }
    }

    @Test("a waiting request wakes at the next settlement, not at its timeout; the wait is bounded in time and number")
    func settlementWakesWaiters() async throws {
        let ledger = QuotaLedger(repository: NoUsage())
        try await ledger.check([Self.scope])
        guard case .held(let first?) = ledger.hold([Self.scope], tokens: 100) else {
            Issue.record("the first request is held")
            return
        }
        let count = ledger.settlementCount
        let started = ContinuousClock.now
        async let waited = ledger.settlement(after: count, timeout: .seconds(60))
        ledger.settle(first, tokens: 10)
        #expect(await waited)
        #expect(ContinuousClock.now - started < .seconds(30), "woken by the settlement")
        #expect(ledger.settlementCount == count + 1)

        let quiet = ContinuousClock.now
        #expect(await ledger.settlement(after: ledger.settlementCount, timeout: .milliseconds(50)))
        #expect(ContinuousClock.now - quiet >= .milliseconds(50), "without a settlement, the timeout ends the wait")

        let full = QuotaLedger(repository: NoUsage(), maxWaiting: 0)
        #expect(await !full.settlement(after: 0, timeout: .seconds(60)), "no room to wait: refused at once")
    }
}

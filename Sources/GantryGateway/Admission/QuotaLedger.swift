public import Foundation
public import GantryCore
import Synchronization

/// One token quota a request counts against: its key's or its user's (every credential of the
/// user together, so a new key does not start a fresh quota).
public struct QuotaScope: Sendable, Equatable {
    /// Also the ledger's account: keys and users never share one.
    public enum Holder: Sendable, Hashable {
        case key(String)
        case user(String)
    }

    public let holder: Holder
    public let quota: Int
    public let period: QuotaPeriod

    /// Nil when `limits` set no quota.
    public init?(holder: Holder, limits: UsageLimits?) {
        guard let quota = limits?.tokenQuota else { return nil }
        self.holder = holder
        self.quota = quota
        self.period = limits?.quotaPeriod ?? .month
    }

    /// The user's quota first: it is the one a new key cannot escape.
    public static func scopes(for principal: Principal) -> [QuotaScope] {
        [
            QuotaScope(holder: .user(principal.userID), limits: principal.userLimits),
            principal.keyID.flatMap { QuotaScope(holder: .key($0), limits: principal.keyLimits) },
        ].compactMap { $0 }
    }

    var whose: String {
        switch holder {
        case .key: "this key"
        case .user: "your user (all your keys and logins together)"
        }
    }
}

/// Token quotas per API key and per user: tokens used in the current period, read from the stored
/// usage the first time an account is seen in a period and counted in memory from then on. A lock,
/// not an actor, so the data plane checks loaded accounts on its event loop (`rememberedCheck`).
public final class QuotaLedger: Sendable {
    struct Account {
        var periodStart: Date
        var used: Int
        /// Tokens held for requests admitted and not finished yet.
        var held = 0
    }

    /// Tokens held against every quota of one admitted request, until it is settled.
    struct Hold: Sendable {
        let accounts: [(holder: QuotaScope.Holder, periodStart: Date)]
        let tokens: Int
    }

    /// What is known about a request's quotas without reading the store.
    enum Remembered {
        case withinQuota
        case spent(GantryError)
        /// Not used up, but what requests in flight hold reaches the quota: once they settle
        /// (most use less than they hold) there may be room again.
        case heldInFlight(GantryError)
        /// Some account's use this period has not been read yet: `check` reads it.
        case unknown
    }

    /// The outcome of `hold`.
    enum HoldOutcome {
        /// Nil without a quota loaded for this period.
        case held(Hold?)
        case spent(GantryError)
        case heldInFlight(GantryError)
    }

    private let repository: any UsageRepository
    private let accounts = Mutex<[QuotaScope.Holder: Account]>([:])
    /// Settlements so far, and the requests waiting for the next one (`settlement(after:)`).
    /// At most `maxWaiting` requests wait for a settlement at once; more are refused at once.
    private let settlements: WakeGeneration

    public init(repository: any UsageRepository, maxWaiting: Int = 1000) {
        self.repository = repository
        self.settlements = WakeGeneration(maxWaiting: maxWaiting)
    }

    /// Throws `insufficient_quota` (429) once any of the quotas is used for its period.
    public func check(_ scopes: [QuotaScope], now: Date = Date()) async throws {
        for scope in scopes {
            let start = scope.period.start(of: now)
            guard accounts.withLock({ $0[scope.holder]?.periodStart != start }) else { continue }
            let stored: Int
            switch scope.holder {
            case .key(let id): stored = try await repository.tokensUsed(keyID: id, since: start)
            case .user(let id): stored = try await repository.tokensUsed(userID: id, since: start)
            }
            // Another request may have loaded it while this one waited for the store.
            accounts.withLock { accounts in
                if accounts[scope.holder]?.periodStart != start {
                    accounts[scope.holder] = Account(periodStart: start, used: stored)
                }
            }
        }
        if case .spent(let error) = rememberedCheck(scopes, now: now) { throw error }
    }

    /// How many settlements there have been: `settlement(after:)` waits for the next one.
    var settlementCount: UInt64 { settlements.generation }

    /// Waits until a hold is settled after `count`, or `timeout` passes: a request refused only
    /// for what requests in flight hold then decides again. Woken by `settle`, not polling. False,
    /// at once, when `maxWaiting` requests already wait: the caller refuses then.
    func settlement(after count: UInt64, timeout: Duration) async -> Bool {
        await settlements.wait(after: count, timeout: timeout)
    }

    /// The quota check from memory alone.
    func rememberedCheck(_ scopes: [QuotaScope], now: Date = Date()) -> Remembered {
        guard !scopes.isEmpty else { return .withinQuota }
        return accounts.withLock { accounts in
            var verdict = Remembered.withinQuota
            for scope in scopes {
                guard let account = accounts[scope.holder], account.periodStart == scope.period.start(of: now) else {
                    verdict = .unknown
                    continue
                }
                switch Self.verdict(account, scope: scope, now: now) {
                case .spent(let error): return .spent(error)
                case .heldInFlight(let error): verdict = .heldInFlight(error)
                case .withinQuota, .unknown: break
                }
            }
            return verdict
        }
    }

    /// Spent once what was used and what is held for requests in flight reach the quota: so
    /// concurrent requests cannot all pass a check that none of them has been counted in yet.
    private static func verdict(_ account: Account, scope: QuotaScope, now: Date) -> Remembered {
        let used = account.used + account.held
        guard used < scope.quota else {
            let inFlight = account.held > 0 ? " (\(account.held) of them held for requests in flight)" : ""
            let error = GantryError(
                .rateLimited,
                "You exceeded your current quota: \(scope.whose) used \(used) of its \(scope.quota) tokens this \(scope.period.rawValue)\(inFlight).",
                code: "insufficient_quota", type: "insufficient_quota",
                retryAfter: Int(scope.period.end(of: now).timeIntervalSince(now).rounded(.up)))
            return account.used < scope.quota ? .heldInFlight(error) : .spent(error)
        }
        return .withinQuota
    }

    /// Checks every quota from memory and, when all are within, holds `tokens` (the request's
    /// reservation) in each until `settle`; one step under the lock. Nil without a quota. An
    /// account not loaded for this period (`check` loads it) is left out of the hold.
    func hold(_ scopes: [QuotaScope], tokens: Int, now: Date = Date()) -> HoldOutcome {
        guard !scopes.isEmpty else { return .held(nil) }
        return accounts.withLock { accounts -> HoldOutcome in
            var held: [(holder: QuotaScope.Holder, periodStart: Date)] = []
            var waiting: GantryError?
            for scope in scopes {
                let start = scope.period.start(of: now)
                guard let account = accounts[scope.holder], account.periodStart == start else { continue }
                switch Self.verdict(account, scope: scope, now: now) {
                case .spent(let error): return .spent(error)
                case .heldInFlight(let error): waiting = error
                case .withinQuota, .unknown: held.append((scope.holder, start))
                }
            }
            if let waiting { return .heldInFlight(waiting) }
            for (holder, _) in held { accounts[holder]?.held += tokens }
            return .held(held.isEmpty ? nil : Hold(accounts: held, tokens: tokens))
        }
    }

    /// Ends a hold: its tokens are released and what the request used is counted instead.
    func settle(_ hold: Hold, tokens: Int) {
        accounts.withLock { accounts in
            for (holder, periodStart) in hold.accounts {
                guard var account = accounts[holder], account.periodStart == periodStart else { continue }
                account.held = max(0, account.held - hold.tokens)
                account.used += max(0, tokens)
                accounts[holder] = account
            }
        }
        settlements.advance()
    }
}

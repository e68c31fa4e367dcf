import Foundation

/// The leader's share-out of every limit and quota among the gateways: the one place that knows
/// what all of them admitted, without being asked per request. Pure: it holds no lock, does no
/// I/O and reads no clock (`now` is seconds on the leader's monotonic clock); `LimitLedgerHost`
/// is its shell.
///
/// The scheme, per kind of limit (prior art: Google's Doorman, CockroachDB's token buckets):
/// - **Per-minute budgets** (requests, tokens): a gateway is granted part of a scope's budget and
///   admits against it locally until `lifetime` seconds after it *sent* its sync, so every request
///   admitted on a grant is admitted within `lifetime` after the ledger issued it. A grant counts
///   against its scope for `window + lifetime` seconds after issue, less what the gateway gave
///   back, so in any 60 s window what all gateways admitted together is at most the limit. A
///   gateway gives back what a grant had left when it expired, and the tokens a request reserved
///   and did not use. Under demand above a limit, this admits at least `window / (window +
///   lifetime)` of it (97 % with the default 2 s).
/// - **Concurrency**: each gateway holds slots; what it runs is always counted, and what it may
///   add is granted out of what no gateway holds. A gateway that stops syncing loses its slots
///   `slotExpiry` after its last sync; it stops admitting on them sooner (`lifetime`).
/// - **Quotas**: a key's or user's tokens this period, read from the stored usage when the ledger
///   first meets the account, then counted here: grants minus returns.
///
/// A new ledger (a new leader) grants nothing for `warmUp` seconds while the gateways tell it what
/// they used under the previous one (`LimitSync.used`), so a failover does not hand out a minute's
/// budget twice.
struct LimitLedger {
    static let window: Double = 60

    struct Settings: Sendable {
        /// How long a gateway may admit against a grant, from when it asked.
        var lifetime: Double = 2
        /// How long a gateway keeps its concurrency slots without syncing.
        var slotExpiry: Double = 3
        /// How long a new ledger waits for gateways' past use before granting.
        var warmUp: Double = 1.5
    }

    struct Grant {
        let id: UInt64
        let issuedAt: Double
        let amount: Int
        /// What still counts: the amount less what came back.
        var counted: Int
    }

    /// A per-minute budget of one scope.
    struct Windowed {
        var limit: Int
        var grants: [Grant] = []
        /// When each gateway last asked: the budget is shared among recent askers.
        var askers: [String: Double] = [:]
        var counted: Int { grants.reduce(0) { $0 + $1.counted } }
    }

    /// A quota account for one period.
    struct Quota {
        var quota: Int
        var periodStart: Double
        /// Stored use when loaded, plus grants, less returns.
        var used: Int
        var grants: [UInt64: Grant] = [:]
        var lastAsked: Double
    }

    struct Holding {
        var held: Int
        var renewedAt: Double
    }

    struct Concurrency {
        var limit: Int
        var holders: [String: Holding] = [:]
    }

    let id: String
    let settings: Settings
    private let warmUntil: Double
    private var nextGrant: UInt64 = 1
    private(set) var windowed: [LimitResource: Windowed] = [:]
    private(set) var quotas: [LimitResource: Quota] = [:]
    private(set) var concurrency: [LimitResource: Concurrency] = [:]
    /// Which resource each live grant belongs to, for returns.
    private var grantResources: [UInt64: LimitResource] = [:]
    /// Gateways whose past use was received (or who had none to send).
    private var caughtUp: Set<String> = []

    init(id: String = "ledger_" + UUID().uuidString.lowercased().prefix(12), settings: Settings = Settings(), now: Double) {
        self.id = id
        self.settings = settings
        self.warmUntil = now + settings.warmUp
    }

    /// A quota account this sync needs that is not loaded for its period: the host reads its use.
    func quotaToLoad(_ sync: LimitSync) -> [(resource: LimitResource, periodStart: Double)] {
        var needed: [LimitResource: Double] = [:]
        for ask in sync.asks where ask.resource.kind == .quota {
            if let start = ask.periodStart, quotas[ask.resource]?.periodStart != start { needed[ask.resource] = start }
        }
        for used in sync.used ?? [] where used.resource.kind == .quota {
            if let start = used.periodStart, quotas[used.resource]?.periodStart != start {
                needed[used.resource] = start
            }
        }
        return needed.map { ($0.key, $0.value) }
    }

    /// The stored use of a quota account this period (`quotaToLoad`).
    mutating func loadQuota(_ resource: LimitResource, periodStart: Double, quota: Int, used: Int, now: Double) {
        guard quotas[resource]?.periodStart != periodStart else { return }
        if let old = quotas[resource] { for id in old.grants.keys { grantResources[id] = nil } }
        quotas[resource] = Quota(quota: quota, periodStart: periodStart, used: used, lastAsked: now)
    }

    mutating func sync(_ sync: LimitSync, now: Double) -> LimitSyncAnswer {
        var answer = LimitSyncAnswer(
            ledger: id, lifetimeSeconds: settings.lifetime, grants: [], exhausted: [], slots: [], wantsUsed: false)
        prune(now: now)
        for item in sync.returns { giveBack(item.grant, amount: item.amount) }
        if let used = sync.used, !caughtUp.contains(sync.gateway) {
            seed(used, now: now)
            caughtUp.insert(sync.gateway)
        } else if sync.used == nil, sync.ledger != id {
            // Back from another ledger (or this one's first word from it): what it used there is
            // owed first.
            caughtUp.remove(sync.gateway)
        }
        // A gateway that has not told this ledger what it used under the previous one gets
        // nothing new until it has: it asks again at once.
        let owesUse = !caughtUp.contains(sync.gateway)
        answer.wantsUsed = owesUse
        let warming = now < warmUntil
        if warming { answer.warmingSeconds = warmUntil - now }
        for slots in sync.slots {
            answer.slots.append(
                .init(resource: slots.resource, held: hold(slots, gateway: sync.gateway, grow: !warming && !owesUse, now: now)))
        }
        for ask in sync.asks {
            if warming || owesUse {
                answer.exhausted.append(.init(resource: ask.resource, retryAfterSeconds: max(0, warmUntil - now)))
                continue
            }
            switch grant(ask, gateway: sync.gateway, now: now) {
            case .granted(let grant): answer.grants.append(grant)
            case .exhausted(let retry): answer.exhausted.append(.init(resource: ask.resource, retryAfterSeconds: retry))
            }
            if let standing = standing(of: ask.resource, now: now) {
                answer.standings = (answer.standings ?? []) + [standing]
            }
        }
        return answer
    }

    /// What a per-minute budget has left to grant, and when its oldest counted grant stops
    /// counting (a whole window when nothing counts).
    func standing(of resource: LimitResource, now: Double) -> LimitSyncAnswer.Standing? {
        guard let budget = windowed[resource] else { return nil }
        let oldest = budget.grants.filter { $0.counted > 0 }.map(\.issuedAt).min()
        let reset = oldest.map { max(0, $0 + Self.window + settings.lifetime - now) } ?? Self.window
        return .init(resource: resource, remaining: max(0, budget.limit - budget.counted), resetSeconds: reset)
    }

    enum Outcome {
        case granted(LimitSyncAnswer.Grant)
        case exhausted(retryAfter: Double)
    }

    private mutating func grant(_ ask: LimitSync.Ask, gateway: String, now: Double) -> Outcome {
        let need = max(1, ask.need)
        switch ask.resource.kind {
        case .requests, .tokens:
            var budget = windowed[ask.resource] ?? Windowed(limit: ask.limit)
            budget.limit = ask.limit
            budget.askers[gateway] = now
            defer { windowed[ask.resource] = budget }
            let available = budget.limit - budget.counted
            guard available >= need else {
                return .exhausted(retryAfter: Self.timeUntilFree(budget.grants, needed: need - available, now: now, settings))
            }
            let askers = budget.askers.values.filter { now - $0 <= 2 * settings.lifetime }.count
            let amount = min(max(ask.want, need), max(need, available / max(1, askers)), available)
            let grant = Grant(id: takeGrantID(), issuedAt: now, amount: amount, counted: amount)
            budget.grants.append(grant)
            grantResources[grant.id] = ask.resource
            return .granted(.init(id: grant.id, resource: ask.resource, amount: amount))
        case .quota:
            // The host loaded the account for this period first; without it nothing is known.
            guard var account = quotas[ask.resource], account.periodStart == ask.periodStart else {
                return .exhausted(retryAfter: 1)
            }
            account.quota = ask.limit
            account.lastAsked = now
            defer { quotas[ask.resource] = account }
            let available = account.quota - account.used
            guard available >= need else { return .exhausted(retryAfter: 60) }
            let amount = min(max(ask.want, need), available)
            let grant = Grant(id: takeGrantID(), issuedAt: now, amount: amount, counted: amount)
            account.grants[grant.id] = grant
            account.used += amount
            grantResources[grant.id] = ask.resource
            return .granted(.init(id: grant.id, resource: ask.resource, amount: amount))
        case .concurrent:
            return .exhausted(retryAfter: 1)
        }
    }

    /// What the gateway runs is counted whatever the limit (it is running); more is granted only
    /// out of what no other gateway holds.
    private mutating func hold(_ slots: LimitSync.Slots, gateway: String, grow: Bool, now: Double) -> Int {
        var budget = concurrency[slots.resource] ?? Concurrency(limit: slots.limit)
        budget.limit = slots.limit
        let inUse = max(0, slots.inUse)
        let others = budget.holders.filter { $0.key != gateway }.values.reduce(0) { $0 + $1.held }
        let extra = grow ? max(0, min(slots.want - inUse, budget.limit - others - inUse)) : 0
        let held = inUse + extra
        budget.holders[gateway] = held > 0 ? Holding(held: held, renewedAt: now) : nil
        concurrency[slots.resource] = budget.holders.isEmpty ? nil : budget
        return held
    }

    private mutating func giveBack(_ id: UInt64, amount: Int) {
        guard let resource = grantResources[id] else { return }
        switch resource.kind {
        case .requests, .tokens:
            guard var budget = windowed[resource], let index = budget.grants.firstIndex(where: { $0.id == id }) else {
                return
            }
            // Never below zero: a gateway cannot give back more than it was granted.
            let counted = budget.grants[index].counted
            budget.grants[index].counted = counted - min(amount, counted)
            windowed[resource] = budget
        case .quota:
            guard var account = quotas[resource], var grant = account.grants[id] else { return }
            let back = min(amount, grant.counted)
            grant.counted -= back
            account.used -= back
            account.grants[id] = grant
            quotas[resource] = account
        case .concurrent:
            return
        }
    }

    /// What a gateway used under the previous ledger, counted as grants of their time.
    private mutating func seed(_ used: [LimitSync.Used], now: Double) {
        for item in used where item.amount > 0 {
            switch item.resource.kind {
            case .requests, .tokens:
                guard item.age < Self.window + settings.lifetime else { continue }
                var budget = windowed[item.resource] ?? Windowed(limit: item.limit)
                budget.grants.append(
                    Grant(id: takeGrantID(), issuedAt: now - max(0, item.age), amount: item.amount, counted: item.amount))
                windowed[item.resource] = budget
            case .quota:
                guard var account = quotas[item.resource], account.periodStart == item.periodStart else { continue }
                account.used += item.amount
                quotas[item.resource] = account
            case .concurrent:
                continue
            }
        }
    }

    /// Forgets grants past the window, holdings past their expiry, and idle accounts, so memory
    /// follows the active scopes only.
    private mutating func prune(now: Double) {
        let horizon = now - Self.window - settings.lifetime
        for (resource, var budget) in windowed {
            let before = budget.grants.count
            budget.grants.removeAll { grant in
                guard grant.issuedAt < horizon else { return false }
                grantResources[grant.id] = nil
                return true
            }
            budget.askers = budget.askers.filter { now - $0.value <= 2 * settings.lifetime }
            if budget.grants.isEmpty, budget.askers.isEmpty {
                windowed[resource] = nil
            } else if budget.grants.count != before || !budget.askers.isEmpty {
                windowed[resource] = budget
            }
        }
        for (resource, var account) in quotas {
            // A grant's returns come within a request's run; an hour on, what is left counts.
            for (id, grant) in account.grants where now - grant.issuedAt > 3600 {
                account.grants[id] = nil
                grantResources[id] = nil
            }
            // Read from the store again when next needed (its records are written by then).
            if account.grants.isEmpty, now - account.lastAsked > 600 {
                quotas[resource] = nil
            } else {
                quotas[resource] = account
            }
        }
        for (resource, var budget) in concurrency {
            budget.holders = budget.holders.filter { now - $0.value.renewedAt <= settings.slotExpiry }
            concurrency[resource] = budget.holders.isEmpty ? nil : budget
        }
    }

    private mutating func takeGrantID() -> UInt64 {
        defer { nextGrant += 1 }
        return nextGrant
    }

    /// Seconds until grants leave the window enough to free `needed`.
    static func timeUntilFree(_ grants: [Grant], needed: Int, now: Double, _ settings: Settings) -> Double {
        var freed = 0
        for grant in grants.sorted(by: { $0.issuedAt < $1.issuedAt }) {
            freed += grant.counted
            if freed >= needed { return max(0.05, grant.issuedAt + window + settings.lifetime - now) }
        }
        return window
    }

    /// What is counted against a scope's window now, for tests.
    func countedInWindow(_ resource: LimitResource) -> Int { windowed[resource]?.counted ?? 0 }
}

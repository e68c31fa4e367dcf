import Foundation

/// One limit or quota a request counts against, as the shared limits see it.
struct LimitNeed: Sendable, Equatable {
    var resource: LimitResource
    var limit: Int
    /// 1 for requests and concurrency; the reservation for tokens and quotas.
    var amount: Int
    /// Quotas: the period's start, seconds since 1970.
    var periodStart: Double?
    /// For the refusal: `key`, `model`, … or, for a quota, whose it is.
    var label: String
}

extension LimitNeed {
    /// What a request reserving `tokens` counts against in the shared limits: each limit of each
    /// scope, and each quota.
    static func needs(scopes: [LimitScope], quotas: [QuotaScope], tokens: Int, now: Date) -> [LimitNeed] {
        var needs: [LimitNeed] = []
        for scope in scopes {
            if let limit = scope.requestsPerMinute {
                needs.append(.init(resource: .init(kind: .requests, scope: scope.id), limit: limit, amount: 1, label: scope.kind))
            }
            if let limit = scope.tokensPerMinute {
                needs.append(
                    .init(resource: .init(kind: .tokens, scope: scope.id), limit: limit, amount: tokens, label: scope.kind))
            }
            if let limit = scope.concurrentRequests {
                needs.append(
                    .init(resource: .init(kind: .concurrent, scope: scope.id), limit: limit, amount: 1, label: scope.kind))
            }
        }
        for quota in quotas {
            let holder =
                switch quota.holder {
                case .key(let id): "key:" + id
                case .user(let id): "user:" + id
                }
            needs.append(
                .init(
                    resource: .init(kind: .quota, scope: holder), limit: quota.quota, amount: tokens,
                    periodStart: quota.period.start(of: now).timeIntervalSince1970, label: quota.whose))
        }
        return needs
    }
}

/// What a request took from a gateway's grants: given back in part when it settles, whole when
/// it is withdrawn.
struct SharedAdmission: Sendable {
    struct Part: Sendable {
        let grant: UInt64
        let resource: LimitResource
        let amount: Int
    }

    let parts: [Part]
    let slots: [LimitResource]
    /// The `x-ratelimit-*` headers: the tightest per-minute budget after this request.
    var status = RateLimitStatus()

    /// Requests per minute only: a request is counted when admitted, whatever it used, so its
    /// settlement has nothing to give back (and need not take the pool's lock).
    var settlesNothing: Bool { slots.isEmpty && parts.allSatisfy { $0.resource.kind == .requests } }
}

/// A gateway's side of the shared limits: the grants and slots the leader's ledger gave it, which
/// every request is admitted against locally (no round trip), and what it asks for and gives back
/// at the next sync. Pure: `SharedLimits` holds it under a lock and does the syncing. `now` is
/// seconds on this process's monotonic clock.
struct GrantPool {
    struct Grant {
        let id: UInt64
        let resource: LimitResource
        let limit: Int
        let periodStart: Double?
        let receivedAt: Double
        let expiresAt: Double
        var left: Int
        /// Taken by requests, less what they gave back: what a new ledger is told was used.
        var consumed = 0
        /// Quotas: reserved by requests that have not settled yet.
        var pending = 0
    }

    struct Demand {
        var limit: Int
        var periodStart: Double?
        /// The largest amount a waiting request needs (0: none waits).
        var need = 0
        /// Taken since the last sync, to size the next ask.
        var taken = 0
        var lastUsed: Double
        var exhaustedUntil: Double = 0
        /// Requests refused or waiting for a slot since the last sync.
        var missed = 0
        /// Grants not expired at the last sync, in expiry order: a request looks at these few.
        var live: [UInt64] = []
        /// Concurrency resources: the slots held here.
        var slot: SlotState?
        /// Per-minute budgets: what the ledger had left to grant at the last answer, and when
        /// (on this process's clock) its oldest counted use leaves the window.
        var standing: (remaining: Int, resetAt: Double)?
    }

    struct SlotState {
        var limit: Int
        var held = 0
        var inUse = 0
        /// The most in use since the last sync: what this gateway keeps asking to hold, so a slot
        /// free for a moment between two requests is not given up.
        var peak = 0
        var validUntil: Double = 0
    }

    enum Outcome {
        case taken(SharedAdmission)
        /// Some budget is not here yet: wait for the next sync, then take again.
        case wait
        /// The ledger said this budget has nothing left for now.
        case refused(LimitNeed, retryAfter: Double)
        /// No ledger answers (or it answered nothing in time): the fallback setting decides.
        case unavailable
    }

    private(set) var grants: [UInt64: Grant] = [:]
    /// Per resource: its demand, live grants and slots (one lookup per need on the hot path).
    private(set) var demands: [LimitResource: Demand] = [:]
    private var returns: [LimitSync.Return] = []
    /// The ledger that answered last, and whether it asked for what was used before it.
    private(set) var ledger: String?
    private var owesUsed = true
    /// Until when no ledger is taken to answer: requests do not wait for one meanwhile.
    private var unreachableUntil: Double = 0
    private(set) var lastSyncAt: Double = -.infinity
    /// Whether this gateway's own windows were told what it admitted on grants, since the last
    /// answer (`fallingBack`).
    private var fellBack = false
    /// How long a grant may be used, as the ledger said last (its default until then).
    private var lifetime = LimitLedger.Settings().lifetime

    /// How long past use is kept to tell a new ledger: the window and a grant's lifetime.
    static let history: Double = LimitLedger.window + 2

    /// Takes every need from the grants and slots at hand, or says what is missing.
    /// `waitOver`: the request already waited for a sync, so a missing budget is unavailable.
    /// One pass, one lookup per need: this runs for every limited request, on the event loop.
    mutating func take(_ needs: [LimitNeed], now: Double, waitOver: Bool) -> Outcome {
        var parts: [SharedAdmission.Part] = []
        parts.reserveCapacity(needs.count)
        var taken: [LimitResource] = []
        var status = RateLimitStatus()
        var failure: Outcome?
        var missing = false
        for need in needs where failure == nil {
            let had = Self.take(
                need, from: &demands[need.resource, default: Demand(limit: need.limit, lastUsed: now)], grants: &grants,
                now: now, parts: &parts, slots: &taken, status: &status)
            guard !had else { continue }
            let demand = demands[need.resource]!
            if demand.exhaustedUntil > now {
                failure = .refused(need, retryAfter: demand.exhaustedUntil - now)
            } else {
                demands[need.resource]?.need = max(demand.need, need.amount)
                missing = true
            }
        }
        if missing, failure == nil { failure = waitOver || now < unreachableUntil ? .unavailable : .wait }
        guard let failure else { return .taken(SharedAdmission(parts: parts, slots: taken, status: status)) }
        // Something is missing: what was taken goes back as it was.
        undo(SharedAdmission(parts: parts, slots: taken))
        return failure
    }

    /// One need from its resource's grants or slots; false, with nothing taken, when they do not
    /// cover it. A per-minute need tightens `status` with what is left after it: what the ledger
    /// had left to grant when it last answered, plus what this gateway's grants still hold (other
    /// gateways' unused grants are not counted, so the figure errs low).
    private static func take(
        _ need: LimitNeed, from demand: inout Demand, grants: inout [UInt64: Grant], now: Double,
        parts: inout [SharedAdmission.Part], slots: inout [LimitResource], status: inout RateLimitStatus
    ) -> Bool {
        demand.limit = need.limit
        demand.periodStart = need.periodStart
        demand.lastUsed = now
        if need.resource.kind == .concurrent {
            guard var slot = demand.slot, slot.validUntil > now, slot.inUse < slot.held else {
                demand.missed += 1
                return false
            }
            slot.inUse += 1
            slot.peak = max(slot.peak, slot.inUse)
            demand.slot = slot
            demand.taken += 1
            slots.append(need.resource)
            return true
        }
        var left = 0
        for id in demand.live {
            if let grant = grants[id], grant.expiresAt > now { left += grant.left }
        }
        guard left >= need.amount else {
            demand.missed += 1
            return false
        }
        demand.taken += need.amount
        let room = (demand.standing?.remaining ?? 0) + left - need.amount
        let reset = Duration.seconds(demand.standing.map { max(0, $0.resetAt - now) } ?? LimitLedger.window)
        switch need.resource.kind {
        case .requests: status.tighten(requests: need.limit, remaining: room, reset: reset)
        case .tokens: status.tighten(tokens: need.limit, remaining: room, reset: reset)
        case .concurrent, .quota: break
        }
        var remaining = need.amount
        for id in demand.live where remaining > 0 {
            guard var grant = grants[id], grant.expiresAt > now, grant.left > 0 else { continue }
            let amount = min(remaining, grant.left)
            grant.left -= amount
            grant.consumed += amount
            if need.resource.kind == .quota { grant.pending += amount }
            grants[id] = grant
            parts.append(.init(grant: id, resource: need.resource, amount: amount))
            remaining -= amount
        }
        return true
    }

    /// Puts back what `take` took for a request that is then not admitted.
    private mutating func undo(_ admission: SharedAdmission) {
        for part in admission.parts {
            grants[part.grant]?.left += part.amount
            grants[part.grant]?.consumed -= part.amount
            if part.resource.kind == .quota { grants[part.grant]?.pending -= part.amount }
            demands[part.resource]?.taken -= part.amount
        }
        freeSlots(admission)
    }

    /// The request ended having used `tokens`: what tokens and quota parts reserved beyond that
    /// goes back (to the grant while it lasts, else to the ledger), a request that used more is
    /// counted more, and its slots are freed. A request's parts of one resource are next to each
    /// other (`take` adds them need by need).
    mutating func settle(_ admission: SharedAdmission, tokens: Int, now: Double) {
        let parts = admission.parts
        var start = 0
        while start < parts.count {
            let resource = parts[start].resource
            var end = start + 1
            while end < parts.count, parts[end].resource == resource { end += 1 }
            defer { start = end }
            guard resource.kind != .requests else { continue }
            var reserved = 0
            for index in start..<end {
                reserved += parts[index].amount
                if resource.kind == .quota { grants[parts[index].grant]?.pending -= parts[index].amount }
            }
            var back = reserved - max(0, tokens)
            if back < 0 {
                giveBack(parts[start].grant, amount: back, now: now)
                continue
            }
            var index = end - 1
            while back > 0, index >= start {
                let amount = min(back, parts[index].amount)
                giveBack(parts[index].grant, amount: amount, now: now)
                back -= amount
                index -= 1
            }
        }
        freeSlots(admission)
    }

    /// The request was withdrawn before it ran: everything it took goes back.
    mutating func cancel(_ admission: SharedAdmission, now: Double) {
        for part in admission.parts {
            if part.resource.kind == .quota { grants[part.grant]?.pending -= part.amount }
            giveBack(part.grant, amount: part.amount, now: now)
        }
        freeSlots(admission)
    }

    private mutating func freeSlots(_ admission: SharedAdmission) {
        for resource in admission.slots {
            guard var slot = demands[resource]?.slot else { continue }
            slot.inUse = max(0, slot.inUse - 1)
            demands[resource]?.slot = slot
        }
    }

    /// Back to the grant while it can still be used here, to the ledger otherwise; a negative
    /// amount (used more than reserved) always to the ledger.
    private mutating func giveBack(_ id: UInt64, amount: Int, now: Double) {
        guard amount != 0, var grant = grants[id] else { return }
        grant.consumed -= amount
        if amount > 0, grant.expiresAt > now {
            grant.left += amount
        } else {
            returns.append(.init(grant: id, amount: amount))
        }
        grants[id] = grant
    }

    /// Whether a sync is due: something waits, the grants in use run low or out soon, slots are
    /// held, or something is owed to the ledger.
    func syncDue(now: Double, interval: Double) -> Bool {
        if demands.values.contains(where: { $0.need > 0 && $0.exhaustedUntil <= now }) { return true }
        guard now - lastSyncAt >= interval else { return false }
        if !returns.isEmpty { return true }
        if demands.values.contains(where: { ($0.slot?.held ?? 0) > 0 || ($0.slot?.inUse ?? 0) > 0 }) { return true }
        return demands.values.contains { now - $0.lastUsed < 2 }
    }

    /// The next message to the ledger: asks sized to recent use, returns of expired grants and of
    /// unused reservations, slots, and past use when the ledger is new.
    mutating func makeSync(gateway: String, now: Double) -> LimitSync {
        // Expired grants give back what they had left; their record stays for `history`.
        for (id, var grant) in grants {
            if grant.expiresAt <= now, grant.left > 0 {
                returns.append(.init(grant: id, amount: grant.left))
                grant.left = 0
                grants[id] = grant
            }
            if now - grant.receivedAt > Self.history, grant.pending <= 0 { grants[id] = nil }
        }
        for (resource, demand) in demands where !demand.live.isEmpty {
            demands[resource]?.live = demand.live.filter { grants[$0].map { $0.expiresAt > now } ?? false }
        }
        var asks: [LimitSync.Ask] = []
        var slotMessages: [LimitSync.Slots] = []
        let elapsed = max(0.05, min(2, now - lastSyncAt))
        for (resource, var demand) in demands {
            let idle = now - demand.lastUsed >= 2 && demand.need == 0
            let taken = demand.taken
            demand.taken = 0
            let missed = demand.missed
            demand.missed = 0
            demands[resource] = demand
            if resource.kind == .concurrent {
                var slot = demand.slot ?? SlotState(limit: demand.limit)
                slot.limit = demand.limit
                let want = idle ? slot.inUse : max(slot.peak, slot.inUse + missed)
                slot.peak = slot.inUse
                // Fewer wanted than held: stop using the rest before the ledger hears of it.
                if want < slot.held { slot.held = max(slot.inUse, want) }
                slotMessages.append(.init(resource: resource, limit: demand.limit, inUse: slot.inUse, want: want))
                if idle, slot.inUse == 0 {
                    // Its last message says it wants none; then it is forgotten.
                    demands[resource] = nil
                } else {
                    demands[resource]?.slot = slot
                }
                continue
            }
            let valid = demands[resource]?.live ?? []
            if idle {
                if valid.isEmpty { demands[resource] = nil }
                continue
            }
            let left = valid.reduce(0) { $0 + (grants[$1]?.left ?? 0) }
            let endsSoon = valid.allSatisfy { (grants[$0]?.expiresAt ?? now) - now < lifetime / 2 }
            let want = Int((Double(taken) / elapsed * lifetime * 1.5).rounded(.up)) + demand.need
            guard demand.exhaustedUntil <= now, demand.need > 0 || left < want / 2 || (endsSoon && taken > 0) else {
                continue
            }
            asks.append(
                .init(
                    resource: resource, limit: demand.limit, need: max(demand.need, 1), want: max(want, 1),
                    periodStart: demand.periodStart))
        }
        return finishSync(asks: asks, slots: slotMessages, gateway: gateway, now: now)
    }

    private mutating func finishSync(
        asks: [LimitSync.Ask], slots slotMessages: [LimitSync.Slots], gateway: String, now: Double
    ) -> LimitSync {
        var used: [LimitSync.Used]?
        if owesUsed {
            used = grants.values.compactMap { grant in
                switch grant.resource.kind {
                case .requests, .tokens:
                    guard grant.consumed > 0 else { return nil }
                    return .init(
                        resource: grant.resource, limit: grant.limit, amount: grant.consumed, age: now - grant.receivedAt,
                        periodStart: nil)
                case .quota:
                    guard grant.pending > 0 else { return nil }
                    return .init(
                        resource: grant.resource, limit: grant.limit, amount: grant.pending, age: now - grant.receivedAt,
                        periodStart: grant.periodStart)
                case .concurrent:
                    return nil
                }
            }
        }
        let sync = LimitSync(gateway: gateway, ledger: ledger, asks: asks, returns: returns, slots: slotMessages, used: used)
        returns = []
        lastSyncAt = now
        return sync
    }

    /// The ledger's answer to the sync sent at `sentAt`.
    mutating func apply(_ answer: LimitSyncAnswer, sentAt: Double, now: Double) {
        if answer.ledger != ledger {
            // Returns name the previous ledger's grants: they mean nothing to this one, and what
            // they would give back was told to it as used.
            returns = []
        }
        ledger = answer.ledger
        fellBack = false
        owesUsed = answer.wantsUsed
        unreachableUntil = 0
        lifetime = answer.lifetimeSeconds
        let expiresAt = sentAt + lifetime
        for grant in answer.grants {
            let demand = demands[grant.resource]
            grants[grant.id] = Grant(
                id: grant.id, resource: grant.resource, limit: demand?.limit ?? 0, periodStart: demand?.periodStart,
                receivedAt: now, expiresAt: expiresAt, left: grant.amount)
            // All of one answer's grants expire together, so the list stays in expiry order.
            demands[grant.resource]?.live.append(grant.id)
            demands[grant.resource]?.need = 0
        }
        // Warming, or owed past use: nothing is refused for it; the next sync asks again.
        if answer.warmingSeconds == nil, !answer.wantsUsed {
            for exhausted in answer.exhausted {
                demands[exhausted.resource]?.exhaustedUntil = now + min(1, max(0.05, exhausted.retryAfterSeconds))
                demands[exhausted.resource]?.need = 0
            }
        }
        for standing in answer.standings ?? [] {
            demands[standing.resource]?.standing = (standing.remaining, now + standing.resetSeconds)
        }
        for grant in answer.slots {
            var slot = demands[grant.resource]?.slot ?? SlotState(limit: demands[grant.resource]?.limit ?? 0)
            slot.held = grant.held
            slot.validUntil = expiresAt
            demands[grant.resource]?.slot = slot
            guard let demand = demands[grant.resource], demand.need > 0, answer.warmingSeconds == nil, !answer.wantsUsed
            else { continue }
            // None to add: a request waiting for one is refused, briefly, like a local limit's.
            if grant.held <= slot.inUse { demands[grant.resource]?.exhaustedUntil = now + 0.2 }
            demands[grant.resource]?.need = 0
        }
    }

    /// Returns of a sync that never reached a ledger: they go with the next one.
    mutating func requeue(_ items: [LimitSync.Return]) {
        returns.insert(contentsOf: items, at: 0)
    }

    /// No ledger answered: requests stop waiting for one for `for` seconds; what is held is
    /// still used until it expires.
    mutating func unreachable(now: Double, for seconds: Double) {
        unreachableUntil = now + seconds
        for (resource, demand) in demands where demand.need > 0 { demands[resource]?.need = 0 }
    }

    /// The first time after an answer that requests follow the `local` fallback: what this gateway
    /// admitted on per-minute grants within the last window, by age, for its own windows to count.
    /// Without it, a gateway falling back would start from empty windows and admit a whole limit
    /// on top of what it had just admitted on grants. Nil after the first time.
    mutating func fallingBack(now: Double) -> [WindowedUse]? {
        guard !fellBack else { return nil }
        fellBack = true
        return grants.values.compactMap { grant in
            guard grant.consumed > 0, now - grant.receivedAt <= Self.history else { return nil }
            switch grant.resource.kind {
            case .requests:
                return WindowedUse(
                    scopeID: grant.resource.scope, requests: grant.consumed, tokens: 0, age: now - grant.receivedAt)
            case .tokens:
                return WindowedUse(
                    scopeID: grant.resource.scope, requests: 0, tokens: grant.consumed, age: now - grant.receivedAt)
            case .quota, .concurrent:
                return nil
            }
        }
    }

    /// Slot demand: a request needing a concurrency slot is a `need` of 1 (`take` sets it).
    var waiting: Bool { demands.values.contains { $0.need > 0 } }
}

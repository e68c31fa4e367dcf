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
    /// The grants of each resource not expired at the last sync, so a request looks at a few.
    private var live: [LimitResource: [UInt64]] = [:]
    private(set) var demands: [LimitResource: Demand] = [:]
    private(set) var slots: [LimitResource: SlotState] = [:]
    private var returns: [LimitSync.Return] = []
    /// The ledger that answered last, and whether it asked for what was used before it.
    private(set) var ledger: String?
    private var owesUsed = true
    /// Until when no ledger is taken to answer: requests do not wait for one meanwhile.
    private var unreachableUntil: Double = 0
    private(set) var lastSyncAt: Double = -.infinity

    /// How long past use is kept to tell a new ledger: the window and a grant's lifetime.
    static let history: Double = LimitLedger.window + 2

    /// Takes every need from the grants and slots at hand, or says what is missing.
    /// `waitOver`: the request already waited for a sync, so a missing budget is unavailable.
    mutating func take(_ needs: [LimitNeed], now: Double, waitOver: Bool) -> Outcome {
        var missing = false
        for need in needs {
            var demand = demands[need.resource] ?? Demand(limit: need.limit, lastUsed: now)
            demand.limit = need.limit
            demand.periodStart = need.periodStart
            demand.lastUsed = now
            defer { demands[need.resource] = demand }
            if have(need, now: now) { continue }
            demand.missed += 1
            if demand.exhaustedUntil > now { return .refused(need, retryAfter: demand.exhaustedUntil - now) }
            demand.need = max(demand.need, need.amount)
            missing = true
        }
        if missing {
            return waitOver || now < unreachableUntil ? .unavailable : .wait
        }
        var parts: [SharedAdmission.Part] = []
        var taken: [LimitResource] = []
        for need in needs {
            demands[need.resource]?.taken += need.amount
            if need.resource.kind == .concurrent {
                if var slot = slots[need.resource] {
                    slot.inUse += 1
                    slot.peak = max(slot.peak, slot.inUse)
                    slots[need.resource] = slot
                }
                taken.append(need.resource)
                continue
            }
            var remaining = need.amount
            for id in validGrants(of: need.resource, now: now) where remaining > 0 {
                let amount = min(remaining, grants[id]?.left ?? 0)
                guard amount > 0 else { continue }
                grants[id]?.left -= amount
                grants[id]?.consumed += amount
                if need.resource.kind == .quota { grants[id]?.pending += amount }
                parts.append(.init(grant: id, resource: need.resource, amount: amount))
                remaining -= amount
            }
        }
        return .taken(SharedAdmission(parts: parts, slots: taken))
    }

    private func have(_ need: LimitNeed, now: Double) -> Bool {
        if need.resource.kind == .concurrent {
            guard let slot = slots[need.resource], slot.validUntil > now else { return false }
            return slot.inUse < slot.held
        }
        let left = validGrants(of: need.resource, now: now).reduce(0) { $0 + (grants[$1]?.left ?? 0) }
        return left >= need.amount
    }

    /// Grants of `resource` still usable, the soonest to expire first.
    private func validGrants(of resource: LimitResource, now: Double) -> [UInt64] {
        (live[resource] ?? []).filter { id in grants[id].map { $0.expiresAt > now && $0.left > 0 } ?? false }
    }

    /// The request ended having used `tokens`: what tokens and quota parts reserved beyond that
    /// goes back (to the grant while it lasts, else to the ledger), a request that used more is
    /// counted more, and its slots are freed.
    mutating func settle(_ admission: SharedAdmission, tokens: Int, now: Double) {
        for resource in Set(admission.parts.map(\.resource)) where resource.kind != .requests {
            let parts = admission.parts.filter { $0.resource == resource }
            let reserved = parts.reduce(0) { $0 + $1.amount }
            if resource.kind == .quota {
                for part in parts { grants[part.grant]?.pending -= part.amount }
            }
            var back = reserved - max(0, tokens)
            if back < 0, let first = parts.first {
                giveBack(first.grant, amount: back, now: now)
                continue
            }
            for part in parts.reversed() where back > 0 {
                let amount = min(back, part.amount)
                giveBack(part.grant, amount: amount, now: now)
                back -= amount
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
            guard var slot = slots[resource] else { continue }
            slot.inUse = max(0, slot.inUse - 1)
            slots[resource] = slot
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
        if slots.values.contains(where: { $0.held > 0 || $0.inUse > 0 }) { return true }
        return demands.values.contains { now - $0.lastUsed < 2 }
    }

    /// The next message to the ledger: asks sized to recent use, returns of expired grants and of
    /// unused reservations, slots, and past use when the ledger is new.
    mutating func makeSync(gateway: String, now: Double, lifetime: Double) -> LimitSync {
        // Expired grants give back what they had left; their record stays for `history`.
        for (id, var grant) in grants {
            if grant.expiresAt <= now, grant.left > 0 {
                returns.append(.init(grant: id, amount: grant.left))
                grant.left = 0
                grants[id] = grant
            }
            if now - grant.receivedAt > Self.history, grant.pending <= 0 { grants[id] = nil }
        }
        for (resource, ids) in live {
            let kept = ids.filter { grants[$0].map { $0.expiresAt > now } ?? false }
            live[resource] = kept.isEmpty ? nil : kept
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
                var slot = slots[resource] ?? SlotState(limit: demand.limit)
                slot.limit = demand.limit
                let want = idle ? slot.inUse : max(slot.peak, slot.inUse + missed)
                slot.peak = slot.inUse
                // Fewer wanted than held: stop using the rest before the ledger hears of it.
                if want < slot.held { slot.held = max(slot.inUse, want) }
                slotMessages.append(.init(resource: resource, limit: demand.limit, inUse: slot.inUse, want: want))
                if idle, slot.inUse == 0 {
                    // Its last message says it wants none; then it is forgotten.
                    slots[resource] = nil
                    demands[resource] = nil
                } else {
                    slots[resource] = slot
                }
                continue
            }
            let valid = validGrants(of: resource, now: now)
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
        owesUsed = answer.wantsUsed
        unreachableUntil = 0
        let expiresAt = sentAt + answer.lifetimeSeconds
        for grant in answer.grants {
            let demand = demands[grant.resource]
            grants[grant.id] = Grant(
                id: grant.id, resource: grant.resource, limit: demand?.limit ?? 0, periodStart: demand?.periodStart,
                receivedAt: now, expiresAt: expiresAt, left: grant.amount)
            // All of one answer's grants expire together, so the list stays in expiry order.
            live[grant.resource, default: []].append(grant.id)
            demands[grant.resource]?.need = 0
        }
        // Warming, or owed past use: nothing is refused for it; the next sync asks again.
        if answer.warmingSeconds == nil, !answer.wantsUsed {
            for exhausted in answer.exhausted {
                demands[exhausted.resource]?.exhaustedUntil = now + min(1, max(0.05, exhausted.retryAfterSeconds))
                demands[exhausted.resource]?.need = 0
            }
        }
        for grant in answer.slots {
            var slot = slots[grant.resource] ?? SlotState(limit: demands[grant.resource]?.limit ?? 0)
            slot.held = grant.held
            slot.validUntil = expiresAt
            slots[grant.resource] = slot
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

    /// Slot demand: a request needing a concurrency slot is a `need` of 1 (`take` sets it).
    var waiting: Bool { demands.values.contains { $0.need > 0 } }
}

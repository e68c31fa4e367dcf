public import Foundation

/// What one limit or quota is, as a gateway and the leader's ledger both name it.
public struct LimitResource: Codable, Sendable, Hashable {
    public enum Kind: String, Codable, Sendable {
        /// Requests per sliding minute.
        case requests
        /// Tokens per sliding minute.
        case tokens
        /// Requests running at once.
        case concurrent
        /// Tokens per quota period (a key's or a user's).
        case quota
    }

    public var kind: Kind
    /// The scope's or the quota holder's id (`LimitScope.id`, `key:<id>`, `user:<id>`).
    public var scope: String

    public init(kind: Kind, scope: String) {
        self.kind = kind
        self.scope = scope
    }
}

/// One message from a gateway to the leader's ledger (`POST /api/v1/limits/sync`): what it asks
/// for, what it gives back, and what it runs. The answer is a `LimitSyncAnswer`.
public struct LimitSync: Codable, Sendable, Equatable {
    /// A request for more of a windowed or quota budget.
    public struct Ask: Codable, Sendable, Equatable {
        public var resource: LimitResource
        /// The limit (or quota) as the gateway knows it; the ledger keeps the latest.
        public var limit: Int
        /// Less than this is of no use (the reservation of a request waiting for it).
        public var need: Int
        /// What the gateway expects to use within one grant's lifetime.
        public var want: Int
        /// The quota period's start (seconds since 1970), quotas only.
        public var periodStart: Double?
    }

    /// Budget of a grant the gateway will not use (it expired, or a request used fewer tokens than
    /// it reserved); negative when a request used more than it reserved (an engine that ignored
    /// `max_tokens`), which the ledger counts too.
    public struct Return: Codable, Sendable, Equatable {
        public var grant: UInt64
        public var amount: Int
    }

    /// Concurrency: how many requests of a scope the gateway runs now, and how many it wants to be
    /// able to run. What runs is always counted (it is the truth, after a failover too).
    public struct Slots: Codable, Sendable, Equatable {
        public var resource: LimitResource
        public var limit: Int
        public var inUse: Int
        public var want: Int
    }

    /// What this gateway used of grants from an earlier ledger (a leader that died), so a new one
    /// counts it: windowed budget used within the last window, by age; quota tokens held by requests
    /// still running.
    public struct Used: Codable, Sendable, Equatable {
        public var resource: LimitResource
        public var limit: Int
        public var amount: Int
        /// Seconds since the gateway received the grant (windowed budgets).
        public var age: Double
        public var periodStart: Double?
    }

    public var gateway: String
    /// The ledger this gateway synced with last; when the answer names another, `used` follows.
    public var ledger: String?
    public var asks: [Ask]
    public var returns: [Return]
    public var slots: [Slots]
    public var used: [Used]?

    public init(
        gateway: String, ledger: String?, asks: [Ask], returns: [Return], slots: [Slots], used: [Used]? = nil
    ) {
        self.gateway = gateway
        self.ledger = ledger
        self.asks = asks
        self.returns = returns
        self.slots = slots
        self.used = used
    }
}

/// The ledger's answer to a `LimitSync`.
public struct LimitSyncAnswer: Codable, Sendable, Equatable {
    public struct Grant: Codable, Sendable, Equatable {
        public var id: UInt64
        public var resource: LimitResource
        public var amount: Int
    }

    /// A budget with nothing left for what was asked, and when to ask again.
    public struct Exhausted: Codable, Sendable, Equatable {
        public var resource: LimitResource
        public var retryAfterSeconds: Double
    }

    /// Random per ledger (per term of a leader): returns to another ledger's grants mean nothing.
    public var ledger: String
    /// For how long after sending its sync the gateway may admit against these grants and slots.
    public var lifetimeSeconds: Double
    public var grants: [Grant]
    public var exhausted: [Exhausted]
    /// How many requests the gateway may run at once, per concurrency resource it named.
    public struct SlotGrant: Codable, Sendable, Equatable {
        public var resource: LimitResource
        public var held: Int
    }

    public var slots: [SlotGrant]
    /// The gateway's `ledger` named another ledger: it should send `used` now.
    public var wantsUsed: Bool
    /// A new ledger still collecting what gateways used under the previous one grants nothing yet.
    public var warmingSeconds: Double?

    /// Where a per-minute budget the gateway asked for stands after this answer, over every
    /// gateway: what is left to grant, and when the oldest use still counted leaves the window.
    /// A gateway's `x-ratelimit-*` headers come from these. (Optional on the wire: a ledger of an
    /// earlier version sends none, and the headers then count this gateway's grants only.)
    public struct Standing: Codable, Sendable, Equatable {
        public var resource: LimitResource
        public var remaining: Int
        public var resetSeconds: Double
    }

    public var standings: [Standing]?
}

public import Foundation

public enum Role: String, Codable, Sendable {
    case admin
    case user
}

/// A person (or service) known to the platform. Users who log in with OIDC are identified by
/// their provider's `issuer` and `subject`; local users (the bootstrap admin) have neither.
public struct User: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    public var email: String?
    public var role: Role
    public var disabled: Bool
    public var createdAt: Date
    public var issuer: String?
    public var subject: String?
    /// Limits and a token quota over everything the user calls, with any key or credential: a
    /// new key cannot escape them. Set by admins; nil means none.
    public var limits: UsageLimits?
    /// How many active (unrevoked, unexpired) API keys the user may hold; nil means no cap.
    public var maxKeys: Int?

    public init(
        id: String, name: String, email: String?, role: Role, disabled: Bool, createdAt: Date, issuer: String? = nil,
        subject: String? = nil, limits: UsageLimits? = nil, maxKeys: Int? = nil
    ) {
        self.id = id
        self.name = name
        self.email = email
        self.role = role
        self.disabled = disabled
        self.createdAt = createdAt
        self.issuer = issuer
        self.subject = subject
        self.limits = limits
        self.maxKeys = maxKeys
    }
}

/// A stored API key. The secret itself is never stored, only its SHA-256 digest.
public struct APIKeyRecord: Codable, Sendable, Equatable {
    /// The public id part of the key, safe to show and log.
    public var id: String
    public var userID: String
    public var name: String
    public var secretHash: String
    public var createdAt: Date
    public var expiresAt: Date?
    public var revokedAt: Date?
    public var lastUsedAt: Date?
    /// The deployments this key may call; nil means all the owner may use.
    public var scope: [String]?
    /// Limits on this key across all deployments; nil means none beyond the deployments' own.
    public var limits: UsageLimits?

    public init(
        id: String, userID: String, name: String, secretHash: String, createdAt: Date, expiresAt: Date?,
        revokedAt: Date?, lastUsedAt: Date?, scope: [String]? = nil, limits: UsageLimits? = nil
    ) {
        self.id = id
        self.userID = userID
        self.name = name
        self.secretHash = secretHash
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
        self.lastUsedAt = lastUsedAt
        self.scope = scope
        self.limits = limits
    }
}

/// Limits that follow one API key, or one user with all their keys, across every deployment.
public struct UsageLimits: Codable, Sendable, Equatable {
    public var requestsPerMinute: Int?
    public var tokensPerMinute: Int?
    public var concurrentRequests: Int?
    /// Tokens (prompt plus completion) the key may use per `quotaPeriod`; once spent, requests
    /// are refused with `insufficient_quota` until the next period starts.
    public var tokenQuota: Int?
    public var quotaPeriod: QuotaPeriod?

    public init(
        requestsPerMinute: Int? = nil, tokensPerMinute: Int? = nil, concurrentRequests: Int? = nil, tokenQuota: Int? = nil,
        quotaPeriod: QuotaPeriod? = nil
    ) {
        self.requestsPerMinute = requestsPerMinute
        self.tokensPerMinute = tokensPerMinute
        self.concurrentRequests = concurrentRequests
        self.tokenQuota = tokenQuota
        self.quotaPeriod = quotaPeriod
    }

    /// Refuses limits no request could ever pass, with the field at fault.
    public func validate() throws {
        try GantryError.requirePositive(
            [
                ("requests_per_minute", requestsPerMinute), ("tokens_per_minute", tokensPerMinute),
                ("concurrent_requests", concurrentRequests), ("token_quota", tokenQuota),
            ], in: "limits")
        if quotaPeriod != nil, tokenQuota == nil {
            throw GantryError.invalid("limits.quota_period needs limits.token_quota", param: "limits.quota_period")
        }
    }

    /// Refuses limits looser than `bound` (a key's against its owner's): any field above the
    /// owner's. A field left out, or a quota over another period, is bound by the owner's limits
    /// anyway, since every request of the key counts against its user too.
    public func requireWithin(_ bound: UsageLimits, of owner: String) throws {
        let fields: [(String, Int?, Int?)] = [
            ("requests_per_minute", requestsPerMinute, bound.requestsPerMinute),
            ("tokens_per_minute", tokensPerMinute, bound.tokensPerMinute),
            ("concurrent_requests", concurrentRequests, bound.concurrentRequests),
            ("token_quota", tokenQuota, bound.tokenQuota),
        ]
        for (name, value, limit) in fields {
            if let value, let limit, value > limit {
                throw GantryError.invalid(
                    "limits.\(name) (\(value)) is looser than \(owner)'s own limit (\(limit))", param: "limits.\(name)")
            }
        }
    }
}

/// The calendar period a token quota renews over, in UTC.
public enum QuotaPeriod: String, Codable, Sendable {
    case day
    case month

    /// When the period holding `date` began. Arithmetic on days since 1970 (UTC has no DST),
    /// not a `Calendar`: the data plane asks on every request of a key with a quota, and building
    /// a calendar there was 2.6 % of a request's CPU.
    public func start(of date: Date) -> Date {
        let days = Int((date.timeIntervalSince1970 / 86_400).rounded(.down))
        switch self {
        case .day:
            return Date(timeIntervalSince1970: Double(days) * 86_400)
        case .month:
            let (year, month, _) = CivilDate.from(daysSince1970: days)
            return Date(timeIntervalSince1970: Double(CivilDate.daysSince1970(year: year, month: month, day: 1)) * 86_400)
        }
    }

    /// When the period holding `date` ends (the next one begins).
    public func end(of date: Date) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar.date(byAdding: self == .day ? .day : .month, value: 1, to: start(of: date))!
    }
}

/// A browser login. The cookie holds a random token; only its SHA-256 digest is stored.
public struct BrowserSession: Sendable, Equatable {
    public var tokenHash: String
    public var userID: String
    /// Required in every form the session submits, so another site cannot post on its behalf.
    public var csrfToken: String
    public var createdAt: Date
    public var expiresAt: Date

    public init(tokenHash: String, userID: String, csrfToken: String, createdAt: Date, expiresAt: Date) {
        self.tokenHash = tokenHash
        self.userID = userID
        self.csrfToken = csrfToken
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }
}

/// How a caller proved who they are.
public enum Credential: Sendable, Equatable {
    case apiKey(id: String)
    case session(csrfToken: String)
    /// An access token issued by the OIDC provider, accepted directly when configured.
    case providerToken
}

/// Who is calling: the result of authenticating a request.
public struct Principal: Sendable, Equatable {
    public var userID: String
    public var userName: String
    public var role: Role
    public var credential: Credential
    /// Deployments this credential may call; nil means all of them.
    public var allowedDeployments: [String]?
    /// The API key's own limits, when the caller used a key that has some.
    public var keyLimits: UsageLimits?
    /// The user's limits, over every credential of theirs.
    public var userLimits: UsageLimits?
    /// When the API key used expires, if it does (a gateway never serves a key it remembers past
    /// this, even while the control role cannot be asked).
    public var keyExpiry: Date?

    public init(
        userID: String, userName: String, role: Role, credential: Credential, allowedDeployments: [String]? = nil,
        keyLimits: UsageLimits? = nil, userLimits: UsageLimits? = nil, keyExpiry: Date? = nil
    ) {
        self.keyExpiry = keyExpiry
        self.userID = userID
        self.userName = userName
        self.role = role
        self.credential = credential
        self.allowedDeployments = allowedDeployments
        self.keyLimits = keyLimits
        self.userLimits = userLimits
    }

    public var isAdmin: Bool { role == .admin }

    /// The API key used, when the caller authenticated with one.
    public var keyID: String? {
        if case .apiKey(let id) = credential { return id }
        return nil
    }

    public func mayUse(deployment: String) -> Bool {
        allowedDeployments?.contains(deployment) ?? true
    }
}

/// Compares secrets (or their digests) without stopping at the first difference, so the time taken
/// does not reveal how much of a guess was right. Lengths may differ in time; digests all have one.
public func constantTimeEqual(_ a: some StringProtocol, _ b: some StringProtocol) -> Bool {
    let x = Array(a.utf8)
    let y = Array(b.utf8)
    guard x.count == y.count else { return false }
    var difference: UInt8 = 0
    for index in x.indices { difference |= x[index] ^ y[index] }
    return difference == 0
}

/// Proleptic Gregorian dates from day numbers and back (days since 1970-01-01, UTC), by Howard
/// Hinnant's algorithms: no `Calendar` where it is too slow (quota periods on every request)
/// or too heavy (request signing).
public enum CivilDate {
    /// The proleptic Gregorian date of a day number (Howard Hinnant's `civil_from_days`).
    public static func from(daysSince1970 days: Int) -> (year: Int, month: Int, day: Int) {
        let shifted = days + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    /// The day number of a proleptic Gregorian date (`days_from_civil`).
    public static func daysSince1970(year: Int, month: Int, day: Int) -> Int {
        let shiftedYear = month <= 2 ? year - 1 : year
        let era = (shiftedYear >= 0 ? shiftedYear : shiftedYear - 399) / 400
        let yearOfEra = shiftedYear - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}

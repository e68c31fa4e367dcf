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

    public init(
        id: String, name: String, email: String?, role: Role, disabled: Bool, createdAt: Date, issuer: String? = nil,
        subject: String? = nil
    ) {
        self.id = id
        self.name = name
        self.email = email
        self.role = role
        self.disabled = disabled
        self.createdAt = createdAt
        self.issuer = issuer
        self.subject = subject
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

    public init(
        id: String, userID: String, name: String, secretHash: String, createdAt: Date, expiresAt: Date?,
        revokedAt: Date?, lastUsedAt: Date?, scope: [String]? = nil
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

    public init(userID: String, userName: String, role: Role, credential: Credential, allowedDeployments: [String]? = nil) {
        self.userID = userID
        self.userName = userName
        self.role = role
        self.credential = credential
        self.allowedDeployments = allowedDeployments
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

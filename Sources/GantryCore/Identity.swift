public import Foundation

public enum Role: String, Codable, Sendable {
    case admin
    case user
}

public struct User: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    public var email: String?
    public var role: Role
    public var disabled: Bool
    public var createdAt: Date

    public init(id: String, name: String, email: String?, role: Role, disabled: Bool, createdAt: Date) {
        self.id = id
        self.name = name
        self.email = email
        self.role = role
        self.disabled = disabled
        self.createdAt = createdAt
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

    public init(
        id: String, userID: String, name: String, secretHash: String, createdAt: Date, expiresAt: Date?,
        revokedAt: Date?, lastUsedAt: Date?
    ) {
        self.id = id
        self.userID = userID
        self.name = name
        self.secretHash = secretHash
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
        self.lastUsedAt = lastUsedAt
    }
}

/// Who is calling: the result of authenticating a request.
public struct Principal: Sendable, Equatable {
    public var userID: String
    public var userName: String
    public var role: Role
    /// The API key used, when the caller authenticated with one.
    public var keyID: String?

    public init(userID: String, userName: String, role: Role, keyID: String?) {
        self.userID = userID
        self.userName = userName
        self.role = role
        self.keyID = keyID
    }

    public var isAdmin: Bool { role == .admin }
}

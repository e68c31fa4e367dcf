public import Foundation
public import GantryCore
public import Logging

/// Users and API keys: issuing, verifying and revoking.
///
/// Every verification reads the key and its owner from the store, so a revocation, an expiry or a
/// disabled owner takes effect on the next request in every process that shares the store.
public struct IdentityService: CredentialVerifier {
    let users: any UserRepository
    let keys: any APIKeyRepository
    let logger: Logger
    /// `last_used_at` is refreshed at most this often per key, to keep writes off most requests.
    let lastUsedResolution: TimeInterval = 60

    public init(repositories: Repositories, logger: Logger) {
        self.users = repositories.users
        self.keys = repositories.keys
        self.logger = logger
    }

    public func verify(bearer: String) async throws -> Principal {
        let rejected = GantryError(.unauthorized, "invalid API key", code: "invalid_api_key")
        guard let parsed = APIKeyFormat.parse(bearer), let record = try await keys.key(id: parsed.id) else { throw rejected }
        guard APIKeyFormat.constantTimeEqual(record.secretHash, APIKeyFormat.hash(secret: parsed.secret)) else {
            throw rejected
        }
        let now = Date()
        if record.revokedAt != nil { throw GantryError(.unauthorized, "API key has been revoked", code: "invalid_api_key") }
        if let expiry = record.expiresAt, expiry <= now {
            throw GantryError(.unauthorized, "API key has expired", code: "invalid_api_key")
        }
        guard let user = try await users.user(id: record.userID), !user.disabled else {
            throw GantryError(.unauthorized, "the key's owner is disabled", code: "invalid_api_key")
        }
        if record.lastUsedAt.map({ now.timeIntervalSince($0) > lastUsedResolution }) ?? true {
            try? await keys.touchKey(id: record.id, at: now)
        }
        return Principal(userID: user.id, userName: user.name, role: user.role, keyID: record.id)
    }

    /// Creates a key for a user and returns the record and the plaintext, which is never stored.
    public func issueKey(userID: String, name: String, expiresAt: Date?) async throws -> (APIKeyRecord, String) {
        guard !name.isEmpty, name.count <= 100 else { throw GantryError.invalid("name must be 1-100 characters", param: "name") }
        if let expiresAt, expiresAt <= Date() {
            throw GantryError.invalid("expires_at must be in the future", param: "expires_at")
        }
        let (id, plaintext) = APIKeyFormat.generate()
        let secret = String(plaintext.dropFirst(APIKeyFormat.prefix.count + id.count + 1))
        let record = APIKeyRecord(
            id: id, userID: userID, name: name, secretHash: APIKeyFormat.hash(secret: secret), createdAt: Date(),
            expiresAt: expiresAt, revokedAt: nil, lastUsedAt: nil)
        try await keys.createKey(record)
        logger.info("API key issued", metadata: ["key_id": "\(id)", "user_id": "\(userID)"])
        return (record, plaintext)
    }

    /// Returns the user with this name, creating it with the given role if it does not exist.
    public func ensureUser(name: String, role: Role) async throws -> User {
        if let existing = try await users.user(named: name) { return existing }
        try ResourceName.validate(name, field: "name")
        let user = User(id: Identifier.make("usr"), name: name, email: nil, role: role, disabled: false, createdAt: Date())
        do {
            try await users.createUser(user)
        } catch let error as GantryError where error.kind == .conflict {
            if let raced = try await users.user(named: name) { return raced }
            throw error
        }
        return user
    }

    /// On a store with no API keys at all, creates the `admin` user and a bootstrap key and returns
    /// its plaintext for the caller to print once. Returns nil on every later start.
    public func bootstrapAdminKeyIfNeeded() async throws -> String? {
        guard try await keys.countKeys() == 0 else { return nil }
        let admin = try await ensureUser(name: "admin", role: .admin)
        let (_, plaintext) = try await issueKey(userID: admin.id, name: "bootstrap", expiresAt: nil)
        return plaintext
    }
}

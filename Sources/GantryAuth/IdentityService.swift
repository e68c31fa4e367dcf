public import Foundation
public import GantryCore
public import Logging

/// Users and API keys: issuing, verifying and revoking.
///
/// A verified key is remembered for `keyCacheLifetime` (5 s), so the data plane does not read the
/// key and its owner from the store on every request. A revocation, a disabled owner or changed
/// limits through this process's API forget every remembered key at once, and `onCredentialsChanged`
/// tells gateways in other processes (through the route watch) to do the same. An expiry takes
/// effect to the second.
public struct IdentityService: CredentialVerifier {
    let users: any UserRepository
    let keys: any APIKeyRepository
    let sessions: any SessionRepository
    /// Set when provider access tokens are accepted as bearer credentials.
    let providerTokens: OIDCClient?
    let logger: Logger
    /// `last_used_at` is refreshed at most this often per key, to keep writes off most requests.
    let lastUsedResolution: TimeInterval = 60
    let verifiedKeys: VerifiedKeyCache<String>
    let onCredentialsChanged: @Sendable () async -> Void

    public init(
        repositories: Repositories, logger: Logger, providerTokens: OIDCClient? = nil, keyCacheLifetime: Duration = .seconds(5),
        onCredentialsChanged: @escaping @Sendable () async -> Void = {}
    ) {
        self.onCredentialsChanged = onCredentialsChanged
        self.verifiedKeys = VerifiedKeyCache(lifetime: keyCacheLifetime)
        self.users = repositories.users
        self.keys = repositories.keys
        self.sessions = repositories.sessions
        self.providerTokens = providerTokens
        self.logger = logger
    }

    public func verify(bearer: String) async throws -> Principal {
        if !bearer.hasPrefix(APIKeyFormat.prefix), let providerTokens, providerTokens.settings.acceptAccessTokens,
            bearer.split(separator: ".").count == 3
        {
            return try await verify(providerToken: bearer, with: providerTokens)
        }
        return try await verify(apiKey: bearer)
    }

    /// A provider access token names a user by issuer and subject; that user must have logged in
    /// once (so an admin can see and disable them) and must not be disabled.
    func verify(providerToken: String, with oidc: OIDCClient) async throws -> Principal {
        let identity = try await oidc.validateAccessToken(providerToken)
        guard let user = try await users.user(issuer: identity.issuer, subject: identity.subject), !user.disabled else {
            throw GantryError(.unauthorized, "no enabled Gantry user for this token; log in once first", code: "invalid_token")
        }
        return Principal(
            userID: user.id, userName: user.name, role: user.role, credential: .providerToken, userLimits: user.limits)
    }

    public func verify(sessionToken: String) async throws -> Principal {
        let rejected = GantryError(.unauthorized, "not logged in, or the session has ended", code: "invalid_session")
        guard sessionToken.utf8.count <= 128,
            let session = try await sessions.session(tokenHash: RandomToken.sha256Hex(sessionToken))
        else { throw rejected }
        guard session.expiresAt > Date() else {
            try? await sessions.deleteSession(tokenHash: session.tokenHash)
            throw rejected
        }
        guard let user = try await users.user(id: session.userID), !user.disabled else { throw rejected }
        return Principal(
            userID: user.id, userName: user.name, role: user.role, credential: .session(csrfToken: session.csrfToken),
            userLimits: user.limits)
    }

    /// API keys only: provider tokens and sessions are always checked in full.
    public func rememberedPrincipal(bearer: String) -> Principal? {
        guard let parsed = APIKeyFormat.parse(bearer) else { return nil }
        return verifiedKeys.principal(keyID: parsed.id, secretDigest: APIKeyFormat.digest(secret: parsed.secret), now: Date())
    }

    func verify(apiKey bearer: String) async throws -> Principal {
        let rejected = GantryError(.unauthorized, "invalid API key", code: "invalid_api_key")
        guard let parsed = APIKeyFormat.parse(bearer) else { throw rejected }
        // Parsed and hashed once, for the cache and the store alike.
        let presentedDigest = APIKeyFormat.digest(secret: parsed.secret)
        let now = Date()
        if let remembered = verifiedKeys.principal(keyID: parsed.id, secretDigest: presentedDigest, now: now) {
            return remembered
        }
        // Stored as hex (`APIKeyFormat.hash(secret:)`); remembered as bytes.
        let presentedHash = Hex.encode(presentedDigest)
        // A revocation between this read and `remember` must win (see VerifiedKeyCache.State).
        let generation = verifiedKeys.generation
        guard let record = try await keys.key(id: parsed.id) else { throw rejected }
        guard APIKeyFormat.constantTimeEqual(record.secretHash, presentedHash) else {
            throw rejected
        }
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
        let principal = Principal(
            userID: user.id, userName: user.name, role: user.role, credential: .apiKey(id: record.id),
            allowedDeployments: record.scope, keyLimits: record.limits, userLimits: user.limits,
            keyExpiry: record.expiresAt)
        verifiedKeys.remember(
            principal, keyID: record.id, secretDigest: presentedDigest, now: now,
            generation: generation)
        return principal
    }

    /// Creates a key for a user and returns the record and the plaintext, which is never stored.
    /// The key's limits may not be looser than the owner's, and the owner's key cap holds.
    public func issueKey(
        userID: String, name: String, expiresAt: Date?, scope: [String]? = nil, limits: UsageLimits? = nil
    ) async throws -> (APIKeyRecord, String) {
        try limits?.validate()
        guard let owner = try await users.user(id: userID) else { throw GantryError.notFound("user '\(userID)' not found") }
        if let limits, let ownLimits = owner.limits { try limits.requireWithin(ownLimits, of: "user '\(owner.name)'") }
        guard !name.isEmpty, name.count <= 100 else { throw GantryError.invalid("name must be 1-100 characters", param: "name") }
        if let expiresAt, expiresAt <= Date() {
            throw GantryError.invalid("expires_at must be in the future", param: "expires_at")
        }
        if let scope {
            guard !scope.isEmpty, scope.count <= 100 else {
                throw GantryError.invalid("scope must list 1-100 deployments, or be omitted for all", param: "scope")
            }
            for deployment in scope { try ResourceName.validate(deployment, field: "scope") }
        }
        let (id, plaintext) = APIKeyFormat.generate()
        let secret = String(plaintext.dropFirst(APIKeyFormat.prefix.count + id.count + 1))
        let record = APIKeyRecord(
            id: id, userID: userID, name: name, secretHash: APIKeyFormat.hash(secret: secret), createdAt: Date(),
            expiresAt: expiresAt, revokedAt: nil, lastUsedAt: nil, scope: scope, limits: limits)
        try await keys.createKey(record, maxActiveKeys: owner.maxKeys)
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

extension IdentityService {
    /// Forgets every remembered key verification, here and (through `onCredentialsChanged`) in
    /// gateways: called after a key is revoked or its limits change, or a user is disabled or
    /// changes role or limits, so the change applies to the very next request.
    public func credentialsChanged() async {
        verifiedKeys.removeAll()
        await onCredentialsChanged()
    }
}

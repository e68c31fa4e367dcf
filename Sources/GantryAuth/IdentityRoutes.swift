import Foundation
public import GantryCore
public import GantryHTTP
public import Hummingbird

/// `/api/v1/keys` and `/api/v1/users`.
public struct IdentityRoutes: Sendable {
    let identity: IdentityService
    let users: any UserRepository
    let keys: any APIKeyRepository
    let sessions: any SessionRepository

    public init(identity: IdentityService, repositories: Repositories) {
        self.identity = identity
        self.users = repositories.users
        self.keys = repositories.keys
        self.sessions = repositories.sessions
    }

    /// What a key looks like in responses: never the secret nor its hash.
    struct KeyView: Codable, Sendable {
        var id: String
        var name: String
        var userId: String
        var createdAt: Date
        var expiresAt: Date?
        var revokedAt: Date?
        var lastUsedAt: Date?
        /// Deployments the key may call; absent means all.
        var scope: [String]?
        var limits: UsageLimits?
        /// Present only in the response that creates the key.
        var key: String?

        init(_ record: APIKeyRecord, plaintext: String? = nil) {
            id = record.id
            name = record.name
            userId = record.userID
            createdAt = record.createdAt
            expiresAt = record.expiresAt
            revokedAt = record.revokedAt
            lastUsedAt = record.lastUsedAt
            scope = record.scope
            limits = record.limits
            key = plaintext
        }
    }

    struct CreateKey: Decodable {
        var name: String
        var expiresAt: Date?
        var scope: [String]?
        /// Requests, tokens and a token quota for this key; they can only restrict it further than
        /// the deployments' own limits.
        var limits: UsageLimits?
        /// Admins may issue a key for another user, by user name.
        var user: String?
    }

    struct UpdateKey: Decodable {
        /// The key's new limits and quota; `null` removes them.
        var limits: UsageLimits?
    }

    struct UpdateUser: Decodable {
        var role: Role?
        var disabled: Bool?
        /// Absent leaves the user's limits as they are; `null` removes them.
        var limits: UsageLimits??
        /// Absent leaves the key cap as it is; `null` removes it.
        var maxKeys: Int??

        enum CodingKeys: String, CodingKey {
            case role, disabled, limits, maxKeys
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            role = try container.decodeIfPresent(Role.self, forKey: .role)
            disabled = try container.decodeIfPresent(Bool.self, forKey: .disabled)
            // A present key decodes to .some(nil) for `null`: the two optionals tell absent from null.
            if container.contains(.limits) { limits = .some(try container.decode(UsageLimits?.self, forKey: .limits)) }
            if container.contains(.maxKeys) { maxKeys = .some(try container.decode(Int?.self, forKey: .maxKeys)) }
        }
    }

    struct CreateUser: Decodable {
        var name: String
        var email: String?
        var role: Role?
    }

    public func add(to router: Router<GantryRequestContext>) {
        let keysGroup = router.group("/api/v1/keys")
        keysGroup.post { request, context in
            let principal = try context.requirePrincipal()
            let body = try await request.decodeJSON(as: CreateKey.self)
            var ownerID = principal.userID
            if let userName = body.user, userName != principal.userName {
                _ = try context.requireAdmin()
                guard let owner = try await users.user(named: userName) else {
                    throw GantryError.notFound("user '\(userName)' not found")
                }
                ownerID = owner.id
            }
            let (record, plaintext) = try await identity.issueKey(
                userID: ownerID, name: body.name, expiresAt: body.expiresAt, scope: body.scope, limits: body.limits)
            return JSONResponse(KeyView(record, plaintext: plaintext), status: .created)
        }
        keysGroup.get { request, context in
            let principal = try context.requirePrincipal()
            let everyone = request.uri.queryParameters["all"] == "true"
            if everyone { _ = try context.requireAdmin() }
            let records = try await keys.listKeys(userID: everyone ? nil : principal.userID)
            return JSONResponse(ListResponse(records.map { KeyView($0) }))
        }
        // Only admins change a key's limits: they are how an admin meters a user.
        keysGroup.patch("{id}") { request, context in
            _ = try context.requireAdmin()
            let id = try context.parameters.require("id")
            let body = try await request.decodeJSON(as: UpdateKey.self)
            try body.limits?.validate()
            guard var record = try await keys.key(id: id) else { throw GantryError.notFound("API key '\(id)' not found") }
            try await keys.updateKeyLimits(id: id, limits: body.limits)
            record.limits = body.limits
            await identity.credentialsChanged()
            return JSONResponse(KeyView(record))
        }
        keysGroup.delete("{id}") { _, context in
            let principal = try context.requirePrincipal()
            let id = try context.parameters.require("id")
            guard let record = try await keys.key(id: id), record.userID == principal.userID || principal.isAdmin else {
                throw GantryError.notFound("API key '\(id)' not found")
            }
            try await keys.revokeKey(id: id, at: Date())
            await identity.credentialsChanged()
            return Response(status: .noContent)
        }

        let usersGroup = router.group("/api/v1/users")
        usersGroup.post { request, context in
            _ = try context.requireAdmin()
            let body = try await request.decodeJSON(as: CreateUser.self)
            try ResourceName.validate(body.name, field: "name")
            let user = User(
                id: Identifier.make("usr"), name: body.name, email: body.email, role: body.role ?? .user, disabled: false,
                createdAt: Date())
            try await users.createUser(user)
            return JSONResponse(user, status: .created)
        }
        usersGroup.get { _, context in
            _ = try context.requireAdmin()
            return JSONResponse(ListResponse(try await users.listUsers()))
        }
        usersGroup.patch("{id}") { request, context in
            let admin = try context.requireAdmin()
            let id = try context.parameters.require("id")
            let body = try await request.decodeJSON(as: UpdateUser.self)
            // Everything is checked before anything is stored.
            if case .some(.some(let limits)) = body.limits { try limits.validate() }
            if case .some(.some(let cap)) = body.maxKeys, cap < 0 {
                throw GantryError.invalid("max_keys must be 0 or more", param: "max_keys")
            }
            guard var user = try await users.user(id: id) else { throw GantryError.notFound("user '\(id)' not found") }
            if id == admin.userID, body.disabled == true || body.role == .user {
                throw GantryError.conflict("an administrator cannot disable or demote themselves")
            }
            if let role = body.role {
                user.role = role
                try await users.updateProfile(userID: id, name: user.name, email: user.email, role: role)
            }
            if body.limits != nil || body.maxKeys != nil {
                if let limits = body.limits { user.limits = limits }
                if let cap = body.maxKeys { user.maxKeys = cap }
                try await users.updateLimits(userID: id, limits: user.limits, maxKeys: user.maxKeys)
            }
            if let disabled = body.disabled {
                user.disabled = disabled
                try await users.setDisabled(userID: id, disabled: disabled)
                // Keys are refused at once because every verification reads the owner; browser
                // sessions are ended here as well.
                if disabled { try await sessions.deleteSessions(userID: id) }
            }
            await identity.credentialsChanged()
            return JSONResponse(user)
        }
    }
}

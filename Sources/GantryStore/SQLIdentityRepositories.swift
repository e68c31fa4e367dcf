import Foundation
import GantryCore
import SQLKit

struct SQLUserRepository: UserRepository {
    let db: any SQLDatabase

    func createUser(_ u: User) async throws {
        try await insertUnique("user '\(u.name)'") {
            try await db.insert(into: "users")
                .columns("id", "name", "email", "role", "disabled", "created_at", "issuer", "subject")
                .values(
                    SQLBind(u.id), SQLBind(u.name), SQLBind(u.email), SQLBind(u.role.rawValue),
                    SQLBind(Int64(u.disabled ? 1 : 0)), SQLBind(u.createdAt.millisecondsSince1970), SQLBind(u.issuer),
                    SQLBind(u.subject)
                )
                .run()
        }
    }

    func user(id: String) async throws -> User? {
        try await db.select().column("*").from("users").where("id", .equal, id).first().map(Self.user)
    }

    func user(named name: String) async throws -> User? {
        try await db.select().column("*").from("users").where("name", .equal, name).first().map(Self.user)
    }

    func user(issuer: String, subject: String) async throws -> User? {
        try await db.select().column("*").from("users").where("issuer", .equal, issuer).where("subject", .equal, subject)
            .first().map(Self.user)
    }

    func updateProfile(userID: String, name: String, email: String?, role: Role) async throws {
        try await db.update("users").set("name", to: SQLBind(name)).set("email", to: SQLBind(email))
            .set("role", to: SQLBind(role.rawValue)).where("id", .equal, userID).run()
    }

    func listUsers() async throws -> [User] {
        try await db.select().column("*").from("users").orderBy("name").all().map(Self.user)
    }

    func updateLimits(userID: String, limits: UsageLimits?, maxKeys: Int?) async throws {
        try await db.update("users").set("limits", to: SQLBind(try jsonText(limits)))
            .set("max_keys", to: SQLBind(maxKeys.map(Int64.init))).where("id", .equal, userID).run()
    }

    func setDisabled(userID: String, disabled: Bool) async throws {
        try await db.update("users").set("disabled", to: SQLBind(Int64(disabled ? 1 : 0))).where("id", .equal, userID).run()
    }

    static func user(_ row: any SQLRow) throws -> User {
        User(
            id: try row.string("id"), name: try row.string("name"), email: try row.decode(column: "email", as: String?.self),
            role: try row.enumValue("role", as: Role.self), disabled: try row.int("disabled") != 0,
            createdAt: try row.date("created_at"), issuer: try row.decode(column: "issuer", as: String?.self),
            subject: try row.decode(column: "subject", as: String?.self), limits: try row.json("limits", as: UsageLimits.self),
            maxKeys: try row.decode(column: "max_keys", as: Int64?.self).map(Int.init))
    }
}

struct SQLAPIKeyRepository: APIKeyRepository {
    let store: SQLStore
    var db: any SQLDatabase { store.database }

    func createKey(_ k: APIKeyRecord, maxActiveKeys: Int?) async throws {
        guard let maxActiveKeys else { return try await Self.insert(k, into: db) }
        try await store.transaction { db in
            // Locks the owner's row (an update, which both databases order), so concurrent
            // creations for one user count and insert one after the other.
            try await db.update("users").set("id", to: SQLColumn("id")).where("id", .equal, k.userID).run()
            let now = Date().millisecondsSince1970
            let row = try await db.select().column(SQLFunction("COUNT", args: SQLLiteral.all), as: "n").from("api_keys")
                .where("user_id", .equal, k.userID).where("revoked_at", .is, SQLLiteral.null)
                .where { $0.where("expires_at", .is, SQLLiteral.null).orWhere("expires_at", .greaterThan, SQLBind(now)) }
                .first()
            let active = try row.map { try $0.int("n") } ?? 0
            guard active < maxActiveKeys else {
                throw GantryError(
                    .conflict,
                    "the user holds \(active) active API keys, the most allowed (\(maxActiveKeys)); revoke one first",
                    code: "key_limit_reached")
            }
            try await Self.insert(k, into: db)
        }
    }

    private static func insert(_ k: APIKeyRecord, into db: any SQLDatabase) async throws {
        try await insertUnique("API key '\(k.id)'") {
            try await db.insert(into: "api_keys")
                .columns(
                    "id", "user_id", "name", "secret_hash", "created_at", "expires_at", "revoked_at", "last_used_at", "scope",
                    "limits"
                )
                .values(
                    SQLBind(k.id), SQLBind(k.userID), SQLBind(k.name), SQLBind(k.secretHash),
                    SQLBind(k.createdAt.millisecondsSince1970), SQLBind(k.expiresAt?.millisecondsSince1970),
                    SQLBind(k.revokedAt?.millisecondsSince1970), SQLBind(k.lastUsedAt?.millisecondsSince1970),
                    SQLBind(try jsonText(k.scope)),
                    SQLBind(try jsonText(k.limits))
                )
                .run()
        }
    }

    func key(id: String) async throws -> APIKeyRecord? {
        try await db.select().column("*").from("api_keys").where("id", .equal, id).first().map(Self.key)
    }

    func listKeys(userID: String?) async throws -> [APIKeyRecord] {
        var query = db.select().column("*").from("api_keys")
        if let userID { query = query.where("user_id", .equal, userID) }
        return try await query.orderBy("created_at").all().map(Self.key)
    }

    func revokeKey(id: String, at date: Date) async throws {
        try await db.update("api_keys").set("revoked_at", to: SQLBind(date.millisecondsSince1970))
            .where("id", .equal, id).where("revoked_at", .is, SQLLiteral.null).run()
    }

    func updateKeyLimits(id: String, limits: UsageLimits?) async throws {
        let text = try jsonText(limits)
        try await db.update("api_keys").set("limits", to: SQLBind(text)).where("id", .equal, id).run()
    }

    func touchKey(id: String, at date: Date) async throws {
        try await db.update("api_keys").set("last_used_at", to: SQLBind(date.millisecondsSince1970)).where("id", .equal, id)
            .run()
    }

    func countKeys() async throws -> Int {
        let row = try await db.select().column(SQLFunction("COUNT", args: SQLLiteral.all), as: "n").from("api_keys").first()
        return try row.map { try $0.int("n") } ?? 0
    }

    static func key(_ row: any SQLRow) throws -> APIKeyRecord {
        APIKeyRecord(
            id: try row.string("id"), userID: try row.string("user_id"), name: try row.string("name"),
            secretHash: try row.string("secret_hash"), createdAt: try row.date("created_at"),
            expiresAt: try row.optionalDate("expires_at"), revokedAt: try row.optionalDate("revoked_at"),
            lastUsedAt: try row.optionalDate("last_used_at"),
            scope: try row.json("scope", as: [String].self),
            limits: try row.json("limits", as: UsageLimits.self))
    }

}

struct SQLSessionRepository: SessionRepository {
    let db: any SQLDatabase

    func createSession(_ session: BrowserSession) async throws {
        try await db.insert(into: "sessions")
            .columns("token_hash", "user_id", "csrf_token", "created_at", "expires_at")
            .values(
                SQLBind(session.tokenHash), SQLBind(session.userID), SQLBind(session.csrfToken),
                SQLBind(session.createdAt.millisecondsSince1970), SQLBind(session.expiresAt.millisecondsSince1970)
            )
            .run()
    }

    func session(tokenHash: String) async throws -> BrowserSession? {
        try await db.select().column("*").from("sessions").where("token_hash", .equal, tokenHash).first().map { row in
            BrowserSession(
                tokenHash: try row.string("token_hash"), userID: try row.string("user_id"),
                csrfToken: try row.string("csrf_token"), createdAt: try row.date("created_at"),
                expiresAt: try row.date("expires_at"))
        }
    }

    func deleteSession(tokenHash: String) async throws {
        try await db.delete(from: "sessions").where("token_hash", .equal, tokenHash).run()
    }

    func deleteSessions(userID: String) async throws {
        try await db.delete(from: "sessions").where("user_id", .equal, userID).run()
    }

    func deleteExpiredSessions(before date: Date) async throws {
        try await db.delete(from: "sessions").where("expires_at", .lessThan, SQLBind(date.millisecondsSince1970)).run()
    }
}

import Foundation
import GantryCore
import SQLKit

struct SQLUserRepository: UserRepository {
    let db: any SQLDatabase

    func createUser(_ u: User) async throws {
        try await insertUnique("user '\(u.name)'") {
            try await db.insert(into: "users")
                .columns("id", "name", "email", "role", "disabled", "created_at")
                .values(
                    SQLBind(u.id), SQLBind(u.name), SQLBind(u.email), SQLBind(u.role.rawValue),
                    SQLBind(Int64(u.disabled ? 1 : 0)), SQLBind(u.createdAt.millisecondsSince1970)
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

    func listUsers() async throws -> [User] {
        try await db.select().column("*").from("users").orderBy("name").all().map(Self.user)
    }

    func setDisabled(userID: String, disabled: Bool) async throws {
        try await db.update("users").set("disabled", to: SQLBind(Int64(disabled ? 1 : 0))).where("id", .equal, userID).run()
    }

    static func user(_ row: any SQLRow) throws -> User {
        User(
            id: try row.string("id"), name: try row.string("name"), email: try row.decode(column: "email", as: String?.self),
            role: try row.enumValue("role", as: Role.self), disabled: try row.int("disabled") != 0,
            createdAt: try row.date("created_at"))
    }
}

struct SQLAPIKeyRepository: APIKeyRepository {
    let db: any SQLDatabase

    func createKey(_ k: APIKeyRecord) async throws {
        try await insertUnique("API key '\(k.id)'") {
            try await db.insert(into: "api_keys")
                .columns("id", "user_id", "name", "secret_hash", "created_at", "expires_at", "revoked_at", "last_used_at")
                .values(
                    SQLBind(k.id), SQLBind(k.userID), SQLBind(k.name), SQLBind(k.secretHash),
                    SQLBind(k.createdAt.millisecondsSince1970), SQLBind(k.expiresAt?.millisecondsSince1970),
                    SQLBind(k.revokedAt?.millisecondsSince1970), SQLBind(k.lastUsedAt?.millisecondsSince1970)
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
            lastUsedAt: try row.optionalDate("last_used_at"))
    }
}

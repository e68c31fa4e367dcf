import Foundation
import GantryCore
import SQLKit

/// Logins in progress, in the store: every control replica on the same database sees them.
struct SQLPendingLoginRepository: PendingLoginRepository {
    let db: any SQLDatabase

    func insertPendingLogin(kind: String, key: String, payload: Data, expiresAt: Date, capacity: Int, now: Date)
        async throws
    {
        let now = now.millisecondsSince1970
        try await db.delete(from: "pending_logins").where("expires_at", .lessThanOrEqual, now).run()
        // A bound against floods, not an exact count: replicas inserting at the same moment may
        // pass it by a few rows together.
        let live =
            try await db.select().column(SQLFunction("count", args: SQLLiteral.all), as: "live")
            .from("pending_logins").where("kind", .equal, kind).first()?.decode(column: "live", as: Int64.self) ?? 0
        guard live < capacity else {
            throw GantryError(.rateLimited, "too many logins in progress; try again in a minute", retryAfter: 60)
        }
        try await db.insert(into: "pending_logins")
            .columns("kind", "key", "payload", "expires_at")
            .values(
                SQLBind(kind), SQLBind(key), SQLBind(String(decoding: payload, as: UTF8.self)),
                SQLBind(expiresAt.millisecondsSince1970)
            )
            .onConflict(with: ["kind", "key"]) { conflict in
                conflict.set(excludedValueOf: "payload").set(excludedValueOf: "expires_at")
            }
            .run()
    }

    func takePendingLogin(kind: String, key: String, now: Date) async throws -> Data? {
        // One statement: of two replicas taking the same entry at once, only one gets a row back.
        let rows = try await db.delete(from: "pending_logins")
            .where("kind", .equal, kind)
            .where("key", .equal, key)
            .returning("payload", "expires_at")
            .all()
        guard let row = rows.first, try row.decode(column: "expires_at", as: Int64.self) > now.millisecondsSince1970
        else { return nil }
        return Data(try row.decode(column: "payload", as: String.self).utf8)
    }

    func pendingLogin(kind: String, key: String, now: Date) async throws -> Data? {
        let row = try await db.select().columns("payload").from("pending_logins")
            .where("kind", .equal, kind)
            .where("key", .equal, key)
            .where("expires_at", .greaterThan, now.millisecondsSince1970)
            .first()
        return try row.map { Data(try $0.decode(column: "payload", as: String.self).utf8) }
    }

    func deletePendingLogin(kind: String, key: String) async throws {
        try await db.delete(from: "pending_logins").where("kind", .equal, kind).where("key", .equal, key).run()
    }
}

import Foundation
import GantryCore
import SQLKit

/// Leases in the store. On PostgreSQL expiry is read from the database's clock, so replicas on
/// machines whose clocks drift apart still agree on when a lease ends; SQLite serves one process,
/// whose clock is the only one.
struct SQLLeaseRepository: LeaseRepository {
    let db: any SQLDatabase

    /// The store's now, in milliseconds since 1970: `clock_timestamp()` is the time of the
    /// statement's execution, not of its transaction's start.
    private var now: SQLQueryString {
        if db.dialect.name == "postgresql" {
            return "(extract(epoch from clock_timestamp()) * 1000)::bigint"
        }
        return "\(bind: Date().millisecondsSince1970)"
    }

    func acquireLease(name: String, holder: String, duration: Duration) async throws -> Int64? {
        let milliseconds = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        // One upsert: the row changes only when the caller holds the lease or it has expired, so of
        // replicas racing for an expired lease exactly one sees its row come back.
        let query: SQLQueryString = """
            INSERT INTO leases (name, holder, term, expires_at) VALUES (\(bind: name), \(bind: holder), 1, \(now) + \(bind: milliseconds))
            ON CONFLICT (name) DO UPDATE SET
                term = CASE WHEN leases.holder = excluded.holder THEN leases.term ELSE leases.term + 1 END,
                holder = excluded.holder, expires_at = excluded.expires_at
            WHERE leases.holder = excluded.holder OR leases.expires_at <= \(now)
            RETURNING term
            """
        let rows = try await db.raw(query).all()
        return try rows.first?.decode(column: "term", as: Int64.self)
    }

    func releaseLease(name: String, holder: String) async throws {
        // Expired, not deleted: the next holder's term follows this one's.
        try await db.update("leases").set("expires_at", to: 0).where("name", .equal, name)
            .where("holder", .equal, holder).run()
    }
}

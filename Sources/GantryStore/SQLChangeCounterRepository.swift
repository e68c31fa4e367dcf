import GantryCore
import SQLKit

/// Change counters in the store, one row each.
struct SQLChangeCounterRepository: ChangeCounterRepository {
    let db: any SQLDatabase

    func bumpChangeCounter(name: String) async throws {
        // One statement, so that bumps from several replicas at once all count.
        try await db.raw(
            """
            INSERT INTO change_counters (name, value) VALUES (\(bind: name), 1)
            ON CONFLICT (name) DO UPDATE SET value = change_counters.value + 1
            """
        ).run()
    }

    func changeCounter(name: String) async throws -> Int64 {
        try await db.select().column("value").from("change_counters").where("name", .equal, name).first()?
            .decode(column: "value", as: Int64.self) ?? 0
    }
}

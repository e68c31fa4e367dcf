import Foundation
import GantryCore
import PostgresKit
import SQLKit

struct SQLAllocationRepository: AllocationRepository {
    let store: SQLStore

    func allocate(_ allocation: Allocation, nodeCPUCount: Int) async throws {
        let isPostgres: Bool
        if case .postgres = store.location { isPostgres = true } else { isPostgres = false }
        try await store.transaction { db in
            // Serialise allocations per node across processes (SQLite's single connection already
            // serialises them), so the CPU check below cannot race; GPUs also have a unique key.
            if isPostgres {
                try await db.raw("SELECT pg_advisory_xact_lock(\(bind: Self.lockKey(allocation.node)))").run()
            }
            if allocation.cpuThreads > 0 {
                // SUM over BIGINT is NUMERIC in PostgreSQL; cast so both databases answer an integer.
                let row = try await db.raw(
                    "SELECT CAST(COALESCE(SUM(cpu_threads), 0) AS BIGINT) AS used FROM allocations WHERE node = \(bind: allocation.node)"
                ).first()
                let used = try row.map { Int(try $0.decode(column: "used", as: Int64.self)) } ?? 0
                guard used + allocation.cpuThreads <= nodeCPUCount else {
                    throw GantryError.conflict(
                        "node \(allocation.node) has \(nodeCPUCount - used) of \(nodeCPUCount) CPU threads free")
                }
            }
            try await db.insert(into: "allocations")
                .columns("id", "owner", "node", "cpu_threads", "created_at")
                .values(
                    SQLBind(allocation.id), SQLBind(allocation.owner), SQLBind(allocation.node),
                    SQLBind(Int64(allocation.cpuThreads)), SQLBind(allocation.createdAt.millisecondsSince1970)
                )
                .run()
            for (position, uuid) in allocation.gpuUUIDs.enumerated() {
                try await insertUnique("an allocation of GPU \(uuid) on \(allocation.node)") {
                    try await db.insert(into: "allocated_gpus")
                        .columns("node", "gpu_uuid", "allocation_id", "position")
                        .values(SQLBind(allocation.node), SQLBind(uuid), SQLBind(allocation.id), SQLBind(Int64(position)))
                        .run()
                }
            }
        }
    }

    /// A stable 63-bit key for a node name (FNV-1a), for PostgreSQL's advisory locks.
    static func lockKey(_ node: String) -> Int64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in node.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return Int64(bitPattern: hash >> 1)
    }

    func allocation(id: String) async throws -> Allocation? {
        try await allocations(matching: id).first
    }

    func listAllocations() async throws -> [Allocation] {
        try await allocations(matching: nil)
    }

    func deleteAllocation(id: String) async throws {
        try await store.transaction { db in
            try await db.delete(from: "allocated_gpus").where("allocation_id", .equal, id).run()
            try await db.delete(from: "allocations").where("id", .equal, id).run()
        }
    }

    /// All allocations (or one) with their GPUs: two queries, however many allocations there are.
    private func allocations(matching id: String?) async throws -> [Allocation] {
        var allocationQuery = store.database.select().column("*").from("allocations")
        var gpuQuery = store.database.select().columns("allocation_id", "gpu_uuid").from("allocated_gpus")
        if let id {
            allocationQuery = allocationQuery.where("id", .equal, id)
            gpuQuery = gpuQuery.where("allocation_id", .equal, id)
        }
        var gpus: [String: [String]] = [:]
        for row in try await gpuQuery.orderBy("position").all() {
            gpus[try row.string("allocation_id"), default: []].append(try row.string("gpu_uuid"))
        }
        return try await allocationQuery.orderBy("created_at").all().map { row in
            let allocationID = try row.string("id")
            return Allocation(
                id: allocationID, owner: try row.string("owner"), node: try row.string("node"),
                gpuUUIDs: gpus[allocationID] ?? [], cpuThreads: try row.int("cpu_threads"), createdAt: try row.date("created_at"))
        }
    }
}

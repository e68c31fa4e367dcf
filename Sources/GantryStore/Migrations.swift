import Foundation
import GantryCore
public import Logging
import SQLKit

/// One schema change. Versions are applied in order, each once, and recorded in `schema_migrations`.
struct Migration: Sendable {
    let version: Int
    let name: String
    let apply: @Sendable (any SQLDatabase) async throws -> Void
}

extension SQLStore {
    /// Every migration Gantry has, oldest first. Append only: never edit a released one.
    static let migrations: [Migration] = [
        Migration(version: 1, name: "initial schema") { db in
            try await db.create(table: "models")
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("name", type: .text, .notNull, .unique)
                .column("description", type: .text, .notNull)
                .column("task", type: .text, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .run()
            try await db.create(table: "model_versions")
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("model_id", type: .text, .notNull, .references("models", "id"))
                .column("version", type: .text, .notNull)
                .column("format", type: .text, .notNull)
                .column("context_limit", type: .bigint, .notNull)
                .column("artifact_uri", type: .text, .notNull)
                .column("status", type: .text, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .unique("model_id", "version")
                .run()
            try await db.create(table: "deployments")
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("name", type: .text, .notNull, .unique)
                .column("model_id", type: .text, .notNull, .references("models", "id"))
                .column("version_id", type: .text, .notNull, .references("model_versions", "id"))
                .column("engine", type: .text, .notNull)
                .column("replicas", type: .bigint, .notNull)
                .column("context_limit", type: .bigint, .notNull)
                .column("status", type: .text, .notNull)
                .column("status_message", type: .text, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .column("updated_at", type: .bigint, .notNull)
                .run()
            try await db.create(table: "instances")
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("deployment_id", type: .text, .notNull, .references("deployments", "id", onDelete: .cascade))
                .column("endpoint", type: .text, .notNull)
                .column("status", type: .text, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .column("updated_at", type: .bigint, .notNull)
                .run()
            try await db.create(table: "users")
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("name", type: .text, .notNull, .unique)
                .column("email", type: .text)
                .column("role", type: .text, .notNull)
                .column("disabled", type: .bigint, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .run()
            try await db.create(table: "api_keys")
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("user_id", type: .text, .notNull, .references("users", "id", onDelete: .cascade))
                .column("name", type: .text, .notNull)
                .column("secret_hash", type: .text, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .column("expires_at", type: .bigint)
                .column("revoked_at", type: .bigint)
                .column("last_used_at", type: .bigint)
                .run()
        },
        Migration(version: 2, name: "OIDC identities, key scopes, browser sessions") { db in
            try await db.alter(table: "users").column("issuer", type: .text).run()
            try await db.alter(table: "users").column("subject", type: .text).run()
            // NULLs are distinct in both databases, so local users (no issuer) never collide.
            try await db.create(index: "users_identity").unique().on("users").column("issuer").column("subject").run()
            try await db.alter(table: "api_keys").column("scope", type: .text).run()
            try await db.create(table: "sessions")
                .column("token_hash", type: .text, .primaryKey(autoIncrement: false))
                .column("user_id", type: .text, .notNull, .references("users", "id", onDelete: .cascade))
                .column("csrf_token", type: .text, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .column("expires_at", type: .bigint, .notNull)
                .run()
        },
        Migration(version: 3, name: "allocation ledger") { db in
            try await db.create(table: "allocations")
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("owner", type: .text, .notNull)
                .column("node", type: .text, .notNull)
                .column("cpu_threads", type: .bigint, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .run()
            try await db.create(table: "allocated_gpus")
                .column("node", type: .text, .notNull)
                .column("gpu_uuid", type: .text, .notNull)
                .column("allocation_id", type: .text, .notNull, .references("allocations", "id", onDelete: .cascade))
                .column("position", type: .bigint, .notNull)
                // The guarantee: one GPU, one allocation, whatever the number of processes.
                .primaryKey("node", "gpu_uuid")
                .run()
        },
        Migration(version: 4, name: "model registry: owners, labels, version metadata, uploaded files") { db in
            // Added columns are nullable: SQLite cannot add a NOT NULL column without a default,
            // and NULL reads back as the field's default ("", [], false).
            try await db.alter(table: "models").column("owner", type: .text).run()
            try await db.alter(table: "models").column("updated_at", type: .bigint).run()
            try await db.create(table: "model_labels")
                .column("model_id", type: .text, .notNull, .references("models", "id", onDelete: .cascade))
                .column("key", type: .text, .notNull)
                .column("value", type: .text, .notNull)
                .primaryKey("model_id", "key")
                .run()
            for column in ["description", "input_schema", "output_schema", "default_engine", "engine_args", "status_message"] {
                try await db.alter(table: "model_versions").column(column, type: .text).run()
            }
            try await db.alter(table: "model_versions").column("deprecated", type: .bigint).run()
            try await db.alter(table: "model_versions").column("updated_at", type: .bigint).run()
            try await db.create(table: "model_files")
                .column("version_id", type: .text, .notNull, .references("model_versions", "id", onDelete: .cascade))
                .column("path", type: .text, .notNull)
                .column("size", type: .bigint, .notNull)
                .column("sha256", type: .text, .notNull)
                .column("object_key", type: .text, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .primaryKey("version_id", "path")
                .run()
        },
        Migration(version: 5, name: "orchestration: deployment specs and revisions, instance lifecycle, events") { db in
            // The spec (revisions, scaling, access, limits) is one JSON document: nothing queries
            // inside it, and it changes as a whole. version_id, engine and context_limit stay
            // columns, mirrored from the current revision, for the registry's "in use" checks.
            try await db.alter(table: "deployments").column("spec", type: .text).run()
            for row in try await db.raw(
                "SELECT d.id, d.version_id, d.engine, d.context_limit, d.replicas, d.created_at, v.version FROM deployments d JOIN model_versions v ON v.id = d.version_id"
            ).all() {
                let replicas = try row.int("replicas")
                let revision = DeploymentRevision(
                    id: Identifier.make("rev"), versionID: try row.string("version_id"), version: try row.string("version"),
                    engine: try row.string("engine"), contextLimit: try row.int("context_limit"), engineArgs: [],
                    resources: ReplicaResources(), createdAt: try row.date("created_at"))
                let spec = StoredDeploymentSpec(
                    revision: revision, previousRevision: nil,
                    scaling: ScalingPolicy(minReplicas: replicas, maxReplicas: replicas), access: AccessPolicy(),
                    limits: FrequencyLimits())
                try await db.update("deployments").set("spec", to: SQLBind(try spec.encoded()))
                    .where("id", .equal, try row.string("id")).run()
            }
            // Instances were never kept across restarts before; their table is rebuilt.
            try await db.drop(table: "instances").ifExists().run()
            try await db.create(table: "instances")
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("deployment_id", type: .text, .notNull, .references("deployments", "id", onDelete: .cascade))
                .column("revision_id", type: .text, .notNull)
                .column("node", type: .text, .notNull)
                .column("state", type: .text, .notNull)
                .column("state_message", type: .text, .notNull)
                .column("endpoint", type: .text, .notNull)
                .column("pid", type: .bigint)
                .column("gpu_uuids", type: .text, .notNull)
                .column("restarts", type: .bigint, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .column("updated_at", type: .bigint, .notNull)
                .run()
            try await db.create(table: "deployment_events")
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("deployment_id", type: .text, .notNull, .references("deployments", "id", onDelete: .cascade))
                .column("instance_id", type: .text)
                .column("kind", type: .text, .notNull)
                .column("message", type: .text, .notNull)
                .column("sequence", type: .bigint, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .run()
            try await db.create(index: "deployment_events_by_deployment").on("deployment_events")
                .column("deployment_id").column("sequence").run()
        },
        Migration(version: 6, name: "data plane: usage records, API key limits and quotas") { db in
            // One row per request, written in batches by the gateway. Deployment and version are
            // names, not references: usage outlives the deployments it was spent on.
            try await db.create(table: "usage_records")
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("created_at", type: .bigint, .notNull)
                .column("key_id", type: .text)
                .column("user_id", type: .text, .notNull)
                .column("deployment", type: .text, .notNull)
                .column("version", type: .text, .notNull)
                .column("instance_id", type: .text)
                .column("endpoint", type: .text, .notNull)
                .column("prompt_tokens", type: .bigint, .notNull)
                .column("completion_tokens", type: .bigint, .notNull)
                .column("ttft_ms", type: .bigint)
                .column("latency_ms", type: .bigint, .notNull)
                .column("status", type: .bigint, .notNull)
                .column("error_type", type: .text)
                .column("engine_ms", type: .bigint, .notNull)
                .run()
            try await db.create(index: "usage_by_time").on("usage_records").column("created_at").run()
            try await db.create(index: "usage_by_key").on("usage_records").column("key_id").column("created_at").run()
            try await db.create(index: "usage_by_user").on("usage_records").column("user_id").column("created_at").run()
            // A key's limits and quota are one JSON document, read with the key.
            try await db.alter(table: "api_keys").column("limits", type: .text).run()
        },
        Migration(version: 7, name: "usage records: tokens estimated by the gateway") { db in
            // 1 when the engine's usage never arrived and the gateway charged its reservation.
            try await db.alter(table: "usage_records").column("estimated", type: .bigint, .notNull, .default(0)).run()
        },
        Migration(version: 8, name: "users: limits, quota and a key cap over all their keys") { db in
            // One JSON document, as a key's limits are.
            try await db.alter(table: "users").column("limits", type: .text).run()
            try await db.alter(table: "users").column("max_keys", type: .bigint).run()
        },
        Migration(version: 9, name: "pending logins in the store, shared by control replicas") { db in
            // A login may start on one control replica and finish on another. `key` is a digest
            // of the state, handle or code; `payload` the login's JSON.
            try await db.create(table: "pending_logins")
                .column("kind", type: .text, .notNull)
                .column("key", type: .text, .notNull)
                .column("payload", type: .text, .notNull)
                .column("expires_at", type: .bigint, .notNull)
                .primaryKey("kind", "key")
                .run()
            try await db.create(index: "pending_logins_by_expiry").on("pending_logins").column("expires_at").run()
        },
        Migration(version: 10, name: "leases and change counters: control replicas on one database") { db in
            // `expires_at` in milliseconds since 1970 by the store's clock; `term` counts holders.
            try await db.create(table: "leases")
                .column("name", type: .text, .primaryKey(autoIncrement: false))
                .column("holder", type: .text, .notNull)
                .column("term", type: .bigint, .notNull)
                .column("expires_at", type: .bigint, .notNull)
                .run()
            // Moved by one replica, watched by the leader (a credential change through a standby).
            try await db.create(table: "change_counters")
                .column("name", type: .text, .primaryKey(autoIncrement: false))
                .column("value", type: .bigint, .notNull)
                .run()
        },
    ]

    /// The highest migration version this binary knows.
    public static var latestSchemaVersion: Int { migrations.last?.version ?? 0 }

    /// Applies the migrations the database has not seen yet and returns how many ran.
    ///
    /// Refuses to run against a database migrated by a newer Gantry, rather than guess.
    @discardableResult
    public func migrate(logger: Logger) async throws -> Int {
        try await database.create(table: "schema_migrations")
            .ifNotExists()
            .column("version", type: .bigint, .primaryKey(autoIncrement: false))
            .column("name", type: .text, .notNull)
            .column("applied_at", type: .bigint, .notNull)
            .run()
        let applied = try await appliedMigrationVersions()
        if let newest = applied.max(), newest > Self.latestSchemaVersion {
            throw GantryError(
                .internal,
                "the database is at schema version \(newest), newer than this gantry (\(Self.latestSchemaVersion)); upgrade gantry"
            )
        }
        var count = 0
        for migration in Self.migrations where !applied.contains(migration.version) {
            logger.info("applying migration", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
            try await migration.apply(database)
            try await database.insert(into: "schema_migrations")
                .columns("version", "name", "applied_at")
                .values(SQLBind(Int64(migration.version)), SQLBind(migration.name), SQLBind(Date().millisecondsSince1970))
                .run()
            count += 1
        }
        return count
    }

    public func appliedMigrationVersions() async throws -> Set<Int> {
        let rows = try await database.select().column("version").from("schema_migrations").all()
        return Set(try rows.map { Int(try $0.decode(column: "version", as: Int64.self)) })
    }
}

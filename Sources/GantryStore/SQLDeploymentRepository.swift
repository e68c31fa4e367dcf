import Foundation
import GantryCore
import SQLKit
import Synchronization

/// The part of a deployment kept as one JSON document in `deployments.spec`.
struct StoredDeploymentSpec: Codable {
    var revision: DeploymentRevision
    var previousRevision: DeploymentRevision?
    var canary: CanaryRevision?
    var scaling: ScalingPolicy
    var access: AccessPolicy
    var limits: FrequencyLimits
    /// Absent in specs stored before timeouts existed.
    var timeouts: ServiceTimeouts?

    init(
        revision: DeploymentRevision, previousRevision: DeploymentRevision?, canary: CanaryRevision? = nil,
        scaling: ScalingPolicy, access: AccessPolicy, limits: FrequencyLimits,
        timeouts: ServiceTimeouts? = nil
    ) {
        self.revision = revision
        self.previousRevision = previousRevision
        self.canary = canary
        self.scaling = scaling
        self.access = access
        self.limits = limits
        self.timeouts = timeouts
    }

    init(_ d: Deployment) {
        self.init(
            revision: d.revision, previousRevision: d.previousRevision, canary: d.canary, scaling: d.scaling,
            access: d.access, limits: d.limits, timeouts: d.timeouts)
    }

    func encoded() throws -> String {
        try jsonText(self)!
    }

    static func decode(_ text: String) throws -> StoredDeploymentSpec {
        try decodeJSONText(text, as: StoredDeploymentSpec.self)
    }
}

struct SQLDeploymentRepository: DeploymentRepository {
    let db: any SQLDatabase

    func createDeployment(_ d: Deployment) async throws {
        try await insertUnique("deployment '\(d.name)'") {
            try await db.insert(into: "deployments")
                .columns(
                    "id", "name", "model_id", "version_id", "engine", "replicas", "context_limit", "spec", "status",
                    "status_message", "created_at", "updated_at"
                )
                .values(
                    SQLBind(d.id), SQLBind(d.name), SQLBind(d.modelID), SQLBind(d.versionID), SQLBind(d.engine),
                    SQLBind(Int64(d.replicas)), SQLBind(Int64(d.contextLimit)), SQLBind(try StoredDeploymentSpec(d).encoded()),
                    SQLBind(d.status.rawValue), SQLBind(d.statusMessage), SQLBind(d.createdAt.millisecondsSince1970),
                    SQLBind(d.updatedAt.millisecondsSince1970)
                )
                .run()
        }
    }

    func deployment(named name: String) async throws -> Deployment? {
        try await db.select().column("*").from("deployments").where("name", .equal, name).first().map(Self.deployment)
    }

    func listDeployments() async throws -> [Deployment] {
        try await db.select().column("*").from("deployments").orderBy("name").all().map(Self.deployment)
    }

    func updateSpec(_ d: Deployment) async throws {
        try await db.update("deployments")
            .set("version_id", to: SQLBind(d.versionID))
            .set("engine", to: SQLBind(d.engine))
            .set("context_limit", to: SQLBind(Int64(d.contextLimit)))
            .set("replicas", to: SQLBind(Int64(d.replicas)))
            .set("spec", to: SQLBind(try StoredDeploymentSpec(d).encoded()))
            .set("updated_at", to: SQLBind(Date().millisecondsSince1970))
            .where("id", .equal, d.id)
            .run()
    }

    func updateReplicas(deploymentID: String, replicas: Int) async throws {
        try await db.update("deployments")
            .set("replicas", to: SQLBind(Int64(replicas)))
            .set("updated_at", to: SQLBind(Date().millisecondsSince1970))
            .where("id", .equal, deploymentID)
            .run()
    }

    func updateStatus(deploymentID: String, status: DeploymentStatus, message: String) async throws {
        try await db.update("deployments")
            .set("status", to: SQLBind(status.rawValue))
            .set("status_message", to: SQLBind(message))
            .set("updated_at", to: SQLBind(Date().millisecondsSince1970))
            .where("id", .equal, deploymentID)
            .where("status", .notEqual, DeploymentStatus.deleting.rawValue)
            .where { group in
                group.where("status", .notEqual, status.rawValue).orWhere("status_message", .notEqual, message)
            }
            .run()
    }

    func deleteDeployment(id: String) async throws {
        try await db.delete(from: "deployment_events").where("deployment_id", .equal, id).run()
        try await db.delete(from: "instances").where("deployment_id", .equal, id).run()
        try await db.delete(from: "deployments").where("id", .equal, id).run()
    }

    /// Orders events written in the same millisecond by one process.
    private static let lastSequence = Mutex<Int64>(0)

    func recordEvent(_ event: DeploymentEvent) async throws {
        let micros = Int64(event.createdAt.timeIntervalSince1970 * 1_000_000)
        let sequence = Self.lastSequence.withLock { last in
            last = max(last + 1, micros)
            return last
        }
        try await db.insert(into: "deployment_events")
            .columns("id", "deployment_id", "instance_id", "kind", "message", "sequence", "created_at")
            .values(
                SQLBind(Identifier.make("evt")), SQLBind(event.deploymentID), SQLBind(event.instanceID), SQLBind(event.kind),
                SQLBind(event.message), SQLBind(sequence), SQLBind(event.createdAt.millisecondsSince1970)
            )
            .run()
    }

    func events(deploymentID: String, limit: Int) async throws -> [DeploymentEvent] {
        let rows = try await db.select().column("*").from("deployment_events")
            .where("deployment_id", .equal, deploymentID)
            .orderBy("sequence", .descending)
            .limit(limit)
            .all()
        return try rows.reversed().map { row in
            DeploymentEvent(
                deploymentID: try row.string("deployment_id"),
                instanceID: try row.decode(column: "instance_id", as: String?.self), kind: try row.string("kind"),
                message: try row.string("message"), createdAt: try row.date("created_at"))
        }
    }

    static func deployment(_ row: any SQLRow) throws -> Deployment {
        let spec = try StoredDeploymentSpec.decode(try row.string("spec"))
        return Deployment(
            id: try row.string("id"), name: try row.string("name"), modelID: try row.string("model_id"),
            revision: spec.revision, previousRevision: spec.previousRevision, canary: spec.canary, scaling: spec.scaling,
            replicas: try row.int("replicas"), access: spec.access, limits: spec.limits,
            timeouts: spec.timeouts ?? ServiceTimeouts(),
            status: try row.enumValue("status", as: DeploymentStatus.self), statusMessage: try row.string("status_message"),
            createdAt: try row.date("created_at"), updatedAt: try row.date("updated_at"))
    }
}

struct SQLInstanceRepository: InstanceRepository {
    let db: any SQLDatabase

    func createInstance(_ i: EngineInstance) async throws {
        try await insertUnique("instance '\(i.id)'") {
            try await db.insert(into: "instances")
                .columns(
                    "id", "deployment_id", "revision_id", "node", "state", "state_message", "endpoint", "pid", "gpu_uuids",
                    "restarts", "created_at", "updated_at"
                )
                .values(
                    SQLBind(i.id), SQLBind(i.deploymentID), SQLBind(i.revisionID), SQLBind(i.node), SQLBind(i.state.rawValue),
                    SQLBind(i.stateMessage), SQLBind(i.endpoint), SQLBind(i.pid.map(Int64.init)),
                    SQLBind(try jsonText(i.gpuUUIDs)), SQLBind(Int64(i.restarts)),
                    SQLBind(i.createdAt.millisecondsSince1970), SQLBind(i.updatedAt.millisecondsSince1970)
                )
                .run()
        }
    }

    func updateInstance(_ i: EngineInstance) async throws {
        try await db.update("instances")
            .set("revision_id", to: SQLBind(i.revisionID))
            .set("node", to: SQLBind(i.node))
            .set("state", to: SQLBind(i.state.rawValue))
            .set("state_message", to: SQLBind(i.stateMessage))
            .set("endpoint", to: SQLBind(i.endpoint))
            .set("pid", to: SQLBind(i.pid.map(Int64.init)))
            .set("gpu_uuids", to: SQLBind(try jsonText(i.gpuUUIDs)))
            .set("restarts", to: SQLBind(Int64(i.restarts)))
            .set("updated_at", to: SQLBind(i.updatedAt.millisecondsSince1970))
            .where("id", .equal, i.id)
            .run()
    }

    func instance(id: String) async throws -> EngineInstance? {
        try await db.select().column("*").from("instances").where("id", .equal, id).first().map(Self.instance)
    }

    func listInstances(deploymentID: String?) async throws -> [EngineInstance] {
        var query = db.select().column("*").from("instances")
        if let deploymentID { query = query.where("deployment_id", .equal, deploymentID) }
        return try await query.orderBy("created_at").orderBy("id").all().map(Self.instance)
    }

    func deleteInstance(id: String) async throws {
        try await db.delete(from: "instances").where("id", .equal, id).run()
    }

    static func instance(_ row: any SQLRow) throws -> EngineInstance {
        EngineInstance(
            id: try row.string("id"), deploymentID: try row.string("deployment_id"),
            revisionID: try row.string("revision_id"), node: try row.string("node"),
            state: try row.enumValue("state", as: InstanceState.self), stateMessage: try row.string("state_message"),
            endpoint: try row.string("endpoint"), pid: try row.decode(column: "pid", as: Int64?.self).map { Int32($0) },
            gpuUUIDs: try decodeJSONText(try row.string("gpu_uuids"), as: [String].self),
            restarts: try row.int("restarts"), createdAt: try row.date("created_at"), updatedAt: try row.date("updated_at"))
    }
}

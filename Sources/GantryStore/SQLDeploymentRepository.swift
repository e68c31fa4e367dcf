import Foundation
import GantryCore
import SQLKit

struct SQLDeploymentRepository: DeploymentRepository {
    let db: any SQLDatabase

    func createDeployment(_ d: Deployment) async throws {
        try await insertUnique("deployment '\(d.name)'") {
            try await db.insert(into: "deployments")
                .columns(
                    "id", "name", "model_id", "version_id", "engine", "replicas", "context_limit", "status",
                    "status_message", "created_at", "updated_at"
                )
                .values(
                    SQLBind(d.id), SQLBind(d.name), SQLBind(d.modelID), SQLBind(d.versionID), SQLBind(d.engine),
                    SQLBind(Int64(d.replicas)), SQLBind(Int64(d.contextLimit)), SQLBind(d.status.rawValue),
                    SQLBind(d.statusMessage), SQLBind(d.createdAt.millisecondsSince1970),
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

    func updateStatus(deploymentID: String, status: DeploymentStatus, message: String) async throws {
        try await db.update("deployments")
            .set("status", to: SQLBind(status.rawValue))
            .set("status_message", to: SQLBind(message))
            .set("updated_at", to: SQLBind(Date().millisecondsSince1970))
            .where("id", .equal, deploymentID)
            .run()
    }

    func deleteDeployment(id: String) async throws {
        try await db.delete(from: "instances").where("deployment_id", .equal, id).run()
        try await db.delete(from: "deployments").where("id", .equal, id).run()
    }

    static func deployment(_ row: any SQLRow) throws -> Deployment {
        Deployment(
            id: try row.string("id"), name: try row.string("name"), modelID: try row.string("model_id"),
            versionID: try row.string("version_id"), engine: try row.string("engine"), replicas: try row.int("replicas"),
            contextLimit: try row.int("context_limit"), status: try row.enumValue("status", as: DeploymentStatus.self),
            statusMessage: try row.string("status_message"), createdAt: try row.date("created_at"),
            updatedAt: try row.date("updated_at"))
    }
}

struct SQLInstanceRepository: InstanceRepository {
    let db: any SQLDatabase

    func createInstance(_ i: EngineInstance) async throws {
        try await insertUnique("instance '\(i.id)'") {
            try await db.insert(into: "instances")
                .columns("id", "deployment_id", "endpoint", "status", "created_at", "updated_at")
                .values(
                    SQLBind(i.id), SQLBind(i.deploymentID), SQLBind(i.endpoint), SQLBind(i.status.rawValue),
                    SQLBind(i.createdAt.millisecondsSince1970), SQLBind(i.updatedAt.millisecondsSince1970)
                )
                .run()
        }
    }

    func updateStatus(instanceID: String, status: InstanceStatus) async throws {
        try await db.update("instances")
            .set("status", to: SQLBind(status.rawValue))
            .set("updated_at", to: SQLBind(Date().millisecondsSince1970))
            .where("id", .equal, instanceID)
            .run()
    }

    func listInstances(deploymentID: String?) async throws -> [EngineInstance] {
        var query = db.select().column("*").from("instances")
        if let deploymentID { query = query.where("deployment_id", .equal, deploymentID) }
        return try await query.orderBy("created_at").all().map(Self.instance)
    }

    func deleteInstance(id: String) async throws {
        try await db.delete(from: "instances").where("id", .equal, id).run()
    }

    static func instance(_ row: any SQLRow) throws -> EngineInstance {
        EngineInstance(
            id: try row.string("id"), deploymentID: try row.string("deployment_id"), endpoint: try row.string("endpoint"),
            status: try row.enumValue("status", as: InstanceStatus.self), createdAt: try row.date("created_at"),
            updatedAt: try row.date("updated_at"))
    }
}

import Foundation
import GantryCore
import SQLKit

struct SQLModelRepository: ModelRepository {
    let db: any SQLDatabase

    func createModel(_ model: Model) async throws {
        try await insertUnique("model '\(model.name)'") {
            try await db.insert(into: "models")
                .columns("id", "name", "description", "task", "created_at")
                .values(
                    SQLBind(model.id), SQLBind(model.name), SQLBind(model.description), SQLBind(model.task.rawValue),
                    SQLBind(model.createdAt.millisecondsSince1970)
                )
                .run()
        }
    }

    func model(named name: String) async throws -> Model? {
        try await db.select().column("*").from("models").where("name", .equal, name).first().map(Self.model)
    }

    func model(id: String) async throws -> Model? {
        try await db.select().column("*").from("models").where("id", .equal, id).first().map(Self.model)
    }

    func listModels() async throws -> [Model] {
        try await db.select().column("*").from("models").orderBy("name").all().map(Self.model)
    }

    func createVersion(_ version: ModelVersion) async throws {
        try await insertUnique("version '\(version.version)'") {
            try await db.insert(into: "model_versions")
                .columns("id", "model_id", "version", "format", "context_limit", "artifact_uri", "status", "created_at")
                .values(
                    SQLBind(version.id), SQLBind(version.modelID), SQLBind(version.version), SQLBind(version.format),
                    SQLBind(Int64(version.contextLimit)), SQLBind(version.artifactURI), SQLBind(version.status.rawValue),
                    SQLBind(version.createdAt.millisecondsSince1970)
                )
                .run()
        }
    }

    func version(modelID: String, version: String) async throws -> ModelVersion? {
        try await db.select().column("*").from("model_versions")
            .where("model_id", .equal, modelID).where("version", .equal, version)
            .first().map(Self.version)
    }

    func version(id: String) async throws -> ModelVersion? {
        try await db.select().column("*").from("model_versions").where("id", .equal, id).first().map(Self.version)
    }

    func listVersions(modelID: String) async throws -> [ModelVersion] {
        try await db.select().column("*").from("model_versions").where("model_id", .equal, modelID)
            .orderBy("created_at").all().map(Self.version)
    }

    static func model(_ row: any SQLRow) throws -> Model {
        Model(
            id: try row.string("id"), name: try row.string("name"), description: try row.string("description"),
            task: try row.enumValue("task", as: ModelTask.self), createdAt: try row.date("created_at"))
    }

    static func version(_ row: any SQLRow) throws -> ModelVersion {
        ModelVersion(
            id: try row.string("id"), modelID: try row.string("model_id"), version: try row.string("version"),
            format: try row.string("format"), contextLimit: try row.int("context_limit"),
            artifactURI: try row.string("artifact_uri"), status: try row.enumValue("status", as: ModelVersionStatus.self),
            createdAt: try row.date("created_at"))
    }
}

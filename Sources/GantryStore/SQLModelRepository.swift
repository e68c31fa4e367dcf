import Foundation
import GantryCore
import SQLKit

struct SQLModelRepository: ModelRepository {
    let store: SQLStore
    var db: any SQLDatabase { store.database }

    // MARK: models

    func createModel(_ model: Model) async throws {
        try await store.transaction { db in
            try await insertUnique("model '\(model.name)'") {
                try await db.insert(into: "models")
                    .columns("id", "name", "description", "task", "owner", "created_at", "updated_at")
                    .values(
                        SQLBind(model.id), SQLBind(model.name), SQLBind(model.description), SQLBind(model.task.rawValue),
                        SQLBind(model.owner), SQLBind(model.createdAt.millisecondsSince1970),
                        SQLBind(model.updatedAt.millisecondsSince1970)
                    )
                    .run()
            }
            try await Self.insertLabels(model.labels, modelID: model.id, db: db)
        }
    }

    func model(named name: String) async throws -> Model? {
        try await models(try await db.select().column("*").from("models").where("name", .equal, name).all()).first
    }

    func model(id: String) async throws -> Model? {
        try await models(try await db.select().column("*").from("models").where("id", .equal, id).all()).first
    }

    func listModels(_ query: ModelQuery) async throws -> [Model] {
        let select = db.select().column("*").from("models")
        if let task = query.task { select.where("task", .equal, task.rawValue) }
        if let owner = query.owner { select.where("owner", .equal, owner) }
        if let prefix = query.namePrefix {
            // Names are DNS labels, so the prefix has no LIKE wildcards once validated; compare
            // with a range instead of LIKE to stay exact on both databases.
            select.where("name", .greaterThanOrEqual, prefix).where("name", .lessThan, prefix + "\u{10FFFF}")
        }
        if let after = query.after { select.where("name", .greaterThan, after) }
        for (key, value) in query.labels.sorted(by: { $0.key < $1.key }) {
            let labelled: SQLQueryString =
                "id IN (SELECT model_id FROM model_labels WHERE key = \(bind: key) AND value = \(bind: value))"
            select.where(labelled)
        }
        select.orderBy("name")
        if let limit = query.limit { select.limit(limit) }
        return try await models(try await select.all())
    }

    func updateModel(_ model: Model) async throws {
        try await store.transaction { db in
            try await db.update("models")
                .set("description", to: SQLBind(model.description))
                .set("task", to: SQLBind(model.task.rawValue))
                .set("owner", to: SQLBind(model.owner))
                .set("updated_at", to: SQLBind(model.updatedAt.millisecondsSince1970))
                .where("id", .equal, model.id)
                .run()
            try await db.delete(from: "model_labels").where("model_id", .equal, model.id).run()
            try await Self.insertLabels(model.labels, modelID: model.id, db: db)
        }
    }

    func deleteModel(id: String) async throws {
        try await store.transaction { db in
            let versionsOfModel: SQLQueryString = "version_id IN (SELECT id FROM model_versions WHERE model_id = \(bind: id))"
            try await db.delete(from: "model_files").where(versionsOfModel).run()
            try await db.delete(from: "model_versions").where("model_id", .equal, id).run()
            try await db.delete(from: "model_labels").where("model_id", .equal, id).run()
            try await db.delete(from: "models").where("id", .equal, id).run()
        }
    }

    // MARK: versions

    func createVersion(_ version: ModelVersion) async throws {
        try await insertUnique("version '\(version.version)'") {
            try await db.insert(into: "model_versions")
                .columns(
                    "id", "model_id", "version", "description", "format", "context_limit", "input_schema", "output_schema",
                    "default_engine", "engine_args", "artifact_uri", "status", "status_message", "deprecated", "created_at",
                    "updated_at"
                )
                .values(
                    SQLBind(version.id), SQLBind(version.modelID), SQLBind(version.version), SQLBind(version.description),
                    SQLBind(version.format), SQLBind(Int64(version.contextLimit)), SQLBind(try jsonText(version.inputSchema)),
                    SQLBind(try jsonText(version.outputSchema)), SQLBind(version.defaultEngine),
                    SQLBind(try jsonText(version.engineArgs)), SQLBind(version.artifactURI ?? ""),
                    SQLBind(version.status.rawValue), SQLBind(version.statusMessage), SQLBind(Int64(version.deprecated ? 1 : 0)),
                    SQLBind(version.createdAt.millisecondsSince1970), SQLBind(version.updatedAt.millisecondsSince1970)
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

    func listVersions(modelID: String, after: String?, limit: Int?) async throws -> [ModelVersion] {
        let select = db.select().column("*").from("model_versions").where("model_id", .equal, modelID)
        if let after, let last = try await version(id: after) {
            // Oldest first, ties broken by id: the page after `last` starts strictly behind it.
            let created = last.createdAt.millisecondsSince1970
            select.where {
                $0.where("created_at", .greaterThan, created)
                    .orWhere { $0.where("created_at", .equal, created).where("id", .greaterThan, last.id) }
            }
        }
        select.orderBy("created_at").orderBy("id")
        if let limit { select.limit(limit) }
        return try await select.all().map(Self.version)
    }

    func updateVersion(_ version: ModelVersion, expectedStatus: ModelVersionStatus) async throws -> Bool {
        let rows = try await db.update("model_versions")
            .set("description", to: SQLBind(version.description))
            .set("format", to: SQLBind(version.format))
            .set("context_limit", to: SQLBind(Int64(version.contextLimit)))
            .set("input_schema", to: SQLBind(try jsonText(version.inputSchema)))
            .set("output_schema", to: SQLBind(try jsonText(version.outputSchema)))
            .set("default_engine", to: SQLBind(version.defaultEngine))
            .set("engine_args", to: SQLBind(try jsonText(version.engineArgs)))
            .set("status", to: SQLBind(version.status.rawValue))
            .set("status_message", to: SQLBind(version.statusMessage))
            .set("deprecated", to: SQLBind(Int64(version.deprecated ? 1 : 0)))
            .set("updated_at", to: SQLBind(version.updatedAt.millisecondsSince1970))
            .where("id", .equal, version.id)
            .where("status", .equal, expectedStatus.rawValue)
            .returning("id")
            .all()
        return !rows.isEmpty
    }

    func deleteVersion(id: String) async throws {
        try await store.transaction { db in
            try await db.delete(from: "model_files").where("version_id", .equal, id).run()
            try await db.delete(from: "model_versions").where("id", .equal, id).run()
        }
    }

    // MARK: files

    func files(versionID: String) async throws -> [ModelFile] {
        try await Self.files(versionID: versionID, path: nil, db: db)
    }

    func recordFile(versionID: String, _ file: ModelFile) async throws -> ModelFile? {
        try await store.transaction { db in
            try await Self.claimForUpload(versionID: versionID, at: file.createdAt, db: db)
            let previous = try await Self.files(versionID: versionID, path: file.path, db: db).first
            try await db.delete(from: "model_files").where("version_id", .equal, versionID).where("path", .equal, file.path)
                .run()
            try await db.insert(into: "model_files")
                .columns("version_id", "path", "size", "sha256", "object_key", "created_at")
                .values(
                    SQLBind(versionID), SQLBind(file.path), SQLBind(file.size), SQLBind(file.sha256), SQLBind(file.objectKey),
                    SQLBind(file.createdAt.millisecondsSince1970)
                )
                .run()
            return previous
        }
    }

    func deleteFile(versionID: String, path: String) async throws -> ModelFile? {
        try await store.transaction { db in
            try await Self.claimForUpload(versionID: versionID, at: Date(), db: db)
            let previous = try await Self.files(versionID: versionID, path: path, db: db).first
            try await db.delete(from: "model_files").where("version_id", .equal, versionID).where("path", .equal, path).run()
            return previous
        }
    }

    private static func files(versionID: String, path: String?, db: any SQLDatabase) async throws -> [ModelFile] {
        let select = db.select().column("*").from("model_files").where("version_id", .equal, versionID)
        if let path { select.where("path", .equal, path) }
        return try await select.orderBy("path").all()
            .map {
                ModelFile(
                    path: try $0.string("path"), size: Int64(try $0.int("size")), sha256: try $0.string("sha256"),
                    objectKey: try $0.string("object_key"), createdAt: try $0.date("created_at"))
            }
    }

    /// Moves a version that is not ready to `uploading`, inside the caller's transaction; the
    /// conditional update is what keeps a ready version immutable against racing writers.
    private static func claimForUpload(versionID: String, at date: Date, db: any SQLDatabase) async throws {
        let rows = try await db.update("model_versions")
            .set("status", to: SQLBind(ModelVersionStatus.uploading.rawValue))
            .set("status_message", to: SQLBind(""))
            .set("updated_at", to: SQLBind(date.millisecondsSince1970))
            .where("id", .equal, versionID)
            .where("status", .notEqual, ModelVersionStatus.ready.rawValue)
            .returning("id")
            .all()
        guard !rows.isEmpty else {
            throw GantryError.conflict("the version is ready, and a ready version is immutable (or it no longer exists)")
        }
    }

    // MARK: rows

    private static func insertLabels(_ labels: [String: String], modelID: String, db: any SQLDatabase) async throws {
        for (key, value) in labels.sorted(by: { $0.key < $1.key }) {
            try await db.insert(into: "model_labels").columns("model_id", "key", "value")
                .values(SQLBind(modelID), SQLBind(key), SQLBind(value)).run()
        }
    }

    /// Models with their labels, read in one more query for the whole page.
    private func models(_ rows: [any SQLRow]) async throws -> [Model] {
        var models = try rows.map(Self.model)
        guard !models.isEmpty else { return models }
        let labelRows = try await db.select().column("*").from("model_labels")
            .where("model_id", .in, models.map(\.id)).all()
        var labels: [String: [String: String]] = [:]
        for row in labelRows {
            labels[try row.string("model_id"), default: [:]][try row.string("key")] = try row.string("value")
        }
        for index in models.indices { models[index].labels = labels[models[index].id] ?? [:] }
        return models
    }

    static func model(_ row: any SQLRow) throws -> Model {
        let created = try row.date("created_at")
        return Model(
            id: try row.string("id"), name: try row.string("name"), description: try row.string("description"),
            task: try row.enumValue("task", as: ModelTask.self), owner: try row.decode(column: "owner", as: String?.self) ?? "",
            createdAt: created, updatedAt: try row.optionalDate("updated_at") ?? created)
    }

    static func version(_ row: any SQLRow) throws -> ModelVersion {
        let created = try row.date("created_at")
        let artifact = try row.string("artifact_uri")
        return ModelVersion(
            id: try row.string("id"), modelID: try row.string("model_id"), version: try row.string("version"),
            description: try row.decode(column: "description", as: String?.self) ?? "",
            format: try row.string("format"), contextLimit: try row.int("context_limit"),
            inputSchema: try row.json("input_schema", as: JSONValue.self),
            outputSchema: try row.json("output_schema", as: JSONValue.self),
            defaultEngine: try row.decode(column: "default_engine", as: String?.self),
            engineArgs: try row.json("engine_args", as: [String].self) ?? [],
            artifactURI: artifact.isEmpty ? nil : artifact,
            status: try row.enumValue("status", as: ModelVersionStatus.self),
            statusMessage: try row.decode(column: "status_message", as: String?.self) ?? "",
            deprecated: (try row.decode(column: "deprecated", as: Int64?.self) ?? 0) != 0,
            createdAt: created, updatedAt: try row.optionalDate("updated_at") ?? created)
    }

}

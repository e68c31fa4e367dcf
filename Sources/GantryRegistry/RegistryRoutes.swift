import Foundation
public import GantryCore
public import GantryHTTP
public import Hummingbird

/// `/api/v1/models`: admins register; every authenticated user may read.
public struct RegistryRoutes: Sendable {
    let registry: RegistryService
    let models: any ModelRepository

    public init(registry: RegistryService, models: any ModelRepository) {
        self.registry = registry
        self.models = models
    }

    struct CreateModel: Decodable {
        var name: String
        var description: String?
        var task: ModelTask?
    }

    struct CreateVersion: Decodable {
        var version: String?
        var format: String
        var contextLimit: Int
        var artifactUri: String
    }

    public func add(to router: Router<GantryRequestContext>) {
        let group = router.group("/api/v1/models")
        group.post { request, context in
            _ = try context.requireAdmin()
            let body = try await request.decodeJSON(as: CreateModel.self)
            let model = try await registry.createModel(
                name: body.name, description: body.description ?? "", task: body.task ?? .chat)
            return JSONResponse(model, status: .created)
        }
        group.get { _, context in
            _ = try context.requirePrincipal()
            return JSONResponse(ListResponse(try await models.listModels()))
        }
        group.get("{name}") { _, context in
            _ = try context.requirePrincipal()
            let model = try await registry.model(named: try context.parameters.require("name"))
            return JSONResponse(RecordWithField(model, adding: "versions", try await models.listVersions(modelID: model.id)))
        }
        group.post("{name}/versions") { request, context in
            _ = try context.requireAdmin()
            let body = try await request.decodeJSON(as: CreateVersion.self)
            let version = try await registry.createVersion(
                modelName: try context.parameters.require("name"), version: body.version, format: body.format,
                contextLimit: body.contextLimit, artifactURI: body.artifactUri)
            return JSONResponse(version, status: .created)
        }
        group.get("{name}/versions") { _, context in
            _ = try context.requirePrincipal()
            let model = try await registry.model(named: try context.parameters.require("name"))
            return JSONResponse(ListResponse(try await models.listVersions(modelID: model.id)))
        }
    }
}

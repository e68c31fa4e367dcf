import Foundation
public import GantryCore
public import GantryHTTP
public import Hummingbird

/// `/api/v1/deployments`: admins create and delete model services; users may read them.
public struct DeploymentRoutes: Sendable {
    let service: DeploymentService
    let repositories: Repositories

    public init(service: DeploymentService, repositories: Repositories) {
        self.service = service
        self.repositories = repositories
    }

    struct CreateDeployment: Decodable {
        var name: String
        var model: String
        var version: String?
        var engine: String?
        var replicas: Int?
        var contextLimit: Int?
    }

    public func add(to router: Router<GantryRequestContext>) {
        let group = router.group("/api/v1/deployments")
        group.post { request, context in
            _ = try context.requireAdmin()
            let body = try await request.decodeJSON(as: CreateDeployment.self)
            let deployment = try await service.create(
                name: body.name, model: body.model, version: body.version, engine: body.engine, replicas: body.replicas,
                contextLimit: body.contextLimit)
            return JSONResponse(RecordWithField(deployment, adding: "instances", [EngineInstance]()), status: .created)
        }
        group.get { _, context in
            _ = try context.requirePrincipal()
            return JSONResponse(ListResponse(try await repositories.deployments.listDeployments()))
        }
        group.get("{name}") { _, context in
            _ = try context.requirePrincipal()
            let name = try context.parameters.require("name")
            guard let deployment = try await repositories.deployments.deployment(named: name) else {
                throw GantryError.notFound("deployment '\(name)' not found")
            }
            let instances = try await repositories.instances.listInstances(deploymentID: deployment.id)
            return JSONResponse(RecordWithField(deployment, adding: "instances", instances))
        }
        group.delete("{name}") { _, context in
            _ = try context.requireAdmin()
            try await service.delete(name: try context.parameters.require("name"))
            return Response(status: .accepted)
        }
    }
}

import Foundation
public import GantryCore
public import GantryHTTP
public import Hummingbird
import NIOCore

/// `/api/v1/deployments`: admins create, change and delete model services; users may read them.
public struct DeploymentRoutes: Sendable {
    let service: DeploymentService
    let repositories: Repositories
    let runtime: any EngineRuntime

    public init(service: DeploymentService, repositories: Repositories, runtime: any EngineRuntime) {
        self.service = service
        self.repositories = repositories
        self.runtime = runtime
    }

    public func add(to router: Router<GantryRequestContext>) {
        let group = router.group("/api/v1/deployments")
        group.post { request, context in
            _ = try context.requireAdmin()
            let body = try await request.decodeJSON(as: DeploymentRequest.self)
            let deployment = try await service.create(body)
            return JSONResponse(RecordWithField(deployment, adding: "instances", [EngineInstance]()), status: .created)
        }
        group.get { _, context in
            _ = try context.requirePrincipal()
            return JSONResponse(ListResponse(try await repositories.deployments.listDeployments()))
        }
        group.get("{name}") { _, context in
            _ = try context.requirePrincipal()
            let deployment = try await find(try context.parameters.require("name"))
            let instances = try await repositories.instances.listInstances(deploymentID: deployment.id)
            return JSONResponse(RecordWithField(deployment, adding: "instances", instances))
        }
        group.patch("{name}") { request, context in
            _ = try context.requireAdmin()
            let body = try await request.decodeJSON(as: DeploymentRequest.self)
            let deployment = try await service.update(name: try context.parameters.require("name"), body)
            let instances = try await repositories.instances.listInstances(deploymentID: deployment.id)
            return JSONResponse(RecordWithField(deployment, adding: "instances", instances))
        }
        group.delete("{name}") { _, context in
            _ = try context.requireAdmin()
            try await service.delete(name: try context.parameters.require("name"))
            return Response(status: .accepted)
        }
        group.get("{name}/events") { request, context in
            _ = try context.requirePrincipal()
            let deployment = try await find(try context.parameters.require("name"))
            let limit = try PageCursor.limit(request.uri.queryParameters["limit"].map(String.init))
            return JSONResponse(
                ListResponse(try await repositories.deployments.events(deploymentID: deployment.id, limit: limit)))
        }
        instanceMetricsRoute(group)
        group.get("{name}/instances/{id}/logs") { request, context in
            // Engine logs can hold prompts: admins only.
            _ = try context.requireAdmin()
            let (_, instance) = try await instance(context)
            let id = instance.id
            let maxBytes =
                try request.uri.queryParameters["max_bytes"].map { text in
                    guard let value = Int(text), (1...(16 << 20)).contains(value) else {
                        throw GantryError.invalid("max_bytes must be 1-16777216", param: "max_bytes")
                    }
                    return value
                } ?? 64 * 1024
            guard let text = await runtime.logs(instanceID: id, maxBytes: maxBytes) else {
                throw GantryError.notFound("instance '\(id)' has no log on this node")
            }
            return Response(
                status: .ok, headers: [.contentType: "text/plain; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: text)))
        }
    }

    private func instanceMetricsRoute(_ group: RouterGroup<GantryRequestContext>) {
        group.get("{name}/instances/{id}/metrics") { _, context in
            _ = try context.requireAdmin()
            let (_, instance) = try await instance(context)
            guard let text = await runtime.engineMetrics(instanceID: instance.id) else {
                throw GantryError(.unavailable, "instance '\(instance.id)' is not running here or its engine did not answer")
            }
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: text)))
        }
    }

    private func instance(_ context: GantryRequestContext) async throws -> (Deployment, EngineInstance) {
        let deployment = try await find(try context.parameters.require("name"))
        let id = try context.parameters.require("id")
        guard let instance = try await repositories.instances.instance(id: id), instance.deploymentID == deployment.id else {
            throw GantryError.notFound("instance '\(id)' of deployment '\(deployment.name)' not found")
        }
        return (deployment, instance)
    }

    private func find(_ name: String) async throws -> Deployment {
        guard let deployment = try await repositories.deployments.deployment(named: name) else {
            throw GantryError.notFound("deployment '\(name)' not found")
        }
        return deployment
    }
}

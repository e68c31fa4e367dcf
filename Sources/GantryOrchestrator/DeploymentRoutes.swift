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
    /// The minute-by-minute history of each service, for `GET .../{name}/metrics`.
    let history: ServiceMetricsHistory

    public init(
        service: DeploymentService, repositories: Repositories, runtime: any EngineRuntime,
        history: ServiceMetricsHistory = ServiceMetricsHistory()
    ) {
        self.service = service
        self.repositories = repositories
        self.runtime = runtime
        self.history = history
    }

    /// The last hour of one service, minute by minute (see `ServiceMinute`).
    struct MetricsHistoryResponse: Encodable, Sendable {
        var service: String
        var minutes: [ServiceMinute]
    }

    /// Whether a user may see (and so call) the service.
    static func visible(_ deployment: Deployment, to principal: Principal) -> Bool {
        principal.isAdmin || (principal.mayUse(deployment: deployment.name) && deployment.access.admits(principal))
    }

    /// What a user sees of a service they may call.
    struct DeploymentSummary: Encodable, Sendable {
        var name: String
        var version: String
        var status: DeploymentStatus
        var contextLimit: Int
        var limits: FrequencyLimits
        var createdAt: Date
        var updatedAt: Date

        init(_ deployment: Deployment) {
            name = deployment.name
            version = deployment.revision.version
            status = deployment.status
            contextLimit = deployment.revision.contextLimit
            limits = deployment.limits
            createdAt = deployment.createdAt
            updatedAt = deployment.updatedAt
        }
    }

    public func add(to router: Router<GantryRequestContext>) {
        let group = router.group("/api/v1/deployments")
        group.post { request, context in
            _ = try context.requireAdmin()
            let body = try await request.decodeJSON(as: DeploymentRequest.self)
            let deployment = try await service.create(body)
            return JSONResponse(RecordWithField(deployment, adding: "instances", [EngineInstance]()), status: .created)
        }
        // Admins see everything; a user sees only the services they may call, as a summary
        // without engine internals (instances, endpoints, process ids, model paths, access lists).
        group.get { request, context in
            let principal = try context.requirePrincipal()
            let deployments = try await repositories.deployments.listDeployments()
            guard principal.isAdmin else {
                let visible = deployments.filter { Self.visible($0, to: principal) }.map(DeploymentSummary.init)
                return try JSONResponse(ListResponse(visible)).response(from: request, context: context)
            }
            return try JSONResponse(ListResponse(deployments)).response(from: request, context: context)
        }
        group.get("{name}") { request, context in
            let principal = try context.requirePrincipal()
            let deployment = try await find(try context.parameters.require("name"))
            guard principal.isAdmin else {
                // A service the user may not call looks like one that does not exist.
                guard Self.visible(deployment, to: principal) else {
                    throw GantryError.notFound("deployment '\(deployment.name)' not found")
                }
                return try JSONResponse(DeploymentSummary(deployment)).response(from: request, context: context)
            }
            let instances = try await repositories.instances.listInstances(deploymentID: deployment.id)
            return try JSONResponse(RecordWithField(deployment, adding: "instances", instances)).response(
                from: request, context: context)
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
            let name = try context.parameters.require("name")
            try await service.delete(name: name)
            history.forget(name)
            return Response(status: .accepted)
        }
        group.get("{name}/metrics") { _, context in
            // Every caller's traffic together, and GPU use: admins only.
            _ = try context.requireAdmin()
            let deployment = try await find(try context.parameters.require("name"))
            return JSONResponse(
                MetricsHistoryResponse(service: deployment.name, minutes: history.minutes(of: deployment.name)))
        }
        group.get("{name}/events") { request, context in
            // Events can quote a crashed engine's last log lines, which can hold a prompt: admins only.
            _ = try context.requireAdmin()
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

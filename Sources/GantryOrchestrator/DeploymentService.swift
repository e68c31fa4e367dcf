import Foundation
public import GantryCore

/// Validates and records desired state; the reconcile loop makes it real.
public struct DeploymentService: Sendable {
    let repositories: Repositories
    let supportedEngines: [String]
    let reconciler: Reconciler

    public init(repositories: Repositories, supportedEngines: [String], reconciler: Reconciler) {
        self.repositories = repositories
        self.supportedEngines = supportedEngines
        self.reconciler = reconciler
    }

    public static let replicaRange = 1...16

    /// Creates a deployment of `model` at `version` (the newest ready, not deprecated version when
    /// nil), on `engine` (the version's default engine, else llama-cpp, when nil).
    public func create(
        name: String, model modelName: String, version versionName: String?, engine: String?, replicas: Int?,
        contextLimit: Int?
    ) async throws -> Deployment {
        try ResourceName.validate(name, field: "name")
        guard let model = try await repositories.models.model(named: modelName) else {
            throw GantryError.notFound("model '\(modelName)' not found", code: "model_not_found")
        }
        let version: ModelVersion
        if let versionName {
            guard let found = try await repositories.models.version(modelID: model.id, version: versionName) else {
                throw GantryError.notFound("version '\(versionName)' of model '\(modelName)' not found")
            }
            version = found
        } else {
            guard
                let newest = try await repositories.models.listVersions(modelID: model.id).last(where: {
                    $0.status == .ready && !$0.deprecated
                })
            else {
                throw GantryError.invalid("model '\(modelName)' has no ready version that is not deprecated", param: "version")
            }
            version = newest
        }
        guard version.status == .ready else {
            throw GantryError.conflict("version '\(version.version)' is \(version.status.rawValue), not ready")
        }
        let engine = engine ?? version.defaultEngine ?? "llama-cpp"
        guard supportedEngines.contains(engine) else {
            throw GantryError.invalid(
                "engine '\(engine)' is not available; available: \(supportedEngines.joined(separator: ", "))", param: "engine")
        }
        let replicas = replicas ?? 1
        guard Self.replicaRange.contains(replicas) else {
            throw GantryError.invalid("replicas must be between 1 and \(Self.replicaRange.upperBound)", param: "replicas")
        }
        let limit = contextLimit ?? version.contextLimit
        guard limit >= 1, limit <= version.contextLimit else {
            throw GantryError.invalid(
                "context_limit must be between 1 and the version's limit (\(version.contextLimit))", param: "context_limit")
        }
        let now = Date()
        let deployment = Deployment(
            id: Identifier.make("dep"), name: name, modelID: model.id, versionID: version.id, engine: engine,
            replicas: replicas, contextLimit: limit, status: .pending, statusMessage: "waiting for the reconcile loop",
            createdAt: now, updatedAt: now)
        try await repositories.deployments.createDeployment(deployment)
        reconciler.wake()
        return deployment
    }

    /// Marks a deployment for deletion; the reconcile loop stops its instances and removes it.
    public func delete(name: String) async throws {
        guard let deployment = try await repositories.deployments.deployment(named: name) else {
            throw GantryError.notFound("deployment '\(name)' not found")
        }
        try await repositories.deployments.updateStatus(
            deploymentID: deployment.id, status: .deleting, message: "stopping instances")
        reconciler.wake()
    }
}
